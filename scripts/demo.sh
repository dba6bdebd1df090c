#!/usr/bin/env bash
# The main job end to end on local defaults: start a private Pebble ACME CA on loopback,
# issue a certificate for demo.example.test with certfleet's built-in standalone server,
# then list it. Everything lives in a temp dir (kept; its path is printed). Installs
# pebble with apt-get if it is missing.
# Then fleet mode on the same CA: `certfleet serve` on SQLite answering http-01 itself, two
# hosts (each an nginx on loopback) enrolled with one-time tokens, and on each an agent that
# installs its certificate into nginx and proves by a TLS handshake that nginx serves it.
# Installs nginx with apt-get if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v pebble >/dev/null || need+=(pebble)
command -v openssl >/dev/null || need+=(openssl)
command -v nginx >/dev/null || need+=(nginx-light)
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
pids=("$pebble_pid" "$dns_pid")
cleanup() {
  for conf in "$demo"/web*/nginx.conf; do [ -f "$conf" ] && nginx -c "$conf" -e "${conf%.conf}.err" -s quit 2>/dev/null; done
  kill "${pids[@]}" 2>/dev/null || true
}
trap cleanup EXIT
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

echo
echo "== fleet: certfleet serve --data-dir $demo/fleet (SQLite), http-01 answered by the server"
api_port=$(free_port)
"$bin" serve --data-dir "$demo/fleet" --listen "127.0.0.1:$api_port" --http-01-listen "127.0.0.1:$http_port" \
  --server "https://127.0.0.1:$acme_port/dir" --ca-bundle "$demo/ca.pem" -m admin@example.test --agree-tos \
  >"$demo/serve.log" 2>&1 &
pids+=("$!")
for _ in $(seq 200); do [ -s "$demo/fleet/api.url" ] && break; sleep 0.05; done
[ -s "$demo/fleet/api.url" ] || { echo "demo: serve did not start; see $demo/serve.log" >&2; exit 1; }
sed 's/^/  /' "$demo/serve.log"
fleet=("$bin" fleet --data-dir "$demo/fleet")

for host in web1 web2; do
  dir="$demo/$host"; mkdir -p "$dir/tls" "$dir/logs"
  port=$(free_port)
  # nginx starts with a placeholder certificate; the agent replaces it.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=placeholder \
    -keyout "$dir/tls/site.key" -out "$dir/tls/site.pem" 2>/dev/null
  cat >"$dir/nginx.conf" <<NGINX
pid $dir/nginx.pid;
error_log $dir/nginx.err;
events {}
http {
  access_log off;
  client_body_temp_path $dir/logs; proxy_temp_path $dir/logs; fastcgi_temp_path $dir/logs;
  uwsgi_temp_path $dir/logs; scgi_temp_path $dir/logs;
  server { listen 127.0.0.1:$port ssl; ssl_certificate $dir/tls/site.pem; ssl_certificate_key $dir/tls/site.key; }
}
NGINX
  nginx -c "$dir/nginx.conf" -e "$dir/nginx.err"
  nginx_cmd="\"nginx\", \"-c\", \"$dir/nginx.conf\", \"-e\", \"$dir/nginx.err\""
  # The host's own config: the only place that says where files go and what runs.
  cat >"$dir/agent.toml" <<TOML
state_dir = "$dir/state"

[[install]]
certificate = "site-$host"
fullchain = "$dir/tls/site.pem"
key = "$dir/tls/site.key"
config_test_command = [$nginx_cmd, "-t"]
reload_command = [$nginx_cmd, "-s", "reload"]
verify = "127.0.0.1:$port"
sni = "$host.fleet.example.test"
TOML
  echo "== certfleet fleet host add $host; certfleet agent enroll (on $host)"
  token=$("${fleet[@]}" host add "$host")
  "$bin" agent enroll --state-dir "$dir/state" "$token"
  echo "== certfleet fleet cert add site-$host -d $host.fleet.example.test --host $host"
  "${fleet[@]}" cert add "site-$host" -d "$host.fleet.example.test" --host "$host"
done

for host in web1 web2; do
  echo "== certfleet agent run --once --config $demo/$host/agent.toml"
  # The first sync uploads the CSR of a key made on the host; the server issues for it.
  ok=""
  for _ in $(seq 60); do
    if "$bin" agent run --once --config "$demo/$host/agent.toml" 2>"$demo/$host/agent.log"; then ok=1; break; fi
    sleep 0.5
  done
  sed 's/^/  /' "$demo/$host/agent.log"
  [ -n "$ok" ] || { echo "demo: the agent of $host did not converge; see $demo/serve.log" >&2; exit 1; }
done
echo
echo "== certfleet fleet cert list"
"${fleet[@]}" cert list
echo
echo "Fleet files: server in $demo/fleet (fleet.db, admin.token, api.fingerprint), hosts in $demo/web1 and $demo/web2."
