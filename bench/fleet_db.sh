#!/usr/bin/env bash
# Fleet database: how fast the renewal loop finds due certificates among N (default 100,000),
# on SQLite and on PostgreSQL (release build). Prints the fill time and the median of RUNS
# `due_certificates(now, 100)` queries: with the renewals of the next hour due ("due now"), with
# half the fleet due ("due in 30 days"), and one claim_due + release pass. The target is under
# 50 ms for each. Then `/metrics` with the same fleet (1,000 hosts, one install report per
# certificate): the scrape-time queries alone (`fleet_stats`) and the whole body as the handler
# makes it, median of 11; the target is under 500 ms.
#
#   ./bench/fleet_db.sh [N] [RUNS] [sqlite|postgres|both]     (defaults 100000 51 both)
#
# PostgreSQL: DATABASE_URL when set (a fresh database is created there and dropped afterwards),
# else a throwaway cluster from the `postgresql` package (initdb + pg_ctl, as the `postgres`
# user when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${3:-both}" != sqlite ] && [ -z "${DATABASE_URL:-}" ] &&
  ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "bench: PostgreSQL is missing (apt-get install postgresql, or set DATABASE_URL)" >&2
  exit 1
fi
cargo build --release --locked -q -p certfleet-fleet --example fleet_db_bench
exec target/release/examples/fleet_db_bench "${1:-100000}" "${2:-51}" "${3:-both}"
