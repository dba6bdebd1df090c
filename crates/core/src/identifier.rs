//! Names a certificate can carry: DNS names (normalised, IDN to punycode) and IP addresses
//! (RFC 8738). Validation happens here, once, so every verb rejects bad input the same way
//! and before anything touches the disk or the CA.

use std::fmt;
use std::net::IpAddr;

/// Let's Encrypt's limit, and certbot's: more names belong in several certificates.
pub const MAX_NAMES_PER_CERT: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identifier {
    Dns(String),
    Ip(IpAddr),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentifierError {
    #[error("{name:?} is not a valid domain name: {why}")]
    InvalidDns { name: String, why: String },
    #[error("{name:?} is not a valid IP address")]
    InvalidIp { name: String },
    #[error(
        "{count} names requested; a certificate holds at most {MAX_NAMES_PER_CERT} (split them over several --cert-name lineages)"
    )]
    TooMany { count: usize },
    #[error("no domain names given (use -d example.com)")]
    Empty,
}

impl Identifier {
    /// Parse a DNS name the way a user types it: case, trailing dot and Unicode are normalised.
    pub fn dns(input: &str) -> Result<Self, IdentifierError> {
        normalise_dns(input).map(Identifier::Dns)
    }

    pub fn ip(input: &str) -> Result<Self, IdentifierError> {
        input
            .trim()
            .parse::<IpAddr>()
            .map(Identifier::Ip)
            .map_err(|_| IdentifierError::InvalidIp {
                name: input.to_string(),
            })
    }

    /// The value as the ACME `identifier.value` field wants it.
    pub fn value(&self) -> String {
        match self {
            Identifier::Dns(d) => d.clone(),
            Identifier::Ip(ip) => ip.to_string(),
        }
    }

    /// The ACME `identifier.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Identifier::Dns(_) => "dns",
            Identifier::Ip(_) => "ip",
        }
    }

    pub fn is_wildcard(&self) -> bool {
        matches!(self, Identifier::Dns(d) if d.starts_with("*."))
    }

    /// The name without a leading `*.`: what dns-01 validates and what a webroot is keyed by.
    pub fn base_name(&self) -> String {
        match self {
            Identifier::Dns(d) => d.strip_prefix("*.").unwrap_or(d).to_string(),
            Identifier::Ip(ip) => ip.to_string(),
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value())
    }
}

/// Parse several `-d` values (each may be a comma list), dedupe keeping order, enforce the limit.
pub fn parse_domain_args<S: AsRef<str>>(args: &[S]) -> Result<Vec<Identifier>, IdentifierError> {
    let mut out: Vec<Identifier> = Vec::new();
    for arg in args {
        for part in arg.as_ref().split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let id = Identifier::dns(part)?;
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    check_count(out.len())?;
    Ok(out)
}

pub fn check_count(count: usize) -> Result<(), IdentifierError> {
    match count {
        0 => Err(IdentifierError::Empty),
        n if n > MAX_NAMES_PER_CERT => Err(IdentifierError::TooMany { count: n }),
        _ => Ok(()),
    }
}

fn normalise_dns(input: &str) -> Result<String, IdentifierError> {
    let bad = |why: &str| IdentifierError::InvalidDns {
        name: input.to_string(),
        why: why.to_string(),
    };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    if trimmed.chars().any(char::is_whitespace) {
        return Err(bad("it contains a space"));
    }
    if trimmed.starts_with('-') {
        return Err(bad("it starts with '-' (did a flag lose its value?)"));
    }
    let (wild, rest) = match trimmed.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, trimmed),
    };
    let rest = rest.strip_suffix('.').unwrap_or(rest);
    if rest.contains('*') {
        return Err(bad(
            "'*' is only allowed as the whole leftmost label, as in *.example.com",
        ));
    }
    if rest.contains("..") || rest.starts_with('.') {
        return Err(bad("it has an empty label ('..')"));
    }
    if rest.parse::<IpAddr>().is_ok() {
        return Err(bad("it is an IP address; use --ip-address for IP identifiers"));
    }
    // IDN: Unicode names become their punycode (A-label) form, which is what the CA sees.
    let ascii = idna::domain_to_ascii(rest).map_err(|_| bad("it is not a valid internationalised name"))?;
    let ascii = ascii.to_ascii_lowercase();
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("it needs at least two labels, like example.com"));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(bad("it has an empty label ('..')"));
        }
        if label.len() > 63 {
            return Err(bad(&format!("label {label:?} is longer than 63 characters")));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad(&format!("label {label:?} starts or ends with '-'")));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(bad(&format!("character {c:?} is not allowed in a domain name")));
        }
    }
    let full = if wild { format!("*.{ascii}") } else { ascii };
    if full.len() > 253 {
        return Err(bad(&format!(
            "it is {} characters long; the limit is 253",
            full.len()
        )));
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_trailing_dot_and_idn() {
        assert_eq!(
            Identifier::dns("WWW.Example.COM.").unwrap().value(),
            "www.example.com"
        );
        assert_eq!(
            Identifier::dns("bücher.example").unwrap().value(),
            "xn--bcher-kva.example"
        );
        assert_eq!(Identifier::dns("*.Example.com").unwrap().value(), "*.example.com");
    }

    #[test]
    fn rejects_bad_names_with_reason() {
        for (name, why) in [
            ("exa mple.com", "space"),
            ("a..b", "empty label"),
            ("-d", "starts with '-'"),
            ("foo.*.com", "leftmost"),
            ("example", "two labels"),
            ("ex_ample.com", "not allowed"),
            ("-x.example.com", "starts with '-'"),
        ] {
            let err = Identifier::dns(name).unwrap_err().to_string();
            assert!(err.contains(why), "{name}: {err}");
        }
        let long = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert!(Identifier::dns(&long).unwrap_err().to_string().contains("253"));
    }

    #[test]
    fn comma_lists_dedupe_and_limit() {
        let ids = parse_domain_args(&["a.example.com,b.example.com", "A.example.com"]).unwrap();
        assert_eq!(ids.len(), 2);
        let many: Vec<String> = (0..101).map(|i| format!("n{i}.example.com")).collect();
        assert_eq!(
            parse_domain_args(&many).unwrap_err(),
            IdentifierError::TooMany { count: 101 }
        );
    }

    #[test]
    fn ip_identifiers() {
        assert_eq!(Identifier::ip("127.0.0.1").unwrap().kind(), "ip");
        assert!(Identifier::ip("::1").is_ok());
        assert!(Identifier::ip("1.2.3").is_err());
        assert!(
            Identifier::dns("10.0.0.1")
                .unwrap_err()
                .to_string()
                .contains("--ip-address")
        );
    }
}
