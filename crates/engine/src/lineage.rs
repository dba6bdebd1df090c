//! Facts about a lineage's key: the key on disk, the key type of its certificate, and the key
//! type its renewal conf asks for.

use certfleet_core::identifier::IdentifierError;
use certfleet_core::{CertInfo, Identifier, KeySpec, PrivateKey};
use certfleet_store::{Kind, Lineage};

use crate::EngineError;

/// The private key a lineage's live/privkey.pem points at.
pub fn lineage_key(lin: &Lineage) -> Result<PrivateKey, EngineError> {
    let path = lin.live_path(Kind::Privkey);
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::ReadKey {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKey::from_pem(&text).map_err(|source| EngineError::BadKey {
        path: path.to_path_buf(),
        source,
    })
}

/// A lineage's names (as its certificate lists them) as identifiers: IP addresses or DNS names.
pub fn identifiers(names: &[String]) -> Result<Vec<Identifier>, IdentifierError> {
    names
        .iter()
        .map(|n| {
            if n.parse::<std::net::IpAddr>().is_ok() {
                Identifier::ip(n)
            } else {
                Identifier::dns(n)
            }
        })
        .collect()
}

/// What makes a lineage unusable as it stands (`certificates` shows it as INVALID): live
/// links broken or out of step, or a private key that is unreadable or does not match the
/// certificate (certbot checks the same).
pub fn lineage_problem(lin: &Lineage, info: &CertInfo) -> Option<String> {
    if let Err(e) = lin.check() {
        return Some(e.to_string());
    }
    match lineage_key(lin) {
        Err(e) => Some(e.to_string()),
        Ok(k) if !info.matches_key(&k) => Some(format!(
            "{} does not match {}",
            lin.live_path(Kind::Privkey).display(),
            lin.live_path(Kind::Cert).display()
        )),
        Ok(_) => None,
    }
}

/// The key type of a certificate, from its public key (no private key read).
pub fn cert_key_spec(info: &CertInfo) -> Option<KeySpec> {
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&info.spki_der).ok()?;
    match spki.parsed().ok()? {
        PublicKey::RSA(rsa) => Some(KeySpec::Rsa(rsa.key_size() as u32)),
        PublicKey::EC(point) => match point.data().len() {
            65 => Some(KeySpec::EcdsaP256),
            97 => Some(KeySpec::EcdsaP384),
            _ => None,
        },
        _ => None,
    }
}

/// The key spec the conf asks for; without `key_type` (certbot < 2.0 confs) keep the
/// certificate's current type, as certbot does.
pub fn wanted_key_spec(lineage: &Lineage, info: &CertInfo) -> Result<KeySpec, EngineError> {
    let conf = &lineage.conf;
    let rsa = conf
        .rsa_key_size()
        .map_err(|e| EngineError::config(e.to_string()))?;
    match conf.key_type() {
        Some(kt) => KeySpec::from_certbot(kt, conf.elliptic_curve(), rsa)
            .map_err(|e| EngineError::config(format!("{}: {e}", lineage.conf_path.display()))),
        None => Ok(cert_key_spec(info).unwrap_or(match rsa {
            Some(b) => KeySpec::Rsa(b),
            None => KeySpec::Rsa(2048),
        })),
    }
}

/// Why the certificate's key no longer is what the conf asks for, if it is not.
pub fn key_mismatch(lineage: &Lineage, info: &CertInfo) -> Option<String> {
    lineage.conf.key_type()?;
    let want = wanted_key_spec(lineage, info).ok()?;
    let have = cert_key_spec(info)?;
    (want != have).then(|| format!("the certificate's key is {have}, the configuration asks for {want}"))
}
