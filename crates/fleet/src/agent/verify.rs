//! Proof that a service serves a certificate: a TLS handshake to its endpoint (after STARTTLS
//! for SMTP, IMAP and POP3) and a byte comparison of the leaf it presents. Trust is not the
//! question here, so any chain is accepted; the handshake signature is still checked, so the
//! server really holds the leaf's key.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::config::{Endpoint, StartTls, VerifySpec};

/// Longest protocol line read before STARTTLS.
const MAX_LINE: u64 = 4096;
/// Most lines of one SMTP reply or IMAP/POP3 exchange.
const MAX_LINES: usize = 100;
/// Pause between attempts: nginx's new workers answer ~15 ms after a reload, old ones keep
/// the old certificate up to ~100 ms.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_millis(500);

/// What the endpoint served, in the end.
#[derive(Debug)]
pub(crate) enum Served {
    /// The expected leaf.
    Expected,
    /// Another leaf (DER) the whole time.
    Other(Vec<u8>),
    /// No handshake succeeded; the last error.
    Unreachable(String),
}

/// The server name for the handshake: the configured `sni`, else the certificate's first DNS
/// name (a wildcard's base name), else none (IP-only certificates).
pub(crate) fn server_name(spec: &VerifySpec, cert_names: &[String]) -> ServerName<'static> {
    let from_cert = cert_names
        .iter()
        .filter(|n| n.parse::<IpAddr>().is_err())
        .find_map(|n| ServerName::try_from(n.trim_start_matches("*.").to_string()).ok());
    spec.sni
        .as_ref()
        .and_then(|s| ServerName::try_from(s.clone()).ok())
        .or(from_cert)
        .unwrap_or_else(|| match spec.endpoint.host.parse::<IpAddr>() {
            // rustls sends no SNI for an IP address.
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(spec.endpoint.host.clone())
                .unwrap_or(ServerName::IpAddress(IpAddr::from([127, 0, 0, 1]).into())),
        })
}

/// Handshakes until the endpoint serves `expected` or `budget` is over.
pub(crate) async fn wait_for_leaf(
    spec: &VerifySpec,
    sni: &ServerName<'static>,
    expected: &[u8],
    budget: Duration,
) -> Served {
    let deadline = Instant::now() + budget;
    let mut pause = FIRST_RETRY;
    let mut last = Served::Unreachable("no attempt".into());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = tokio::time::timeout(
            left.max(Duration::from_millis(100)),
            fetch_leaf(&spec.endpoint, sni, spec.starttls),
        )
        .await;
        last = match attempt {
            Ok(Ok(leaf)) if leaf == expected => return Served::Expected,
            Ok(Ok(leaf)) => Served::Other(leaf),
            Ok(Err(e)) => Served::Unreachable(e),
            Err(_) => match last {
                // A timeout after an earlier answer says less than that answer.
                Served::Other(l) => Served::Other(l),
                _ => Served::Unreachable(format!("no TLS handshake within {budget:?}")),
            },
        };
        if Instant::now() + pause >= deadline {
            return last;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY);
    }
}

/// One handshake; the leaf the server presented (DER).
pub async fn fetch_leaf(
    endpoint: &Endpoint,
    sni: &ServerName<'static>,
    starttls: Option<StartTls>,
) -> Result<Vec<u8>, String> {
    let mut chain = fetch_chain(endpoint, sni, starttls).await?;
    Ok(chain.swap_remove(0))
}

/// One handshake; every certificate the server presented (DER, leaf first, never empty). The
/// server's served-certificate watch judges the whole chain.
pub async fn fetch_chain(
    endpoint: &Endpoint,
    sni: &ServerName<'static>,
    starttls: Option<StartTls>,
) -> Result<Vec<Vec<u8>>, String> {
    let mut tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("connecting to {endpoint}: {e}"))?;
    if let Some(proto) = starttls {
        upgrade(&mut tcp, proto)
            .await
            .map_err(|e| format!("STARTTLS ({}) with {endpoint}: {e}", proto.as_str()))?;
    }
    let connector = tokio_rustls::TlsConnector::from(client_config());
    let tls = connector
        .connect(sni.clone(), tcp)
        .await
        .map_err(|e| format!("TLS handshake with {endpoint}: {e}"))?;
    let (_, conn) = tls.get_ref();
    match conn.peer_certificates() {
        Some(certs) if !certs.is_empty() => Ok(certs.iter().map(|c| c.to_vec()).collect()),
        _ => Err(format!("{endpoint} sent no certificate")),
    }
}

/// The plain-text exchange before the TLS handshake.
async fn upgrade(tcp: &mut TcpStream, proto: StartTls) -> Result<(), String> {
    let mut r = BufReader::new(tcp);
    match proto {
        StartTls::Smtp => {
            expect_smtp(&mut r, 220, "greeting").await?;
            send(&mut r, b"EHLO certfleet-agent\r\n").await?;
            expect_smtp(&mut r, 250, "EHLO").await?;
            send(&mut r, b"STARTTLS\r\n").await?;
            expect_smtp(&mut r, 220, "STARTTLS").await?;
        }
        StartTls::Imap => {
            let greeting = read_line(&mut r).await?;
            if !greeting.starts_with("* OK") {
                return Err(format!("unexpected greeting {greeting:?}"));
            }
            send(&mut r, b"a1 STARTTLS\r\n").await?;
            for _ in 0..MAX_LINES {
                let line = read_line(&mut r).await?;
                if let Some(status) = line.strip_prefix("a1 ") {
                    return if status.starts_with("OK") {
                        Ok(())
                    } else {
                        Err(format!("STARTTLS refused: {line:?}"))
                    };
                }
            }
            return Err("no answer to STARTTLS".into());
        }
        StartTls::Pop3 => {
            let greeting = read_line(&mut r).await?;
            if !greeting.starts_with("+OK") {
                return Err(format!("unexpected greeting {greeting:?}"));
            }
            send(&mut r, b"STLS\r\n").await?;
            let line = read_line(&mut r).await?;
            if !line.starts_with("+OK") {
                return Err(format!("STLS refused: {line:?}"));
            }
        }
    }
    // The server says nothing more until our ClientHello, so the reader holds no bytes the
    // TLS layer needs.
    Ok(())
}

async fn send(r: &mut BufReader<&mut TcpStream>, bytes: &[u8]) -> Result<(), String> {
    r.get_mut()
        .write_all(bytes)
        .await
        .map_err(|e| format!("sending: {e}"))
}

async fn read_line(r: &mut BufReader<&mut TcpStream>) -> Result<String, String> {
    let mut line = String::new();
    let n = (&mut *r)
        .take(MAX_LINE)
        .read_line(&mut line)
        .await
        .map_err(|e| format!("reading: {e}"))?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    Ok(line.trim_end().to_string())
}

/// Reads one (possibly multi-line) SMTP reply and checks its code.
async fn expect_smtp(r: &mut BufReader<&mut TcpStream>, code: u16, what: &str) -> Result<(), String> {
    for _ in 0..MAX_LINES {
        let line = read_line(r).await?;
        let got = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        if got != Some(code) {
            return Err(format!("{what}: expected {code}, got {line:?}"));
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
    Err(format!("{what}: reply longer than {MAX_LINES} lines"))
}

fn client_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            Arc::new(
                ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .expect("aws-lc-rs supports the default versions")
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(certfleet_engine::doctor::AcceptAny(provider)))
                    .with_no_client_auth(),
            )
        })
        .clone()
}
