//! What certbot's flags on `renew` do in certfleet: each one that sets a renewal setting
//! becomes an override of every lineage's `[renewalparams]` for this run (saved with a
//! successful renewal, as certbot saves what a renewal used); the others are accepted with a
//! debug line saying why they have no effect, or refused where certbot refuses them too.

use std::collections::BTreeMap;

use certfleet_engine::authenticator::dns::preferred_challenges;
use certfleet_engine::overrides::ConfOverrides;

use crate::args_certbot::{CompatArgs, PluginArgs, RenewAuthArgs};
use crate::error::{CliError, Result};

/// `renew`'s overrides from its certbot flags.
pub fn renew_overrides(r: &RenewAuthArgs, p: &PluginArgs, c: &CompatArgs) -> Result<ConfOverrides> {
    if !r.domains.is_empty() {
        return Err(CliError::usage(
            "renew renews every lineage that is due, or the ones given with --cert-name; for a certificate \
             with particular names use certonly -d (certbot refuses -d with renew too)",
        ));
    }
    if r.csr.is_some() {
        return Err(CliError::usage("--csr works with certonly only (as in certbot)"));
    }
    let mut o = ConfOverrides::default();
    compat(c, &mut o)?;
    for (flag, on) in [
        ("--expand", r.expand),
        ("--keep-until-expiring", r.keep_until_expiring),
        ("--cert-path", r.cert_path.is_some()),
        ("--key-path", r.key_path.is_some()),
        ("--fullchain-path", r.fullchain_path.is_some()),
        ("--chain-path", r.chain_path.is_some()),
    ] {
        if on {
            tracing::debug!("{flag} has no effect on renew: each lineage keeps its names and paths");
        }
    }

    // The authenticator (and installer) first.
    let plugin = |o: &mut ConfOverrides, name: &str| {
        o.set("authenticator", name);
        if name == "nginx" || name == "apache" {
            o.set("installer", name);
        }
    };
    if r.webroot {
        plugin(&mut o, "webroot");
    }
    if r.standalone {
        plugin(&mut o, "standalone");
    }
    if r.manual {
        plugin(&mut o, "manual");
    }
    if p.nginx {
        plugin(&mut o, "nginx");
    }
    if p.apache {
        plugin(&mut o, "apache");
    }
    if let Some(d) = r.dns_providers.chosen() {
        plugin(&mut o, d.provider.authenticator);
    }
    if let Some(a) = &c.authenticator {
        o.set("authenticator", a.clone());
    }
    if let Some(i) = &c.installer {
        o.set("installer", i.clone());
    }
    if let Some(both) = &c.configurator {
        o.set("authenticator", both.clone());
        o.set("installer", both.clone());
    }

    if !r.webroot_path.is_empty() {
        let roots: Vec<String> = r
            .webroot_path
            .iter()
            .map(|w| {
                std::path::absolute(w)
                    .unwrap_or_else(|_| w.clone())
                    .display()
                    .to_string()
            })
            .collect();
        o.set("webroot_path", roots);
        // A new -w serves every name (certbot would keep the old per-name map, so the flag
        // would do nothing for names in it).
        if c.webroot_map.is_none() {
            o.remove("webroot_map");
        }
    }
    if let Some(a) = &r.http01_address {
        o.set("http01_address", a.clone());
    }
    if let Some(port) = r.http01_port {
        o.set("http01_port", port.to_string());
    }
    if let Some(h) = &r.manual_auth_hook {
        o.set("manual_auth_hook", h.clone());
    }
    if let Some(h) = &r.manual_cleanup_hook {
        o.set("manual_cleanup_hook", h.clone());
    }
    if !r.preferred_challenges.is_empty() {
        let prefs = preferred_challenges(&r.preferred_challenges)?;
        o.set(
            "pref_challs",
            prefs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        );
    }
    for d in &r.dns_providers.providers {
        if let Some(f) = &d.credentials {
            let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
            o.set(d.provider.credentials_key, abs.display().to_string());
        }
        if let Some(s) = d.propagation_seconds {
            o.set(d.provider.propagation_seconds_key, s.to_string());
        }
    }
    if let Some(k) = &r.key_type {
        o.set("key_type", k.clone());
    }
    if let Some(c) = &r.elliptic_curve {
        o.set("elliptic_curve", c.clone());
    }
    if let Some(b) = &r.rsa_key_size {
        o.set("rsa_key_size", b.clone());
        // certbot: --rsa-key-size alone means an RSA key.
        if r.key_type.is_none() && r.elliptic_curve.is_none() {
            o.set("key_type", "rsa");
        }
    }
    if r.reuse_key {
        o.set("reuse_key", "True");
    }
    if r.no_reuse_key {
        o.set("reuse_key", "False");
    }
    if let Some(ch) = &r.preferred_chain {
        o.set("preferred_chain", ch.clone());
    }
    for (k, v) in p.conf_keys() {
        o.set(k, v);
    }
    Ok(o)
}

/// The flags `certonly` and `renew` share: what to record, warn about or ignore.
pub fn compat(c: &CompatArgs, o: &mut ConfOverrides) -> Result<()> {
    if let Some(name) = &c.other_dns.chosen {
        return Err(other_dns(name));
    }
    if let Some(a) = c.authenticator.as_deref().filter(|a| a.starts_with("dns-"))
        && certfleet_solvers::dns::registry::by_authenticator(a).is_none()
    {
        return Err(other_dns(a));
    }
    for (flag, why) in c.without_effect() {
        tracing::debug!("{flag} is accepted for certbot compatibility and has no effect: {why}");
    }
    if c.no_verify_ssl {
        tracing::warn!(
            "--no-verify-ssl is not honoured: certfleet always verifies the CA's certificate; give a private \
             CA's root with --ca-bundle FILE (or REQUESTS_CA_BUNDLE)"
        );
    }
    if c.must_staple {
        tracing::warn!(
            "--must-staple: Let's Encrypt no longer issues OCSP Must-Staple certificates (it stopped in 2025 \
             and refuses such orders), so certfleet requests certificates without the extension"
        );
        o.set("must_staple", "True");
    }
    if c.allow_subset_of_names {
        tracing::warn!(
            "--allow-subset-of-names is recorded for certbot, but certfleet needs every name validated: a name \
             that fails makes the renewal fail (remove it with certonly --cert-name NAME -d ...)"
        );
        o.set("allow_subset_of_names", "True");
    }
    if c.no_autorenew {
        o.set("autorenew", "False");
    }
    o.new_key = c.new_key;
    if let Some(json) = &c.webroot_map {
        o.webroot_map = Some(webroot_map(json)?);
    }
    Ok(())
}

fn other_dns(name: &str) -> CliError {
    CliError::usage(format!(
        "certfleet has no {name} plugin; use {}, or --manual --preferred-challenges dns with \
         --manual-auth-hook scripts that call your DNS provider's API",
        certfleet_solvers::dns::registry::flags(", ")
    ))
}

/// certbot's `--webroot-map` JSON: `{"a.example.com,www.a.example.com": "/var/www/a"}`.
pub fn webroot_map(json: &str) -> Result<Vec<(String, String)>> {
    let map: BTreeMap<String, String> = serde_json::from_str(json).map_err(|e| {
        CliError::usage(format!(
            "--webroot-map must be a JSON object of names to webroots, e.g. '{{\"example.com,www.example.com\": \"/var/www/html\"}}': {e}"
        ))
    })?;
    let mut out = Vec::new();
    for (names, root) in map {
        for n in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let id = certfleet_core::Identifier::dns(n).map_err(|e| CliError::usage(e.to_string()))?;
            out.push((id.value(), root.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use crate::args::{Cli, Command};

    use super::*;

    fn renew(args: &[&str]) -> Result<ConfOverrides> {
        let argv = ["certfleet", "renew"].iter().chain(args);
        let m = Cli::command()
            .args_override_self(true)
            .try_get_matches_from(argv)
            .map_err(|e| CliError::usage(e.to_string()))?;
        let Command::Renew(a) = Cli::from_arg_matches(&m).unwrap().command else {
            unreachable!()
        };
        renew_overrides(&a.auth, &a.plugins, &a.compat)
    }

    fn get(o: &ConfOverrides, k: &str) -> Option<String> {
        o.params
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .and_then(|(_, v)| v.as_ref().and_then(|v| v.as_str()).map(str::to_string))
    }

    /// Every flag of certbot 2.1's `renew` parses (the list from `certbot --help all`).
    #[test]
    fn certbots_renew_flags_parse() {
        let all: &[&[&str]] = &[
            &["--http-01-port", "8080"],
            &["--http-01-address", "127.0.0.1"],
            &["--webroot", "-w", "/var/www"],
            &["--webroot-path", "/var/www"],
            &["--standalone"],
            &[
                "--nginx",
                "--nginx-server-root",
                "/etc/nginx",
                "--nginx-ctl",
                "nginx",
                "--nginx-sleep-seconds",
                "2",
            ],
            &[
                "--apache",
                "--apache-server-root",
                "/etc/apache2",
                "--apache-ctl",
                "apache2ctl",
            ],
            &[
                "--apache-enmod",
                "a2enmod",
                "--apache-dismod",
                "a2dismod",
                "--apache-le-vhost-ext",
                "-le-ssl.conf",
            ],
            &[
                "--apache-vhost-root",
                "/x",
                "--apache-logs-root",
                "/y",
                "--apache-challenge-location",
                "/z",
            ],
            &[
                "--apache-handle-modules",
                "True",
                "--apache-handle-sites",
                "True",
                "--apache-bin",
                "apache2",
            ],
            &[
                "--manual",
                "--manual-auth-hook",
                "a",
                "--manual-cleanup-hook",
                "c",
            ],
            &["--preferred-challenges", "http,dns"],
            &["--key-type", "rsa", "--rsa-key-size", "4096"],
            &["--elliptic-curve", "secp384r1"],
            &["--reuse-key"],
            &["--no-reuse-key"],
            &["--new-key"],
            &["--allow-subset-of-names"],
            &["-q"],
            &["--quiet"],
            &["--max-log-backups", "0"],
            &["--email", "a@example.com", "--agree-tos", "-m", "b@example.com"],
            &["--no-verify-ssl"],
            &[
                "--dns-rfc2136",
                "--dns-rfc2136-credentials",
                "/x.ini",
                "--dns-rfc2136-propagation-seconds",
                "5",
            ],
            &["--dns-cloudflare", "--dns-cloudflare-credentials", "/cf.ini"],
            &["--preferred-chain", "ISRG Root X1"],
            &["--must-staple"],
            &["--no-autorenew"],
            &["--user-agent", "x", "--user-agent-comment", "y"],
            &[
                "--debug",
                "--debug-challenges",
                "--issuance-timeout",
                "90",
                "--force-interactive",
            ],
            &[
                "--redirect",
                "--hsts",
                "--uir",
                "--staple-ocsp",
                "--auto-hsts",
                "--strict-permissions",
            ],
            &["--no-redirect"],
            &[
                "--https-port",
                "443",
                "--break-my-certs",
                "--disable-hook-validation",
                "--disable-renew-updates",
            ],
            &["--eff-email"],
            &["--no-eff-email"],
            &[
                "--duplicate",
                "--renew-with-new-domains",
                "--expand",
                "--keep-until-expiring",
            ],
            &["-a", "webroot", "-i", "nginx"],
            &["--authenticator", "standalone", "--installer", "apache"],
            &["--configurator", "nginx"],
            &["--webroot-map", "{\"a.example.com\": \"/w\"}"],
            &[
                "--no-random-sleep-on-renew",
                "--no-directory-hooks",
                "--pre-hook",
                "x",
                "--post-hook",
                "y",
                "--deploy-hook",
                "z",
            ],
            &[
                "--cert-name",
                "a",
                "--dry-run",
                "--force-renewal",
                "--renew-by-default",
            ],
            &[
                "--server",
                "https://x/dir",
                "--account",
                "abc",
                "--eab-kid",
                "k",
                "--eab-hmac-key",
                "h",
            ],
            &[
                "--register-unsafely-without-email",
                "-n",
                "-v",
                "--config-dir",
                "/c",
                "--work-dir",
                "/w",
                "--logs-dir",
                "/l",
            ],
            &[
                "--cert-path",
                "/c",
                "--key-path",
                "/k",
                "--fullchain-path",
                "/f",
                "--chain-path",
                "/ch",
            ],
            &["--test-cert"],
            &["--staging"],
        ];
        for args in all {
            renew(args).unwrap_or_else(|e| panic!("renew {args:?}: {}", e.message));
        }
    }

    #[test]
    fn flags_become_overrides() {
        let o = renew(&["--http-01-port", "8080"]).unwrap();
        assert_eq!(get(&o, "http01_port").as_deref(), Some("8080"));
        let o = renew(&["--nginx", "--nginx-server-root", "/srv/n"]).unwrap();
        assert_eq!(get(&o, "authenticator").as_deref(), Some("nginx"));
        assert_eq!(get(&o, "installer").as_deref(), Some("nginx"));
        assert_eq!(get(&o, "nginx_server_root").as_deref(), Some("/srv/n"));
        let o = renew(&["--webroot", "-w", "/srv/w"]).unwrap();
        assert_eq!(get(&o, "authenticator").as_deref(), Some("webroot"));
        assert!(o.params.iter().any(|(k, v)| k == "webroot_map" && v.is_none()));
        let o = renew(&["--rsa-key-size", "4096"]).unwrap();
        assert_eq!(get(&o, "key_type").as_deref(), Some("rsa"));
        let o = renew(&["--preferred-challenges", "http"]).unwrap();
        assert!(o.params.iter().any(|(k, _)| k == "pref_challs"));
        let o = renew(&["--new-key", "--no-reuse-key"]).unwrap();
        assert!(o.new_key);
        assert_eq!(get(&o, "reuse_key").as_deref(), Some("False"));
        let o = renew(&["--must-staple"]).unwrap();
        assert_eq!(get(&o, "must_staple").as_deref(), Some("True"));
        assert!(renew(&["-q", "--max-log-backups", "3"]).unwrap().is_empty());
    }

    #[test]
    fn refusals_say_what_to_do() {
        let e = renew(&["-d", "a.example.com"]).unwrap_err();
        assert!(e.message.contains("certonly"), "{}", e.message);
        let e = renew(&["--dns-route53"]).unwrap_err();
        assert!(e.message.contains("no dns-route53 plugin"), "{}", e.message);
        let e = renew(&["-a", "dns-ovh"]).unwrap_err();
        assert!(e.message.contains("no dns-ovh plugin"), "{}", e.message);
        let e = renew(&["--webroot-map", "[1]"]).unwrap_err();
        assert!(e.message.contains("--webroot-map"), "{}", e.message);
    }
}
