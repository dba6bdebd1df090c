//! JSON Web Signature for ACME (RFC 8555 section 6.2, RFC 7515/7518/7638): flattened JSON
//! serialization, ES256/ES384 with fixed-size r||s signatures and RS256; JWK and thumbprint;
//! HS256 for External Account Binding.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certfleet_core::{KeySpec, PrivateKey};
use serde_json::{Value, json};

use crate::AcmeError;

pub(crate) fn b64(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

enum Signer {
    Ec {
        kp: EcdsaKeyPair,
        alg: &'static str,
        crv: &'static str,
        coord_len: usize,
    },
    Rsa(aws_lc_rs::rsa::KeyPair),
}

/// An ACME account key: signs requests and names itself as a JWK.
pub struct AccountKey {
    key: PrivateKey,
    signer: Signer,
    rng: SystemRandom,
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AccountKey({}, thumbprint {})",
            self.key.spec(),
            self.thumbprint()
        )
    }
}

impl AccountKey {
    pub fn new(key: PrivateKey) -> Result<Self, AcmeError> {
        let bad = |e: &dyn fmt::Display| AcmeError::Key(e.to_string());
        let der = key.pkcs8_der();
        let signer = match key.spec() {
            KeySpec::EcdsaP256 => Signer::Ec {
                kp: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|e| bad(&e))?,
                alg: "ES256",
                crv: "P-256",
                coord_len: 32,
            },
            KeySpec::EcdsaP384 => Signer::Ec {
                kp: EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der).map_err(|e| bad(&e))?,
                alg: "ES384",
                crv: "P-384",
                coord_len: 48,
            },
            KeySpec::Rsa(_) => Signer::Rsa(aws_lc_rs::rsa::KeyPair::from_pkcs8(der).map_err(|e| bad(&e))?),
        };
        Ok(Self {
            key,
            signer,
            rng: SystemRandom::new(),
        })
    }

    pub fn generate(spec: KeySpec) -> Result<Self, AcmeError> {
        Self::new(PrivateKey::generate(spec).map_err(|e| AcmeError::Key(e.to_string()))?)
    }

    pub fn private_key(&self) -> &PrivateKey {
        &self.key
    }

    pub fn alg(&self) -> &'static str {
        match &self.signer {
            Signer::Ec { alg, .. } => alg,
            Signer::Rsa(_) => "RS256",
        }
    }

    /// The public JWK, members in the lexicographic order RFC 7638 needs for the thumbprint.
    pub fn jwk(&self) -> Value {
        match &self.signer {
            Signer::Ec {
                kp, crv, coord_len, ..
            } => {
                let point = kp.public_key().as_ref();
                // Uncompressed point: 0x04 || X || Y.
                let (x, y) = point[1..].split_at(*coord_len);
                json!({"crv": crv, "kty": "EC", "x": b64(x), "y": b64(y)})
            }
            Signer::Rsa(kp) => {
                let components: aws_lc_rs::rsa::PublicKeyComponents<Vec<u8>> = kp.public_key().into();
                json!({"e": b64(strip_zeros(&components.e)), "kty": "RSA", "n": b64(strip_zeros(&components.n))})
            }
        }
    }

    /// RFC 7638 thumbprint, the second half of every key authorization.
    pub fn thumbprint(&self) -> String {
        // serde_json's Map is ordered by key (no preserve_order feature), as RFC 7638 requires.
        let canonical = serde_json::to_vec(&self.jwk()).expect("JWK serializes");
        b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical))
    }

    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint())
    }

    pub(crate) fn sign(&self, data: &[u8]) -> Result<Vec<u8>, AcmeError> {
        match &self.signer {
            Signer::Ec { kp, .. } => kp
                .sign(&self.rng, data)
                .map(|s| s.as_ref().to_vec())
                .map_err(|e| AcmeError::Key(e.to_string())),
            Signer::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&RSA_PKCS1_SHA256, &self.rng, data, &mut sig)
                    .map_err(|e| AcmeError::Key(e.to_string()))?;
                Ok(sig)
            }
        }
    }

    /// A flattened JWS over `payload` (`None` = POST-as-GET, an empty payload).
    pub(crate) fn jws(&self, protected: Value, payload: Option<&Value>) -> Result<Value, AcmeError> {
        let protected = b64(serde_json::to_vec(&protected).expect("header serializes"));
        let payload = match payload {
            Some(p) => b64(serde_json::to_vec(p).expect("payload serializes")),
            None => String::new(),
        };
        let signature = self.sign(format!("{protected}.{payload}").as_bytes())?;
        Ok(json!({"protected": protected, "payload": payload, "signature": b64(signature)}))
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[first..]
}

/// External Account Binding credentials (RFC 8555 section 7.3.4).
#[derive(Clone)]
pub struct Eab {
    pub kid: String,
    /// The MAC key, already decoded from the base64url text the CA hands out.
    pub hmac_key: Vec<u8>,
}

impl fmt::Debug for Eab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Eab {{ kid: {:?}, hmac_key: <redacted> }}", self.kid)
    }
}

impl Eab {
    /// `hmac_b64` as CAs print it: base64url, padded or not (standard alphabet tolerated).
    pub fn new(kid: &str, hmac_b64: &str) -> Result<Self, AcmeError> {
        let cleaned: String = hmac_b64
            .trim()
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_");
        let hmac_key = URL_SAFE_NO_PAD
            .decode(cleaned)
            .map_err(|e| AcmeError::Key(format!("the EAB HMAC key is not base64url ({e})")))?;
        Ok(Self {
            kid: kid.to_string(),
            hmac_key,
        })
    }

    pub(crate) fn binding(&self, account_jwk: &Value, new_account_url: &str) -> Value {
        let protected = b64(serde_json::to_vec(
            &json!({"alg": "HS256", "kid": self.kid, "url": new_account_url}),
        )
        .expect("header serializes"));
        let payload = b64(serde_json::to_vec(account_jwk).expect("jwk serializes"));
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.hmac_key);
        let tag = aws_lc_rs::hmac::sign(&key, format!("{protected}.{payload}").as_bytes());
        json!({"protected": protected, "payload": payload, "signature": b64(tag.as_ref())})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    #[test]
    fn es256_signature_verifies_and_jwk_is_canonical() {
        let key = AccountKey::generate(KeySpec::EcdsaP256).unwrap();
        let sig = key.sign(b"hello").unwrap();
        assert_eq!(sig.len(), 64, "JWS wants fixed-size r||s");
        let pk = key.signer_public();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pk)
            .verify(b"hello", &sig)
            .unwrap();
        let jwk = serde_json::to_string(&key.jwk()).unwrap();
        assert!(
            jwk.starts_with("{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":"),
            "{jwk}"
        );
        assert_eq!(key.thumbprint().len(), 43);
    }

    #[test]
    fn rs256_signature_verifies() {
        let key = AccountKey::generate(KeySpec::Rsa(2048)).unwrap();
        let sig = key.sign(b"hello").unwrap();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.signer_public())
            .verify(b"hello", &sig)
            .unwrap();
        assert_eq!(key.jwk()["e"], "AQAB");
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 section 3.1 example key: thumbprint NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwk = json!({"e": "AQAB", "kty": "RSA", "n": n});
        let tp = b64(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &serde_json::to_vec(&jwk).unwrap(),
        ));
        assert_eq!(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    impl AccountKey {
        fn signer_public(&self) -> Vec<u8> {
            match &self.signer {
                Signer::Ec { kp, .. } => kp.public_key().as_ref().to_vec(),
                Signer::Rsa(kp) => kp.public_key().as_ref().to_vec(),
            }
        }
    }
}
