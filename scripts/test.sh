#!/usr/bin/env bash
# Runs every certfleet test. Installs the real test parts (Pebble, nginx, BIND, certbot)
# with apt-get when they are missing, so it works on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v pebble >/dev/null || need+=(pebble)
command -v nginx >/dev/null || need+=(nginx-light)
command -v certbot >/dev/null || need+=(certbot)
command -v named >/dev/null || need+=(bind9)
command -v dig >/dev/null || need+=(bind9-dnsutils)
if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

cargo test --workspace --locked "$@"
