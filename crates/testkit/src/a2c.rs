//! acme2certifier: a second, independent ACME CA with ARI (`renewalInfo`) and profiles.
//!
//! It validates http-01 on port 80 and asks DNS on port 53 only, so it runs in a private network
//! namespace (`unshare -n`, as root) with its own loopback: there port 80/53/443 are free and
//! parallel tests cannot clash. Inside the namespace live acme2certifier (HTTPS on
//! 127.0.0.1:443) and a `pebble-challtestsrv` DNS server on 127.0.0.1:53 answering 127.0.0.1 for
//! every name. The client under test must run in the same namespace: [`Acme2Certifier::command`]
//! wraps a program in `nsenter`, [`Acme2Certifier::in_netns`] runs a closure on a thread that
//! joined the namespace (threads and runtimes it creates inherit it).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::http;
use crate::process::{Proc, READY_TIMEOUT};
use crate::tls::{LocalTls, localhost_tls, write};

/// Pinned so tests see the behaviour documented in test-env.md.
const A2C_PACKAGE: &str = "acme2certifier==0.46.3";
const SERVE_PY: &str = include_str!("a2c_serve.py");
const HTTPS_PORT: u16 = 443;
const DNS_PORT: u16 = 53;
const CHALLTESTSRV_PORT: u16 = 8055;

static VENV_LOCK: Mutex<()> = Mutex::new(());

/// Options for [`Acme2Certifier`]; create with [`Acme2Certifier::builder`].
#[derive(Debug, Clone)]
pub struct Acme2CertifierBuilder {
    profiles: Value,
    renewal_force: bool,
    retry_after_timeout: u64,
    validity_days: u32,
    profile_validity: Vec<(String, u32)>,
    extra: Vec<(String, String, String)>,
}

impl Default for Acme2CertifierBuilder {
    fn default() -> Self {
        Acme2CertifierBuilder {
            profiles: json!({
                "classic": "http://127.0.0.1/profiles/classic",
                "shortlived": "http://127.0.0.1/profiles/shortlived",
            }),
            renewal_force: false,
            retry_after_timeout: 60,
            validity_days: 30,
            profile_validity: Vec::new(),
            extra: Vec::new(),
        }
    }
}

impl Acme2CertifierBuilder {
    /// `[Order] profiles`: name -> description URL, advertised in `meta.profiles`.
    pub fn profiles(mut self, profiles: Value) -> Self {
        self.profiles = profiles;
        self
    }

    /// `[Renewalinfo] renewal_force`: ARI's suggested window lies in the past (renew now).
    pub fn renewal_force(mut self, force: bool) -> Self {
        self.renewal_force = force;
        self
    }

    /// `[Renewalinfo] retry_after_timeout` in seconds (the ARI `Retry-After`).
    pub fn retry_after_timeout(mut self, secs: u64) -> Self {
        self.retry_after_timeout = secs;
        self
    }

    /// `[CAhandler] cert_validity_days`.
    pub fn validity_days(mut self, days: u32) -> Self {
        self.validity_days = days;
        self
    }

    /// Certificates ordered with `profile` are valid for `days` (instead of
    /// [`Self::validity_days`]): acme2certifier's multi-handler mode routes the profile to its own
    /// `[CAhandler:<profile>]` section (`[Order] profile_cahandler`), which overlays `[CAhandler]`.
    pub fn profile_validity_days(mut self, profile: &str, days: u32) -> Self {
        self.profile_validity.push((profile.to_owned(), days));
        self
    }

    /// Any other config option.
    pub fn config(mut self, section: &str, key: &str, value: &str) -> Self {
        self.extra
            .push((section.to_owned(), key.to_owned(), value.to_owned()));
        self
    }

    pub fn start(self) -> Result<Acme2Certifier> {
        let python = ensure_venv()?;
        let dir = tempfile::Builder::new().prefix("certfleet-a2c-").tempdir()?;
        let d = dir.path();
        let tls = localhost_tls(d)?;
        let root = make_ca(d)?;
        for sub in ["certs", "db"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let config_path = d.join("acme_srv.cfg");
        write(&config_path, self.config_text(d).as_bytes())?;
        write(&d.join("serve.py"), SERVE_PY.as_bytes())?;

        // The namespace holder: everything else joins its network namespace.
        let mut holder_cmd = Command::new("unshare");
        holder_cmd.args(["-n", "--", "sleep", "infinity"]);
        let holder = Proc::spawn(
            "unshare -n (network namespace holder)",
            &mut holder_cmd,
            &d.join("netns.log"),
        )?;
        let netns = PathBuf::from(format!("/proc/{}/ns/net", holder.pid()));
        wait_for_new_netns(&netns, &holder)?;
        let mut a2c = Acme2Certifier {
            server: None,
            dns: None,
            holder,
            netns,
            tls,
            root,
            log_path: d.join("a2c.log"),
            dir,
        };
        let up = a2c.command("ip").args(["link", "set", "lo", "up"]).output()?;
        if !up.status.success() {
            bail!(
                "bringing up loopback in the namespace failed: {}",
                String::from_utf8_lossy(&up.stderr)
            );
        }

        let mut dns_cmd = a2c.command("pebble-challtestsrv");
        dns_cmd
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{DNS_PORT}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{CHALLTESTSRV_PORT}")]);
        let mut dns = Proc::spawn(
            "pebble-challtestsrv (in netns)",
            &mut dns_cmd,
            &a2c.dir.path().join("dns.log"),
        )?;
        a2c.in_netns(|| dns.wait_for_port(loopback(CHALLTESTSRV_PORT)))??;
        a2c.dns = Some(dns);

        let ready = a2c.dir.path().join("ready");
        let mut srv_cmd = a2c.command(&python);
        srv_cmd
            .arg(a2c.dir.path().join("serve.py"))
            .args(["127.0.0.1", &HTTPS_PORT.to_string()])
            .arg(&a2c.tls.cert)
            .arg(&a2c.tls.key)
            .arg(&ready)
            .arg(a2c.dir.path().join("requests.jsonl"))
            .env("ACME_SRV_CONFIGFILE", &config_path)
            .current_dir(a2c.dir.path());
        let mut server = Proc::spawn("acme2certifier", &mut srv_cmd, &a2c.log_path)?;
        a2c.in_netns(|| server.wait_for_port(loopback(HTTPS_PORT)))??;
        a2c.server = Some(server);
        Ok(a2c)
    }

    fn config_text(&self, d: &Path) -> String {
        let p = |name: &str| d.join(name).display().to_string();
        let mut sections: Vec<(String, Vec<(String, String)>)> = vec![
            (
                "DEFAULT".into(),
                vec![
                    ("debug".into(), "True".into()),
                    ("dns_server_list".into(), r#"["127.0.0.1"]"#.into()),
                ],
            ),
            (
                "Nonce".into(),
                vec![("nonce_check_disable".into(), "False".into())],
            ),
            // Like Let's Encrypt (and Pebble), accounts without a contact are fine.
            (
                "Account".into(),
                vec![("contact_check_disable".into(), "True".into())],
            ),
            (
                "CAhandler".into(),
                vec![
                    (
                        "handler_module".into(),
                        "acme2certifier.cahandlers.openssl_ca_handler".into(),
                    ),
                    ("issuing_ca_key".into(), p("sub-ca.key")),
                    ("issuing_ca_cert".into(), p("sub-ca.pem")),
                    ("issuing_ca_crl".into(), p("sub-ca.crl")),
                    ("ca_cert_chain_list".into(), json!([p("root-ca.pem")]).to_string()),
                    ("cert_save_path".into(), p("certs")),
                    ("cert_validity_days".into(), self.validity_days.to_string()),
                ],
            ),
            (
                "DBhandler".into(),
                vec![
                    ("handler".into(), "wsgi".into()),
                    ("dbfile".into(), p("db/acme_srv.db")),
                ],
            ),
            (
                "Certificate".into(),
                vec![("revocation_reason_check_disable".into(), "False".into())],
            ),
            (
                "Challenge".into(),
                vec![("challenge_validation_disable".into(), "False".into())],
            ),
            (
                "Order".into(),
                vec![
                    ("tnauthlist_support".into(), "False".into()),
                    ("profiles".into(), self.profiles.to_string()),
                ],
            ),
            (
                "Renewalinfo".into(),
                vec![
                    (
                        "renewal_force".into(),
                        if self.renewal_force { "True" } else { "False" }.into(),
                    ),
                    ("retry_after_timeout".into(), self.retry_after_timeout.to_string()),
                ],
            ),
        ];
        if !self.profile_validity.is_empty() {
            let handler = |days: u32| {
                vec![
                    (
                        "handler_module".to_owned(),
                        "acme2certifier.cahandlers.openssl_ca_handler".to_owned(),
                    ),
                    ("cert_validity_days".to_owned(), days.to_string()),
                ]
            };
            let mut routes = serde_json::Map::new();
            sections.push(("CAhandler:default".into(), handler(self.validity_days)));
            for (profile, days) in &self.profile_validity {
                routes.insert(profile.clone(), json!(profile));
                sections.push((format!("CAhandler:{profile}"), handler(*days)));
            }
            for (section, key, value) in [
                ("CAhandler", "multi_handler", "True".to_owned()),
                ("CAhandler", "default_handler", "default".to_owned()),
                ("Order", "profile_cahandler", Value::Object(routes).to_string()),
            ] {
                if let Some((_, kv)) = sections.iter_mut().find(|(s, _)| s == section) {
                    kv.push((key.into(), value));
                }
            }
        }
        for (section, key, value) in &self.extra {
            match sections.iter_mut().find(|(s, _)| s == section) {
                Some((_, kv)) => match kv.iter_mut().find(|(k, _)| k == key) {
                    Some(entry) => entry.1 = value.clone(),
                    None => kv.push((key.clone(), value.clone())),
                },
                None => sections.push((section.clone(), vec![(key.clone(), value.clone())])),
            }
        }
        let mut out = String::new();
        for (section, kv) in sections {
            out.push_str(&format!("[{section}]\n"));
            for (k, v) in kv {
                out.push_str(&format!("{k}: {v}\n"));
            }
            out.push('\n');
        }
        out
    }
}

/// A running acme2certifier in its own network namespace; everything is stopped and removed on drop.
pub struct Acme2Certifier {
    server: Option<Proc>,
    dns: Option<Proc>,
    holder: Proc,
    netns: PathBuf,
    tls: LocalTls,
    root: Vec<u8>,
    log_path: PathBuf,
    dir: TempDir,
}

impl Acme2Certifier {
    pub fn builder() -> Acme2CertifierBuilder {
        Acme2CertifierBuilder::default()
    }

    /// With default options (profiles `classic` and `shortlived`, ARI not forced).
    pub fn start() -> Result<Acme2Certifier> {
        Self::builder().start()
    }

    /// `https://127.0.0.1/directory`, reachable only inside the namespace.
    pub fn directory_url(&self) -> String {
        "https://127.0.0.1/directory".to_owned()
    }

    /// PEM the client must trust for the server's HTTPS.
    pub fn ca_bundle_path(&self) -> &Path {
        &self.tls.ca_bundle
    }

    /// `/proc/PID/ns/net` of the namespace.
    pub fn netns_path(&self) -> &Path {
        &self.netns
    }

    /// DER of the root that anchors issued chains (the issuing CA sits between).
    pub fn roots(&self) -> Vec<Vec<u8>> {
        vec![self.root.clone()]
    }

    /// Verifies a PEM full chain against this CA's root; see [`crate::verify_chain`].
    pub fn verify_chain(&self, fullchain_pem: &[u8], dns_names: &[&str], at: SystemTime) -> Result<usize> {
        crate::chain::verify_chain(fullchain_pem, &self.roots(), dns_names, at)
    }

    /// A scratch directory removed with this instance.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every POST the server received so far, in order: `{"path": ..., "payload": ...}` with the
    /// JWS payload decoded (what the client sent, as the CA saw it on the wire).
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// acme2certifier's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `program` wrapped to run inside the namespace (`nsenter --net=... -- program`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns.display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Runs `f` on a new thread that joined the namespace; sockets it (and threads or runtimes it
    /// starts) opens live there, so an in-process ACME client can talk to the CA and answer http-01
    /// on 127.0.0.1:80.
    pub fn in_netns<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        let ns =
            std::fs::File::open(&self.netns).with_context(|| format!("opening {}", self.netns.display()))?;
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| anyhow!("setns into {}: {e} (needs root)", self.netns.display()))?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow!("closure in the network namespace panicked"))?
        })
    }

    /// Publishes a TXT record in the namespace's DNS server (for dns-01).
    pub fn set_txt(&self, host: &str, value: &str) -> Result<()> {
        self.dns_post("set-txt", json!({ "host": fqdn(host), "value": value }))
    }

    pub fn clear_txt(&self, host: &str) -> Result<()> {
        self.dns_post("clear-txt", json!({ "host": fqdn(host) }))
    }

    fn dns_post(&self, path: &str, body: Value) -> Result<()> {
        let url = format!("http://127.0.0.1:{CHALLTESTSRV_PORT}/{path}");
        let resp = self.in_netns(|| http::post_json(&url, &body))??;
        if resp.status != 200 {
            bail!("POST {url}: HTTP {}: {}", resp.status, resp.text());
        }
        Ok(())
    }

    /// GET `url` (inside the namespace, trusting the server's CA); returns status and body.
    pub fn get(&self, url: &str) -> Result<(u16, Vec<u8>)> {
        let resp = self.in_netns(|| http::get(url, Some(self.ca_bundle_path())))??;
        Ok((resp.status, resp.body))
    }
}

impl Drop for Acme2Certifier {
    fn drop(&mut self) {
        for p in [&mut self.server, &mut self.dns].into_iter().flatten() {
            p.stop();
        }
        self.holder.stop();
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

/// `unshare` creates the namespace just after it starts; wait until its ns link differs from ours.
fn wait_for_new_netns(netns: &Path, holder: &Proc) -> Result<()> {
    let ours = std::fs::read_link("/proc/self/ns/net")?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(theirs) = std::fs::read_link(netns)
            && theirs != ours
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "`unshare -n` did not create a network namespace (acme2certifier needs root); log:\n{}",
                holder.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Root CA + issuing CA for the openssl CA handler; returns the root's DER.
fn make_ca(d: &Path) -> Result<Vec<u8>> {
    let root_key = KeyPair::generate()?;
    let mut root_params = CertificateParams::new(Vec::<String>::new())?;
    root_params
        .distinguished_name
        .push(DnType::CommonName, "certfleet a2c test root");
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = CertifiedIssuer::self_signed(root_params, root_key)?;

    let sub_key = KeyPair::generate()?;
    let mut sub_params = CertificateParams::new(Vec::<String>::new())?;
    sub_params
        .distinguished_name
        .push(DnType::CommonName, "certfleet a2c test issuing CA");
    sub_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    sub_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    sub_params.use_authority_key_identifier_extension = true;
    let sub = sub_params.signed_by(&sub_key, &root)?;

    write(&d.join("root-ca.pem"), root.pem().as_bytes())?;
    write(&d.join("sub-ca.pem"), sub.pem().as_bytes())?;
    write(&d.join("sub-ca.key"), sub_key.serialize_pem().as_bytes())?;
    Ok(root.der().to_vec())
}

/// Where the acme2certifier venv is cached: `$CERTFLEET_A2C_VENV`, else
/// `<target dir>/testkit/a2c-venv`.
pub fn venv_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("CERTFLEET_A2C_VENV") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("testkit").join("a2c-venv")
}

/// Creates the venv with acme2certifier once (reused afterwards); returns its python. Built in a
/// sibling temp dir and renamed into place, so a half-made venv is never used.
fn ensure_venv() -> Result<PathBuf> {
    let _guard = VENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let venv = venv_dir();
    let python = venv.join("bin/python3");
    if python.exists() {
        return Ok(python);
    }
    let parent = venv
        .parent()
        .ok_or_else(|| anyhow!("bad venv path {}", venv.display()))?;
    std::fs::create_dir_all(parent)?;
    let staging = parent.join(format!("a2c-venv.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&staging),
        "python3 -m venv (install python3-venv)",
    )?;
    run(
        Command::new(staging.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            A2C_PACKAGE,
        ]),
        "pip install acme2certifier",
    )?;
    if let Err(e) = std::fs::rename(&staging, &venv) {
        // Another test process won the race: use its venv.
        let _ = std::fs::remove_dir_all(&staging);
        if !python.exists() {
            return Err(e).with_context(|| format!("moving venv into {}", venv.display()));
        }
    }
    Ok(python)
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
