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

/// What is wrong with the files a service loads from `live/` (the key is unreadable or not the
/// certificate's, fullchain.pem does not begin with the certificate), if anything; `key` tells
/// whether the key is the broken part (a renewal must then make a new one). Cheap enough for
/// every lineage of a `renew` pass (see [`certfleet_core::key_belongs_to`]).
pub fn live_set_problem(lin: &Lineage, info: &CertInfo) -> Option<LiveSetProblem> {
    let key_path = lin.live_path(Kind::Privkey);
    let key_problem = match std::fs::read_to_string(key_path) {
        Err(e) => Some(format!("cannot read {}: {e}", key_path.display())),
        Ok(text) => match certfleet_core::key_belongs_to(&text, &info.spki_der) {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "{} does not match {}",
                key_path.display(),
                lin.live_path(Kind::Cert).display()
            )),
            Err(e) => Some(format!("{} is not a usable private key: {e}", key_path.display())),
        },
    };
    if let Some(why) = key_problem {
        return Some(LiveSetProblem { why, key: true });
    }
    let full = lin.live_path(Kind::Fullchain);
    let first = std::fs::read_to_string(full)
        .map_err(|e| e.to_string())
        .and_then(|t| certfleet_core::cert::pem_certificates(&t).map_err(|e| e.to_string()));
    let why = match first {
        Ok(ders) if ders.first() == Some(&info.der) => return None,
        Ok(_) => format!(
            "{} does not begin with the certificate of {}",
            full.display(),
            lin.live_path(Kind::Cert).display()
        ),
        Err(e) => format!("{} holds no usable certificate chain: {e}", full.display()),
    };
    Some(LiveSetProblem { why, key: false })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSetProblem {
    pub why: String,
    /// The private key is the broken part.
    pub key: bool,
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
/// links broken or out of step, or a live set a service cannot load (see [`live_set_problem`]).
pub fn lineage_problem(lin: &Lineage, info: &CertInfo) -> Option<String> {
    if let Err(e) = lin.check() {
        return Some(e.to_string());
    }
    live_set_problem(lin, info).map(|p| p.why)
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
