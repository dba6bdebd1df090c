//! Account keys as JSON Web Keys with private parameters, the form certbot (josepy) keeps in
//! `private_key.json`: RSA (`n e d p q dp dq qi`, what certbot generates) and EC P-256/P-384
//! (`crv x y d`). Also the account id certbot derives from the public key.

use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, EcdsaSigningAlgorithm,
    KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certfleet_core::{KeySpec, PrivateKey};
use md5::{Digest, Md5};

use crate::pyjson;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(v: &serde_json::Value, field: &str) -> Result<Vec<u8>, String> {
    let s = v
        .get(field)
        .and_then(|x| x.as_str())
        .ok_or_else(|| format!("JWK has no {field:?} string"))?;
    // josepy writes unpadded base64url; accept padding too.
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("JWK field {field:?} is not base64url: {e}"))
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&x| x == 0).count();
    if n == b.len() {
        &b[b.len().saturating_sub(1)..]
    } else {
        &b[n..]
    }
}

fn ec_alg(spec: KeySpec) -> Option<(&'static EcdsaSigningAlgorithm, &'static str)> {
    match spec {
        KeySpec::EcdsaP256 => Some((&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256")),
        KeySpec::EcdsaP384 => Some((&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384")),
        KeySpec::Rsa(_) => None,
    }
}

/// Read a private JWK (RSA or EC P-256/P-384).
pub fn key_from_jwk(v: &serde_json::Value) -> Result<PrivateKey, String> {
    match v.get("kty").and_then(|k| k.as_str()) {
        Some("RSA") => {
            let mut parts = Vec::new();
            for f in ["n", "e", "d", "p", "q", "dp", "dq", "qi"] {
                parts.push(unb64(v, f)?);
            }
            // PKCS#1 RSAPrivateKey: version 0, then the eight integers in this order.
            let der = yasna::construct_der(|w| {
                w.write_sequence(|w| {
                    w.next().write_u8(0);
                    for p in &parts {
                        w.next().write_bigint_bytes(strip_zeros(p), true);
                    }
                })
            });
            let kp = aws_lc_rs::rsa::KeyPair::from_der(&der).map_err(|e| format!("invalid RSA JWK: {e}"))?;
            let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der =
                aws_lc_rs::encoding::AsDer::as_der(&kp).map_err(|_| "cannot encode RSA key".to_string())?;
            PrivateKey::from_pkcs8_der(pkcs8.as_ref()).map_err(|e| e.to_string())
        }
        Some("EC") => {
            let (spec, len) = match v.get("crv").and_then(|c| c.as_str()) {
                Some("P-256") => (KeySpec::EcdsaP256, 32),
                Some("P-384") => (KeySpec::EcdsaP384, 48),
                other => return Err(format!("unsupported EC curve {other:?} (use P-256 or P-384)")),
            };
            let (alg, _) = ec_alg(spec).expect("EC spec");
            let pad = |b: Vec<u8>| -> Result<Vec<u8>, String> {
                let b = strip_zeros(&b).to_vec();
                if b.len() > len {
                    return Err("EC JWK coordinate too long for its curve".into());
                }
                let mut out = vec![0u8; len - b.len()];
                out.extend_from_slice(&b);
                Ok(out)
            };
            let d = pad(unb64(v, "d")?)?;
            let mut point = vec![4u8];
            point.extend(pad(unb64(v, "x")?)?);
            point.extend(pad(unb64(v, "y")?)?);
            let kp = EcdsaKeyPair::from_private_key_and_public_key(alg, &d, &point)
                .map_err(|e| format!("invalid EC JWK: {e}"))?;
            let doc = kp.to_pkcs8v1().map_err(|_| "cannot encode EC key".to_string())?;
            PrivateKey::from_pkcs8_der(doc.as_ref()).map_err(|e| e.to_string())
        }
        other => Err(format!(
            "unsupported JWK key type {other:?} (certbot uses RSA or EC)"
        )),
    }
}

/// Parse PKCS#8 around a PKCS#1 RSA key and return n, e, d, p, q, dp, dq, qi.
fn rsa_params(pkcs8: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let pkcs1 = yasna::parse_der(pkcs8, |r| {
        r.read_sequence(|r| {
            r.next().read_u8()?;
            r.next().read_der()?; // AlgorithmIdentifier
            let key = r.next().read_bytes()?;
            r.read_optional(|r| r.read_der())?; // attributes, if any
            Ok(key)
        })
    })
    .map_err(|e| format!("bad PKCS#8: {e}"))?;
    yasna::parse_der(&pkcs1, |r| {
        r.read_sequence(|r| {
            r.next().read_u8()?;
            let mut out = Vec::new();
            for _ in 0..8 {
                out.push(r.next().read_bigint_bytes()?.0);
            }
            Ok(out)
        })
    })
    .map_err(|e| format!("bad PKCS#1: {e}"))
}

/// The private JWK as josepy writes it (same member order), as JSON text.
pub fn key_to_jwk_json(key: &PrivateKey) -> Result<String, String> {
    let s = |x: &[u8]| pyjson::string(&b64(strip_zeros(x)));
    match ec_alg(key.spec()) {
        None => {
            let p = rsa_params(key.pkcs8_der())?;
            let names = ["n", "e", "d", "p", "q", "dp", "dq", "qi"];
            let mut fields: Vec<(&str, String)> = names.iter().zip(&p).map(|(n, v)| (*n, s(v))).collect();
            fields.push(("kty", pyjson::string("RSA")));
            Ok(pyjson::object(&fields))
        }
        Some((alg, crv)) => {
            let kp = EcdsaKeyPair::from_pkcs8(alg, key.pkcs8_der()).map_err(|e| e.to_string())?;
            let d: aws_lc_rs::encoding::EcPrivateKeyBin<'static> = kp
                .private_key()
                .as_be_bytes()
                .map_err(|_| "cannot export EC key".to_string())?;
            let point = kp.public_key().as_ref();
            let half = (point.len() - 1) / 2;
            // Coordinates and d keep their full field length (RFC 7518 section 6.2).
            let fixed = |x: &[u8]| pyjson::string(&b64(x));
            Ok(pyjson::object(&[
                ("d", fixed(d.as_ref())),
                ("x", fixed(&point[1..1 + half])),
                ("y", fixed(&point[1 + half..])),
                ("crv", pyjson::string(crv)),
                ("kty", pyjson::string("EC")),
            ]))
        }
    }
}

/// PEM of the SubjectPublicKeyInfo, as Python's `cryptography` writes it.
pub fn public_key_pem(key: &PrivateKey) -> String {
    pem::encode_config(
        &pem::Pem::new("PUBLIC KEY", key.public_key_spki_der()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// certbot's account id: hex MD5 of the public key's SPKI PEM (`Account.__init__`).
pub fn account_id(key: &PrivateKey) -> String {
    hex::encode(Md5::digest(public_key_pem(key).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_every_key_type() {
        for spec in [KeySpec::EcdsaP256, KeySpec::EcdsaP384, KeySpec::Rsa(2048)] {
            let k = PrivateKey::generate(spec).unwrap();
            let json = key_to_jwk_json(&k).unwrap();
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            let back = key_from_jwk(&v).unwrap();
            assert_eq!(back.spec(), spec);
            assert_eq!(back.public_key_spki_der(), k.public_key_spki_der());
            assert_eq!(account_id(&back), account_id(&k));
            assert_eq!(account_id(&k).len(), 32);
        }
    }

    #[test]
    fn rejects_bad_jwks() {
        let e = key_from_jwk(&serde_json::json!({"kty": "oct", "k": "AA"})).unwrap_err();
        assert!(e.contains("oct"), "{e}");
        let e = key_from_jwk(&serde_json::json!({"kty": "RSA", "n": "AQAB"})).unwrap_err();
        assert!(e.contains("\"e\""), "{e}");
    }
}
