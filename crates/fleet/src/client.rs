//! [`FleetClient`]: the typed HTTPS client of the fleet API, used by the admin CLI
//! (`certfleet fleet ...`, bearer token) and by the agent (client certificate).
//!
//! Trust in the server is explicit ([`ServerTrust`]): a pinned fingerprint (from the
//! enrollment token or `--fingerprint`; see [`crate::tls`]), a CA bundle, or the system roots
//! for a server behind a publicly trusted certificate. The rustls config is built here and
//! handed to reqwest, so exactly the roots asked for are used and nothing else is loaded.
//!
//! Errors say which URL and why in plain words ([`ClientError`]): the innermost cause of a
//! connection failure ("connection refused"), the server's own [`ApiError`] message for a
//! non-2xx answer, and for a pin mismatch both fingerprints and what it may mean.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls_platform_verifier::BuilderVerifierExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::proto::{
    API_PREFIX, ApiError, Assignment, CertificateDetail, CertificateView, CsrUpload, Delivery, EnrollRequest,
    EnrollResponse, HostEnrollment, HostView, ImportCertificate, InstallReport, LIST_PAGE, NewCertificate,
    NewHost,
};
use crate::tls::{ALPN, PinMismatch, PinnedServerVerifier, provider};

const USER_AGENT: &str = concat!("certfleet/", env!("CARGO_PKG_VERSION"));

/// How the client decides that it talks to the real fleet server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// SHA-256 (hex) of the server's certificate, as `certfleet serve` prints it and the
    /// enrollment token carries it.
    Pin(String),
    /// PEM certificates to trust as roots (the server uses `--tls-cert` from a private CA).
    CaBundle(String),
    /// The operating system's roots (the server has a publicly trusted certificate).
    SystemRoots,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid fleet server URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    /// A bad pin, CA bundle or client credential.
    #[error("{0}")]
    Setup(String),
    #[error(
        "the server at {url} presented a certificate with fingerprint {presented}, expected {expected} (from the enrollment token / --fingerprint): someone may be intercepting, or the server's certificate was replaced"
    )]
    PinMismatch {
        url: String,
        presented: String,
        expected: String,
    },
    #[error("cannot talk to the fleet server at {url}: {cause}")]
    Connect { url: String, cause: String },
    /// A non-2xx answer; `kind` and `message` come from the server's [`ApiError`].
    #[error("the fleet server answered {status}: {message} ({kind})")]
    Api {
        status: u16,
        kind: String,
        message: String,
    },
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
}

impl ClientError {
    /// The HTTP status of an [`ClientError::Api`] answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn setup(what: impl fmt::Display) -> ClientError {
    ClientError::Setup(what.to_string())
}

/// Builds a [`FleetClient`]; see [`FleetClient::builder`].
pub struct FleetClientBuilder {
    url: String,
    trust: ServerTrust,
    bearer_token: Option<String>,
    identity: Option<(String, String)>,
    timeout: Duration,
}

impl fmt::Debug for FleetClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetClientBuilder")
            .field("url", &self.url)
            .field("trust", &self.trust)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "[secret]"))
            .field("client_identity", &self.identity.as_ref().map(|_| "[secret]"))
            .finish()
    }
}

impl FleetClientBuilder {
    /// Admin requests: `Authorization: Bearer <token>` on every request.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// Agent requests: the client certificate (PEM, leaf first) the internal CA issued and
    /// its private key (PEM).
    pub fn client_identity(mut self, cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Whole-request timeout (default 60 s). Connecting has its own 10 s limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn build(self) -> Result<FleetClient, ClientError> {
        let bad_url = |reason: &dyn fmt::Display| ClientError::Url {
            url: redact_url(&self.url),
            reason: reason.to_string(),
        };
        let base = url::Url::parse(self.url.trim()).map_err(|e| bad_url(&e))?;
        if base.scheme() != "https" {
            return Err(bad_url(&"the fleet API is HTTPS only: use https://"));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(bad_url(&"no host"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad_url(
                &"credentials do not go in the URL: use the admin token or the agent's certificate",
            ));
        }
        let tls = self.tls_config()?;
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| setup("the admin token holds characters a header cannot carry"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .https_only(true)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(self.timeout)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| setup(format!("HTTP client setup: {}", innermost_cause(&e))))?;
        let pin = match &self.trust {
            ServerTrust::Pin(pin) => Some(pin.clone()),
            _ => None,
        };
        Ok(FleetClient {
            inner: Arc::new(Inner {
                http,
                base,
                pin,
                has_token: self.bearer_token.is_some(),
                has_identity: self.identity.is_some(),
            }),
        })
    }

    fn tls_config(&self) -> Result<ClientConfig, ClientError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(format!("TLS setup: {e}")))?;
        let builder = match &self.trust {
            ServerTrust::Pin(pin) => {
                let verifier = PinnedServerVerifier::new(pin).ok_or_else(|| {
                    setup(format!(
                        "the server fingerprint {pin:?} is not a SHA-256 fingerprint (64 hex digits)"
                    ))
                })?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
            }
            ServerTrust::CaBundle(pem) => builder.with_root_certificates(roots_from_pem(pem)?),
            ServerTrust::SystemRoots => builder
                .with_platform_verifier()
                .map_err(|e| setup(format!("cannot use the system's root certificates: {e}")))?,
        };
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert_pem, key_pem)) => {
                let chain = certfleet_core::cert::pem_certificates(cert_pem)
                    .map_err(|e| setup(format!("the agent's client certificate: {e}")))?
                    .into_iter()
                    .map(CertificateDer::from)
                    .collect();
                // Never echo a parser's words about a private key.
                let key = certfleet_core::PrivateKey::from_pem(key_pem)
                    .map_err(|_| setup("the agent's client key is not a usable PEM private key"))?;
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()));
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| setup(format!("the agent's client certificate and key: {e}")))?
            }
        };
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// `url` without its user and password, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(mut parsed) => {
            if parsed.password().is_some() || !parsed.username().is_empty() {
                let _ = parsed.set_username("");
                let _ = parsed.set_password(None);
            }
            parsed.to_string()
        }
        // Unparsable: keep the scheme and what follows the last `@`.
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(start), Some(at)) if at > start => format!("{}***{}", &url[..start + 3], &url[at..]),
            _ => url.to_string(),
        },
    }
}

fn roots_from_pem(pem: &str) -> Result<rustls::RootCertStore, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let ders = certfleet_core::cert::pem_certificates(pem).map_err(|e| setup(format!("CA bundle: {e}")))?;
    for der in ders {
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| setup(format!("CA bundle: unusable certificate: {e}")))?;
    }
    Ok(roots)
}

struct Inner {
    http: reqwest::Client,
    base: url::Url,
    pin: Option<String>,
    has_token: bool,
    has_identity: bool,
}

/// The fleet API client. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct FleetClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for FleetClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetClient")
            .field("url", &self.inner.base.as_str())
            .field("pin", &self.inner.pin)
            .field("bearer_token", &self.inner.has_token.then_some("[secret]"))
            .field("client_identity", &self.inner.has_identity.then_some("[secret]"))
            .finish()
    }
}

impl FleetClient {
    /// `url` is the server's base URL, e.g. `https://fleet.example.com:8443` (the API lives
    /// under [`API_PREFIX`] below it).
    pub fn builder(url: &str, trust: ServerTrust) -> FleetClientBuilder {
        FleetClientBuilder {
            url: url.to_string(),
            trust,
            bearer_token: None,
            identity: None,
            timeout: Duration::from_secs(60),
        }
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        self.inner.base.as_str()
    }

    // ----- admin -----

    /// `POST hosts`: a new host and its one-time enrollment token.
    pub async fn add_host(&self, name: &str) -> Result<HostEnrollment, ClientError> {
        let body = NewHost {
            name: name.to_string(),
        };
        self.json(Method::POST, &["hosts"], Some(&body)).await
    }

    pub async fn list_hosts(&self) -> Result<Vec<HostView>, ClientError> {
        self.json(Method::GET, &["hosts"], NO_BODY).await
    }

    pub async fn remove_host(&self, name: &str) -> Result<(), ClientError> {
        self.empty(Method::DELETE, &["hosts", name], NO_BODY).await
    }

    pub async fn add_certificate(&self, cert: &NewCertificate) -> Result<CertificateView, ClientError> {
        self.json(Method::POST, &["certificates"], Some(cert)).await
    }

    /// Every certificate, fetched page by page ([`crate::proto::LIST_PAGE`] at a time).
    pub async fn list_certificates(&self) -> Result<Vec<CertificateView>, ClientError> {
        let mut all: Vec<CertificateView> = Vec::new();
        loop {
            let mut url = self.endpoint(&["certificates"]);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("limit", &LIST_PAGE.to_string());
                if let Some(last) = all.last() {
                    q.append_pair("after", &last.name);
                }
            }
            let page: Vec<CertificateView> = self.json_at(Method::GET, url, NO_BODY).await?;
            let done = page.len() < LIST_PAGE as usize;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    pub async fn show_certificate(&self, name: &str) -> Result<CertificateDetail, ClientError> {
        self.json(Method::GET, &["certificates", name], NO_BODY).await
    }

    /// Schedule a renewal now.
    pub async fn renew_certificate(&self, name: &str) -> Result<CertificateView, ClientError> {
        self.json(Method::POST, &["certificates", name, "renew"], NO_BODY)
            .await
    }

    pub async fn enable_certificate(&self, name: &str) -> Result<CertificateView, ClientError> {
        self.json(Method::POST, &["certificates", name, "enable"], NO_BODY)
            .await
    }

    pub async fn disable_certificate(&self, name: &str) -> Result<CertificateView, ClientError> {
        self.json(Method::POST, &["certificates", name, "disable"], NO_BODY)
            .await
    }

    /// Make a certificate issued elsewhere (its leaf and chain, never a key) the current one
    /// of agent-custody certificate `name`.
    pub async fn import_certificate(
        &self,
        name: &str,
        cert: &ImportCertificate,
    ) -> Result<CertificateView, ClientError> {
        self.json(Method::POST, &["certificates", name, "import"], Some(cert))
            .await
    }

    /// Assign certificate `name` to `host`.
    pub async fn assign(&self, name: &str, host: &str) -> Result<(), ClientError> {
        self.empty(Method::PUT, &["certificates", name, "hosts", host], NO_BODY)
            .await
    }

    pub async fn unassign(&self, name: &str, host: &str) -> Result<(), ClientError> {
        self.empty(Method::DELETE, &["certificates", name, "hosts", host], NO_BODY)
            .await
    }

    /// Ask the server to send a test message through each notification channel.
    pub async fn notify_test(&self) -> Result<crate::proto::NotifyTestReport, ClientError> {
        self.json(Method::POST, &["notify", "test"], NO_BODY).await
    }

    /// Sets the dashboard's login password (ends every dashboard session).
    pub async fn set_dashboard_password(&self, password: &str) -> Result<(), ClientError> {
        let body = crate::proto::NewPassword {
            password: password.to_string(),
        };
        self.empty(Method::PUT, &["admin", "password"], Some(&body)).await
    }

    // ----- enrollment -----

    pub async fn enroll(&self, request: &EnrollRequest) -> Result<EnrollResponse, ClientError> {
        self.json(Method::POST, &["enroll"], Some(request)).await
    }

    // ----- agent -----

    /// The certificates assigned to the asking host.
    pub async fn assignments(&self) -> Result<Vec<Assignment>, ClientError> {
        self.json(Method::GET, &["agent", "assignments"], NO_BODY).await
    }

    /// The newest certificate `name` for this host (an [`ClientError::Api`] 404 when it is not
    /// assigned to it or not issued yet).
    pub async fn certificate(&self, name: &str) -> Result<Delivery, ClientError> {
        self.json(Method::GET, &["agent", "certificates", name], NO_BODY)
            .await
    }

    pub async fn upload_csr(&self, upload: &CsrUpload) -> Result<(), ClientError> {
        self.empty(Method::POST, &["agent", "csr"], Some(upload)).await
    }

    pub async fn report(&self, report: &InstallReport) -> Result<(), ClientError> {
        self.empty(Method::POST, &["agent", "report"], Some(report)).await
    }

    // ----- plumbing -----

    fn endpoint(&self, segments: &[&str]) -> url::Url {
        let mut url = self.inner.base.clone();
        {
            let mut path = url.path_segments_mut().expect("checked: has a host");
            path.pop_if_empty();
            path.extend(API_PREFIX.split('/').filter(|s| !s.is_empty()));
            // Each segment is percent-encoded: a name cannot add path levels.
            path.extend(segments);
        }
        url
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<(String, Vec<u8>), ClientError> {
        self.send_to(method, self.endpoint(segments), body).await
    }

    async fn send_to(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<(String, Vec<u8>), ClientError> {
        let mut request = self.inner.http.request(method, url.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        Ok((url.to_string(), body.to_vec()))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        self.json_at(method, self.endpoint(segments), body).await
    }

    async fn json_at<T: DeserializeOwned>(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let (url, bytes) = self.send_to(method, url, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url,
            reason: format!("not the expected JSON ({e})"),
        })
    }

    async fn empty(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<(), ClientError> {
        self.send(method, segments, body).await.map(|_| ())
    }

    fn transport_error(&self, e: &reqwest::Error) -> ClientError {
        // The server's base URL, not the route: the route adds nothing to "cannot connect".
        let url = self.inner.base.as_str().trim_end_matches('/').to_string();
        if let Some(m) = find_pin_mismatch(e) {
            return ClientError::PinMismatch {
                url,
                presented: m.presented,
                expected: m.expected,
            };
        }
        let cause = if e.is_timeout() {
            "timed out".to_string()
        } else {
            innermost_cause(e)
        };
        ClientError::Connect { url, cause }
    }
}

/// `None` for a request without a body (a typed `None` for the generic parameter).
const NO_BODY: Option<&()> = None;

/// A non-2xx answer: the server's [`ApiError`], or what there is of it.
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => ClientError::Api {
            status: status.as_u16(),
            kind: e.error,
            message: e.message,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = if text.is_empty() {
                status.canonical_reason().unwrap_or("no explanation").to_string()
            } else {
                text.chars().take(300).collect()
            };
            ClientError::Api {
                status: status.as_u16(),
                kind: "http".into(),
                message,
            }
        }
    }
}

/// Every error in `e`'s chain, looking inside `io::Error`s too (whose `source()` skips the
/// error they wrap).
fn error_chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut chain = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        chain.push(err);
        next = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    chain
}

fn find_pin_mismatch(e: &reqwest::Error) -> Option<PinMismatch> {
    error_chain(e)
        .into_iter()
        .find_map(|err| match err.downcast_ref::<rustls::Error>()? {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
                other.0.downcast_ref::<PinMismatch>().cloned()
            }
            _ => None,
        })
}

/// The innermost cause of `e`, in plain words: `connection refused` rather than
/// `error sending request ... tcp connect error ... Connection refused (os error 111)`.
fn innermost_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let last = *error_chain(e).last().expect("the chain holds e itself");
    match last.downcast_ref::<std::io::Error>() {
        Some(io) if io.raw_os_error().is_some() => io.kind().to_string(),
        _ => last.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_messages_lose_their_credentials() {
        assert_eq!(redact_url("https://u:p@fleet:1/x"), "https://fleet:1/x");
        assert_eq!(redact_url("https://u:p@[bad"), "https://***@[bad");
        assert_eq!(redact_url("https://fleet:8443"), "https://fleet:8443/");
    }
}
