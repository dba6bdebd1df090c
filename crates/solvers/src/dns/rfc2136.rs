//! RFC 2136 dynamic update signed with TSIG, configured like certbot's dns-rfc2136 plugin:
//!
//! ```ini
//! dns_rfc2136_server = 192.0.2.1
//! dns_rfc2136_port = 53
//! dns_rfc2136_name = keyname.
//! dns_rfc2136_secret = 4q4wM/2I180UXoMyN4INVhJNi8V9BCV+jMw2mXgZw/CSuxUT8C7NKKFs...
//! dns_rfc2136_algorithm = HMAC-SHA512
//! ```
//!
//! As in certbot, the server must be an IP address, the port defaults to 53 and the algorithm
//! to HMAC-MD5. The update adds one TXT RR (the RRset keeps other values) and cleanup deletes
//! exactly that RR (class NONE), so other values at the name survive.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::credentials::CredentialsFile;
use super::lookup::{Resolver, fqdn, is_suffix_of};
use super::wire::{self, TsigAlgorithm, TsigKey};
use super::{DnsError, DnsProvider, Secret, TxtRecord};

const NAME: &str = "rfc2136";
/// TTL of the records we add: short, they live for minutes.
const TTL: u32 = 60;

/// Where to send updates and with which key.
#[derive(Debug, Clone)]
pub struct Rfc2136Config {
    pub server: SocketAddr,
    pub key_name: String,
    pub algorithm: TsigAlgorithm,
    /// Base64 secret.
    pub secret: Secret,
    /// `dns_rfc2136_sign_query = true`: also sign the SOA queries sent to `server`.
    pub sign_query: bool,
}

impl Rfc2136Config {
    /// Read a certbot dns-rfc2136 credentials ini (must be mode 0600/0400).
    pub fn from_certbot_ini(path: &Path) -> Result<Self, DnsError> {
        let f = CredentialsFile::load(path)?;
        let server = f
            .require("dns_rfc2136_server", "the DNS server's IP address")?
            .expose();
        let ip: IpAddr = server.parse().map_err(|_| {
            f.error(format!(
                "dns_rfc2136_server = {server} is not an IP address (a host name is not allowed, as in certbot)"
            ))
        })?;
        let port = match f.get("dns_rfc2136_port") {
            None => 53,
            Some(p) => p
                .expose()
                .parse::<u16>()
                .map_err(|_| f.error(format!("dns_rfc2136_port = {} is not a port number", p.expose())))?,
        };
        let key_name = f
            .require("dns_rfc2136_name", "TSIG key name")?
            .expose()
            .to_string();
        let secret = f.require("dns_rfc2136_secret", "TSIG key secret")?.clone();
        let algorithm = match f.get("dns_rfc2136_algorithm") {
            None => TsigAlgorithm::HmacMd5,
            Some(a) => TsigAlgorithm::parse(a.expose()).ok_or_else(|| {
                f.error(format!(
                    "unknown dns_rfc2136_algorithm {} (use HMAC-SHA512, HMAC-SHA256, HMAC-SHA1 or HMAC-MD5)",
                    a.expose()
                ))
            })?,
        };
        // certbot: `(credentials.conf('sign_query') or '').upper() == "TRUE"`.
        let sign_query = f
            .get("dns_rfc2136_sign_query")
            .is_some_and(|v| v.expose().eq_ignore_ascii_case("true"));
        let cfg = Rfc2136Config {
            server: SocketAddr::new(ip, port),
            key_name,
            algorithm,
            secret,
            sign_query,
        };
        cfg.key().map_err(|why| f.error(why))?;
        Ok(cfg)
    }

    fn key(&self) -> Result<TsigKey, String> {
        TsigKey::new(&self.key_name, self.algorithm, &self.secret)
    }
}

/// The [`super::registry`] entry's constructor: certbot's credentials ini to a provider.
pub fn build(credentials: &Path) -> Result<std::sync::Arc<dyn DnsProvider>, DnsError> {
    Ok(std::sync::Arc::new(Rfc2136Provider::new(
        &Rfc2136Config::from_certbot_ini(credentials)?,
    )?))
}

/// Sends signed updates to one primary server.
#[derive(Debug)]
pub struct Rfc2136Provider {
    server: SocketAddr,
    key: TsigKey,
    sign_query: bool,
    timeout: Duration,
}

impl Rfc2136Provider {
    pub fn new(cfg: &Rfc2136Config) -> Result<Self, DnsError> {
        Ok(Rfc2136Provider {
            server: cfg.server,
            key: cfg.key().map_err(DnsError::Config)?,
            sign_query: cfg.sign_query,
            timeout: Duration::from_secs(5),
        })
    }

    /// The record's zone, or (certbot's way) the zone the update server itself says holds it.
    async fn zone_of(&self, record: &TxtRecord) -> Result<String, DnsError> {
        match &record.zone {
            Some(z) => Ok(z.clone()),
            None => self.server_resolver().find_zone(&record.fqdn).await,
        }
    }

    /// The update server as a resolver, signing queries when configured to.
    fn server_resolver(&self) -> Resolver {
        if self.sign_query {
            Resolver::signed(self.server, self.key.clone())
        } else {
            Resolver::new(self.server)
        }
    }

    async fn update(&self, record: &TxtRecord, add: bool) -> Result<String, DnsError> {
        let zone = self.zone_of(record).await?;
        if !is_suffix_of(&zone, &record.fqdn) {
            return Err(DnsError::Config(format!(
                "{} is not inside zone {zone}",
                record.fqdn
            )));
        }
        let bad = |e: String| DnsError::Config(format!("{}: {e}", record.fqdn));
        let mut msg = Message::query();
        msg.metadata.op_code = OpCode::Update;
        msg.metadata.recursion_desired = false;
        let mut zq = Query::query(fqdn(&zone).map_err(bad)?, RecordType::SOA);
        zq.set_query_class(DNSClass::IN);
        msg.add_zone(zq);
        let mut rr = Record::from_rdata(
            fqdn(&record.fqdn).map_err(bad)?,
            TTL,
            RData::TXT(TXT::new(vec![record.value.clone()])),
        );
        if !add {
            // RFC 2136 2.5.4: delete this one RR from the RRset.
            rr.dns_class = DNSClass::NONE;
            rr.ttl = 0;
        }
        msg.add_update(rr);
        let resp = wire::exchange(self.server, msg, Some(&self.key), self.timeout).await?;
        let action = if add { "add" } else { "delete" };
        match resp.metadata.response_code {
            ResponseCode::NoError => Ok(zone),
            ResponseCode::Refused => Err(DnsError::provider(
                NAME,
                format!(
                    "{} refused to {action} TXT {} in zone {zone} (REFUSED): allow key {} to update TXT there \
                     (BIND: update-policy {{ grant {} name {}. TXT; }})",
                    self.server,
                    record.fqdn,
                    self.key.name.to_ascii(),
                    self.key.name.to_ascii(),
                    record.fqdn
                ),
            )),
            ResponseCode::NotZone | ResponseCode::NotAuth => Err(DnsError::provider(
                NAME,
                format!(
                    "{} is not the primary server of zone {zone} ({}); set dns_rfc2136_server to it",
                    self.server, resp.metadata.response_code
                ),
            )),
            rc => Err(DnsError::provider(
                NAME,
                format!(
                    "{} answered {rc} to the {action} of TXT {} in zone {zone}",
                    self.server, record.fqdn
                ),
            )),
        }
    }
}

#[async_trait::async_trait]
impl DnsProvider for Rfc2136Provider {
    fn name(&self) -> &'static str {
        NAME
    }

    /// A signed SOA query for the root: a wrong key name, secret or algorithm (BADKEY,
    /// BADSIG) or an unreachable server shows up here, before any order is placed at the CA.
    /// Servers sign every answer to a signed request (RFC 8945), REFUSED ones included.
    async fn preflight(&self) -> Result<(), DnsError> {
        let mut msg = Message::query();
        msg.metadata.recursion_desired = false;
        msg.add_query(Query::query(Name::root(), RecordType::SOA));
        wire::exchange(self.server, msg, Some(&self.key), self.timeout)
            .await
            .map(drop)
            .map_err(|e| match e {
                // The server rejected our key: a setup mistake for the user to fix (exit 2),
                // not a transient failure.
                DnsError::Transport { server, why }
                    if ["BADSIG", "BADKEY", "BADTIME", "NOTAUTH"]
                        .iter()
                        .any(|c| why.contains(c)) =>
                {
                    DnsError::Config(format!(
                        "DNS server {server} rejected the TSIG key: {why}; check dns_rfc2136_name, \
                         dns_rfc2136_secret and dns_rfc2136_algorithm in the credentials file"
                    ))
                }
                e => e,
            })
    }

    async fn set_txt(&self, record: &TxtRecord) -> Result<Option<String>, DnsError> {
        self.update(record, true).await.map(Some)
    }

    async fn remove_txt(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.update(record, false).await.map(|_| ())
    }

    /// The update server is authoritative for the zones it updates: a good resolver default.
    fn default_resolver(&self) -> Option<Resolver> {
        Some(self.server_resolver())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn ini(body: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rfc2136.ini");
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        (d, p)
    }

    #[test]
    fn reads_certbot_ini() {
        let (_d, p) = ini(
            "dns_rfc2136_server = 192.0.2.1\ndns_rfc2136_port = 5353\ndns_rfc2136_name = k.\n\
             dns_rfc2136_secret = c2VjcmV0\ndns_rfc2136_algorithm = HMAC-SHA512\n",
        );
        let c = Rfc2136Config::from_certbot_ini(&p).unwrap();
        assert_eq!(c.server, "192.0.2.1:5353".parse().unwrap());
        assert_eq!(c.algorithm, TsigAlgorithm::HmacSha512);
        assert!(!format!("{c:?}").contains("c2VjcmV0"));
        let (_d, p) =
            ini("dns_rfc2136_server = 192.0.2.1\ndns_rfc2136_name = k\ndns_rfc2136_secret = c2VjcmV0\n");
        let c = Rfc2136Config::from_certbot_ini(&p).unwrap();
        assert_eq!(
            (c.server.port(), c.algorithm, c.sign_query),
            (53, TsigAlgorithm::HmacMd5, false)
        );
    }

    #[test]
    fn rejects_host_names_and_unknown_algorithms() {
        let (_d, p) =
            ini("dns_rfc2136_server = ns.example.com\ndns_rfc2136_name = k\ndns_rfc2136_secret = c2VjcmV0\n");
        let e = Rfc2136Config::from_certbot_ini(&p).unwrap_err().to_string();
        assert!(
            e.contains("dns_rfc2136_server = ns.example.com is not an IP address"),
            "{e}"
        );
        let (_d, p) = ini(
            "dns_rfc2136_server = ::1\ndns_rfc2136_name = k\ndns_rfc2136_secret = c2VjcmV0\n\
             dns_rfc2136_algorithm = HMAC-SHA3\n",
        );
        let e = Rfc2136Config::from_certbot_ini(&p).unwrap_err().to_string();
        assert!(e.contains("unknown dns_rfc2136_algorithm HMAC-SHA3"), "{e}");
        let (_d, p) = ini("dns_rfc2136_server = ::1\ndns_rfc2136_name = k\ndns_rfc2136_secret = %%%secret\n");
        let e = Rfc2136Config::from_certbot_ini(&p).unwrap_err().to_string();
        assert!(e.contains("not valid base64") && !e.contains("%%%secret"), "{e}");
    }
}
