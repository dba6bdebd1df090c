//! Crash-safe file updates. A file is written under a temporary name in its final directory,
//! fsynced, renamed over the target (atomic on POSIX), and then the directory is fsynced so
//! the rename itself survives a power cut. Symlinks are swapped the same way: a new link
//! under a temporary name, renamed over the old one, so readers never see a missing link.
//!
//! Temporary names start with `.` and never end in `.conf` or `.pem`, so neither certbot's
//! `renewal/*.conf` glob nor anything scanning `live/` mistakes them for real files.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{IoContext, StoreError};

/// certbot's mode for private keys (`storage.BASE_PRIVKEY_MODE`).
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates, chains and renewal confs (certbot: 0644 under the usual umask).
pub const PUBLIC_MODE: u32 = 0o644;
/// certbot creates `live/`, `archive/`, `renewal/` and `accounts/` as 0700.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Per-lineage directories and the config dir itself (certbot: `CONFIG_DIRS_MODE`).
pub const DIR_MODE: u32 = 0o755;

fn temp_path(target: &Path, what: &str) -> Result<PathBuf, StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| StoreError::io("name", target, std::io::ErrorKind::InvalidInput.into()))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(target.with_file_name(format!(".{name}.{what}-{}-{n}", std::process::id())))
}

/// Whether `name` is one of our temporary names (`.NAME.tmp-PID-N`, `.NAME.link-PID-N`).
pub fn is_temp_name(name: &str) -> bool {
    let Some((_, tail)) = name.strip_prefix('.').and_then(|n| n.rsplit_once('.')) else {
        return false;
    };
    let Some((what, rest)) = tail.split_once('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    matches!(what, "tmp" | "link") && rest.split_once('-').is_some_and(|(p, n)| digits(p) && digits(n))
}

/// Remove the temporary files in `dir` that other (dead) processes left behind; only call
/// it with the store lock held. Returns what was removed; errors are logged.
pub fn remove_temp_files(dir: &Path) -> Vec<PathBuf> {
    let own = format!("-{}-", std::process::id());
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_temp_name(name) || name.contains(&own) {
            continue;
        }
        let path = entry.path();
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) => tracing::warn!("cannot remove leftover {}: {e}", path.display()),
        }
    }
    removed
}

/// Read a file that must be a regular file. It is opened with `O_NONBLOCK` and checked
/// before reading, so a FIFO (or device) where a conf should be never blocks us: reading
/// a FIFO waits for a writer forever, while we hold the store lock.
pub fn read_regular(path: &Path) -> Result<Vec<u8>, StoreError> {
    use std::io::Read;
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ctx("open", path)?;
    let m = f.metadata().ctx("stat", path)?;
    if !m.is_file() {
        return Err(StoreError::NotRegular {
            path: path.to_path_buf(),
            kind: file_kind(&m.file_type()),
        });
    }
    let mut data = Vec::with_capacity(m.len() as usize);
    f.read_to_end(&mut data).ctx("read", path)?;
    Ok(data)
}

/// What a non-regular file is, for messages.
pub fn file_kind(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_symlink() {
        "a symlink"
    } else {
        "not a regular file"
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsync a directory so renames and new entries in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .ctx("fsync directory", dir)
}

/// Write `data` to `path` atomically with exactly `mode`, then fsync the directory.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), StoreError> {
    write_file_deferred(path, data, mode)?;
    sync_dir(parent(path))
}

/// Like [`write_file`] but leaves the directory fsync to the caller, who batches several
/// files into one directory and then calls [`sync_dir`] once.
pub fn write_file_deferred(path: &Path, data: &[u8], mode: u32) -> Result<(), StoreError> {
    write_file_opts(path, data, mode, None)
}

/// [`write_file_deferred`], also setting the group owner (certbot keeps a private key's
/// group across renewals so services in that group can still read it).
pub fn write_file_opts(path: &Path, data: &[u8], mode: u32, gid: Option<u32>) -> Result<(), StoreError> {
    let tmp = temp_path(path, "tmp")?;
    let result = (|| {
        // Created 0600 so a key is never readable by others, even for an instant; the final
        // mode is set on the open file (immune to umask) before it gets its real name.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .ctx("create", &tmp)?;
        f.write_all(data).ctx("write", &tmp)?;
        if gid.is_some() {
            std::os::unix::fs::fchown(&f, None, gid).ctx("chown", &tmp)?;
        }
        f.set_permissions(fs::Permissions::from_mode(mode))
            .ctx("chmod", &tmp)?;
        f.sync_all().ctx("fsync", &tmp)?;
        fs::rename(&tmp, path).ctx("rename into place", path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Make `link` a symlink whose content is `target`, replacing any existing link atomically.
/// The directory is not fsynced (see [`sync_dir`]).
pub fn replace_symlink(target: &Path, link: &Path) -> Result<(), StoreError> {
    let tmp = temp_path(link, "link")?;
    std::os::unix::fs::symlink(target, &tmp).ctx("create symlink", &tmp)?;
    fs::rename(&tmp, link).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        StoreError::io("rename symlink into place", link, e)
    })
}

/// Create `dir` (and missing parents) with `mode`; an existing directory is left as it is,
/// as certbot's `make_or_verify_dir` does without `--strict-permissions`.
pub fn create_dir(dir: &Path, mode: u32) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        _ => {}
    }
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .ctx("create directory", dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_sets_mode_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("privkey1.pem");
        write_file(&p, b"one", KEY_MODE).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        write_file(&p, b"two", PUBLIC_MODE).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o644);
        // No temporary files left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn symlink_swap() {
        let d = tempfile::tempdir().unwrap();
        let l = d.path().join("cert.pem");
        replace_symlink(Path::new("a1.pem"), &l).unwrap();
        replace_symlink(Path::new("a2.pem"), &l).unwrap();
        assert_eq!(fs::read_link(&l).unwrap(), Path::new("a2.pem"));
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn temp_names_are_recognised() {
        let t = temp_path(Path::new("/x/cert1.pem"), "tmp").unwrap();
        assert!(is_temp_name(t.file_name().unwrap().to_str().unwrap()));
        assert!(is_temp_name(".privkey3.pem.link-12-0"));
        for n in [
            "cert1.pem",
            ".cert1.pem",
            ".a.tmp-1",
            ".a.tmp-x-1",
            ".a.new-12",
            "a.tmp-1-2",
        ] {
            assert!(!is_temp_name(n), "{n}");
        }
    }

    #[test]
    fn write_error_names_file() {
        let err = write_file(Path::new("/nonexistent-dir/x.pem"), b"x", KEY_MODE).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/"), "{err}");
    }
}
