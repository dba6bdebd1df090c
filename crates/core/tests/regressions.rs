//! Inputs fuzzing found wrong (`fuzz/regressions/`), kept as ordinary tests.

use certfleet_core::{KeySpec, PrivateKey};

/// A PKCS#8 key followed by other bytes (the fuzz input was an RSA key with junk after it) was
/// accepted and kept whole: written out again with the junk, and refused by the JWK export.
#[test]
fn key_with_trailing_data_is_refused() {
    for spec in [KeySpec::EcdsaP256, KeySpec::Rsa(2048)] {
        let key = PrivateKey::generate(spec).unwrap();
        let mut der = key.pkcs8_der().to_vec();
        assert!(PrivateKey::from_pkcs8_der(&der).is_ok());
        der.extend_from_slice(b"0\nU:FwGghC7\0\0\0\0");
        let e = PrivateKey::from_pkcs8_der(&der).unwrap_err().to_string();
        assert!(e.contains("after the end of the key"), "{e}");
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
        assert!(PrivateKey::from_pem(&pem).is_err());
    }
}
