#!/usr/bin/env python3
"""Single-name http-01 standalone issuance against a local Pebble (no VA sleep), whole process,
account creation included (fresh config each run), certfleet beside real certbot and lego.

    ./bench/issue.py [--runs 7] [--key ec256|rsa2048] [--only certfleet]

Builds certfleet in release mode first. Prints a table of median wall time and peak RSS.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pebble_env import Pebble, median, timed  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--key", default="ec256", choices=["ec256", "rsa2048"])
    ap.add_argument("--only", action="append")
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "certfleet"], cwd=ROOT, check=True)
    certfleet = os.path.join(ROOT, "target/release/certfleet")
    pebble = Pebble()
    port = str(pebble.http_port)
    ecdsa = args.key == "ec256"
    tools = {
        "certfleet": lambda d, name: (
            [certfleet, "certonly", "--standalone", "--http-01-address", "127.0.0.1", "--http-01-port", port,
             "-d", name, "--server", pebble.url, "--ca-bundle", pebble.ca_bundle, "--config-dir", f"{d}/etc",
             "--work-dir", f"{d}/work", "--logs-dir", f"{d}/logs", "--agree-tos",
             "--register-unsafely-without-email", "-n", "-q"]
            + ([] if ecdsa else ["--key-type", "rsa", "--rsa-key-size", "2048"]), None),
        "certbot": lambda d, name: (
            ["certbot", "certonly", "--standalone", "--http-01-address", "127.0.0.1", "--http-01-port", port,
             "-d", name, "--server", pebble.url, "--config-dir", f"{d}/etc", "--work-dir", f"{d}/work",
             "--logs-dir", f"{d}/logs", "--agree-tos", "--register-unsafely-without-email", "-n", "-q",
             "--no-random-sleep-on-renew"]
            + (["--key-type", "ecdsa"] if ecdsa else ["--key-type", "rsa", "--rsa-key-size", "2048"]),
            dict(os.environ, REQUESTS_CA_BUNDLE=pebble.ca_bundle)),
        "lego": lambda d, name: (
            ["lego", "--server", pebble.url, "--email", "bench@example.test", "--accept-tos", "--path", f"{d}/lego",
             "--domains", name, "--http", "--http.port", f"127.0.0.1:{port}", "--key-type", args.key, "run"],
            dict(os.environ, LEGO_CA_CERTIFICATES=pebble.ca_bundle)),
    }
    results = {}
    try:
        for tool, make in tools.items():
            if args.only and tool not in args.only:
                continue
            if tool != "certfleet" and not shutil.which(tool):
                print(f"{tool}: not installed, skipped")
                continue
            times, rss = [], []
            for i in range(args.runs + 1):  # first run warms caches and is discarded
                d = tempfile.mkdtemp(prefix=f"bench-{tool}-")
                argv, env = make(d, f"{tool}-{i}.example.test")
                dt, mb, rc, out = timed(argv, env=env, cwd=d)
                shutil.rmtree(d, ignore_errors=True)
                if rc != 0:
                    print(f"{tool} run {i} failed ({rc}):\n{out}")
                    break
                if i > 0:
                    times.append(dt)
                    rss.append(mb)
            if times:
                results[tool] = (median(times), max(rss), min(times), max(times))
    finally:
        pebble.close()

    base = results.get("certfleet", (None,))[0]
    print(f"\nsingle-name http-01 standalone issuance, key {args.key}, {args.runs} runs, Pebble VA no sleep")
    print(f"{'tool':<10} {'median':>9} {'min':>9} {'max':>9} {'peak RSS':>9} {'vs certfleet':>13}")
    for tool, (med, mb, lo, hi) in results.items():
        ratio = f"{med / base:.1f}x" if base else "-"
        print(f"{tool:<10} {med * 1000:>7.0f}ms {lo * 1000:>7.0f}ms {hi * 1000:>7.0f}ms {mb:>7.1f}MB {ratio:>13}")


if __name__ == "__main__":
    main()
