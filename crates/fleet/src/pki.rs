//! The fleet's own small PKI: the API server's certificate and the internal CA that issues the
//! agents' TLS client certificates.
//!
//! **The API certificate.** `certfleet serve` speaks HTTPS only. Without `--tls-cert/--tls-key`
//! it makes its own certificate on first start ([`ServerIdentity::load_or_create`]) and prints
//! its SHA-256 fingerprint; clients pin it, as `step ca bootstrap --fingerprint` does. Pinning
//! a self-signed certificate is as strong as a CA-issued one for this use: every client learns
//! the pin out of band (it travels inside the enrollment token an admin hands over, or on the
//! admin's command line), so there is no CA to compromise and nothing to renew. The certificate
//! is made to outlive the installation ([`SERVER_CERT_LIFETIME`]) because replacing it breaks
//! every pin: a pinning client does not look at the validity dates.
//!
//! **The internal CA and agent credentials.** At enrollment the agent makes an ECDSA P-256 key
//! on its host ([`new_client_key_and_csr`]); only a CSR leaves the host. The server's
//! [`InternalCa`] checks that the CSR is signed by the key it carries and issues a client
//! certificate whose only name is `host:NAME`, NAME being the host the enrollment token was
//! made for: whatever names the CSR asks for are ignored, so an agent cannot ask its way into
//! another identity. mTLS rather than bearer tokens for agents: the secret never crosses the
//! wire (not even inside TLS), a stolen request log holds nothing reusable, and the TLS layer
//! refuses a certificate from anyone else's CA before any HTTP code runs.
//!
//! [`sha256_fingerprint`] (hex of SHA-256 over the DER) names certificates everywhere: the API
//! pin, a client certificate in the database. [`spki_sha256_of_cert`] and
//! [`spki_sha256_of_csr`] name *keys*, so an agent holding several keys for agent-custody
//! certificates can tell which one a delivered certificate was issued for.
//!
//! Secrets (private keys) never appear in `Debug` output or in errors.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use certfleet_core::cert::{der_to_pem, pem_certificates};
use certfleet_core::{CertInfo, KeySpec, PrivateKey};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// Lifetime of an agent's client certificate. The agent asks for a new one well before it
/// ends; a year bounds how long a copied key stays useful if the host is never removed.
pub const CLIENT_CERT_LIFETIME: Duration = Duration::days(365);
/// Lifetime of the internal CA: longer than any installation, since replacing it means
/// re-enrolling every host.
pub const CA_LIFETIME: Duration = Duration::days(365 * 30);
/// Lifetime of the self-signed API certificate (see the module docs: a new one breaks pins).
pub const SERVER_CERT_LIFETIME: Duration = Duration::days(365 * 30);
/// Issued certificates start a little in the past so a host whose clock is a few minutes
/// behind the server's can use its certificate at once.
const BACKDATE: Duration = Duration::minutes(5);
/// Subject CN prefix of agent client certificates: `host:NAME`.
pub const HOST_CN_PREFIX: &str = "host:";

/// File names [`ServerIdentity::load_or_create`] keeps in the server's data directory.
pub const API_CERT_FILE: &str = "api-cert.pem";
pub const API_KEY_FILE: &str = "api-key.pem";
pub const API_FINGERPRINT_FILE: &str = "api.fingerprint";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("the CSR is not usable: {0}")]
    Csr(String),
    #[error(
        "the CSR's signature does not verify with the public key it carries: it was damaged, or not made by the holder of that key"
    )]
    CsrSignature,
    #[error("the CSR's key is {0}; fleet client certificates take ECDSA P-256 or P-384 keys")]
    CsrKeyType(String),
    #[error("host name {name:?} cannot go into a client certificate: {reason}")]
    HostName { name: String, reason: &'static str },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make {what}: {reason}")]
    Generate { what: &'static str, reason: String },
}

fn invalid(what: impl Into<String>, reason: impl fmt::Display) -> PkiError {
    PkiError::Invalid {
        what: what.into(),
        reason: reason.to_string(),
    }
}

fn generate_err(what: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |e| PkiError::Generate {
        what,
        reason: e.to_string(),
    }
}

/// Hex (lowercase) of SHA-256 over `der`: the fingerprint of a certificate.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// SHA-256 (hex) of the SubjectPublicKeyInfo of the first certificate in `cert_pem` (the leaf
/// of a chain file), as [`crate::proto::Delivery::key_sha256`] carries it.
pub fn spki_sha256_of_cert(cert_pem: &str) -> Result<String, PkiError> {
    let info = CertInfo::from_pem(cert_pem).map_err(|e| invalid("certificate", e))?;
    Ok(sha256_fingerprint(&info.spki_der))
}

/// Checks that the first certificate of `chain_pem` (when there is one) signed `leaf_pem`: an
/// imported certificate must arrive with the chain that agents will install beside it.
pub fn check_issued_by(leaf_pem: &str, chain_pem: &str) -> Result<(), PkiError> {
    let leaf = pem_certificates(leaf_pem).map_err(|e| invalid("certificate", e))?;
    let chain = pem_certificates(chain_pem).map_err(|e| invalid("chain", e))?;
    let (Some(leaf), Some(issuer)) = (leaf.first(), chain.first()) else {
        return Ok(());
    };
    let (_, leaf) =
        x509_parser::certificate::X509Certificate::from_der(leaf).map_err(|e| invalid("certificate", e))?;
    let (_, issuer) =
        x509_parser::certificate::X509Certificate::from_der(issuer).map_err(|e| invalid("chain", e))?;
    leaf.verify_signature(Some(issuer.public_key())).map_err(|_| {
        invalid(
            "chain",
            format!(
                "its first certificate ({}) did not sign the certificate: give the chain.pem of the same lineage",
                issuer.subject()
            ),
        )
    })
}

/// SHA-256 (hex) of the SubjectPublicKeyInfo of the key a PEM CSR asks a certificate for.
/// The CSR's signature is checked too: a CSR that does not verify names no key.
pub fn spki_sha256_of_csr(csr_pem: &str) -> Result<String, PkiError> {
    let csr = VerifiedCsr::from_pem(csr_pem)?;
    Ok(sha256_fingerprint(&csr.spki_der))
}

/// SHA-256 (hex) of the SubjectPublicKeyInfo of a PEM private key (PKCS#8, SEC1 or PKCS#1):
/// the agent's side of the match with [`spki_sha256_of_cert`].
pub fn spki_sha256_of_key(key_pem: &str) -> Result<String, PkiError> {
    // Never echo the parser's words about a private key: keep the error generic.
    let key =
        PrivateKey::from_pem(key_pem).map_err(|_| invalid("private key", "not a usable PEM private key"))?;
    Ok(sha256_fingerprint(&key.public_key_spki_der()))
}

/// A fresh ECDSA P-256 key for an agent's TLS client credential and a CSR for it, both PEM:
/// `(key_pem, csr_pem)`. The key stays on the host; the CSR goes to `POST enroll`. The CSR
/// names `host:NAME` for readability only: the server decides the name.
pub fn new_client_key_and_csr(host_name: &str) -> Result<(String, String), PkiError> {
    let key = new_p256_key("a client key")?;
    let key_pair = rcgen_key(&key)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = host_dn(host_name)?;
    let csr = params
        .serialize_request(&key_pair)
        .map_err(generate_err("a client CSR"))?;
    let csr_pem = csr.pem().map_err(generate_err("a client CSR"))?;
    Ok((key.to_pem(), csr_pem))
}

fn rcgen_key(key: &PrivateKey) -> Result<KeyPair, PkiError> {
    key.rcgen_key_pair()
        .map_err(|_| invalid("private key", "not usable for signing"))
}

fn host_dn(host_name: &str) -> Result<DistinguishedName, PkiError> {
    let bad = |reason| PkiError::HostName {
        name: host_name.to_string(),
        reason,
    };
    if host_name.is_empty() {
        return Err(bad("it is empty"));
    }
    if host_name.chars().any(char::is_control) {
        return Err(bad("it holds control characters"));
    }
    // X.520 caps a CN at 64 characters.
    if HOST_CN_PREFIX.len() + host_name.len() > 64 {
        return Err(bad("it is longer than 59 bytes"));
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{HOST_CN_PREFIX}{host_name}"));
    Ok(dn)
}

/// 16 random bytes, positive and without a leading zero byte, so the serial's DER encoding is
/// exactly these bytes.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// Parameters valid from `now` (less [`BACKDATE`]) for `lifetime`, with a random serial.
fn dated_params(now: OffsetDateTime, lifetime: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.serial_number = Some(random_serial());
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
    params
}

/// A self-signed certificate's parameters: [`dated_params`] named
/// `O=certfleet, CN=<cn> <random suffix>`.
fn self_signed_params(cn: &str, now: OffsetDateTime, lifetime: Duration) -> CertificateParams {
    let mut params = dated_params(now, lifetime);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "certfleet");
    dn.push(DnType::CommonName, format!("{cn} {}", random_suffix()));
    params.distinguished_name = dn;
    params
}

fn new_p256_key(what: &'static str) -> Result<PrivateKey, PkiError> {
    PrivateKey::generate(KeySpec::EcdsaP256).map_err(|e| PkiError::Generate {
        what,
        reason: e.to_string(),
    })
}

/// 8 random hex digits that tell apart the certificates of two fleet servers (and keep a
/// verifier from mistaking one for the other's issuer just because the names match).
fn random_suffix() -> String {
    let mut bytes = [0u8; 4];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A CSR whose signature verified, reduced to the only thing the CA takes from it: the key.
struct VerifiedCsr {
    spki_der: Vec<u8>,
}

impl VerifiedCsr {
    fn from_pem(csr_pem: &str) -> Result<Self, PkiError> {
        let block = pem::parse(csr_pem.trim()).map_err(|e| PkiError::Csr(format!("not PEM ({e})")))?;
        if !matches!(block.tag(), "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST") {
            return Err(PkiError::Csr(format!(
                "a PEM {:?} block where a CERTIFICATE REQUEST was expected",
                block.tag()
            )));
        }
        let (rest, csr) = X509CertificationRequest::from_der(block.contents())
            .map_err(|e| PkiError::Csr(format!("not a PKCS#10 request ({e})")))?;
        if !rest.is_empty() {
            return Err(PkiError::Csr("trailing bytes after the request".into()));
        }
        let spki = &csr.certification_request_info.subject_pki;
        check_client_key_type(spki)?;
        csr.verify_signature().map_err(|_| PkiError::CsrSignature)?;
        Ok(Self {
            spki_der: spki.raw.to_vec(),
        })
    }
}

fn check_client_key_type(spki: &SubjectPublicKeyInfo<'_>) -> Result<(), PkiError> {
    let alg = &spki.algorithm;
    if alg.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return Err(PkiError::CsrKeyType(format!("of algorithm {}", alg.algorithm)));
    }
    let curve = alg.parameters.as_ref().and_then(|p| p.as_oid().ok());
    match curve {
        Some(c) if c == OID_EC_P256 || c == OID_NIST_EC_P384 => Ok(()),
        Some(c) => Err(PkiError::CsrKeyType(format!("ECDSA on curve {c}"))),
        None => Err(PkiError::CsrKeyType("ECDSA without a named curve".into())),
    }
}

/// What [`InternalCa::issue_client_cert`] made. The caller stores `fingerprint_sha256` with
/// the host: the TLS layer reports that fingerprint for every request the agent makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedClientCert {
    pub cert_pem: String,
    /// Hex SHA-256 over the certificate's DER ([`sha256_fingerprint`]).
    pub fingerprint_sha256: String,
    /// Serial number, lowercase hex.
    pub serial_hex: String,
    /// Unix seconds.
    pub not_after: i64,
}

/// The server's internal CA: an ECDSA P-256 self-signed CA made on first start. It issues only
/// agent client certificates, and only the fleet server trusts it (for client authentication):
/// it is never installed as a trust anchor anywhere, so it cannot vouch for a web server.
///
/// The caller stores [`InternalCa::cert_pem`] and [`InternalCa::key_pem`] (the key 0600, or
/// sealed with [`crate::secretbox`]) and loads them back with [`InternalCa::from_pem`].
pub struct InternalCa {
    cert_der: Vec<u8>,
    cert_pem: String,
    key: PrivateKey,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for InternalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InternalCa")
            .field("fingerprint", &self.fingerprint())
            .field("key", &"[secret]")
            .finish()
    }
}

impl InternalCa {
    /// A new CA with a fresh key; its name carries a random suffix, so the CAs of two fleet
    /// servers are told apart.
    pub fn generate(now: OffsetDateTime) -> Result<Self, PkiError> {
        let key = new_p256_key("the internal CA key")?;
        let mut params = self_signed_params("certfleet fleet internal CA", now, CA_LIFETIME);
        // Path length 0: it signs leaf client certificates and nothing that could sign more.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key_pair = rcgen_key(&key)?;
        let cert = params
            .self_signed(&key_pair)
            .map_err(generate_err("the internal CA certificate"))?;
        let cert_der = cert.der().to_vec();
        Ok(Self {
            cert_pem: der_to_pem(&cert_der),
            cert_der,
            key,
            issuer: Issuer::new(params, key_pair),
        })
    }

    /// Load a CA made by [`InternalCa::generate`]: checks that the certificate is a CA and that
    /// the key is its key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let what = "internal CA certificate";
        let cert_der = pem_certificates(cert_pem)
            .map_err(|e| invalid(what, e))?
            .swap_remove(0);
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der).map_err(|e| invalid(what, e))?;
        if !parsed.is_ca() {
            return Err(invalid(
                what,
                "it is not a CA certificate (basicConstraints cA is not set)",
            ));
        }
        let key = PrivateKey::from_pem(key_pem)
            .map_err(|_| invalid("internal CA key", "not a usable PEM private key"))?;
        if key.public_key_spki_der() != parsed.public_key().raw {
            return Err(invalid(
                "internal CA key",
                "it does not belong to the internal CA certificate",
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), rcgen_key(&key)?)
            .map_err(|e| invalid(what, e))?;
        Ok(Self {
            cert_pem: der_to_pem(&cert_der),
            cert_der,
            key,
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA's private key, PKCS#8 PEM. A secret: store it 0600 or sealed.
    pub fn key_pem(&self) -> String {
        self.key.to_pem()
    }

    /// [`sha256_fingerprint`] of the CA certificate.
    pub fn fingerprint(&self) -> String {
        sha256_fingerprint(&self.cert_der)
    }

    /// Issue an agent's client certificate for the key in `csr_pem`.
    ///
    /// The CSR's self-signature must verify (proof that the requester holds the key) and its
    /// key must be ECDSA P-256 or P-384. Nothing else is taken from the CSR: the certificate
    /// says `CN=host:NAME` with `host_name` as given by the caller (the host the enrollment
    /// token was made for), the clientAuth extended key usage only, a random 128-bit serial
    /// and [`CLIENT_CERT_LIFETIME`].
    pub fn issue_client_cert(
        &self,
        csr_pem: &str,
        host_name: &str,
        now: OffsetDateTime,
    ) -> Result<IssuedClientCert, PkiError> {
        let csr = VerifiedCsr::from_pem(csr_pem)?;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(&csr.spki_der)
            .map_err(|e| PkiError::Csr(format!("unusable public key ({e})")))?;
        let mut params = dated_params(now, CLIENT_CERT_LIFETIME);
        params.distinguished_name = host_dn(host_name)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&public_key, &self.issuer)
            .map_err(generate_err("a client certificate"))?;
        let info = CertInfo::from_der(cert.der()).map_err(|e| invalid("issued certificate", e))?;
        Ok(IssuedClientCert {
            cert_pem: der_to_pem(cert.der()),
            fingerprint_sha256: sha256_fingerprint(cert.der()),
            serial_hex: info.serial_hex(),
            not_after: info.not_after.unix_timestamp(),
        })
    }
}

/// The API server's TLS certificate (chain) and key: either self-signed by
/// [`ServerIdentity::generate`] / [`ServerIdentity::load_or_create`], or the operator's own
/// (`--tls-cert/--tls-key`, [`ServerIdentity::from_files`]).
#[derive(Clone)]
pub struct ServerIdentity {
    /// DER, leaf first.
    chain: Vec<Vec<u8>>,
    key: PrivateKey,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("fingerprint", &self.fingerprint())
            .field("chain_len", &self.chain.len())
            .field("key", &"[secret]")
            .finish()
    }
}

impl ServerIdentity {
    /// A self-signed ECDSA P-256 certificate for `names` (DNS names or IP addresses the API is
    /// reached by) plus `localhost`, `127.0.0.1` and `::1`, valid [`SERVER_CERT_LIFETIME`].
    /// It is not a CA certificate, so it can serve as its own trust anchor for clients given it
    /// as a CA bundle instead of a pin.
    pub fn generate(names: &[String], now: OffsetDateTime) -> Result<Self, PkiError> {
        let mut sans: Vec<SanType> = Vec::new();
        let mut push = |san: SanType| {
            if !sans.contains(&san) {
                sans.push(san);
            }
        };
        for name in names {
            let name = name.trim();
            match name.parse::<IpAddr>() {
                Ok(ip) => push(SanType::IpAddress(ip)),
                Err(_) => push(SanType::DnsName(
                    name.to_ascii_lowercase()
                        .try_into()
                        .map_err(|e| invalid(format!("API host name {name:?}"), e))?,
                )),
            }
        }
        push(SanType::DnsName("localhost".try_into().expect("ASCII")));
        push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        let key = new_p256_key("the API key")?;
        let mut params = self_signed_params("certfleet fleet API", now, SERVER_CERT_LIFETIME);
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .self_signed(&rcgen_key(&key)?)
            .map_err(generate_err("the API certificate"))?;
        Ok(Self {
            chain: vec![cert.der().to_vec()],
            key,
        })
    }

    /// A certificate chain (PEM, leaf first) and its private key (PEM: PKCS#8, SEC1 or
    /// PKCS#1). Checks that the key belongs to the leaf.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        Self::from_pem_named(chain_pem, key_pem, "API certificate", "API key")
    }

    fn from_pem_named(
        chain_pem: &str,
        key_pem: &str,
        cert_what: &str,
        key_what: &str,
    ) -> Result<Self, PkiError> {
        let chain = pem_certificates(chain_pem).map_err(|e| invalid(cert_what, e))?;
        let leaf = CertInfo::from_der(&chain[0]).map_err(|e| invalid(cert_what, e))?;
        let key = PrivateKey::from_pem(key_pem).map_err(|_| {
            invalid(
                key_what,
                "not a usable PEM private key (PKCS#8, SEC1 EC or PKCS#1 RSA)",
            )
        })?;
        if !leaf.matches_key(&key) {
            return Err(invalid(
                key_what,
                format!("it is not the key of {cert_what} (whose first certificate is the leaf)"),
            ));
        }
        Ok(Self { chain, key })
    }

    /// `--tls-cert FILE --tls-key FILE`.
    pub fn from_files(cert_path: &Path, key_path: &Path) -> Result<Self, PkiError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|e| PkiError::Io {
                context: format!("cannot read {}", path.display()),
                source: e,
            })
        };
        Self::from_pem_named(
            &read(cert_path)?,
            &read(key_path)?,
            &cert_path.display().to_string(),
            &key_path.display().to_string(),
        )
    }

    /// The self-signed identity kept in the server's data directory `dir`: loaded from
    /// [`API_CERT_FILE`] and [`API_KEY_FILE`] when they exist, else made by
    /// [`ServerIdentity::generate`] and written there (the key 0600). Either way
    /// [`API_FINGERPRINT_FILE`] is (re)written with the fingerprint and a newline, for scripts
    /// and for `fleet host add` run on the server. Returns whether it was made now.
    ///
    /// `names` only matter the first time: a certificate once made is kept even if the names
    /// change, since a new one would break every pin. Delete the two files to start over.
    pub fn load_or_create(
        dir: &Path,
        names: &[String],
        now: OffsetDateTime,
    ) -> Result<(Self, bool), PkiError> {
        let cert_path = dir.join(API_CERT_FILE);
        let key_path = dir.join(API_KEY_FILE);
        let (identity, created) = if cert_path.exists() {
            (Self::from_files(&cert_path, &key_path)?, false)
        } else {
            let identity = Self::generate(names, now)?;
            // Key first: a cert without its key is refused on the next start, while a key
            // without its cert is rewritten here.
            write_file(&key_path, identity.key.to_pem().as_bytes(), 0o600)?;
            write_file(&cert_path, identity.cert_pem().as_bytes(), 0o644)?;
            (identity, true)
        };
        let fp_path = dir.join(API_FINGERPRINT_FILE);
        let line = format!("{}\n", identity.fingerprint());
        if std::fs::read_to_string(&fp_path).ok().as_deref() != Some(line.as_str()) {
            write_file(&fp_path, line.as_bytes(), 0o644)?;
        }
        Ok((identity, created))
    }

    /// [`sha256_fingerprint`] of the leaf: what clients pin.
    pub fn fingerprint(&self) -> String {
        sha256_fingerprint(&self.chain[0])
    }

    /// The chain, PEM, leaf first.
    pub fn cert_pem(&self) -> String {
        self.chain.iter().map(|der| der_to_pem(der)).collect()
    }

    /// The chain, DER, leaf first.
    pub fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain
    }

    pub(crate) fn key_pkcs8_der(&self) -> &[u8] {
        self.key.pkcs8_der()
    }
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    certfleet_store::atomic::write_file(path, data, mode).map_err(|e| PkiError::Io {
        context: "cannot save the API certificate".into(),
        source: std::io::Error::other(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::ParsedExtension;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn client_cert_says_only_the_host_the_server_chose() {
        let ca = InternalCa::generate(now()).unwrap();
        // The CSR asks for another host and for a DNS name: both are ignored.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["evil.example.com".to_string()]).unwrap();
        params.distinguished_name = host_dn("admin").unwrap();
        let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();

        let issued = ca.issue_client_cert(&csr_pem, "web1", now()).unwrap();
        let der = pem_certificates(&issued.cert_pem).unwrap().swap_remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cns: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert_eq!(cns, ["host:web1"]);
        assert!(cert.subject_alternative_name().unwrap().is_none());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(!cert.is_ca());
        assert_eq!(
            cert.issuer(),
            &x509_parser::parse_x509_certificate(ca.cert_der())
                .unwrap()
                .1
                .tbs_certificate
                .subject
        );
        assert_eq!(issued.fingerprint_sha256, sha256_fingerprint(&der));
        assert_eq!(issued.serial_hex, hex::encode(cert.raw_serial()));
        assert_eq!(issued.serial_hex.len(), 32);
        assert_eq!(issued.not_after, (now() + CLIENT_CERT_LIFETIME).unix_timestamp());
        // The certificate is for the CSR's key.
        assert_eq!(
            spki_sha256_of_cert(&issued.cert_pem).unwrap(),
            spki_sha256_of_csr(&csr_pem).unwrap()
        );
        assert!(
            cert.extensions()
                .iter()
                .any(|e| matches!(e.parsed_extension(), ParsedExtension::AuthorityKeyIdentifier(_)))
        );
        // Serials are random.
        let again = ca.issue_client_cert(&csr_pem, "web1", now()).unwrap();
        assert_ne!(again.serial_hex, issued.serial_hex);
    }

    #[test]
    fn csr_with_a_bad_signature_is_refused() {
        let ca = InternalCa::generate(now()).unwrap();
        let (_, csr_pem) = new_client_key_and_csr("web1").unwrap();
        let mut der = pem::parse(&csr_pem).unwrap().into_contents();
        // The signature is the last bytes of the DER: flip one.
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
        let err = ca.issue_client_cert(&tampered, "web1", now()).unwrap_err();
        assert!(matches!(err, PkiError::CsrSignature), "{err}");
        assert!(matches!(
            spki_sha256_of_csr(&tampered),
            Err(PkiError::CsrSignature)
        ));

        // A CSR whose key was swapped for another one (signature made by the first key).
        let other = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = host_dn("x").unwrap();
        let good = params.serialize_request(&other).unwrap().der().to_vec();
        let (_, orig_der) = (0, pem::parse(&csr_pem).unwrap().into_contents());
        let spki_good = X509CertificationRequest::from_der(&good)
            .unwrap()
            .1
            .certification_request_info
            .subject_pki
            .raw
            .to_vec();
        let spki_orig = X509CertificationRequest::from_der(&orig_der)
            .unwrap()
            .1
            .certification_request_info
            .subject_pki
            .raw
            .to_vec();
        assert_eq!(spki_good.len(), spki_orig.len());
        let pos = orig_der
            .windows(spki_orig.len())
            .position(|w| w == spki_orig)
            .unwrap();
        let mut swapped = orig_der.clone();
        swapped[pos..pos + spki_orig.len()].copy_from_slice(&spki_good);
        let swapped = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", swapped));
        assert!(matches!(
            ca.issue_client_cert(&swapped, "web1", now()),
            Err(PkiError::CsrSignature)
        ));
    }

    #[test]
    fn csr_garbage_and_wrong_key_types_are_refused() {
        let ca = InternalCa::generate(now()).unwrap();
        assert!(matches!(
            ca.issue_client_cert("hello", "web1", now()),
            Err(PkiError::Csr(_))
        ));
        let cert_pem = ca.cert_pem().to_string();
        let err = ca.issue_client_cert(&cert_pem, "web1", now()).unwrap_err();
        assert!(err.to_string().contains("CERTIFICATE REQUEST"), "{err}");
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&ed)
            .unwrap()
            .pem()
            .unwrap();
        assert!(matches!(
            ca.issue_client_cert(&csr, "web1", now()),
            Err(PkiError::CsrKeyType(_))
        ));
        let (_, csr) = new_client_key_and_csr("web1").unwrap();
        for bad in ["", "a\nb", &"x".repeat(60)] {
            assert!(matches!(
                ca.issue_client_cert(&csr, bad, now()),
                Err(PkiError::HostName { .. })
            ));
        }
    }

    #[test]
    fn ca_round_trips_through_pem_and_keeps_issuing() {
        let ca = InternalCa::generate(now()).unwrap();
        let back = InternalCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(back.fingerprint(), ca.fingerprint());
        let (key_pem, csr) = new_client_key_and_csr("db1").unwrap();
        let issued = back.issue_client_cert(&csr, "db1", now()).unwrap();
        // Issued by the loaded CA, the certificate names the original CA as issuer.
        let der = pem_certificates(&issued.cert_pem).unwrap().swap_remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert_eq!(
            spki_sha256_of_key(&key_pem).unwrap(),
            spki_sha256_of_cert(&issued.cert_pem).unwrap()
        );

        let other = InternalCa::generate(now()).unwrap();
        let err = InternalCa::from_pem(ca.cert_pem(), &other.key_pem()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        let leaf = ServerIdentity::generate(&[], now()).unwrap();
        let err = InternalCa::from_pem(&leaf.cert_pem(), &ca.key_pem()).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
    }

    #[test]
    fn debug_output_holds_no_secrets() {
        let ca = InternalCa::generate(now()).unwrap();
        let id = ServerIdentity::generate(&[], now()).unwrap();
        let key_b64: String = ca.key_pem().lines().nth(1).unwrap().chars().take(20).collect();
        let dbg = format!("{ca:?} {id:?}");
        assert!(!dbg.contains(&key_b64), "{dbg}");
        assert!(
            dbg.contains(&ca.fingerprint()) && dbg.contains("[secret]"),
            "{dbg}"
        );
    }

    #[test]
    fn server_identity_names_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec![
            "Fleet.Example.com".to_string(),
            "192.0.2.7".to_string(),
            "localhost".to_string(),
        ];
        let (id, created) = ServerIdentity::load_or_create(dir.path(), &names, now()).unwrap();
        assert!(created);
        let info = CertInfo::from_pem(&id.cert_pem()).unwrap();
        assert_eq!(
            info.names,
            ["fleet.example.com", "192.0.2.7", "localhost", "127.0.0.1", "::1"]
        );
        assert!(info.not_after - now() >= Duration::days(365 * 20));

        let (cert, key, fp) = (
            dir.path().join(API_CERT_FILE),
            dir.path().join(API_KEY_FILE),
            dir.path().join(API_FINGERPRINT_FILE),
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_to_string(&fp).unwrap(),
            format!("{}\n", id.fingerprint())
        );
        assert_eq!(id.fingerprint().len(), 64);

        // Second start: same certificate, even with other names.
        let (again, created) =
            ServerIdentity::load_or_create(dir.path(), &["other.example".into()], now()).unwrap();
        assert!(!created);
        assert_eq!(again.fingerprint(), id.fingerprint());

        // A key left without its certificate (a crash between the two writes) is replaced.
        std::fs::remove_file(&cert).unwrap();
        let (fresh, created) = ServerIdentity::load_or_create(dir.path(), &[], now()).unwrap();
        assert!(created);
        assert_ne!(fresh.fingerprint(), id.fingerprint());
        assert_eq!(
            std::fs::read_to_string(&fp).unwrap(),
            format!("{}\n", fresh.fingerprint())
        );

        // A key that is not the certificate's is refused, naming the file.
        let other = ServerIdentity::generate(&[], now()).unwrap();
        std::fs::write(&key, other.key.to_pem()).unwrap();
        let err = ServerIdentity::from_files(&cert, &key).unwrap_err().to_string();
        assert!(
            err.contains(&key.display().to_string()) && err.contains("not the key"),
            "{err}"
        );
    }
}
