#!/usr/bin/env bash
# Load test: 32 concurrent clients for 60 s (SKIFF_LOAD_SECONDS) against a manager with two
# workers on 127.0.0.1, then a reconciliation of the API's tasks against the engine's containers.
# Prints p50/p99 latencies per request kind; fails on a 5xx or a lost or duplicated task.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench load
