//! A small stub resolver for what dns-01 needs to know about a name: where its
//! `_acme-challenge` CNAME chain ends, which zone holds that name (by SOA, walking up), and
//! the addresses of that zone's authoritative servers.
//!
//! All questions go to one server (the `--dns-resolver`, by default the first `nameserver`
//! in /etc/resolv.conf). Loopback authoritative addresses are reached at the resolver's port:
//! see the module docs of [`crate::dns`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::{DnsError, norm, wire};

/// Longest CNAME chain followed (lego and certbot stop around here too).
const MAX_CNAME_HOPS: usize = 10;

/// Queries one recursive (or authoritative) server.
#[derive(Debug, Clone)]
pub struct Resolver {
    addr: SocketAddr,
    timeout: Duration,
    /// Sign queries (certbot's `dns_rfc2136_sign_query`, for primaries that require it).
    tsig: Option<wire::TsigKey>,
}

/// One authoritative server of a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameServer {
    /// NS host name, for messages.
    pub host: String,
    pub addr: SocketAddr,
}

/// One CAA record (RFC 8659): `0 issue "letsencrypt.org"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaaRecord {
    /// The issuer-critical flag.
    pub critical: bool,
    /// `issue`, `issuewild`, `iodef`, ... (lower case).
    pub tag: String,
    /// The value as written, e.g. `letsencrypt.org; validationmethods=dns-01`.
    pub value: String,
}

impl Resolver {
    pub fn new(addr: SocketAddr) -> Self {
        Resolver {
            addr,
            timeout: Duration::from_secs(3),
            tsig: None,
        }
    }

    pub(crate) fn signed(addr: SocketAddr, key: wire::TsigKey) -> Self {
        Resolver {
            tsig: Some(key),
            ..Resolver::new(addr)
        }
    }

    /// The first `nameserver` of /etc/resolv.conf, port 53.
    pub fn system() -> Result<Self, DnsError> {
        let text = std::fs::read_to_string("/etc/resolv.conf")
            .map_err(|e| DnsError::io("reading /etc/resolv.conf (or pass --dns-resolver IP:PORT)", e))?;
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
            .map(|ip| Resolver::new(SocketAddr::new(ip, 53)))
            .next()
            .ok_or_else(|| {
                DnsError::Config("no nameserver in /etc/resolv.conf; pass --dns-resolver IP:PORT".into())
            })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lookup_err(&self, name: &str, why: impl Into<String>) -> DnsError {
        DnsError::Lookup {
            name: name.to_string(),
            resolver: self.addr.to_string(),
            why: why.into(),
        }
    }

    async fn query(&self, name: &str, rtype: RecordType) -> Result<Message, DnsError> {
        let qname = fqdn(name).map_err(|e| self.lookup_err(name, e))?;
        let mut msg = Message::query();
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(qname, rtype));
        wire::add_edns(&mut msg);
        let resp = wire::exchange(self.addr, msg, self.tsig.as_ref(), self.timeout).await?;
        match resp.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok(resp),
            rc => Err(self.lookup_err(name, format!("{rtype} query answered {rc}"))),
        }
    }

    /// Follow CNAMEs from `name` (e.g. `_acme-challenge.alias.example.test`) to the name that
    /// really holds the TXT records: the CA follows them the same way.
    pub async fn follow_cname(&self, name: &str) -> Result<String, DnsError> {
        let mut current = norm(name);
        let mut seen = vec![current.clone()];
        for _ in 0..MAX_CNAME_HOPS {
            let resp = self.query(&current, RecordType::CNAME).await?;
            let target = resp.answers.iter().find_map(|r| match &r.data {
                RData::CNAME(c) if norm(&r.name.to_ascii()) == current => Some(norm(&c.0.to_ascii())),
                _ => None,
            });
            match target {
                None => return Ok(current),
                Some(t) if seen.contains(&t) => {
                    return Err(self.lookup_err(name, format!("CNAME loop at {t}")));
                }
                Some(t) => {
                    seen.push(t.clone());
                    current = t;
                }
            }
        }
        Err(self.lookup_err(name, format!("more than {MAX_CNAME_HOPS} CNAMEs")))
    }

    /// The apex of the zone holding `name`: ask SOA for `name`, then its parents, until a SOA
    /// owned by the asked name comes back in the answer, or a negative answer names the zone
    /// in its authority section.
    pub async fn find_zone(&self, name: &str) -> Result<String, DnsError> {
        let mut candidate = norm(name);
        loop {
            let resp = self.query(&candidate, RecordType::SOA).await?;
            let soa_owner = |records: &[hickory_proto::rr::Record]| {
                records.iter().find_map(|r| match r.data {
                    RData::SOA(_) => Some(norm(&r.name.to_ascii())),
                    _ => None,
                })
            };
            if let Some(owner) = soa_owner(&resp.answers)
                && owner == candidate
            {
                return Ok(owner);
            }
            // A CNAME at the candidate means it is not an apex; a negative answer's SOA names
            // the enclosing zone directly.
            if let Some(owner) = soa_owner(&resp.authorities)
                && is_suffix_of(&owner, &candidate)
            {
                return Ok(owner);
            }
            match candidate.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => candidate = parent.to_string(),
                _ => return Err(self.lookup_err(name, "no SOA found for it or any parent")),
            }
        }
    }

    /// The authoritative servers of `zone`, one address each (IPv4 preferred).
    pub async fn name_servers(&self, zone: &str) -> Result<Vec<NameServer>, DnsError> {
        let resp = self.query(zone, RecordType::NS).await?;
        let mut hosts: Vec<String> = resp
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(ns) => Some(norm(&ns.0.to_ascii())),
                _ => None,
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        if hosts.is_empty() {
            return Err(self.lookup_err(zone, "no NS records"));
        }
        let lookups = hosts.iter().map(|h| self.addresses(h, &resp));
        let mut out = Vec::new();
        for (host, addrs) in hosts.iter().zip(futures::future::join_all(lookups).await) {
            let addrs = addrs?;
            if addrs.is_empty() {
                return Err(self.lookup_err(host, format!("name server of {zone} has no address")));
            }
            // One address per server, IPv4 first (as lego does): a host without IPv6 routes
            // must not wait out the timeout on an address it cannot reach.
            let ip = addrs.iter().find(|ip| ip.is_ipv4()).unwrap_or(&addrs[0]);
            out.push(NameServer {
                host: host.clone(),
                addr: self.server_addr(*ip),
            });
        }
        Ok(out)
    }

    /// A/AAAA of `host`, from the glue of `ns_resp` if present, else asked.
    async fn addresses(&self, host: &str, ns_resp: &Message) -> Result<Vec<IpAddr>, DnsError> {
        let from = |m: &Message| -> Vec<IpAddr> {
            m.answers
                .iter()
                .chain(m.additionals.iter())
                .filter(|r| norm(&r.name.to_ascii()) == host)
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect()
        };
        let glue = from(ns_resp);
        if !glue.is_empty() {
            return Ok(glue);
        }
        let (a, aaaa) = futures::join!(
            self.query(host, RecordType::A),
            self.query(host, RecordType::AAAA)
        );
        let mut v = from(&a?);
        // Some servers refuse or fail AAAA; IPv4 alone is enough to check.
        if let Ok(m) = aaaa {
            v.extend(from(&m));
        }
        Ok(v)
    }

    /// The A and AAAA addresses of `name` (CNAMEs followed by the server), IPv6 first as the
    /// CA tries them; empty when the name has none (NXDOMAIN included).
    pub async fn ips(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let (aaaa, a) = futures::join!(
            self.query(name, RecordType::AAAA),
            self.query(name, RecordType::A)
        );
        let mut out = Vec::new();
        for m in [aaaa?, a?] {
            out.extend(m.answers.iter().filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            }));
        }
        Ok(out)
    }

    /// The CAA records at `name` itself (RFC 8659's climb to the parents is the caller's).
    pub async fn caa(&self, name: &str) -> Result<Vec<CaaRecord>, DnsError> {
        let resp = self.query(name, RecordType::CAA).await?;
        Ok(resp
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::CAA(c) => Some(CaaRecord {
                    critical: c.issuer_critical,
                    tag: c.tag.to_ascii_lowercase(),
                    value: String::from_utf8_lossy(&c.value).into_owned(),
                }),
                _ => None,
            })
            .collect())
    }

    /// Authoritative servers listen on 53, except loopback ones, which are taken to be the
    /// test server at the resolver's port.
    fn server_addr(&self, ip: IpAddr) -> SocketAddr {
        if ip.is_loopback() {
            SocketAddr::new(ip, self.addr.port())
        } else {
            SocketAddr::new(ip, 53)
        }
    }
}

/// Parse a name as fully qualified.
pub(crate) fn fqdn(name: &str) -> Result<Name, String> {
    let mut n = Name::from_ascii(name.trim_end_matches('.')).map_err(|e| format!("invalid DNS name: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

/// `zone` is `name` or one of its parents.
pub(crate) fn is_suffix_of(zone: &str, name: &str) -> bool {
    zone.is_empty() || name == zone || name.ends_with(&format!(".{zone}"))
}

/// Ask `server` (an authoritative one: no recursion) for the TXT values at `name`.
pub(crate) async fn authoritative_txt(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<(ResponseCode, Vec<String>), DnsError> {
    let qname = fqdn(name).map_err(|e| DnsError::Config(format!("{name}: {e}")))?;
    let mut msg = Message::query();
    msg.metadata.recursion_desired = false;
    msg.add_query(Query::query(qname, RecordType::TXT));
    wire::add_edns(&mut msg);
    let resp = wire::exchange(server, msg, None, timeout).await?;
    let want = norm(name);
    let values = resp
        .answers
        .iter()
        .filter(|r| norm(&r.name.to_ascii()) == want)
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s))
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect();
    Ok((resp.metadata.response_code, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix() {
        assert!(is_suffix_of("example.test", "_acme-challenge.example.test"));
        assert!(is_suffix_of("example.test", "example.test"));
        assert!(!is_suffix_of("ample.test", "example.test"));
    }

    #[test]
    fn loopback_name_servers_use_the_resolver_port() {
        let r = Resolver::new("127.0.0.1:5353".parse().unwrap());
        assert_eq!(
            r.server_addr("127.0.0.1".parse().unwrap()),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            r.server_addr("192.0.2.1".parse().unwrap()),
            "192.0.2.1:53".parse().unwrap()
        );
    }
}
