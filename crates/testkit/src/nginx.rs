//! A real nginx serving a webroot (for http-01 webroot tests) and optionally HTTPS with a given
//! certificate (for deploy/reload tests), on free loopback ports.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::{Proc, is_root, tail};
use crate::tls::write;

/// A certificate must be served unchanged this long before it counts as "the" served one:
/// after a reload, old workers keep serving the old certificate for up to ~100 ms.
const STABLE_FOR: Duration = Duration::from_millis(250);
const LEAF_TIMEOUT: Duration = Duration::from_secs(15);

/// Options for [`Nginx`]; create with [`Nginx::builder`].
#[derive(Debug, Default, Clone)]
pub struct NginxBuilder {
    http_port: Option<u16>,
    webroot: Option<PathBuf>,
    https: Option<(PathBuf, PathBuf)>,
    https_port: Option<u16>,
    challenge_forbidden: bool,
    extra_http_conf: String,
}

impl NginxBuilder {
    /// HTTP port (default: free). Point Pebble's `.http_port` here for webroot http-01 tests.
    pub fn http_port(mut self, port: u16) -> Self {
        self.http_port = Some(port);
        self
    }

    /// Directory served at `/` (so challenges go to `WEBROOT/.well-known/acme-challenge/`).
    /// Default: `webroot/` in nginx's temp dir.
    pub fn webroot(mut self, dir: impl Into<PathBuf>) -> Self {
        self.webroot = Some(dir.into());
        self
    }

    /// Also serve HTTPS with these PEM files (both must exist at start; see
    /// [`crate::self_signed_pem`] for a placeholder).
    pub fn https(mut self, fullchain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.https = Some((fullchain.into(), key.into()));
        self
    }

    /// HTTPS port (default: free; only used with [`NginxBuilder::https`]).
    pub fn https_port(mut self, port: u16) -> Self {
        self.https_port = Some(port);
        self
    }

    /// Answer 403 for `/.well-known/acme-challenge/` (to test error hints).
    pub fn challenge_forbidden(mut self, forbidden: bool) -> Self {
        self.challenge_forbidden = forbidden;
        self
    }

    /// Extra directives inside `http { }` (e.g. another `server` block, or an `include` of a
    /// file a test later breaks on purpose). Ports they listen on are not waited for.
    pub fn extra_http_conf(mut self, conf: impl Into<String>) -> Self {
        self.extra_http_conf.push_str(&conf.into());
        self.extra_http_conf.push('\n');
        self
    }

    /// Starts nginx and waits until it listens (retrying with fresh ports if a picked one was
    /// taken by a parallel test meanwhile).
    pub fn start(self) -> Result<Nginx> {
        let fixed = self.http_port.is_some() || (self.https.is_some() && self.https_port.is_some());
        crate::process::retry_on_port_clash(fixed, || self.try_start())
    }

    fn try_start(&self) -> Result<Nginx> {
        let dir = tempfile::Builder::new().prefix("certfleet-nginx-").tempdir()?;
        let webroot = match &self.webroot {
            Some(w) => w.clone(),
            None => dir.path().join("webroot"),
        };
        std::fs::create_dir_all(&webroot).with_context(|| format!("creating {}", webroot.display()))?;
        std::fs::create_dir_all(dir.path().join("tmp"))?;
        let mut nginx = Nginx {
            proc: None,
            http_port: self.http_port.unwrap_or_else(free_port),
            https_port: self.https_port.unwrap_or_else(free_port),
            https: self.https.clone(),
            challenge_forbidden: self.challenge_forbidden,
            extra_http_conf: self.extra_http_conf.clone(),
            webroot,
            conf: dir.path().join("nginx.conf"),
            error_log: dir.path().join("error.log"),
            dir,
        };
        nginx.write_conf()?;
        let mut cmd = Command::new("nginx");
        cmd.arg("-e").arg(&nginx.error_log).arg("-c").arg(&nginx.conf);
        let out_log = nginx.dir.path().join("nginx.out");
        let mut proc = Proc::spawn("nginx", &mut cmd, &out_log)?
            .with_extra_log(&nginx.error_log)
            .graceful();
        // nginx writes its pid file only after binding every listener (it retries a taken port
        // for ~2.5 s), so a foreign listener on the port cannot pass for nginx.
        proc.wait_for_file(&nginx.dir.path().join("nginx.pid"))?;
        proc.wait_for_port(loopback(nginx.http_port))?;
        if nginx.https.is_some() {
            proc.wait_for_port(loopback(nginx.https_port))?;
        }
        nginx.proc = Some(proc);
        Ok(nginx)
    }
}

/// A running nginx (master + 1 worker). Stopped, and its temp dir removed, on drop.
pub struct Nginx {
    proc: Option<Proc>,
    http_port: u16,
    https_port: u16,
    https: Option<(PathBuf, PathBuf)>,
    challenge_forbidden: bool,
    extra_http_conf: String,
    webroot: PathBuf,
    conf: PathBuf,
    error_log: PathBuf,
    dir: TempDir,
}

impl Nginx {
    pub fn builder() -> NginxBuilder {
        NginxBuilder::default()
    }

    /// An HTTP-only nginx on a free port with a fresh webroot.
    pub fn start() -> Result<Nginx> {
        Self::builder().start()
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The HTTPS port, if HTTPS is enabled.
    pub fn https_port(&self) -> Option<u16> {
        self.https.as_ref().map(|_| self.https_port)
    }

    pub fn webroot(&self) -> &Path {
        &self.webroot
    }

    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    pub fn error_log_path(&self) -> &Path {
        &self.error_log
    }

    /// A scratch directory removed with this nginx.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// The command line that reloads this nginx, e.g. for a certfleet deploy hook.
    pub fn reload_command(&self) -> Vec<String> {
        let mut v = vec!["nginx".to_owned(), "-e".to_owned()];
        v.push(self.error_log.display().to_string());
        v.push("-c".to_owned());
        v.push(self.conf.display().to_string());
        v.extend(["-s".to_owned(), "reload".to_owned()]);
        v
    }

    /// The command line that tests this nginx's configuration (`nginx -t`), as a deploy would
    /// run it before the reload.
    pub fn config_test_command(&self) -> Vec<String> {
        let mut v = self.reload_command();
        v.truncate(v.len() - 2);
        v.push("-t".to_owned());
        v
    }

    /// `nginx -s reload`; errors carry nginx's output and error log.
    pub fn reload(&self) -> Result<()> {
        let cmd = self.reload_command();
        let out = Command::new(&cmd[0])
            .args(&cmd[1..])
            .output()
            .context("running nginx -s reload")?;
        if !out.status.success() {
            bail!(
                "nginx -s reload failed ({}): {}{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail(&self.error_log)
            );
        }
        Ok(())
    }

    /// Switches HTTPS on (or to other files) and reloads.
    pub fn enable_https(&mut self, fullchain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<()> {
        self.https = Some((fullchain.into(), key.into()));
        self.write_conf()?;
        self.reload()?;
        if let Some(p) = &mut self.proc {
            p.wait_for_port(loopback(self.https_port))?;
        }
        Ok(())
    }

    /// Turns the 403 on the challenge path on or off and reloads.
    pub fn set_challenge_forbidden(&mut self, forbidden: bool) -> Result<()> {
        self.challenge_forbidden = forbidden;
        self.write_conf()?;
        self.reload()
    }

    /// DER of the leaf certificate the HTTPS server serves once it has been stable for 250 ms
    /// (old workers keep the old certificate for a while after a reload). `sni` defaults to
    /// `localhost`.
    pub fn served_leaf(&self, sni: Option<&str>) -> Result<Vec<u8>> {
        self.poll_leaf(sni, None)
    }

    /// Waits until the HTTPS server stably serves `expected_der` as its leaf.
    pub fn wait_for_leaf(&self, sni: Option<&str>, expected_der: &[u8]) -> Result<()> {
        self.poll_leaf(sni, Some(expected_der)).map(|_| ())
    }

    fn poll_leaf(&self, sni: Option<&str>, expected: Option<&[u8]>) -> Result<Vec<u8>> {
        let port = self
            .https_port()
            .ok_or_else(|| anyhow!("this nginx serves no HTTPS"))?;
        let deadline = Instant::now() + LEAF_TIMEOUT;
        let mut current: Option<(Vec<u8>, Instant)> = None;
        loop {
            let leaf = fetch_leaf(loopback(port), sni.unwrap_or("localhost"))?;
            let since = match &current {
                Some((der, since)) if *der == leaf => *since,
                _ => Instant::now(),
            };
            current = Some((leaf, since));
            let (der, since) = current.as_ref().expect("just set");
            let wanted = expected.is_none_or(|e| e == der.as_slice());
            if wanted && since.elapsed() >= STABLE_FOR {
                return Ok(der.clone());
            }
            if Instant::now() > deadline {
                bail!(
                    "nginx on port {port} did not stably serve {} within {LEAF_TIMEOUT:?}\n{}",
                    if expected.is_some() {
                        "the expected certificate"
                    } else {
                        "one certificate"
                    },
                    tail(&self.error_log)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn write_conf(&self) -> Result<()> {
        let d = self.dir.path();
        let webroot = self.webroot.display();
        let mut c = String::new();
        writeln!(c, "daemon off;\nmaster_process on;\nworker_processes 1;")?;
        // As root nginx would drop workers to `nobody`, who cannot read a 0700 temp dir.
        if is_root() {
            writeln!(c, "user root root;")?;
        }
        writeln!(c, "pid {}/nginx.pid;", d.display())?;
        writeln!(c, "error_log {} info;", self.error_log.display())?;
        writeln!(c, "events {{ worker_connections 64; }}\nhttp {{")?;
        writeln!(
            c,
            "  access_log {}/access.log;\n  default_type text/plain;",
            d.display()
        )?;
        for module in temp_path_modules() {
            writeln!(c, "  {module}_temp_path {}/tmp/{module};", d.display())?;
        }
        let challenge = if self.challenge_forbidden {
            "return 403;".to_owned()
        } else {
            format!("root {webroot};")
        };
        writeln!(
            c,
            "  server {{\n    listen 127.0.0.1:{};\n    server_name _;",
            self.http_port
        )?;
        writeln!(c, "    location /.well-known/acme-challenge/ {{ {challenge} }}")?;
        writeln!(c, "    location / {{ root {webroot}; }}\n  }}")?;
        if let Some((fullchain, key)) = &self.https {
            writeln!(
                c,
                "  server {{\n    listen 127.0.0.1:{} ssl;\n    server_name _;",
                self.https_port
            )?;
            writeln!(
                c,
                "    ssl_certificate {};\n    ssl_certificate_key {};",
                fullchain.display(),
                key.display()
            )?;
            writeln!(c, "    location / {{ root {webroot}; }}\n  }}")?;
        }
        c.push_str(&self.extra_http_conf);
        writeln!(c, "}}")?;
        write(&self.conf, c.as_bytes())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(p) = &mut self.proc else { return };
        p.stop();
        // A SIGKILLed worker closes its listening sockets only when the kernel has finished
        // tearing it down, a moment after kill(1) returns: tests that drop nginx to make
        // validation fail must not find its port still answering.
        let ports = [Some(self.http_port), self.https_port()];
        let deadline = Instant::now() + Duration::from_secs(5);
        for port in ports.into_iter().flatten() {
            while Instant::now() < deadline
                && TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200)).is_ok()
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// `*_temp_path` directives this nginx build knows (nginx-light lacks some modules, and an
/// unknown directive is a startup error).
fn temp_path_modules() -> Vec<&'static str> {
    let build = Command::new("nginx")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    let mut v = vec!["client_body"];
    for m in ["proxy", "fastcgi", "uwsgi", "scgi"] {
        if !build.contains(&format!("--without-http_{m}_module")) {
            v.push(m);
        }
    }
    v
}

/// One TLS handshake to `addr`; returns the leaf certificate the server sent. Trust is not
/// checked: tests compare the bytes with what they expect.
pub fn fetch_leaf(addr: SocketAddr, sni: &str) -> Result<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| anyhow!("bad SNI {sni:?}: {e}"))?;
    let mut conn = ClientConnection::new(Arc::new(config), name)?;
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .with_context(|| format!("TLS handshake with {addr}"))?;
    }
    let certs = conn
        .peer_certificates()
        .ok_or_else(|| anyhow!("{addr} sent no certificate"))?;
    Ok(certs
        .first()
        .ok_or_else(|| anyhow!("{addr} sent an empty chain"))?
        .to_vec())
}

#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
