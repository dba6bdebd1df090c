#!/usr/bin/env bash
# Served-certificate watch: one round over N loopback TLS endpoints (default 1,000), each with
# its own certificate, every 10th serving the leaf without its intermediate; ROUNDS rounds,
# median and max. The target is under 10 s for 1,000.
#
#   ./bench/watch.sh [N] [ROUNDS] [--debug]     (defaults 1000 5; release build)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${3:-}" = --debug ]; then profile=debug; fi
if [ $profile = release ]; then
  cargo build --release --locked -q -p certfleet-fleet --example watch_bench
else
  cargo build --locked -q -p certfleet-fleet --example watch_bench
fi
# N listeners and up to 64 connections at once: more than the usual 1,024 open files.
ulimit -n "$(( ${1:-1000} * 2 + 512 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec "target/$profile/examples/watch_bench" "${1:-1000}" "${2:-5}"
