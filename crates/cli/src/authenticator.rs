//! How `certonly`'s flags choose an authenticator: the engine's [`AuthSpec`], built from the
//! command line (the engine records it in the renewal conf and rebuilds it from there).

use std::collections::BTreeMap;
use std::path::PathBuf;

use certfleet_core::Identifier;
use certfleet_engine::authenticator::AuthSpec;
use certfleet_engine::authenticator::dns::{dns_choices, preferred_challenges};
use certfleet_engine::authenticator::http::{manual_challenge, manual_http_needs_hook};
use certfleet_solvers::webserver::apache::ApacheOptions;
use certfleet_solvers::webserver::nginx::NginxOptions;

use crate::args::CertonlyArgs;
use crate::error::{CliError, Result};

mod dns;

/// The authenticator `certonly`'s flags ask for.
pub fn from_args(a: &CertonlyArgs, m: &clap::ArgMatches, ids: &[Identifier]) -> Result<AuthSpec> {
    // certbot's -a NAME / --configurator NAME, for the plugins that take no other flag.
    let named = a
        .compat
        .configurator
        .as_deref()
        .or(a.compat.authenticator.as_deref());
    let named_is = |n: &str| named == Some(n);
    match named {
        None | Some("nginx" | "apache" | "webroot" | "standalone") => {}
        Some(other) => {
            return Err(CliError::usage(format!(
                "-a/--authenticator {other}: give certfleet's flag for it instead (--webroot, --standalone, \
                 --nginx, --apache, --manual, {})",
                dns_choices()
            )));
        }
    }
    if a.plugins.nginx || named_is("nginx") {
        let d = NginxOptions::default();
        return Ok(AuthSpec::Nginx(NginxOptions {
            server_root: a.plugins.nginx_server_root.clone().unwrap_or(d.server_root),
            ctl: a.plugins.nginx_ctl.clone().unwrap_or(d.ctl),
            http01_port: a.http01_port,
        }));
    }
    if a.plugins.apache || named_is("apache") {
        let d = ApacheOptions::default();
        return Ok(AuthSpec::Apache(ApacheOptions {
            server_root: a.plugins.apache_server_root.clone().unwrap_or(d.server_root),
            ctl: a.plugins.apache_ctl.clone().unwrap_or(d.ctl),
            http01_port: a.http01_port,
        }));
    }
    if a.manual
        && a.dns_providers.chosen().is_none()
        && manual_challenge(&preferred_challenges(&a.preferred_challenges)?, ids) == "http-01"
    {
        return match &a.manual_auth_hook {
            Some(auth) => Ok(AuthSpec::ManualHttp {
                auth_hook: auth.clone(),
                cleanup_hook: a.manual_cleanup_hook.clone(),
            }),
            None => Err(manual_http_needs_hook().into()),
        };
    }
    if a.tls_alpn_01 {
        return Ok(AuthSpec::TlsAlpn {
            address: a.tls_alpn01_address.clone(),
            port: a.tls_alpn01_port,
        });
    }
    if let Some(d) = dns::from_args(a, m, ids)? {
        return Ok(AuthSpec::Dns(d));
    }
    if !a.preferred_challenges.is_empty()
        && !preferred_challenges(&a.preferred_challenges)?.contains(&"http-01")
    {
        return Err(CliError::usage(format!(
            "--preferred-challenges without http: dns-01 needs {}",
            dns_choices()
        )));
    }
    if a.standalone || named_is("standalone") {
        return Ok(AuthSpec::Standalone {
            address: a.http01_address.clone(),
            port: a.http01_port,
        });
    }
    if a.webroot || !a.webroot_path.is_empty() || named_is("webroot") || a.compat.webroot_map.is_some() {
        return Ok(AuthSpec::Webroot(webroot_map(a, m, ids)?));
    }
    Err(CliError::usage(format!(
        "choose how to prove control of the names: --webroot -w /var/www/html, --standalone (port 80 free), \
             or dns-01 with {}",
        dns_choices()
    )))
}

/// certbot's -w/-d pairing: each -d uses the last -w given before it; -d flags before any
/// -w use the first -w.
fn webroot_map(
    a: &CertonlyArgs,
    m: &clap::ArgMatches,
    ids: &[Identifier],
) -> Result<BTreeMap<String, PathBuf>> {
    // certbot's --webroot-map takes precedence over -w/-d pairs.
    let extra = match &a.compat.webroot_map {
        Some(json) => crate::overrides::webroot_map(json)?,
        None => vec![],
    };
    if a.webroot_path.is_empty() && extra.is_empty() {
        return Err(CliError::usage(
            "--webroot needs a document root: -w /var/www/html (before the -d flags it serves)",
        ));
    }
    let w_idx: Vec<usize> = m
        .indices_of("webroot_path")
        .map(|i| i.collect())
        .unwrap_or_default();
    let d_idx: Vec<usize> = m.indices_of("domains").map(|i| i.collect()).unwrap_or_default();
    let mut map = BTreeMap::new();
    for (raw, idx) in a.domains.iter().zip(d_idx).filter(|_| !a.webroot_path.is_empty()) {
        let pos = w_idx.iter().rposition(|&w| w < idx).unwrap_or(0);
        let root = a.webroot_path[pos].clone();
        for part in raw.split(',').filter(|p| !p.trim().is_empty()) {
            let id = Identifier::dns(part).map_err(|e| CliError::usage(e.to_string()))?;
            map.entry(id.value()).or_insert_with(|| root.clone());
        }
    }
    for (name, root) in extra {
        map.insert(name, PathBuf::from(root));
    }
    for id in ids {
        match a.webroot_path.first() {
            Some(first) => {
                map.entry(id.value()).or_insert_with(|| first.clone());
            }
            None if !map.contains_key(&id.value()) => {
                return Err(CliError::usage(format!(
                    "--webroot-map names no webroot for {id}"
                )));
            }
            None => {}
        }
    }
    Ok(map)
}
