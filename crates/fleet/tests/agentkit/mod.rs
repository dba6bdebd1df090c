//! Shared by the agent tests: a local test CA (root -> intermediate -> leaves) that makes
//! [`Delivery`]s, and temp dirs nginx's workers can read.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use certfleet_core::cert::der_to_pem;
use certfleet_core::{CertInfo, KeySpec, PrivateKey};
use certfleet_fleet::agent::{Agent, AgentConfig, spki_sha256};
use certfleet_fleet::proto::Delivery;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};

pub struct TestCa {
    intermediate: CertifiedIssuer<'static, KeyPair>,
    /// The root (DER), for tests that check a chain to it.
    pub root_der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Self {
        let ca_params = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p
        };
        let root =
            CertifiedIssuer::self_signed(ca_params("agent test root"), KeyPair::generate().unwrap()).unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params("agent test intermediate"),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        Self {
            intermediate,
            root_der: root.der().to_vec(),
        }
    }

    /// A certificate for `names` on `key`, as the server would deliver it (agent custody: no
    /// key in it).
    pub fn deliver(&self, certificate: &str, names: &[&str], key: &PrivateKey) -> Delivery {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, names[0]);
        let mut serial: [u8; 16] = rand::random();
        serial[0] &= 0x7f;
        serial[0] |= 0x10;
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(30);
        let leaf = p
            .signed_by(&key.rcgen_key_pair().unwrap(), &self.intermediate)
            .unwrap();
        let info = CertInfo::from_der(leaf.der()).unwrap();
        let cert_pem = der_to_pem(leaf.der());
        let chain_pem = der_to_pem(self.intermediate.der());
        Delivery {
            certificate: certificate.to_string(),
            identifiers: names.iter().map(|s| s.to_string()).collect(),
            serial: info.serial_hex(),
            not_before: info.not_before.unix_timestamp(),
            not_after: info.not_after.unix_timestamp(),
            fullchain_pem: format!("{cert_pem}{chain_pem}"),
            cert_pem,
            chain_pem,
            key_pem: None,
            key_sha256: spki_sha256(&info.spki_der),
        }
    }
}

pub fn new_key() -> PrivateKey {
    PrivateKey::generate(KeySpec::EcdsaP256).unwrap()
}

pub fn leaf_der(d: &Delivery) -> Vec<u8> {
    CertInfo::from_pem(&d.cert_pem).unwrap().der
}

/// A temp dir others may enter (nginx workers may run as an unprivileged user).
pub fn world_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("certfleet-agent-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Writes `toml` to `dir/agent.toml` and starts an agent on it.
pub fn agent(dir: &Path, toml: &str) -> Agent {
    let path = dir.join("agent.toml");
    std::fs::write(&path, toml).unwrap();
    let config = AgentConfig::load(&path).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    Agent::new(config).unwrap()
}

/// `["a", "b"]` as a TOML array.
pub fn toml_array(argv: &[String]) -> String {
    format!(
        "[{}]",
        argv.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub fn p(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
