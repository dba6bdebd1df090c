//! ACME Renewal Information (RFC 9773): the CertID and the suggested window.

use serde::Deserialize;
use time::OffsetDateTime;

use crate::jws::b64;

/// `base64url(AKI keyIdentifier) "." base64url(serial DER bytes)`, RFC 9773 section 4.1.
pub fn cert_id(authority_key_id: &[u8], serial: &[u8]) -> String {
    format!("{}.{}", b64(authority_key_id), b64(serial))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalInfo {
    pub window_start: OffsetDateTime,
    pub window_end: OffsetDateTime,
    pub explanation_url: Option<String>,
    /// When the CA wants to be asked again.
    pub retry_after: Option<std::time::Duration>,
}

impl RenewalInfo {
    /// A renewalInfo answer's body (RFC 9773 section 4.2), with the answer's `Retry-After`.
    /// The error says what is wrong, for the caller to put next to the URL.
    pub fn from_json(body: &[u8], retry_after: Option<std::time::Duration>) -> Result<Self, String> {
        let parsed: RenewalInfoJson = serde_json::from_slice(body).map_err(|e| format!("bad JSON: {e}"))?;
        let parse = |s: &str| {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|e| format!("bad time {s:?}: {e}"))
        };
        Ok(RenewalInfo {
            window_start: parse(&parsed.suggested_window.start)?,
            window_end: parse(&parsed.suggested_window.end)?,
            explanation_url: parsed.explanation_url,
            retry_after,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RenewalInfoJson {
    suggested_window: WindowJson,
    #[serde(rename = "explanationURL")]
    explanation_url: Option<String>,
}

#[derive(Deserialize)]
struct WindowJson {
    start: String,
    end: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9773_example_cert_id() {
        // RFC 9773 section 4.1 example.
        let aki = [
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C,
            0xDE, 0x01, 0xC8, 0xD4,
        ];
        let serial = [0x00, 0x87, 0x65, 0x43, 0x21];
        assert_eq!(cert_id(&aki, &serial), "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    }
}
