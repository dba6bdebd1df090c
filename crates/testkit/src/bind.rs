//! A real BIND 9 (`named -g`) on a free loopback port, for dns-01 tests.
//!
//! Layout (the same for every instance, so tests and the lead's end-to-end wiring can rely on
//! it):
//! - an empty root zone and the parent zone `example.test` (not updatable), with
//!   `ns1.example.test A 127.0.0.1`;
//! - each requested sub-zone (e.g. `host1.example.test`) delegated from the parent
//!   (`host1 NS ns1.example.test.`) and served by the same `named`, updatable with one TSIG key
//!   (`update-policy { grant <key> zonesub TXT; }`: TXT anywhere in the sub-zone, nothing else);
//! - when `host1.example.test` is one of them, the parent also holds the delegation alias
//!   `_acme-challenge.alias.example.test. CNAME _acme-challenge.host1.example.test.`.
//!
//! Every NS name resolves to 127.0.0.1: a dns-01 client whose resolver is this server must
//! then query the authoritative servers at *this* port (certfleet's `--dns-resolver` does so
//! for loopback NS addresses).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The parent zone every instance serves.
pub const PARENT_ZONE: &str = "example.test";

/// Options for [`Bind::start_with`].
#[derive(Debug, Clone)]
pub struct BindOptions {
    /// Sub-zones of `example.test` to create and make updatable (e.g. `host1.example.test`).
    pub zones: Vec<String>,
    /// TSIG algorithm of the update key, as `tsig-keygen -a` spells it (`hmac-sha256`, ...).
    pub algorithm: String,
    /// Extra records for the parent zone, in zone-file syntax relative to `example.test.`.
    pub parent_records: Vec<String>,
    /// Answer recursive queries (default true). Only this server's own zones exist (it also
    /// serves an empty root zone, so other names get a quick NXDOMAIN); what recursion adds
    /// is CNAME chasing across its zones, which a CA's resolver (Pebble's VA) needs to
    /// follow `_acme-challenge.alias.example.test` into `host1.example.test`.
    pub recursion: bool,
    /// Extra statements inside each sub-zone's `zone { }` block (e.g. an `allow-query`).
    pub zone_options: Vec<String>,
}

impl Default for BindOptions {
    fn default() -> Self {
        BindOptions {
            zones: Vec::new(),
            algorithm: "hmac-sha256".into(),
            parent_records: Vec::new(),
            recursion: true,
            zone_options: Vec::new(),
        }
    }
}

/// A running `named`; killed on drop.
pub struct Bind {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
    key_name: String,
    key_algorithm: String,
    key_secret: String,
    zones: Vec<String>,
}

impl std::fmt::Debug for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bind")
            .field("addr", &self.addr())
            .field("zones", &self.zones)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl Bind {
    /// Start BIND serving `example.test` plus the given updatable sub-zones, with an
    /// `hmac-sha256` key.
    pub fn start(zones: &[&str]) -> Result<Bind> {
        Bind::start_with(BindOptions {
            zones: zones.iter().map(|z| z.to_string()).collect(),
            ..BindOptions::default()
        })
    }

    pub fn start_with(opts: BindOptions) -> Result<Bind> {
        for z in &opts.zones {
            if !z.ends_with(".example.test") || z[..z.len() - ".example.test".len()].contains('.') {
                bail!("BIND harness: zone {z:?} must be a direct child of example.test");
            }
        }
        let mut last_err = None;
        // A free port can be taken between picking and binding; retry with another.
        for _ in 0..3 {
            match Bind::try_start(&opts) {
                Ok(b) => return Ok(b),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    fn try_start(opts: &BindOptions) -> Result<Bind> {
        let dir = tempfile::Builder::new().prefix("certfleet-bind").tempdir()?;
        let port = crate::ports::free_port();
        let key_name = "certfleet-key".to_string();
        let key_conf = run_tsig_keygen(&opts.algorithm, &key_name)?;
        let key_secret = parse_secret(&key_conf)
            .with_context(|| format!("no secret in tsig-keygen output:\n{key_conf}"))?;
        std::fs::write(dir.path().join("update.key"), &key_conf)?;

        let d = dir.path().display();
        let mut conf = format!(
            "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  \
             session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n  \
             listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  \
             recursion {recursion};\n  allow-recursion {{ 127.0.0.1; }};\n  dnssec-validation no;\n  \
             notify no;\n}};\ncontrols {{ }};\n\
             include \"{d}/update.key\";\n\
             zone \".\" {{ type primary; file \"root.zone\"; }};\n\
             zone \"{PARENT_ZONE}\" {{ type primary; file \"{PARENT_ZONE}.zone\"; }};\n",
            recursion = if opts.recursion { "yes" } else { "no" }
        );
        std::fs::write(
            dir.path().join("root.zone"),
            format!(
                "$TTL 60\n. IN SOA ns1.{PARENT_ZONE}. hostmaster.{PARENT_ZONE}. 1 60 60 3600 1\n. IN NS ns1.{PARENT_ZONE}.\n"
            ),
        )?;
        let mut parent = soa_header(PARENT_ZONE);
        parent.push_str("ns1 IN A 127.0.0.1\n");
        for zone in &opts.zones {
            let label = &zone[..zone.len() - PARENT_ZONE.len() - 1];
            parent.push_str(&format!("{label} IN NS ns1.{PARENT_ZONE}.\n"));
            conf.push_str(&format!(
                "zone \"{zone}\" {{ type primary; file \"{zone}.zone\"; \
                 update-policy {{ grant {key_name} zonesub TXT; }}; {} }};\n",
                opts.zone_options.join(" ")
            ));
            std::fs::write(dir.path().join(format!("{zone}.zone")), soa_header(zone))?;
        }
        if opts.zones.iter().any(|z| z == "host1.example.test") {
            parent.push_str("_acme-challenge.alias IN CNAME _acme-challenge.host1.example.test.\n");
        }
        for r in &opts.parent_records {
            parent.push_str(r);
            parent.push('\n');
        }
        std::fs::write(dir.path().join(format!("{PARENT_ZONE}.zone")), parent)?;
        let conf_path = dir.path().join("named.conf");
        std::fs::write(&conf_path, conf)?;

        let log = std::fs::File::create(dir.path().join("named.log"))?;
        let child = Command::new("named")
            .arg("-g")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting named (is the Debian package bind9 installed?)")?;
        let mut bind = Bind {
            dir,
            port,
            child,
            key_name,
            key_algorithm: opts.algorithm.clone(),
            key_secret,
            zones: opts.zones.clone(),
        };
        bind.wait_ready()?;
        Ok(bind)
    }

    /// Ready when every zone answers its SOA over TCP (zones load after the port opens).
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut zones = vec![PARENT_ZONE.to_string()];
        zones.extend(self.zones.iter().cloned());
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("named exited ({status}) during startup:\n{}", self.log());
            }
            if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok()
                && zones.iter().all(|z| !self.dig_with(z, "SOA", true).is_empty())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("named did not become ready in 15 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where `named` listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TSIG key name allowed to update TXT records in the sub-zones.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// The key's base64 secret.
    pub fn key_secret(&self) -> &str {
        &self.key_secret
    }

    /// The key's algorithm in BIND spelling (`hmac-sha256`).
    pub fn key_algorithm(&self) -> &str {
        &self.key_algorithm
    }

    /// A BIND key file (`key "..." { algorithm ...; secret "..."; };`) for `nsupdate -k`.
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("update.key")
    }

    /// Working directory (zone files, journals, `named.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Write a certbot dns-rfc2136 credentials ini for this server, mode 0600.
    pub fn write_rfc2136_ini(&self, path: &Path) -> Result<()> {
        self.write_rfc2136_ini_with_secret(path, &self.key_secret)
    }

    /// Same, with another secret (for wrong-key tests).
    pub fn write_rfc2136_ini_with_secret(&self, path: &Path, secret: &str) -> Result<()> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let body = format!(
            "# certbot dns-rfc2136 credentials\n\
             dns_rfc2136_server = 127.0.0.1\n\
             dns_rfc2136_port = {}\n\
             dns_rfc2136_name = {}\n\
             dns_rfc2136_secret = {}\n\
             dns_rfc2136_algorithm = {}\n",
            self.port,
            self.key_name,
            secret,
            self.key_algorithm.to_uppercase()
        );
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        std::io::Write::write_all(&mut f, body.as_bytes())?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(())
    }

    /// `dig +short` against this server (no recursion): one line per record, TXT quotes
    /// removed. An independent view of what the server answers.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        self.dig_with(name, rtype, false)
    }

    /// `dig`, TSIG-signed with the update key when `signed` (zones may restrict queries).
    fn dig_with(&self, name: &str, rtype: &str, signed: bool) -> Vec<String> {
        let mut cmd = Command::new("dig");
        if signed {
            cmd.arg("-k").arg(self.key_file());
        }
        let out = cmd
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+short",
                "+norecurse",
                "+tries=1",
            ])
            .args(["+time=1", name, rtype])
            .output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.starts_with(';'))
                .map(|l| l.trim().trim_matches('"').to_string())
                .filter(|l| !l.is_empty())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// TXT values at `name` as a CA's resolver sees them (recursion desired, CNAMEs chased
    /// when [`BindOptions::recursion`] is on); CNAME lines are dropped.
    pub fn resolve_txt(&self, name: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+short",
                "+tries=1",
                "+time=1",
                name,
                "TXT",
            ])
            .output();
        let mut v: Vec<String> = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with('"'))
                .map(|l| l.trim().trim_matches('"').to_string())
                .collect(),
            _ => Vec::new(),
        };
        v.sort();
        v
    }

    /// TXT values at `name` as this server answers them.
    pub fn txt(&self, name: &str) -> Vec<String> {
        let mut v = self.dig(name, "TXT");
        v.sort();
        v
    }

    /// Add a TXT record with `nsupdate` (e.g. someone else's record, or a stale one).
    pub fn nsupdate_add_txt(&self, zone: &str, name: &str, value: &str) -> Result<()> {
        self.nsupdate(&format!(
            "zone {zone}\nupdate add {name} 60 TXT \"{value}\"\nsend\n"
        ))
    }

    /// Run an `nsupdate` script against this server with the update key.
    pub fn nsupdate(&self, script: &str) -> Result<()> {
        use std::io::Write;
        let full = format!("server 127.0.0.1 {}\n{script}", self.port);
        let mut child = Command::new("nsupdate")
            .arg("-k")
            .arg(self.key_file())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running nsupdate")?;
        child.stdin.take().expect("piped").write_all(full.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("nsupdate failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// The `named` log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn soa_header(zone: &str) -> String {
    format!(
        "$ORIGIN {zone}.\n$TTL 60\n@ IN SOA ns1.{PARENT_ZONE}. hostmaster.{PARENT_ZONE}. 1 60 60 3600 1\n\
         @ IN NS ns1.{PARENT_ZONE}.\n"
    )
}

fn run_tsig_keygen(algorithm: &str, name: &str) -> Result<String> {
    let out = Command::new("tsig-keygen")
        .args(["-a", algorithm, name])
        .output()
        .context("running tsig-keygen")?;
    if !out.status.success() {
        bail!(
            "tsig-keygen -a {algorithm} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn parse_secret(key_conf: &str) -> Option<String> {
    let line = key_conf.lines().find(|l| l.trim_start().starts_with("secret"))?;
    Some(line.split('"').nth(1)?.to_string())
}
