//! Notification channels of `certfleet serve`: e-mail over SMTP (lettre), JSON webhooks signed
//! with HMAC-SHA256, and a local command that gets the JSON on standard input.
//!
//! [`Notifier::deliver`] sends in the background with retries, so a slow relay or a dead webhook
//! never holds up the renewal loop or the alert watch; [`Notifier::test`] sends once through each
//! channel and says how each went (`certfleet fleet notify test`). Failures are logged with the
//! channel's [`Channel::label`], which never carries a password, a token or a URL query.
//!
//! What is sent when is decided by [`crate::server::alerts`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Serialize;
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

use crate::proto::{ChannelResult, UnixTime};

/// The webhook signature header: `sha256=<hex HMAC-SHA256 of the body with the secret>`.
pub const SIGNATURE_HEADER: &str = "X-Certfleet-Signature-256";
/// Default `--host-silent-after`: an agent syncs every 5 minutes by default (`interval`, up to
/// 24 h), so two hours is many missed syncs, not one slow one; hosts with a longer interval need
/// a longer setting.
pub const DEFAULT_HOST_SILENT_AFTER: Duration = Duration::from_secs(2 * 3600);
/// Default `--notify-command-timeout`.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// One SMTP conversation or webhook request gives up after this.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Waits between the attempts of a background delivery (so 4 attempts in about 6 minutes).
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(300),
];
/// Deliveries in flight at once; more wait, so a thousand alerts do not open a thousand
/// connections to the relay.
const MAX_IN_FLIGHT: usize = 4;

/// `certfleet serve`'s notification flags.
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    /// `--smtp-url smtp://[USER:PASS@]HOST[:PORT]` (STARTTLS when offered; required when a
    /// password is given) or `smtps://...` (TLS from the start).
    pub smtp_url: Option<String>,
    /// `--smtp-from ADDR` (default `certfleet@<host name>`).
    pub smtp_from: Option<String>,
    /// `--notify-email ADDR`, repeatable.
    pub emails: Vec<String>,
    /// `--notify-webhook URL`, repeatable.
    pub webhooks: Vec<String>,
    /// `--notify-webhook-secret FILE`: signs webhook bodies.
    pub webhook_secret_file: Option<PathBuf>,
    /// `--notify-command PATH`: run (no shell) with the message as JSON on stdin.
    pub command: Option<PathBuf>,
    pub command_timeout: Option<Duration>,
    /// `--notify-ca-file FILE`: trust this CA (PEM) too, for a private relay or webhook receiver.
    pub ca_file: Option<PathBuf>,
    /// `--host-silent-after` (default [`DEFAULT_HOST_SILENT_AFTER`]).
    pub host_silent_after: Option<Duration>,
    /// `--notify-digest-at HH:MM` (UTC): non-urgent causes wait for one daily message.
    pub digest_at: Option<(u8, u8)>,
    /// How often the alert watch looks (default 60 s).
    pub interval: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Config(String),
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn config(msg: impl Into<String>) -> NotifyError {
    NotifyError::Config(msg.into())
}

/// What every channel sends: the webhook and command get it as JSON, e-mail as subject and text.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Message {
    /// `alert`, `reminder`, `resolved`, `digest` or `test`.
    pub kind: String,
    pub subject: String,
    pub text: String,
    /// The server's API URL (which fleet this is about).
    pub server: String,
    pub sent_at: UnixTime,
    pub alerts: Vec<AlertItem>,
}

/// One cause in a [`Message`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AlertItem {
    /// `renewal-failing`, `expiring`, `expired`, `install-failed` or `host-silent`.
    pub cause: String,
    pub certificate: Option<String>,
    pub host: Option<String>,
    pub detail: String,
    /// When the cause was first seen.
    pub since: UnixTime,
    pub urgent: bool,
}

/// One way of telling the operator.
pub enum Channel {
    Email {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
        to: Vec<Mailbox>,
        label: String,
    },
    Webhook {
        http: reqwest::Client,
        url: url::Url,
        secret: Option<Arc<[u8]>>,
        label: String,
    },
    Command {
        path: PathBuf,
        timeout: Duration,
        label: String,
    },
}

impl Channel {
    /// How logs and `notify test` name the channel: no credentials, no URL query.
    pub fn label(&self) -> &str {
        match self {
            Channel::Email { label, .. }
            | Channel::Webhook { label, .. }
            | Channel::Command { label, .. } => label,
        }
    }

    /// One attempt. The error says what failed, without secrets.
    pub async fn send(&self, msg: &Message) -> Result<(), String> {
        match self {
            Channel::Email {
                transport, from, to, ..
            } => {
                let mut b = lettre::Message::builder().from(from.clone());
                for t in to {
                    b = b.to(t.clone());
                }
                let mail = b
                    .subject(&msg.subject)
                    .header(ContentType::TEXT_PLAIN)
                    .body(msg.text.clone())
                    .map_err(|e| format!("cannot build the e-mail: {e}"))?;
                transport
                    .send(mail)
                    .await
                    .map(drop)
                    .map_err(|e| format!("SMTP: {}", error_chain(&e)))
            }
            Channel::Webhook {
                http, url, secret, ..
            } => {
                let body = serde_json::to_vec(msg).map_err(|e| format!("cannot encode the message: {e}"))?;
                let mut req = http
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json");
                if let Some(secret) = secret {
                    req = req.header(SIGNATURE_HEADER, signature(secret, &body));
                }
                let resp = req
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("POST failed: {}", error_chain(&e.without_url())))?;
                let status = resp.status();
                if status.is_success() {
                    Ok(())
                } else {
                    let text = resp.text().await.unwrap_or_default();
                    Err(format!(
                        "the receiver answered HTTP {status}: {}",
                        clip(text.trim(), 200)
                    ))
                }
            }
            Channel::Command { path, timeout, .. } => run_command(path, *timeout, msg).await,
        }
    }
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` keyed with `secret`, as GitHub signs its webhooks.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a [`SIGNATURE_HEADER`] value in constant time.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

async fn run_command(path: &Path, timeout: Duration, msg: &Message) -> Result<(), String> {
    let json = serde_json::to_vec(msg).map_err(|e| format!("cannot encode the message: {e}"))?;
    let mut child = tokio::process::Command::new(path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        // A command that outlives its timeout is killed, not left behind.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let work = async move {
        // A command that does not read its input still gets to exit with its own status.
        let _ = stdin.write_all(&json).await;
        drop(stdin);
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => Err(format!(
            "{} did not finish within {} s (killed)",
            path.display(),
            timeout.as_secs()
        )),
        Ok(Err(e)) => Err(format!("waiting for {}: {e}", path.display())),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(format!(
                "{} failed ({}){}",
                path.display(),
                out.status,
                if err.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", clip(err.trim(), 300))
                }
            ))
        }
    }
}

/// The channels, and background delivery through them.
pub struct Notifier {
    channels: Vec<Channel>,
    in_flight: Arc<tokio::sync::Semaphore>,
    retry_delays: Vec<Duration>,
}

impl Notifier {
    /// Builds the channels `cfg` asks for; refuses a half configuration (addresses without a
    /// relay, a relay without addresses, an unreadable secret) with what to add.
    pub fn from_config(cfg: &NotifyConfig) -> Result<Notifier, NotifyError> {
        let extra_roots = match &cfg.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| NotifyError::Read {
                    what: "the --notify-ca-file",
                    path: path.clone(),
                    source,
                })?;
                Some((path.clone(), pem))
            }
            None => None,
        };
        let mut channels = Vec::new();
        match (&cfg.smtp_url, cfg.emails.is_empty()) {
            (Some(url), false) => channels.push(email_channel(url, cfg, extra_roots.as_ref())?),
            (Some(_), true) => {
                return Err(config(
                    "--smtp-url is given but no recipient: add --notify-email ADDR (repeatable)",
                ));
            }
            (None, false) => {
                return Err(config(
                    "--notify-email needs a relay to send through: add --smtp-url smtp://HOST:PORT",
                ));
            }
            (None, true) => {}
        }
        let secret = match &cfg.webhook_secret_file {
            Some(path) => Some(read_secret(path)?),
            None => None,
        };
        if secret.is_some() && cfg.webhooks.is_empty() {
            return Err(config(
                "--notify-webhook-secret is given but no --notify-webhook URL",
            ));
        }
        if !cfg.webhooks.is_empty() {
            let http = webhook_client(extra_roots.as_ref())?;
            for raw in &cfg.webhooks {
                let url = url::Url::parse(raw)
                    .map_err(|e| config(format!("--notify-webhook {raw:?} is not a URL: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(config(format!(
                        "--notify-webhook {} must be an http:// or https:// URL with a host",
                        redact_url(&url)
                    )));
                }
                channels.push(Channel::Webhook {
                    http: http.clone(),
                    label: format!("webhook {}", redact_url(&url)),
                    url,
                    secret: secret.clone(),
                });
            }
        }
        if let Some(path) = &cfg.command {
            if !path.is_absolute() {
                return Err(config(format!(
                    "--notify-command {} must be an absolute path (it runs without a shell or PATH lookup)",
                    path.display()
                )));
            }
            channels.push(Channel::Command {
                path: path.clone(),
                timeout: cfg.command_timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT),
                label: format!("command {}", path.display()),
            });
        }
        Ok(Notifier::new(channels))
    }

    pub fn new(channels: Vec<Channel>) -> Notifier {
        Notifier {
            channels,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            retry_delays: RETRY_DELAYS.to_vec(),
        }
    }

    /// Waits between background attempts (tests shorten them).
    pub fn with_retry_delays(mut self, delays: Vec<Duration>) -> Notifier {
        self.retry_delays = delays;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    pub fn labels(&self) -> Vec<String> {
        self.channels.iter().map(|c| c.label().to_string()).collect()
    }

    /// Sends `msg` once through every channel at the same time; how each went.
    pub async fn test(&self, msg: &Message) -> Vec<ChannelResult> {
        let sends = self.channels.iter().map(|c| async move {
            let r = c.send(msg).await;
            if let Err(e) = &r {
                tracing::warn!("notification test through {}: {e}", c.label());
            }
            ChannelResult {
                channel: c.label().to_string(),
                ok: r.is_ok(),
                error: r.err(),
            }
        });
        futures::future::join_all(sends).await
    }

    /// Sends `msg` through every channel in the background, each retried on failure after
    /// the retry delays; the caller does not wait.
    pub fn deliver(self: &Arc<Self>, msg: Message) {
        let msg = Arc::new(msg);
        for i in 0..self.channels.len() {
            let me = self.clone();
            let msg = msg.clone();
            tokio::spawn(async move {
                let channel = &me.channels[i];
                let mut attempt = 0usize;
                loop {
                    let result = {
                        let _permit = me.in_flight.acquire().await;
                        channel.send(&msg).await
                    };
                    match result {
                        Ok(()) => {
                            tracing::info!("notification {:?} sent through {}", msg.subject, channel.label());
                            return;
                        }
                        Err(e) => match me.retry_delays.get(attempt) {
                            Some(wait) => {
                                tracing::warn!(
                                    "notification {:?} through {}: {e}; retrying in {} s",
                                    msg.subject,
                                    channel.label(),
                                    wait.as_secs()
                                );
                                tokio::time::sleep(*wait).await;
                                attempt += 1;
                            }
                            None => {
                                tracing::error!(
                                    "notification {:?} through {} failed {} times, giving up: {e}",
                                    msg.subject,
                                    channel.label(),
                                    attempt + 1
                                );
                                return;
                            }
                        },
                    }
                }
            });
        }
    }
}

fn email_channel(
    raw: &str,
    cfg: &NotifyConfig,
    extra_roots: Option<&(PathBuf, Vec<u8>)>,
) -> Result<Channel, NotifyError> {
    let url = url::Url::parse(raw).map_err(|e| config(format!("--smtp-url: not a URL ({e})")))?;
    let implicit_tls = match url.scheme() {
        "smtp" => false,
        "smtps" => true,
        other => {
            return Err(config(format!(
                "--smtp-url: scheme {other:?} is not smtp:// (STARTTLS when offered) or smtps:// (TLS)"
            )));
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| config("--smtp-url has no host: smtp://HOST:PORT"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port().unwrap_or(if implicit_tls { 465 } else { 25 });
    let user = percent_decode(url.username());
    let pass = url.password().map(percent_decode);
    let mut tls = TlsParameters::builder(host.clone());
    if let Some((path, pem)) = extra_roots {
        let cert = Certificate::from_pem(pem).map_err(|e| {
            config(format!(
                "--notify-ca-file {}: not a PEM certificate ({e})",
                path.display()
            ))
        })?;
        tls = tls.add_root_certificate(cert);
    }
    let tls = tls
        .build_rustls()
        .map_err(|e| config(format!("SMTP TLS setup: {e}")))?;
    let tls = if implicit_tls {
        Tls::Wrapper(tls)
    } else if pass.is_some() {
        // A password never crosses the network in clear: with credentials, STARTTLS is a must.
        Tls::Required(tls)
    } else {
        Tls::Opportunistic(tls)
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
        .port(port)
        .tls(tls)
        .timeout(Some(SEND_TIMEOUT));
    if !user.is_empty() {
        b = b.credentials(Credentials::new(user, pass.unwrap_or_default()));
    }
    let from_addr = match &cfg.smtp_from {
        Some(f) => f.clone(),
        None => format!(
            "certfleet@{}",
            crate::local_hostname().unwrap_or_else(|| "localhost".into())
        ),
    };
    let from: Mailbox = from_addr.parse().map_err(|e| {
        config(format!(
            "--smtp-from {from_addr:?} is not an e-mail address ({e})"
        ))
    })?;
    let to = cfg
        .emails
        .iter()
        .map(|a| {
            a.parse::<Mailbox>()
                .map_err(|e| config(format!("--notify-email {a:?} is not an e-mail address ({e})")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let label = format!(
        "email to {} via {}://{}:{port}",
        cfg.emails.join(", "),
        url.scheme(),
        url.host_str().unwrap_or_default()
    );
    Ok(Channel::Email {
        transport: b.build(),
        from,
        to,
        label,
    })
}

fn webhook_client(extra_roots: Option<&(PathBuf, Vec<u8>)>) -> Result<reqwest::Client, NotifyError> {
    let provider = crate::tls::provider();
    let mut extra = Vec::new();
    if let Some((path, pem)) = extra_roots {
        let ders = certfleet_core::cert::pem_certificates(&String::from_utf8_lossy(pem))
            .map_err(|e| config(format!("--notify-ca-file {}: {e}", path.display())))?;
        extra.extend(ders.into_iter().map(rustls_pki_types::CertificateDer::from));
    }
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
        .map_err(|e| config(format!("cannot use the system's root certificates: {e}")))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    reqwest::Client::builder()
        .user_agent(concat!("certfleet/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(SEND_TIMEOUT)
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| config(format!("webhook HTTP client setup: {e}")))
}

/// A secret file: its contents, trimmed; refused when empty or readable by others.
fn read_secret(path: &Path) -> Result<Arc<[u8]>, NotifyError> {
    use std::os::unix::fs::PermissionsExt;
    let read = |source| NotifyError::Read {
        what: "the webhook secret file",
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(config(format!(
            "the webhook secret file {} can be read by others (mode {:o}): chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(config(format!(
            "the webhook secret file {} is empty: put a random secret in it (e.g. `openssl rand -hex 32`)",
            path.display()
        )));
    }
    Ok(Arc::from(secret.as_bytes()))
}

/// A URL for logs: scheme, host, port and path; no user, password, query or fragment.
fn redact_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// `--host-silent-after` and similar: the agent config's duration syntax (`90s`, `30m`, `2h`, `1d`).
pub use crate::agent::config::parse_duration;

/// `--notify-digest-at HH:MM` (UTC).
pub fn parse_hhmm(s: &str) -> Result<(u8, u8), String> {
    let bad = || format!("{s:?} is not a time of day: use HH:MM (UTC), e.g. 07:30");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let h: u8 = h.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((h, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject_tampering() {
        let sig = signature(b"s3cret", b"{\"a\":1}");
        assert!(sig.starts_with("sha256="));
        assert_eq!(sig.len(), 7 + 64);
        assert!(verify_signature(b"s3cret", b"{\"a\":1}", &sig));
        assert!(!verify_signature(b"other", b"{\"a\":1}", &sig));
        assert!(!verify_signature(b"s3cret", b"{\"a\":2}", &sig));
        assert!(!verify_signature(b"s3cret", b"{\"a\":1}", &sig[7..]));
        assert!(!verify_signature(b"s3cret", b"{\"a\":1}", "sha256=zz"));
    }

    #[test]
    fn durations_and_times_of_day_parse() {
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_hhmm("07:30"), Ok((7, 30)));
        assert!(parse_hhmm("24:00").is_err());
        assert!(parse_hhmm("7").is_err());
    }

    #[test]
    fn labels_carry_no_credentials() {
        let u = url::Url::parse("https://user:pw@hooks.example/x/y?token=abc#f").unwrap();
        assert_eq!(redact_url(&u), "https://hooks.example/x/y");
        assert_eq!(percent_decode("p%40ss%3Aw"), "p@ss:w");
        let cfg = NotifyConfig {
            smtp_url: Some("smtp://alice:s3cret@127.0.0.1:2525".into()),
            smtp_from: Some("fleet@example.test".into()),
            emails: vec!["ops@example.test".into()],
            ..NotifyConfig::default()
        };
        let n = Notifier::from_config(&cfg).unwrap();
        let labels = n.labels().join(" ");
        assert!(
            !labels.contains("s3cret") && !labels.contains("alice"),
            "{labels}"
        );
        assert!(labels.contains("ops@example.test"), "{labels}");
    }

    #[test]
    fn half_configurations_are_refused_with_the_flag_to_add() {
        let e = Notifier::from_config(&NotifyConfig {
            emails: vec!["ops@example.test".into()],
            ..NotifyConfig::default()
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("--smtp-url"), "{e}");
        let e = Notifier::from_config(&NotifyConfig {
            smtp_url: Some("smtp://127.0.0.1:25".into()),
            ..NotifyConfig::default()
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("--notify-email"), "{e}");
        let e = Notifier::from_config(&NotifyConfig {
            command: Some("notify.sh".into()),
            ..NotifyConfig::default()
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("absolute"), "{e}");
    }
}
