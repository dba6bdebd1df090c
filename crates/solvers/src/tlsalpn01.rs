//! tls-alpn-01 (RFC 8737): a built-in TLS server that, for a connection negotiating the ALPN
//! protocol `acme-tls/1`, presents a self-signed certificate for the SNI name carrying the
//! critical `acmeIdentifier` extension (SHA-256 of the key authorization). Nothing else is
//! served: the CA's validator closes the connection right after the handshake.
//!
//! Use it where port 443 can be handed over briefly but port 80 is closed. IP identifiers
//! (RFC 8738 section 6) are looked up by their reverse-DNS SNI name (`1.0.0.127.in-addr.arpa`)
//! and get an IP address SAN.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use certfleet_core::{ChallengeType, Identifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::listener::{self, Listener, Mine};
use crate::{ChallengeTask, Solver, SolverError};

/// The ALPN protocol ID of RFC 8737 section 6.2.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// A validator that stalls mid-handshake must not keep a task alive for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The SNI name a CA sends when validating `id`: the name itself, or for an IP the reverse-DNS
/// name (RFC 8738 section 6).
pub fn validation_sni(id: &Identifier) -> String {
    match id {
        Identifier::Ip(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        Identifier::Ip(IpAddr::V6(v6)) => {
            let mut name = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name.push_str("ip6.arpa");
            name
        }
        _ => id.value().to_ascii_lowercase(),
    }
}

/// SNI name -> the challenge certificate to present for it.
#[derive(Debug, Default)]
struct ChallengeCerts(RwLock<HashMap<String, Arc<CertifiedKey>>>);

impl ResolvesServerCert for ChallengeCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // Only a validator asking for acme-tls/1 gets a challenge certificate (RFC 8737 section 3).
        if !hello.alpn()?.any(|p| p == ACME_TLS_ALPN) {
            return None;
        }
        let sni = hello.server_name()?.to_ascii_lowercase();
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&sni)
            .cloned()
    }
}

/// The tls-alpn-01 server. Binds at construction so a taken port fails before any CA request;
/// every TlsAlpn01 on one address in this process shares one listener (see [`crate::listener`]).
pub struct TlsAlpn01 {
    server: Arc<Listener<Arc<ChallengeCerts>>>,
    /// The SNI names this one presented.
    mine: Mine,
}

impl std::fmt::Debug for TlsAlpn01 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsAlpn01({})", self.server.local_addr())
    }
}

impl Drop for TlsAlpn01 {
    fn drop(&mut self) {
        self.forget(self.mine.take_all());
    }
}

impl TlsAlpn01 {
    pub async fn bind(addr: SocketAddr) -> Result<Self, SolverError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs = Arc::new(ChallengeCerts::default());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SolverError::Other(format!("TLS setup: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let accept_loop = move |l: tokio::net::TcpListener, _: Arc<ChallengeCerts>| serve(l, acceptor);
        let server = listener::shared(addr, "tls-alpn-01", move || certs, bind_hint, accept_loop).await?;
        Ok(Self {
            server,
            mine: Mine::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn forget(&self, names: impl IntoIterator<Item = String>) {
        let mut map = self.server.state().0.write().unwrap_or_else(|p| p.into_inner());
        for n in names {
            map.remove(&n);
        }
    }
}

fn bind_hint(e: &std::io::Error, addr: SocketAddr) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "port {} is already in use (a web server on 443?): stop it for the validation, or pass \
             --tls-alpn-01-port/--tls-alpn-01-address (the CA connects to port 443)",
            addr.port()
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("binding port {} needs root or CAP_NET_BIND_SERVICE", addr.port())
        }
        _ => format!("cannot listen on {addr}"),
    }
}

async fn serve(listener: tokio::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(mut tls)) => {
                    // The handshake was the whole answer; say goodbye cleanly.
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, "tls-alpn-01 handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "tls-alpn-01 handshake timed out"),
            }
        });
    }
}

/// The self-signed validation certificate of RFC 8737 section 3: the identifier as the only
/// SAN, and the critical acmeIdentifier extension holding SHA-256(key authorization).
fn challenge_cert(task: &ChallengeTask) -> Result<CertifiedKey, SolverError> {
    let bad = |e: &dyn std::fmt::Display| {
        SolverError::Other(format!("tls-alpn-01 certificate for {}: {e}", task.identifier))
    };
    let san = match &task.identifier {
        Identifier::Ip(ip) => rcgen::SanType::IpAddress(*ip),
        other => rcgen::SanType::DnsName(other.value().try_into().map_err(|e| bad(&e))?),
    };
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![san];
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, task.key_authorization.as_bytes());
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest.as_ref()));
    let key = rcgen::KeyPair::generate().map_err(|e| bad(&e))?;
    let cert = params.self_signed(&key).map_err(|e| bad(&e))?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key_der).map_err(|e| bad(&e))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

#[async_trait::async_trait]
impl Solver for TlsAlpn01 {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::TlsAlpn01
    }

    async fn preflight(&self, identifiers: &[Identifier]) -> Result<(), SolverError> {
        match identifiers.iter().find(|i| i.is_wildcard()) {
            Some(id) => Err(SolverError::Setup(format!(
                "{id} is a wildcard: CAs do not validate wildcards with tls-alpn-01; use dns-01 \
                 (--dns-rfc2136, --dns-cloudflare or --manual) instead of --tls-alpn-01"
            ))),
            None => Ok(()),
        }
    }

    async fn present(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError> {
        let made = tasks
            .iter()
            .map(|t| Ok((validation_sni(&t.identifier), Arc::new(challenge_cert(t)?))))
            .collect::<Result<Vec<_>, SolverError>>()?;
        // Two lineages validating one name at the same moment would overwrite each other's
        // certificate here; the CA retries a failed validation, so that costs a retry at most.
        let mut map = self.server.state().0.write().unwrap_or_else(|p| p.into_inner());
        for (sni, cert) in made {
            self.mine.add(sni.clone());
            map.insert(sni, cert);
        }
        Ok(())
    }

    async fn cleanup(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError> {
        let names = tasks
            .iter()
            .map(|t| validation_sni(&t.identifier))
            .filter(|n| self.mine.take(n));
        self.forget(names.collect::<Vec<_>>());
        Ok(())
    }

    async fn cleanup_all(&self) -> Result<(), SolverError> {
        self.forget(self.mine.take_all());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    /// Accepts any certificate: the test inspects it itself, like a CA's validator does.
    #[derive(Debug)]
    struct Inspect(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for Inspect {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        // webpki refuses the unknown critical acmeIdentifier extension, so signatures are not
        // checked here; the test looks at the certificate's content, which is what is under test.
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// Handshake as a validator would; returns the negotiated ALPN and the leaf DER.
    async fn handshake(addr: SocketAddr, sni: &str, alpn: &[u8]) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Inspect(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let tls = connector.connect(name, tcp).await?;
        let (_, conn) = tls.get_ref();
        Ok((
            conn.alpn_protocol().unwrap_or_default().to_vec(),
            conn.peer_certificates().unwrap()[0].to_vec(),
        ))
    }

    fn task(id: Identifier, ka: &str) -> ChallengeTask {
        ChallengeTask {
            identifier: id,
            token: "tok".into(),
            key_authorization: ka.into(),
        }
    }

    #[test]
    fn reverse_dns_sni_for_ips() {
        assert_eq!(
            validation_sni(&Identifier::ip("127.0.0.1").unwrap()),
            "1.0.0.127.in-addr.arpa"
        );
        // RFC 8738 section 6 example form (nibbles, least significant first).
        assert_eq!(
            validation_sni(&Identifier::ip("2001:db8::1").unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
        assert_eq!(
            validation_sni(&Identifier::dns("A.Example.test").unwrap()),
            "a.example.test"
        );
    }

    #[tokio::test]
    async fn presents_acme_identifier_per_sni_only_for_acme_tls() {
        let solver = TlsAlpn01::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = solver.local_addr();
        let tasks = [
            task(Identifier::dns("a.example.test").unwrap(), "tokA.thumb"),
            task(Identifier::ip("127.0.0.1").unwrap(), "tokB.thumb"),
        ];
        solver.preflight(&[tasks[0].identifier.clone()]).await.unwrap();
        solver.present(&tasks).await.unwrap();

        for (t, sni) in [
            (&tasks[0], "a.example.test"),
            (&tasks[1], "1.0.0.127.in-addr.arpa"),
        ] {
            let (alpn, der) = handshake(addr, sni, ACME_TLS_ALPN).await.unwrap();
            assert_eq!(alpn, ACME_TLS_ALPN);
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            let ext = cert
                .extensions()
                .iter()
                .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
                .expect("acmeIdentifier extension");
            assert!(ext.critical, "RFC 8737: the extension MUST be critical");
            let digest =
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.key_authorization.as_bytes());
            // DER OCTET STRING of 32 bytes: 04 20 || digest.
            assert_eq!(ext.value[..2], [0x04, 0x20]);
            assert_eq!(&ext.value[2..], digest.as_ref());
            let san = cert.subject_alternative_name().unwrap().unwrap().value;
            assert_eq!(san.general_names.len(), 1, "exactly one SAN: the identifier");
        }

        // Not acme-tls/1, or a name with no challenge: no certificate, handshake refused.
        assert!(handshake(addr, "a.example.test", b"http/1.1").await.is_err());
        assert!(
            handshake(addr, "other.example.test", ACME_TLS_ALPN)
                .await
                .is_err()
        );

        solver.cleanup(&tasks).await.unwrap();
        assert!(handshake(addr, "a.example.test", ACME_TLS_ALPN).await.is_err());
    }

    #[tokio::test]
    async fn wildcards_and_taken_ports_are_clear_errors() {
        let solver = TlsAlpn01::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let err = solver
            .preflight(&[Identifier::dns("*.example.test").unwrap()])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("dns-01"), "{err}");
        let err = TlsAlpn01::bind(solver.local_addr()).await.unwrap_err();
        assert!(err.to_string().contains("already in use"), "{err}");
    }
}
