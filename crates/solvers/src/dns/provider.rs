//! The one trait every DNS provider implements (lego-style: one file per provider).

use serde::{Deserialize, Serialize};

use super::DnsError;
use super::lookup::Resolver;

/// One TXT value to put at one name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TxtRecord {
    /// The domain being validated, without `*.` (certbot's `CERTBOT_DOMAIN`).
    pub domain: String,
    /// Where the TXT goes: `_acme-challenge.<domain>`, or the end of its CNAME chain.
    /// Lower case, no trailing dot.
    pub fqdn: String,
    /// The zone apex holding `fqdn`, when known (found by SOA lookup).
    pub zone: Option<String>,
    /// base64url(SHA-256(key authorization)).
    pub value: String,
}

/// Adds and removes TXT values. Implementations must add to the record set (two values at one
/// name must both be visible: wildcard + apex) and remove only the given value.
#[async_trait::async_trait]
pub trait DnsProvider: Send + Sync {
    /// Short name for messages and the state file (`rfc2136`, `cloudflare`, ...).
    fn name(&self) -> &'static str;

    /// Check the provider is usable before an order is placed (credentials parse, ...).
    async fn preflight(&self) -> Result<(), DnsError> {
        Ok(())
    }

    /// Add `record.value` at `record.fqdn`. Returns the zone written to, when the provider
    /// knows it.
    async fn set_txt(&self, record: &TxtRecord) -> Result<Option<String>, DnsError>;

    /// Remove `record.value` at `record.fqdn`, leaving other values alone. Removing a value
    /// that is not there is not an error.
    async fn remove_txt(&self, record: &TxtRecord) -> Result<(), DnsError>;

    /// Add all records; one result per record, same order. Default: all concurrently.
    async fn set_all(&self, records: &[TxtRecord]) -> Vec<Result<Option<String>, DnsError>> {
        futures::future::join_all(records.iter().map(|r| self.set_txt(r))).await
    }

    /// Remove all records; one result per record. Default: all concurrently.
    async fn remove_all(&self, records: &[TxtRecord]) -> Vec<Result<(), DnsError>> {
        futures::future::join_all(records.iter().map(|r| self.remove_txt(r))).await
    }

    /// Whether a record left by a crashed run may be removed with [`Self::remove_txt`] on the
    /// next run. False for hooks and manual mode, where removal is the user's business.
    fn removes_stale(&self) -> bool {
        true
    }

    /// The server to ask for CNAME/SOA/NS lookups when none is configured.
    fn default_resolver(&self) -> Option<Resolver> {
        None
    }
}
