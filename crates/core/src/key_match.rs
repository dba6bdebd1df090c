//! Does a PEM private key belong to a certificate? Answered from the public half every
//! private-key encoding carries (the RSA modulus and exponent, the EC public point), compared
//! with the certificate's SubjectPublicKeyInfo.
//!
//! Why not [`PrivateKey::from_pem`]: it validates the key pair (tens of microseconds per EC
//! key, hundreds per RSA key), too slow for a `renew` pass that checks every lineage's live
//! set on each run. A structural walk of the DER costs about a microsecond. An EC key without
//! its optional public point falls back to the full parse. What it cannot see is a key whose
//! private half was altered while its public half was not: that takes intent, not a full disk
//! or a kill, and loading the key for signing (or a web server) still refuses it.

use x509_parser::asn1_rs::{Any, Class, FromDer, Tag};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::keys::{KeyError, PrivateKey};

/// The public half of a key, as comparable bytes.
#[derive(Debug, PartialEq, Eq)]
enum PublicHalf {
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    Ec(Vec<u8>),
}

/// True when the private key in `pem_text` is the one whose public key `spki_der` holds.
/// Unreadable text or an unsupported key is an error saying what is wrong with it.
pub fn key_belongs_to(pem_text: &str, spki_der: &[u8]) -> Result<bool, KeyError> {
    let block = pem::parse_many(pem_text)
        .map_err(|e| KeyError::NotPem(e.to_string()))?
        .into_iter()
        .find(|p| p.tag().ends_with("PRIVATE KEY"))
        .ok_or_else(|| KeyError::NotPem("no PRIVATE KEY block found".into()))?;
    let cert = cert_half(spki_der)?;
    let key = match block.tag() {
        "PRIVATE KEY" => pkcs8_half(block.contents())?,
        "EC PRIVATE KEY" => sec1_half(block.contents())?,
        "RSA PRIVATE KEY" => Some(pkcs1_half(block.contents())?),
        other => return Err(KeyError::NotPem(format!("unsupported PEM block {other:?}"))),
    };
    match key {
        Some(k) => Ok(k == cert),
        // An EC key stored without its public point: derive it the slow way.
        None => Ok(PrivateKey::from_pem(pem_text)?.public_key_spki_der() == spki_der),
    }
}

fn malformed(what: &str) -> KeyError {
    KeyError::Malformed(what.to_string())
}

/// The elements of a DER SEQUENCE.
fn sequence(der: &[u8]) -> Result<Vec<Any<'_>>, KeyError> {
    let (rest, seq) = Any::from_der(der).map_err(|e| KeyError::Malformed(e.to_string()))?;
    if !rest.is_empty() || seq.tag() != Tag::Sequence {
        return Err(malformed("not a single DER SEQUENCE"));
    }
    let mut items = Vec::new();
    let mut data = seq.data;
    while !data.is_empty() {
        let (rest, item) = Any::from_der(data).map_err(|e| KeyError::Malformed(e.to_string()))?;
        items.push(item);
        data = rest;
    }
    Ok(items)
}

/// An INTEGER's magnitude: DER may prefix a zero byte to keep it positive.
fn unsigned(i: &Any<'_>) -> Result<Vec<u8>, KeyError> {
    if i.tag() != Tag::Integer {
        return Err(malformed("expected an INTEGER"));
    }
    Ok(strip_zeros(i.data))
}

fn strip_zeros(mut b: &[u8]) -> Vec<u8> {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b.to_vec()
}

fn cert_half(spki_der: &[u8]) -> Result<PublicHalf, KeyError> {
    let (_, spki) =
        SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| KeyError::Malformed(e.to_string()))?;
    match spki.parsed().map_err(|e| KeyError::Malformed(e.to_string()))? {
        PublicKey::RSA(rsa) => Ok(PublicHalf::Rsa {
            modulus: strip_zeros(rsa.modulus),
            exponent: strip_zeros(rsa.exponent),
        }),
        PublicKey::EC(point) => Ok(PublicHalf::Ec(point.data().to_vec())),
        _ => Err(malformed("the certificate's key is neither RSA nor EC")),
    }
}

/// PKCS#1 RSAPrivateKey: version, modulus, publicExponent, ...
fn pkcs1_half(der: &[u8]) -> Result<PublicHalf, KeyError> {
    let items = sequence(der)?;
    if items.len() < 3 {
        return Err(malformed("RSA key too short"));
    }
    Ok(PublicHalf::Rsa {
        modulus: unsigned(&items[1])?,
        exponent: unsigned(&items[2])?,
    })
}

/// SEC1 ECPrivateKey: version, privateKey, [0] parameters, [1] publicKey BIT STRING.
fn sec1_half(der: &[u8]) -> Result<Option<PublicHalf>, KeyError> {
    let items = sequence(der)?;
    let Some(tagged) = items
        .iter()
        .find(|a| a.class() == Class::ContextSpecific && a.tag() == Tag(1))
    else {
        return Ok(None);
    };
    let (_, bits) = Any::from_der(tagged.data).map_err(|e| KeyError::Malformed(e.to_string()))?;
    match bits.data {
        // BIT STRING content: the count of unused bits (0), then the point.
        [0, point @ ..] if bits.tag() == Tag::BitString && !point.is_empty() => {
            Ok(Some(PublicHalf::Ec(point.to_vec())))
        }
        _ => Err(malformed("EC public key")),
    }
}

/// PKCS#8 PrivateKeyInfo: version, algorithm, privateKey OCTET STRING (PKCS#1 or SEC1 inside).
fn pkcs8_half(der: &[u8]) -> Result<Option<PublicHalf>, KeyError> {
    let items = sequence(der)?;
    let inner = items
        .get(2)
        .filter(|a| a.tag() == Tag::OctetString)
        .ok_or_else(|| malformed("PKCS#8 key without its private key"))?
        .data;
    let first = sequence(inner)?;
    // RSAPrivateKey continues with INTEGERs, ECPrivateKey with an OCTET STRING.
    match first.get(1).map(|a| a.tag()) {
        Some(Tag::Integer) => pkcs1_half(inner).map(Some),
        Some(Tag::OctetString) => sec1_half(inner),
        _ => Err(malformed("PKCS#8 key that is neither RSA nor EC")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeySpec;

    fn spki_of(key: &PrivateKey) -> Vec<u8> {
        key.public_key_spki_der()
    }

    #[test]
    fn every_encoding_matches_its_own_certificate_key_and_no_other() {
        for spec in [KeySpec::EcdsaP256, KeySpec::EcdsaP384, KeySpec::Rsa(2048)] {
            let key = PrivateKey::generate(spec).unwrap();
            let other = PrivateKey::generate(spec).unwrap();
            assert!(key_belongs_to(&key.to_pem(), &spki_of(&key)).unwrap(), "{spec}");
            assert!(
                !key_belongs_to(&key.to_pem(), &spki_of(&other)).unwrap(),
                "{spec}"
            );
        }
        // Across types: an EC key never matches an RSA certificate.
        let ec = PrivateKey::generate(KeySpec::EcdsaP256).unwrap();
        let rsa = PrivateKey::generate(KeySpec::Rsa(2048)).unwrap();
        assert!(!key_belongs_to(&ec.to_pem(), &spki_of(&rsa)).unwrap());
        assert!(!key_belongs_to(&rsa.to_pem(), &spki_of(&ec)).unwrap());
    }

    #[test]
    fn sec1_and_pkcs1_forms_as_openssl_writes_them() {
        // openssl ecparam -genkey / openssl genrsa -traditional write these forms.
        let sec1 = std::process::Command::new("openssl")
            .args(["ecparam", "-name", "prime256v1", "-genkey", "-noout"])
            .output();
        let Ok(out) = sec1 else {
            return; // no openssl on this machine: the PKCS#8 test above still runs
        };
        let pem = String::from_utf8(out.stdout).unwrap();
        let key = PrivateKey::from_pem(&pem).unwrap();
        assert!(key_belongs_to(&pem, &spki_of(&key)).unwrap());
        let out = std::process::Command::new("openssl")
            .args(["genrsa", "-traditional", "2048"])
            .output()
            .unwrap();
        let pem = String::from_utf8(out.stdout).unwrap();
        assert!(pem.contains("RSA PRIVATE KEY"), "{pem}");
        let key = PrivateKey::from_pem(&pem).unwrap();
        assert!(key_belongs_to(&pem, &spki_of(&key)).unwrap());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let key = PrivateKey::generate(KeySpec::EcdsaP256).unwrap();
        let spki = spki_of(&key);
        for text in [
            "",
            "garbage",
            "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\nMAMCAQA=\n-----END RSA PRIVATE KEY-----\n",
        ] {
            assert!(key_belongs_to(text, &spki).is_err(), "{text:?}");
        }
    }
}
