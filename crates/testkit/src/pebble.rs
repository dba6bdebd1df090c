//! A real Pebble ACME test CA (plus, unless a DNS server is given, a `pebble-challtestsrv` as
//! its resolver) on free loopback ports.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::http;
use crate::ports::free_port;
use crate::process::Proc;
use crate::tls::{LocalTls, localhost_tls, write};

const EAB_EXAMPLE: &str = "/usr/share/doc/pebble/examples/pebble-config-external-account-bindings.json";
/// The same keys as the Debian example file, used when the docs are not installed.
const EAB_FALLBACK: [(&str, &str); 2] = [
    (
        "kid-1",
        "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",
    ),
    (
        "kid-2",
        "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH",
    ),
];

/// Options for [`Pebble`]; create with [`Pebble::builder`].
#[derive(Debug, Default, Clone)]
pub struct PebbleBuilder {
    http_port: Option<u16>,
    tls_port: Option<u16>,
    env: BTreeMap<String, String>,
    eab: bool,
    validity_seconds: Option<u64>,
    dns_server: Option<SocketAddr>,
    strict: bool,
    extra_config: BTreeMap<String, Value>,
}

impl PebbleBuilder {
    /// Port Pebble's VA connects to for http-01 (where the test's solver listens). Default: a
    /// free port, see [`Pebble::http_port`].
    pub fn http_port(mut self, port: u16) -> Self {
        self.http_port = Some(port);
        self
    }

    /// Port Pebble's VA connects to for tls-alpn-01. Default: a free port.
    pub fn tls_port(mut self, port: u16) -> Self {
        self.tls_port = Some(port);
        self
    }

    /// An environment variable for Pebble, e.g. `PEBBLE_WFE_NONCEREJECT=50`,
    /// `PEBBLE_ALTERNATE_ROOTS=2`, `PEBBLE_CHAIN_LENGTH=3`, `PEBBLE_AUTHZREUSE=100`.
    /// `PEBBLE_VA_NOSLEEP=1` is always set.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Require external account binding, with the MAC keys of Pebble's example config
    /// (see [`Pebble::eab_keys`]).
    pub fn eab(mut self, required: bool) -> Self {
        self.eab = required;
        self
    }

    /// `certificateValidityPeriod`: lifetime of issued certificates, for real renewal tests.
    pub fn validity_seconds(mut self, secs: u64) -> Self {
        self.validity_seconds = Some(secs);
        self
    }

    /// Resolve names through this DNS server (e.g. a test BIND) instead of a private
    /// `pebble-challtestsrv` that answers 127.0.0.1 for every name.
    pub fn dns_server(mut self, addr: SocketAddr) -> Self {
        self.dns_server = Some(addr);
        self
    }

    /// Run Pebble with `-strict`.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Any other key of Pebble's config object, e.g. `("domainBlocklist", json!(["blocked.test"]))`.
    pub fn config(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra_config.insert(key.into(), value);
        self
    }

    /// Starts the processes and waits until they listen (retrying with fresh ports if one was
    /// taken by a parallel test meanwhile).
    pub fn start(self) -> Result<Pebble> {
        crate::process::retry_on_port_clash(false, || self.try_start())
    }

    fn try_start(&self) -> Result<Pebble> {
        let dir = tempfile::Builder::new().prefix("certfleet-pebble-").tempdir()?;
        let tls = localhost_tls(dir.path())?;
        let listen_port = free_port();
        let mgmt_port = free_port();
        let http_port = self.http_port.unwrap_or_else(free_port);
        let tls_port = self.tls_port.unwrap_or_else(free_port);
        let eab_keys = if self.eab { load_eab_keys() } else { Vec::new() };

        let mut challtestsrv = None;
        let (dns_server, challtestsrv_mgmt) = match self.dns_server {
            Some(addr) => (addr, None),
            None => {
                let dns_port = free_port();
                let ctl_port = free_port();
                let log = dir.path().join("challtestsrv.log");
                let mut cmd = Command::new("pebble-challtestsrv");
                cmd.args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                    .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                    .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                    .args(["-management", &format!("127.0.0.1:{ctl_port}")]);
                let mut proc = Proc::spawn("pebble-challtestsrv", &mut cmd, &log)?;
                proc.wait_for_port(loopback(ctl_port))?;
                proc.wait_for_port(loopback(dns_port))?;
                challtestsrv = Some(proc);
                (loopback(dns_port), Some(format!("http://127.0.0.1:{ctl_port}")))
            }
        };

        let mut config = serde_json::Map::new();
        config.insert("listenAddress".into(), json!(format!("127.0.0.1:{listen_port}")));
        config.insert(
            "managementListenAddress".into(),
            json!(format!("127.0.0.1:{mgmt_port}")),
        );
        config.insert("certificate".into(), json!(tls.cert));
        config.insert("privateKey".into(), json!(tls.key));
        config.insert("httpPort".into(), json!(http_port));
        config.insert("tlsPort".into(), json!(tls_port));
        config.insert("ocspResponderURL".into(), json!(""));
        config.insert("externalAccountBindingRequired".into(), json!(self.eab));
        if self.eab {
            let keys: serde_json::Map<String, Value> =
                eab_keys.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            config.insert("externalAccountMACKeys".into(), Value::Object(keys));
        }
        if let Some(secs) = self.validity_seconds {
            config.insert("certificateValidityPeriod".into(), json!(secs));
        }
        for (k, v) in &self.extra_config {
            config.insert(k.clone(), v.clone());
        }
        let config_path = dir.path().join("pebble-config.json");
        write(
            &config_path,
            serde_json::to_string_pretty(&json!({ "pebble": config }))?.as_bytes(),
        )?;

        let log_path = dir.path().join("pebble.log");
        let mut cmd = Command::new("pebble");
        cmd.arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &dns_server.to_string()]);
        if self.strict {
            cmd.arg("-strict");
        }
        cmd.env("PEBBLE_VA_NOSLEEP", "1").envs(&self.env);
        let mut proc = Proc::spawn("pebble", &mut cmd, &log_path)?;
        proc.wait_for_port(loopback(listen_port))?;
        proc.wait_for_port(loopback(mgmt_port))?;

        Ok(Pebble {
            proc,
            challtestsrv,
            challtestsrv_mgmt,
            tls,
            listen_port,
            mgmt_port,
            http_port,
            tls_port,
            dns_server,
            eab_keys,
            log_path,
            dir,
        })
    }
}

/// A running Pebble. Killed, and its temp dir removed, on drop.
pub struct Pebble {
    proc: Proc,
    challtestsrv: Option<Proc>,
    challtestsrv_mgmt: Option<String>,
    tls: LocalTls,
    listen_port: u16,
    mgmt_port: u16,
    http_port: u16,
    tls_port: u16,
    dns_server: SocketAddr,
    eab_keys: Vec<(String, String)>,
    log_path: PathBuf,
    // Dropped last (fields drop in order after `Drop::drop`), once the processes are gone.
    dir: TempDir,
}

impl Pebble {
    pub fn builder() -> PebbleBuilder {
        PebbleBuilder::default()
    }

    /// A Pebble with default options.
    pub fn start() -> Result<Pebble> {
        Self::builder().start()
    }

    /// `https://127.0.0.1:PORT/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.listen_port)
    }

    /// PEM of the CA that signed Pebble's HTTPS certificate: the ACME client must trust it.
    pub fn ca_bundle_path(&self) -> &Path {
        &self.tls.ca_bundle
    }

    /// `https://127.0.0.1:PORT` of the management API (same TLS trust as the directory).
    pub fn management_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.mgmt_port)
    }

    /// Port Pebble's VA connects to for http-01.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Port Pebble's VA connects to for tls-alpn-01.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// The DNS server Pebble's VA resolves names (and dns-01 TXT records) with.
    pub fn dns_server(&self) -> SocketAddr {
        self.dns_server
    }

    /// EAB `(kid, base64url HMAC key)` pairs; empty unless built with `.eab(true)`.
    pub fn eab_keys(&self) -> &[(String, String)] {
        &self.eab_keys
    }

    /// Pebble's stdout/stderr so far (e.g. to assert what it received).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A scratch directory removed with this Pebble.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// DER of each root: `/roots/0` (the default chain's root) then the alternate roots.
    pub fn roots(&self) -> Result<Vec<Vec<u8>>> {
        self.numbered_certs("roots")
    }

    /// DER of each intermediate that directly issues leaves: `/intermediates/0`, ...
    pub fn intermediates(&self) -> Result<Vec<Vec<u8>>> {
        self.numbered_certs("intermediates")
    }

    fn numbered_certs(&self, kind: &str) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for i in 0.. {
            let url = format!("{}/{kind}/{i}", self.management_url());
            let resp = http::get(&url, Some(self.ca_bundle_path()))?;
            if resp.status == 404 || (resp.status >= 400 && i > 0) {
                break;
            }
            if resp.status != 200 {
                bail!("GET {url}: HTTP {}: {}", resp.status, resp.text());
            }
            out.push(
                crate::chain::pem_certs(&resp.body)
                    .with_context(|| format!("GET {url}"))?
                    .remove(0),
            );
        }
        Ok(out)
    }

    /// `/cert-status-by-serial/<hex>`: JSON with `Status` ("Valid"/"Revoked"), `Reason`, `RevokedAt`.
    pub fn cert_status(&self, serial_hex: &str) -> Result<Value> {
        let url = format!(
            "{}/cert-status-by-serial/{}",
            self.management_url(),
            serial_hex.to_lowercase()
        );
        let resp = http::get(&url, Some(self.ca_bundle_path()))?;
        if resp.status != 200 {
            bail!("GET {url}: HTTP {}: {}", resp.status, resp.text());
        }
        serde_json::from_slice(&resp.body).with_context(|| format!("GET {url}: not JSON: {}", resp.text()))
    }

    /// Verifies a PEM full chain against this Pebble's roots (see [`crate::verify_chain`]);
    /// returns the index of the anchoring root in [`Pebble::roots`].
    pub fn verify_chain(&self, fullchain_pem: &[u8], dns_names: &[&str], at: SystemTime) -> Result<usize> {
        crate::chain::verify_chain(fullchain_pem, &self.roots()?, dns_names, at)
    }

    /// Management URL of the private `pebble-challtestsrv` (None when `.dns_server` was given).
    pub fn challtestsrv_url(&self) -> Option<&str> {
        self.challtestsrv_mgmt.as_deref()
    }

    /// Publishes a TXT record in the private challtestsrv (for dns-01 without BIND).
    /// `host` is the full name, e.g. `_acme-challenge.example.test`.
    pub fn set_txt(&self, host: &str, value: &str) -> Result<()> {
        self.challtestsrv_post("set-txt", json!({ "host": fqdn(host), "value": value }))
    }

    /// Removes the TXT records of `host` from the private challtestsrv.
    pub fn clear_txt(&self, host: &str) -> Result<()> {
        self.challtestsrv_post("clear-txt", json!({ "host": fqdn(host) }))
    }

    fn challtestsrv_post(&self, path: &str, body: Value) -> Result<()> {
        let Some(base) = &self.challtestsrv_mgmt else {
            bail!("this Pebble uses an external DNS server; update that server instead");
        };
        let url = format!("{base}/{path}");
        let resp = http::post_json(&url, &body)?;
        if resp.status != 200 {
            bail!("POST {url}: HTTP {}: {}", resp.status, resp.text());
        }
        Ok(())
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.proc.stop();
        if let Some(p) = &mut self.challtestsrv {
            p.stop();
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn fqdn(host: &str) -> String {
    if host.ends_with('.') {
        host.to_owned()
    } else {
        format!("{host}.")
    }
}

fn load_eab_keys() -> Vec<(String, String)> {
    let from_file = std::fs::read(EAB_EXAMPLE)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["pebble"]["externalAccountMACKeys"].as_object().cloned())
        .map(|m| {
            m.into_iter()
                .filter_map(|(k, v)| Some((k, v.as_str()?.to_owned())))
                .collect::<Vec<_>>()
        });
    match from_file {
        Some(keys) if !keys.is_empty() => keys,
        _ => EAB_FALLBACK
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}
