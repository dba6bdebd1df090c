#!/usr/bin/env bash
# `certfleet doctor` speed: every check of N real lineages (default 50) on loopback, end to end:
# lineage files, renewal conf, account, A/AAAA (and the same answer at the authoritative server),
# CAA, an http-01 test file written to the webroot and fetched through nginx, the TLS chain nginx
# serves for each name (SNI), and the scheduler. Real parts: BIND 9 answers the names, nginx
# serves the webroot and N TLS server blocks, a local Pebble issued the lineages.
#
#   ./bench/doctor.sh [RUNS] [N]     (defaults 5 50; run on request, not in CI)
#   CERTFLEET_BIN=target/debug/certfleet ./bench/doctor.sh   # time another build
#
# Needs: pebble, named (bind9), nginx, openssl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
n=${2:-50}
for tool in pebble named nginx openssl python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install pebble bind9 nginx openssl python3)" >&2; exit 1; }
done
# CERTFLEET_BIN=path/to/certfleet skips the release build (e.g. to time a debug build).
if [ -z "${CERTFLEET_BIN:-}" ]; then
  cargo build --release --locked -q -p certfleet
  CERTFLEET_BIN="$PWD/target/release/certfleet"
fi
export CERTFLEET="$CERTFLEET_BIN" RUNS="$runs" N="$n"

exec python3 - <<'PY'
import os, shutil, socket, ssl, subprocess, sys, tempfile, time, urllib.request
sys.path.insert(0, "bench")
from pebble_env import Pebble, free_port, median

cf = os.environ["CERTFLEET"]
runs, n = int(os.environ["RUNS"]), int(os.environ["N"])
root = tempfile.mkdtemp(prefix="certfleet-bench-doctor-")
os.chmod(root, 0o755)  # nginx workers may run as another user
procs = []


def wait_port(port, what, log):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench: {what} did not start:\n{open(log).read()[-2000:]}")


# BIND: example.test, every name 127.0.0.1.
dns_port = free_port()
bind_dir = os.path.join(root, "bind")
os.makedirs(bind_dir)
with open(f"{bind_dir}/example.test.zone", "w") as f:
    f.write("$TTL 60\n@ IN SOA ns1.example.test. hostmaster.example.test. 1 60 60 3600 1\n"
            "@ IN NS ns1.example.test.\nns1 IN A 127.0.0.1\n* IN A 127.0.0.1\n")
with open(f"{bind_dir}/named.conf", "w") as f:
    f.write(f'options {{ directory "{bind_dir}"; pid-file "{bind_dir}/named.pid"; '
            f'listen-on port {dns_port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; recursion no; '
            f'dnssec-validation no; notify no; }};\ncontrols {{ }};\n'
            f'zone "example.test" {{ type primary; file "example.test.zone"; }};\n')
bind_log = f"{bind_dir}/named.log"
procs.append(subprocess.Popen(["named", "-g", "-c", f"{bind_dir}/named.conf"],
                              stdout=open(bind_log, "w"), stderr=subprocess.STDOUT))
wait_port(dns_port, "named", bind_log)

pebble = Pebble(dns_server=f"127.0.0.1:{dns_port}",
                env={"PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_WFE_NONCEREJECT": "0"})
env = dict(os.environ, CERTFLEET_CA_BUNDLE=pebble.ca_bundle)
env.pop("REQUESTS_CA_BUNDLE", None)
tree = os.path.join(root, "tree")
www = os.path.join(root, "www")
os.makedirs(www)
os.chmod(www, 0o755)
dirs = ["--config-dir", f"{tree}/etc", "--work-dir", f"{tree}/work", "--logs-dir", f"{tree}/logs",
        "--server", pebble.url]
names = [f"d{i:03d}.example.test" for i in range(n)]
t0 = time.perf_counter()
for name in names:
    p = subprocess.run([cf, "certonly", "--webroot", "-w", www, "-d", name, "--agree-tos",
                        "--register-unsafely-without-email", "-n", "-q", *dirs], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        sys.exit(f"bench: certonly {name} failed:\n{p.stdout.decode()}")
print(f"bench: {n} lineages issued in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

# nginx: the webroot on HTTP, each lineage's fullchain on HTTPS by SNI.
http_port, https_port = free_port(), free_port()
ngx = os.path.join(root, "nginx")
os.makedirs(f"{ngx}/tmp")
conf = [f"daemon off; worker_processes 2; pid {ngx}/nginx.pid; error_log {ngx}/error.log;",
        "events { worker_connections 1024; }", "http {", f"  access_log off; client_body_temp_path {ngx}/tmp;",
        f"  server {{ listen 127.0.0.1:{http_port} default_server; root {www}; }}"]
if os.geteuid() == 0:
    conf.insert(0, "user root root;")
for name in names:
    live = f"{tree}/etc/live/{name}"
    conf.append(f"  server {{ listen 127.0.0.1:{https_port} ssl; server_name {name}; "
                f"ssl_certificate {live}/fullchain.pem; ssl_certificate_key {live}/privkey.pem; }}")
conf.append("}")
with open(f"{ngx}/nginx.conf", "w") as f:
    f.write("\n".join(conf) + "\n")
ngx_log = f"{ngx}/nginx.out"
procs.append(subprocess.Popen(["nginx", "-e", f"{ngx}/error.log", "-c", f"{ngx}/nginx.conf"],
                              stdout=open(ngx_log, "w"), stderr=subprocess.STDOUT))
wait_port(https_port, "nginx", ngx_log)

# Pebble's root, so served chains can be judged trusted.
ctx = ssl.create_default_context(cafile=pebble.ca_bundle)
roots = os.path.join(root, "roots.pem")
with open(roots, "wb") as f:
    f.write(urllib.request.urlopen(f"https://127.0.0.1:{pebble.mgmt_port}/roots/0", context=ctx).read())

argv = [cf, "doctor", "--dns-resolver", f"127.0.0.1:{dns_port}", "--http-01-port", str(http_port),
        "--port", str(https_port), "--tls-roots", roots, "--unit-dir", f"{root}/units", *dirs]
times = []
try:
    for i in range(runs + 1):
        t0 = time.perf_counter()
        p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        dt = time.perf_counter() - t0
        out = p.stdout.decode(errors="replace")
        summary = out.strip().splitlines()[-1] if out.strip() else ""
        if p.returncode != 0 or " 0 FAIL" not in summary:
            sys.exit(f"bench: doctor exited {p.returncode}:\n{out[-4000:]}")
        if i > 0:  # the first run warms the page cache
            times.append(dt)
    print(f"doctor over {n} lineages on loopback ({summary}): median {median(times):.3f}s, "
          f"min {min(times):.3f}s, max {max(times):.3f}s over {runs} runs")
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()
    pebble.close()
    shutil.rmtree(root, ignore_errors=True)
PY
