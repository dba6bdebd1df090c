//! The dns-01 authenticators of [`super::AuthSpec`]: every provider of the solvers'
//! [`registry`] (certbot's `dns-<name>` plugins) and `manual` (with or without hooks), their
//! `[renewalparams]` keys, and the [`Dns01Solver`] they build.
//!
//! Renewal conf keys, as certbot writes them (so certbot can renew our lineages and we can
//! renew certbot's):
//! - `authenticator = dns-<name>`, `dns_<name>_credentials`, `dns_<name>_propagation_seconds`
//!   for each registered provider (`dns-rfc2136`, `dns-cloudflare`, ...);
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
use certfleet_solvers::dns::{Dns01Config, Dns01Solver, ProviderConfig, registry};
use certfleet_store::RenewalConf;

use crate::EngineError;

/// Default propagation timeout (`--dns-propagation-timeout`).
const DEFAULT_TIMEOUT_SECS: u64 = 120;

/// A dns-01 authenticator and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAuth {
    pub provider: ProviderConfig,
    /// certbot's `--dns-<provider>-propagation-seconds`: a minimum wait.
    pub propagation_seconds: Option<u64>,
    /// `--dns-propagation-timeout` (None: 120 s; 0: no check).
    pub propagation_timeout: Option<u64>,
    /// `--dns-resolver`.
    pub resolver: Option<SocketAddr>,
}

/// certbot's `--preferred-challenges`: comma-separated, `dns`/`http` short forms.
pub fn preferred_challenges(raw: &[String]) -> Result<Vec<&'static str>, EngineError> {
    let mut out = Vec::new();
    for part in raw.iter().flat_map(|r| r.split(',')).map(str::trim) {
        let kind = match part.to_ascii_lowercase().as_str() {
            "" => continue,
            "dns" | "dns-01" => "dns-01",
            "http" | "http-01" => "http-01",
            "tls-alpn" | "tls-alpn-01" => "tls-alpn-01",
            other => {
                return Err(EngineError::config(format!(
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

/// `--dns-rfc2136, --dns-cloudflare or --manual`: every dns-01 choice, for messages.
pub fn dns_choices() -> String {
    format!("{} or --manual", registry::flags(", "))
}

impl DnsAuth {
    /// From `[renewalparams]`; None when the authenticator is not a dns-01 one.
    pub fn from_conf(conf: &RenewalConf, ids: &[Identifier]) -> Result<Option<Self>, EngineError> {
        let (provider, seconds_key) = match conf.authenticator() {
            Some("manual") => {
                let prefs = preferred_challenges(&conf.pref_challs())?;
                manual_wants_dns(&prefs, ids, "pref_challs = dns-01, in the renewal conf")?;
                let provider = match conf.manual_auth_hook().filter(|h| !h.is_empty()) {
                    Some(auth) => ProviderConfig::Hooks {
                        auth_hook: auth.to_string(),
                        cleanup_hook: conf
                            .manual_cleanup_hook()
                            .filter(|h| !h.is_empty())
                            .map(str::to_string),
                    },
                    None => ProviderConfig::Manual,
                };
                (provider, None)
            }
            Some(name) => match registry::by_authenticator(name) {
                Some(reg) => (
                    ProviderConfig::Registered {
                        provider: reg,
                        credentials: conf_file(conf, reg.credentials_key)?,
                    },
                    Some(reg.propagation_seconds_key),
                ),
                None => return Ok(None),
            },
            None => return Ok(None),
        };
        let propagation_seconds = match seconds_key {
            Some(k) => conf_u64(conf, k)?,
            None => None,
        };
        let resolver = match conf.param_str("dns_resolver").filter(|s| !s.is_empty()) {
            Some(s) => Some(s.parse().map_err(|_| {
                EngineError::config(format!(
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
        for p in registry::PROVIDERS {
            conf.remove_param(p.credentials_key);
            conf.remove_param(p.propagation_seconds_key);
        }
        for k in [
            "manual_auth_hook",
            "manual_cleanup_hook",
            "dns_propagation_timeout",
            "dns_resolver",
        ] {
            conf.remove_param(k);
        }
        let seconds_key = match &self.provider {
            ProviderConfig::Hooks {
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
            ProviderConfig::Manual => {
                conf.set_param("authenticator", "manual");
                None
            }
            registered => {
                let (reg, credentials) = registered.registered().expect("a registered provider");
                conf.set_param("authenticator", reg.authenticator);
                conf.set_param(reg.credentials_key, absolute(credentials));
                Some(reg.propagation_seconds_key)
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
    pub fn solver(&self, work_dir: &Path) -> Result<Dns01Solver, EngineError> {
        if self.provider == ProviderConfig::Manual && !std::io::stdin().is_terminal() {
            return Err(manual_needs_terminal());
        }
        let mut cfg = Dns01Config::new(self.provider.clone());
        let timeout = self.propagation_timeout.unwrap_or(DEFAULT_TIMEOUT_SECS);
        cfg.check_propagation = timeout > 0;
        cfg.propagation_timeout = Duration::from_secs(timeout);
        cfg.min_wait = Duration::from_secs(self.propagation_seconds.unwrap_or(0));
        cfg.resolver = self.resolver;
        // Records a crashed run left behind are found here and removed by the next run.
        cfg.state_dir = Some(work_dir.to_path_buf());
        Dns01Solver::from_config(&cfg).map_err(|e| EngineError::Solver(e.into()))
    }
}

/// `--manual` without hooks where nobody can answer.
pub fn manual_needs_terminal() -> EngineError {
    EngineError::config(format!(
        "--manual without --manual-auth-hook asks you to create DNS records by hand and needs a terminal; \
         with --non-interactive or no terminal, pass --manual-auth-hook CMD (and --manual-cleanup-hook CMD), \
         or use {}",
        registry::flags(" / ")
    ))
}

/// certfleet's manual mode does dns-01 only: make sure that is what was asked for. Without a
/// preference certbot would pick http-01 unless a name is a wildcard.
pub fn manual_wants_dns(prefs: &[&str], ids: &[Identifier], how: &str) -> Result<(), EngineError> {
    if prefs.contains(&"dns-01") || (prefs.is_empty() && ids.iter().any(Identifier::is_wildcard)) {
        return Ok(());
    }
    Err(EngineError::config(format!(
        "--manual in certfleet does dns-01 only: add {how} (for http-01 use --webroot or --standalone)"
    )))
}

fn conf_file(conf: &RenewalConf, key: &str) -> Result<PathBuf, EngineError> {
    match conf.param_str(key).filter(|s| !s.is_empty()) {
        Some(p) => Ok(PathBuf::from(p)),
        None => Err(EngineError::config(format!(
            "the renewal conf names authenticator {} but has no {key}",
            conf.authenticator().unwrap_or_default()
        ))),
    }
}

fn conf_u64(conf: &RenewalConf, key: &str) -> Result<Option<u64>, EngineError> {
    match conf.param_str(key).filter(|s| !s.is_empty()) {
        Some(s) => s.trim().parse().map(Some).map_err(|_| {
            EngineError::config(format!(
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
    use super::super::AuthSpec;
    use super::*;

    fn ids(names: &[&str]) -> Vec<Identifier> {
        names.iter().map(|n| Identifier::dns(n).unwrap()).collect()
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
            ProviderConfig::Hooks {
                auth_hook: "/a.sh".into(),
                cleanup_hook: Some("/c.sh".into())
            }
        );
        // certbot manual without pref_challs is http-01 (see http.rs), not dns-01.
        let http = "[renewalparams]\nauthenticator = manual\nmanual_auth_hook = /a.sh\n";
        let conf = RenewalConf::parse(http, Path::new("x.conf")).unwrap();
        let spec = AuthSpec::from_conf(&conf, &ids(&["a.example.test"])).unwrap();
        assert!(matches!(spec, AuthSpec::ManualHttp { .. }), "{spec:?}");
    }

    #[test]
    fn switching_back_to_webroot_drops_the_dns_preference() {
        let mut conf = RenewalConf::default();
        AuthSpec::Dns(DnsAuth {
            provider: ProviderConfig::Manual,
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

    /// Every registered provider round-trips through its certbot keys.
    #[test]
    fn every_registered_provider_round_trips() {
        for reg in registry::PROVIDERS {
            let spec = AuthSpec::Dns(DnsAuth {
                provider: ProviderConfig::Registered {
                    provider: reg,
                    credentials: "/etc/letsencrypt/x.ini".into(),
                },
                propagation_seconds: Some(7),
                propagation_timeout: None,
                resolver: None,
            });
            let mut conf = RenewalConf::default();
            spec.record(&mut conf);
            let text = conf.to_text().unwrap();
            assert!(
                text.contains(&format!("authenticator = {}\n", reg.authenticator)),
                "{text}"
            );
            assert!(
                text.contains(&format!("{} = 7\n", reg.propagation_seconds_key)),
                "{text}"
            );
            let back = RenewalConf::parse(&text, Path::new("x.conf")).unwrap();
            assert_eq!(
                AuthSpec::from_conf(&back, &ids(&["a.example.test"])).unwrap(),
                spec
            );
        }
    }
}
