//! Throw-away TLS material for the test parts' own HTTPS endpoints (not the certificates under
//! test): a private CA and a localhost leaf it signs.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// Paths of a server certificate for `localhost` + `127.0.0.1` and the CA bundle to trust it.
#[derive(Debug, Clone)]
pub struct LocalTls {
    /// PEM of the CA that signed `cert`: what a client passes as its trust store.
    pub ca_bundle: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`.
pub fn localhost_tls(dir: &Path) -> Result<LocalTls> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "certfleet testkit local CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf = leaf_params.signed_by(&leaf_key, &ca)?;

    let tls = LocalTls {
        ca_bundle: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    write(&tls.ca_bundle, ca.pem().as_bytes())?;
    write(&tls.cert, leaf.pem().as_bytes())?;
    write(&tls.key, leaf_key.serialize_pem().as_bytes())?;
    Ok(tls)
}

/// A self-signed certificate + key (PEM) for `names`, e.g. a placeholder nginx can start with
/// before the real certificate is issued.
pub fn self_signed_pem(names: &[&str]) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = CertificateParams::new(names)?.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
