//! Every DNS provider certfleet can drive by name: one [`Registration`] per provider file,
//! with the names certbot gives it, so the CLI flags, the renewal-conf keys and the solver
//! are all derived from this one table.
//!
//! Adding a provider: write `dns/<name>.rs` (a [`super::DnsProvider`] and the parsing of its
//! certbot credentials ini, ending in a `build` function; declared with `pub mod <name>;` in
//! `dns/mod.rs`), then add its entry to [`PROVIDERS`]. Nothing else names providers one by
//! one: the CLI's `--dns-<name>*` flags, the renewal-conf keys and the messages listing the
//! dns-01 choices all come from this table.

use std::path::Path;
use std::sync::Arc;

use super::{DnsError, DnsProvider};

/// One DNS provider, as certbot's `certbot-dns-<name>` plugin names it.
#[derive(Debug)]
pub struct Registration {
    /// Short name, as in messages and the pending-records file: `rfc2136`.
    pub name: &'static str,
    /// certbot's authenticator, in `authenticator = ...` of a renewal conf: `dns-rfc2136`.
    pub authenticator: &'static str,
    /// Renewal-conf key of the credentials file: `dns_rfc2136_credentials`.
    pub credentials_key: &'static str,
    /// Renewal-conf key of the minimum wait: `dns_rfc2136_propagation_seconds`.
    pub propagation_seconds_key: &'static str,
    /// Command-line flag choosing the provider, without `--`: `dns-rfc2136`.
    pub flag: &'static str,
    /// Flag naming the credentials file: `dns-rfc2136-credentials`.
    pub credentials_flag: &'static str,
    /// Flag of the minimum wait: `dns-rfc2136-propagation-seconds`.
    pub propagation_seconds_flag: &'static str,
    /// `--help` of [`Self::flag`]: what the provider is (one line, no final period, as clap
    /// shows doc comments).
    pub help: &'static str,
    /// `--help` of [`Self::credentials_flag`]: the ini keys certbot's plugin reads.
    pub credentials_help: &'static str,
    /// `--help` of [`Self::propagation_seconds_flag`].
    pub propagation_seconds_help: &'static str,
    /// Read the credentials file (mode 0600) and build the provider.
    pub build: fn(&Path) -> Result<Arc<dyn DnsProvider>, DnsError>,
}

/// By name only: two registrations are the same provider when their names are.
impl PartialEq for Registration {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Registration {}

/// Every provider, in the order `--help` lists them.
pub static PROVIDERS: &[Registration] = &[
    Registration {
        name: "rfc2136",
        authenticator: "dns-rfc2136",
        credentials_key: "dns_rfc2136_credentials",
        propagation_seconds_key: "dns_rfc2136_propagation_seconds",
        flag: "dns-rfc2136",
        credentials_flag: "dns-rfc2136-credentials",
        propagation_seconds_flag: "dns-rfc2136-propagation-seconds",
        help: "dns-01 through RFC 2136 dynamic updates signed with TSIG (BIND, Knot, PowerDNS, ...)",
        credentials_help: "certbot dns-rfc2136 ini: dns_rfc2136_server, _port, _name, _secret, _algorithm (mode 0600)",
        propagation_seconds_help: "Wait at least this long after the update (certbot compatibility; the check makes it unneeded)",
        build: super::rfc2136::build,
    },
    Registration {
        name: "cloudflare",
        authenticator: "dns-cloudflare",
        credentials_key: "dns_cloudflare_credentials",
        propagation_seconds_key: "dns_cloudflare_propagation_seconds",
        flag: "dns-cloudflare",
        credentials_flag: "dns-cloudflare-credentials",
        propagation_seconds_flag: "dns-cloudflare-propagation-seconds",
        help: "dns-01 through the Cloudflare API (scoped API token, or the legacy global key + email)",
        credentials_help: "certbot dns-cloudflare ini: dns_cloudflare_api_token (or _email + _api_key), mode 0600",
        propagation_seconds_help: "Wait at least this long after the change (certbot compatibility)",
        build: super::cloudflare::build,
    },
];

/// The provider certbot calls `authenticator` (`dns-rfc2136`), if certfleet has it.
pub fn by_authenticator(authenticator: &str) -> Option<&'static Registration> {
    PROVIDERS.iter().find(|p| p.authenticator == authenticator)
}

/// The provider named `name` (`rfc2136`), if certfleet has it.
pub fn by_name(name: &str) -> Option<&'static Registration> {
    PROVIDERS.iter().find(|p| p.name == name)
}

/// Every provider flag, `--dns-rfc2136`, ..., joined by `sep`: for messages that list the
/// dns-01 choices.
pub fn flags(sep: &str) -> String {
    PROVIDERS
        .iter()
        .map(|p| format!("--{}", p.flag))
        .collect::<Vec<_>>()
        .join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// certbot's naming, which renewal confs and scripts depend on, holds for every entry.
    #[test]
    fn names_follow_certbot() {
        for p in PROVIDERS {
            let n = p.name;
            assert_eq!(p.authenticator, format!("dns-{n}"));
            assert_eq!(p.credentials_key, format!("dns_{n}_credentials"));
            assert_eq!(p.propagation_seconds_key, format!("dns_{n}_propagation_seconds"));
            assert_eq!(p.flag, format!("dns-{n}"));
            assert_eq!(p.credentials_flag, format!("dns-{n}-credentials"));
            assert_eq!(p.propagation_seconds_flag, format!("dns-{n}-propagation-seconds"));
            assert_eq!(by_authenticator(p.authenticator), Some(p));
            assert_eq!(by_name(n), Some(p));
        }
        assert_eq!(flags(", "), "--dns-rfc2136, --dns-cloudflare");
    }
}
