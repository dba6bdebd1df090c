//! Writing one certificate's files as one switch.
//!
//! Every new file is first written completely beside its target (`.NAME.certfleet-new`, owner
//! and mode set on the open file, fsynced). Then each existing target is hard-linked to
//! `NAME.certfleet-prev` (the backup costs no copy and keeps owner and mode), a journal listing
//! the targets goes to `STATE_DIR/journal/`, and only then are the new files renamed over the
//! targets. Undoing renames each backup back (or removes a file that did not exist before). If
//! the agent dies between the first rename and the end of the install, the journal is still
//! there and [`recover`] undoes the half-done switch at the next start, so a new certificate
//! never stays next to an old key.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use certfleet_core::cert::der_to_pem;
use certfleet_core::{CertInfo, PrivateKey};
use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, Pkcs12ImportPolicy, PrivateKeyChain};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::{BACKUP_SUFFIX, FileKind, TargetFile};

/// What a delivery provides once checked: the leaf, the intermediates and the matching key.
pub(crate) struct Material {
    pub leaf: CertInfo,
    pub chain: Vec<Vec<u8>>,
    pub key: PrivateKey,
}

impl Material {
    fn cert_pem(&self) -> String {
        der_to_pem(&self.leaf.der)
    }

    fn chain_pem(&self) -> String {
        self.chain.iter().map(|d| der_to_pem(d)).collect()
    }

    fn fullchain_pem(&self) -> String {
        self.cert_pem() + &self.chain_pem()
    }

    /// The bytes of one file. PEM is written canonically (LF, 64 columns), whatever the
    /// delivery's formatting.
    pub fn render(&self, kind: FileKind, p12: Option<(&str, &str)>) -> Result<Vec<u8>, String> {
        Ok(match kind {
            FileKind::Cert => self.cert_pem().into_bytes(),
            FileKind::Chain => self.chain_pem().into_bytes(),
            FileKind::Fullchain | FileKind::CertAndCa => self.fullchain_pem().into_bytes(),
            FileKind::Key => self.key.to_pem().into_bytes(),
            FileKind::Combined => (self.fullchain_pem() + &self.key.to_pem()).into_bytes(),
            FileKind::Pkcs12 => {
                let (password, name) = p12.ok_or("pkcs12 needs a password")?;
                self.pkcs12(password, name)?
            }
        })
    }

    fn pkcs12(&self, password: &str, friendly_name: &str) -> Result<Vec<u8>, String> {
        let err = |e: p12_keystore::error::Error| format!("making the PKCS#12 file failed: {e}");
        let key = p12_keystore::PrivateKey::from_der(self.key.pkcs8_der()).map_err(err)?;
        let certs = std::iter::once(&self.leaf.der)
            .chain(&self.chain)
            .map(|d| Certificate::from_der(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        // openssl uses the leaf's SHA-1 as localKeyId; any stable value pairing key and leaf works.
        let key_id = Sha256::digest(&self.leaf.der)[..20].to_vec();
        let mut store = KeyStore::new();
        store.add_entry(
            friendly_name,
            KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(key_id, key, certs)),
        );
        store.writer(password).write().map_err(err)
    }

    /// Whether an existing PKCS#12 file holds exactly this key and these certificates (its bytes
    /// differ at every write: fresh salts).
    fn pkcs12_matches(&self, data: &[u8], password: &str) -> bool {
        let Ok(store) = KeyStore::from_pkcs12(data, password, Pkcs12ImportPolicy::Relaxed) else {
            return false;
        };
        let Some((_, chain)) = store.private_key_chain() else {
            return false;
        };
        let want = std::iter::once(&self.leaf.der).chain(&self.chain);
        chain.key().as_der() == self.key.pkcs8_der()
            && chain.certs().len() == self.chain.len() + 1
            && chain
                .certs()
                .iter()
                .zip(want)
                .all(|(c, w)| c.as_der() == w.as_slice())
    }
}

/// One target and its new content.
pub(crate) struct Rendered<'a> {
    pub target: &'a TargetFile,
    pub bytes: Vec<u8>,
}

/// Whether every target already has this content, mode and ownership.
pub(crate) fn all_current(
    files: &[Rendered<'_>],
    material: &Material,
    p12_password: Option<&str>,
    owner: Option<u32>,
    group: Option<u32>,
) -> bool {
    files.iter().all(|f| {
        let Ok(meta) = fs::metadata(&f.target.path) else {
            return false;
        };
        if meta.mode() & 0o7777 != f.target.mode
            || owner.is_some_and(|u| u != meta.uid())
            || group.is_some_and(|g| g != meta.gid())
        {
            return false;
        }
        let Ok(data) = fs::read(&f.target.path) else {
            return false;
        };
        match (f.target.kind, p12_password) {
            (FileKind::Pkcs12, Some(pw)) => material.pkcs12_matches(&data, pw),
            _ => data == f.bytes,
        }
    })
}

/// `DIR/.NAME<suffix>` or `DIR/NAME<suffix>`.
fn sibling(path: &Path, hidden: bool, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dot = if hidden { "." } else { "" };
    path.with_file_name(format!("{dot}{name}{suffix}"))
}

fn temp_of(path: &Path) -> PathBuf {
    sibling(path, true, ".certfleet-new")
}

fn backup_temp_of(path: &Path) -> PathBuf {
    sibling(path, true, ".certfleet-prev-new")
}

/// The previous version of `path` kept by the last install.
pub fn backup_of(path: &Path) -> PathBuf {
    sibling(path, false, BACKUP_SUFFIX)
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

fn sync_dirs<'a>(paths: impl IntoIterator<Item = &'a Path>) -> std::io::Result<()> {
    let dirs: BTreeSet<&Path> = paths.into_iter().map(parent).collect();
    for d in dirs {
        fs::File::open(d)?.sync_all()?;
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes `bytes` to the temp sibling of `target`: created 0600 so a key is never readable by
/// others, owner then mode set on the open file (immune to the umask), fsynced.
fn write_temp(
    target: &TargetFile,
    bytes: &[u8],
    owner: Option<u32>,
    group: Option<u32>,
) -> std::io::Result<()> {
    let tmp = temp_of(&target.path);
    remove_if_exists(&tmp)?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(bytes)?;
    if owner.is_some() || group.is_some() {
        std::os::unix::fs::fchown(&f, owner, group)?;
    }
    f.set_permissions(fs::Permissions::from_mode(target.mode))?;
    f.sync_all()
}

/// Hard-links `path` to its backup name (atomically replacing an older backup). `false`:
/// there was no file to keep.
fn make_backup(path: &Path) -> std::io::Result<bool> {
    let tmp = backup_temp_of(path);
    remove_if_exists(&tmp)?;
    match fs::hard_link(path, &tmp) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    fs::rename(&tmp, backup_of(path))?;
    Ok(true)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalEntry {
    path: PathBuf,
    had_previous: bool,
}

/// What `STATE_DIR/journal/*.json` holds while files are being switched.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    certificate: String,
    serial: String,
    files: Vec<JournalEntry>,
}

/// New files in place, old ones kept: [`Switched::commit`] or [`Switched::undo`]. Dropped
/// without either (the install future was cancelled), it undoes the switch.
#[must_use = "commit or undo the switch"]
pub(crate) struct Switched {
    journal_path: PathBuf,
    journal: Journal,
    finished: bool,
}

/// The journal file of a set of targets: named after their paths, so the same rule always uses
/// the same journal whatever the server sends.
fn journal_path(journal_dir: &Path, targets: &[Rendered<'_>]) -> PathBuf {
    let mut h = Sha256::new();
    for t in targets {
        h.update(t.target.path.as_os_str().as_encoded_bytes());
        h.update([0]);
    }
    journal_dir.join(format!("{}.json", &hex::encode(h.finalize())[..16]))
}

/// Writes the new files and switches them in; on any error everything is as before.
pub(crate) fn switch(
    journal_dir: &Path,
    certificate: &str,
    serial: &str,
    files: &[Rendered<'_>],
    owner: Option<u32>,
    group: Option<u32>,
) -> Result<Switched, String> {
    let cleanup_temps = || {
        for f in files {
            let _ = fs::remove_file(temp_of(&f.target.path));
        }
    };
    // 1. New content beside the targets; nothing visible has changed yet.
    for f in files {
        if let Err(e) = write_temp(f.target, &f.bytes, owner, group) {
            cleanup_temps();
            let dir = parent(&f.target.path);
            let hint = if e.kind() == ErrorKind::NotFound {
                format!("; create the directory {} first", dir.display())
            } else {
                String::new()
            };
            return Err(format!(
                "writing {} failed: {e}{hint}",
                temp_of(&f.target.path).display()
            ));
        }
    }
    // 2. Backups of the current files.
    let mut entries = Vec::new();
    for f in files {
        match make_backup(&f.target.path) {
            Ok(had_previous) => entries.push(JournalEntry {
                path: f.target.path.clone(),
                had_previous,
            }),
            Err(e) => {
                cleanup_temps();
                return Err(format!(
                    "keeping the previous {} as {} failed: {e}",
                    f.target.path.display(),
                    backup_of(&f.target.path).display()
                ));
            }
        }
    }
    // 3. The journal, durable before the first rename.
    let journal = Journal {
        certificate: certificate.to_string(),
        serial: serial.to_string(),
        files: entries,
    };
    let jpath = journal_path(journal_dir, files);
    let durable = sync_dirs(files.iter().map(|f| f.target.path.as_path()))
        .and_then(|()| write_journal(&jpath, &journal));
    if let Err(e) = durable {
        cleanup_temps();
        return Err(format!(
            "writing the install journal {} failed: {e}",
            jpath.display()
        ));
    }
    let mut switched = Switched {
        journal_path: jpath,
        journal,
        finished: false,
    };
    // 4. The switch.
    for (i, f) in files.iter().enumerate() {
        if let Err(e) = fs::rename(temp_of(&f.target.path), &f.target.path) {
            let undo = undo_entries(&switched.journal.files[..i]);
            cleanup_temps();
            let _ = fs::remove_file(&switched.journal_path);
            switched.finished = true;
            let undo_note = match undo {
                Ok(()) => "the previous files are back in place".to_string(),
                Err(u) => format!("putting the previous files back also failed: {u}"),
            };
            return Err(format!(
                "moving the new file into {} failed: {e}; {undo_note}",
                f.target.path.display()
            ));
        }
    }
    if let Err(e) = sync_dirs(files.iter().map(|f| f.target.path.as_path())) {
        tracing::warn!("fsync after installing {certificate}: {e}");
    }
    Ok(switched)
}

fn write_journal(path: &Path, journal: &Journal) -> std::io::Result<()> {
    fs::create_dir_all(parent(path))?;
    let tmp = sibling(path, true, ".new");
    remove_if_exists(&tmp)?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(journal).expect("plain data serializes"))?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(parent(path))?.sync_all()
}

/// Puts the previous files back, last first.
fn undo_entries(entries: &[JournalEntry]) -> Result<(), String> {
    let mut errors = Vec::new();
    for e in entries.iter().rev() {
        let r = if e.had_previous {
            fs::rename(backup_of(&e.path), &e.path)
        } else {
            remove_if_exists(&e.path)
        };
        if let Err(err) = r {
            errors.push(format!("{}: {err}", e.path.display()));
        }
    }
    let _ = sync_dirs(entries.iter().map(|e| e.path.as_path()));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

impl Switched {
    /// The new files stay; the backups stay too, for an operator's manual rollback.
    pub fn commit(mut self) {
        self.finished = true;
        if let Err(e) = fs::remove_file(&self.journal_path) {
            tracing::warn!("removing {}: {e}", self.journal_path.display());
        }
    }

    /// Restores the previous files (and removes files that did not exist before). When that
    /// fails the journal stays, so the next start tries again.
    pub fn undo(mut self) -> Result<(), String> {
        self.finished = true;
        let r = undo_entries(&self.journal.files);
        if r.is_ok() {
            let _ = fs::remove_file(&self.journal_path);
        }
        r
    }
}

impl Drop for Switched {
    fn drop(&mut self) {
        if !self.finished {
            tracing::warn!(
                "install of {} serial {} interrupted: restoring the previous files",
                self.journal.certificate,
                self.journal.serial
            );
            if undo_entries(&self.journal.files).is_ok() {
                let _ = fs::remove_file(&self.journal_path);
            }
        }
    }
}

/// After a crash: undoes every switch a journal in `journal_dir` still records. Returns the
/// certificates whose previous files were restored.
pub fn recover(journal_dir: &Path) -> std::io::Result<Vec<String>> {
    let mut restored = Vec::new();
    let rd = match fs::read_dir(journal_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(restored),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            let _ = fs::remove_file(&path);
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        let journal: Journal = match fs::read(&path).map(|b| serde_json::from_slice(&b)) {
            Ok(Ok(j)) => j,
            _ => {
                tracing::warn!("ignoring unreadable install journal {}", path.display());
                continue;
            }
        };
        // A file whose rename had not happened yet still has its backup too: restoring it is
        // a no-op on content.
        let entries: Vec<JournalEntry> = journal
            .files
            .iter()
            .filter(|e| !e.had_previous || backup_of(&e.path).exists())
            .cloned()
            .collect();
        match undo_entries(&entries) {
            Ok(()) => {
                for e in &journal.files {
                    let _ = fs::remove_file(temp_of(&e.path));
                }
                fs::remove_file(&path)?;
                tracing::warn!(
                    "the agent stopped while installing {} serial {}: the previous files are back",
                    journal.certificate,
                    journal.serial
                );
                restored.push(journal.certificate);
            }
            Err(e) => tracing::error!(
                "could not restore the previous files of {} after a crash: {e}",
                journal.certificate
            ),
        }
    }
    Ok(restored)
}

/// The leaf certificate in the first PEM file a rule writes, as it is on disk now.
pub(crate) fn installed_leaf(files: &[TargetFile]) -> Option<CertInfo> {
    files
        .iter()
        .filter(|f| f.kind != FileKind::Pkcs12 && f.kind != FileKind::Key && f.kind != FileKind::Chain)
        .find_map(|f| {
            let text = fs::read_to_string(&f.path).ok()?;
            CertInfo::from_pem(&text).ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(dir: &Path, name: &str, kind: FileKind) -> TargetFile {
        TargetFile {
            kind,
            path: dir.join(name),
            mode: if kind.holds_key() { 0o600 } else { 0o644 },
        }
    }

    fn rendered<'a>(targets: &'a [TargetFile], tag: &str) -> Vec<Rendered<'a>> {
        targets
            .iter()
            .map(|t| Rendered {
                target: t,
                bytes: format!("{tag} {}", t.kind).into_bytes(),
            })
            .collect()
    }

    fn contents(targets: &[TargetFile]) -> Vec<Option<String>> {
        targets.iter().map(|t| fs::read_to_string(&t.path).ok()).collect()
    }

    #[test]
    fn a_crash_mid_switch_is_undone_by_recover() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal");
        let t = [
            target(dir.path(), "fullchain.pem", FileKind::Fullchain),
            target(dir.path(), "key.pem", FileKind::Key),
            target(dir.path(), "new.p12", FileKind::Pkcs12),
        ];
        fs::write(&t[0].path, "old fullchain").unwrap();
        fs::write(&t[1].path, "old key").unwrap();
        let before = contents(&t);

        let files = rendered(&t, "new");
        let s = switch(&journal, "www", "01", &files, None, None).unwrap();
        assert_eq!(fs::read_to_string(&t[1].path).unwrap(), "new key");
        assert_eq!(fs::metadata(&t[1].path).unwrap().mode() & 0o777, 0o600);
        // The process dies: no commit, no undo, no drop.
        std::mem::forget(s);
        assert_eq!(fs::read_dir(&journal).unwrap().count(), 1);
        assert_eq!(recover(&journal).unwrap(), vec!["www".to_string()]);
        assert_eq!(contents(&t), before, "previous files back, the new p12 removed");
        assert_eq!(fs::read_dir(&journal).unwrap().count(), 0);
        assert!(recover(&journal).unwrap().is_empty());

        // Died after the first rename only: the second target is still old and keeps its backup.
        let s = switch(&journal, "www", "02", &files, None, None).unwrap();
        std::mem::forget(s);
        fs::rename(backup_of(&t[1].path), &t[1].path).unwrap();
        assert_eq!(recover(&journal).unwrap().len(), 1);
        assert_eq!(contents(&t), before);
    }

    #[test]
    fn dropping_an_unfinished_switch_restores_and_commit_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal");
        let t = [target(dir.path(), "cert.pem", FileKind::Cert)];
        fs::write(&t[0].path, "old").unwrap();
        let files = rendered(&t, "new");
        drop(switch(&journal, "www", "01", &files, None, None).unwrap());
        assert_eq!(fs::read_to_string(&t[0].path).unwrap(), "old");
        switch(&journal, "www", "01", &files, None, None)
            .unwrap()
            .commit();
        assert_eq!(fs::read_to_string(&t[0].path).unwrap(), "new cert");
        assert_eq!(fs::read_to_string(backup_of(&t[0].path)).unwrap(), "old");
        assert_eq!(fs::read_dir(&journal).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_directory_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t = [
            target(dir.path(), "cert.pem", FileKind::Cert),
            target(&dir.path().join("missing"), "key.pem", FileKind::Key),
        ];
        fs::write(&t[0].path, "old").unwrap();
        let files = rendered(&t, "new");
        let e = switch(&dir.path().join("journal"), "www", "01", &files, None, None)
            .err()
            .unwrap();
        assert!(e.contains("create the directory"), "{e}");
        assert_eq!(fs::read_to_string(&t[0].path).unwrap(), "old");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("cert.pem")],
            "no temp or backup left"
        );
    }
}
