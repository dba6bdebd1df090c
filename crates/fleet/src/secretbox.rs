//! Encryption at rest of the private keys the server holds (server-custody certificates, the
//! internal CA key): a database dump or backup alone does not give them away; the key file
//! given to the server (`--key-file`, kept apart from the database) is needed too.
//!
//! **Cipher.** AES-256-GCM-SIV (RFC 8452) from aws-lc-rs, the crypto library certfleet already
//! uses for TLS and keys, with a fresh random 96-bit nonce per seal drawn by the library
//! ([`RandomizedNonceKey`]). A server seals a few keys per renewal, far below the 2^32 seals
//! per key at which random 96-bit nonces start to risk a collision, and GCM-SIV is
//! nonce-misuse resistant anyway: even a repeated nonce reveals only whether two plaintexts
//! are equal, never the key stream. (XChaCha20-Poly1305 would do as well, at the cost of one
//! more crypto crate to keep.)
//!
//! **Blob format, version 1** (text, for a TEXT column):
//! `cfsb1.<key id>.<base64url(nonce || ciphertext || tag)>`. The key id (16 hex digits of a
//! SHA-256 over the key, which reveals nothing usable about it) lets [`SecretBox::open`] tell
//! "sealed with another key file" apart from "altered" and leaves room for key rotation. The
//! associated data is the blob's header and the certificate's name, so a blob copied to
//! another certificate's row does not open, and neither does one whose header was edited.
//!
//! **Key file.** 32 random bytes, base64, one line; written 0600 by [`generate_key_file`],
//! which never overwrites (losing the key loses every sealed key). A key file that others can
//! read is refused, as credentials files are elsewhere in certfleet.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64_STD, URL_SAFE_NO_PAD as B64};
use sha2::{Digest, Sha256};

/// Length of the key in the key file.
pub const KEY_LEN: usize = 32;
/// Format tag of version-1 blobs.
pub const BLOB_V1: &str = "cfsb1";
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SecretBoxError {
    #[error("cannot read key file {path}: {source}")]
    ReadKeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} can be read by others (mode {mode:o}): run `chmod 600 {path}`")]
    KeyFileMode { path: PathBuf, mode: u32 },
    #[error(
        "key file {path} does not hold a key: expected {KEY_LEN} random bytes in base64 on one line (44 characters)"
    )]
    BadKeyFile { path: PathBuf },
    #[error(
        "key file {path} already exists: not overwriting it, since every key sealed with it would be lost"
    )]
    KeyFileExists { path: PathBuf },
    #[error("cannot write key file {path}: {reason}")]
    WriteKeyFile { path: PathBuf, reason: String },
    #[error("the stored private key of {name:?} is not a sealed blob ({reason})")]
    Malformed { name: String, reason: &'static str },
    #[error(
        "the stored private key of {name:?} is sealed in format {version:?}, which this certfleet does not know: upgrade certfleet"
    )]
    UnknownVersion { name: String, version: String },
    #[error(
        "the stored private key of {name:?} was sealed with key {blob_key_id}, but the server's key file holds key {key_id}: start the server with the key file it was sealed with"
    )]
    WrongKey {
        name: String,
        blob_key_id: String,
        key_id: String,
    },
    #[error(
        "the stored private key of {name:?} does not open: it was altered, or it belongs to another certificate"
    )]
    Rejected { name: String },
    #[error("sealing the private key of {name:?} failed (the system's random number generator?)")]
    Seal { name: String },
}

/// Seals and opens private keys with the server's key. `Debug` shows the key id only.
pub struct SecretBox {
    key: RandomizedNonceKey,
    key_id: String,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBox").field("key_id", &self.key_id).finish()
    }
}

/// 16 hex digits naming a key without revealing it (SHA-256 under a fixed label).
fn key_id(key: &[u8; KEY_LEN]) -> String {
    let mut h = Sha256::new();
    h.update(b"certfleet secretbox key id\0");
    h.update(key);
    hex::encode(&h.finalize()[..8])
}

impl SecretBox {
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Self {
            key: RandomizedNonceKey::new(&AES_256_GCM_SIV, key).expect("a 32-byte key fits AES-256"),
            key_id: key_id(key),
        }
    }

    /// Load the key file (refused if others can read it).
    pub fn from_key_file(path: &Path) -> Result<Self, SecretBoxError> {
        use std::os::unix::fs::PermissionsExt;
        let read_err = |source| SecretBoxError::ReadKeyFile {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(read_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretBoxError::KeyFileMode {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let bad = || SecretBoxError::BadKeyFile {
            path: path.to_path_buf(),
        };
        let bytes = B64_STD.decode(text.trim()).map_err(|_| bad())?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| bad())?;
        Ok(Self::new(&key))
    }

    /// Which key this is, as blobs sealed with it say.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Seal `plaintext` (a private key) for the certificate `name`.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Result<String, SecretBoxError> {
        let header = format!("{BLOB_V1}.{}.", self.key_id);
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(aad(&header, name)), &mut in_out)
            .map_err(|_| SecretBoxError::Seal {
                name: name.to_string(),
            })?;
        let mut payload = Vec::with_capacity(NONCE_LEN + in_out.len());
        payload.extend_from_slice(nonce.as_ref());
        payload.extend_from_slice(&in_out);
        Ok(format!("{header}{}", B64.encode(payload)))
    }

    /// Open a blob [`SecretBox::seal`] made for the certificate `name`.
    pub fn open(&self, name: &str, blob: &str) -> Result<Vec<u8>, SecretBoxError> {
        let malformed = |reason| SecretBoxError::Malformed {
            name: name.to_string(),
            reason,
        };
        let blob = blob.trim();
        let mut parts = blob.splitn(3, '.');
        let (Some(version), Some(blob_key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("not three dot-separated parts"));
        };
        if version != BLOB_V1 {
            return Err(SecretBoxError::UnknownVersion {
                name: name.to_string(),
                version: version.chars().take(16).collect(),
            });
        }
        if blob_key_id != self.key_id {
            return Err(SecretBoxError::WrongKey {
                name: name.to_string(),
                blob_key_id: blob_key_id.chars().take(16).collect(),
                key_id: self.key_id.clone(),
            });
        }
        let payload = B64.decode(body).map_err(|_| malformed("not base64url"))?;
        if payload.len() < NONCE_LEN + TAG_LEN {
            return Err(malformed("too short"));
        }
        let (nonce, sealed) = payload.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("NONCE_LEN bytes");
        let mut in_out = sealed.to_vec();
        let header = &blob[..version.len() + blob_key_id.len() + 2];
        let plaintext_len = self
            .key
            .open_in_place(nonce, Aad::from(aad(header, name)), &mut in_out)
            .map_err(|_| SecretBoxError::Rejected {
                name: name.to_string(),
            })?
            .len();
        in_out.truncate(plaintext_len);
        Ok(in_out)
    }
}

/// Associated data: the blob header (`cfsb1.<key id>.`) and the certificate name.
fn aad(header: &str, name: &str) -> Vec<u8> {
    [header.as_bytes(), name.as_bytes()].concat()
}

/// The key id a blob says it was sealed with, if it is a version-1 blob.
pub fn blob_key_id(blob: &str) -> Option<&str> {
    let mut parts = blob.trim().splitn(3, '.');
    (parts.next()? == BLOB_V1).then_some(())?;
    parts.next()
}

/// Write a new key file (32 random bytes, base64, mode 0600) at `path`; never overwrites.
pub fn generate_key_file(path: &Path) -> Result<SecretBox, SecretBoxError> {
    if path.symlink_metadata().is_ok() {
        return Err(SecretBoxError::KeyFileExists {
            path: path.to_path_buf(),
        });
    }
    let mut key = [0u8; KEY_LEN];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| SecretBoxError::WriteKeyFile {
        path: path.to_path_buf(),
        reason: "the system's random number generator failed".into(),
    })?;
    let text = format!("{}\n", B64_STD.encode(key));
    certfleet_store::atomic::write_file(path, text.as_bytes(), 0o600).map_err(|e| {
        SecretBoxError::WriteKeyFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    Ok(SecretBox::new(&key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const KEY_PEM: &[u8] = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";

    fn sb() -> SecretBox {
        SecretBox::new(&[7u8; KEY_LEN])
    }

    #[test]
    fn round_trip_with_a_fresh_nonce_each_time() {
        let sb = sb();
        let a = sb.seal("www", KEY_PEM).unwrap();
        let b = sb.seal("www", KEY_PEM).unwrap();
        assert_ne!(a, b, "random nonce per seal");
        assert!(a.starts_with(&format!("cfsb1.{}.", sb.key_id())));
        assert_eq!(blob_key_id(&a), Some(sb.key_id()));
        assert_eq!(sb.open("www", &a).unwrap(), KEY_PEM);
        assert_eq!(sb.open("www", &format!("{b}\n")).unwrap(), KEY_PEM);
        assert_eq!(sb.open("www", &sb.seal("www", b"").unwrap()).unwrap(), b"");
        let text = String::from_utf8_lossy(&B64.decode(a.rsplit('.').next().unwrap()).unwrap()).to_string();
        assert!(!text.contains("PRIVATE KEY"));
    }

    #[test]
    fn tampered_blobs_do_not_open() {
        let sb = sb();
        let blob = sb.seal("www", KEY_PEM).unwrap();
        let (head, body) = blob.rsplit_once('.').unwrap();
        let mut payload = B64.decode(body).unwrap();
        for i in [0, NONCE_LEN, payload.len() - 1] {
            payload[i] ^= 0x80;
            let tampered = format!("{head}.{}", B64.encode(&payload));
            assert!(
                matches!(sb.open("www", &tampered), Err(SecretBoxError::Rejected { .. })),
                "byte {i}"
            );
            payload[i] ^= 0x80;
        }
        let truncated = format!("{head}.{}", B64.encode(&payload[..NONCE_LEN + 3]));
        assert!(matches!(
            sb.open("www", &truncated),
            Err(SecretBoxError::Malformed { .. })
        ));
        assert!(matches!(
            sb.open("www", "nonsense"),
            Err(SecretBoxError::Malformed { .. })
        ));
        let v2 = blob.replacen("cfsb1", "cfsb2", 1);
        assert!(matches!(
            sb.open("www", &v2),
            Err(SecretBoxError::UnknownVersion { .. })
        ));
    }

    #[test]
    fn a_blob_moved_to_another_certificate_does_not_open() {
        let sb = sb();
        let blob = sb.seal("www", KEY_PEM).unwrap();
        let err = sb.open("mail", &blob).unwrap_err();
        assert!(matches!(err, SecretBoxError::Rejected { .. }));
        assert_eq!(
            err.to_string(),
            "the stored private key of \"mail\" does not open: it was altered, or it belongs to another certificate"
        );
        // Concatenation cannot be played with either: the name is not a suffix of the header.
        assert!(sb.open("ww", &blob).is_err());
    }

    #[test]
    fn a_wrong_key_says_so_with_both_key_ids() {
        let blob = sb().seal("www", KEY_PEM).unwrap();
        let other = SecretBox::new(&[8u8; KEY_LEN]);
        let err = other.open("www", &blob).unwrap_err();
        match &err {
            SecretBoxError::WrongKey {
                blob_key_id, key_id, ..
            } => {
                assert_eq!(blob_key_id, sb().key_id());
                assert_eq!(key_id, other.key_id());
            }
            e => panic!("{e:?}"),
        }
        assert!(
            err.to_string()
                .contains("start the server with the key file it was sealed with")
        );
        // A forged header naming the right key id still fails: the header is authenticated.
        let forged = blob.replacen(sb().key_id(), other.key_id(), 1);
        assert!(matches!(
            other.open("www", &forged),
            Err(SecretBoxError::Rejected { .. })
        ));
    }

    #[test]
    fn key_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.key");
        let made = generate_key_file(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 44);
        let loaded = SecretBox::from_key_file(&path).unwrap();
        assert_eq!(loaded.key_id(), made.key_id());
        assert_eq!(
            loaded.open("www", &made.seal("www", KEY_PEM).unwrap()).unwrap(),
            KEY_PEM
        );

        assert!(matches!(
            generate_key_file(&path),
            Err(SecretBoxError::KeyFileExists { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretBox::from_key_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(!err.contains(text.trim()), "{err}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(SecretBox::from_key_file(&path).is_ok());

        let short = dir.path().join("short.key");
        std::fs::write(&short, "c2hvcnQ=\n").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = SecretBox::from_key_file(&short).unwrap_err().to_string();
        assert!(
            err.contains("does not hold a key") && !err.contains("c2hvcnQ"),
            "{err}"
        );
    }

    #[test]
    fn debug_shows_only_the_key_id() {
        let sb = sb();
        let dbg = format!("{sb:?}");
        assert_eq!(dbg, format!("SecretBox {{ key_id: {:?} }}", sb.key_id()));
    }
}
