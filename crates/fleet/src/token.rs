//! Secrets of fleet mode: admin tokens and one-time enrollment tokens.
//!
//! Every secret is 32 random bytes, so the database keeps only its SHA-256: a slow password
//! hash buys nothing against a 256-bit secret, and a fast one lets every request check it.
//! Each kind carries a prefix (`cfa1_`, `cfe1_`) so a leaked token is recognisable (secret
//! scanners, logs) and one kind can never be mistaken for the other.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const ADMIN_PREFIX: &str = "cfa1_";
pub const ENROLL_PREFIX: &str = "cfe1_";

/// A new random secret, base64url without padding (43 characters).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    B64.encode(bytes)
}

/// What the database stores for a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new admin token (`cfa1_...`).
pub fn new_admin_token() -> String {
    format!("{ADMIN_PREFIX}{}", new_secret())
}

/// What `certfleet fleet host add` prints: everything an agent needs to enroll, in one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentToken {
    /// The server's API URL, e.g. `https://fleet.example.com:8443`.
    #[serde(rename = "u")]
    pub url: String,
    /// SHA-256 (hex) of the server's API certificate, pinned by the agent.
    #[serde(rename = "f")]
    pub fingerprint: String,
    /// The one-time secret.
    #[serde(rename = "s")]
    pub secret: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error(
        "this is not an enrollment token (it should start with {ENROLL_PREFIX}): copy the whole line `certfleet fleet host add` printed"
    )]
    WrongPrefix,
    #[error("the enrollment token is damaged ({0}): copy the whole line `certfleet fleet host add` printed")]
    Damaged(&'static str),
}

impl EnrollmentToken {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("plain strings serialize");
        format!("{ENROLL_PREFIX}{}", B64.encode(json))
    }

    pub fn decode(s: &str) -> Result<Self, TokenError> {
        let body = s
            .trim()
            .strip_prefix(ENROLL_PREFIX)
            .ok_or(TokenError::WrongPrefix)?;
        let json = B64
            .decode(body)
            .map_err(|_| TokenError::Damaged("not base64url"))?;
        let t: EnrollmentToken =
            serde_json::from_slice(&json).map_err(|_| TokenError::Damaged("not the expected fields"))?;
        if url::Url::parse(&t.url)
            .map(|u| u.scheme() != "https")
            .unwrap_or(true)
        {
            return Err(TokenError::Damaged("the server URL is not https"));
        }
        if t.fingerprint.len() != 64 || !t.fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Damaged("the fingerprint is not 64 hex digits"));
        }
        if t.secret.is_empty() {
            return Err(TokenError::Damaged("no secret"));
        }
        Ok(t)
    }
}

/// Constant-time comparison of two hex digests (no early exit on the first differing byte).
pub fn digests_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> EnrollmentToken {
        EnrollmentToken {
            url: "https://127.0.0.1:8443".into(),
            fingerprint: "ab".repeat(32),
            secret: new_secret(),
        }
    }

    #[test]
    fn enrollment_token_round_trips() {
        let t = token();
        let s = t.encode();
        assert!(s.starts_with(ENROLL_PREFIX));
        assert!(!s.contains(char::is_whitespace));
        assert_eq!(EnrollmentToken::decode(&format!("  {s}\n")).unwrap(), t);
    }

    #[test]
    fn damaged_tokens_say_what_is_wrong() {
        assert_eq!(EnrollmentToken::decode("cfa1_abc"), Err(TokenError::WrongPrefix));
        assert_eq!(
            EnrollmentToken::decode("cfe1_***"),
            Err(TokenError::Damaged("not base64url"))
        );
        let mut plain = token();
        plain.url = "http://127.0.0.1:8443".into();
        assert_eq!(
            EnrollmentToken::decode(&plain.encode()),
            Err(TokenError::Damaged("the server URL is not https"))
        );
        let mut s = token().encode();
        s.truncate(s.len() - 5);
        assert!(EnrollmentToken::decode(&s).is_err());
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_secret(&a).len(), 64);
        assert!(digests_equal(&hash_secret(&a), &hash_secret(&a)));
        assert!(!digests_equal(&hash_secret(&a), &hash_secret(&b)));
        assert!(new_admin_token().starts_with(ADMIN_PREFIX));
    }
}
