//! Runs the real `certbot` (Debian 2.1) as a peer in interop tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::pebble::Pebble;
use crate::process::tail;

/// What one certbot run printed.
#[derive(Debug, Clone)]
pub struct CertbotOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A certbot with its own config/work/logs dirs, `--non-interactive`, trusting the test CA.
pub struct Certbot {
    config_dir: PathBuf,
    work_dir: PathBuf,
    logs_dir: PathBuf,
    server: Option<String>,
    env: BTreeMap<String, String>,
    netns: Option<PathBuf>,
    _dir: Option<TempDir>,
}

impl Certbot {
    /// Fresh dirs in a temp dir removed on drop.
    pub fn new() -> Result<Certbot> {
        let dir = tempfile::Builder::new().prefix("certfleet-certbot-").tempdir()?;
        let mut c = Self::with_dirs(
            dir.path().join("config"),
            dir.path().join("work"),
            dir.path().join("logs"),
        );
        c._dir = Some(dir);
        Ok(c)
    }

    /// Uses the given dirs (e.g. a config dir certfleet later imports); they are kept.
    pub fn with_dirs(
        config_dir: impl Into<PathBuf>,
        work_dir: impl Into<PathBuf>,
        logs_dir: impl Into<PathBuf>,
    ) -> Certbot {
        Certbot {
            config_dir: config_dir.into(),
            work_dir: work_dir.into(),
            logs_dir: logs_dir.into(),
            server: None,
            env: BTreeMap::new(),
            netns: None,
            _dir: None,
        }
    }

    /// Fresh dirs, `--server` = Pebble's directory, `REQUESTS_CA_BUNDLE` = Pebble's CA bundle.
    pub fn for_pebble(pebble: &Pebble) -> Result<Certbot> {
        Ok(Self::new()?
            .server(pebble.directory_url())
            .ca_bundle(pebble.ca_bundle_path()))
    }

    /// ACME directory passed as `--server` on every run.
    pub fn server(mut self, url: impl Into<String>) -> Self {
        self.server = Some(url.into());
        self
    }

    /// PEM bundle certbot (python-requests) trusts for the ACME server.
    pub fn ca_bundle(self, path: &Path) -> Self {
        self.env("REQUESTS_CA_BUNDLE", path.display().to_string())
    }

    /// Fresh dirs for an [`Acme2Certifier`](crate::Acme2Certifier): its directory and CA bundle,
    /// and certbot runs inside its network namespace.
    pub fn for_acme2certifier(a2c: &crate::Acme2Certifier) -> Result<Certbot> {
        Ok(Self::new()?
            .server(a2c.directory_url())
            .ca_bundle(a2c.ca_bundle_path())
            .netns(a2c.netns_path()))
    }

    /// Run certbot inside this network namespace (`nsenter --net=PATH`).
    pub fn netns(mut self, path: &Path) -> Self {
        self.netns = Some(path.to_owned());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    pub fn logs_dir(&self) -> &Path {
        &self.logs_dir
    }

    /// `CONFIG/live/<name>`: where certbot links `cert.pem`, `chain.pem`, `fullchain.pem`, `privkey.pem`.
    pub fn live_dir(&self, name: &str) -> PathBuf {
        self.config_dir.join("live").join(name)
    }

    /// Runs `certbot ARGS` with the dirs, `--non-interactive` and `--server`; a failing exit
    /// status is returned, not an error.
    pub fn run(&self, args: &[&str]) -> Result<CertbotOutput> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).args(["--", "certbot"]);
                c
            }
            None => Command::new("certbot"),
        };
        cmd.args(args)
            .arg("--non-interactive")
            .arg("--config-dir")
            .arg(&self.config_dir)
            .arg("--work-dir")
            .arg(&self.work_dir)
            .arg("--logs-dir")
            .arg(&self.logs_dir)
            // Without a TTY, `certbot renew` would otherwise sleep up to 8 minutes first.
            .arg("--no-random-sleep-on-renew");
        if let Some(server) = &self.server {
            cmd.args(["--server", server]);
        }
        cmd.envs(&self.env).stdin(Stdio::null());
        let out = cmd
            .output()
            .context("running certbot (is the Debian `certbot` package installed?)")?;
        Ok(CertbotOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Like [`Certbot::run`] but a failing exit status is an error carrying certbot's output and
    /// the end of its `letsencrypt.log`.
    pub fn run_ok(&self, args: &[&str]) -> Result<CertbotOutput> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!(
                "certbot {} failed ({}):\nstdout:\n{}\nstderr:\n{}\n{}",
                args.join(" "),
                out.status,
                out.stdout,
                out.stderr,
                tail(&self.logs_dir.join("letsencrypt.log"))
            );
        }
        Ok(out)
    }

    /// `certbot certonly --standalone` on 127.0.0.1:`http_port` (Pebble's `http_port`), no email,
    /// ToS agreed, plus `extra` arguments. The lineage is named after the first domain.
    pub fn certonly_standalone(
        &self,
        domains: &[&str],
        http_port: u16,
        extra: &[&str],
    ) -> Result<CertbotOutput> {
        let port = http_port.to_string();
        let mut args = vec![
            "certonly",
            "--standalone",
            "--http-01-address",
            "127.0.0.1",
            "--http-01-port",
            &port,
            "--agree-tos",
            "--register-unsafely-without-email",
        ];
        for d in domains {
            args.extend(["-d", d]);
        }
        args.extend(extra);
        self.run_ok(&args)
    }
}
