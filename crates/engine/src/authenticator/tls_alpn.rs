//! tls-alpn-01 with certfleet's built-in TLS server (RFC 8737), for hosts where the CA can
//! reach port 443 but not port 80. certbot has no such authenticator, so the renewal conf
//! names ours: `authenticator = certfleet-tls-alpn-01`, plus `tls_alpn_01_port` (when not 443)
//! and `tls_alpn_01_address`. certbot cannot renew such a lineage; certfleet can.

use std::net::SocketAddr;

use certfleet_solvers::Solver;
use certfleet_solvers::tlsalpn01::TlsAlpn01;
use certfleet_store::RenewalConf;

use super::AuthSpec;
use crate::EngineError;

pub const AUTHENTICATOR: &str = "certfleet-tls-alpn-01";
/// Where the CA connects (RFC 8737 section 3); another port needs a forward from 443.
pub const DEFAULT_PORT: u16 = 443;

pub fn from_conf(conf: &RenewalConf) -> Result<AuthSpec, EngineError> {
    Ok(AuthSpec::TlsAlpn {
        address: conf.param_str("tls_alpn_01_address").unwrap_or("").to_string(),
        port: match conf.param_str("tls_alpn_01_port") {
            Some(p) => p.parse().map_err(|_| {
                EngineError::config(format!(
                    "tls_alpn_01_port {p:?} in the renewal conf is not a port"
                ))
            })?,
            None => DEFAULT_PORT,
        },
    })
}

pub fn record(address: &str, port: u16, conf: &mut RenewalConf) {
    conf.set_param("authenticator", AUTHENTICATOR);
    if port == DEFAULT_PORT {
        conf.remove_param("tls_alpn_01_port");
    } else {
        conf.set_param("tls_alpn_01_port", port.to_string());
    }
    if address.is_empty() {
        conf.remove_param("tls_alpn_01_address");
    } else {
        conf.set_param("tls_alpn_01_address", address.to_string());
    }
}

/// Binds right away, so a taken port 443 is reported before any request reaches the CA.
pub async fn solver(address: &str, port: u16) -> Result<Box<dyn Solver>, EngineError> {
    let ip = super::listen_ip(address, "--tls-alpn-01-address")?;
    Ok(Box::new(TlsAlpn01::bind(SocketAddr::new(ip, port)).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_then_rebuild() {
        for (address, port) in [("", 443), ("127.0.0.1", 8443)] {
            let mut conf = RenewalConf::default();
            conf.set_param("http01_port", "8080"); // left from an earlier authenticator: harmless
            record(address, port, &mut conf);
            assert_eq!(conf.authenticator(), Some(AUTHENTICATOR));
            assert_eq!(conf.param_str("tls_alpn_01_port").is_some(), port != 443);
            let spec = from_conf(&conf).unwrap();
            assert_eq!(
                spec,
                AuthSpec::TlsAlpn {
                    address: address.to_string(),
                    port
                }
            );
        }
        let mut conf = RenewalConf::default();
        conf.set_param("authenticator", AUTHENTICATOR);
        conf.set_param("tls_alpn_01_port", "https");
        let err = from_conf(&conf).unwrap_err();
        assert!(err.to_string().contains("tls_alpn_01_port"), "{err}");
    }
}
