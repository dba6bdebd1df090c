#!/usr/bin/env python3
"""Fleet mode against a local Pebble: time from `fleet cert add` to "N hosts serve it, verified",
and the memory of the server and of an idle agent; then the server with a large fleet
(--fleet-size copies of the issued certificate written straight into its SQLite database, none
due): its RSS and how long `fleet cert list` takes.

Each host is a real nginx on loopback with its own `certfleet agent` config; the certificate is
one of server custody shared by all hosts (so every agent installs the same one), issued by
http-01 answered by the server's own responder. The agents sync with `agent run --once`, all at
once, right after the server has issued (what their next poll would do).

    ./bench/fleet.py --hosts 10 --runs 3 --fleet-size 100000
"""
import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pebble_env import Pebble, free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "certfleet")


def kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Host:
    def __init__(self, root, name):
        self.name = name
        self.dir = os.path.join(root, name)
        os.makedirs(os.path.join(self.dir, "tls"))
        os.makedirs(os.path.join(self.dir, "tmp"))
        self.port = free_port()
        d = self.dir
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "1", "-subj", "/CN=placeholder", "-keyout", f"{d}/tls/site.key",
                        "-out", f"{d}/tls/site.pem"], check=True, capture_output=True)
        self.conf = f"{d}/nginx.conf"
        with open(self.conf, "w") as f:
            f.write(f"""pid {d}/nginx.pid;
error_log {d}/nginx.err;
events {{}}
http {{
  access_log off;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  server {{ listen 127.0.0.1:{self.port} ssl; ssl_certificate {d}/tls/site.pem; ssl_certificate_key {d}/tls/site.key; }}
}}
""")
        self.nginx = ["nginx", "-c", self.conf, "-e", f"{d}/nginx.err"]
        subprocess.run(self.nginx, check=True)
        self.config = f"{d}/agent.toml"
        with open(self.config, "w") as f:
            f.write(f"""state_dir = "{d}/state"
interval = "10s"

[[install]]
certificate = "shared"
fullchain = "{d}/tls/site.pem"
key = "{d}/tls/site.key"
config_test_command = {json.dumps(self.nginx + ["-t"])}
reload_command = {json.dumps(self.nginx + ["-s", "reload"])}
verify = "127.0.0.1:{self.port}"
sni = "shared.bench.test"
""")

    def stop(self):
        subprocess.run(self.nginx + ["-s", "quit"], capture_output=True)

    def sync_until_verified(self, deadline):
        while time.monotonic() < deadline:
            if subprocess.run([BIN, "agent", "run", "--once", "--config", self.config],
                              capture_output=True).returncode == 0:
                return time.monotonic()
            time.sleep(0.1)
        raise SystemExit(f"{self.name}: the agent did not converge")


def grow(data, n):
    """n copies of the issued `shared` row, straight into the server's SQLite database."""
    cols = ("identifiers, enabled, key_type, challenge, custody, acme_server, created_at, version, cert_pem, "
            "chain_pem, serial, not_before, not_after, issuer, key_sha256, issued_at, key_blob, next_attempt, "
            "next_attempt_reason")
    db = sqlite3.connect(os.path.join(data, "fleet.db"), timeout=30)
    with db:
        db.execute(f"""INSERT INTO certificates (name, {cols})
            WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?)
            SELECT 'bulk-' || seq.n, {cols} FROM certificates, seq WHERE name = 'shared'""", (n,))
    db.close()


def one_run(pebble, n_hosts, fleet_size):
    root = tempfile.mkdtemp(prefix="certfleet-bench-fleet-")
    data = os.path.join(root, "server")
    api = free_port()
    log = open(os.path.join(root, "serve.log"), "w")
    server = subprocess.Popen([BIN, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{api}",
                               "--http-01-listen", f"127.0.0.1:{pebble.http_port}", "--server", pebble.url,
                               "--ca-bundle", pebble.ca_bundle, "-m", "bench@example.test", "--agree-tos"],
                              stdout=log, stderr=log)
    hosts = []
    try:
        for _ in range(400):
            if os.path.exists(os.path.join(data, "api.url")):
                break
            time.sleep(0.025)
        fleet = [BIN, "fleet", "--data-dir", data]
        t = time.monotonic()
        for i in range(n_hosts):
            h = Host(root, f"web{i + 1}")
            token = subprocess.run(fleet + ["host", "add", h.name], check=True, capture_output=True,
                                   text=True).stdout.strip()
            subprocess.run([BIN, "agent", "enroll", "--state-dir", f"{h.dir}/state", token], check=True,
                           capture_output=True)
            hosts.append(h)
        setup = time.monotonic() - t

        t0 = time.monotonic()
        args = ["cert", "add", "shared", "-d", "shared.bench.test", "--custody", "server"]
        for h in hosts:
            args += ["--host", h.name]
        subprocess.run(fleet + args, check=True, capture_output=True)
        while True:
            show = json.loads(subprocess.run(fleet + ["cert", "show", "shared", "--json"], check=True,
                                             capture_output=True, text=True).stdout)
            if show.get("serial"):
                break
            if time.monotonic() - t0 > 60:
                raise SystemExit("the server did not issue; see " + log.name)
            time.sleep(0.02)
        issued = time.monotonic() - t0
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(max_workers=n_hosts) as pool:
            done = list(pool.map(lambda h: h.sync_until_verified(deadline), hosts))
        all_verified = max(done) - t0

        # An idle agent: one that has synced and waits for its next interval.
        agent = subprocess.Popen([BIN, "agent", "run", "--config", hosts[0].config],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        agent_rss = kib(agent.pid, "VmRSS")
        agent.terminate()
        agent.wait()
        server_rss, server_peak = kib(server.pid, "VmRSS"), kib(server.pid, "VmHWM")
        result = dict(setup=setup, issued=issued, verified=all_verified, server_rss=server_rss,
                      server_peak=server_peak, agent_rss=agent_rss)
        if fleet_size:
            grow(data, fleet_size)
            time.sleep(2)  # a renewal-loop pass over the grown table
            t = time.monotonic()
            out = subprocess.run(fleet + ["cert", "list"], check=True, capture_output=True).stdout
            result["list"] = time.monotonic() - t
            assert out.count(b"\n") > fleet_size, "cert list shows every certificate"
            time.sleep(1)
            result["big_rss"], result["big_peak"] = kib(server.pid, "VmRSS"), kib(server.pid, "VmHWM")
        return result
    finally:
        server.terminate()
        server.wait()
        for h in hosts:
            h.stop()
        shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fleet-size", type=int, default=0, help="then grow the store to this many certificates")
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "certfleet"], cwd=ROOT, check=True)
    pebble = Pebble()
    try:
        runs = [one_run(pebble, a.hosts, a.fleet_size) for _ in range(a.runs)]
    finally:
        pebble.close()
    med = lambda k: statistics.median(r[k] for r in runs)
    print(f"fleet, {a.hosts} hosts (nginx each), {a.runs} runs, medians:")
    print(f"  host add + agent enroll, all hosts:      {med('setup'):.2f} s")
    print(f"  fleet cert add -> issued (http-01):       {med('issued'):.2f} s")
    print(f"  fleet cert add -> {a.hosts} hosts serve it, verified: {med('verified'):.2f} s")
    print(f"  server RSS after the run: {med('server_rss') / 1024:.1f} MiB (peak {med('server_peak') / 1024:.1f} MiB)")
    print(f"  idle agent RSS:           {med('agent_rss') / 1024:.1f} MiB")
    if a.fleet_size:
        print(f"  with {a.fleet_size:,} certificates: `fleet cert list` {med('list'):.2f} s; server RSS "
              f"{med('big_rss') / 1024:.1f} MiB (peak {med('big_peak') / 1024:.1f} MiB)")


if __name__ == "__main__":
    main()
