#!/usr/bin/env bash
# `renew` with nothing due over N lineages: the FIRST run (no renewal state, no CA directory
# cache: WORK_DIR/renewal-state removed before it) beside LATER runs (state and cache kept).
# Quicker than bench/renew.sh, which times later runs only (its untimed warm-up is the first run).
# Also counts the files the runs add to the tree (a pass with nothing due should add at most
# the CA directory cache).
#
#   ./bench/renew_first.sh [RUNS] [N]     (defaults 5 10000; run on request, not in CI)
#   CERTFLEET=path/to/binary ./bench/renew_first.sh ...   (skip the release build)
#
# Prints the median wall time and the peak RSS (GNU time) of each kind of run.
# Needs: pebble, pebble-challtestsrv, openssl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
n=${2:-10000}
for tool in pebble pebble-challtestsrv openssl python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done
if [ -z "${CERTFLEET:-}" ]; then
  cargo build --release --locked -q -p certfleet
  CERTFLEET="$PWD/target/release/certfleet"
fi
export CERTFLEET RUNS="$runs" N="$n"

exec python3 - <<'PY'
import os, shutil, subprocess, sys, tempfile
sys.path.insert(0, "bench")
from pebble_env import Pebble, median, timed

cf = os.environ["CERTFLEET"]
runs, n = int(os.environ["RUNS"]), int(os.environ["N"])
pebble = Pebble(env={"PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_WFE_NONCEREJECT": "0"})
root = tempfile.mkdtemp(prefix="certfleet-bench-first-")
www = os.path.join(root, "www")
os.makedirs(www)
env = dict(os.environ, CERTFLEET_CA_BUNDLE=pebble.ca_bundle)
tree = os.path.join(root, "t")
dirs = ["--config-dir", f"{tree}/etc", "--work-dir", f"{tree}/work", "--logs-dir", f"{tree}/logs"]
state = f"{tree}/work/renewal-state"

p = subprocess.run([cf, "certonly", "--webroot", "-w", www, "-d", "bench.example.test", "--cert-name", "template",
                    "--agree-tos", "--register-unsafely-without-email", "-n", "-q", *dirs, "--server", pebble.url],
                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
if p.returncode:
    sys.exit(p.stdout.decode())
etc = f"{tree}/etc"
conf = open(f"{etc}/renewal/template.conf").read()
files = {k: open(f"{etc}/archive/template/{k}1.pem").read() for k in ("cert", "chain", "fullchain", "privkey")}
for i in range(1, n):
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


def count_files():
    return sum(len(fs) for _, _, fs in os.walk(tree))


def run():
    dt, mb, rc, out = timed([cf, "renew", "-q", *dirs, "--server", pebble.url], env=env)
    if rc:
        sys.exit(f"certfleet renew failed ({rc}):\n{out[-2000:]}")
    return dt, mb


# Untimed: page cache.
shutil.rmtree(state, ignore_errors=True)
run()
first, later, first_rss, later_rss, added = [], [], 0.0, 0.0, 0
for _ in range(runs):
    shutil.rmtree(state, ignore_errors=True)
    before = count_files()
    dt, mb = run()
    added = count_files() - before
    first.append(dt)
    first_rss = max(first_rss, mb)
    dt, mb = run()
    later.append(dt)
    later_rss = max(later_rss, mb)
pebble.close()
shutil.rmtree(root, ignore_errors=True)
print(f"\nrenew, nothing due, {n} lineages, {runs} runs each   ({cf})")
print(f"{'run':<8} {'median wall (s)':>16} {'min (s)':>8} {'max (s)':>8} {'peak RSS (MB)':>14}")
for name, ts, mb in (("first", first, first_rss), ("later", later, later_rss)):
    print(f"{name:<8} {median(ts):>16.3f} {min(ts):>8.3f} {max(ts):>8.3f} {mb:>14.1f}")
print(f"files added by a first run: {added}")
PY
