#!/usr/bin/env bash
# Runs every certfleet test. Installs the real test parts (Pebble, nginx, Apache, BIND, certbot
# with its nginx and Apache plugins, lego, python3-venv for acme2certifier, PostgreSQL, aiosmtpd)
# with apt-get when they are missing, so it works unattended on a fresh Debian machine. Extra
# arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v pebble >/dev/null || need+=(pebble)
command -v pebble-challtestsrv >/dev/null || need+=(pebble)
command -v nginx >/dev/null || need+=(nginx-light)
command -v certbot >/dev/null || need+=(certbot)
command -v apache2 >/dev/null || need+=(apache2)
python3 -c 'import certbot_nginx' >/dev/null 2>&1 || need+=(python3-certbot-nginx)
python3 -c 'import certbot_apache' >/dev/null 2>&1 || need+=(python3-certbot-apache)
command -v named >/dev/null || need+=(bind9)
command -v dig >/dev/null || need+=(bind9-dnsutils)
command -v nsupdate >/dev/null || need+=(bind9-dnsutils)
command -v lego >/dev/null || need+=(lego)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v ip >/dev/null || need+=(iproute2)
command -v unshare >/dev/null || need+=(util-linux)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# The fleet database suite starts a throwaway PostgreSQL cluster when DATABASE_URL is unset.
[ -n "${DATABASE_URL:-}" ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# The agent's STARTTLS verification is tested against a real SMTP server (aiosmtpd).
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need+=(python3-aiosmtpd)
if [ ${#need[@]} -gt 0 ]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "test.sh: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${need[@]}" </dev/null
fi

cargo test --workspace --locked "$@" </dev/null
