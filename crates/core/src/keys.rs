//! Private keys for certificates and ACME accounts. Generation and parsing go through
//! aws-lc-rs (via rcgen for CSRs); keys are held as PKCS#8 DER, the one form every
//! consumer here (rcgen, aws-lc-rs signing, PEM files on disk) accepts.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySpec {
    EcdsaP256,
    EcdsaP384,
    Rsa(u32),
}

impl Default for KeySpec {
    /// certbot's default since 2.0: ECDSA on P-256.
    fn default() -> Self {
        KeySpec::EcdsaP256
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unsupported RSA key size {0} (use 2048, 3072 or 4096)")]
    RsaSize(u32),
    #[error("unsupported elliptic curve {0:?} (use secp256r1 or secp384r1)")]
    Curve(String),
    #[error("unsupported key type {0:?} (use ecdsa or rsa)")]
    KeyType(String),
    #[error("not a PEM private key: {0}")]
    NotPem(String),
    #[error("unsupported or malformed private key ({0})")]
    Malformed(String),
    #[error("key generation failed")]
    Generate,
}

impl KeySpec {
    /// Build from certbot's three flags (`--key-type`, `--elliptic-curve`, `--rsa-key-size`).
    pub fn from_certbot(
        key_type: &str,
        curve: Option<&str>,
        rsa_size: Option<u32>,
    ) -> Result<Self, KeyError> {
        match key_type {
            "ecdsa" | "ec" => match curve.unwrap_or("secp256r1") {
                "secp256r1" | "p256" | "P-256" | "prime256v1" => Ok(KeySpec::EcdsaP256),
                "secp384r1" | "p384" | "P-384" => Ok(KeySpec::EcdsaP384),
                other => Err(KeyError::Curve(other.to_string())),
            },
            "rsa" => {
                let bits = rsa_size.unwrap_or(2048);
                match bits {
                    2048 | 3072 | 4096 => Ok(KeySpec::Rsa(bits)),
                    other => Err(KeyError::RsaSize(other)),
                }
            }
            other => Err(KeyError::KeyType(other.to_string())),
        }
    }

    /// certbot's `key_type` value.
    pub fn key_type(&self) -> &'static str {
        match self {
            KeySpec::Rsa(_) => "rsa",
            _ => "ecdsa",
        }
    }

    pub fn curve(&self) -> Option<&'static str> {
        match self {
            KeySpec::EcdsaP256 => Some("secp256r1"),
            KeySpec::EcdsaP384 => Some("secp384r1"),
            KeySpec::Rsa(_) => None,
        }
    }

    pub fn rsa_bits(&self) -> Option<u32> {
        match self {
            KeySpec::Rsa(b) => Some(*b),
            _ => None,
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySpec::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeySpec::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeySpec::Rsa(b) => write!(f, "RSA {b}"),
        }
    }
}

impl FromStr for KeySpec {
    type Err = KeyError;
    /// Short forms: `ec256`, `ec384`, `rsa2048`, `rsa3072`, `rsa4096`.
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "ec256" | "ecdsa" | "p256" => Ok(KeySpec::EcdsaP256),
            "ec384" | "p384" => Ok(KeySpec::EcdsaP384),
            "rsa2048" | "rsa" => Ok(KeySpec::Rsa(2048)),
            "rsa3072" => Ok(KeySpec::Rsa(3072)),
            "rsa4096" => Ok(KeySpec::Rsa(4096)),
            other => Err(KeyError::KeyType(other.to_string())),
        }
    }
}

/// A private key, always held as PKCS#8 DER. Debug never prints key material.
#[derive(Clone)]
pub struct PrivateKey {
    spec: KeySpec,
    pkcs8: Vec<u8>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.spec)
    }
}

impl PrivateKey {
    pub fn generate(spec: KeySpec) -> Result<Self, KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = match spec {
            KeySpec::EcdsaP256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| KeyError::Generate)?
                .as_ref()
                .to_vec(),
            KeySpec::EcdsaP384 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
                .map_err(|_| KeyError::Generate)?
                .as_ref()
                .to_vec(),
            KeySpec::Rsa(bits) => {
                let size = match bits {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    other => return Err(KeyError::RsaSize(other)),
                };
                let kp = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|_| KeyError::Generate)?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der = kp.as_der().map_err(|_| KeyError::Generate)?;
                der.as_ref().to_vec()
            }
        };
        Ok(Self { spec, pkcs8 })
    }

    /// Parse a PEM private key: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or PKCS#1
    /// (`RSA PRIVATE KEY`), the three forms certbot and openssl write.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let block = pem::parse_many(text)
            .map_err(|e| KeyError::NotPem(e.to_string()))?
            .into_iter()
            .find(|p| p.tag().ends_with("PRIVATE KEY"))
            .ok_or_else(|| KeyError::NotPem("no PRIVATE KEY block found".into()))?;
        match block.tag() {
            "PRIVATE KEY" => Self::from_pkcs8_der(block.contents()),
            "EC PRIVATE KEY" => {
                for alg in [&ECDSA_P256_SHA256_FIXED_SIGNING, &ECDSA_P384_SHA384_FIXED_SIGNING] {
                    if let Ok(kp) = EcdsaKeyPair::from_private_key_der(alg, block.contents()) {
                        let doc = kp
                            .to_pkcs8v1()
                            .map_err(|_| KeyError::Malformed("EC key".into()))?;
                        return Self::from_pkcs8_der(doc.as_ref());
                    }
                }
                Err(KeyError::Malformed("EC key on an unsupported curve".into()))
            }
            "RSA PRIVATE KEY" => {
                let kp = aws_lc_rs::rsa::KeyPair::from_der(block.contents())
                    .map_err(|e| KeyError::Malformed(e.to_string()))?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der =
                    kp.as_der().map_err(|_| KeyError::Malformed("RSA key".into()))?;
                Self::from_pkcs8_der(der.as_ref())
            }
            other => Err(KeyError::NotPem(format!("unsupported PEM block {other:?}"))),
        }
    }

    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        // aws-lc ignores bytes after the key; they would be kept here and written out again,
        // and stricter readers (the JWK export, openssl) refuse them.
        use x509_parser::asn1_rs::{Any, FromDer};
        match Any::from_der(der) {
            Ok(([], _)) => {}
            Ok(_) => return Err(KeyError::Malformed("data after the end of the key".into())),
            Err(e) => return Err(KeyError::Malformed(e.to_string())),
        }
        if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).is_ok() {
            return Ok(Self {
                spec: KeySpec::EcdsaP256,
                pkcs8: der.to_vec(),
            });
        }
        if EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der).is_ok() {
            return Ok(Self {
                spec: KeySpec::EcdsaP384,
                pkcs8: der.to_vec(),
            });
        }
        match aws_lc_rs::rsa::KeyPair::from_pkcs8(der) {
            Ok(kp) => {
                let bits = (kp.public_modulus_len() * 8) as u32;
                Ok(Self {
                    spec: KeySpec::Rsa(bits),
                    pkcs8: der.to_vec(),
                })
            }
            Err(e) => Err(KeyError::Malformed(e.to_string())),
        }
    }

    pub fn spec(&self) -> KeySpec {
        self.spec
    }

    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// PKCS#8 PEM, the form certbot writes to `privkey.pem`.
    pub fn to_pem(&self) -> String {
        pem::encode_config(
            &pem::Pem::new("PRIVATE KEY", self.pkcs8.clone()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    }

    /// DER SubjectPublicKeyInfo, used to match a key with its certificate.
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        use rcgen::PublicKeyData;
        self.rcgen_key_pair()
            .expect("key was validated on construction")
            .subject_public_key_info()
    }

    /// Raw public key bytes: the uncompressed EC point or the PKCS#1 RSAPublicKey.
    pub fn public_key_raw(&self) -> Vec<u8> {
        match self.spec {
            KeySpec::EcdsaP256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.pkcs8)
                .map(|k| k.public_key().as_ref().to_vec())
                .unwrap_or_default(),
            KeySpec::EcdsaP384 => EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &self.pkcs8)
                .map(|k| k.public_key().as_ref().to_vec())
                .unwrap_or_default(),
            KeySpec::Rsa(_) => aws_lc_rs::rsa::KeyPair::from_pkcs8(&self.pkcs8)
                .map(|k| k.public_key().as_ref().to_vec())
                .unwrap_or_default(),
        }
    }

    pub fn rcgen_key_pair(&self) -> Result<rcgen::KeyPair, KeyError> {
        rcgen::KeyPair::try_from(self.pkcs8.as_slice()).map_err(|e| KeyError::Malformed(e.to_string()))
    }

    /// A DER CSR for these names (DNS names and IP addresses), signed by this key.
    pub fn csr_der(&self, names: &[crate::Identifier]) -> Result<Vec<u8>, KeyError> {
        let kp = self.rcgen_key_pair()?;
        // rcgen turns each string into a dNSName or, when it parses as one, an iPAddress SAN.
        let sans: Vec<String> = names.iter().map(|id| id.value()).collect();
        let mut params =
            rcgen::CertificateParams::new(sans).map_err(|e| KeyError::Malformed(e.to_string()))?;
        // No subject CN: RFC 8555 CAs take names from the SAN extension; CN is optional
        // and limited to 64 characters, which long names would break.
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&kp)
            .map_err(|e| KeyError::Malformed(e.to_string()))?;
        Ok(csr.der().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_roundtrip_every_spec() {
        for spec in [KeySpec::EcdsaP256, KeySpec::EcdsaP384, KeySpec::Rsa(2048)] {
            let k = PrivateKey::generate(spec).unwrap();
            let back = PrivateKey::from_pem(&k.to_pem()).unwrap();
            assert_eq!(back.spec(), spec);
            assert_eq!(back.pkcs8_der(), k.pkcs8_der());
            let csr = k
                .csr_der(&[crate::Identifier::dns("a.example.com").unwrap()])
                .unwrap();
            assert!(!csr.is_empty());
        }
    }

    #[test]
    fn certbot_flags() {
        assert_eq!(
            KeySpec::from_certbot("ecdsa", Some("secp384r1"), None).unwrap(),
            KeySpec::EcdsaP384
        );
        assert_eq!(
            KeySpec::from_certbot("rsa", None, Some(4096)).unwrap(),
            KeySpec::Rsa(4096)
        );
        assert!(KeySpec::from_certbot("rsa", None, Some(1024)).is_err());
        assert!(KeySpec::from_certbot("dsa", None, None).is_err());
    }

    #[test]
    fn debug_hides_key_material() {
        let k = PrivateKey::generate(KeySpec::EcdsaP256).unwrap();
        assert_eq!(format!("{k:?}"), "PrivateKey(ECDSA P-256)");
    }
}
