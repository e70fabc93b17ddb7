#!/usr/bin/env bash
# Builds offline base images for the Dockerfiles that `skiff::deploy` generates, from Debian's
# package archive alone (no registry): debootstrap a minimal Debian of this machine's release,
# `docker import` it as skiff/debian:SUITE, then build the language images on it with Debian's
# packages (build containers reach the archive):
#   skiff/python:3   python3, pip and venv, `python`; PIP_BREAK_SYSTEM_PACKAGES=1 (the image is
#                    the app's own, so pip installs into the system's Python)
#   skiff/node:lts   nodejs and npm
#   skiff/golang:1   golang-go, git, CA certificates
# Static sites and Go's runtime use skiff/busybox:latest (scripts/build-image.sh).
# `skiff::deploy::BuildConfig::local()` names these images (docs/deploy.md).
#
# Idempotent: an image already there is kept (--rebuild builds it again).
#   scripts/build-base-images.sh                 # all
#   scripts/build-base-images.sh python          # skiff/debian and skiff/python only
#   SKIFF_DEBIAN_MIRROR=http://mirror/debian scripts/build-base-images.sh
# The mirror defaults to the first one apt is configured with, else deb.debian.org.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

say() { printf 'build-base-images: %s\n' "$*"; }

rebuild=""
wanted=()
for arg in "$@"; do
    case "$arg" in
        --rebuild) rebuild=1 ;;
        python | node | go) wanted+=("$arg") ;;
        *) say "unknown argument $arg (python, node, go, --rebuild)" >&2; exit 2 ;;
    esac
done
[ ${#wanted[@]} -gt 0 ] || wanted=(python node go)

# shellcheck source=/dev/null
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$suite" ] || { say "cannot tell this machine's Debian release (VERSION_CODENAME in /etc/os-release)" >&2; exit 1; }

mirror="${SKIFF_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 || true)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list)
fi
mirror="${mirror:-http://deb.debian.org/debian}"

need_packages debootstrap

exists() { [ -z "$rebuild" ] && docker image inspect "$1" >/dev/null 2>&1; }

base="skiff/debian:$suite"
if exists "$base"; then
    say "$base is there"
else
    work=$(mktemp -d)
    on_exit_remove_dir "$work"
    clean_up_on_exit
    say "debootstrap $suite (minbase) from $mirror"
    started=$SECONDS
    if ! debootstrap --variant=minbase --include=ca-certificates "$suite" "$work/root" "$mirror" >"$work/log" 2>&1; then
        tail -20 "$work/log" >&2
        say "debootstrap failed: is the archive reachable at $mirror? (SKIFF_DEBIAN_MIRROR names another)" >&2
        exit 1
    fi
    # what an image needs no more: package lists, caches, logs
    rm -rf "$work/root/var/lib/apt/lists/"* "$work/root/var/cache/apt/"*.bin "$work/root/var/cache/apt/archives/"*.deb \
        "$work/root/var/log/"*
    say "importing $base ($((SECONDS - started)) s so far)"
    tar -C "$work/root" -c . | docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
        -c 'ENV DEBIAN_FRONTEND=noninteractive' \
        -c 'CMD ["bash"]' \
        -c "LABEL skiff.base=debian skiff.suite=$suite" \
        - "$base" >/dev/null
    say "built $base in $((SECONDS - started)) s"
fi

# one image on the base: its name, then the packages to install and the Dockerfile's last lines
layer() { # image packages extra-dockerfile-lines
    local image=$1 packages=$2 extra=$3 started=$SECONDS
    if exists "$image"; then
        say "$image is there"
        return
    fi
    say "building $image: $packages"
    local log
    log=$(mktemp)
    # the build's output is shown only when it fails (the CLI's notes on builders are noise)
    if ! docker build --label skiff.base="$image" -t "$image" - >"$log" 2>&1 <<DOCKERFILE; then
FROM $base
RUN apt-get update && apt-get install -y --no-install-recommends $packages && rm -rf /var/lib/apt/lists/*
$extra
DOCKERFILE
        tail -30 "$log" >&2
        rm -f "$log"
        say "building $image failed" >&2
        exit 1
    fi
    rm -f "$log"
    say "built $image in $((SECONDS - started)) s"
}

for lang in "${wanted[@]}"; do
    case "$lang" in
        python) layer skiff/python:3 "python3 python3-pip python3-venv python-is-python3" \
            "ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore" ;;
        # no audit, funding or update checks: they would ask npm's registry
        node) layer skiff/node:lts "nodejs npm" "ENV NPM_CONFIG_AUDIT=false NPM_CONFIG_FUND=false NPM_CONFIG_UPDATE_NOTIFIER=false" ;;
        go) layer skiff/golang:1 "golang-go git ca-certificates" "ENV GOPATH=/go PATH=/go/bin:/usr/lib/go/bin:\$PATH" ;;
    esac
done
docker images --filter label=skiff.base --format 'build-base-images: {{.Repository}}:{{.Tag}} {{.Size}}'
