#!/usr/bin/env bash
# A cluster of hosts on one machine, for the multi-host tests (tests/hosts.rs): each host is a
# network namespace `skiff-hN` joined by a veth to the bridge `skiff-br0` in the root namespace,
# with an address of its own (10.213.0.1N/24; the bridge, where the manager and the tests live, is
# 10.213.0.1) and a Docker Engine of its own started inside it, with the test image loaded.
#
#   hosts.sh up N               build N hosts (refuses if leftovers of an earlier run would collide)
#   hosts.sh down               tear everything down: workers, engines, namespaces, links, mounts, data
#   hosts.sh list               one line per host: name, address, engine socket, netns, worker port
#   hosts.sh worker HOST CMD…   exec CMD… (a worker) inside HOST's namespace, its PID recorded
#   hosts.sh cut HOST           cut HOST off the network (its link down)
#   hosts.sh cut-manager HOST   drop only the manager ↔ worker traffic (the worker's port, from and
#                               to the bridge's address, where the manager runs), in HOST
#   hosts.sh heal HOST          undo both cuts
#   hosts.sh engine-stop HOST [--kill]   stop HOST's engine (SIGTERM, or SIGKILL as a crash)
#   hosts.sh engine-start HOST  start it again, as `up` did
#   hosts.sh pause|resume HOST  SIGSTOP / SIGCONT HOST's worker
#   hosts.sh add-address HOST   give HOST a second address (10.213.0.2N), printed; for a worker
#                               that advertises an address other than the one it reaches the
#                               manager from (gone with the namespace)
#
# Only addresses of 10.213.0.0/16 inside namespaces made here are ever targeted: the hosts on
# 10.213.0.0/24, their engines' container bridges on 10.213.(100+N).0/24. The Engine is started with
# `nsenter --net=…`, not `ip netns exec`, which remounts /sys and so loses the cgroup v1 mounts the
# Engine needs. Each Engine has its own config file: the system's daemon.json sets a data-root.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
base="${SKIFF_HOSTS_DIR:-/var/lib/skiff-hosts}"
bridge=skiff-br0
net=10.213
bridge_addr="$net.0.1"
worker_port="${SKIFF_HOSTS_WORKER_PORT:-7070}"
image="${SKIFF_IMAGE:-skiff/busybox:latest}"

say() { printf 'hosts: %s\n' "$*" >&2; }
run() {
    say "+ $*"
    "$@"
}
die() {
    say "FAIL: $*"
    exit 1
}

host_dir() { echo "$base/$1"; }
host_index() { cat "$(host_dir "$1")/index"; }
host_addr() { echo "$net.0.$((10 + $(host_index "$1")))"; }
netns_path() { echo "/run/netns/$1"; }
in_ns() {
    local name=$1
    shift
    nsenter --net="$(netns_path "$name")" "$@"
}

# A host named on the command line must be one this harness made.
check_host() {
    [[ "${1:-}" =~ ^skiff-h[0-9]+$ ]] || die "not a harness host: '${1:-}' (expected skiff-hN)"
    [ -f "$(host_dir "$1")/index" ] && [ -e "$(netns_path "$1")" ] || die "no host $1; run '$0 up N' first"
}

# The PID in a file, if that process is alive and in this host's namespace (so that a stale file
# never makes us signal some other process).
ns_pid() {
    local name=$1 file=$2 pid
    [ -f "$file" ] || return 1
    pid=$(cat "$file")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [ "$(ip netns identify "$pid" 2>/dev/null)" = "$name" ] || return 1
    echo "$pid"
}

# overlay2 where the kernel has overlayfs and the data root is not itself on an overlay (as in a
# container, where the system engine may use fuse-overlayfs for that reason); else what works.
storage_driver() {
    if [ -n "${SKIFF_HOSTS_STORAGE_DRIVER:-}" ]; then
        echo "$SKIFF_HOSTS_STORAGE_DRIVER"
    elif grep -qw overlay /proc/filesystems && [ "$(stat -f -c %T "$base")" != overlayfs ]; then
        echo overlay2
    elif command -v fuse-overlayfs >/dev/null 2>&1; then
        echo fuse-overlayfs
    else
        echo vfs
    fi
}

engine_answers() { docker -H "unix://$(host_dir "$1")/docker.sock" version >/dev/null 2>&1; }

start_engine() {
    local name=$1 dir i
    dir=$(host_dir "$name")
    i=$(host_index "$name")
    rm -f "$dir/docker.pid"
    say "starting the engine of $name (storage driver $(storage_driver), log $dir/dockerd.log)"
    # setsid: the engine outlives this script and is not hit by the caller's Ctrl-C; it is
    # stopped by PID (engine-stop, down).
    say "+ setsid nsenter --net=$(netns_path "$name") dockerd --config-file $dir/daemon.json --data-root $dir/data …"
    setsid nsenter --net="$(netns_path "$name")" dockerd \
        --config-file "$dir/daemon.json" \
        --data-root "$dir/data" \
        --exec-root "$dir/exec" \
        --pidfile "$dir/docker.pid" \
        -H "unix://$dir/docker.sock" \
        --bip "$net.$((100 + i)).1/24" \
        --storage-driver "$(storage_driver)" \
        --cgroup-parent "/$name" \
        >>"$dir/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 1 120); do
        if engine_answers "$name" && ns_pid "$name" "$dir/docker.pid" >/dev/null; then
            say "engine of $name answers (pid $(cat "$dir/docker.pid"))"
            return 0
        fi
        sleep 0.5
    done
    tail -20 "$dir/dockerd.log" >&2 || true
    die "the engine of $name did not answer within 60 s"
}

stop_engine() {
    local name=$1 signal=${2:-TERM} dir pid
    dir=$(host_dir "$name")
    if ! pid=$(ns_pid "$name" "$dir/docker.pid"); then
        say "the engine of $name is not running"
        return 0
    fi
    run kill "-$signal" "$pid"
    for _ in $(seq 1 80); do
        kill -0 "$pid" 2>/dev/null || {
            say "engine of $name (pid $pid) stopped"
            return 0
        }
        sleep 0.5
    done
    say "the engine of $name did not stop within 40 s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

leftovers() {
    local found=()
    [ -e "$base" ] && found+=("directory $base")
    ip link show "$bridge" >/dev/null 2>&1 && found+=("bridge $bridge")
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^skiff-' || true); do
        found+=("namespace $ns")
    done
    [ -n "$(ip route show "$net.0.0/24" 2>/dev/null)" ] && found+=("a route to $net.0.0/24")
    if [ ${#found[@]} -gt 0 ]; then
        printf '%s\n' "${found[@]}"
    fi
}

cmd_up() {
    local n=${1:-}
    [[ "$n" =~ ^[1-9]$ ]] || die "usage: $0 up N (1 to 9 hosts)"
    local left
    left=$(leftovers)
    [ -z "$left" ] || die "leftovers of an earlier run would collide (run '$0 down'): $(echo "$left" | paste -sd, -)"
    command -v dockerd >/dev/null || die "dockerd is not installed"
    docker info >/dev/null 2>&1 || die "the system engine does not answer (it holds the test image)"

    # from here on, a failure takes down whatever was built
    trap 'status=$?; if [ $status -ne 0 ]; then say "up failed; tearing down"; cmd_down || true; fi' EXIT

    run mkdir -p "$base"
    run "$root/scripts/build-image.sh" >&2
    say "saving $image from the system engine"
    docker save "$image" -o "$base/image.tar"

    run ip link add "$bridge" type bridge
    run ip addr add "$bridge_addr/24" dev "$bridge"
    run ip link set "$bridge" up

    local i name dir
    for i in $(seq 1 "$n"); do
        name="skiff-h$i"
        dir=$(host_dir "$name")
        run mkdir -p "$dir"
        echo "$i" >"$dir/index"
        # an empty config: the system's daemon.json must not leak in (it sets data-root)
        echo '{}' >"$dir/daemon.json"
        run ip netns add "$name"
        run ip link add "$name-v" type veth peer name "$name-p"
        run ip link set "$name-v" master "$bridge" up
        run ip link set "$name-p" netns "$name"
        run ip -n "$name" link set "$name-p" name eth0
        run ip -n "$name" addr add "$(host_addr "$name")/24" dev eth0
        run ip -n "$name" link set lo up
        run ip -n "$name" link set eth0 up
        run ip -n "$name" route add default via "$bridge_addr"
        # where cut-manager puts its rules; heal flushes it
        run in_ns "$name" iptables -N SKIFF-FAULT
        run in_ns "$name" iptables -I INPUT -j SKIFF-FAULT
        run in_ns "$name" iptables -I OUTPUT -j SKIFF-FAULT
    done
    for i in $(seq 1 "$n"); do
        name="skiff-h$i"
        start_engine "$name"
        say "loading $image into $name"
        docker -H "unix://$(host_dir "$name")/docker.sock" load -i "$base/image.tar" >&2
    done
    rm -f "$base/image.tar"
    trap - EXIT
    cmd_list
}

cmd_list() {
    local dir name
    for dir in "$base"/skiff-h*; do
        [ -f "$dir/index" ] || continue
        name=$(basename "$dir")
        echo "host name=$name addr=$(host_addr "$name") socket=$dir/docker.sock netns=$(netns_path "$name") worker_port=$worker_port"
    done
}

cmd_worker() {
    local name=$1
    shift
    check_host "$name"
    echo $$ >"$(host_dir "$name")/worker.pid"
    # nsenter execs the worker (no fork without --pid), so the recorded PID is the worker's
    exec nsenter --net="$(netns_path "$name")" "$@"
}

# Everything this harness may have made, whether or not its state directory survived.
cmd_down() {
    local names=() name dir pid
    for dir in "$base"/skiff-h*; do
        [ -d "$dir" ] && names+=("$(basename "$dir")")
    done
    for name in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^skiff-h[0-9]*$' || true); do
        [[ " ${names[*]} " == *" $name "* ]] || names+=("$name")
    done
    for name in "${names[@]}"; do
        dir=$(host_dir "$name")
        say "tearing down $name"
        if pid=$(ns_pid "$name" "$dir/worker.pid"); then
            run kill -CONT "$pid" || true
            run kill -KILL "$pid" || true
        fi
        if [ -S "$dir/docker.sock" ] && engine_answers "$name"; then
            local ids
            ids=$(docker -H "unix://$dir/docker.sock" ps -aq 2>/dev/null || true)
            if [ -n "$ids" ]; then
                # shellcheck disable=SC2086
                run docker -H "unix://$dir/docker.sock" rm -f $ids >/dev/null || true
            fi
        fi
        [ -d "$dir" ] && stop_engine "$name" TERM
        # whatever still runs in the namespace (containerd, shims, proxies, a worker)
        if [ -e "$(netns_path "$name")" ]; then
            for pid in $(ip netns pids "$name" 2>/dev/null || true); do
                run kill -KILL "$pid" || true
            done
        fi
        # containers' processes live in namespaces of their own: find them by the engine's cgroup
        local cg
        for cg in /sys/fs/cgroup/*/"$name"; do
            [ -d "$cg" ] || continue
            for pid in $(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null); do
                run kill -KILL "$pid" || true
            done
        done
        for cg in /sys/fs/cgroup/*/"$name"; do
            [ -d "$cg" ] || continue
            for _ in $(seq 1 20); do
                find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
                [ -d "$cg" ] || break
                sleep 0.25
            done
        done
        if [ -e "$(netns_path "$name")" ]; then
            run ip netns del "$name" || true
        fi
        if ip link show "$name-v" >/dev/null 2>&1; then
            run ip link del "$name-v" || true
        fi
    done
    # mounts the engines left (overlays, their namespaces' files), deepest first
    local m
    for m in $(awk -v b="$base/" 'index($2, b) == 1 {print $2}' /proc/mounts | sort -r); do
        run umount "$m" 2>/dev/null || run umount -l "$m" || true
    done
    if ip link show "$bridge" >/dev/null 2>&1; then
        run ip link del "$bridge"
    fi
    if [ -e "$base" ]; then
        run rm -rf "$base"
    fi
    local left
    left=$(leftovers)
    [ -z "$left" ] || die "still there after down: $(echo "$left" | paste -sd, -)"
    say "down: nothing left"
}

cmd_cut() {
    check_host "$1"
    run ip link set "$1-v" down
}

cmd_cut_manager() {
    check_host "$1"
    run in_ns "$1" iptables -A SKIFF-FAULT -s "$bridge_addr" -p tcp --dport "$worker_port" -j DROP
    run in_ns "$1" iptables -A SKIFF-FAULT -d "$bridge_addr" -p tcp --sport "$worker_port" -j DROP
}

cmd_heal() {
    check_host "$1"
    run in_ns "$1" iptables -F SKIFF-FAULT
    run ip link set "$1-v" up
}

cmd_add_address() {
    local name=$1 addr
    check_host "$name"
    addr="$net.0.$((20 + $(host_index "$name")))"
    if ! ip -n "$name" -o addr show dev eth0 | grep -qw "$addr/24"; then
        run ip -n "$name" addr add "$addr/24" dev eth0
    fi
    echo "$addr"
}

cmd_signal_worker() {
    local name=$1 signal=$2 pid
    check_host "$name"
    pid=$(ns_pid "$name" "$(host_dir "$name")/worker.pid") || die "no worker runs on $name"
    run kill "-$signal" "$pid"
}

main() {
    local cmd=${1:-}
    shift || true
    case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    list) cmd_list ;;
    worker)
        [ $# -ge 2 ] || die "usage: $0 worker HOST COMMAND…"
        cmd_worker "$@"
        ;;
    cut) cmd_cut "${1:-}" ;;
    cut-manager) cmd_cut_manager "${1:-}" ;;
    heal) cmd_heal "${1:-}" ;;
    engine-stop)
        check_host "${1:-}"
        if [ "${2:-}" = --kill ]; then stop_engine "$1" KILL; else stop_engine "$1" TERM; fi
        ;;
    engine-start)
        check_host "${1:-}"
        if ns_pid "$1" "$(host_dir "$1")/docker.pid" >/dev/null; then die "the engine of $1 already runs"; fi
        start_engine "$1"
        ;;
    add-address) cmd_add_address "${1:-}" ;;
    pause) cmd_signal_worker "${1:-}" STOP ;;
    resume) cmd_signal_worker "${1:-}" CONT ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
    esac
}

[ "$(id -u)" = 0 ] || die "needs root (namespaces, links, engines)"
main "$@"
