#!/usr/bin/env bash
# Dashboard: first byte of each page with N certificates (default 100,000) in SQLite, over the
# real TLS listener on loopback, logged in through the login form; median and max of RUNS
# requests after one warm-up. The target is under 200 ms for `/` and `/certificates`.
#
#   ./bench/dashboard.sh [N] [RUNS] [--debug]     (defaults 100000 21; release build)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${3:-}" = --debug ]; then profile=debug; fi
if [ $profile = release ]; then
  cargo build --release --locked -q -p certfleet-fleet --example dashboard_bench
else
  cargo build --locked -q -p certfleet-fleet --example dashboard_bench
fi
exec "target/$profile/examples/dashboard_bench" "${1:-100000}" "${2:-21}"
