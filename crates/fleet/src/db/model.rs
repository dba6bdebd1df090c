//! What the fleet database holds, as Rust values, and their conversions to the API's wire types.

use serde::{Serialize, de::DeserializeOwned};

use crate::proto::{
    Assignment, CertState, CertificateView, ChallengeSettings, Custody, EventView, HostView, UnixTime,
};

use super::DbError;

/// The editable settings of a certificate (everything but its name, hosts and state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSettings {
    pub identifiers: Vec<String>,
    pub custody: Custody,
    pub key_type: String,
    pub challenge: ChallengeSettings,
    pub profile: Option<String>,
    pub comment: Option<String>,
    /// The ACME directory URL this certificate is issued from (`None`: the server's default).
    pub acme_server: Option<String>,
    /// The ACME account (its URL) used at that server (`None`: the server's default).
    pub acme_account: Option<String>,
}

impl From<&crate::proto::NewCertificate> for CertificateSettings {
    fn from(n: &crate::proto::NewCertificate) -> Self {
        CertificateSettings {
            identifiers: n.identifiers.clone(),
            custody: n.custody,
            key_type: n.key_type.clone(),
            challenge: n.challenge.clone(),
            profile: n.profile.clone(),
            comment: n.comment.clone(),
            acme_server: None,
            acme_account: None,
        }
    }
}

/// One issued certificate (the current or the previous one of a [`Certificate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub chain_pem: String,
    /// Hex, as the CA wrote it.
    pub serial: String,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    pub issuer: String,
    /// SHA-256 (hex) of the certificate's SubjectPublicKeyInfo.
    pub key_sha256: String,
    /// When it was committed.
    pub issued_at: UnixTime,
}

impl IssuedCert {
    /// `cert_pem` followed by `chain_pem`.
    pub fn fullchain_pem(&self) -> String {
        let mut s = self.cert_pem.clone();
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
        s.push_str(&self.chain_pem);
        s
    }
}

/// The CA's ACME Renewal Information for the current certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ari {
    pub start: UnixTime,
    pub end: UnixTime,
    /// When to ask the CA again (its Retry-After).
    pub next_poll: UnixTime,
    pub explanation_url: Option<String>,
}

/// Which server node is renewing a certificate, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until: UnixTime,
}

/// A certificate as stored, without the private keys (see [`super::FleetDb::server_keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub id: i64,
    pub name: String,
    pub settings: CertificateSettings,
    pub enabled: bool,
    pub created_at: UnixTime,
    /// How many certificates were committed for it (0: never issued).
    pub version: i64,
    pub current: Option<IssuedCert>,
    pub previous: Option<IssuedCert>,
    pub ari: Option<Ari>,
    pub last_attempt: Option<UnixTime>,
    pub consecutive_failures: u32,
    pub next_attempt: Option<UnixTime>,
    pub next_attempt_reason: Option<String>,
    pub last_error: Option<String>,
    pub lease: Option<Lease>,
}

impl Certificate {
    /// The state an operator sees at `now`.
    pub fn state(&self, now: UnixTime) -> CertState {
        if !self.enabled {
            CertState::Disabled
        } else if self.lease.as_ref().is_some_and(|l| l.until > now) {
            CertState::Renewing
        } else if self.current.as_ref().is_some_and(|c| c.not_after <= now) {
            CertState::Expired
        } else if self.consecutive_failures > 0 {
            CertState::Failing
        } else if self.current.is_none() {
            CertState::Pending
        } else {
            CertState::Valid
        }
    }

    pub fn view(&self, hosts: Vec<String>, now: UnixTime) -> CertificateView {
        let s = &self.settings;
        let cur = self.current.as_ref();
        CertificateView {
            name: self.name.clone(),
            identifiers: s.identifiers.clone(),
            enabled: self.enabled,
            custody: s.custody,
            key_type: s.key_type.clone(),
            challenge: s.challenge.clone(),
            profile: s.profile.clone(),
            comment: s.comment.clone(),
            state: self.state(now),
            hosts,
            serial: cur.map(|c| c.serial.clone()),
            not_before: cur.map(|c| c.not_before),
            not_after: cur.map(|c| c.not_after),
            issuer: cur.map(|c| c.issuer.clone()),
            next_attempt: self.next_attempt,
            next_attempt_reason: self.next_attempt_reason.clone(),
            last_attempt: self.last_attempt,
            consecutive_failures: self.consecutive_failures,
            last_error: self.last_error.clone(),
        }
    }

    /// What the agent API lists for this certificate on one host.
    pub fn assignment(&self, csr_keys: Vec<String>) -> Assignment {
        Assignment {
            certificate: self.name.clone(),
            identifiers: self.settings.identifiers.clone(),
            custody: self.settings.custody,
            key_type: self.settings.key_type.clone(),
            serial: self.current.as_ref().map(|c| c.serial.clone()),
            not_after: self.current.as_ref().map(|c| c.not_after),
            csr_keys,
        }
    }
}

/// The server-custody private keys of a certificate, encrypted by the caller (opaque bytes here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerKeys {
    pub current: Option<Vec<u8>>,
    pub previous: Option<Vec<u8>>,
}

/// A newly issued certificate to commit ([`super::FleetDb::commit_issued`]).
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// Its `issued_at` is the commit time (last attempt, event time).
    pub cert: &'a IssuedCert,
    /// Server custody: the encrypted private key. Agent custody: `None`.
    pub key_blob: Option<&'a [u8]>,
    /// The node that must still hold the renewal lease (`None`: no lease check).
    pub lease_owner: Option<&'a str>,
    /// Agent custody: the CSR the certificate was issued for, marked used by its serial.
    pub csr_id: Option<i64>,
    pub next_attempt: UnixTime,
    pub next_attempt_reason: &'a str,
    /// Who did it, for the event log (`server`, `admin`, ...).
    pub actor: &'a str,
    /// Issued elsewhere and brought in (`certfleet import --fleet`): logged as `imported`.
    pub imported: bool,
}

/// A failed renewal attempt ([`super::FleetDb::record_failure`]).
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    pub now: UnixTime,
    pub error: &'a str,
    /// When to retry (the caller's backoff).
    pub next_attempt: UnixTime,
    pub next_attempt_reason: &'a str,
    pub lease_owner: Option<&'a str>,
    pub actor: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub id: i64,
    pub name: String,
    pub created_at: UnixTime,
    pub enrolled_at: Option<UnixTime>,
    /// SHA-256 (hex) of the DER of the host's TLS client certificate.
    pub client_cert_sha256: Option<String>,
    pub client_cert_serial: Option<String>,
    pub last_seen: Option<UnixTime>,
    pub agent_version: Option<String>,
}

impl Host {
    pub fn view(&self, certificates: Vec<String>) -> HostView {
        HostView {
            name: self.name.clone(),
            created_at: self.created_at,
            enrolled_at: self.enrolled_at,
            last_seen: self.last_seen,
            agent_version: self.agent_version.clone(),
            certificates,
        }
    }
}

/// The client certificate a host got at enrollment.
#[derive(Debug, Clone, Copy)]
pub struct HostCredential<'a> {
    pub cert_sha256: &'a str,
    pub serial: &'a str,
    pub agent_version: &'a str,
}

/// A CSR a host uploaded for a certificate of agent custody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    pub id: i64,
    pub certificate: String,
    pub host: String,
    pub der: Vec<u8>,
    /// SHA-256 (hex) of the CSR's SubjectPublicKeyInfo.
    pub spki_sha256: String,
    pub uploaded_at: UnixTime,
    /// Serial of the certificate issued for it, once used.
    pub used_by_serial: Option<String>,
}

/// One line of the append-only event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub at: UnixTime,
    pub certificate: Option<String>,
    pub host: Option<String>,
    pub kind: String,
    pub actor: String,
    pub detail: String,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        EventView {
            at: e.at,
            kind: e.kind,
            host: e.host,
            actor: e.actor,
            detail: e.detail,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    pub at: UnixTime,
    pub certificate: Option<&'a str>,
    pub host: Option<&'a str>,
    pub kind: &'a str,
    pub actor: &'a str,
    pub detail: &'a str,
}

/// An ACME account of the server at one CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The CA's directory URL.
    pub server_url: String,
    pub account_url: String,
    pub key_pem: String,
    pub contact: Vec<String>,
    pub created_at: UnixTime,
}

/// A pending http-01 challenge, answered by whichever node's responder gets the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub token: String,
    pub key_authorization: String,
    pub identifier: String,
    pub expires_at: UnixTime,
}

/// An enum stored as its serde name (`agent`, `config-test-failed`, ...).
pub(crate) fn enum_to_str<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => unreachable!("not a unit enum: {other:?}"),
    }
}

pub(crate) fn enum_from_str<T: DeserializeOwned>(
    s: &str,
    what: &'static str,
    name: &str,
) -> Result<T, DbError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|e| DbError::corrupt(what, name, e))
}

pub(crate) fn json_from_str<T: DeserializeOwned>(
    s: &str,
    what: &'static str,
    name: &str,
) -> Result<T, DbError> {
    serde_json::from_str(s).map_err(|e| DbError::corrupt(what, name, e))
}

pub(crate) fn json_to_string<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}
