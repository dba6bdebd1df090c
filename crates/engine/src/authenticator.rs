//! How a lineage proves control of its names: recorded in the renewal conf (certbot's keys),
//! rebuilt from that conf for renewals, and turned into a [`Solver`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use certfleet_core::Identifier;
use certfleet_solvers::Solver;
use certfleet_solvers::http01::{Standalone, Webroot};
use certfleet_solvers::http01_manual::ManualHttp01;
use certfleet_solvers::webserver::WebServerSolver;
use certfleet_solvers::webserver::apache::ApacheOptions;
use certfleet_solvers::webserver::nginx::NginxOptions;
use certfleet_store::RenewalConf;

use crate::EngineError;

pub mod dns;
pub mod http;
pub mod tls_alpn;

pub use dns::DnsAuth;

/// Where solvers may keep state between runs (e.g. dns-01 records to clean after a crash).
#[derive(Debug, Clone)]
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
    /// dns-01: a registered DNS provider or `manual` (see [`dns`]).
    Dns(DnsAuth),
    /// http-01 through a running nginx (certbot's `--nginx`, see [`http`]).
    Nginx(NginxOptions),
    /// http-01 through a running Apache (certbot's `--apache`).
    Apache(ApacheOptions),
    /// http-01 through certbot's manual hooks.
    ManualHttp {
        auth_hook: String,
        cleanup_hook: Option<String>,
    },
}

impl AuthSpec {
    /// Rebuild from `[renewalparams]` as certbot wrote it (or we did).
    pub fn from_conf(conf: &RenewalConf, ids: &[Identifier]) -> Result<Self, EngineError> {
        if conf.authenticator() == Some("manual")
            && http::manual_challenge(&dns::preferred_challenges(&conf.pref_challs())?, ids) == "http-01"
        {
            return http::manual_http_from_conf(conf);
        }
        if let Some(d) = DnsAuth::from_conf(conf, ids)? {
            return Ok(AuthSpec::Dns(d));
        }
        match conf.authenticator() {
            Some(tls_alpn::AUTHENTICATOR) => tls_alpn::from_conf(conf),
            Some("standalone") => Ok(AuthSpec::Standalone {
                address: conf.param_str("http01_address").unwrap_or("").to_string(),
                port: http::http01_port(conf)?,
            }),
            Some("nginx") => Ok(AuthSpec::Nginx(http::nginx_options(conf)?)),
            Some("apache") => Ok(AuthSpec::Apache(http::apache_options(conf)?)),
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
            Some(other) => Err(EngineError::config(format!(
                "the renewal conf uses authenticator {other:?}, which certfleet cannot run yet; \
                 reconfigure it with --webroot, --standalone, --nginx, --apache, {}",
                dns::dns_choices()
            ))),
            None => Err(EngineError::config("the renewal conf names no authenticator")),
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
            AuthSpec::Nginx(_) | AuthSpec::Apache(_) | AuthSpec::ManualHttp { .. } => {
                http::record(self, conf)
            }
        }
        // A dns-01 preference left from an earlier authenticator would make certbot refuse.
        if !matches!(self, AuthSpec::Dns(_)) && !conf.pref_challs().iter().any(|c| c == "http-01") {
            conf.remove_param("pref_challs");
        }
    }

    /// The solver. Servers bind their port now, so a taken port fails before any order.
    pub async fn solver(&self, ctx: &SolverContext) -> Result<Box<dyn Solver>, EngineError> {
        match self {
            AuthSpec::Dns(d) => Ok(Box::new(d.solver(&ctx.work_dir)?)),
            AuthSpec::TlsAlpn { address, port } => tls_alpn::solver(address, *port).await,
            AuthSpec::Webroot(map) => Ok(Box::new(Webroot::new(map.clone()))),
            AuthSpec::Nginx(o) => Ok(Box::new(WebServerSolver::nginx(o.clone(), &ctx.work_dir))),
            AuthSpec::Apache(o) => Ok(Box::new(WebServerSolver::apache(o.clone(), &ctx.work_dir))),
            AuthSpec::ManualHttp {
                auth_hook,
                cleanup_hook,
            } => Ok(Box::new(ManualHttp01::new(
                auth_hook.clone(),
                cleanup_hook.clone(),
            ))),
            AuthSpec::Standalone { address, port } => {
                let ip = listen_ip(address, "--http-01-address")?;
                Ok(Box::new(Standalone::bind(SocketAddr::new(ip, *port)).await?))
            }
        }
    }
}

/// The address a built-in server listens on: all of them when empty.
fn listen_ip(address: &str, flag: &str) -> Result<IpAddr, EngineError> {
    if address.is_empty() {
        return Ok(IpAddr::from([0, 0, 0, 0]));
    }
    address
        .parse()
        .map_err(|_| EngineError::config(format!("{flag} {address:?} is not an IP address")))
}
