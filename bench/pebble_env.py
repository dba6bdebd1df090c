"""A private Pebble (+ pebble-challtestsrv answering 127.0.0.1 for every name) for benchmarks.

Shared by the bench/ scripts; tests use crates/testkit instead.
"""
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Pebble:
    def __init__(self, dns_server=None, env=None):
        self.dir = tempfile.mkdtemp(prefix="certfleet-bench-")
        self.acme_port, self.mgmt_port, self.http_port = free_port(), free_port(), free_port()
        self.procs = []
        d = self.dir
        run = lambda *a: subprocess.run(a, check=True, capture_output=True)
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", "/CN=bench CA", "-keyout", f"{d}/ca-key.pem", "-out", f"{d}/ca.pem")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
            "/CN=localhost", "-keyout", f"{d}/key.pem", "-out", f"{d}/req.csr")
        with open(f"{d}/ext.cnf", "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        run("openssl", "x509", "-req", "-in", f"{d}/req.csr", "-CA", f"{d}/ca.pem", "-CAkey",
            f"{d}/ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", f"{d}/ext.cnf", "-out",
            f"{d}/cert.pem")
        self.ca_bundle = f"{d}/ca.pem"
        if dns_server is None:
            dns_port, dns_mgmt = free_port(), free_port()
            self.procs.append(subprocess.Popen(
                ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01",
                 f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "", "-management",
                 f"127.0.0.1:{dns_mgmt}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            dns_server = f"127.0.0.1:{dns_port}"
        with open(f"{d}/pebble.json", "w") as f:
            json.dump({"pebble": {
                "listenAddress": f"127.0.0.1:{self.acme_port}",
                "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
                "certificate": f"{d}/cert.pem", "privateKey": f"{d}/key.pem",
                "httpPort": self.http_port, "tlsPort": free_port(), "ocspResponderURL": "",
                "externalAccountBindingRequired": False}}, f)
        penv = dict(os.environ, PEBBLE_VA_NOSLEEP="1", **(env or {}))
        self.log = open(f"{d}/pebble.log", "w")
        self.procs.append(subprocess.Popen(["pebble", "-config", f"{d}/pebble.json", "-dnsserver", dns_server],
                                           env=penv, stdout=self.log, stderr=self.log))
        self.url = f"https://127.0.0.1:{self.acme_port}/dir"
        ctx = ssl.create_default_context(cafile=self.ca_bundle)
        for _ in range(400):
            try:
                urllib.request.urlopen(self.url, context=ctx, timeout=1)
                time.sleep(0.2)  # let challtestsrv finish starting too
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError(f"pebble did not start, see {d}/pebble.log")

    def close(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def timed(argv, env=None, cwd=None):
    """Run a command; return (seconds, peak RSS in MB, returncode, output).

    Peak RSS comes from GNU time: a child forked from this Python process would otherwise be
    charged Python's own RSS, which it carries until exec.
    """
    rss_file = tempfile.mktemp(prefix="rss-")
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-o", rss_file, "-f", "%M"] + argv, env=env, cwd=cwd,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    with open(rss_file) as f:
        kb = int(f.read().split()[-1])
    os.unlink(rss_file)
    return dt, kb / 1024.0, p.returncode, p.stdout.decode(errors="replace")


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
