#!/usr/bin/env bash
# The main job end to end on local defaults: start a private Pebble ACME CA on loopback,
# issue a certificate for demo.example.test with certfleet's built-in standalone server,
# then list it. Everything lives in a temp dir (kept; its path is printed). Installs
# pebble with apt-get if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v pebble >/dev/null || need+=(pebble)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

cargo build --release --locked -q -p certfleet
bin="$PWD/target/release/certfleet"

demo=$(mktemp -d /tmp/certfleet-demo.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
acme_port=$(free_port); mgmt_port=$(free_port); http_port=$(free_port); dns_port=$(free_port); dns_mgmt=$(free_port)

# Pebble serves its API over HTTPS: a throwaway CA signs its certificate for 127.0.0.1,
# and certfleet trusts that CA (--ca-bundle).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=certfleet demo CA" \
  -keyout "$demo/ca-key.pem" -out "$demo/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$demo/pebble-key.pem" -out "$demo/pebble.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$demo/ext.cnf"
openssl x509 -req -in "$demo/pebble.csr" -CA "$demo/ca.pem" -CAkey "$demo/ca-key.pem" -CAcreateserial \
  -days 2 -extfile "$demo/ext.cnf" -out "$demo/pebble-cert.pem" 2>/dev/null
cat > "$demo/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$acme_port", "managementListenAddress": "127.0.0.1:$mgmt_port",
  "certificate": "$demo/pebble-cert.pem", "privateKey": "$demo/pebble-key.pem",
  "httpPort": $http_port, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON

# A DNS server that answers every name with 127.0.0.1, so Pebble validates against us.
pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$dns_port" \
  -http01 "" -https01 "" -tlsalpn01 "" -management "127.0.0.1:$dns_mgmt" >"$demo/dns.log" 2>&1 &
dns_pid=$!
PEBBLE_VA_NOSLEEP=1 pebble -config "$demo/pebble.json" -dnsserver "127.0.0.1:$dns_port" >"$demo/pebble.log" 2>&1 &
pebble_pid=$!
trap 'kill $pebble_pid $dns_pid 2>/dev/null || true' EXIT
ready=""
for _ in $(seq 200); do
  if curl -s --cacert "$demo/ca.pem" "https://127.0.0.1:$acme_port/dir" >/dev/null 2>&1 \
     && curl -s "http://127.0.0.1:$dns_mgmt/" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.05
done
[ -n "$ready" ] || { echo "demo: Pebble did not start; see $demo/pebble.log and $demo/dns.log" >&2; exit 1; }

common=(--config-dir "$demo/etc" --work-dir "$demo/work" --logs-dir "$demo/logs"
        --server "https://127.0.0.1:$acme_port/dir" --ca-bundle "$demo/ca.pem")
echo "== certfleet certonly --standalone -d demo.example.test -d www.demo.example.test"
"$bin" certonly "${common[@]}" --standalone --http-01-address 127.0.0.1 --http-01-port "$http_port" \
  -d demo.example.test -d www.demo.example.test --agree-tos -m admin@example.test -n
echo
echo "== certfleet certificates"
"$bin" certificates "${common[@]}"
echo
echo "Files are in $demo/etc (live/, archive/, renewal/, accounts/)."
