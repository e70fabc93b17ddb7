#!/usr/bin/env bash
# A local Skiff cluster running a task: builds the binaries and the image, starts two workers and a
# manager on 127.0.0.1, starts examples/web.json, waits until it serves, prints the URL and the
# client command to use, and cleans everything up on Ctrl-C. On a fresh Debian-like machine, as
# root, it installs what it needs (busybox-static, curl); otherwise it says what to install.
#
# Ports: SKIFF_MANAGER_PORT (8080), SKIFF_WORKER1_PORT (7001), SKIFF_WORKER2_PORT (7002).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

manager_port="${SKIFF_MANAGER_PORT:-8080}"
worker1_port="${SKIFF_WORKER1_PORT:-7001}"
worker2_port="${SKIFF_WORKER2_PORT:-7002}"
workers=(worker1 worker2)

say() { printf 'demo: %s\n' "$*"; }

if ! docker info >/dev/null 2>&1; then
    say "the Docker Engine does not answer (is dockerd running, and may you use /var/run/docker.sock?)" >&2
    exit 1
fi
for w in "${workers[@]}"; do
    if [ -n "$(docker ps -aq --filter "label=skiff.node=$w")" ]; then
        say "containers labelled skiff.node=$w already exist on this engine; another Skiff $w is running here" >&2
        exit 1
    fi
done

need_packages busybox-static curl
say "building the binaries (cargo build --release)"
cargo build --release --quiet
say "building the image skiff/busybox:latest"
scripts/build-image.sh
bin="${CARGO_TARGET_DIR:-target}/release"

logs=$(mktemp -d -t skiff-demo.XXXXXX)
on_exit_remove_node "${workers[@]}"
cleanup_note="demo: cleaned up; logs kept in $logs"
clean_up_on_exit
say "starting worker1 on 127.0.0.1:$worker1_port and worker2 on 127.0.0.1:$worker2_port"
"$bin/worker" -n worker1 -p "$worker1_port" --bind 127.0.0.1 -st memory 2>"$logs/worker1.log" & on_exit_kill $!
"$bin/worker" -n worker2 -p "$worker2_port" --bind 127.0.0.1 -st memory 2>"$logs/worker2.log" & on_exit_kill $!
say "starting the manager on 127.0.0.1:$manager_port"
"$bin/manager" -p "$manager_port" --bind 127.0.0.1 -st memory -sct roundrobin \
    -w "127.0.0.1:$worker1_port" -w "127.0.0.1:$worker2_port" 2>"$logs/manager.log" & on_exit_kill $!

client=("$bin/client" --host 127.0.0.1 -p "$manager_port")
wait_until() { # what, seconds, command...
    local what=$1 limit=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then say "timed out waiting for $what; logs in $logs" >&2; exit 1; fi
        for pid in "${cleanup_pids[@]}"; do
            kill -0 "$pid" 2>/dev/null || { say "a daemon exited; logs in $logs:" >&2; tail -n 5 "$logs"/*.log >&2; exit 1; }
        done
        sleep 0.2
    done
}
both_up() { [ "$("${client[@]}" list-nodes | grep -c ' up ')" -eq 2 ]; }
wait_until "both workers to be up" 20 both_up

say "starting examples/web.json"
id=$("${client[@]}" start examples/web.json)
is_running() { "${client[@]}" get "$id" | grep -q '^state  *Running'; }
wait_until "the task to run" 60 is_running
# the host port the engine picked: the "ports" line of `get`, e.g. "ports         32768->8080/tcp"
port=$("${client[@]}" get "$id" | sed -n 's/^ports  *\([0-9][0-9]*\)->.*/\1/p' | head -n 1)
url="http://127.0.0.1:$port/"
wait_until "$url to answer" 20 curl -fsS "$url"

"${client[@]}" list
echo
say "the task $id serves $url"
say "try:  curl $url"
say "      ${client[*]}    (then: list, list-nodes, get $id, stop $id, help)"
say "the dashboard: http://127.0.0.1:$manager_port/   (a move gives the task a new address: get $id says it)"
say "Ctrl-C stops the cluster and removes its containers"
wait "${cleanup_pids[@]}"
