#!/usr/bin/env bash
# Property-based check of the fleet API against its own OpenAPI document (/api/openapi.json):
# schemathesis generates valid and invalid requests for every admin operation and checks the
# answers against the document (status codes, bodies, auth). Run by hand after changing the API
# or its schemas; not part of CI (it needs PyPI and takes a while).
#
#   ./bench/schemathesis.sh [EXAMPLES]      (default 30 per operation)
#   CERTFLEET_BIN=target/release/certfleet ./bench/schemathesis.sh
#
# Installs schemathesis into a venv under /tmp on first use. Starts its own `certfleet serve` on
# a throw-away data dir; the ACME server URL points nowhere (nothing is issued).
#
# Two passes: everything but POST /certificates with all checks; POST /certificates without
# `positive_data_acceptance`, because whether a schema-valid certificate can be added depends on
# things a schema cannot say (the names must be DNS names or IP addresses, a dns-01 provider
# and its credentials file must exist on the server, http-01 needs --http-01-listen). Agent
# routes need an enrolled host's client certificate and are left out.
#
# What it found, and what was changed: requests without any credential got 429 once an address
# had failed ten times (now always 401, and not counted: they guess nothing); JSON sent as
# text/plain got axum's plain-text 415 (now an ApiError saying what Content-Type to send);
# names, key types and ?limit= had no constraints in the schema (now patterns and ranges, and
# an out-of-range limit is a 400 instead of being clamped).
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-30}
venv=/tmp/certfleet-schemathesis-venv
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q schemathesis
fi
if [ -z "${CERTFLEET_BIN:-}" ]; then
  cargo build --locked -q -p certfleet
  CERTFLEET_BIN="$PWD/target/debug/certfleet"
fi
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CERTFLEET_LOG=warn "$CERTFLEET_BIN" serve --data-dir "$work/data" --listen "127.0.0.1:$port" \
  --server https://127.0.0.1:1/dir --register-unsafely-without-email >"$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -s "$work/data/admin.token" ] && break; sleep 0.1; done
token=$(tr -d '\n' <"$work/data/admin.token")
doc="https://127.0.0.1:$port/api/openapi.json"
st=("$venv/bin/st" run "$doc" -H "Authorization: Bearer $token" --tls-verify false -n "$examples" --exclude-tag agent)
rc=0
"${st[@]}" --checks all --exclude-operation-id add_certificate || rc=1
"${st[@]}" --checks all --include-operation-id add_certificate --exclude-checks positive_data_acceptance || rc=1
exit $rc
