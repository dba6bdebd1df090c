#!/usr/bin/env bash
# dns-01 issuance of *.example.test + example.test (two TXT values at one name) against a
# local Pebble that validates through a local BIND 9, updated with RFC 2136 + TSIG.
# Whole process, fresh config (account creation included) each run; prints the median wall
# time of certfleet (release build) and of real lego with its rfc2136 provider, tuned as in
# shared/test-env.md (polling 1 s, sequence 1 s, own resolver, no CNAME/NS pre-check).
#
#   ./bench/dns01.sh [RUNS]        (default 7; run on request, not in CI)
#
# Needs: named, tsig-keygen (bind9, bind9-utils), pebble, openssl, lego (optional), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}

for tool in named tsig-keygen pebble openssl python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install bind9 bind9-utils pebble openssl)" >&2; exit 1; }
done
cargo build --release --locked -q -p certfleet
certfleet="$PWD/target/release/certfleet"

d=$(mktemp -d /tmp/certfleet-bench-dns.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$d"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dns_port=$(free_port); acme_port=$(free_port); mgmt_port=$(free_port)

# --- BIND: example.test, TXT updatable anywhere in it with one hmac-sha256 key ---------------
tsig-keygen -a hmac-sha256 bench-key > "$d/bench.key"
secret=$(sed -n 's/.*secret "\(.*\)";/\1/p' "$d/bench.key")
cat > "$d/named.conf" <<EOF
options { directory "$d"; pid-file "$d/named.pid"; session-keyfile "$d/session.key";
  managed-keys-directory "$d"; listen-on port $dns_port { 127.0.0.1; }; listen-on-v6 { none; };
  recursion no; dnssec-validation no; notify no; };
controls { };
include "$d/bench.key";
zone "example.test" { type primary; file "example.test.zone"; update-policy { grant bench-key zonesub TXT; }; };
EOF
cat > "$d/example.test.zone" <<EOF
\$ORIGIN example.test.
\$TTL 60
@ IN SOA ns1.example.test. hostmaster.example.test. 1 60 60 3600 1
@ IN NS ns1.example.test.
ns1 IN A 127.0.0.1
EOF
named -g -c "$d/named.conf" >"$d/named.log" 2>&1 &
pids+=($!)

# --- Pebble (HTTPS with a throwaway CA), validating through that BIND ------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
  -keyout "$d/ca-key.pem" -out "$d/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$d/pebble-key.pem" -out "$d/pebble.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$d/ext.cnf"
openssl x509 -req -in "$d/pebble.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial \
  -days 2 -extfile "$d/ext.cnf" -out "$d/pebble-cert.pem" 2>/dev/null
cat > "$d/pebble.json" <<EOF
{"pebble": {"listenAddress": "127.0.0.1:$acme_port", "managementListenAddress": "127.0.0.1:$mgmt_port",
  "certificate": "$d/pebble-cert.pem", "privateKey": "$d/pebble-key.pem",
  "httpPort": $(free_port), "tlsPort": $(free_port), "ocspResponderURL": "", "externalAccountBindingRequired": false}}
EOF
PEBBLE_VA_NOSLEEP=1 pebble -config "$d/pebble.json" -dnsserver "127.0.0.1:$dns_port" >"$d/pebble.log" 2>&1 &
pids+=($!)
url="https://127.0.0.1:$acme_port/dir"
for _ in $(seq 200); do
  if curl -s --cacert "$d/ca.pem" "$url" >/dev/null 2>&1 \
     && dig @127.0.0.1 -p "$dns_port" +short +time=1 +tries=1 example.test SOA | grep -q ns1; then ready=1; break; fi
  sleep 0.05
done
[ -n "${ready:-}" ] || { echo "bench: Pebble or BIND did not start:"; tail "$d/pebble.log" "$d/named.log"; exit 1; } >&2

umask 077
cat > "$d/rfc2136.ini" <<EOF
dns_rfc2136_server = 127.0.0.1
dns_rfc2136_port = $dns_port
dns_rfc2136_name = bench-key
dns_rfc2136_secret = $secret
dns_rfc2136_algorithm = HMAC-SHA256
EOF

run_certfleet() {
  "$certfleet" certonly --dns-rfc2136 --dns-rfc2136-credentials "$d/rfc2136.ini" \
    -d example.test -d '*.example.test' --server "$url" --ca-bundle "$d/ca.pem" \
    --config-dir "$1/etc" --work-dir "$1/work" --logs-dir "$1/logs" \
    --agree-tos --register-unsafely-without-email -n -q
}
check_certfleet() {
  openssl x509 -noout -ext subjectAltName -in "$1/etc/live/example.test/fullchain.pem" | grep -q '\*.example.test'
}
run_lego() {
  LEGO_CA_CERTIFICATES="$d/ca.pem" RFC2136_NAMESERVER="127.0.0.1:$dns_port" RFC2136_TSIG_KEY=bench-key \
  RFC2136_TSIG_SECRET="$secret" RFC2136_TSIG_ALGORITHM=hmac-sha256. RFC2136_SEQUENCE_INTERVAL=1 \
  RFC2136_POLLING_INTERVAL=1 RFC2136_PROPAGATION_TIMEOUT=20 \
    lego --server "$url" --email bench@example.test --accept-tos --path "$1/lego" \
    --domains example.test --domains '*.example.test' --dns rfc2136 \
    --dns.resolvers "127.0.0.1:$dns_port" --dns.disable-cp run
}
check_lego() {
  openssl x509 -noout -ext subjectAltName -in "$1/lego/certificates/example.test.crt" | grep -q '\*.example.test'
}

# Median wall time (seconds) of `runs` fresh runs of $1; stops at the first failure.
bench() {
  local tool=$1 times=() i t0 t1
  for i in $(seq "$runs"); do
    local w="$d/$tool.$i"; mkdir -p "$w"
    t0=$(date +%s.%N)
    if ! "run_$tool" "$w" >"$w.out" 2>&1; then
      echo "$tool: run $i failed:" >&2; tail -20 "$w.out" >&2; return 1
    fi
    t1=$(date +%s.%N)
    "check_$tool" "$w" || { echo "$tool: run $i issued no certificate for *.example.test" >&2; return 1; }
    times+=("$(python3 -c "print(f'{$t1-$t0:.3f}')")")
  done
  python3 -c 'import statistics,sys; v=sorted(map(float,sys.argv[2:])); print(f"{sys.argv[1]:10s} median {statistics.median(v):.3f} s   (min {v[0]:.3f}, max {v[-1]:.3f}, {len(v)} runs)")' "$tool" "${times[@]}"
}

echo "dns-01, *.example.test + example.test, Pebble (PEBBLE_VA_NOSLEEP=1) + BIND $(named -v | awk '{print $2}'), RFC 2136 + TSIG"
bench certfleet
if command -v lego >/dev/null; then bench lego; else echo "lego: not installed, skipped"; fi
