//! Shared helpers for CLI integration tests: run the real `certfleet` binary against a real
//! Pebble in a private config tree.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use certfleet_testkit::Pebble;
use tempfile::TempDir;

pub struct Env {
    pub tmp: TempDir,
    pub pebble: Pebble,
}

impl Env {
    pub fn new(pebble: Pebble) -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
            pebble,
        }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.tmp.path().join("etc")
    }

    pub fn live(&self, name: &str) -> PathBuf {
        self.config_dir().join("live").join(name)
    }

    /// `certfleet VERB ...` with this environment's dirs, server and trust bundle.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_certfleet"));
        c.args(args)
            .arg("--config-dir")
            .arg(self.config_dir())
            .arg("--work-dir")
            .arg(self.tmp.path().join("work"))
            .arg("--logs-dir")
            .arg(self.tmp.path().join("logs"))
            .arg("--server")
            .arg(self.pebble.directory_url())
            .env("CERTFLEET_CA_BUNDLE", self.pebble.ca_bundle_path())
            .env_remove("REQUESTS_CA_BUNDLE");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn run_ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "certfleet {args:?} failed ({:?}):\nstdout: {}\nstderr: {}\npebble log tail: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.pebble.log())
        );
        out
    }

    /// Standalone issuance on the port Pebble validates against.
    pub fn certonly_standalone(&self, domains: &[&str], extra: &[&str]) -> Output {
        self.certonly_standalone_cmd(domains, extra).output().unwrap()
    }

    /// The command [`Env::certonly_standalone`] runs, to add environment variables.
    pub fn certonly_standalone_cmd(&self, domains: &[&str], extra: &[&str]) -> Command {
        let port = self.pebble.http_port().to_string();
        let mut args = vec![
            "certonly",
            "--standalone",
            "--http-01-address",
            "127.0.0.1",
            "--http-01-port",
            &port,
            "--agree-tos",
            "-m",
            "admin@example.test",
            "-n",
        ];
        for d in domains {
            args.push("-d");
            args.push(d);
        }
        args.extend_from_slice(extra);
        self.cmd(&args)
    }

    /// The lineage's fullchain verifies to one of Pebble's roots for every name; returns the root index.
    pub fn verify_lineage(&self, name: &str, names: &[&str]) -> usize {
        let fullchain = std::fs::read(self.live(name).join("fullchain.pem")).unwrap();
        self.pebble
            .verify_chain(&fullchain, names, SystemTime::now())
            .unwrap()
    }
}

pub fn tail(s: &str) -> String {
    tail_lines(s, 15)
}

/// The last `n` lines of a log.
pub fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every path under `dir` with its size and mode, to prove a command changed nothing.
pub fn snapshot(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            out.push(format!("{} {} {:o}", p.display(), md.len(), {
                use std::os::unix::fs::PermissionsExt;
                md.permissions().mode()
            }));
            if md.is_dir() {
                walk(&p, out);
            }
        }
    }
    walk(dir, &mut out);
    out.sort();
    out
}
