//! The dns-01 authenticators of [`super::AuthSpec`]: certbot's `--dns-rfc2136`,
//! `--dns-cloudflare` and `--manual` (with or without hooks) flags, their `[renewalparams]`
//! keys, and the [`Dns01Solver`] they build.
//!
//! Renewal conf keys, as certbot writes them (so certbot can renew our lineages and we can
//! renew certbot's):
//! - `authenticator = dns-rfc2136`, `dns_rfc2136_credentials`, `dns_rfc2136_propagation_seconds`;
//! - `authenticator = dns-cloudflare`, `dns_cloudflare_credentials`, `dns_cloudflare_propagation_seconds`;
//! - `authenticator = manual`, `manual_auth_hook`, `manual_cleanup_hook`;
//! - `pref_challs = dns-01,` for all of them.
//!
//! certfleet's own settings go under keys certbot ignores: `dns_propagation_timeout`,
//! `dns_resolver`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use certfleet_core::Identifier;
use certfleet_solvers::dns::{Dns01Config, Dns01Solver, ProviderConfig};
use certfleet_store::RenewalConf;

use crate::args::CertonlyArgs;
use crate::error::{CliError, Result};

/// Default `--dns-propagation-timeout`.
const DEFAULT_TIMEOUT_SECS: u64 = 120;

/// Which way the TXT records get published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsProvider {
    Rfc2136 {
        credentials: PathBuf,
    },
    Cloudflare {
        credentials: PathBuf,
    },
    /// `--manual --manual-auth-hook`: certbot's hook environment.
    Hooks {
        auth_hook: String,
        cleanup_hook: Option<String>,
    },
    /// `--manual` without hooks: print the records, wait for Enter.
    Manual,
}

/// A dns-01 authenticator and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAuth {
    pub provider: DnsProvider,
    /// certbot's `--dns-<provider>-propagation-seconds`: a minimum wait.
    pub propagation_seconds: Option<u64>,
    /// `--dns-propagation-timeout` (None: 120 s; 0: no check).
    pub propagation_timeout: Option<u64>,
    /// `--dns-resolver`.
    pub resolver: Option<SocketAddr>,
}

/// certbot's `--preferred-challenges`: comma-separated, `dns`/`http` short forms.
pub fn preferred_challenges(raw: &[String]) -> Result<Vec<&'static str>> {
    let mut out = Vec::new();
    for part in raw.iter().flat_map(|r| r.split(',')).map(str::trim) {
        let kind = match part.to_ascii_lowercase().as_str() {
            "" => continue,
            "dns" | "dns-01" => "dns-01",
            "http" | "http-01" => "http-01",
            "tls-alpn" | "tls-alpn-01" => "tls-alpn-01",
            other => {
                return Err(CliError::usage(format!(
                    "--preferred-challenges: unknown challenge type {other:?} (use dns, http or tls-alpn)"
                )));
            }
        };
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(out)
}

impl DnsAuth {
    /// From `certonly` flags; None when no dns-01 authenticator was chosen.
    pub fn from_args(a: &CertonlyArgs, m: &clap::ArgMatches, ids: &[Identifier]) -> Result<Option<Self>> {
        let prefs = preferred_challenges(&a.preferred_challenges)?;
        let (provider, propagation_seconds) = if a.dns_rfc2136 {
            let credentials = required_file(&a.dns_rfc2136_credentials, "rfc2136")?;
            (
                DnsProvider::Rfc2136 { credentials },
                a.dns_rfc2136_propagation_seconds,
            )
        } else if a.dns_cloudflare {
            let credentials = required_file(&a.dns_cloudflare_credentials, "cloudflare")?;
            (
                DnsProvider::Cloudflare { credentials },
                a.dns_cloudflare_propagation_seconds,
            )
        } else if a.manual {
            manual_wants_dns(&prefs, ids, "--preferred-challenges dns")?;
            let provider = match (&a.manual_auth_hook, &a.manual_cleanup_hook) {
                (Some(auth), cleanup) => DnsProvider::Hooks {
                    auth_hook: auth.clone(),
                    cleanup_hook: cleanup.clone(),
                },
                (None, Some(_)) => {
                    return Err(CliError::usage(
                        "--manual-cleanup-hook needs --manual-auth-hook (the command that publishes the record)",
                    ));
                }
                (None, None) => {
                    // Global flags are propagated into the subcommand's matches.
                    let non_interactive = m
                        .try_get_one::<bool>("non_interactive")
                        .ok()
                        .flatten()
                        .copied()
                        .unwrap_or(false);
                    if non_interactive {
                        return Err(manual_needs_terminal());
                    }
                    DnsProvider::Manual
                }
            };
            (provider, None)
        } else {
            return Ok(None);
        };
        if !prefs.is_empty() && !prefs.contains(&"dns-01") {
            return Err(CliError::usage(format!(
                "--preferred-challenges {}: the chosen authenticator only does dns-01",
                prefs.join(",")
            )));
        }
        Ok(Some(DnsAuth {
            provider,
            propagation_seconds,
            propagation_timeout: a.dns_propagation_timeout,
            resolver: a.dns_resolver,
        }))
    }

    /// From `[renewalparams]`; None when the authenticator is not a dns-01 one.
    pub fn from_conf(conf: &RenewalConf, ids: &[Identifier]) -> Result<Option<Self>> {
        let (provider, seconds_key) = match conf.authenticator() {
            Some("dns-rfc2136") => (
                DnsProvider::Rfc2136 {
                    credentials: conf_file(conf, "dns_rfc2136_credentials")?,
                },
                "dns_rfc2136_propagation_seconds",
            ),
            Some("dns-cloudflare") => (
                DnsProvider::Cloudflare {
                    credentials: conf_file(conf, "dns_cloudflare_credentials")?,
                },
                "dns_cloudflare_propagation_seconds",
            ),
            Some("manual") => {
                let prefs = preferred_challenges(&conf.pref_challs())?;
                manual_wants_dns(&prefs, ids, "pref_challs = dns-01, in the renewal conf")?;
                let provider = match conf.manual_auth_hook().filter(|h| !h.is_empty()) {
                    Some(auth) => DnsProvider::Hooks {
                        auth_hook: auth.to_string(),
                        cleanup_hook: conf
                            .manual_cleanup_hook()
                            .filter(|h| !h.is_empty())
                            .map(str::to_string),
                    },
                    None => DnsProvider::Manual,
                };
                (provider, "")
            }
            _ => return Ok(None),
        };
        let propagation_seconds = if seconds_key.is_empty() {
            None
        } else {
            conf_u64(conf, seconds_key)?
        };
        let resolver = match conf.param_str("dns_resolver").filter(|s| !s.is_empty()) {
            Some(s) => Some(s.parse().map_err(|_| {
                CliError::usage(format!(
                    "dns_resolver = {s} in the renewal conf is not an IP:PORT address"
                ))
            })?),
            None => None,
        };
        Ok(Some(DnsAuth {
            provider,
            propagation_seconds,
            propagation_timeout: conf_u64(conf, "dns_propagation_timeout")?,
            resolver,
        }))
    }

    /// Write certbot's keys; drop the keys of the other dns-01 authenticators.
    pub fn record(&self, conf: &mut RenewalConf) {
        for k in [
            "dns_rfc2136_credentials",
            "dns_rfc2136_propagation_seconds",
            "dns_cloudflare_credentials",
            "dns_cloudflare_propagation_seconds",
            "manual_auth_hook",
            "manual_cleanup_hook",
            "dns_propagation_timeout",
            "dns_resolver",
        ] {
            conf.remove_param(k);
        }
        let seconds_key = match &self.provider {
            DnsProvider::Rfc2136 { credentials } => {
                conf.set_param("authenticator", "dns-rfc2136");
                conf.set_param("dns_rfc2136_credentials", absolute(credentials));
                Some("dns_rfc2136_propagation_seconds")
            }
            DnsProvider::Cloudflare { credentials } => {
                conf.set_param("authenticator", "dns-cloudflare");
                conf.set_param("dns_cloudflare_credentials", absolute(credentials));
                Some("dns_cloudflare_propagation_seconds")
            }
            DnsProvider::Hooks {
                auth_hook,
                cleanup_hook,
            } => {
                conf.set_param("authenticator", "manual");
                conf.set_param("manual_auth_hook", auth_hook.clone());
                if let Some(c) = cleanup_hook {
                    conf.set_param("manual_cleanup_hook", c.clone());
                }
                None
            }
            DnsProvider::Manual => {
                conf.set_param("authenticator", "manual");
                None
            }
        };
        if let (Some(k), Some(s)) = (seconds_key, self.propagation_seconds) {
            conf.set_param(k, s.to_string());
        }
        // A one-element list: configobj writes it with a trailing comma, as certbot does.
        conf.set_param("pref_challs", vec!["dns-01".to_string()]);
        if let Some(t) = self.propagation_timeout {
            conf.set_param("dns_propagation_timeout", t.to_string());
        }
        if let Some(r) = self.resolver {
            conf.set_param("dns_resolver", r.to_string());
        }
    }

    /// The solver; reads and checks the credentials file (mode 0600) now, before any order.
    pub fn solver(&self, work_dir: &Path) -> Result<Dns01Solver> {
        let provider = match &self.provider {
            DnsProvider::Rfc2136 { credentials } => ProviderConfig::Rfc2136 {
                credentials: credentials.clone(),
            },
            DnsProvider::Cloudflare { credentials } => ProviderConfig::Cloudflare {
                credentials: credentials.clone(),
                api_base: None,
            },
            DnsProvider::Hooks {
                auth_hook,
                cleanup_hook,
            } => ProviderConfig::Hooks {
                auth_hook: auth_hook.clone(),
                cleanup_hook: cleanup_hook.clone(),
            },
            DnsProvider::Manual => {
                if !std::io::stdin().is_terminal() {
                    return Err(manual_needs_terminal());
                }
                ProviderConfig::Manual
            }
        };
        let mut cfg = Dns01Config::new(provider);
        let timeout = self.propagation_timeout.unwrap_or(DEFAULT_TIMEOUT_SECS);
        cfg.check_propagation = timeout > 0;
        cfg.propagation_timeout = Duration::from_secs(timeout);
        cfg.min_wait = Duration::from_secs(self.propagation_seconds.unwrap_or(0));
        cfg.resolver = self.resolver;
        // Records a crashed run left behind are found here and removed by the next run.
        cfg.state_dir = Some(work_dir.to_path_buf());
        Dns01Solver::from_config(&cfg).map_err(|e| CliError::solver(e.into()))
    }
}

fn manual_needs_terminal() -> CliError {
    CliError::usage(
        "--manual without --manual-auth-hook asks you to create DNS records by hand and needs a terminal; \
         with --non-interactive or no terminal, pass --manual-auth-hook CMD (and --manual-cleanup-hook CMD), \
         or use --dns-rfc2136 / --dns-cloudflare",
    )
}

/// certfleet's manual mode does dns-01 only: make sure that is what was asked for. Without a
/// preference certbot would pick http-01 unless a name is a wildcard.
fn manual_wants_dns(prefs: &[&str], ids: &[Identifier], how: &str) -> Result<()> {
    if prefs.contains(&"dns-01") || (prefs.is_empty() && ids.iter().any(Identifier::is_wildcard)) {
        return Ok(());
    }
    Err(CliError::usage(format!(
        "--manual in certfleet does dns-01 only: add {how} (for http-01 use --webroot or --standalone)"
    )))
}

fn required_file(path: &Option<PathBuf>, provider: &str) -> Result<PathBuf> {
    path.clone().ok_or_else(|| {
        CliError::usage(format!(
            "--dns-{provider} needs --dns-{provider}-credentials FILE (a certbot dns-{provider} ini, mode 0600; see README, dns-01)"
        ))
    })
}

fn conf_file(conf: &RenewalConf, key: &str) -> Result<PathBuf> {
    match conf.param_str(key).filter(|s| !s.is_empty()) {
        Some(p) => Ok(PathBuf::from(p)),
        None => Err(CliError::usage(format!(
            "the renewal conf names authenticator {} but has no {key}",
            conf.authenticator().unwrap_or_default()
        ))),
    }
}

fn conf_u64(conf: &RenewalConf, key: &str) -> Result<Option<u64>> {
    match conf.param_str(key).filter(|s| !s.is_empty()) {
        Some(s) => s.trim().parse().map(Some).map_err(|_| {
            CliError::usage(format!(
                "{key} = {s} in the renewal conf is not a number of seconds"
            ))
        }),
        None => Ok(None),
    }
}

/// certbot stores credentials paths made absolute.
fn absolute(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::super::AuthSpec;
    use super::*;
    use crate::args::{Cli, Command};

    fn ids(names: &[&str]) -> Vec<Identifier> {
        names.iter().map(|n| Identifier::dns(n).unwrap()).collect()
    }

    /// Parse `certfleet certonly ARGS` and build the AuthSpec as `certonly` does.
    fn from_argv(args: &[&str], names: &[&str]) -> Result<AuthSpec> {
        let argv = ["certfleet", "certonly"].iter().chain(args);
        let m = Cli::command().try_get_matches_from(argv).unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        let Command::Certonly(a) = cli.command else {
            unreachable!()
        };
        AuthSpec::from_args(&a, m.subcommand_matches("certonly").unwrap(), &ids(names))
    }

    /// record -> configobj text -> parse -> from_conf gives the same spec back.
    fn round_trip(spec: &AuthSpec, names: &[&str]) -> (String, AuthSpec) {
        let mut conf = RenewalConf::default();
        spec.record(&mut conf);
        let text = conf.to_text().unwrap();
        let back = RenewalConf::parse(&text, Path::new("x.conf")).unwrap();
        (text, AuthSpec::from_conf(&back, &ids(names)).unwrap())
    }

    #[test]
    fn rfc2136_flags_record_certbot_keys_and_round_trip() {
        let spec = from_argv(
            &[
                "--dns-rfc2136",
                "--dns-rfc2136-credentials",
                "/etc/letsencrypt/rfc2136.ini",
                "--dns-rfc2136-propagation-seconds",
                "5",
                "--dns-propagation-timeout",
                "30",
                "--dns-resolver",
                "127.0.0.1:5353",
            ],
            &["a.example.test"],
        )
        .unwrap();
        let (text, back) = round_trip(&spec, &["a.example.test"]);
        assert_eq!(back, spec);
        for line in [
            "authenticator = dns-rfc2136",
            "dns_rfc2136_credentials = /etc/letsencrypt/rfc2136.ini",
            "dns_rfc2136_propagation_seconds = 5",
            "pref_challs = dns-01,",
            "dns_propagation_timeout = 30",
            "dns_resolver = 127.0.0.1:5353",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
        }
    }

    #[test]
    fn cloudflare_and_hooks_round_trip() {
        let cf = from_argv(
            &["--dns-cloudflare", "--dns-cloudflare-credentials", "/root/cf.ini"],
            &["a.example.test"],
        )
        .unwrap();
        assert_eq!(round_trip(&cf, &["a.example.test"]).1, cf);
        let hooks = from_argv(
            &[
                "--manual",
                "--preferred-challenges",
                "dns",
                "--manual-auth-hook",
                "/usr/local/bin/auth 'x y'",
                "--manual-cleanup-hook",
                "/usr/local/bin/clean",
            ],
            &["a.example.test"],
        )
        .unwrap();
        let (text, back) = round_trip(&hooks, &["a.example.test"]);
        assert_eq!(back, hooks);
        assert!(text.contains("authenticator = manual\n"), "{text}");
        // configobj quoting, as certbot writes it.
        assert!(
            text.contains("manual_auth_hook = \"/usr/local/bin/auth 'x y'\"\n"),
            "{text}"
        );
    }

    #[test]
    fn certbot_written_manual_conf_is_read() {
        let text = "version = 2.1.0\n[renewalparams]\nauthenticator = manual\naccount = abc\n\
                    manual_auth_hook = /a.sh\nmanual_cleanup_hook = /c.sh\npref_challs = dns-01,\n";
        let conf = RenewalConf::parse(text, Path::new("x.conf")).unwrap();
        let AuthSpec::Dns(d) = AuthSpec::from_conf(&conf, &ids(&["a.example.test"])).unwrap() else {
            panic!("not dns")
        };
        assert_eq!(
            d.provider,
            DnsProvider::Hooks {
                auth_hook: "/a.sh".into(),
                cleanup_hook: Some("/c.sh".into())
            }
        );
        // certbot manual http-01 (no pref_challs): refused, not silently switched to dns-01.
        let http = "[renewalparams]\nauthenticator = manual\nmanual_auth_hook = /a.sh\n";
        let conf = RenewalConf::parse(http, Path::new("x.conf")).unwrap();
        let e = AuthSpec::from_conf(&conf, &ids(&["a.example.test"])).unwrap_err();
        assert!(e.message.contains("dns-01 only"), "{}", e.message);
    }

    #[test]
    fn flag_mistakes_are_explained() {
        let e = from_argv(&["--dns-rfc2136"], &["a.example.test"]).unwrap_err();
        assert!(
            e.message.contains("--dns-rfc2136-credentials FILE"),
            "{}",
            e.message
        );
        let e = from_argv(&["--manual", "--manual-auth-hook", "x"], &["a.example.test"]).unwrap_err();
        assert!(e.message.contains("--preferred-challenges dns"), "{}", e.message);
        // A wildcard implies dns-01, as with certbot.
        assert!(from_argv(&["--manual", "--manual-auth-hook", "x"], &["*.a.example.test"]).is_ok());
        let e = from_argv(
            &["--manual", "--preferred-challenges", "dns", "-n"],
            &["a.example.test"],
        )
        .unwrap_err();
        assert!(e.message.contains("--manual-auth-hook CMD"), "{}", e.message);
        let e = from_argv(
            &[
                "--manual",
                "--preferred-challenges",
                "dns",
                "--manual-cleanup-hook",
                "c",
            ],
            &["a.example.test"],
        )
        .unwrap_err();
        assert!(e.message.contains("needs --manual-auth-hook"), "{}", e.message);
        let e = from_argv(
            &["--webroot", "-w", "/x", "--preferred-challenges", "dns"],
            &["a.example.test"],
        )
        .unwrap_err();
        assert!(e.message.contains("--dns-rfc2136"), "{}", e.message);
        let e = from_argv(
            &[
                "--dns-rfc2136",
                "--dns-rfc2136-credentials",
                "f",
                "--preferred-challenges",
                "http",
            ],
            &["a.example.test"],
        )
        .unwrap_err();
        assert!(e.message.contains("only does dns-01"), "{}", e.message);
        let e = from_argv(
            &["--manual", "--preferred-challenges", "dns-02"],
            &["a.example.test"],
        )
        .unwrap_err();
        assert!(e.message.contains("dns-02"), "{}", e.message);
    }

    #[test]
    fn switching_back_to_webroot_drops_the_dns_preference() {
        let mut conf = RenewalConf::default();
        AuthSpec::Dns(DnsAuth {
            provider: DnsProvider::Manual,
            propagation_seconds: None,
            propagation_timeout: None,
            resolver: None,
        })
        .record(&mut conf);
        assert_eq!(conf.pref_challs(), vec!["dns-01"]);
        AuthSpec::Standalone {
            address: String::new(),
            port: 80,
        }
        .record(&mut conf);
        assert!(conf.pref_challs().is_empty());
        assert_eq!(conf.authenticator(), Some("standalone"));
    }
}
