# shellcheck shell=bash
# Sourced by the scripts (not run): installing what they need on a fresh machine, and the one
# clean-up they all run on exit.
#
#   need_packages busybox-static curl   # installs, or stops with the exact command to run
#   on_exit_kill "$pid"                 # a process to stop
#   on_exit_remove_node "$name"         # containers labelled skiff.node=NAME to remove
#   on_exit_remove_dir "$dir"           # a directory to delete
#   on_exit_call some_function          # a function of the script to call, once they are stopped
#   clean_up_on_exit                    # arms the trap (EXIT, INT, TERM)

# The Debian packages of what is missing among `busybox-static` (a static /bin/busybox, unless
# BUSYBOX names one), `curl` and `python3-venv`, of those asked for.
missing_packages() { # package...
    local p
    for p in "$@"; do
        case "$p" in
            busybox-static)
                [ -n "${BUSYBOX:-}" ] || { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || echo "$p" ;;
            curl) command -v curl >/dev/null 2>&1 || echo "$p" ;;
            python3-venv) python3 -m venv --help >/dev/null 2>&1 || echo "$p" ;;
            chromium) command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || echo "$p" ;;
            chromium-driver) command -v chromedriver >/dev/null 2>&1 || echo "$p" ;;
            *) dpkg -s "$p" >/dev/null 2>&1 || echo "$p" ;;
        esac
    done
}

# Installs the missing ones when root on a Debian-like system (one `apt-get update` per run,
# shared with the scripts this one calls); otherwise stops, saying the exact command to run.
need_packages() { # package...
    local missing
    mapfile -t missing < <(missing_packages "$@")
    [ ${#missing[@]} -gt 0 ] || return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "setup: missing ${missing[*]}; this is not a Debian-like system: install a static busybox and curl" >&2
        echo "setup: with your package manager, then run again with BUSYBOX=/path/to/static/busybox" >&2
        exit 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing ${missing[*]}; run:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${SKIFF_APT_UPDATED:-}" ]; then
        apt-get update -qq
        export SKIFF_APT_UPDATED=1
    fi
    apt-get install -y -qq "${missing[@]}" >/dev/null
}

cleanup_pids=()
cleanup_nodes=()
cleanup_dirs=()
cleanup_calls=()
# printed last, e.g. where the logs are
cleanup_note=""

on_exit_kill() { cleanup_pids+=("$@"); }
on_exit_remove_node() { cleanup_nodes+=("$@"); }
on_exit_remove_dir() { cleanup_dirs+=("$@"); }
on_exit_call() { cleanup_calls+=("$@"); }

# Stops the processes (and waits for them), calls the script's own clean-ups, removes the
# nodes' containers and the directories.
cleanup() {
    trap - EXIT INT TERM
    local pid node ids dir call
    for pid in "${cleanup_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${cleanup_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for call in "${cleanup_calls[@]}"; do "$call" || true; done
    for node in "${cleanup_nodes[@]}"; do
        ids=$(docker ps -aq --filter "label=skiff.node=$node" 2>/dev/null || true)
        # shellcheck disable=SC2086 # one argument per id
        [ -z "$ids" ] || docker rm -f $ids >/dev/null || true
    done
    for dir in "${cleanup_dirs[@]}"; do rm -rf "$dir"; done
    [ -z "$cleanup_note" ] || echo "$cleanup_note"
}

clean_up_on_exit() {
    trap cleanup EXIT
    trap 'cleanup; exit 130' INT TERM
}
