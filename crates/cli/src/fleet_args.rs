//! Command line of fleet mode: `serve` (the central server), `agent` (on each host) and
//! `fleet` (the admin's client). certbot has none of these, so they skip `cli.ini`; the ACME
//! flags they share with `certonly` (`--server`, `--ca-bundle`, `-m`, `--agree-tos`,
//! `--eab-kid/--eab-hmac-key`) are the global ones and keep their meaning.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

pub const DEFAULT_DATA_DIR: &str = "/var/lib/certfleet";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the server keeps its database (fleet.db), TLS identity, admin token and keys.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// PostgreSQL instead of the embedded SQLite (several nodes can share it).
    #[arg(long, value_name = "postgres://...", env = "CERTFLEET_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Address of the HTTPS API (agents, admin CLI).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Answer http-01 challenges here (plain HTTP); front-ends proxy /.well-known/acme-challenge/ to it.
    #[arg(long = "http-01-listen", value_name = "ADDR")]
    pub http01_listen: Option<SocketAddr>,
    /// The API's URL as agents reach it, put into enrollment tokens (default: https://LISTEN).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Serve the API with this certificate (PEM, full chain) instead of a self-signed one.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Extra DNS name or IP for the self-signed API certificate (repeatable).
    #[arg(long = "api-name", value_name = "NAME")]
    pub api_names: Vec<String>,
    /// Key file that encrypts server-custody private keys at rest (made on first start).
    #[arg(long, value_name = "FILE")]
    pub custody_key_file: Option<PathBuf>,
    /// Certificates renewed at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// /metrics (Prometheus, on the API listener) then needs `Authorization: Bearer TOKEN`, TOKEN
    /// being this file's contents (trimmed). Without it /metrics is open.
    #[arg(long, value_name = "FILE")]
    pub metrics_token: Option<PathBuf>,
    /// How often the served-certificate watch connects to every endpoint (agents' verify
    /// endpoints and those added in the dashboard) to check what it serves: e.g. 30s, 10m, 1h.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_watch_interval)]
    pub watch_interval: std::time::Duration,
    /// Extra trusted roots (PEM) for the watch's chain check, e.g. a private CA's root.
    #[arg(long, value_name = "FILE")]
    pub watch_roots: Option<PathBuf>,
    #[command(flatten)]
    pub notify: NotifyArgs,
}

/// Alerts of `certfleet serve` (see the README's "Alerts"): a message on a renewal failing
/// twice in a row, a certificate expired or within a sixth of its lifetime, a failed install or
/// rollback on a host, a silent host; once per cause a day, and "resolved" when it clears.
#[derive(Debug, Args)]
#[command(next_help_heading = "Alerts")]
pub struct NotifyArgs {
    /// Send alert e-mails through this relay: smtp://[USER:PASS@]HOST[:PORT] (STARTTLS when offered,
    /// required with a password; port 25) or smtps://... (TLS from the start; port 465).
    /// With a password, prefer the environment variable (e.g. a systemd EnvironmentFile, 0600)
    /// to the flag: the process list shows flags to every local user.
    #[arg(long, value_name = "URL", env = "CERTFLEET_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of alert e-mails (default certfleet@<this host's name>).
    #[arg(long, value_name = "ADDR")]
    pub smtp_from: Option<String>,
    /// Send alert e-mails to ADDR (repeatable; needs --smtp-url).
    #[arg(long = "notify-email", value_name = "ADDR")]
    pub emails: Vec<String>,
    /// POST alerts as JSON to URL (repeatable).
    #[arg(long = "notify-webhook", value_name = "URL")]
    pub webhooks: Vec<String>,
    /// Sign webhook bodies with the secret in FILE (mode 0600): header
    /// X-Certfleet-Signature-256: sha256=<hex HMAC-SHA256 of the body>.
    #[arg(long, value_name = "FILE")]
    pub notify_webhook_secret: Option<PathBuf>,
    /// Run PATH (absolute, no shell) with the alert as JSON on standard input.
    #[arg(long, value_name = "PATH")]
    pub notify_command: Option<PathBuf>,
    /// Kill --notify-command after this long (e.g. 30s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub notify_command_timeout: std::time::Duration,
    /// Trust this CA certificate (PEM) too, for a private SMTP relay or webhook receiver
    /// (the system's roots stay trusted).
    #[arg(long, value_name = "FILE")]
    pub notify_ca_file: Option<PathBuf>,
    /// A host whose agent has not checked in for this long is reported silent (e.g. 90m, 2h, 1d).
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = duration)]
    pub host_silent_after: std::time::Duration,
    /// Send non-urgent alerts (expiring soon, silent hosts) in one daily message at HH:MM UTC;
    /// urgent ones (failing, expired, failed installs) still go at once.
    #[arg(long, value_name = "HH:MM", value_parser = hhmm)]
    pub notify_digest_at: Option<(u8, u8)>,
    /// How often the alert watch looks at the fleet (tests shorten it).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration, hide = true)]
    pub notify_interval: std::time::Duration,
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    certfleet_fleet::notify::parse_duration(s)
}

fn hhmm(s: &str) -> Result<(u8, u8), String> {
    certfleet_fleet::notify::parse_hhmm(s)
}

fn parse_watch_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = certfleet_fleet::agent::config::parse_duration(s)?;
    if d < std::time::Duration::from_secs(1) {
        return Err("use at least 1s".into());
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Enroll this host with the one-time token `certfleet fleet host add` printed.
    #[command(
        long_about = "Enroll this host: makes a TLS client key here (it never leaves the host), sends a CSR \
with the one-time token, and stores the client certificate the server issues, the server's URL and its \
pinned fingerprint under --state-dir (0600).\n\nEXAMPLE:\n  certfleet agent enroll --state-dir /var/lib/certfleet-agent cfe1_..."
    )]
    Enroll {
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// The token (or - to read it from standard input, keeping it out of the process list).
        #[arg(value_name = "TOKEN")]
        token: String,
    },
    /// Keep this host's certificates installed: pull, install, reload, verify, roll back, report.
    #[command(
        long_about = "Pull the certificates assigned to this host and install each where the agent's own \
config (--config FILE, TOML) says; test the service config, reload, verify by a TLS handshake that the \
new certificate is served, roll back if not, and report to the server. Repeats every `interval` (with \
jitter); the server never pushes anything, so no inbound port is needed.\n\n--once: one full sync, \
exit 0 when everything assigned and configured is installed and verified, non-zero otherwise.\n\n\
EXAMPLE:\n  certfleet agent run --config /etc/certfleet/agent.toml --once"
    )]
    Run {
        /// One sync, then exit (0: everything installed and verified).
        #[arg(long)]
        once: bool,
    },
    /// Print what the server would give this host for certificate NAME.
    Fetch {
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// Where the admin client finds the server and its credentials.
#[derive(Debug, Args, Clone)]
pub struct FleetConnArgs {
    /// The server's API URL.
    #[arg(long, value_name = "URL", env = "CERTFLEET_URL")]
    pub url: Option<String>,
    /// File holding the admin token.
    #[arg(long, value_name = "FILE", env = "CERTFLEET_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// SHA-256 fingerprint of the server's API certificate (pinned).
    #[arg(long, value_name = "SHA256", env = "CERTFLEET_FINGERPRINT")]
    pub fingerprint: Option<String>,
    /// Read URL, token and fingerprint from a server's data dir (on the server itself).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(flatten)]
    pub conn: FleetConnArgs,
    #[command(subcommand)]
    pub command: FleetCommand,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Hosts: add (prints a one-time enrollment token), list, remove.
    #[command(subcommand)]
    Host(HostCommand),
    /// Certificates: add, list, show, renew, enable, disable.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Give certificate CERT to host HOST.
    Assign { cert: String, host: String },
    /// Take certificate CERT away from host HOST.
    Unassign { cert: String, host: String },
    /// Alerts: `notify test` sends a test message through each channel the server has.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Dashboard administration: passwd.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Ask the server to send a test message through each configured channel; prints how each
    /// went and exits non-zero if any failed (or none is configured).
    Test {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Set the dashboard's login password (asked twice on the terminal, or read from
    /// --password-file); ends every dashboard session. The admin token keeps working too.
    Passwd {
        /// Read the new password from the first line of this file instead of asking.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Register a host; prints one line: its enrollment token (single use, valid 24 h).
    Add {
        name: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Remove {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Add a certificate; the server issues it as soon as it can (agent custody: once its host sent a CSR).
    #[command(long_about = "Add a certificate to the fleet.\n\nEXAMPLES:\n  \
certfleet fleet cert add www -d www.example.com -d example.com --host web1\n  \
certfleet fleet cert add shared -d app.example.com --host web1 --host web2 --custody server\n  \
certfleet fleet cert add wild -d '*.example.com' --host lb1 --dns-rfc2136 --dns-rfc2136-credentials /etc/certfleet/rfc2136.ini")]
    Add(Box<CertAddArgs>),
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Renew now, ignoring the schedule (not the CA's Retry-After).
    Renew {
        name: String,
    },
    Enable {
        name: String,
    },
    Disable {
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct CertAddArgs {
    pub name: String,
    /// A name (or IP address) in the certificate (repeatable).
    #[arg(short = 'd', long = "domain", value_name = "DOMAIN", required = true)]
    pub domains: Vec<String>,
    /// Host that gets it (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Who makes the private key: the host (agent, default; the key never leaves it) or the server (shared certificates).
    #[arg(long, value_name = "agent|server", default_value = "agent")]
    pub custody: String,
    /// ecdsa (default) or rsa.
    #[arg(long, value_name = "TYPE", default_value = "ecdsa")]
    pub key_type: String,
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub rsa_key_size: u32,
    #[arg(long, value_name = "CURVE", default_value = "secp256r1")]
    pub elliptic_curve: String,
    /// ACME profile to ask for.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    #[command(flatten)]
    pub dns: crate::args::DnsProviderArgs,
}
