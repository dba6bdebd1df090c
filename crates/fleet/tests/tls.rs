//! `serve_tls` and `FleetClient` over real sockets on 127.0.0.1: pinning, mTLS with the
//! internal CA, the plain-HTTP answer, the handshake timeout and graceful shutdown.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::routing::get;
use axum::{Json, Router};
use certfleet_fleet::client::{ClientError, FleetClient, ServerTrust};
use certfleet_fleet::pki::{InternalCa, IssuedClientCert, ServerIdentity, new_client_key_and_csr};
use certfleet_fleet::proto::{Assignment, Custody};
use certfleet_fleet::tls::{PeerIdentity, ServeOptions};
use common::TestServer;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers `GET agent/assignments` with one assignment describing the caller: `certificate` is
/// the client certificate's fingerprint (or `anonymous`), `identifiers` the remote address,
/// `key_type` the HTTP version. Counts the requests that reached it.
fn whoami_app(hits: Arc<AtomicUsize>) -> Router {
    async fn whoami(State(hits): State<Arc<AtomicUsize>>, req: Request) -> Json<Vec<Assignment>> {
        hits.fetch_add(1, Ordering::SeqCst);
        if req.uri().query() == Some("slow") {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let peer = req
            .extensions()
            .get::<PeerIdentity>()
            .expect("serve_tls inserts PeerIdentity");
        Json(vec![Assignment {
            certificate: peer
                .client_cert_fingerprint
                .clone()
                .unwrap_or_else(|| "anonymous".into()),
            identifiers: vec![peer.remote_addr.ip().to_string()],
            custody: Custody::Agent,
            key_type: format!("{:?}", req.version()),
            serial: None,
            not_after: None,
            csr_keys: vec![],
        }])
    }
    Router::new()
        .route("/api/v1/agent/assignments", get(whoami))
        .with_state(hits)
}

async fn server() -> (TestServer, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    (TestServer::start(whoami_app(hits.clone())).await, hits)
}

#[tokio::test]
async fn pinned_client_without_certificate_is_anonymous() {
    let (server, hits) = server().await;
    let client = server.pinned().build().unwrap();
    let me = client.assignments().await.unwrap();
    assert_eq!(me[0].certificate, "anonymous");
    assert_eq!(me[0].identifiers, ["127.0.0.1"]);
    // ALPN offered h2 first and the server speaks it.
    assert_eq!(me[0].key_type, "HTTP/2.0");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn pin_in_openssl_spelling_works_too() {
    let (server, _) = server().await;
    let fp = server.identity.fingerprint().to_uppercase();
    let colons: Vec<&str> = (0..32).map(|i| &fp[2 * i..2 * i + 2]).collect();
    let client = FleetClient::builder(&server.url(), ServerTrust::Pin(colons.join(":")))
        .build()
        .unwrap();
    client.assignments().await.unwrap();
}

#[tokio::test]
async fn wrong_pin_is_refused_naming_both_fingerprints() {
    let (server, hits) = server().await;
    let wrong = "0f".repeat(32);
    let client = FleetClient::builder(&server.url(), ServerTrust::Pin(wrong.clone()))
        .build()
        .unwrap();
    let err = client.assignments().await.unwrap_err();
    match &err {
        ClientError::PinMismatch {
            url,
            presented,
            expected,
        } => {
            assert_eq!(url, &server.url());
            assert_eq!(presented, &server.identity.fingerprint());
            assert_eq!(expected, &wrong);
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "the server at {} presented a certificate with fingerprint {}, expected {wrong}",
            server.url(),
            server.identity.fingerprint()
        )),
        "{msg}"
    );
    assert!(msg.contains("someone may be intercepting"), "{msg}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// A pinned client for host `web1` with a key made here and a certificate `ca` issued at `at`;
/// also returns the certificate and the key.
fn agent(
    server: &TestServer,
    ca: &InternalCa,
    at: OffsetDateTime,
) -> (FleetClient, IssuedClientCert, String) {
    let (key_pem, csr_pem) = new_client_key_and_csr("web1").unwrap();
    let issued = ca.issue_client_cert(&csr_pem, "web1", at).unwrap();
    let client = server
        .pinned()
        .client_identity(&issued.cert_pem, &key_pem)
        .build()
        .unwrap();
    (client, issued, key_pem)
}

#[tokio::test]
async fn client_certificate_from_the_internal_ca_is_the_peer_identity() {
    let (server, _) = server().await;
    let (client, issued, _) = agent(&server, &server.ca, OffsetDateTime::now_utc());
    let me = client.assignments().await.unwrap();
    assert_eq!(me[0].certificate, issued.fingerprint_sha256);
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused_at_the_handshake() {
    let (server, hits) = server().await;
    let other_ca = InternalCa::generate(OffsetDateTime::now_utc()).unwrap();
    let (client, issued, key_pem) = agent(&server, &other_ca, OffsetDateTime::now_utc());
    let err = client.assignments().await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "no request may reach the app");

    // The same refusal seen at the TLS level: the server's alert names the unknown CA.
    let mut raw = tls_client(&server, Some((&issued.cert_pem, &key_pem)))
        .await
        .unwrap();
    raw.write_all(b"GET /api/v1/agent/assignments HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = raw.read_to_end(&mut buf).await;
    let err = read.expect_err("the server must not answer");
    assert!(err.to_string().contains("UnknownCA"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let (server, hits) = server().await;
    let long_ago = OffsetDateTime::now_utc() - time::Duration::days(400);
    let (client, _, _) = agent(&server, &server.ca, long_ago);
    assert!(client.assignments().await.is_err());
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// A raw tokio-rustls client pinned to `server`, optionally with a client certificate.
async fn tls_client(
    server: &TestServer,
    identity: Option<(&str, &str)>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let verifier = certfleet_fleet::tls::PinnedServerVerifier::new(&server.identity.fingerprint()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(certfleet_fleet::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let chain = certfleet_core::cert::pem_certificates(cert_pem)
                .unwrap()
                .into_iter()
                .map(CertificateDer::from)
                .collect();
            let key = certfleet_core::PrivateKey::from_pem(key_pem).unwrap();
            let key = PrivateKeyDer::try_from(key.pkcs8_der().to_vec()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    let tcp = tokio::net::TcpStream::connect(server.addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

#[tokio::test]
async fn ca_bundle_trust_checks_names_and_issuer() {
    let (server, _) = server().await;
    let url = format!("https://localhost:{}", server.addr.port());
    let client = FleetClient::builder(&url, ServerTrust::CaBundle(server.identity.cert_pem()))
        .build()
        .unwrap();
    client.assignments().await.unwrap();

    let stranger = ServerIdentity::generate(&[], OffsetDateTime::now_utc()).unwrap();
    let client = FleetClient::builder(&url, ServerTrust::CaBundle(stranger.cert_pem()))
        .build()
        .unwrap();
    let err = client.assignments().await.unwrap_err().to_string();
    assert!(err.contains(&url) && err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_readable_400() {
    let (server, hits) = server().await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let host = format!("127.0.0.1:{}", server.addr.port());
    tcp.write_all(format!("GET /api/v1/hosts HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut answer))
        .await
        .expect("the server closes after answering")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
    assert!(
        answer.ends_with(&format!(
            "\r\n\r\nthis port speaks HTTPS; use https://{host}/ instead of http://{host}/\n"
        )),
        "{answer}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn silent_clients_are_dropped_after_the_handshake_timeout() {
    let hits = Arc::new(AtomicUsize::new(0));
    let opts = ServeOptions {
        handshake_timeout: Duration::from_millis(300),
        max_connections: 2,
        ..ServeOptions::default()
    };
    let server = TestServer::start_with(whoami_app(hits), opts).await;
    // One says nothing at all, the other starts a TLS record and stalls: both hold a slot.
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let started = std::time::Instant::now();
    for stream in [&mut silent, &mut stalled] {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("closed by the server")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    assert!(started.elapsed() >= Duration::from_millis(250));
    // With both slots free again, a real client gets through.
    server.pinned().build().unwrap().assignments().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_then_stops() {
    let (mut server, hits) = server().await;
    let client = server.pinned().build().unwrap();
    // `?slow` is not reachable through the typed client: use the raw TLS client.
    let mut raw = tls_client(&server, None).await.unwrap();
    raw.write_all(b"GET /api/v1/agent/assignments?slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    while hits.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.shutdown();
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("anonymous"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("serve_tls returns after the drain")
        .unwrap()
        .unwrap();
    let err = client.assignments().await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn connection_refused_names_the_url_and_the_cause() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("https://127.0.0.1:{port}");
    let client = FleetClient::builder(&url, ServerTrust::Pin("ab".repeat(32)))
        .build()
        .unwrap();
    let err = client.list_hosts().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot talk to the fleet server at {url}: connection refused")
    );
}
