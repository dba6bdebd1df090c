//! How `certonly`'s flags choose an authenticator: the engine's [`AuthSpec`], built from the
//! command line (the engine records it in the renewal conf and rebuilds it from there).

use std::collections::BTreeMap;
use std::path::PathBuf;

use certfleet_core::Identifier;
use certfleet_engine::authenticator::AuthSpec;
use certfleet_engine::authenticator::dns::{dns_choices, preferred_challenges};

use crate::args::CertonlyArgs;
use crate::error::{CliError, Result};

mod dns;

/// The authenticator `certonly`'s flags ask for.
pub fn from_args(a: &CertonlyArgs, m: &clap::ArgMatches, ids: &[Identifier]) -> Result<AuthSpec> {
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
    if a.standalone {
        return Ok(AuthSpec::Standalone {
            address: a.http01_address.clone(),
            port: a.http01_port,
        });
    }
    if a.webroot || !a.webroot_path.is_empty() {
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
    if a.webroot_path.is_empty() {
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
    for (raw, idx) in a.domains.iter().zip(d_idx) {
        let pos = w_idx.iter().rposition(|&w| w < idx).unwrap_or(0);
        let root = a.webroot_path[pos].clone();
        for part in raw.split(',').filter(|p| !p.trim().is_empty()) {
            let id = Identifier::dns(part).map_err(|e| CliError::usage(e.to_string()))?;
            map.entry(id.value()).or_insert_with(|| root.clone());
        }
    }
    for id in ids {
        map.entry(id.value()).or_insert_with(|| a.webroot_path[0].clone());
    }
    Ok(map)
}
