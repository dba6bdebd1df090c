//! How a lineage proves control of its names: built from the command line for `certonly`,
//! recorded in the renewal conf (certbot's keys), and rebuilt from that conf by `renew`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use certfleet_core::Identifier;
use certfleet_solvers::Solver;
use certfleet_solvers::http01::{Standalone, Webroot};
use certfleet_store::RenewalConf;

use crate::args::CertonlyArgs;
use crate::error::{CliError, Result};

mod tls_alpn;

mod dns;
pub use dns::DnsAuth;

/// Where solvers may keep state between runs (e.g. dns-01 records to clean after a crash).
pub struct SolverContext {
    pub work_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSpec {
    /// Domain -> document root.
    Webroot(BTreeMap<String, PathBuf>),
    Standalone {
        address: String,
        port: u16,
    },
    /// tls-alpn-01 with the built-in TLS server (see [`tls_alpn`]).
    TlsAlpn {
        address: String,
        port: u16,
    },
    /// dns-01: `--dns-rfc2136`, `--dns-cloudflare`, `--manual` (see [`dns`]).
    Dns(DnsAuth),
}

impl AuthSpec {
    pub fn from_args(a: &CertonlyArgs, m: &clap::ArgMatches, ids: &[Identifier]) -> Result<Self> {
        if a.tls_alpn_01 {
            return Ok(tls_alpn::from_args(a));
        }
        if let Some(d) = DnsAuth::from_args(a, m, ids)? {
            return Ok(AuthSpec::Dns(d));
        }
        if !a.preferred_challenges.is_empty()
            && !dns::preferred_challenges(&a.preferred_challenges)?.contains(&"http-01")
        {
            return Err(CliError::usage(
                "--preferred-challenges without http: dns-01 needs --dns-rfc2136, --dns-cloudflare or --manual",
            ));
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
        Err(CliError::usage(
            "choose how to prove control of the names: --webroot -w /var/www/html, --standalone (port 80 free), \
             or dns-01 with --dns-rfc2136, --dns-cloudflare or --manual",
        ))
    }

    /// Rebuild from `[renewalparams]` as certbot wrote it (or we did).
    #[allow(dead_code)] // `renew` lands next
    pub fn from_conf(conf: &RenewalConf, ids: &[Identifier]) -> Result<Self> {
        if let Some(d) = DnsAuth::from_conf(conf, ids)? {
            return Ok(AuthSpec::Dns(d));
        }
        match conf.authenticator() {
            Some(tls_alpn::AUTHENTICATOR) => tls_alpn::from_conf(conf),
            Some("standalone") => Ok(AuthSpec::Standalone {
                address: conf.param_str("http01_address").unwrap_or("").to_string(),
                port: match conf.param_str("http01_port") {
                    Some(p) => p.parse().map_err(|_| {
                        CliError::usage(format!("http01_port {p:?} in the renewal conf is not a port"))
                    })?,
                    None => 80,
                },
            }),
            Some("webroot") => {
                let mut map: BTreeMap<String, PathBuf> = conf
                    .webroot_map()
                    .into_iter()
                    .map(|(d, p)| (d, PathBuf::from(p)))
                    .collect();
                // certbot: names missing from the map use the first webroot_path.
                if let Some(first) = conf.webroot_path().first() {
                    for id in ids {
                        map.entry(id.value()).or_insert_with(|| PathBuf::from(first));
                    }
                }
                Ok(AuthSpec::Webroot(map))
            }
            Some(other) => Err(CliError::usage(format!(
                "the renewal conf uses authenticator {other:?}, which certfleet cannot run yet; \
                 reconfigure it with --webroot, --standalone, --dns-rfc2136, --dns-cloudflare or --manual"
            ))),
            None => Err(CliError::usage("the renewal conf names no authenticator")),
        }
    }

    /// Record in the renewal conf the way certbot does, so certbot can renew it too.
    pub fn record(&self, conf: &mut RenewalConf) {
        match self {
            AuthSpec::Standalone { address, port } => {
                conf.set_param("authenticator", "standalone");
                if *port != 80 {
                    conf.set_param("http01_port", port.to_string());
                } else {
                    conf.remove_param("http01_port");
                }
                if address.is_empty() {
                    conf.remove_param("http01_address");
                } else {
                    conf.set_param("http01_address", address.clone());
                }
            }
            AuthSpec::TlsAlpn { address, port } => tls_alpn::record(address, *port, conf),
            AuthSpec::Webroot(map) => {
                conf.set_param("authenticator", "webroot");
                let mut roots: Vec<String> = Vec::new();
                for r in map.values() {
                    let s = r.display().to_string();
                    if !roots.contains(&s) {
                        roots.push(s);
                    }
                }
                conf.set_param("webroot_path", roots);
                let entries: Vec<(String, String)> = map
                    .iter()
                    .map(|(k, v)| (k.clone(), v.display().to_string()))
                    .collect();
                conf.set_webroot_map(&entries);
            }
            AuthSpec::Dns(d) => d.record(conf),
        }
        // A dns-01 preference left from an earlier authenticator would make certbot refuse.
        if !matches!(self, AuthSpec::Dns(_)) && !conf.pref_challs().iter().any(|c| c == "http-01") {
            conf.remove_param("pref_challs");
        }
    }

    pub async fn solver(&self, ctx: &SolverContext) -> Result<Box<dyn Solver>> {
        match self {
            AuthSpec::Dns(d) => Ok(Box::new(d.solver(&ctx.work_dir)?)),
            AuthSpec::TlsAlpn { address, port } => tls_alpn::solver(address, *port).await,
            AuthSpec::Webroot(map) => Ok(Box::new(Webroot::new(map.clone()))),
            AuthSpec::Standalone { address, port } => {
                let ip: IpAddr = if address.is_empty() {
                    IpAddr::from([0, 0, 0, 0])
                } else {
                    address.parse().map_err(|_| {
                        CliError::usage(format!("--http-01-address {address:?} is not an IP address"))
                    })?
                };
                let s = Standalone::bind(SocketAddr::new(ip, *port))
                    .await
                    .map_err(CliError::solver)?;
                Ok(Box::new(s))
            }
        }
    }
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
