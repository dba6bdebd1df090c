//! Shared vocabulary of certfleet: what a name is, what a key is, what a certificate says,
//! and what time it is (a [`Clock`] so policy can be tested without sleeping).

pub mod cert;
pub mod clock;
pub mod identifier;
pub mod key_match;
pub mod keys;

pub use cert::{CertInfo, CertParseError};
pub use clock::{Clock, FixedClock, SystemClock};
pub use identifier::{Identifier, IdentifierError, MAX_NAMES_PER_CERT};
pub use key_match::key_belongs_to;
pub use keys::{KeyError, KeySpec, PrivateKey};

/// The ACME challenge types certfleet can solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ChallengeType {
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "dns-01")]
    Dns01,
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl ChallengeType {
    pub fn as_str(&self) -> &'static str {
        match self {
            ChallengeType::Http01 => "http-01",
            ChallengeType::Dns01 => "dns-01",
            ChallengeType::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

impl std::fmt::Display for ChallengeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
