//! `certonly`'s dns-01 flags: `--dns-<provider>` for every provider of the DNS registry
//! (flags generated from it, see [`crate::args::DnsProviderArgs`]), and `--manual` with or
//! without hooks; turned into the engine's [`DnsAuth`].

use std::path::PathBuf;

use certfleet_core::Identifier;
use certfleet_engine::authenticator::DnsAuth;
use certfleet_engine::authenticator::dns::{manual_needs_terminal, manual_wants_dns, preferred_challenges};
use certfleet_solvers::dns::{ProviderConfig, Registration};

use crate::args::CertonlyArgs;
use crate::error::{CliError, Result};

/// From `certonly` flags; None when no dns-01 authenticator was chosen.
pub fn from_args(a: &CertonlyArgs, m: &clap::ArgMatches, ids: &[Identifier]) -> Result<Option<DnsAuth>> {
    let prefs = preferred_challenges(&a.preferred_challenges)?;
    let (provider, propagation_seconds) = if let Some(p) = a.dns_providers.chosen() {
        let credentials = required_file(&p.credentials, p.provider)?;
        (
            ProviderConfig::Registered {
                provider: p.provider,
                credentials,
            },
            p.propagation_seconds,
        )
    } else if a.manual {
        manual_wants_dns(&prefs, ids, "--preferred-challenges dns")?;
        let provider = match (&a.manual_auth_hook, &a.manual_cleanup_hook) {
            (Some(auth), cleanup) => ProviderConfig::Hooks {
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
                    return Err(manual_needs_terminal().into());
                }
                ProviderConfig::Manual
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

fn required_file(path: &Option<PathBuf>, p: &Registration) -> Result<PathBuf> {
    path.clone().ok_or_else(|| {
        CliError::usage(format!(
            "--{} needs --{} FILE (a certbot {} ini, mode 0600; see README, dns-01)",
            p.flag, p.credentials_flag, p.authenticator
        ))
    })
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use std::path::Path;

    use certfleet_engine::authenticator::AuthSpec;
    use certfleet_store::RenewalConf;

    use super::*;

    use crate::args::{Cli, Command};

    fn ids(names: &[&str]) -> Vec<Identifier> {
        names.iter().map(|n| Identifier::dns(n).unwrap()).collect()
    }

    /// Parse `certfleet certonly ARGS` and build the AuthSpec as `certonly` does.
    fn from_argv(args: &[&str], names: &[&str]) -> crate::error::Result<AuthSpec> {
        let argv = ["certfleet", "certonly"].iter().chain(args);
        let m = Cli::command().try_get_matches_from(argv).unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        let Command::Certonly(a) = cli.command else {
            unreachable!()
        };
        super::super::from_args(&a, m.subcommand_matches("certonly").unwrap(), &ids(names))
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
    fn flag_mistakes_are_explained() {
        let e = from_argv(&["--dns-rfc2136"], &["a.example.test"]).unwrap_err();
        assert!(
            e.message.contains("--dns-rfc2136-credentials FILE"),
            "{}",
            e.message
        );
        // --manual without a preference is http-01, as in certbot (hooks required).
        assert!(matches!(
            from_argv(&["--manual", "--manual-auth-hook", "x"], &["a.example.test"]),
            Ok(AuthSpec::ManualHttp { .. })
        ));
        let e = from_argv(&["--manual", "-n"], &["a.example.test"]).unwrap_err();
        assert!(e.message.contains("--manual-auth-hook CMD"), "{}", e.message);
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
}
