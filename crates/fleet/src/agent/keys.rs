//! The agent's own private keys (agent custody): made on the host, kept in
//! `STATE_DIR/keys/<SPKI SHA-256>.pem` (0600, directory 0700), never sent anywhere. A delivery
//! names its key by the SHA-256 of the certificate's SubjectPublicKeyInfo, and that is how the
//! agent finds it again.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use certfleet_core::PrivateKey;
use sha2::{Digest, Sha256};

/// SHA-256 (lowercase hex) of a DER SubjectPublicKeyInfo: how deliveries name keys.
pub fn spki_sha256(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// A 64-digit hex SHA-256; anything else (it comes from the server) is refused before it can
/// become part of a path.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The directory of the agent's keys.
#[derive(Debug, Clone)]
pub struct AgentKeys {
    dir: PathBuf,
}

impl AgentKeys {
    /// Keys under `STATE_DIR/keys`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("keys"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `key` (0600) and returns its SPKI SHA-256.
    pub fn save(&self, key: &PrivateKey) -> std::io::Result<String> {
        DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))?;
        let sha = spki_sha256(&key.public_key_spki_der());
        let path = self.path(&sha);
        let tmp = self.dir.join(format!(".{sha}.new"));
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(key.to_pem().as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        fs::File::open(&self.dir)?.sync_all()?;
        Ok(sha)
    }

    /// The key whose public half hashes to `spki_sha256`, if this host has it.
    pub fn find(&self, sha: &str) -> std::io::Result<Option<PrivateKey>> {
        if !is_sha256_hex(sha) {
            return Ok(None);
        }
        let path = self.path(&sha.to_ascii_lowercase());
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let key = PrivateKey::from_pem(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        // A file renamed by hand must not pass for another key.
        let actual = spki_sha256(&key.public_key_spki_der());
        Ok(actual.eq_ignore_ascii_case(sha).then_some(key))
    }

    fn path(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.pem"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certfleet_core::KeySpec;

    #[test]
    fn save_then_find_by_spki() {
        let dir = tempfile::tempdir().unwrap();
        let keys = AgentKeys::new(dir.path());
        let key = PrivateKey::generate(KeySpec::EcdsaP256).unwrap();
        let sha = keys.save(&key).unwrap();
        assert!(is_sha256_hex(&sha));
        let found = keys.find(&sha).unwrap().expect("saved key");
        assert_eq!(found.pkcs8_der(), key.pkcs8_der());
        assert!(keys.find(&sha.to_uppercase()).unwrap().is_some());
        let mode = fs::metadata(keys.path(&sha)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Server-controlled names never reach the file system.
        assert!(keys.find("../../etc/passwd").unwrap().is_none());
        assert!(keys.find(&"0".repeat(64)).unwrap().is_none());
    }
}
