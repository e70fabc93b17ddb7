#!/usr/bin/env bash
# Runs the integration tests against rootful Podman instead of Docker: starts Podman's API
# service on a socket of its own (unless one answers already), builds the test image in Podman's
# store, and runs `cargo test` with SKIFF_TEST_ENGINE_SOCKET naming that socket, so that the very
# same tests, asserting the very same things, run on Podman. Fails (never skips) when Podman
# cannot be had or does not answer.
#
#   scripts/test-podman.sh                       # end-to-end, self-healing and persistence tests
#   scripts/test-podman.sh --test hostile        # any `cargo test` arguments instead
#   scripts/test-podman.sh --bench               # start latency (benches/start_latency.rs) on Podman
#
# As root on a Debian-like system it installs podman and catatonit (the init Podman runs as a
# container's PID 1; Debian's podman only recommends it). With no containers.conf, it writes one
# with modest default_ulimits (CONTAINERS_CONF): Podman's defaults ask for more open files and
# processes than a host without CAP_SYS_RESOURCE (a sandbox, a container) may grant, and every
# start then fails with "error setting rlimits". The tests also run the docker CLI (docker kill,
# inspect), pointed at Podman's socket through DOCKER_HOST.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

say() { printf 'test-podman: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    say "FAIL: the tests run against rootful Podman; run as root (see the README's Podman section for rootless use)" >&2
    exit 1
fi
need_packages busybox-static curl podman catatonit
if ! command -v docker >/dev/null 2>&1; then
    say "FAIL: the tests run the docker CLI (against Podman's socket); install docker.io's CLI" >&2
    exit 1
fi

dir="$PWD/target/tmp/podman"
mkdir -p "$dir"
sock="${SKIFF_PODMAN_SOCKET:-$dir/podman.sock}"

if [ -z "${CONTAINERS_CONF:-}" ] && ! [ -e /etc/containers/containers.conf ]; then
    export CONTAINERS_CONF="$dir/containers.conf"
    say "writing $CONTAINERS_CONF (modest default_ulimits: nofile and nproc 20000)"
    cat > "$CONTAINERS_CONF" <<'CONF'
# Written by scripts/test-podman.sh: Podman's default ulimits exceed what a host without
# CAP_SYS_RESOURCE may grant ("error setting rlimits for ready process").
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]
CONF
fi

answers() { curl -sf --max-time 2 --unix-socket "$sock" http://podman/_ping >/dev/null 2>&1; }

clean_up_on_exit
if answers; then
    say "podman answers at $sock"
else
    rm -f "$sock"
    say "starting podman system service --time=0 unix://$sock (log: $dir/service.log)"
    podman system service --time=0 "unix://$sock" >"$dir/service.log" 2>&1 &
    on_exit_kill $!
    for _ in $(seq 1 100); do answers && break; sleep 0.1; done
    if ! answers; then
        say "FAIL: podman does not answer at $sock; see $dir/service.log" >&2
        exit 1
    fi
fi
say "podman $(podman version --format '{{.Server.Version}}' 2>/dev/null || podman --version) at $sock"

say "building the image skiff/busybox:latest in podman's store"
SKIFF_ENGINE_CLI=podman scripts/build-image.sh

export SKIFF_TEST_ENGINE_SOCKET="$sock" SKIFF_ENGINE_CLI=podman
if [ "${1:-}" = "--bench" ]; then
    shift
    say "cargo bench --bench start_latency"
    cargo bench --bench start_latency "$@"
elif [ $# -eq 0 ]; then
    say "cargo test --no-fail-fast --test cluster --test healing --test persistence"
    cargo test --no-fail-fast --test cluster --test healing --test persistence
else
    say "cargo test $*"
    cargo test "$@"
fi
