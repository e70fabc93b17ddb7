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

# What a package gives, for a machine without dpkg to ask: the commands that show it is installed
# (all of them), then after a `|` what to install elsewhere. A package not listed gives a command
# of its own name and needs no words.
package_commands() { # package
    case "$1" in
        busybox-static) echo "busybox|a static busybox, then run again with BUSYBOX=/path/to/it" ;;
        chromium) echo "chromium|Chromium (the command chromium or chromium-browser)" ;;
        chromium-driver) echo "chromedriver|ChromeDriver, the driver of the same Chromium" ;;
        prometheus) echo "promtool prometheus|Prometheus, the server and promtool" ;;
        iproute2) echo "ip|iproute2 (the ip command)" ;;
        util-linux) echo "nsenter|util-linux (for nsenter)" ;;
        linux-perf) echo "perf|perf, of your kernel's version" ;;
        python3-venv) echo "python3|Python 3 with its venv module" ;;
        *) echo "$1|" ;;
    esac
}

# The commands a package gives that are not on the PATH.
absent_commands() { # package
    local entry commands c absent=()
    entry=$(package_commands "$1")
    read -ra commands <<<"${entry%%|*}"
    for c in "${commands[@]}"; do command -v "$c" >/dev/null 2>&1 || absent+=("$c"); done
    echo "${absent[*]}"
}

# Whether every command a package gives is on the PATH.
has_commands() { # package
    [ -z "$(absent_commands "$1")" ]
}

# The packages missing among those asked for: `busybox-static` (a static /bin/busybox, unless
# BUSYBOX names one), `curl`, `python3-venv`, `chromium` and `chromium-driver` by what they give;
# the others by dpkg where there is one, else by their commands (`package_commands`).
missing_packages() { # package...
    local p
    for p in "$@"; do
        case "$p" in
            busybox-static)
                [ -n "${BUSYBOX:-}" ] || { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || echo "$p" ;;
            curl) command -v curl >/dev/null 2>&1 || echo "$p" ;;
            python3-venv) python3 -m venv --help >/dev/null 2>&1 || echo "$p" ;;
            chromium) command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || echo "$p" ;;
            chromium-driver) has_commands "$p" || echo "$p" ;;
            *)
                if command -v dpkg >/dev/null 2>&1; then
                    dpkg -s "$p" >/dev/null 2>&1 || echo "$p"
                else
                    has_commands "$p" || echo "$p"
                fi ;;
        esac
    done
}

# Installs the missing ones when root on a Debian-like system (one `apt-get update` per run,
# shared with the scripts this one calls); otherwise stops, saying the exact command to run, or
# elsewhere what to install. SKIFF_SETUP_UID stands for `id -u` (the tests of this file).
need_packages() { # package...
    local missing p entry hint absent
    mapfile -t missing < <(missing_packages "$@")
    [ ${#missing[@]} -gt 0 ] || return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "setup: this is not a Debian-like system; install with your package manager:" >&2
        for p in "${missing[@]}"; do
            entry=$(package_commands "$p")
            hint=${entry#*|}
            absent=$(absent_commands "$p")
            echo "    $p${hint:+: $hint}${absent:+ (not found: $absent)}" >&2
        done
        echo "setup: then run again" >&2
        exit 1
    fi
    if [ "${SKIFF_SETUP_UID:-$(id -u)}" -ne 0 ]; then
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
