//! The fleet API's wire types: what the admin CLI, the agent and the server exchange as JSON
//! over HTTPS. One definition for all three sides so they cannot drift apart.
//!
//! Routes (all under [`API_PREFIX`]):
//!
//! | route | who | body -> answer |
//! |---|---|---|
//! | `POST hosts` | admin | [`NewHost`] -> [`HostEnrollment`] |
//! | `GET hosts` | admin | -> `Vec<`[`HostView`]`>` |
//! | `DELETE hosts/{host}` | admin | -> 204 |
//! | `POST certificates` | admin | [`NewCertificate`] -> [`CertificateView`] |
//! | `GET certificates` | admin | -> `Vec<`[`CertificateView`]`>` |
//! | `GET certificates/{name}` | admin | -> [`CertificateDetail`] |
//! | `POST certificates/{name}/renew` | admin | -> [`CertificateView`] (renewal scheduled now) |
//! | `POST certificates/{name}/enable`, `.../disable` | admin | -> [`CertificateView`] |
//! | `PUT certificates/{name}/hosts/{host}` | admin | -> 204 (assign) |
//! | `DELETE certificates/{name}/hosts/{host}` | admin | -> 204 (unassign) |
//! | `POST notify/test` | admin | -> [`NotifyTestReport`] (a test message through each channel) |
//! | `POST enroll` | enrollment token | [`EnrollRequest`] -> [`EnrollResponse`] |
//! | `GET agent/assignments` | agent | -> `Vec<`[`Assignment`]`>` |
//! | `GET agent/certificates/{name}` | agent | -> [`Delivery`] (404 when not assigned) |
//! | `POST agent/csr` | agent | [`CsrUpload`] -> 204 |
//! | `POST agent/report` | agent | [`InstallReport`] -> 204 |
//!
//! Errors are [`ApiError`] bodies with a 4xx/5xx status.
//!
//! Admins authenticate with `Authorization: Bearer <admin token>`; agents with the TLS client
//! certificate the server's internal CA issued them at enrollment. The two credential kinds are
//! different on purpose: an agent credential can never act as an admin.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Version 1 of the API; a breaking change gets a new prefix.
pub const API_PREFIX: &str = "/api/v1";

/// Timestamps on the wire: seconds since the Unix epoch (UTC).
pub type UnixTime = i64;

/// Who makes a certificate's private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Custody {
    /// The host makes the key and uploads only CSRs; the key never leaves the host.
    #[default]
    Agent,
    /// The server makes the key (one certificate shared by several hosts), keeps it encrypted
    /// at rest and delivers it only to assigned hosts.
    Server,
}

impl Custody {
    pub fn as_str(&self) -> &'static str {
        match self {
            Custody::Agent => "agent",
            Custody::Server => "server",
        }
    }
}

/// How the server proves control of the names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ChallengeSettings {
    /// Answered by the server's own http-01 responder (`--http-01-listen`); front-ends proxy
    /// `/.well-known/acme-challenge/` to it.
    #[serde(rename = "http-01")]
    Http01,
    /// A DNS provider of the solvers crate, with a credentials file on the server.
    #[serde(rename = "dns-01")]
    Dns01 {
        /// Provider name as in the registry, e.g. `rfc2136`, `cloudflare`.
        provider: String,
        /// Path of the credentials file on the server (mode 0600/0400).
        credentials: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        propagation_seconds: Option<u64>,
    },
}

/// Key type as the CLI spells it (`ecdsa-p256`, `ecdsa-p384`, `rsa2048`, `rsa3072`, `rsa4096`).
pub type KeyTypeName = String;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewHost {
    /// 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit.
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        min_length = 1,
        max_length = 64
    )]
    pub name: String,
}

/// Answer to `host add`: the one-time enrollment token to give `certfleet agent enroll`.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostEnrollment {
    pub host: String,
    /// Carries the server URL, the API fingerprint and the secret (see [`crate::token`]).
    pub enrollment_token: String,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostView {
    pub name: String,
    pub created_at: UnixTime,
    pub enrolled_at: Option<UnixTime>,
    pub last_seen: Option<UnixTime>,
    pub agent_version: Option<String>,
    /// Certificates assigned to this host.
    pub certificates: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewCertificate {
    /// 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit.
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        min_length = 1,
        max_length = 64
    )]
    pub name: String,
    /// DNS names (IDN allowed, normalised by the server) or IP addresses.
    #[schema(min_items = 1)]
    pub identifiers: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub custody: Custody,
    #[serde(default = "default_key_type")]
    #[schema(pattern = "^(ecdsa-p256|ecdsa-p384|rsa2048|rsa3072|rsa4096)$")]
    pub key_type: KeyTypeName,
    pub challenge: ChallengeSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `ecdsa-p256`, `ecdsa-p384`, `rsa2048`, `rsa3072`, `rsa4096`.
pub fn key_spec(name: &str) -> Option<certfleet_core::KeySpec> {
    match name {
        "ecdsa-p256" => Some(certfleet_core::KeySpec::EcdsaP256),
        "ecdsa-p384" => Some(certfleet_core::KeySpec::EcdsaP384),
        "rsa2048" => Some(certfleet_core::KeySpec::Rsa(2048)),
        "rsa3072" => Some(certfleet_core::KeySpec::Rsa(3072)),
        "rsa4096" => Some(certfleet_core::KeySpec::Rsa(4096)),
        _ => None,
    }
}

/// The name [`key_spec`] reads back, for the key types the fleet issues.
pub fn key_type_name(spec: certfleet_core::KeySpec) -> Option<&'static str> {
    use certfleet_core::KeySpec;
    match spec {
        KeySpec::EcdsaP256 => Some("ecdsa-p256"),
        KeySpec::EcdsaP384 => Some("ecdsa-p384"),
        KeySpec::Rsa(2048) => Some("rsa2048"),
        KeySpec::Rsa(3072) => Some("rsa3072"),
        KeySpec::Rsa(4096) => Some("rsa4096"),
        _ => None,
    }
}

pub fn default_key_type() -> KeyTypeName {
    "ecdsa-p256".to_string()
}

/// The state a certificate is in, as the operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CertState {
    /// Never issued yet (waiting for a CSR from its host, or for its first renewal slot).
    Pending,
    Valid,
    Renewing,
    /// The last attempt failed; retried with backoff.
    Failing,
    Expired,
    Disabled,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertificateView {
    pub name: String,
    pub identifiers: Vec<String>,
    pub enabled: bool,
    pub custody: Custody,
    pub key_type: KeyTypeName,
    pub challenge: ChallengeSettings,
    pub profile: Option<String>,
    pub comment: Option<String>,
    pub state: CertState,
    pub hosts: Vec<String>,
    /// Current certificate, if issued.
    pub serial: Option<String>,
    pub not_before: Option<UnixTime>,
    pub not_after: Option<UnixTime>,
    pub issuer: Option<String>,
    /// When the renewal loop will next try, and why then.
    pub next_attempt: Option<UnixTime>,
    pub next_attempt_reason: Option<String>,
    pub last_attempt: Option<UnixTime>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}

/// `GET certificates` answers pages of this many certificates unless `limit` says otherwise
/// (`?after=NAME&limit=N`, at most [`MAX_PAGE`]); a shorter page is the last.
pub const LIST_PAGE: u32 = 1000;
pub const MAX_PAGE: u32 = 10_000;

/// `GET certificates` query: the page after certificate `after`, by name.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Page size, 1 to [`MAX_PAGE`] (default [`LIST_PAGE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 10000)]
    #[schema(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

/// What one host reports about one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InstallState {
    /// Installed and the endpoint serves the expected certificate (or no endpoint to verify).
    Verified,
    /// Files written and reloaded; no `verify` endpoint is configured.
    Installed,
    /// The config test failed: old files kept, no reload.
    ConfigTestFailed,
    /// Reloaded, but the endpoint served another certificate: old files restored.
    RolledBack,
    /// Writing, reloading or verifying failed otherwise.
    Failed,
    /// Assigned, but the agent's config has no `[[install]]` for it.
    NotConfigured,
    /// Waiting for the server to issue (agent custody: CSR uploaded).
    Waiting,
}

impl InstallState {
    /// The state as the API and `cert show` spell it (kebab-case).
    pub fn as_str(self) -> &'static str {
        match self {
            InstallState::Verified => "verified",
            InstallState::Installed => "installed",
            InstallState::ConfigTestFailed => "config-test-failed",
            InstallState::RolledBack => "rolled-back",
            InstallState::Failed => "failed",
            InstallState::NotConfigured => "not-configured",
            InstallState::Waiting => "waiting",
        }
    }
}

impl fmt::Display for InstallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostInstallView {
    pub host: String,
    pub state: Option<InstallState>,
    /// Serial of the certificate the host installed.
    pub installed_serial: Option<String>,
    /// Serial the host's endpoint served at its last verification.
    pub served_serial: Option<String>,
    pub endpoint: Option<String>,
    pub error: Option<String>,
    pub reported_at: Option<UnixTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventView {
    pub at: UnixTime,
    /// `issued`, `renewed`, `failed`, `fetched`, `installed`, `verified`, `rolled-back`,
    /// `assigned`, `unassigned`, `enabled`, `disabled`, `renew-requested`, ...
    pub kind: String,
    pub host: Option<String>,
    /// `admin`, `server`, or `host:NAME`.
    pub actor: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertificateDetail {
    #[serde(flatten)]
    pub certificate: CertificateView,
    pub installs: Vec<HostInstallView>,
    /// Newest first.
    pub events: Vec<EventView>,
}

/// `POST certificates/{name}/import`: a certificate issued elsewhere (a certbot lineage taken
/// over by `certfleet import --fleet`) becomes the fleet certificate's current one, so the
/// server renews it when it is due instead of at once. Never a private key: imports are for
/// agent custody, whose key stays on its host.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportCertificate {
    /// The leaf (PEM).
    pub cert_pem: String,
    /// The intermediates (PEM, possibly empty).
    pub chain_pem: String,
}

/// `POST enroll`: the host proves it holds the one-time token and asks for its credential.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnrollRequest {
    /// The secret part of the enrollment token (never the whole token: URL and fingerprint
    /// are the client's business).
    pub secret: String,
    /// PEM CSR for the host's TLS client key, made on the host (the key stays there).
    pub csr_pem: String,
    pub agent_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnrollResponse {
    pub host: String,
    /// The host's client certificate (mTLS), issued by the server's internal CA.
    pub client_cert_pem: String,
    /// The internal CA's certificate.
    pub ca_cert_pem: String,
}

/// One certificate assigned to the asking host.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assignment {
    pub certificate: String,
    pub identifiers: Vec<String>,
    pub custody: Custody,
    pub key_type: KeyTypeName,
    /// Serial of the newest issued certificate, if any.
    pub serial: Option<String>,
    pub not_after: Option<UnixTime>,
    /// Agent custody: SHA-256 (hex) of the SubjectPublicKeyInfo of every key the server holds
    /// an unused CSR for from this host, so the agent knows whether to upload the next one.
    #[serde(default)]
    pub csr_keys: Vec<String>,
}

/// `GET agent/certificates/{name}`: what the server gives this host for a certificate.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub certificate: String,
    pub identifiers: Vec<String>,
    pub serial: String,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    pub cert_pem: String,
    pub chain_pem: String,
    pub fullchain_pem: String,
    /// Server custody only: the private key (PKCS#8 PEM). Agent custody: `None`; the agent
    /// finds its own key by [`Delivery::key_sha256`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<String>,
    /// SHA-256 (hex) of the certificate's SubjectPublicKeyInfo.
    pub key_sha256: String,
}

/// `POST agent/csr`: a CSR for a certificate of agent custody.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CsrUpload {
    pub certificate: String,
    pub csr_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstallReport {
    pub certificate: String,
    pub state: InstallState,
    pub installed_serial: Option<String>,
    pub served_serial: Option<String>,
    /// `HOST:PORT` the agent verified against.
    pub endpoint: Option<String>,
    /// Plain words: what failed and what the host's operator should do.
    pub error: Option<String>,
    pub agent_version: String,
}

/// Every non-2xx answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiError {
    /// Stable machine-readable kind: `unauthorized`, `forbidden`, `not-found`, `conflict`,
    /// `invalid`, `rate-limited`, `internal`.
    pub error: String,
    /// What was wrong and what to do.
    pub message: String,
}

/// Debug output that may end up in a log: secrets (tokens, private keys) are shown redacted.
const REDACTED: &str = "<redacted>";

impl fmt::Debug for HostEnrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostEnrollment")
            .field("host", &self.host)
            .field("enrollment_token", &REDACTED)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("secret", &REDACTED)
            .field("csr_pem", &self.csr_pem)
            .field("agent_version", &self.agent_version)
            .finish()
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("certificate", &self.certificate)
            .field("identifiers", &self.identifiers)
            .field("serial", &self.serial)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &self.key_pem.as_ref().map(|_| REDACTED))
            .field("key_sha256", &self.key_sha256)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_settings_wire_format() {
        let http = serde_json::to_value(ChallengeSettings::Http01).unwrap();
        assert_eq!(http, serde_json::json!({"type": "http-01"}));
        let dns: ChallengeSettings = serde_json::from_value(serde_json::json!({
            "type": "dns-01", "provider": "rfc2136", "credentials": "/etc/certfleet/rfc2136.ini"
        }))
        .unwrap();
        assert_eq!(
            dns,
            ChallengeSettings::Dns01 {
                provider: "rfc2136".into(),
                credentials: "/etc/certfleet/rfc2136.ini".into(),
                propagation_seconds: None
            }
        );
    }

    #[test]
    fn new_certificate_defaults() {
        let c: NewCertificate = serde_json::from_value(serde_json::json!({
            "name": "www", "identifiers": ["www.example.com"], "challenge": {"type": "http-01"}
        }))
        .unwrap();
        assert_eq!(c.custody, Custody::Agent);
        assert_eq!(c.key_type, "ecdsa-p256");
        assert!(c.hosts.is_empty());
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let d = Delivery {
            certificate: "www".into(),
            identifiers: vec!["www.example.test".into()],
            serial: "01".into(),
            not_before: 0,
            not_after: 1,
            cert_pem: String::new(),
            chain_pem: String::new(),
            fullchain_pem: String::new(),
            key_pem: Some("-----BEGIN PRIVATE KEY-----\nsecret\n".into()),
            key_sha256: "ab".into(),
        };
        let e = EnrollRequest {
            secret: "s3cr3t".into(),
            csr_pem: String::new(),
            agent_version: "1".into(),
        };
        let h = HostEnrollment {
            host: "web1".into(),
            enrollment_token: "cfe1_s3cr3t".into(),
            expires_at: 0,
        };
        for text in [format!("{d:?}"), format!("{e:?}"), format!("{h:?}")] {
            assert!(
                !text.contains("PRIVATE KEY") && !text.contains("s3cr3t"),
                "{text}"
            );
            assert!(text.contains("<redacted>"), "{text}");
        }
    }

    #[test]
    fn install_state_names_are_the_wire_names() {
        use InstallState::*;
        for st in [
            Verified,
            Installed,
            ConfigTestFailed,
            RolledBack,
            Failed,
            NotConfigured,
            Waiting,
        ] {
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{st}\""));
        }
    }
}

/// How one notification channel took a message (`POST notify/test`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelResult {
    /// The channel as the server names it, e.g. `email to ops@example.com via smtp://relay:587`
    /// (never with credentials).
    pub channel: String,
    pub ok: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Answer to `POST notify/test`: one entry per configured channel (none: nothing configured).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotifyTestReport {
    pub channels: Vec<ChannelResult>,
}

/// `PUT admin/password`: the dashboard's login password (the server stores only its scrypt hash).
#[derive(Clone, Serialize, Deserialize)]
pub struct NewPassword {
    pub password: String,
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword { password: \"***\" }")
    }
}
