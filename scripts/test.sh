#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests that start real managers, workers
# and containers on the local Docker Engine. Fails (never skips) when the engine does not answer.
# On a fresh Debian-like machine, as root, it installs what it needs (busybox-static, curl, and
# chromium with chromium-driver for the dashboard's browser test, prometheus for promtool and the
# Prometheus server tests/metrics.rs runs, caddy for the ingress tests of tests/ingress.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

if ! docker info >/dev/null 2>&1; then
    echo "test: the Docker Engine does not answer; the integration tests need it" >&2
    exit 1
fi
need_packages busybox-static curl chromium chromium-driver prometheus caddy
echo "test: building the image skiff/busybox:latest"
scripts/build-image.sh
echo "test: cargo test"
cargo test "$@"
