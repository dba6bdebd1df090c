//! The store lock, shared with certbot. certbot locks `<dir>/.certbot.lock` in its config
//! and work directories with `fcntl.lockf` (a POSIX record lock) and deletes the file when
//! it releases it. We take an open-file-description lock (`F_OFD_SETLK`) on the same file:
//! on Linux OFD locks conflict with POSIX record locks, so certbot and certfleet exclude
//! each other, and unlike plain POSIX locks they also conflict between two opens inside one
//! process. (`flock(2)` would not do: flock and lockf locks do not see each other on Linux.)

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};

use crate::error::{IoContext, StoreError};

/// certbot's lock file name (`certbot._internal.lock.lock_dir`).
pub const LOCK_FILE: &str = ".certbot.lock";

/// A held lock on one directory; released (file removed, then closed) on drop.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    file: Option<File>,
}

impl DirLock {
    /// Lock `<dir>/.certbot.lock` without blocking.
    pub fn acquire(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(LOCK_FILE);
        loop {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .ctx("open lock file", &path)?;
            let lock = libc::flock {
                l_type: libc::F_WRLCK as libc::c_short,
                l_whence: libc::SEEK_SET as libc::c_short,
                l_start: 0,
                l_len: 0,
                l_pid: 0,
            };
            match fcntl(&file, FcntlArg::F_OFD_SETLK(&lock)) {
                Ok(_) => {}
                Err(Errno::EAGAIN | Errno::EACCES) => return Err(StoreError::Locked { path }),
                Err(e) => return Err(StoreError::io("lock", &path, e.into())),
            }
            // The holder deletes the file on release; if it did so between our open and
            // our lock, we locked an orphan: start over (certbot's `_lock_success`).
            let on_disk = std::fs::metadata(&path);
            let ours = file.metadata().ctx("stat lock file", &path)?;
            if let Ok(m) = on_disk
                && m.dev() == ours.dev()
                && m.ino() == ours.ino()
            {
                return Ok(DirLock {
                    path,
                    file: Some(file),
                });
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Remove before closing, as certbot does, so nobody can lock a file we are about to
        // delete.
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

/// Config dirs whose lock this process holds through a [`StoreLock`].
static HELD: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Permission to repair a lineage: either this process already holds the store lock, or we
/// took it just for the repair.
#[derive(Debug)]
pub(crate) enum RepairGuard {
    AlreadyHeld,
    Temporary(#[allow(dead_code)] DirLock),
}

/// May this process modify the tree under `config_dir` right now? `None` when another
/// process (certbot or certfleet) holds the lock: it may be mid-switch, so readers must not
/// "repair" what it is doing.
pub(crate) fn for_repair(config_dir: &Path) -> Result<Option<RepairGuard>, StoreError> {
    if HELD
        .lock()
        .map(|h| h.iter().any(|p| p == config_dir))
        .unwrap_or(false)
    {
        return Ok(Some(RepairGuard::AlreadyHeld));
    }
    match DirLock::acquire(config_dir) {
        Ok(l) => Ok(Some(RepairGuard::Temporary(l))),
        Err(StoreError::Locked { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The locks a certbot run takes: config dir and work dir.
#[derive(Debug)]
pub struct StoreLock {
    config: DirLock,
    _work: Option<DirLock>,
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        if let Ok(mut h) = HELD.lock()
            && let Some(dir) = self.config.path().parent()
            && let Some(pos) = h.iter().position(|p| p == dir)
        {
            h.remove(pos);
        }
    }
}

impl StoreLock {
    pub(crate) fn acquire(config_dir: &Path, work_dir: &Path) -> Result<Self, StoreError> {
        let config = DirLock::acquire(config_dir)?;
        let work = if work_dir != config_dir {
            Some(DirLock::acquire(work_dir)?)
        } else {
            None
        };
        if let Ok(mut h) = HELD.lock() {
            h.push(config_dir.to_path_buf());
        }
        Ok(StoreLock { config, _work: work })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_in_same_process_fails_then_succeeds_after_release() {
        let d = tempfile::tempdir().unwrap();
        let a = DirLock::acquire(d.path()).unwrap();
        let err = DirLock::acquire(d.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("another certbot/certfleet instance is running"),
            "{err}"
        );
        assert!(err.to_string().contains(".certbot.lock"), "{err}");
        drop(a);
        assert!(!d.path().join(LOCK_FILE).exists());
        let _b = DirLock::acquire(d.path()).unwrap();
    }
}
