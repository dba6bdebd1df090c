//! The store lock, shared with certbot. certbot locks `<dir>/.certbot.lock` in its config
//! and work directories with `fcntl.lockf` (a POSIX record lock) and deletes the file when
//! it releases it. We take an open-file-description lock (`F_OFD_SETLK`) on the same file:
//! on Linux OFD locks conflict with POSIX record locks, so certbot and certfleet exclude
//! each other, and unlike plain POSIX locks they also conflict between two opens inside one
//! process. (`flock(2)` would not do: flock and lockf locks do not see each other on Linux.)

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
        Self::acquire_waiting(dir, Duration::ZERO, |_| {})
    }

    /// Lock `<dir>/.certbot.lock`, waiting up to `wait` for another holder to let go; `waiting`
    /// is told once who that is when the lock is not free at once.
    pub fn acquire_waiting(
        dir: &Path,
        wait: Duration,
        waiting: impl FnOnce(&str),
    ) -> Result<Self, StoreError> {
        let path = dir.join(LOCK_FILE);
        let start = Instant::now();
        let mut waiting = Some(waiting);
        let mut pause = Duration::from_millis(20);
        loop {
            match Self::try_once(&path)? {
                Ok(lock) => return Ok(lock),
                Err(file) => {
                    let holder = holder(&file);
                    if start.elapsed() >= wait {
                        return Err(StoreError::Locked {
                            path,
                            holder,
                            waited: start.elapsed(),
                        });
                    }
                    if let Some(tell) = waiting.take() {
                        tell(&holder);
                    }
                }
            }
            // Poll: a blocking F_OFD_SETLKW could not time out, and would lock a file the
            // holder deletes on release (see `try_once`).
            std::thread::sleep(pause.min(wait.saturating_sub(start.elapsed())));
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// One attempt: the lock, or the open lock file somebody else holds.
    fn try_once(path: &Path) -> Result<Result<Self, File>, StoreError> {
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .ctx("open lock file", path)?;
            let lock = whole_file(libc::F_WRLCK);
            match fcntl(&file, FcntlArg::F_OFD_SETLK(&lock)) {
                Ok(_) => {}
                Err(Errno::EAGAIN | Errno::EACCES) => return Ok(Err(file)),
                Err(e) => return Err(StoreError::io("lock", path, e.into())),
            }
            // The holder deletes the file on release; if it did so between our open and
            // our lock, we locked an orphan: start over (certbot's `_lock_success`).
            let on_disk = std::fs::metadata(path);
            let ours = file.metadata().ctx("stat lock file", path)?;
            if let Ok(m) = on_disk
                && m.dev() == ours.dev()
                && m.ino() == ours.ino()
            {
                // Who holds it, for whoever waits (certbot never reads the file).
                let _ = file.set_len(0);
                let _ = writeln!(file, "{}", std::process::id());
                return Ok(Ok(DirLock {
                    path: path.to_path_buf(),
                    file: Some(file),
                }));
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn whole_file(l_type: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: l_type as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// Who holds the lock on `file`: the PID certfleet writes into it, else the PID the kernel
/// reports for a POSIX lock (certbot's `lockf`), with that process's command line.
fn holder(file: &File) -> String {
    let mut text = String::new();
    // Freshly opened: reads from the start.
    let written = std::io::Read::read_to_string(&mut &*file, &mut text)
        .ok()
        .and_then(|_| text.trim().parse::<i32>().ok());
    let posix = || {
        let mut probe = whole_file(libc::F_WRLCK);
        fcntl(file, FcntlArg::F_GETLK(&mut probe)).ok()?;
        (probe.l_type != libc::F_UNLCK as libc::c_short && probe.l_pid > 0).then_some(probe.l_pid)
    };
    match written.or_else(posix) {
        Some(pid) => match std::fs::read(format!("/proc/{pid}/cmdline")) {
            Ok(cmd) if !cmd.is_empty() => {
                let mut line: String = String::from_utf8_lossy(&cmd)
                    .split('\0')
                    .filter(|a| !a.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                if line.chars().count() > 80 {
                    line = line.chars().take(77).collect::<String>() + "...";
                }
                format!("pid {pid}: {line}")
            }
            _ => format!("pid {pid}"),
        },
        None => "another process".into(),
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
    pub(crate) fn acquire(
        config_dir: &Path,
        work_dir: &Path,
        wait: Duration,
        waiting: impl FnOnce(&str),
    ) -> Result<Self, StoreError> {
        let start = Instant::now();
        let config = DirLock::acquire_waiting(config_dir, wait, waiting)?;
        let work = if work_dir != config_dir {
            let left = wait.saturating_sub(start.elapsed());
            Some(DirLock::acquire_waiting(work_dir, left, |_| {})?)
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
        // The holder is named: this process, by the PID it wrote into the lock file.
        let me = format!("pid {}", std::process::id());
        assert!(err.to_string().contains(&me), "{err}");
        drop(a);
        assert!(!d.path().join(LOCK_FILE).exists());
        let _b = DirLock::acquire(d.path()).unwrap();
    }

    #[test]
    fn a_waiter_is_told_who_holds_the_lock_and_gets_it_on_release() {
        let d = tempfile::tempdir().unwrap();
        let held = DirLock::acquire(d.path()).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let mut told = String::new();
        let t = Instant::now();
        let _got =
            DirLock::acquire_waiting(d.path(), Duration::from_secs(10), |h| told = h.to_string()).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(250), "{:?}", t.elapsed());
        assert!(told.starts_with(&format!("pid {}", std::process::id())), "{told}");
        release.join().unwrap();
    }

    #[test]
    fn waiting_gives_up_after_its_time_with_the_holder_named() {
        let d = tempfile::tempdir().unwrap();
        let _held = DirLock::acquire(d.path()).unwrap();
        let t = Instant::now();
        let err = DirLock::acquire_waiting(d.path(), Duration::from_millis(300), |_| {}).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(3));
        let msg = err.to_string();
        assert!(msg.contains("waited") && msg.contains("pid "), "{msg}");
    }
}
