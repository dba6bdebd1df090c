#!/usr/bin/env bash
# `renew` speed, certfleet (release build) beside real certbot:
#   1. nothing due over N lineages (default 10,000), synthesised by copying one real lineage
#      (archive, live links, renewal conf) issued by a local Pebble. certbot is timed on
#      CERTBOT_N copies (default 1,000) and extrapolated linearly to N, because it takes ~2.4 s
#      per 1,000; the table says so.
#   2. renewing 100 due lineages (--force-renewal) with --jobs 8 against Pebble
#      (PEBBLE_VA_ALWAYS_VALID, webroot authenticator: no validation server in the way).
#
#   ./bench/renew.sh [RUNS] [N] [CERTBOT_N]     (defaults 5 10000 1000; run on request, not in CI)
#
# Needs: pebble, pebble-challtestsrv, openssl, python3, certbot (optional).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
n=${2:-10000}
certbot_n=${3:-1000}
for tool in pebble pebble-challtestsrv openssl python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install pebble openssl python3)" >&2; exit 1; }
done
cargo build --release --locked -q -p certfleet
export CERTFLEET="$PWD/target/release/certfleet" RUNS="$runs" N="$n" CERTBOT_N="$certbot_n"

exec python3 - <<'PY'
import os, shutil, subprocess, sys, tempfile, time
sys.path.insert(0, "bench")
from pebble_env import Pebble, median, timed

cf = os.environ["CERTFLEET"]
runs, n, certbot_n = int(os.environ["RUNS"]), int(os.environ["N"]), int(os.environ["CERTBOT_N"])
have_certbot = shutil.which("certbot") is not None
pebble = Pebble(env={"PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_WFE_NONCEREJECT": "0"})
root = tempfile.mkdtemp(prefix="certfleet-bench-renew-")
www = os.path.join(root, "www")
os.makedirs(www)
env = dict(os.environ, CERTFLEET_CA_BUNDLE=pebble.ca_bundle, REQUESTS_CA_BUNDLE=pebble.ca_bundle)


def dirs(tree):
    return ["--config-dir", f"{tree}/etc", "--work-dir", f"{tree}/work", "--logs-dir", f"{tree}/logs"]


def cf_run(tree, *args, check=True):
    p = subprocess.run([cf, *args, *dirs(tree), "--server", pebble.url], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check and p.returncode != 0:
        sys.exit(f"certfleet {' '.join(args)} failed:\n{p.stdout.decode()}")
    return p


def make_tree(tree, count):
    """One real lineage (issued by Pebble), copied `count` times as lineage-00001, ..."""
    cf_run(tree, "certonly", "--webroot", "-w", www, "-d", "bench.example.test", "--cert-name", "template",
           "--agree-tos", "--register-unsafely-without-email", "-n", "-q")
    etc = f"{tree}/etc"
    conf = open(f"{etc}/renewal/template.conf").read()
    files = {k: open(f"{etc}/archive/template/{k}1.pem").read() for k in ("cert", "chain", "fullchain", "privkey")}
    for i in range(1, count):
        name = f"lineage-{i:05d}"
        a, l = f"{etc}/archive/{name}", f"{etc}/live/{name}"
        os.makedirs(a)
        os.makedirs(l)
        for k, text in files.items():
            with open(f"{a}/{k}1.pem", "w") as f:
                f.write(text)
            os.symlink(f"../../archive/{name}/{k}1.pem", f"{l}/{k}.pem")
        os.chmod(f"{a}/privkey1.pem", 0o600)
        with open(f"{etc}/renewal/{name}.conf", "w") as f:
            f.write(conf.replace("/template/", f"/{name}/").replace("/template.conf", f"/{name}.conf"))


rows = []

# 1. Nothing due.
tree = os.path.join(root, "notdue")
t0 = time.perf_counter()
make_tree(tree, n)
print(f"bench: {n} lineages synthesised in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
cf_run(tree, "renew", "-q")  # warm-up: page cache, and the CA's directory (no ARI) is remembered
times, rss = [], 0.0
for _ in range(runs):
    dt, mb, rc, out = timed([cf, "renew", "-q", *dirs(tree), "--server", pebble.url], env=env)
    if rc != 0:
        sys.exit(f"certfleet renew failed ({rc}):\n{out[-2000:]}")
    times.append(dt)
    rss = max(rss, mb)
rows.append((f"renew, nothing due, {n} lineages", "certfleet", median(times), rss, ""))

if have_certbot:
    ctree = os.path.join(root, "certbot")
    make_tree(ctree, certbot_n)
    ctimes, crss = [], 0.0
    for _ in range(max(1, min(runs, 3))):
        dt, mb, rc, out = timed(["certbot", "renew", "-n", "--no-random-sleep-on-renew", *dirs(ctree),
                                 "--server", pebble.url], env=env)
        if rc != 0:
            sys.exit(f"certbot renew failed ({rc}):\n{out[-2000:]}")
        ctimes.append(dt)
        crss = max(crss, mb)
    m = median(ctimes)
    rows.append((f"renew, nothing due, {certbot_n} lineages", "certbot", m, crss, "measured"))
    rows.append((f"renew, nothing due, {n} lineages", "certbot", m * n / certbot_n, crss,
                 f"extrapolated x{n / certbot_n:g} from {certbot_n}"))
    shutil.rmtree(ctree, ignore_errors=True)
shutil.rmtree(tree, ignore_errors=True)

# 2. 100 due, --jobs 8.
times = []
for r in range(runs):
    tree = os.path.join(root, f"due{r}")
    make_tree(tree, 100)
    dt, mb, rc, out = timed([cf, "renew", "--force-renewal", "--jobs", "8", "-q", *dirs(tree),
                             "--server", pebble.url], env=env)
    if rc != 0:
        sys.exit(f"certfleet renew --force-renewal failed ({rc}):\n{out[-3000:]}")
    times.append(dt)
    rss = mb
    shutil.rmtree(tree, ignore_errors=True)
rows.append(("renew 100 due lineages, --jobs 8", "certfleet", median(times), rss, f"Pebble, {runs} runs"))

pebble.close()
shutil.rmtree(root, ignore_errors=True)
print(f"\n{'case':<42} {'tool':<10} {'wall (s)':>9} {'peak RSS (MB)':>14}  note")
for case, tool, t, mb, note in rows:
    print(f"{case:<42} {tool:<10} {t:>9.3f} {mb:>14.1f}  {note}")
print("\ntargets: nothing due over 10,000 lineages < 0.5 s; 100 due with --jobs 8 < 5 s")
PY
