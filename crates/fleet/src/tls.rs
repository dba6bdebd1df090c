//! TLS for the fleet API: the server's rustls config and accept loop, and the pinning verifier
//! clients use.
//!
//! **HTTPS only.** Admin tokens, enrollment secrets and server-custody private keys cross this
//! API, so there is no plain-HTTP mode to forget to turn off. A plain `http://` request on the
//! port gets a readable `400` telling the user to use `https://` (the first byte of a TLS
//! connection is `0x16`, a handshake record; anything else is not TLS), instead of the
//! garbage a TLS server would otherwise answer.
//!
//! **Optional client certificates.** The server asks every client for a certificate issued by
//! the fleet's internal CA but also accepts none ([`server_config`]): admin requests (bearer
//! token) and enrollment (one-time secret) come without one, agents with one. A certificate
//! that does not verify against the internal CA fails the handshake: it is never silently
//! treated as "no certificate". Which requests need which credential is the HTTP layer's
//! decision; [`serve_tls`] hands it a [`PeerIdentity`] in every request's extensions.
//!
//! **Pinning.** [`PinnedServerVerifier`] accepts a server iff the SHA-256 of its leaf
//! certificate equals the pin, as `step ca bootstrap --fingerprint` does; names and validity
//! dates are not consulted (the pin says everything a CA would), but the handshake signature
//! is checked with the provider's algorithms as usual, so only the holder of the pinned
//! certificate's key can complete the handshake.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;

use crate::pki::{InternalCa, PkiError, ServerIdentity, sha256_fingerprint};

/// The API speaks both HTTP versions; h2 first so clients that can multiplex do.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// First byte of a TLS connection: a handshake record (RFC 8446 section 5.1).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The crypto provider every fleet TLS config uses (aws-lc-rs, as the rest of certfleet).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Who is on the other end of a connection, as the TLS layer established it. Inserted into
/// every request's extensions by [`serve_tls`]; read it with
/// `axum::Extension<PeerIdentity>` (or `req.extensions().get::<PeerIdentity>()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// [`sha256_fingerprint`] of the client certificate, present only when the client sent
    /// one and it verified against the internal CA (the handshake fails otherwise). The HTTP
    /// layer looks it up among enrolled hosts: a verified certificate of a removed host is
    /// still a certificate, so this alone authorizes nothing.
    pub client_cert_fingerprint: Option<String>,
    pub remote_addr: SocketAddr,
}

/// The API server's rustls config: `identity` as the certificate, ALPN h2 and http/1.1, and
/// client certificates requested but optional, verified against `internal_ca` (chain,
/// validity, clientAuth extended key usage).
pub fn server_config(
    identity: &ServerIdentity,
    internal_ca: &InternalCa,
) -> Result<Arc<ServerConfig>, PkiError> {
    let setup = |e: &dyn fmt::Display| PkiError::Invalid {
        what: "API TLS setup".into(),
        reason: e.to_string(),
    };
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(internal_ca.cert_der().to_vec()))
        .map_err(|e| setup(&e))?;
    let client_verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| setup(&e))?;
    let chain = identity
        .chain_der()
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_pkcs8_der().to_vec()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(&e))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .map_err(|e| setup(&e))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Limits of [`serve_tls_with`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// From accept to the end of the TLS handshake. A client that connects and says nothing
    /// is dropped after this, so idle sockets cannot hold the connection slots.
    pub handshake_timeout: Duration,
    /// HTTP/1 request headers must arrive within this once the connection is up.
    pub header_read_timeout: Duration,
    /// After the shutdown signal, how long in-flight requests may take to finish before
    /// their connections are dropped.
    pub drain_timeout: Duration,
    /// Connections served at once (including those still in the handshake); further clients
    /// wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Serve `app` over TLS on `listener` until `shutdown` completes, with [`ServeOptions`]'
/// defaults. See [`serve_tls_with`].
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    serve_tls_with(listener, config, app, shutdown, ServeOptions::default()).await
}

/// The accept loop: per connection, a TLS handshake under [`ServeOptions::handshake_timeout`]
/// (or a plain-text `400` for a plain-HTTP client), then HTTP/1.1 or HTTP/2 with every request
/// carrying the connection's [`PeerIdentity`]. (axum's own `serve` cannot do TLS, hence this.)
///
/// When `shutdown` completes the listener is closed, connections still in the handshake are
/// dropped, served connections finish their in-flight requests (up to
/// [`ServeOptions::drain_timeout`]) and are closed, and the function returns. Per-connection
/// failures are logged at debug level and never end the loop.
pub async fn serve_tls_with(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
    opts: ServeOptions,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: do not spin on it.
                    tracing::warn!(%local, "fleet API: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let conn = Connection {
            local,
            remote,
            acceptor: acceptor.clone(),
            app: app.clone(),
            stop: stop_rx.clone(),
            opts: opts.clone(),
        };
        tasks.spawn(async move {
            conn.run(stream).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(opts.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            connections = tasks.len(),
            "fleet API: drain timeout, closing the remaining connections"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

struct Connection {
    local: SocketAddr,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    stop: watch::Receiver<bool>,
    opts: ServeOptions,
}

/// Completes once the server shuts down (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// What came in on a new connection before any HTTP was served.
enum Opening {
    Tls(Box<TlsStream<TcpStream>>),
    /// Not TLS, or closed before a byte: already answered or nothing to answer.
    Done,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let remote = self.remote;
        let mut stop = self.stop.clone();
        let opening = tokio::select! {
            r = tokio::time::timeout(self.opts.handshake_timeout, self.open(stream)) => r,
            _ = stopped(&mut stop) => return,
        };
        let tls = match opening {
            Ok(Ok(Opening::Tls(tls))) => tls,
            Ok(Ok(Opening::Done)) => return,
            Ok(Err(e)) => {
                tracing::debug!(%remote, "fleet API: TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%remote, "fleet API: no TLS handshake within {:?}", self.opts.handshake_timeout);
                return;
            }
        };
        let peer = PeerIdentity {
            client_cert_fingerprint: tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|leaf| sha256_fingerprint(leaf)),
            remote_addr: remote,
        };
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(peer.clone());
            app.clone().oneshot(req)
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.opts.header_read_timeout);
        let conn = builder.serve_connection(TokioIo::new(tls), service);
        let mut conn = std::pin::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = stopped(&mut stop) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%remote, "fleet API: connection ended: {e}");
        }
    }

    async fn open(&self, mut stream: TcpStream) -> io::Result<Opening> {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 0 {
            return Ok(Opening::Done);
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            answer_plain_http(&mut stream, self.local).await?;
            return Ok(Opening::Done);
        }
        Ok(Opening::Tls(Box::new(self.acceptor.accept(stream).await?)))
    }
}

/// The text a plain-HTTP client gets on the TLS port.
pub fn plain_http_refusal(host: &str) -> String {
    format!("this port speaks HTTPS; use https://{host}/ instead of http://{host}/\n")
}

/// Read the request head, answer `400` with [`plain_http_refusal`], and close.
async fn answer_plain_http(stream: &mut TcpStream, local: SocketAddr) -> io::Result<()> {
    const MAX_HEAD: usize = 8192;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let host = host_header(&head).unwrap_or_else(|| local.to_string());
    let body = plain_http_refusal(&host);
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    // Read what the client still sends until it closes (bounded by the handshake timeout), so
    // unread bytes do not turn our close into a reset that could destroy the answer.
    while stream.read(&mut buf).await? > 0 {}
    Ok(())
}

/// The `Host` header of a plain-HTTP request head, if it is a plausible `name[:port]`.
fn host_header(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let value = text.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("host")
            .then(|| value.trim().to_string())
    })?;
    let plausible = !value.is_empty()
        && value.len() <= 262
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    plausible.then_some(value)
}

/// The server's leaf certificate did not have the pinned fingerprint. Carried inside the
/// rustls error of the failed handshake; [`crate::client`] turns it into a readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server's certificate has fingerprint {presented}, but {expected} is pinned")]
pub struct PinMismatch {
    pub presented: String,
    pub expected: String,
}

/// A pin is 64 hex digits; `AB:CD:...` (as `openssl x509 -fingerprint` prints it) and upper
/// case are accepted too. Returns the canonical lowercase form.
pub fn normalize_fingerprint(pin: &str) -> Option<String> {
    let hex: String = pin
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// Accepts the server iff SHA-256 of its leaf certificate equals the pin; checks handshake
/// signatures with the provider's algorithms (see the module docs).
#[derive(Debug)]
pub struct PinnedServerVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl PinnedServerVerifier {
    /// `None` when `pin` is not a fingerprint ([`normalize_fingerprint`]).
    pub fn new(pin: &str) -> Option<Self> {
        Some(Self {
            pin: normalize_fingerprint(pin)?,
            provider: provider(),
        })
    }

    pub fn pin(&self) -> &str {
        &self.pin
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = sha256_fingerprint(end_entity);
        if crate::token::digests_equal(&presented, &self.pin) {
            return Ok(ServerCertVerified::assertion());
        }
        let mismatch = PinMismatch {
            presented,
            expected: self.pin.clone(),
        };
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(mismatch))),
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_in_every_usual_spelling() {
        let fp = "ab".repeat(32);
        assert_eq!(normalize_fingerprint(&fp).as_deref(), Some(fp.as_str()));
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            normalize_fingerprint(&format!(" {colons}\n")).as_deref(),
            Some(fp.as_str())
        );
        assert_eq!(normalize_fingerprint(&"ab".repeat(31)), None);
        assert_eq!(normalize_fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn host_header_is_taken_only_when_plausible() {
        let req = b"GET / HTTP/1.1\r\nUser-Agent: x\r\nHOST: fleet.example.com:8443\r\n\r\n";
        assert_eq!(host_header(req).as_deref(), Some("fleet.example.com:8443"));
        assert_eq!(
            host_header(b"GET / HTTP/1.1\r\nHost: [::1]:1\r\n\r\n").as_deref(),
            Some("[::1]:1")
        );
        assert_eq!(host_header(b"GET / HTTP/1.1\r\nHost: <script>\r\n\r\n"), None);
        assert_eq!(host_header(b"GET / HTTP/1.0\r\n\r\n"), None);
    }
}
