#!/usr/bin/env bash
# Measures what a quiet cluster costs: a manager and a worker with persisted stores run 10 tasks;
# with no user action, for IDLE_SECONDS (default 60), it prints the bytes each process sent to
# storage (/proc/PID/io write_bytes), whether the database files changed (size, mtime), the CPU
# time each used, and their resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

idle="${IDLE_SECONDS:-60}"
tasks="${TASKS:-10}"
node="idle-$$"
work=$(mktemp -d -t skiff-idle.XXXXXX)
say() { printf 'idle-writes: %s\n' "$*"; }
on_exit_remove_node "$node"
on_exit_remove_dir "$work"
clean_up_on_exit

cargo build --release --quiet
scripts/build-image.sh >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release"
mport=$((20000 + RANDOM % 10000)); wport=$((mport + 1))
"$bin/worker" -n "$node" -p "$wport" --bind 127.0.0.1 -st persisted --data-dir "$work/data" 2>"$work/worker.log" & on_exit_kill $!
wpid=$!
"$bin/manager" -p "$mport" --bind 127.0.0.1 -st persisted --data-dir "$work/data" -w "127.0.0.1:$wport" 2>"$work/manager.log" & on_exit_kill $!
mpid=$!
client=("$bin/client" --host 127.0.0.1 -p "$mport")
deadline=$((SECONDS + 30))
until "${client[@]}" list-nodes 2>/dev/null | grep -q ' up '; do
    [ $SECONDS -lt $deadline ] || { say "the worker never came up"; exit 1; }
    sleep 0.2
done
spec="$work/spec.json"
echo '{"name": "idle", "image": "skiff/busybox:latest", "cmd": ["sleep", "3600"], "memory_mb": 16}' > "$spec"
for _ in $(seq "$tasks"); do "${client[@]}" start "$spec" >/dev/null; done
deadline=$((SECONDS + 120))
until [ "$("${client[@]}" list | grep -c ' Running ')" -eq "$tasks" ]; do
    [ $SECONDS -lt $deadline ] || { say "the tasks never all ran"; exit 1; }
    sleep 0.5
done
say "$tasks tasks running; settling for 5 s"
sleep 5

wb() { awk '/^write_bytes:/ {print $2}' "/proc/$1/io"; }
files() { (cd "$work/data" && stat -c '%n %s %Y' * | sort); }
m0=$(wb "$mpid"); w0=$(wb "$wpid"); f0=$(files)
mc0=$(awk '{print $14 + $15}' "/proc/$mpid/stat"); wc0=$(awk '{print $14 + $15}' "/proc/$wpid/stat")
say "idle for $idle s ..."
sleep "$idle"
m1=$(wb "$mpid"); w1=$(wb "$wpid"); f1=$(files)
mc1=$(awk '{print $14 + $15}' "/proc/$mpid/stat"); wc1=$(awk '{print $14 + $15}' "/proc/$wpid/stat")
hz=$(getconf CLK_TCK)

rss() { awk '/^VmRSS:/ {print $2 " kB"}' "/proc/$1/status"; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
say "resident memory: manager $(rss "$mpid"), worker $(rss "$wpid") (with $tasks tasks)"
say "manager write_bytes over ${idle} s: $((m1 - m0))"
say "worker  write_bytes over ${idle} s: $((w1 - w0))"
say "CPU time over ${idle} s: manager $(( (mc1 - mc0) * 1000 / hz )) ms, worker $(( (wc1 - wc0) * 1000 / hz )) ms"
if [ "$f0" = "$f1" ]; then
    say "database files unchanged (size and mtime):"
else
    say "database files CHANGED: before / after"; echo "$f0"; echo "---"
fi
echo "$f1" | sed 's/^/    /'
