//! The agent's own configuration file (TOML): the only place that says where a host writes a
//! certificate and what it runs afterwards. The server only names certificates; a compromised
//! server can therefore never make a host write elsewhere or run anything.
//!
//! ```toml
//! state_dir = "/var/lib/certfleet-agent"
//! interval = "5m"
//!
//! [[install]]
//! certificate = "www"
//! fullchain = "/etc/nginx/tls/www.fullchain.pem"
//! key = "/etc/nginx/tls/www.key"
//! reload = "nginx"                  # `nginx -t`, then `systemctl reload nginx`
//! verify = "127.0.0.1:443"          # TLS handshake: is the new certificate served?
//!
//! [[install]]
//! certificate = "mail"
//! cert_and_ca = "/etc/postfix/tls/mail.pem"
//! key = "/etc/postfix/tls/mail.key"
//! group = "postfix"
//! mode = "0640"
//! reload_command = ["/usr/sbin/postfix", "reload"]
//! verify = "127.0.0.1:25"
//! starttls = "smtp"
//! ```
//!
//! Every mistake is reported as `FILE:LINE:COL: what is wrong; what to do`, all of them at once
//! when they are semantic (a relative path, a world-readable key, `verify` without a port...).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use certfleet_renew::{ReloadCommands, Service};
use serde::Deserialize;
use toml::Spanned;

/// Where the agent keeps its keys, journal and lock when the config does not say.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/certfleet-agent";
/// How often the agent asks the server for news.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// How long the TLS verification may take, retries included.
pub const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a config test or reload command may run before its process group is killed.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Mode of files without a private key.
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode of files holding a private key (`key`, `combined`, `pkcs12`).
pub const KEY_MODE: u32 = 0o600;
/// Suffix of the previous version kept beside each written file.
pub const BACKUP_SUFFIX: &str = ".certfleet-prev";

/// The agent's validated configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    pub state_dir: PathBuf,
    /// The fleet server's URL; normally learnt at enrollment.
    pub server: Option<url::Url>,
    pub interval: Duration,
    pub installs: Vec<InstallRule>,
}

/// One `[[install]]` table: where one certificate goes on this host and how the service picks
/// it up. A certificate may have several (e.g. nginx and Postfix share one).
#[derive(Debug, Clone)]
pub struct InstallRule {
    /// The certificate's name on the server.
    pub certificate: String,
    /// `FILE:LINE` of the table, to tell the operator which rule a report is about.
    pub origin: String,
    /// The files to write, in config order.
    pub files: Vec<TargetFile>,
    /// Numeric owner and group applied to every file; `None` leaves the agent's own.
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub pkcs12_password_file: Option<PathBuf>,
    /// argv of the configuration test, run after writing and before the reload.
    pub config_test: Option<Vec<String>>,
    /// argv of the reload.
    pub reload: Option<Vec<String>>,
    pub command_timeout: Duration,
    pub verify: Option<VerifySpec>,
}

/// The formats a certificate can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    /// The leaf certificate alone (PEM).
    Cert,
    /// The intermediates (PEM).
    Chain,
    /// Leaf then intermediates (PEM): what nginx's `ssl_certificate` wants.
    Fullchain,
    /// The private key (PKCS#8 PEM).
    Key,
    /// Leaf, intermediates, then the private key in one PEM file (HAProxy's `crt`).
    Combined,
    /// Leaf and intermediates without the key (the "CRT+CA" file of older install scripts).
    CertAndCa,
    /// PKCS#12 with key, leaf and intermediates, encrypted with `pkcs12_password_file`.
    Pkcs12,
}

impl FileKind {
    pub const ALL: [FileKind; 7] = [
        FileKind::Cert,
        FileKind::Chain,
        FileKind::Fullchain,
        FileKind::Key,
        FileKind::Combined,
        FileKind::CertAndCa,
        FileKind::Pkcs12,
    ];

    /// The config key naming this kind of file.
    pub fn key(&self) -> &'static str {
        match self {
            FileKind::Cert => "cert",
            FileKind::Chain => "chain",
            FileKind::Fullchain => "fullchain",
            FileKind::Key => "key",
            FileKind::Combined => "combined",
            FileKind::CertAndCa => "cert_and_ca",
            FileKind::Pkcs12 => "pkcs12",
        }
    }

    pub fn holds_key(&self) -> bool {
        matches!(self, FileKind::Key | FileKind::Combined | FileKind::Pkcs12)
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One file a rule writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFile {
    pub kind: FileKind,
    pub path: PathBuf,
    /// Permission bits, applied whatever the umask.
    pub mode: u32,
}

/// How to prove the service serves the new certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySpec {
    pub endpoint: Endpoint,
    /// Server name sent in the handshake; `None`: the certificate's first DNS name.
    pub sni: Option<String>,
    pub starttls: Option<StartTls>,
    pub timeout: Duration,
}

/// `HOST:PORT` of a TLS endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// A DNS name or an IP address (without brackets).
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest
                .split_once("]:")
                .ok_or("an IPv6 address in brackets must be followed by :PORT")?;
            h.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("`{h}` is not an IPv6 address"))?;
            (h, p)
        } else {
            let (h, p) = s.rsplit_once(':').ok_or("it has no port")?;
            if h.contains(':') {
                return Err("an IPv6 address needs brackets".into());
            }
            let dns_ok = !h.is_empty()
                && h.len() <= 253
                && h.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !dns_ok && h.parse::<std::net::Ipv4Addr>().is_err() {
                return Err(format!("`{h}` is neither a host name nor an IP address"));
            }
            (h, p)
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("`{port}` is not a port (1-65535)")),
        };
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }
}

/// Plain-text protocols upgraded to TLS before the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    Smtp,
    Imap,
    Pop3,
}

impl StartTls {
    pub fn as_str(&self) -> &'static str {
        match self {
            StartTls::Smtp => "smtp",
            StartTls::Imap => "imap",
            StartTls::Pop3 => "pop3",
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}; check the path and that the agent may read it", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// One line per problem, each `FILE:LINE:COL: what is wrong; what to do`.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

impl ConfigError {
    /// The problems found (empty for a read error).
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            ConfigError::Invalid(v) => v,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// One problem at one place of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// `what is wrong; what to do`.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<Spanned<String>>,
    server: Option<Spanned<String>>,
    interval: Option<Spanned<toml::Value>>,
    #[serde(default)]
    install: Vec<Spanned<RawInstall>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstall {
    certificate: Spanned<String>,
    cert: Option<Spanned<String>>,
    chain: Option<Spanned<String>>,
    fullchain: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    combined: Option<Spanned<String>>,
    cert_and_ca: Option<Spanned<String>>,
    pkcs12: Option<Spanned<String>>,
    pkcs12_password_file: Option<Spanned<String>>,
    owner: Option<Spanned<toml::Value>>,
    group: Option<Spanned<toml::Value>>,
    mode: Option<Spanned<toml::Value>>,
    config_test_command: Option<Spanned<Vec<String>>>,
    reload_command: Option<Spanned<Vec<String>>>,
    reload: Option<Spanned<String>>,
    command_timeout: Option<Spanned<toml::Value>>,
    verify: Option<Spanned<String>>,
    sni: Option<Spanned<String>>,
    starttls: Option<Spanned<String>>,
    verify_timeout: Option<Spanned<toml::Value>>,
}

impl RawInstall {
    fn target(&self, kind: FileKind) -> Option<&Spanned<String>> {
        match kind {
            FileKind::Cert => self.cert.as_ref(),
            FileKind::Chain => self.chain.as_ref(),
            FileKind::Fullchain => self.fullchain.as_ref(),
            FileKind::Key => self.key.as_ref(),
            FileKind::Combined => self.combined.as_ref(),
            FileKind::CertAndCa => self.cert_and_ca.as_ref(),
            FileKind::Pkcs12 => self.pkcs12.as_ref(),
        }
    }
}

/// Collects issues with their positions in the source text.
struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    issues: Vec<ConfigIssue>,
}

impl Checker<'_> {
    fn issue(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.issues.push(ConfigIssue {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
    }

    /// Runs `check` on a spanned value; an `Err` becomes an issue at the value.
    fn check<T, U>(&mut self, v: &Spanned<T>, check: impl FnOnce(&T) -> Result<U, String>) -> Option<U> {
        match check(v.get_ref()) {
            Ok(u) => Some(u),
            Err(m) => {
                self.issue(v.span(), m);
                None
            }
        }
    }
}

/// 1-based line and character column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

impl AgentConfig {
    /// Reads and validates the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates `text`; `path` only names it in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut c = Checker {
            file: path,
            text,
            issues: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                c.issue(e.span().unwrap_or(0..0), with_hint(e.message()));
                return Err(ConfigError::Invalid(c.issues));
            }
        };
        let state_dir = match &raw.state_dir {
            Some(s) => c.check(s, |s| absolute_path(s, "state_dir")),
            None => Some(PathBuf::from(DEFAULT_STATE_DIR)),
        };
        let server = raw.server.as_ref().and_then(|s| {
            c.check(s, |s| match url::Url::parse(s) {
                Ok(u) if u.scheme() == "https" && u.host().is_some() => Ok(u),
                Ok(_) => Err(format!(
                    "server `{s}` is not an https:// URL; write the fleet server's URL, e.g. \"https://fleet.example.com:8443\""
                )),
                Err(e) => Err(format!(
                    "server `{s}` is not a URL ({e}); write it like \"https://fleet.example.com:8443\""
                )),
            })
        });
        let interval = match &raw.interval {
            Some(v) => c.check(v, |v| {
                duration(v, "interval").and_then(|d| {
                    if d < Duration::from_secs(10) || d > Duration::from_secs(86_400) {
                        Err(format!(
                            "interval {} is out of range; use between \"10s\" and \"24h\", e.g. \"5m\"",
                            show(v)
                        ))
                    } else {
                        Ok(d)
                    }
                })
            }),
            None => Some(DEFAULT_INTERVAL),
        };

        let mut installs = Vec::new();
        // Every target path, to refuse two rules writing one file.
        let mut seen: BTreeMap<PathBuf, (String, usize)> = BTreeMap::new();
        for table in &raw.install {
            if let Some(rule) = install_rule(&mut c, table, state_dir.as_deref(), &mut seen) {
                installs.push(rule);
            }
        }
        if !c.issues.is_empty() {
            return Err(ConfigError::Invalid(c.issues));
        }
        Ok(AgentConfig {
            path: path.to_path_buf(),
            state_dir: state_dir.expect("no issue means a value"),
            server,
            interval: interval.expect("no issue means a value"),
            installs,
        })
    }

    /// The rules installing `certificate`, in config order.
    pub fn rules_for<'a>(&'a self, certificate: &'a str) -> impl Iterator<Item = &'a InstallRule> + 'a {
        self.installs.iter().filter(move |r| r.certificate == certificate)
    }
}

fn install_rule(
    c: &mut Checker<'_>,
    table: &Spanned<RawInstall>,
    state_dir: Option<&Path>,
    seen: &mut BTreeMap<PathBuf, (String, usize)>,
) -> Option<InstallRule> {
    let r = table.get_ref();
    let before = c.issues.len();
    let (table_line, _) = line_col(c.text, table.span().start);
    let origin = format!("{}:{table_line}", c.file.display());

    let certificate = c.check(&r.certificate, |s| {
        let ok = !s.is_empty()
            && s.len() <= 255
            && s.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
            && !s.starts_with('.');
        if ok {
            Ok(s.clone())
        } else {
            Err(format!(
                "certificate `{s}` is not a certificate name; write the name the server knows it by \
                 (letters, digits, - _ .), as `certfleet fleet cert list` shows it"
            ))
        }
    });

    let writes_key = FileKind::ALL
        .iter()
        .any(|k| k.holds_key() && r.target(*k).is_some());
    let mode = r.mode.as_ref().and_then(|m| {
        let source = c.text.get(m.span()).unwrap_or_default().to_string();
        c.check(m, |v| parse_mode(v, &source, writes_key))
    });

    let mut files = Vec::new();
    for kind in FileKind::ALL {
        let Some(raw) = r.target(kind) else { continue };
        let Some(path) = c.check(raw, |s| absolute_path(s, kind.key())) else {
            continue;
        };
        if let Some(sd) = state_dir
            && path.starts_with(sd)
        {
            c.issue(
                raw.span(),
                format!(
                    "{kind} {} is inside state_dir {}; the agent keeps its own keys there: \
                     install certificates elsewhere",
                    path.display(),
                    sd.display()
                ),
            );
            continue;
        }
        let (line, _) = line_col(c.text, raw.span().start);
        if let Some((other, other_line)) = seen.get(&path) {
            c.issue(
                raw.span(),
                format!(
                    "{} is already written by `{other}` on line {other_line}; give each file one \
                     rule and one key",
                    path.display()
                ),
            );
            continue;
        }
        seen.insert(path.clone(), (kind.key().to_string(), line));
        let default = if kind.holds_key() { KEY_MODE } else { PUBLIC_MODE };
        files.push(TargetFile {
            kind,
            path,
            mode: mode.unwrap_or(default),
        });
    }
    let any_target = FileKind::ALL.iter().any(|k| r.target(*k).is_some());
    if !any_target {
        c.issue(
            r.certificate.span(),
            "this [[install]] writes no file; add at least one of cert, chain, fullchain, key, \
             combined, cert_and_ca, pkcs12 with an absolute path",
        );
    }

    let pkcs12_password_file = match (&r.pkcs12, &r.pkcs12_password_file) {
        (Some(p), None) => {
            c.issue(
                p.span(),
                "pkcs12 needs a password; add pkcs12_password_file = \"/etc/...\" naming a file \
                 (mode 0600) whose first line is the password",
            );
            None
        }
        (None, Some(f)) => {
            c.issue(
                f.span(),
                "pkcs12_password_file is set but no pkcs12 file is written; add pkcs12 = \"/path\" \
                 or remove it",
            );
            None
        }
        (Some(_), Some(f)) => c.check(f, |s| {
            let p = absolute_path(s, "pkcs12_password_file")?;
            password_file_ok(&p)?;
            Ok(p)
        }),
        (None, None) => None,
    };

    let owner = r.owner.as_ref().and_then(|v| c.check(v, user_id));
    let group = r.group.as_ref().and_then(|v| c.check(v, group_id));

    let config_test_override = r
        .config_test_command
        .as_ref()
        .and_then(|v| c.check(v, |a| argv(a, "config_test_command")));
    let mut config_test = None;
    let mut reload = None;
    match (&r.reload, &r.reload_command) {
        (Some(_), Some(cmd)) => c.issue(
            cmd.span(),
            "both `reload` and `reload_command` are set; keep one: `reload = \"nginx\"` for a known \
             service, or `reload_command = [...]` for your own command",
        ),
        (Some(svc), None) => {
            if let Some(cmds) = c.check(svc, |s| {
                s.parse::<Service>()
                    .map(|svc| ReloadCommands::for_service(&svc))
                    .map_err(|e| format!("{e}; or give reload_command = [\"/path/to/program\", \"arg\"]"))
            }) {
                config_test = cmds.config_test;
                reload = Some(cmds.reload);
            }
        }
        (None, Some(cmd)) => reload = c.check(cmd, |a| argv(a, "reload_command")),
        (None, None) => {}
    }
    if config_test_override.is_some() {
        config_test = config_test_override;
    }
    let command_timeout = match &r.command_timeout {
        Some(v) => c.check(v, |v| duration(v, "command_timeout")),
        None => Some(DEFAULT_COMMAND_TIMEOUT),
    };

    let verify = verify_spec(c, r);

    if c.issues.len() > before {
        return None;
    }
    Some(InstallRule {
        certificate: certificate?,
        origin,
        files,
        owner,
        group,
        pkcs12_password_file,
        config_test,
        reload,
        command_timeout: command_timeout?,
        verify,
    })
}

fn verify_spec(c: &mut Checker<'_>, r: &RawInstall) -> Option<VerifySpec> {
    let Some(v) = &r.verify else {
        for (key, val) in [
            ("sni", r.sni.as_ref().map(Spanned::span)),
            ("starttls", r.starttls.as_ref().map(Spanned::span)),
            ("verify_timeout", r.verify_timeout.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = val {
                c.issue(
                    span,
                    format!(
                        "`{key}` only applies to the TLS check; add verify = \"HOST:PORT\" or remove `{key}`"
                    ),
                );
            }
        }
        return None;
    };
    let endpoint = c.check(v, |s| {
        s.parse::<Endpoint>().map_err(|e| {
            format!("verify `{s}` is not HOST:PORT ({e}); write it like \"127.0.0.1:443\" or \"[::1]:443\"")
        })
    });
    let sni = r.sni.as_ref().and_then(|s| {
        c.check(s, |s| {
            rustls::pki_types::ServerName::try_from(s.as_str())
                .map(|_| s.clone())
                .map_err(|_| format!("sni `{s}` is not a DNS name; write the name the service answers to"))
        })
    });
    let starttls = r.starttls.as_ref().and_then(|s| {
        c.check(s, |s| match s.as_str() {
            "smtp" => Ok(StartTls::Smtp),
            "imap" => Ok(StartTls::Imap),
            "pop3" => Ok(StartTls::Pop3),
            other => Err(format!(
                "starttls `{other}` is not supported; use \"smtp\", \"imap\" or \"pop3\", or remove it for \
                 a port that speaks TLS at once"
            )),
        })
    });
    let timeout = match &r.verify_timeout {
        Some(t) => c.check(t, |t| duration(t, "verify_timeout")),
        None => Some(DEFAULT_VERIFY_TIMEOUT),
    };
    Some(VerifySpec {
        endpoint: endpoint?,
        sni,
        starttls,
        timeout: timeout?,
    })
}

/// Adds what to do to toml's and serde's messages.
fn with_hint(message: &str) -> String {
    let m = message.trim().trim_end_matches('.');
    let hint = if m.starts_with("unknown field") {
        "remove it or correct its spelling"
    } else if m.contains("missing field `certificate`") {
        "add certificate = \"NAME\", the certificate's name on the server"
    } else if m.starts_with("missing field") {
        "add it"
    } else if m.starts_with("invalid type") {
        "write the value with the type named"
    } else {
        "fix the TOML syntax here"
    };
    format!("{m}; {hint}")
}

fn absolute_path(s: &str, key: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err(format!("{key} is empty; write an absolute path"));
    }
    if s.contains('\0') {
        return Err(format!(
            "{key} contains a NUL character; write a plain absolute path"
        ));
    }
    let p = Path::new(s);
    if !p.is_absolute() {
        return Err(format!(
            "{key} `{s}` is a relative path; write an absolute path (starting with /), so the agent \
             writes exactly where you mean whatever its working directory"
        ));
    }
    if p.components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!(
            "{key} `{s}` contains `.` or `..`; write the path without them"
        ));
    }
    if s.ends_with('/') {
        return Err(format!("{key} `{s}` ends with /; name a file"));
    }
    if s.ends_with(BACKUP_SUFFIX) {
        return Err(format!(
            "{key} `{s}` ends with {BACKUP_SUFFIX}, the suffix of the agent's backups; choose another name"
        ));
    }
    Ok(p.to_path_buf())
}

/// `"0640"`, `"640"` or TOML's octal `0o640` (`source` is the value as written, to tell an
/// octal integer from a decimal one); a rule writing a private key may not open it to others.
fn parse_mode(v: &toml::Value, source: &str, writes_key: bool) -> Result<u32, String> {
    let m = match v {
        toml::Value::String(s) => u32::from_str_radix(s.strip_prefix("0o").unwrap_or(s), 8)
            .map_err(|_| format!("mode `{s}` is not an octal mode; write it like \"0640\""))?,
        toml::Value::Integer(i) if source.trim_start().starts_with("0o") => {
            u32::try_from(*i).map_err(|_| format!("mode {source} is not a mode; write it like \"0640\""))?
        }
        toml::Value::Integer(i) => {
            return Err(format!(
                "mode {i} is a decimal number; write the octal mode as a string, e.g. \"0640\" (or 0o640)"
            ));
        }
        other => {
            return Err(format!(
                "mode must be a string like \"0640\", not {}",
                other.type_str()
            ));
        }
    };
    if m > 0o777 {
        return Err(format!(
            "mode {m:o} sets setuid/setgid/sticky bits; use plain permissions such as \"0644\" or \"0600\""
        ));
    }
    if writes_key && m & 0o007 != 0 {
        return Err(format!(
            "mode {m:04o} lets every user of this host read the private key this rule writes; \
             use \"0600\", or \"0640\" with `group` for a service's group"
        ));
    }
    if m & 0o111 != 0 {
        return Err(format!(
            "mode {m:04o} makes certificate files executable; use \"0644\" (certificates) or \"0600\" (keys)"
        ));
    }
    if m & 0o400 == 0 {
        return Err(format!(
            "mode {m:04o} does not let the owner read the file; use \"0644\", \"0640\" or \"0600\""
        ));
    }
    Ok(m)
}

fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

/// `"30s"`, `"5m"`, `"1h"`, `"1d"`, `"500ms"`, or an integer number of seconds: the one
/// duration syntax of the agent's config and of `serve`'s flags.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write it like \"30s\", \"5m\" or \"1h\""))?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => {
            return Err(format!(
                "`{s}` has an unknown unit; write it like \"30s\", \"5m\" or \"1h\""
            ));
        }
    };
    if d.is_zero() {
        return Err(format!("`{s}` is zero; give a positive duration"));
    }
    Ok(d)
}

fn duration(v: &toml::Value, key: &str) -> Result<Duration, String> {
    match v {
        toml::Value::String(s) => parse_duration(s).map_err(|e| format!("{key}: {e}")),
        toml::Value::Integer(i) if *i > 0 => Ok(Duration::from_secs(*i as u64)),
        other => Err(format!(
            "{key} {} is not a duration; write it like \"30s\", \"5m\" or \"1h\"",
            show(other)
        )),
    }
}

fn argv(a: &[String], key: &str) -> Result<Vec<String>, String> {
    let Some(prog) = a.first() else {
        return Err(format!(
            "{key} is empty; write the program and its arguments, e.g. [\"/usr/sbin/nginx\", \"-t\"]"
        ));
    };
    if prog.is_empty() || prog.contains('=') || prog.starts_with('-') {
        return Err(format!(
            "{key}: `{prog}` is not a program; the first element is the program (an absolute path or \
             a name found in /usr/sbin:/usr/bin:/sbin:/bin), the others its arguments"
        ));
    }
    if prog.contains('/') && !prog.starts_with('/') {
        return Err(format!(
            "{key}: program `{prog}` is a relative path; write an absolute path or a bare name"
        ));
    }
    if a.iter().any(|s| s.contains('\0')) {
        return Err(format!("{key} contains a NUL character; remove it"));
    }
    Ok(a.to_vec())
}

/// An owner or group: a number (uid/gid, need not exist) or a name this host knows.
fn account_id(v: &toml::Value, what: &str, lookup: impl FnOnce(&str) -> Option<u32>) -> Result<u32, String> {
    let name = match v {
        toml::Value::Integer(i) => {
            return u32::try_from(*i)
                .map_err(|_| format!("{what} {i} is not a valid id; give a name or an id"));
        }
        toml::Value::String(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) => {
            return s
                .parse()
                .map_err(|_| format!("{what} {s} is not a valid id; give a name or an id"));
        }
        toml::Value::String(s) => s,
        other => {
            return Err(format!(
                "{what} must be a name or a number, not {}; write e.g. {what} = \"www-data\"",
                other.type_str()
            ));
        }
    };
    let (kind, id) = if what == "owner" {
        ("user", "uid")
    } else {
        ("group", "gid")
    };
    lookup(name).ok_or_else(|| {
        format!(
            "{what} `{name}` is not a {kind} of this host; create it, fix the name or give a numeric {id}"
        )
    })
}

fn user_id(v: &toml::Value) -> Result<u32, String> {
    account_id(v, "owner", |n| {
        nix::unistd::User::from_name(n)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    })
}

fn group_id(v: &toml::Value) -> Result<u32, String> {
    account_id(v, "group", |n| {
        nix::unistd::Group::from_name(n)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    })
}

/// The password file must exist and must not be readable by others.
fn password_file_ok(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(p) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => Err(format!(
            "pkcs12_password_file {} has mode {:04o}, readable by other users; run `chmod 600 {}`",
            p.display(),
            m.permissions().mode() & 0o7777,
            p.display()
        )),
        Ok(m) if !m.is_file() => Err(format!(
            "pkcs12_password_file {} is not a file; name a file holding the password",
            p.display()
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "pkcs12_password_file {}: {e}; create it (chmod 600) with the password on its first line",
            p.display()
        )),
    }
}

/// The PKCS#12 password: the file's first line.
pub(crate) fn read_password(p: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(p)?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let t = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        let off = t.find("\"x").unwrap();
        assert_eq!(line_col(t, off), (2, 6));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn endpoints() {
        let e: Endpoint = "127.0.0.1:443".parse().unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 443));
        let e: Endpoint = "[::1]:8443".parse().unwrap();
        assert_eq!(e.to_string(), "[::1]:8443");
        assert!("mail.example.com:25".parse::<Endpoint>().is_ok());
        for bad in ["example.com", "::1:443", "a b:1", "host:0", "host:99999", ":443"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn modes() {
        let s = |v: &str| parse_mode(&toml::Value::String(v.into()), "", false);
        assert_eq!(s("0640").unwrap(), 0o640);
        assert_eq!(s("0644").unwrap(), 0o644);
        assert!(parse_mode(&toml::Value::String("0644".into()), "", true).is_err());
        assert_eq!(
            parse_mode(&toml::Value::Integer(0o600), "0o600", true).unwrap(),
            0o600
        );
        assert!(parse_mode(&toml::Value::Integer(420), "420", false).is_err());
        assert!(s("4644").is_err());
        assert!(s("0755").is_err());
        assert!(s("0200").is_err());
        assert!(s("rw-r--r--").is_err());
    }
}
