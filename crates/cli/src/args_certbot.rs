//! certbot's flags that `certonly` and `renew` take beyond certfleet's own (checked against
//! `certbot --help all`, certbot 2.1): the nginx and Apache plugins, renewal-setting overrides
//! on `renew`, and flags accepted for compatibility. What each does in certfleet is in
//! [`crate::overrides`]: honoured where it means something here, else accepted with a debug
//! line (`-v` shows it) saying why it has no effect.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches};

use crate::args::DnsProviderArgs;

/// certbot's nginx and Apache plugins (authenticator + installer) and their settings.
#[derive(Debug, Args, Clone, Default)]
pub struct PluginArgs {
    /// Answer http-01 through the running nginx (a temporary include, removed after
    /// validation) and reload it after issuance so it serves the new certificate.
    #[arg(long, group = "authenticator", help_heading = "nginx / Apache")]
    pub nginx: bool,
    /// Like --nginx, for Apache.
    #[arg(long, group = "authenticator", help_heading = "nginx / Apache")]
    pub apache: bool,
    /// Directory of nginx.conf (default /etc/nginx).
    #[arg(long, value_name = "DIR", help_heading = "nginx / Apache")]
    pub nginx_server_root: Option<PathBuf>,
    /// The nginx binary (default nginx).
    #[arg(long, value_name = "PATH", help_heading = "nginx / Apache")]
    pub nginx_ctl: Option<String>,
    /// Accepted for certbot compatibility: certfleet fetches each challenge from nginx until it
    /// answers instead of sleeping.
    #[arg(long, value_name = "SECONDS", hide = true)]
    pub nginx_sleep_seconds: Option<u32>,
    /// Apache's configuration root (default /etc/apache2).
    #[arg(long, value_name = "DIR", help_heading = "nginx / Apache")]
    pub apache_server_root: Option<PathBuf>,
    /// Apache's control script (default apache2ctl).
    #[arg(long, value_name = "PATH", help_heading = "nginx / Apache")]
    pub apache_ctl: Option<String>,
    /// certbot's other Apache settings, kept in the renewal conf for certbot; certfleet needs
    /// none of them (it never enables modules or sites, nor writes vhosts).
    #[arg(long, value_name = "VALUE", hide = true)]
    pub apache_enmod: Option<String>,
    #[arg(long, value_name = "VALUE", hide = true)]
    pub apache_dismod: Option<String>,
    #[arg(long, value_name = "VALUE", hide = true, allow_hyphen_values = true)]
    pub apache_le_vhost_ext: Option<String>,
    #[arg(long, value_name = "VALUE", hide = true)]
    pub apache_vhost_root: Option<String>,
    #[arg(long, value_name = "VALUE", hide = true)]
    pub apache_logs_root: Option<String>,
    #[arg(long, value_name = "VALUE", hide = true)]
    pub apache_challenge_location: Option<String>,
    #[arg(long, value_name = "VALUE", hide = true)]
    pub apache_handle_modules: Option<String>,
    #[arg(long, value_name = "VALUE", hide = true)]
    pub apache_handle_sites: Option<String>,
    #[arg(long, value_name = "VALUE", hide = true)]
    pub apache_bin: Option<String>,
}

impl PluginArgs {
    /// The renewal-conf keys these flags set, certbot's way.
    pub fn conf_keys(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        let mut put = |k: &'static str, val: Option<String>| {
            if let Some(val) = val {
                v.push((k, val));
            }
        };
        put(
            "nginx_server_root",
            self.nginx_server_root.as_ref().map(|p| p.display().to_string()),
        );
        put("nginx_ctl", self.nginx_ctl.clone());
        put(
            "nginx_sleep_seconds",
            self.nginx_sleep_seconds.map(|s| s.to_string()),
        );
        put(
            "apache_server_root",
            self.apache_server_root.as_ref().map(|p| p.display().to_string()),
        );
        put("apache_ctl", self.apache_ctl.clone());
        put("apache_enmod", self.apache_enmod.clone());
        put("apache_dismod", self.apache_dismod.clone());
        put("apache_le_vhost_ext", self.apache_le_vhost_ext.clone());
        put("apache_vhost_root", self.apache_vhost_root.clone());
        put("apache_logs_root", self.apache_logs_root.clone());
        put(
            "apache_challenge_location",
            self.apache_challenge_location.clone(),
        );
        put("apache_handle_modules", self.apache_handle_modules.clone());
        put("apache_handle_sites", self.apache_handle_sites.clone());
        put("apache_bin", self.apache_bin.clone());
        v
    }
}

/// certbot flags both verbs accept; see [`crate::overrides`] for what each does here.
#[derive(Debug, Args, Clone, Default)]
pub struct CompatArgs {
    /// Authenticator plugin by name (webroot, standalone, nginx, apache, manual, dns-...).
    #[arg(
        short = 'a',
        long = "authenticator",
        id = "authenticator_name",
        value_name = "NAME"
    )]
    pub authenticator: Option<String>,
    /// Installer plugin by name (nginx, apache): reloaded after issuance.
    #[arg(short = 'i', long = "installer", value_name = "NAME")]
    pub installer: Option<String>,
    /// Plugin that is both authenticator and installer (nginx, apache).
    #[arg(long, value_name = "NAME")]
    pub configurator: Option<String>,
    /// A fresh private key this time, even with reuse_key (it stays set for later renewals).
    #[arg(long)]
    pub new_key: bool,
    /// Recorded for certbot; certfleet needs every name validated.
    #[arg(long)]
    pub allow_subset_of_names: bool,
    /// Not honoured: Let's Encrypt no longer issues OCSP Must-Staple certificates.
    #[arg(long)]
    pub must_staple: bool,
    /// Do not renew this certificate automatically (recorded as autorenew = False).
    #[arg(long)]
    pub no_autorenew: bool,
    /// JSON {"name1,name2": "/webroot", ...}: webroots per name (implies -d for certonly).
    #[arg(long, value_name = "JSON")]
    pub webroot_map: Option<String>,
    /// Not honoured: certfleet always verifies the CA's certificate (give private roots
    /// with --ca-bundle or REQUESTS_CA_BUNDLE).
    #[arg(long)]
    pub no_verify_ssl: bool,
    #[arg(long, value_name = "N", hide = true)]
    pub max_log_backups: Option<u32>,
    #[arg(long, value_name = "SECONDS", hide = true)]
    pub issuance_timeout: Option<u64>,
    #[arg(long, value_name = "UA", hide = true)]
    pub user_agent: Option<String>,
    #[arg(long, value_name = "TEXT", hide = true)]
    pub user_agent_comment: Option<String>,
    #[arg(long, value_name = "PORT", hide = true)]
    pub https_port: Option<u16>,
    #[arg(long, hide = true)]
    pub force_interactive: bool,
    #[arg(long, hide = true)]
    pub debug_challenges: bool,
    #[arg(long, hide = true)]
    pub renew_with_new_domains: bool,
    #[arg(long, hide = true)]
    pub duplicate: bool,
    #[arg(long, hide = true)]
    pub redirect: bool,
    #[arg(long, hide = true)]
    pub no_redirect: bool,
    #[arg(long, hide = true)]
    pub hsts: bool,
    #[arg(long, hide = true)]
    pub uir: bool,
    #[arg(long, hide = true)]
    pub staple_ocsp: bool,
    #[arg(long, hide = true)]
    pub auto_hsts: bool,
    #[arg(long, hide = true)]
    pub strict_permissions: bool,
    #[arg(long, hide = true)]
    pub debug: bool,
    #[arg(long, hide = true)]
    pub break_my_certs: bool,
    #[arg(long, hide = true)]
    pub disable_hook_validation: bool,
    #[arg(long, hide = true)]
    pub disable_renew_updates: bool,
    #[arg(long, hide = true)]
    pub eff_email: bool,
    #[arg(long, hide = true)]
    pub no_eff_email: bool,
    /// certbot's DNS plugins certfleet does not have (refused with what to use instead).
    #[command(flatten)]
    pub other_dns: OtherDnsArgs,
}

impl CompatArgs {
    /// The flags given that have no effect in certfleet, with why, for a debug line each.
    pub fn without_effect(&self) -> Vec<(&'static str, &'static str)> {
        let mut v = Vec::new();
        let cosmetic = "certfleet keeps no rotating log files";
        for (on, flag, why) in [
            (self.max_log_backups.is_some(), "--max-log-backups", cosmetic),
            (
                self.issuance_timeout.is_some(),
                "--issuance-timeout",
                "certfleet waits up to 5 minutes on the CA",
            ),
            (
                self.user_agent.is_some(),
                "--user-agent",
                "certfleet sends its own user agent",
            ),
            (
                self.user_agent_comment.is_some(),
                "--user-agent-comment",
                "certfleet sends its own user agent",
            ),
            (
                self.https_port.is_some(),
                "--https-port",
                "certfleet does not write server blocks",
            ),
            (
                self.force_interactive,
                "--force-interactive",
                "certfleet asks only where it must",
            ),
            (
                self.debug_challenges,
                "--debug-challenges",
                "use -v: certfleet logs each challenge",
            ),
            (
                self.renew_with_new_domains,
                "--renew-with-new-domains",
                "use --expand or --cert-name",
            ),
            (
                self.duplicate,
                "--duplicate",
                "use --cert-name NEW for a second lineage",
            ),
            (
                self.redirect,
                "--redirect",
                "certfleet does not edit server configurations for good",
            ),
            (
                self.no_redirect,
                "--no-redirect",
                "certfleet does not edit server configurations for good",
            ),
            (
                self.hsts,
                "--hsts",
                "certfleet does not edit server configurations for good",
            ),
            (
                self.uir,
                "--uir",
                "certfleet does not edit server configurations for good",
            ),
            (
                self.staple_ocsp,
                "--staple-ocsp",
                "certfleet does not edit server configurations for good",
            ),
            (
                self.auto_hsts,
                "--auto-hsts",
                "certfleet does not edit server configurations for good",
            ),
            (
                self.strict_permissions,
                "--strict-permissions",
                "certfleet checks permissions where they matter",
            ),
            (
                self.debug,
                "--debug",
                "errors never show tracebacks; use -v for detail",
            ),
            (
                self.break_my_certs,
                "--break-my-certs",
                "certfleet does not refuse staging renewals",
            ),
            (
                self.disable_hook_validation,
                "--disable-hook-validation",
                "hooks are not validated ahead",
            ),
            (
                self.disable_renew_updates,
                "--disable-renew-updates",
                "certfleet never updates server configurations on renew",
            ),
            (
                self.eff_email,
                "--eff-email",
                "certfleet shares no address with the EFF",
            ),
            (
                self.no_eff_email,
                "--no-eff-email",
                "certfleet shares no address with the EFF",
            ),
        ] {
            if on {
                v.push((flag, why));
            }
        }
        v
    }
}

/// certbot 2.1's DNS plugins that certfleet has no provider for (certfleet's own are in the
/// solvers' registry and have real flags).
const OTHER_DNS: &[&str] = &[
    "digitalocean",
    "dnsimple",
    "dnsmadeeasy",
    "gehirn",
    "google",
    "linode",
    "luadns",
    "nsone",
    "ovh",
    "route53",
    "sakuracloud",
];

/// `--dns-NAME` (and its credentials/propagation flags) for [`OTHER_DNS`], hidden: accepted
/// by the parser so the error can say what to do instead.
#[derive(Debug, Clone, Default)]
pub struct OtherDnsArgs {
    /// The first such plugin named, e.g. `dns-route53`.
    pub chosen: Option<String>,
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

impl Args for OtherDnsArgs {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for name in OTHER_DNS {
            if certfleet_solvers::dns::registry::by_authenticator(&format!("dns-{name}")).is_some() {
                continue;
            }
            cmd = cmd
                .arg(
                    Arg::new(leak(format!("dns-{name}")))
                        .long(leak(format!("dns-{name}")))
                        .action(ArgAction::SetTrue)
                        .hide(true),
                )
                .arg(
                    Arg::new(leak(format!("dns-{name}-credentials")))
                        .long(leak(format!("dns-{name}-credentials")))
                        .hide(true),
                )
                .arg(
                    Arg::new(leak(format!("dns-{name}-propagation-seconds")))
                        .long(leak(format!("dns-{name}-propagation-seconds")))
                        .hide(true),
                );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for OtherDnsArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut a = Self::default();
        a.update_from_arg_matches(m)?;
        Ok(a)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for name in OTHER_DNS {
            let id = format!("dns-{name}");
            if m.try_get_one::<bool>(&id)
                .ok()
                .flatten()
                .copied()
                .unwrap_or(false)
            {
                self.chosen.get_or_insert(id);
            }
        }
        Ok(())
    }
}

/// What `renew` takes of `certonly`'s authenticator and key flags: overrides of each
/// lineage's renewal settings for this run, as in certbot.
#[derive(Debug, Args, Default)]
pub struct RenewAuthArgs {
    /// Renew with http-01 through a document root (-w).
    #[arg(
        long,
        group = "authenticator",
        help_heading = "Renewal settings (override the renewal conf)"
    )]
    pub webroot: bool,
    /// Document root for --webroot (repeatable; the first is used for every name).
    #[arg(
        short = 'w',
        long = "webroot-path",
        value_name = "PATH",
        help_heading = "Renewal settings (override the renewal conf)"
    )]
    pub webroot_path: Vec<PathBuf>,
    /// Renew with certfleet's own http-01 server.
    #[arg(
        long,
        group = "authenticator",
        help_heading = "Renewal settings (override the renewal conf)"
    )]
    pub standalone: bool,
    /// Address for the standalone server.
    #[arg(
        long = "http-01-address",
        value_name = "IP",
        help_heading = "Renewal settings (override the renewal conf)"
    )]
    pub http01_address: Option<String>,
    /// Port the http-01 answer is served on (standalone's listening port, the nginx/Apache
    /// server blocks to use).
    #[arg(
        long = "http-01-port",
        value_name = "PORT",
        help_heading = "Renewal settings (override the renewal conf)"
    )]
    pub http01_port: Option<u16>,
    /// Renew through certbot's manual hooks.
    #[arg(
        long,
        group = "authenticator",
        help_heading = "Renewal settings (override the renewal conf)"
    )]
    pub manual: bool,
    #[arg(
        long,
        value_name = "CMD",
        help_heading = "Renewal settings (override the renewal conf)"
    )]
    pub manual_auth_hook: Option<String>,
    #[arg(
        long,
        value_name = "CMD",
        help_heading = "Renewal settings (override the renewal conf)"
    )]
    pub manual_cleanup_hook: Option<String>,
    /// Challenge types in order of preference (dns, http).
    #[arg(
        long,
        value_name = "TYPES",
        help_heading = "Renewal settings (override the renewal conf)"
    )]
    pub preferred_challenges: Vec<String>,
    #[command(flatten)]
    pub dns_providers: DnsProviderArgs,
    #[arg(long, value_name = "TYPE", value_parser = ["ecdsa", "rsa"], help_heading = "Renewal settings (override the renewal conf)")]
    pub key_type: Option<String>,
    #[arg(long, value_name = "CURVE", value_parser = ["secp256r1", "secp384r1"], help_heading = "Renewal settings (override the renewal conf)")]
    pub elliptic_curve: Option<String>,
    #[arg(long, value_name = "BITS", value_parser = ["2048", "3072", "4096"], help_heading = "Renewal settings (override the renewal conf)")]
    pub rsa_key_size: Option<String>,
    #[arg(
        long,
        overrides_with = "no_reuse_key",
        help_heading = "Renewal settings (override the renewal conf)"
    )]
    pub reuse_key: bool,
    #[arg(long, help_heading = "Renewal settings (override the renewal conf)")]
    pub no_reuse_key: bool,
    #[arg(
        long,
        value_name = "ISSUER CN",
        help_heading = "Renewal settings (override the renewal conf)"
    )]
    pub preferred_chain: Option<String>,
    /// certbot refuses -d with renew (use certonly); so does certfleet.
    #[arg(
        short = 'd',
        long = "domains",
        visible_alias = "domain",
        value_name = "DOMAIN",
        hide = true
    )]
    pub domains: Vec<String>,
    /// certbot refuses --csr with renew; so does certfleet.
    #[arg(long, value_name = "FILE", hide = true)]
    pub csr: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub expand: bool,
    #[arg(long, visible_alias = "keep", hide = true)]
    pub keep_until_expiring: bool,
    #[arg(long, value_name = "FILE", hide = true)]
    pub cert_path: Option<PathBuf>,
    #[arg(long, value_name = "FILE", hide = true)]
    pub key_path: Option<PathBuf>,
    #[arg(long, value_name = "FILE", hide = true)]
    pub fullchain_path: Option<PathBuf>,
    #[arg(long, value_name = "FILE", hide = true)]
    pub chain_path: Option<PathBuf>,
}
