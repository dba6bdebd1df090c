//! Command line: certbot's verbs and flags, so existing scripts and habits carry over.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const LE_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LE_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

#[derive(Debug, Parser)]
#[command(
    name = "certfleet",
    version,
    about = "Get and renew TLS certificates from any ACME CA; a fast drop-in for certbot.",
    long_about = "certfleet obtains TLS certificates from an ACME CA (Let's Encrypt by default), stores them in \
certbot's layout (/etc/letsencrypt/live/NAME/fullchain.pem, privkey.pem, ...) and keeps them renewed.\n\n\
It reads and writes the same live/, archive/, renewal/ and accounts/ trees as certbot, so existing web \
server configurations, hooks and certbot itself keep working.",
    after_long_help = "EXIT CODES:\n  0   success\n  1   unexpected failure\n  2   bad command line or input (names, files, flags)\n  \
3   the CA could not validate control of a name\n  4   the CA refused the request, was unreachable or rate-limited\n  \
5   local store problem (permissions, lock held, corrupt files)\n  10  renew: a renewal failed, every certificate is still valid\n  \
11  renew: a certificate is expired or will expire before the next retry\n  12  a hook failed (the certificate was saved)\n\n\
ENVIRONMENT:\n  CERTFLEET_CA_BUNDLE, REQUESTS_CA_BUNDLE   PEM file of roots to trust for the ACME server (private/test CAs)\n  \
CERTFLEET_LOG                             log filter, e.g. debug or certfleet_acme=trace"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Configuration directory (certbot's live/, archive/, renewal/, accounts/).
    #[arg(long, global = true, value_name = "DIR", default_value = "/etc/letsencrypt")]
    pub config_dir: PathBuf,
    /// Working directory (certbot's default /var/lib/letsencrypt).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/var/lib/letsencrypt"
    )]
    pub work_dir: PathBuf,
    /// Logs directory.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/var/log/letsencrypt"
    )]
    pub logs_dir: PathBuf,
    /// Read default flags from this certbot-style ini file (default: CONFIG_DIR/cli.ini).
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// ACME directory URL of the CA.
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Use Let's Encrypt's staging CA (certificates are not trusted).
    #[arg(long, visible_alias = "test-cert", global = true)]
    pub staging: bool,
    /// Trust only these PEM roots for the ACME server's HTTPS (private or test CAs).
    #[arg(long, global = true, value_name = "FILE", env = "CERTFLEET_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
    /// Never prompt; fail instead when input would be needed.
    #[arg(short = 'n', long, visible_alias = "noninteractive", global = true)]
    pub non_interactive: bool,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More logging (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Agree to the CA's terms of service.
    #[arg(long, global = true)]
    pub agree_tos: bool,
    /// Contact email for the account (comma-separated for several).
    #[arg(short = 'm', long = "email", global = true, value_name = "EMAIL")]
    pub email: Option<String>,
    /// Create an account with no contact address (you will get no expiry warnings).
    #[arg(long, global = true)]
    pub register_unsafely_without_email: bool,
    /// External Account Binding key id (CAs such as ZeroSSL, Sectigo, Google).
    #[arg(long, global = true, value_name = "KID", requires = "eab_hmac_key")]
    pub eab_kid: Option<String>,
    /// External Account Binding HMAC key (base64url, as the CA prints it).
    #[arg(long, global = true, value_name = "KEY", requires = "eab_kid")]
    pub eab_hmac_key: Option<String>,
    /// Use this account id (from accounts/) when several exist for the server.
    #[arg(long, global = true, value_name = "ID")]
    pub account: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Obtain a certificate and save it in the lineage layout; do not touch any server config.
    #[command(
        long_about = "Obtain or renew a certificate and save it under CONFIG_DIR/live/NAME/.\n\n\
Proves control of each name with http-01 (--webroot or --standalone), dns-01 or tls-alpn-01, then \
writes archive/NAME/*N.pem, switches the live/NAME symlinks atomically and records how to renew it in \
renewal/NAME.conf. If a lineage with the same names exists and is not due, nothing is done unless \
--force-renewal.\n\nEXAMPLES:\n  certfleet certonly --webroot -w /var/www/html -d example.com -d www.example.com\n  \
certfleet certonly --standalone -d mail.example.com --key-type rsa --rsa-key-size 4096\n  \
certfleet certonly --webroot -w /srv/a -d a.example.com -w /srv/b -d b.example.com --cert-name ab"
    )]
    Certonly(Box<CertonlyArgs>),
    /// List certificates: names, key type, expiry, status and paths.
    Certificates(CertificatesArgs),
    /// Create an ACME account at the CA.
    Register,
    /// Change the account's contact email (-m).
    #[command(name = "update_account", visible_alias = "update-account")]
    UpdateAccount,
    /// Deactivate the account at the CA and delete it locally.
    Unregister,
    /// Show the account's URL, contact and status as the CA sees them.
    #[command(name = "show_account", visible_alias = "show-account")]
    ShowAccount,
    /// Revoke a certificate at the CA (and by default delete its lineage).
    #[command(
        long_about = "Revoke a certificate at the CA.\n\nWith --key-path the certificate's own key signs the \
request (no account needed: use it when the account is lost). Otherwise the account that obtained it does.\n\n\
EXAMPLES:\n  certfleet revoke --cert-name example.com --reason keycompromise\n  \
certfleet revoke --cert-path /etc/letsencrypt/live/example.com/cert.pem --no-delete-after-revoke"
    )]
    Revoke(RevokeArgs),
    /// Delete a lineage: its live links, archive and renewal conf.
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Lineage whose current certificate to revoke.
    #[arg(long, value_name = "NAME")]
    pub cert_name: Option<String>,
    /// Certificate file to revoke.
    #[arg(long, value_name = "FILE", conflicts_with = "cert_name")]
    pub cert_path: Option<PathBuf>,
    /// Sign the revocation with the certificate's private key instead of the account key.
    #[arg(long, value_name = "FILE")]
    pub key_path: Option<PathBuf>,
    /// unspecified, keycompromise, affiliationchanged, superseded or cessationofoperation.
    #[arg(long, value_name = "REASON")]
    pub reason: Option<String>,
    /// Delete the lineage after revoking (default with --non-interactive).
    #[arg(long, conflicts_with = "no_delete_after_revoke")]
    pub delete_after_revoke: bool,
    /// Keep the lineage after revoking.
    #[arg(long)]
    pub no_delete_after_revoke: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Lineage(s) to delete.
    #[arg(long, value_name = "NAME")]
    pub cert_name: Vec<String>,
}

#[derive(Debug, Args, Default)]
pub struct CertonlyArgs {
    /// Domain name(s); repeat or comma-separate. The first one names the lineage.
    #[arg(
        short = 'd',
        long = "domains",
        visible_alias = "domain",
        value_name = "DOMAIN"
    )]
    pub domains: Vec<String>,
    /// IP address identifier(s) (RFC 8738), if the CA issues for IPs.
    #[arg(long = "ip-address", value_name = "IP")]
    pub ip_addresses: Vec<IpAddr>,
    /// Lineage name (directory under live/); default: the first domain.
    #[arg(long, value_name = "NAME")]
    pub cert_name: Option<String>,

    /// Prove control by writing files into a running web server's document root.
    #[arg(long, group = "authenticator")]
    pub webroot: bool,
    /// Document root for the -d flags that follow it (repeatable: -w A -d x -w B -d y).
    #[arg(short = 'w', long = "webroot-path", value_name = "PATH")]
    pub webroot_path: Vec<PathBuf>,
    /// Prove control with a built-in HTTP server (port 80 must be free).
    #[arg(long, group = "authenticator")]
    pub standalone: bool,
    /// Address the standalone server listens on.
    #[arg(long = "http-01-address", value_name = "IP", default_value = "")]
    pub http01_address: String,
    /// Port the standalone server listens on.
    #[arg(long = "http-01-port", value_name = "PORT", default_value_t = 80)]
    pub http01_port: u16,

    /// Validate with the CA but save nothing (no files, no account).
    #[arg(long)]
    pub dry_run: bool,
    /// Renew even if the existing certificate is not due.
    #[arg(long, visible_alias = "renew-by-default")]
    pub force_renewal: bool,
    /// If a certificate for these names exists and is not due, keep it (default).
    #[arg(long, visible_alias = "keep")]
    pub keep_until_expiring: bool,
    /// Replace an existing lineage whose names are a subset of the requested ones.
    #[arg(long)]
    pub expand: bool,

    /// Key type of the certificate's private key.
    #[arg(long, value_name = "TYPE", value_parser = ["ecdsa", "rsa"])]
    pub key_type: Option<String>,
    /// Curve for ECDSA keys.
    #[arg(long, value_name = "CURVE", value_parser = ["secp256r1", "secp384r1"])]
    pub elliptic_curve: Option<String>,
    /// Size for RSA keys.
    #[arg(long, value_name = "BITS", value_parser = parse_rsa_size)]
    pub rsa_key_size: Option<u32>,
    /// Keep the lineage's private key when renewing.
    #[arg(long, overrides_with = "no_reuse_key")]
    pub reuse_key: bool,
    /// Make a new private key on renewal (default).
    #[arg(long)]
    pub no_reuse_key: bool,
    /// Get a certificate for this CSR (DER or PEM); the key never touches certfleet.
    #[arg(long, value_name = "FILE")]
    pub csr: Option<PathBuf>,
    /// With --csr: where to write the certificate.
    #[arg(long, value_name = "FILE")]
    pub cert_path: Option<PathBuf>,
    /// With --csr: where to write the chain.
    #[arg(long, value_name = "FILE")]
    pub chain_path: Option<PathBuf>,
    /// With --csr: where to write the full chain.
    #[arg(long, value_name = "FILE")]
    pub fullchain_path: Option<PathBuf>,

    /// Pick the chain whose topmost issuer has this Common Name, if the CA offers it.
    #[arg(long, value_name = "ISSUER CN")]
    pub preferred_chain: Option<String>,
    /// Ask for this ACME profile if the CA advertises it (e.g. classic, tlsserver, shortlived).
    #[arg(long, value_name = "PROFILE", conflicts_with = "required_profile")]
    pub preferred_profile: Option<String>,
    /// Ask for this ACME profile and fail if the CA does not offer it.
    #[arg(long, value_name = "PROFILE")]
    pub required_profile: Option<String>,

    /// Command run before renewals (stored for `renew`).
    #[arg(long, value_name = "CMD")]
    pub pre_hook: Option<String>,
    /// Command run after renewals (stored for `renew`).
    #[arg(long, value_name = "CMD")]
    pub post_hook: Option<String>,
    /// Command run after each successful issuance, with RENEWED_LINEAGE and RENEWED_DOMAINS.
    #[arg(long, visible_alias = "renew-hook", value_name = "CMD")]
    pub deploy_hook: Option<String>,
    /// Do not run hooks.
    #[arg(long)]
    pub no_hooks: bool,
}

#[derive(Debug, Args)]
pub struct CertificatesArgs {
    /// Only this lineage.
    #[arg(long, value_name = "NAME")]
    pub cert_name: Option<String>,
    /// Only lineages containing these domains.
    #[arg(short = 'd', long = "domains", value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl GlobalArgs {
    pub fn server_url(&self) -> String {
        match (&self.server, self.staging) {
            (Some(s), _) => s.clone(),
            (None, true) => LE_STAGING.to_string(),
            (None, false) => LE_PRODUCTION.to_string(),
        }
    }

    /// The trust bundle for the ACME server: flag/CERTFLEET_CA_BUNDLE, else REQUESTS_CA_BUNDLE
    /// (what certbot users already set for private CAs).
    pub fn ca_bundle(&self) -> Option<PathBuf> {
        self.ca_bundle
            .clone()
            .or_else(|| std::env::var_os("REQUESTS_CA_BUNDLE").map(PathBuf::from))
    }
}

fn parse_rsa_size(s: &str) -> Result<u32, String> {
    match s {
        "2048" | "3072" | "4096" => Ok(s.parse().expect("digits")),
        _ => Err(format!(
            "{s:?} is not a supported RSA key size (use 2048, 3072 or 4096)"
        )),
    }
}
