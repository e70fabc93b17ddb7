#!/usr/bin/env bash
# The benchmark suite (issue 16): every figure of docs/BENCHMARKS.md, measured on 127.0.0.1 with
# release builds, side by side with the raw Engine and with Docker Swarm, and printed as one
# table (medians over the runs, their spread, ratios to baselines of the same run, targets).
#
#   scripts/bench.sh            # the full run: 3 runs of each part, about 20 minutes
#   scripts/bench.sh --quick    # CI's smoke run: 1 run, smaller counts, about 3 minutes
#   RUNS=N scripts/bench.sh     # N runs of each part
#
# Fails only when the suite itself breaks (a daemon that never comes up, a task that never
# runs), never on a missed target. Removes every container and Swarm service it started, even
# when interrupted, and leaves swarm mode if it turned it on. The raw results (`RESULT key value`
# lines) and the table are kept in target/bench/ (BENCH_OUT to change).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

quick=0
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done
say() { printf 'bench: %s\n' "$*" >&2; }

if [ "$quick" = 1 ]; then
    runs="${RUNS:-1}" starts=10 burst=20 swarm_starts=3 wrk_secs=1 store=2000 idle=10 place_runs=1
else
    runs="${RUNS:-3}" starts=30 burst=100 swarm_starts=10 wrk_secs=2 store=10000 idle=30 place_runs=3
fi

need_packages busybox-static curl wrk
command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || { say "the Docker Engine does not answer"; exit 1; }

prefix="bench$$"
out="${BENCH_OUT:-target/bench}"
mkdir -p "$out"
work=$(mktemp -d -t skiff-bench.XXXXXX)
results="$out/results.txt"
: >"$results"
on_exit_remove_dir "$work"
on_exit_remove_node "${prefix}raw"
for r in $(seq "$runs"); do on_exit_remove_node "${prefix}r${r}a" "${prefix}r${r}b"; done

# Swarm: services carry our label; swarm mode is left only if this run turned it on
swarm_was=$(docker info --format '{{.Swarm.LocalNodeState}}')
swarm_cleanup() {
    local ids
    ids=$(docker service ls -q --filter "label=skiff.bench=$prefix" 2>/dev/null || true)
    # shellcheck disable=SC2086 # one argument per id
    [ -z "$ids" ] || docker service rm $ids >/dev/null 2>&1 || true
    if [ "$swarm_was" != active ] && [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ]; then
        say "leaving swarm mode (this run turned it on)"
        docker swarm leave --force >/dev/null 2>&1 || true
    fi
}
on_exit_call swarm_cleanup
clean_up_on_exit

# Runs the suite's binary in the background (so that the clean-up trap can stop it) and adds
# its RESULT lines to the results.
suite_bin=""
run_suite() { # mode, with SKIFF_SUITE_* in the environment
    "$suite_bin" "$@" >"$work/suite.out" &
    local pid=$!
    on_exit_kill "$pid"
    if ! wait "$pid"; then
        cat "$work/suite.out" >&2
        say "FAIL: suite $* broke"
        exit 1
    fi
    grep '^RESULT ' "$work/suite.out" | tee -a "$results" | sed 's/^RESULT /    /' >&2
}

say "release builds"
cargo build --release --quiet --bins
suite_bin=$(cargo build --release --quiet --bench suite --message-format=json \
    | grep -o '"executable":"[^"]*suite[^"]*"' | tail -1 | cut -d'"' -f4)
[ -x "$suite_bin" ] || { say "FAIL: the suite did not build"; exit 1; }
scripts/build-image.sh >/dev/null
started=$SECONDS
engine=$(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')
{
    echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), Docker Engine $engine"
    echo "mode: $([ "$quick" = 1 ] && echo quick || echo full), $runs run(s), $starts starts, burst of $burst, store of $store tasks, wrk ${wrk_secs} s per point"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2

# the raw engine's burst: 1/4/8/16 threads in the first run, then only the best of those
raw_threads="1,4,8,16"
for r in $(seq "$runs"); do
    say "run $r/$runs: cluster (start latency, burst at $raw_threads raw threads, footprint, kills)"
    SKIFF_SUITE_NODES="${prefix}r${r}a,${prefix}r${r}b,${prefix}raw" SKIFF_SUITE_STARTS=$starts \
        SKIFF_SUITE_BURST=$burst SKIFF_SUITE_RAW_THREADS=$raw_threads run_suite cluster
    raw_threads=$(awk '$2 == "burst_raw_best_threads" {t = $3} END {printf "%d", t}' "$results")
done

if [ "$swarm_was" != active ]; then
    say "swarm init --advertise-addr 127.0.0.1"
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
fi
for r in $(seq "$runs"); do
    say "run $r/$runs: Docker Swarm (single start, burst, kill)"
    SKIFF_SUITE_LABEL="${prefix}" SKIFF_SUITE_SWARM_STARTS=$swarm_starts SKIFF_SUITE_BURST=$burst run_suite swarm
done
swarm_cleanup

for r in $(seq "$runs"); do
    say "run $r/$runs: API with wrk (stores of 100 and $store tasks)"
    SKIFF_SUITE_DIR="$work" SKIFF_SUITE_WRK_SECS=$wrk_secs SKIFF_SUITE_STORE=$store run_suite api
done

say "placement (cargo bench --bench placement, $place_runs run(s))"
for _ in $(seq "$place_runs"); do
    cargo bench --quiet --bench placement 2>/dev/null \
        | awk '$1 == "round-robin" || $1 == "roundrobin" || $1 == "epvm" || $1 == "e-pvm" {
                   s = $1; gsub("-", "", s); print "RESULT place_" s "_" $2 " " $4 }' \
        | tee -a "$results" | sed 's/^RESULT /    /' >&2
done

say "idle writes (scripts/idle-writes.sh, $idle s)"
IDLE_SECONDS=$idle scripts/idle-writes.sh >"$work/idle.out" 2>&1 || { cat "$work/idle.out" >&2; say "FAIL: idle-writes"; exit 1; }
awk '/manager write_bytes/ {print "RESULT idle_manager_write_bytes " $NF}
     /worker  write_bytes/ {print "RESULT idle_worker_write_bytes " $NF}' "$work/idle.out" \
    | tee -a "$results" | sed 's/^RESULT /    /' >&2

say "done in $((SECONDS - started)) s; the table (also in $out/table.md):"
{
    cat "$out/machine.txt"
    echo
    SKIFF_SUITE_STORE=$store "$suite_bin" report "$results"
} | tee "$out/table.md"
