#!/usr/bin/env bash
# Where the manager's time goes under read load (docs/BENCHMARKS.md, "What limits them"): a
# manager with no workers holding STORE (10,000) Pending tasks, `wrk` on one route at 32
# connections, and meanwhile `perf stat`, `perf record` (call graphs, on a build that keeps its
# symbols) and `strace -c -f` on the manager. Writes target/bench/profile/ and prints summaries.
#
#   scripts/profile.sh                 # GET /v1/tasks/{id}, then GET /v1/tasks?limit=100
#   STORE=2000 SECS=5 scripts/profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

store="${STORE:-10000}"
secs="${SECS:-5}"
out=target/bench/profile
say() { printf 'profile: %s\n' "$*" >&2; }
need_packages wrk strace
if ! perf stat -e instructions true >/dev/null 2>&1; then
    need_packages linux-perf
fi
mkdir -p "$out"
clean_up_on_exit

say "building a manager that keeps its symbols (target/profile-build)"
CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    cargo build --release --quiet --bin manager --target-dir target/profile-build
suite_bin=$(cargo build --release --quiet --bench suite --message-format=json \
    | grep -o '"executable":"[^"]*suite[^"]*"' | tail -1 | cut -d'"' -f4)
port=$((20000 + RANDOM % 10000))
target/profile-build/release/manager -p "$port" --bind 127.0.0.1 2>"$out/manager.log" &
pid=$!
on_exit_kill "$pid"
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/v1/health" >/dev/null && break; sleep 0.1; done
say "filling $store Pending tasks"
"$suite_bin" fill "$base" "$store"
id=$(curl -sf "$base/v1/tasks?limit=1" | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)

for route in "task /v1/tasks/$id" "page /v1/tasks?limit=100"; do
    set -- $route
    name=$1 path=$2
    say "$name: wrk 32 connections, $secs s, with perf stat"
    wrk -t2 -c32 -d"${secs}s" --latency "$base$path" >"$out/$name.wrk" &
    wrk_pid=$!
    perf stat -e task-clock,context-switches,cpu-migrations,instructions,cycles -p "$pid" -- sleep "$((secs - 1))" \
        2>"$out/$name.perfstat" || true
    wait "$wrk_pid"
    say "$name: wrk with perf record -g"
    wrk -t2 -c32 -d"${secs}s" "$base$path" >/dev/null &
    wrk_pid=$!
    perf record -F 299 --call-graph dwarf,32768 -o "$out/$name.perf.data" -p "$pid" -- sleep "$((secs - 1))" 2>/dev/null || true
    wait "$wrk_pid"
    perf report -i "$out/$name.perf.data" --no-children --percent-limit 1.5 --stdio -g none 2>/dev/null \
        | grep -v '^#' | grep -v '^$' >"$out/$name.perf.txt" || true
    perf report -i "$out/$name.perf.data" --children --percent-limit 5 --stdio -g none 2>/dev/null \
        | grep -v '^#' | grep -v '^$' >"$out/$name.children.txt" || true
    say "$name: wrk with strace -c -f"
    wrk -t2 -c32 -d"${secs}s" "$base$path" >"$out/$name.strace.wrk" &
    wrk_pid=$!
    timeout "$((secs - 1))" strace -c -f -p "$pid" -o "$out/$name.strace" 2>/dev/null || true
    wait "$wrk_pid"
    echo "== $name ($path, $store tasks) =="
    grep -E 'Latency|Requests/sec|99%' "$out/$name.wrk"
    grep -E 'task-clock|context-switches|instructions' "$out/$name.perfstat" || true
    echo "-- self time (perf) --"; head -25 "$out/$name.perf.txt"
    echo "-- with callees (perf) --"; head -25 "$out/$name.children.txt"
    echo "-- syscalls (strace -c -f) --"; head -14 "$out/$name.strace"
done
