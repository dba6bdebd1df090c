//! What is served on NAME:443: one TLS handshake that accepts whatever comes, then the chain
//! judged on its own: the lineage's current certificate, every intermediate sent (the
//! `cert.pem` instead of `fullchain.pem` trap), none expired, and a path to a trusted root.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use certfleet_core::{CertInfo, Identifier};
use certfleet_store::Kind as FileKind;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{Check, Ctx, Kind, Target};

/// The roots a served chain must lead to: this host's, plus `--tls-roots`. Loaded on first
/// use (reading the system store costs a few milliseconds). The fleet server's
/// served-certificate watch judges chains with it too.
pub struct Trust {
    extra: Vec<CertificateDer<'static>>,
    verifier: OnceLock<Result<Arc<dyn ServerCertVerifier>, String>>,
}

impl Trust {
    pub fn new(extra_der: &[Vec<u8>]) -> Self {
        Trust {
            extra: extra_der
                .iter()
                .map(|d| CertificateDer::from(d.clone()))
                .collect(),
            verifier: OnceLock::new(),
        }
    }

    /// Whether `chain` (leaf first, as served) leads to a trusted root for `name` at `now`:
    /// `Ok(false)` when no trusted root issued it (a staging or private CA, or intermediates
    /// missing), `Err` when clients reject it for another reason (expired, wrong name, ...).
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        name: &str,
        now: time::OffsetDateTime,
    ) -> Result<bool, String> {
        let Some((leaf, rest)) = chain.split_first() else {
            return Err("no certificate was sent".into());
        };
        let v = self.verifier()?;
        let server = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
        let secs = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        match v.verify_server_cert(
            leaf,
            rest,
            &server,
            &[],
            UnixTime::since_unix_epoch(Duration::from_secs(secs)),
        ) {
            Ok(_) => Ok(true),
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    fn verifier(&self) -> Result<&Arc<dyn ServerCertVerifier>, String> {
        self.verifier
            .get_or_init(|| {
                rustls_platform_verifier::Verifier::new_with_extra_roots(self.extra.clone(), provider())
                    .map(|v| Arc::new(v) as Arc<dyn ServerCertVerifier>)
                    .map_err(|e| format!("cannot load this host's trusted roots: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS handshake that accepts any certificate; returns the stream and the chain sent.
pub(super) async fn handshake(
    tcp: TcpStream,
    sni: &str,
    timeout: Duration,
) -> Result<(TlsStream<TcpStream>, Vec<CertificateDer<'static>>), String> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).map_err(|e| format!("{sni:?}: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let chain = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default();
    Ok((tls, chain))
}

/// The `tls` check of `t.names[ni]`, for a lineage.
pub(super) async fn served(ctx: &Ctx, t: &Target, ni: usize) -> Vec<Check> {
    let Some(lin) = &t.lineage else {
        return vec![];
    };
    let id = &t.names[ni];
    let subject = id.value();
    let port = ctx.opts.tls_port;
    if id.is_wildcard() {
        return vec![Check::ok(
            Kind::Tls,
            subject,
            "wildcard: check a name it covers with `doctor -d NAME`",
        )];
    }
    let ip = match address(ctx, id).await {
        Ok(ip) => ip,
        Err(why) => {
            return vec![Check::warn(
                Kind::Tls,
                subject,
                format!("not checked: {why}"),
                "see the dns check above",
            )];
        }
    };
    let addr = SocketAddr::new(ip, port);
    let name = id.value();
    let tcp = match tokio::time::timeout(ctx.opts.timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return vec![Check::warn(
                Kind::Tls,
                subject,
                format!("nothing answers on {addr} ({e})"),
                format!(
                    "if a web server should serve {name} over HTTPS, make it listen on port {port}; if the \
                     certificate is for another service, check its port with --port PORT"
                ),
            )];
        }
        Err(_) => {
            return vec![Check::fail(
                Kind::Tls,
                subject,
                format!("no answer from {addr} (timed out)"),
                format!("open TCP port {port} in the firewall, or check with --port PORT"),
            )];
        }
    };
    let chain = match handshake(tcp, &name, ctx.opts.timeout).await {
        Ok((_, chain)) if !chain.is_empty() => chain,
        Ok(_) => {
            return vec![Check::fail(
                Kind::Tls,
                subject,
                format!("{addr} sent no certificate"),
                "check the TLS configuration of the server",
            )];
        }
        Err(e) => {
            return vec![Check::fail(
                Kind::Tls,
                subject,
                format!("{addr} for {name}: {e}"),
                format!(
                    "is {addr} a TLS server? does a server block for {name} have TLS enabled (listen {port} ssl)?"
                ),
            )];
        }
    };
    vec![judge(ctx, lin, &name, addr, &chain)]
}

/// IPv4 first (the TLS check needs one address that works, not each).
async fn address(ctx: &Ctx, id: &Identifier) -> Result<IpAddr, String> {
    if let Identifier::Ip(ip) = id {
        return Ok(*ip);
    }
    let r = ctx.resolver().map_err(|(d, _)| d)?;
    let ips = r.ips(&id.base_name()).await.map_err(|e| e.to_string())?;
    ips.iter()
        .find(|i| i.is_ipv4())
        .or(ips.first())
        .copied()
        .ok_or_else(|| format!("{} has no A or AAAA record", id.base_name()))
}

fn judge(
    ctx: &Ctx,
    lin: &certfleet_store::Lineage,
    name: &str,
    addr: SocketAddr,
    chain: &[CertificateDer<'static>],
) -> Check {
    let now = ctx.opts.now;
    let lname = lin.name.as_str();
    let fullchain = lin.live_path(FileKind::Fullchain).display().to_string();
    let fix_files = format!(
        "serve {fullchain} with {} (nginx: `ssl_certificate {fullchain}; ssl_certificate_key {};`, \
         Apache 2.4.8+: `SSLCertificateFile {fullchain}`), then reload the server",
        lin.live_path(FileKind::Privkey).display(),
        lin.live_path(FileKind::Privkey).display()
    );
    let leaf = match CertInfo::from_der(&chain[0]) {
        Ok(l) => l,
        Err(e) => {
            return Check::fail(
                Kind::Tls,
                name,
                format!("{addr} sent a certificate that cannot be read: {e}"),
                fix_files,
            );
        }
    };
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let about = format!(
        "serial {}, issuer {}, expires {} ({} days left)",
        leaf.serial_hex(),
        leaf.issuer_cn.as_deref().unwrap_or("?"),
        rfc3339(leaf.not_after),
        (leaf.not_after - now).whole_days()
    );
    if !covers(&leaf, name) {
        return Check::fail(
            Kind::Tls,
            name,
            format!(
                "{addr} serves a certificate for {} ({about}), not {name}: the TLS server block for {name} \
                 uses another certificate",
                leaf.names.join(", ")
            ),
            fix_files,
        );
    }
    let current = lin.cert_info().ok();
    if current.as_ref().map(|c| &c.der) != Some(&leaf.der) {
        let older = (1..lin.version().unwrap_or(0)).rev().find(|v| {
            std::fs::read_to_string(lin.archive_path(FileKind::Cert, *v))
                .ok()
                .and_then(|t| CertInfo::from_pem(&t).ok())
                .is_some_and(|c| c.der == leaf.der)
        });
        return match older {
            Some(v) => Check::fail(
                Kind::Tls,
                name,
                format!(
                    "{addr} serves version {v} of {lname} ({about}), not the current version {}: the server \
                     was not reloaded after the renewal",
                    lin.version().unwrap_or_default()
                ),
                format!(
                    "reload it now (e.g. `systemctl reload nginx`), and let renew do it next time: \
                     `certfleet reconfigure --cert-name {lname} --deploy-reload nginx`"
                ),
            ),
            None => Check::warn(
                Kind::Tls,
                name,
                format!("{addr} serves a certificate for {name} that is not {lname}'s ({about})"),
                format!("if {lname} should be served: {fix_files}"),
            ),
        };
    }
    if leaf.not_after < now {
        return Check::fail(
            Kind::Tls,
            name,
            format!("{addr} serves an expired certificate ({about})"),
            format!("`certfleet renew --cert-name {lname} --force-renewal`, then reload the server"),
        );
    }
    if chain.len() == 1 && leaf.issuer_cn != leaf.subject_cn {
        return Check::fail(
            Kind::Tls,
            name,
            format!(
                "{addr} sends only the certificate, without the intermediate that signed it ({}): clients \
                 that do not have it cached cannot build a chain (the server uses cert.pem instead of fullchain.pem)",
                leaf.issuer_cn.as_deref().unwrap_or("?")
            ),
            fix_files,
        );
    }
    for d in &chain[1..] {
        if let Ok(c) = CertInfo::from_der(d)
            && c.not_after < now
        {
            return Check::fail(
                Kind::Tls,
                name,
                format!(
                    "{addr} sends an expired intermediate: {} (expired {})",
                    c.subject_cn.as_deref().unwrap_or("?"),
                    rfc3339(c.not_after)
                ),
                format!("serve {fullchain} (it holds the chain the CA issued with), then reload"),
            );
        }
    }
    let verified = ctx.tls.verify(chain, name, now);
    let left = (leaf.not_after - now).whole_days();
    match verified {
        Ok(false) => Check::warn(
            Kind::Tls,
            name,
            format!(
                "{addr} serves {lname}'s current certificate ({about}) with its chain, but it leads to no root \
                 this host trusts: a staging or private CA?"
            ),
            "browsers will refuse it unless they trust that root; for a private CA pass its root with \
             --tls-roots FILE to check the rest",
        ),
        Err(e) => Check::fail(
            Kind::Tls,
            name,
            format!("{addr} serves {lname}'s current certificate ({about}), but clients reject it: {e}"),
            fix_files,
        ),
        Ok(true) if left < 7 => Check::warn(
            Kind::Tls,
            name,
            format!("{addr} serves {lname}'s current certificate ({about}), chain trusted; it expires soon"),
            format!("`certfleet renew --cert-name {lname}`, then reload the server"),
        ),
        Ok(true) => Check::ok(
            Kind::Tls,
            name,
            format!(
                "{addr} serves {lname}'s current certificate ({about}), {} intermediate{} sent, chain trusted",
                chain.len() - 1,
                if chain.len() == 2 { "" } else { "s" }
            ),
        ),
    }
}

/// The certificate's names cover `name` (exactly or by a one-label wildcard).
fn covers(leaf: &CertInfo, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    leaf.names.iter().any(|n| {
        let n = n.to_ascii_lowercase();
        n == name
            || n.strip_prefix("*.")
                .is_some_and(|base| name.split_once('.').is_some_and(|(_, rest)| rest == base))
    })
}

/// Accepts any certificate (the caller inspects what was served itself) but still checks the
/// handshake signature. The agent's post-install verification uses it too.
#[derive(Debug)]
pub struct AcceptAny(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
