//! What a certificate says, read once with x509-parser: names, validity, serial, issuer,
//! authority key id (for ARI) and public key (to check it matches a private key).

use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, thiserror::Error)]
pub enum CertParseError {
    #[error("no CERTIFICATE block found")]
    NoCertificate,
    #[error("PEM: {0}")]
    Pem(String),
    #[error("X.509: {0}")]
    X509(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject_cn: Option<String>,
    pub issuer_cn: Option<String>,
    /// DNS names and IP addresses from subjectAltName, in certificate order.
    pub names: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Serial number, big-endian bytes as encoded (no sign padding stripped).
    pub serial: Vec<u8>,
    pub authority_key_id: Option<Vec<u8>>,
    pub spki_der: Vec<u8>,
    pub der: Vec<u8>,
}

impl CertInfo {
    pub fn from_der(der: &[u8]) -> Result<Self, CertParseError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertParseError::X509(e.to_string()))?;
        let cn = |name: &x509_parser::x509::X509Name| {
            name.iter_common_name()
                .next()
                .and_then(|c| c.as_str().ok())
                .map(str::to_string)
        };
        let mut names = Vec::new();
        let mut aki = None;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for gn in &san.general_names {
                        match gn {
                            GeneralName::DNSName(d) => names.push(d.to_string()),
                            GeneralName::IPAddress(b) => {
                                if let Some(ip) = ip_from_bytes(b) {
                                    names.push(ip.to_string());
                                }
                            }
                            _ => {}
                        }
                    }
                }
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    aki = a.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                _ => {}
            }
        }
        Ok(Self {
            subject_cn: cn(cert.subject()),
            issuer_cn: cn(cert.issuer()),
            names,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            serial: cert.raw_serial().to_vec(),
            authority_key_id: aki,
            spki_der: cert.public_key().raw.to_vec(),
            der: der.to_vec(),
        })
    }

    /// The first certificate in a PEM text (the leaf of a chain file).
    pub fn from_pem(text: &str) -> Result<Self, CertParseError> {
        let ders = pem_certificates(text)?;
        Self::from_der(ders.first().ok_or(CertParseError::NoCertificate)?)
    }

    pub fn serial_hex(&self) -> String {
        self.serial.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn lifetime(&self) -> time::Duration {
        self.not_after - self.not_before
    }

    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        now >= self.not_after
    }

    pub fn matches_key(&self, key: &crate::PrivateKey) -> bool {
        self.spki_der == key.public_key_spki_der()
    }
}

/// Every CERTIFICATE block of a PEM text, as DER, in order.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, CertParseError> {
    let blocks = pem::parse_many(text).map_err(|e| CertParseError::Pem(e.to_string()))?;
    let ders: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
        .collect();
    if ders.is_empty() {
        return Err(CertParseError::NoCertificate);
    }
    Ok(ders)
}

pub fn der_to_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}
