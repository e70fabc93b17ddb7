#!/usr/bin/env bash
# Checks the API specs against live daemons with Schemathesis (from PyPI, in a virtualenv):
# docs/openapi.yaml against a manager, docs/worker-openapi.yaml against a worker. Fails on any
# 5xx and on any response that does not conform to the spec (status code, content type, headers,
# body schema). Examples per operation: SCHEMATHESIS_EXAMPLES (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

examples="${SCHEMATHESIS_EXAMPLES:-60}"
venv="${SCHEMATHESIS_VENV:-${CARGO_TARGET_DIR:-target}/schemathesis-venv}"
say() { printf 'schemathesis: %s\n' "$*"; }

if ! [ -x "$venv/bin/schemathesis" ]; then
    say "installing schemathesis into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi

cargo build --quiet
scripts/build-image.sh >/dev/null
work=$(mktemp -d -t skiff-schemathesis.XXXXXX)
node="st-$$"
on_exit_remove_node "$node"
on_exit_remove_dir "$work"
clean_up_on_exit

export SKIFF_TOKEN="schemathesis-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
wport=$((30000 + RANDOM % 10000)); mport=$((wport + 1))
"${CARGO_TARGET_DIR:-target}"/debug/worker -n "$node" -p "$wport" --bind 127.0.0.1 --stop-grace-s 1 2>"$work/worker.log" & on_exit_kill $!
"${CARGO_TARGET_DIR:-target}"/debug/manager -p "$mport" --bind 127.0.0.1 -w "127.0.0.1:$wport" 2>"$work/manager.log" & on_exit_kill $!
for port in "$wport" "$mport"; do
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v1/health" >/dev/null && break; sleep 0.1; done
done

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,ignored_auth,missing_required_header
# The streamed routes (a task's log, the events) are left out: a generated `follow=true` holds
# a stream open for up to an hour, which a fuzzer takes for a hung server; tests/operating.rs
# checks them against the real daemons. The worker's image upload (`POST /v1/images`) takes only
# a `docker save` tar, which Schemathesis cannot generate; tests/images.rs checks it.
run() { # spec, port
    say "checking $1 against 127.0.0.1:$2"
    "$venv/bin/schemathesis" run "$1" --url "http://127.0.0.1:$2" \
        -H "Authorization: Bearer $SKIFF_TOKEN" --checks "$checks" \
        --max-examples "$examples" --workers 1 --request-timeout 30 --no-color \
        --exclude-path '/v1/events' --exclude-path '/v1/tasks/{id}/logs' --exclude-path '/v1/images'
}
status=0
run docs/worker-openapi.yaml "$wport" || status=1
run docs/openapi.yaml "$mport" || status=1
if [ $status -ne 0 ]; then
    say "FAILED; the daemons' logs:"
    tail -n 20 "$work/manager.log" "$work/worker.log" >&2
fi
exit $status
