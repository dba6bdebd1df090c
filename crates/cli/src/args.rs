//! Command line: certbot's verbs and flags, so existing scripts and habits carry over.

use std::net::IpAddr;
use std::path::PathBuf;

use certfleet_solvers::dns::registry::{self, Registration};
use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches, Parser, Subcommand};

pub use certfleet_engine::account::{LE_PRODUCTION, LE_STAGING};

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
11  renew: a certificate is expired or will expire before the next retry\n  12  a hook failed (the certificate was saved)\n  \
13  doctor: a check failed; import: a lineage would not carry over as it is\n\n\
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
    #[arg(long, global = true, value_name = "URL", value_parser = parse_server_url)]
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
    #[command(
        long_about = "List the certificates under CONFIG_DIR: one row per lineage with its names, key type, \
expiry (UTC), time left, status and the paths to give a server.\n\nSTATUS is VALID, EXPIRED, or INVALID when the \
live/ links are broken or the private key does not match the certificate (the reason follows the table). \
Renewal failures and the next attempt are shown too.\n\nEXAMPLES:\n  certfleet certificates\n  \
certfleet certificates -d example.com --json\n  certfleet certificates --certbot-format   # certbot's layout, for old scripts"
    )]
    Certificates(CertificatesArgs),
    /// Create an ACME account at the CA.
    #[command(
        long_about = "Create an ACME account at the CA given by --server (Let's Encrypt by default) and save \
it under CONFIG_DIR/accounts/ in certbot's format. certonly does this by itself when needed.\n\nThe account key is \
ECDSA P-256. Accept the CA's terms with --agree-tos; give a contact with -m (the CA warns about expiring \
certificates there) or --register-unsafely-without-email. CAs that require External Account Binding want \
--eab-kid and --eab-hmac-key.\n\nEXAMPLE:\n  certfleet register -m admin@example.com --agree-tos"
    )]
    Register,
    /// Change the account's contact email (-m).
    #[command(
        name = "update_account",
        visible_alias = "update-account",
        long_about = "Replace the contact addresses of the saved account at the CA.\n\nEXAMPLE:\n  \
certfleet update_account -m new-admin@example.com,ops@example.com"
    )]
    UpdateAccount,
    /// Deactivate the account at the CA and delete it locally.
    #[command(
        long_about = "Deactivate the saved account at the CA for good and delete it from CONFIG_DIR/accounts/. \
Certificates already issued stay valid; renewing them needs a new account. Asks for confirmation: pass \
--non-interactive to confirm.\n\nEXAMPLE:\n  certfleet unregister --non-interactive"
    )]
    Unregister,
    /// Show the account's URL, contact and status as the CA sees them.
    #[command(
        name = "show_account",
        visible_alias = "show-account",
        long_about = "Ask the CA about the saved account (--server, --account when several) and print its URL, id, \
status and contact addresses.\n\nEXAMPLE:\n  certfleet show_account --server https://acme-staging-v02.api.letsencrypt.org/directory"
    )]
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
    #[command(
        long_about = "Delete lineages for good: the renewal conf first (so nothing tries to renew them), then \
live/NAME and archive/NAME. The certificate is not revoked (see revoke). Asks for confirmation on a terminal; \
without one, pass --non-interactive.\n\nEXAMPLE:\n  certfleet delete --cert-name old.example.com --non-interactive"
    )]
    Delete(DeleteArgs),
    /// Renew every certificate that is due (or --cert-name ones), with the settings it was issued with.
    #[command(
        long_about = "Renew the certificates in CONFIG_DIR/renewal/ that are due, each with the settings in its \
renewal conf (authenticator, webroots, key type, account, server, preferred chain, hooks).\n\n\
A certificate is due when the CA's ARI window says so (RFC 9773; the window is polled only when the CA's \
Retry-After allows), else at renew_before_expiry from its conf, else when a third of its lifetime is left \
(half, under 10 days). Failures are remembered in WORK_DIR/renewal-state/: retries wait 1 min, 10 min, \
100 min, then a day (longer if the CA says so), unless --force-renewal.\n\n\
Exit codes: 0 all fine (renewed or nothing due); 10 a renewal failed or is waiting to be retried, every \
certificate still valid; 11 a certificate is expired or expires before its next retry; 12 a hook failed.\n\n\
EXAMPLES:\n  certfleet renew\n  certfleet renew --dry-run\n  \
certfleet renew --cert-name example.com --force-renewal --deploy-reload nginx"
    )]
    Renew(Box<RenewArgs>),
    /// Run as a daemon: renew each certificate when it is due (ARI windows included), sleep otherwise.
    #[command(
        long_about = "Stay in the foreground and renew certificates as they come due, sleeping until the next \
due time, ARI poll or retry (plus a little jitter). Logs to stderr (journald under systemd). SIGHUP \
re-reads the lineage list at once; SIGTERM or SIGINT exits after the renewals in flight finish."
    )]
    Run(RunArgs),
    /// Check what would make issuance or renewal fail (DNS, CAA, http-01, dns-01, TLS, local files), with fixes.
    #[command(
        long_about = "Check every lineage (or --cert-name NAME, or -d NAME...) for what would make its renewal fail, \
without asking the CA: a test http-01 file put in place the way the lineage's authenticator does it and fetched from \
every A/AAAA address the way the CA fetches it (port 80, redirects followed); A/AAAA and CAA records; for dns-01 a test \
TXT record added and removed with the lineage's credentials; what is served on port 443 (the current certificate, \
the whole chain, nothing expired); live/ links, key, modes, renewal conf, account, failures; and whether a timer or \
the daemon renews.\n\nNames with no lineage yet are checked with the flags certonly will get: doctor takes certonly's \
flags.\n\nEach check prints OK, WARN or FAIL, and for WARN and FAIL the fix. Exit code 13 when a check FAILs.\n\n\
EXAMPLES:\n  certfleet doctor\n  certfleet doctor --cert-name example.com --json\n  \
certfleet doctor -d new.example.com --webroot -w /var/www/html"
    )]
    Doctor(Box<DoctorArgs>),
    /// Change how a certificate renews (webroot, authenticator, hooks, key type, server) without issuing.
    Reconfigure(ReconfigureArgs),
    /// Point live/ links at the newest complete version in archive/ (repairs after manual edits).
    #[command(name = "update_symlinks", visible_alias = "update-symlinks")]
    UpdateSymlinks(UpdateSymlinksArgs),
    /// Install the systemd units (certfleet-renew.timer twice daily, or the certfleet.service daemon).
    #[command(name = "install-timer")]
    InstallTimer(InstallTimerArgs),
    /// Check a certbot host: what of each lineage carries over to certfleet, and how to switch.
    #[command(
        long_about = "Check a certbot host before switching it to certfleet. certfleet renews certbot's tree \
in place, so nothing is copied or converted: for every lineage under CONFIG_DIR this reads the renewal conf \
the way `certfleet renew` will and says what carries over (authenticator, installer, hooks, credentials \
files, account, key and renewal settings) and what does not (e.g. a third-party certbot plugin such as \
dns-ovh), with what to do. Then it prints the commands that turn certbot's timer (and Debian's cron job) \
off and certfleet's timer on.\n\nRead-only and offline: nothing is written, nothing is sent to a CA.\n\n\
Exit codes: 0 every lineage carries over; 13 at least one would not renew (or not reach its server) under \
certfleet: fix it as shown, or keep certbot until then.\n\nEXAMPLES:\n  certfleet import\n  \
certfleet import --json\n  certfleet import && systemctl disable --now certbot.timer\n  \
certfleet import --fleet https://fleet.example.com:8443 --token-file admin.token --fingerprint SHA256\n\n\
With --fleet URL the lineages go to a fleet server instead: this host is enrolled (once), each lineage \
whose live set is whole becomes an agent-custody fleet certificate with its current certificate uploaded \
(never the key: it goes into the agent's key store here), the agent config gets an install rule writing to \
the same live/ paths and reloading as the lineage did, and the lineage's renewal conf is renamed \
NAME.conf.imported-to-fleet so certbot and `certfleet renew` leave it to the fleet."
    )]
    Import(ImportArgs),
    /// Write man pages, shell completions or the systemd units into a directory (for packaging).
    #[command(hide = true)]
    Generate(GenerateArgs),
    /// Fleet mode: run the central server (database, API, renewals, http-01 responder).
    #[command(
        long_about = "Run the fleet server in the foreground: it holds every certificate in a database \
(SQLite in --data-dir by default, PostgreSQL with --database-url), renews them centrally, answers http-01 \
challenges on --http-01-listen (or solves dns-01 with a provider), and serves the HTTPS API that agents \
and `certfleet fleet` talk to.\n\nOn first start it makes DATA_DIR/api.fingerprint (agents pin it), \
DATA_DIR/admin.token (0600) and DATA_DIR/custody.key (0600, seals server-custody keys).\n\n\
EXAMPLE:\n  certfleet serve --data-dir /var/lib/certfleet --http-01-listen 127.0.0.1:8402 -m admin@example.com --agree-tos"
    )]
    Serve(Box<crate::fleet_args::ServeArgs>),
    /// Fleet mode: the agent on each host (enroll, run, fetch).
    Agent(crate::fleet_args::AgentArgs),
    /// Fleet mode: the admin's commands (hosts, certificates, assignments).
    Fleet(crate::fleet_args::FleetArgs),
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Lineage whose current certificate to revoke.
    #[arg(long, value_name = "NAME", value_parser = parse_cert_name)]
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
    #[arg(long, value_name = "NAME", value_parser = parse_cert_name)]
    pub cert_name: Vec<String>,
}

/// Hook and reload flags of `renew` and `run`.
#[derive(Debug, Args, Clone, Default)]
pub struct RenewHookArgs {
    /// Command run once before the first renewal attempt of the run (instead of the conf's).
    #[arg(long, value_name = "CMD")]
    pub pre_hook: Option<String>,
    /// Command run once after all renewals, with RENEWED_DOMAINS and FAILED_DOMAINS.
    #[arg(long, value_name = "CMD")]
    pub post_hook: Option<String>,
    /// Command run after each renewal, with RENEWED_LINEAGE and RENEWED_DOMAINS.
    #[arg(long, visible_alias = "renew-hook", value_name = "CMD")]
    pub deploy_hook: Option<String>,
    /// Do not run the executables in CONFIG_DIR/renewal-hooks/{pre,deploy,post}.
    #[arg(long)]
    pub no_directory_hooks: bool,
    /// Kill a hook that runs longer than this (seconds, or 90s, 5m, 1h).
    #[arg(long, value_name = "TIME", value_parser = parse_timeout)]
    pub hook_timeout: Option<std::time::Duration>,
    /// After renewals, test the config of SERVICE and reload it only if the test passes:
    /// nginx, apache2, haproxy, postfix, dovecot or any systemd unit.
    #[arg(long, value_name = "SERVICE")]
    pub deploy_reload: Option<String>,
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    /// Only this lineage (repeatable).
    #[arg(long, value_name = "NAME", value_parser = parse_cert_name)]
    pub cert_name: Vec<String>,
    /// Renew against the CA but save nothing (no certificates, no failure memory); deploy hooks are skipped.
    #[arg(long)]
    pub dry_run: bool,
    /// Renew now even if not due (a CA's Retry-After is still honoured).
    #[arg(long, visible_alias = "renew-by-default")]
    pub force_renewal: bool,
    /// Accepted for certbot compatibility; certfleet spreads load with jitter instead of a sleep.
    #[arg(long)]
    pub no_random_sleep_on_renew: bool,
    /// Lineages renewed at once (requests to one CA are paced as well).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    #[command(flatten)]
    pub hooks: RenewHookArgs,
    /// certbot's renewal-setting flags (see args_certbot.rs).
    #[command(flatten)]
    pub auth: crate::args_certbot::RenewAuthArgs,
    #[command(flatten)]
    pub plugins: crate::args_certbot::PluginArgs,
    #[command(flatten)]
    pub compat: crate::args_certbot::CompatArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Lineages renewed at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Longest sleep between passes, in seconds (new lineages are noticed at the latest then).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub max_sleep: u64,
    #[command(flatten)]
    pub hooks: RenewHookArgs,
}

#[derive(Debug, Args)]
pub struct ReconfigureArgs {
    /// The lineage to change.
    #[arg(long, value_name = "NAME", required = true, value_parser = parse_cert_name)]
    pub cert_name: String,
    /// Renew with http-01 through this document root (-w) for every name.
    #[arg(long, conflicts_with = "standalone")]
    pub webroot: bool,
    /// Document root (with --webroot).
    #[arg(short = 'w', long = "webroot-path", value_name = "PATH")]
    pub webroot_path: Option<PathBuf>,
    /// Renew with certfleet's own http-01 server.
    #[arg(long)]
    pub standalone: bool,
    /// Address for --standalone.
    #[arg(long = "http-01-address", value_name = "IP")]
    pub http01_address: Option<String>,
    /// Port for --standalone.
    #[arg(long = "http-01-port", value_name = "PORT")]
    pub http01_port: Option<u16>,
    /// Key type for the next key (the change makes the certificate due).
    #[arg(long, value_name = "TYPE", value_parser = ["ecdsa", "rsa"])]
    pub key_type: Option<String>,
    #[arg(long, value_name = "CURVE", value_parser = ["secp256r1", "secp384r1"])]
    pub elliptic_curve: Option<String>,
    #[arg(long, value_name = "BITS", value_parser = parse_rsa_size)]
    pub rsa_key_size: Option<u32>,
    /// Keep the private key on renewal.
    #[arg(long, conflicts_with = "no_reuse_key")]
    pub reuse_key: bool,
    /// Make a new private key on renewal.
    #[arg(long)]
    pub no_reuse_key: bool,
    /// Saved pre-hook (empty string removes it).
    #[arg(long, value_name = "CMD")]
    pub pre_hook: Option<String>,
    /// Saved post-hook (empty string removes it).
    #[arg(long, value_name = "CMD")]
    pub post_hook: Option<String>,
    /// Saved deploy-hook (empty string removes it).
    #[arg(long, visible_alias = "renew-hook", value_name = "CMD")]
    pub deploy_hook: Option<String>,
    /// Service to test and reload after renewal (empty string removes it).
    #[arg(long, value_name = "SERVICE")]
    pub deploy_reload: Option<String>,
    /// Preferred chain (issuer CN; empty string removes it).
    #[arg(long, value_name = "ISSUER CN")]
    pub preferred_chain: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateSymlinksArgs {
    /// Only these lineages (default: all).
    #[arg(long, value_name = "NAME", value_parser = parse_cert_name)]
    pub cert_name: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Only this lineage (repeatable).
    #[arg(long, value_name = "NAME", value_parser = parse_cert_name)]
    pub cert_name: Vec<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Hand the lineages to this fleet server (its API URL): enroll this host, upload each
    /// certificate (never its key, which stays here for the agent), and write the agent's
    /// install rules so the services keep their paths.
    #[arg(long, value_name = "URL", help_heading = "Fleet")]
    pub fleet: Option<String>,
    /// With --fleet: file holding the fleet's admin token.
    #[arg(
        long,
        value_name = "FILE",
        requires = "fleet",
        env = "CERTFLEET_TOKEN_FILE",
        help_heading = "Fleet"
    )]
    pub token_file: Option<PathBuf>,
    /// With --fleet: SHA-256 fingerprint of the server's API certificate (its api.fingerprint).
    #[arg(
        long,
        value_name = "SHA256",
        requires = "fleet",
        env = "CERTFLEET_FINGERPRINT",
        help_heading = "Fleet"
    )]
    pub fingerprint: Option<String>,
    /// With --fleet: this host's name in the fleet (default: the machine's host name).
    #[arg(long, value_name = "NAME", requires = "fleet", help_heading = "Fleet")]
    pub host: Option<String>,
    /// With --fleet: the agent's state directory (its enrollment and keys).
    #[arg(
        long,
        value_name = "DIR",
        requires = "fleet",
        default_value = "/var/lib/certfleet-agent",
        help_heading = "Fleet"
    )]
    pub agent_state_dir: PathBuf,
    /// With --fleet: the agent's config file; install rules are added to it (created if missing).
    #[arg(
        long,
        value_name = "FILE",
        requires = "fleet",
        default_value = "/etc/certfleet/agent.toml",
        help_heading = "Fleet"
    )]
    pub agent_config: PathBuf,
    /// With --fleet: how the server proves control of the names (default: its own http-01
    /// responder; or a `--dns-<provider>` with credentials on the server).
    #[command(flatten)]
    pub dns: DnsProviderArgs,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// man: certfleet.1 and certfleet-VERB.1; completions: bash, zsh and fish; units: the
    /// systemd units with ExecStart at --binary.
    #[arg(value_parser = ["man", "completions", "units"])]
    pub what: String,
    /// Directory to write into (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// With units: the installed binary's path.
    #[arg(long, value_name = "PATH", default_value = "/usr/bin/certfleet")]
    pub binary: String,
}

#[derive(Debug, Args)]
pub struct InstallTimerArgs {
    /// Where to write the unit files.
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
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
    #[arg(long, value_name = "NAME", value_parser = parse_cert_name)]
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
    /// Prove control with a built-in TLS server answering tls-alpn-01 (the CA connects to port 443).
    #[arg(long = "tls-alpn-01", group = "authenticator")]
    pub tls_alpn_01: bool,
    /// Address the tls-alpn-01 server listens on.
    #[arg(long = "tls-alpn-01-address", value_name = "IP", default_value = "")]
    pub tls_alpn01_address: String,
    /// Port the tls-alpn-01 server listens on (forward port 443 to it if not 443).
    #[arg(long = "tls-alpn-01-port", value_name = "PORT", default_value_t = 443)]
    pub tls_alpn01_port: u16,

    /// `--dns-<provider>` and its settings, one set per registered DNS provider.
    #[command(flatten)]
    pub dns_providers: DnsProviderArgs,
    /// certbot's manual plugin: http-01 through --manual-auth-hook scripts, or with
    /// --preferred-challenges dns, dns-01 by hand or through hooks.
    #[arg(long, group = "authenticator", help_heading = "dns-01")]
    pub manual: bool,
    /// With --manual: command that publishes CERTBOT_VALIDATION (at
    /// _acme-challenge.CERTBOT_DOMAIN for dns-01, at /.well-known/acme-challenge/CERTBOT_TOKEN for http-01).
    #[arg(long, value_name = "CMD", help_heading = "dns-01")]
    pub manual_auth_hook: Option<String>,
    /// With --manual: command that removes it (gets CERTBOT_AUTH_OUTPUT too).
    #[arg(long, value_name = "CMD", help_heading = "dns-01")]
    pub manual_cleanup_hook: Option<String>,
    /// Challenge types in order of preference, comma-separated: dns (dns-01), http (http-01).
    #[arg(long, value_name = "TYPES", help_heading = "dns-01")]
    pub preferred_challenges: Vec<String>,
    /// Give up if the authoritative servers do not all answer the TXT records within this
    /// long (default 120; 0 skips the check).
    #[arg(long, value_name = "SECONDS", help_heading = "dns-01")]
    pub dns_propagation_timeout: Option<u64>,
    /// DNS server for CNAME/SOA/NS lookups (default: the rfc2136 server, else /etc/resolv.conf).
    #[arg(long, value_name = "IP[:PORT]", value_parser = parse_resolver, help_heading = "dns-01")]
    pub dns_resolver: Option<std::net::SocketAddr>,

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
    /// After issuance, test the config of SERVICE and reload it if the test passes (saved for renew).
    #[arg(long, value_name = "SERVICE")]
    pub deploy_reload: Option<String>,

    /// certbot's nginx/Apache plugins and compatibility flags (see args_certbot.rs).
    #[command(flatten)]
    pub plugins: crate::args_certbot::PluginArgs,
    #[command(flatten)]
    pub compat: crate::args_certbot::CompatArgs,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// certonly's flags: -d and --cert-name choose what to check; the authenticator flags
    /// (--webroot -w, --standalone, --nginx, --dns-*, ...) check names before their first certonly.
    #[command(flatten)]
    pub certonly: CertonlyArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Give up on a check after this long (seconds, or 90s, 5m).
    #[arg(long, value_name = "TIME", value_parser = parse_timeout, default_value = "5")]
    pub timeout: std::time::Duration,
    /// Port of the TLS server to check.
    #[arg(long, value_name = "PORT", default_value_t = 443)]
    pub port: u16,
    /// PEM roots to trust, besides this host's, when judging served chains (private or test CAs).
    #[arg(long, value_name = "FILE")]
    pub tls_roots: Option<PathBuf>,
    /// Where the systemd units are installed.
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct CertificatesArgs {
    /// Only this lineage.
    #[arg(long, value_name = "NAME", value_parser = parse_cert_name)]
    pub cert_name: Option<String>,
    /// Only lineages containing these domains.
    #[arg(short = 'd', long = "domains", value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Print certbot's layout ("Certificate Name: ...") instead of a table, for scripts
    /// written against `certbot certificates`.
    #[arg(long, conflicts_with = "json")]
    pub certbot_format: bool,
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

/// `IP:PORT`, `[IPv6]:PORT` or a bare IP (port 53).
fn parse_resolver(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{s:?} is not an IP address with an optional port (e.g. 127.0.0.1:5353)"))
}

/// `--server`: an http(s) URL with a host, checked here so a typo is a usage error (exit 2)
/// that says what is wrong, not an HTTP client error later.
fn parse_server_url(s: &str) -> Result<String, String> {
    let example = "e.g. https://acme-v02.api.letsencrypt.org/directory";
    let url = url::Url::parse(s)
        .map_err(|e| format!("{s:?} is not a URL ({e}); give the CA's ACME directory URL, {example}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!(
            "{s:?} has scheme {:?}; an ACME directory URL starts with https:// ({example})",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host name; {example}"));
    }
    Ok(s.to_string())
}

/// `--cert-name`: a directory name under live/ and archive/ (no `/`, `.`, `..`, leading
/// `.` or `-`, control characters), rejected as a usage error before anything runs.
fn parse_cert_name(s: &str) -> Result<String, String> {
    certfleet_store::lineage::validate_name(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// `--hook-timeout`: seconds, or a number with `s`/`m`/`h`.
pub fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1),
        Some((i, 'm')) => (&t[..i], 60),
        Some((i, 'h')) => (&t[..i], 3600),
        _ => (t, 1),
    };
    match num.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(std::time::Duration::from_secs(n * mult)),
        _ => Err(format!(
            "{s:?} is not a timeout: write seconds (300) or 90s, 5m, 1h"
        )),
    }
}

/// The flags of one registered DNS provider: `--dns-NAME`, `--dns-NAME-credentials FILE`,
/// `--dns-NAME-propagation-seconds SECONDS`.
#[derive(Debug, Clone)]
pub struct DnsProviderFlags {
    pub provider: &'static Registration,
    /// `--dns-NAME` was given.
    pub chosen: bool,
    pub credentials: Option<PathBuf>,
    pub propagation_seconds: Option<u64>,
}

/// The flags of every provider in the solvers' DNS registry, generated from it (clap's derive
/// needs one field per flag; this loops over the registry instead).
#[derive(Debug, Clone)]
pub struct DnsProviderArgs {
    /// One entry per registered provider, in registry order.
    pub providers: Vec<DnsProviderFlags>,
}

impl Default for DnsProviderArgs {
    fn default() -> Self {
        Self {
            providers: registry::PROVIDERS
                .iter()
                .map(|provider| DnsProviderFlags {
                    provider,
                    chosen: false,
                    credentials: None,
                    propagation_seconds: None,
                })
                .collect(),
        }
    }
}

impl DnsProviderArgs {
    /// The provider whose `--dns-NAME` flag was given (at most one: they share a group).
    pub fn chosen(&self) -> Option<&DnsProviderFlags> {
        self.providers.iter().find(|p| p.chosen)
    }
}

impl Args for DnsProviderArgs {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        // What the derive would write for each field, under the "dns-01" heading.
        let flag =
            |id: &'static str, help: &'static str| Arg::new(id).long(id).help(help).help_heading("dns-01");
        for p in registry::PROVIDERS {
            cmd = cmd
                .arg(
                    flag(p.flag, p.help)
                        .action(ArgAction::SetTrue)
                        .group("authenticator"),
                )
                .arg(
                    flag(p.credentials_flag, p.credentials_help)
                        .value_name("FILE")
                        .value_parser(clap::value_parser!(PathBuf)),
                )
                .arg(
                    flag(p.propagation_seconds_flag, p.propagation_seconds_help)
                        .value_name("SECONDS")
                        .value_parser(clap::value_parser!(u64)),
                );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for DnsProviderArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Self::default();
        args.update_from_arg_matches(m)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for f in &mut self.providers {
            let p = f.provider;
            if m.get_flag(p.flag) {
                f.chosen = true;
            }
            if let Some(c) = m.get_one::<PathBuf>(p.credentials_flag) {
                f.credentials = Some(c.clone());
            }
            if let Some(s) = m.get_one::<u64>(p.propagation_seconds_flag) {
                f.propagation_seconds = Some(*s);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_timeout("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_timeout("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_timeout("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("soon").is_err());
    }
}
