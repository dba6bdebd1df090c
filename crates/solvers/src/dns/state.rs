//! What this host presented and has not yet removed, in `<dir>/dns01-pending.json`: written
//! *before* a record is added and pruned after it is removed, so the records of a run that
//! crashed in between are found and removed by the next run.
//!
//! Several solvers may share one file at once (`renew --jobs`, or `certonly` beside the
//! daemon): an entry is only stale when no live solver owns it. Each entry carries the pid of
//! the process that wrote it, and each process keeps the records its solvers have in flight,
//! so one lineage's run never removes another's records mid-validation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::{DnsError, TxtRecord};

const FILE: &str = "dns01-pending.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// [`super::DnsProvider::name`] of the provider that added it.
    pub provider: String,
    pub record: TxtRecord,
    /// The process that added it (absent in files from older versions: then always stale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// (state file, fqdn, value) of every record a solver of this process has presented and not
/// yet cleaned up.
static IN_FLIGHT: Mutex<Option<HashSet<(PathBuf, String, String)>>> = Mutex::new(None);
/// Serializes read-modify-write of state files within this process.
static FILE_LOCK: Mutex<()> = Mutex::new(());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `pid` is another running certfleet (same command name); a reused pid of another
/// program does not count.
fn owner_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let comm = |p: &str| std::fs::read_to_string(format!("/proc/{p}/comm")).ok();
    match (comm(&pid.to_string()), comm("self")) {
        (Some(theirs), Some(ours)) => theirs == ours,
        _ => false,
    }
}

/// The pending-records file in one directory.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(dir: &Path) -> Self {
        StateFile { path: dir.join(FILE) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries recorded so far (none if the file does not exist).
    pub fn load(&self) -> Result<Vec<Pending>, DnsError> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                DnsError::Config(format!(
                    "{} is corrupt ({e}); remove it after removing any leftover _acme-challenge records",
                    self.path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(DnsError::io(format!("reading {}", self.path.display()), e)),
        }
    }

    /// Entries of `provider` that no live solver owns: records of a crashed run.
    pub fn stale(&self, provider: &str) -> Result<Vec<TxtRecord>, DnsError> {
        let entries = {
            let _g = lock(&FILE_LOCK);
            self.load()?
        };
        let in_flight = lock(&IN_FLIGHT);
        let mine = |r: &TxtRecord| {
            in_flight
                .as_ref()
                .is_some_and(|s| s.contains(&(self.path.clone(), r.fqdn.clone(), r.value.clone())))
        };
        Ok(entries
            .into_iter()
            .filter(|p| p.provider == provider)
            .filter(|p| match p.pid {
                Some(pid) if pid == std::process::id() => !mine(&p.record),
                Some(pid) => !owner_alive(pid),
                None => true,
            })
            .map(|p| p.record)
            .collect())
    }

    /// Forget that this process's solvers own these records (after their cleanup, whether or
    /// not it succeeded: what is still in the file is then stale for the next run).
    pub fn release(&self, records: &[TxtRecord]) {
        if let Some(s) = lock(&IN_FLIGHT).as_mut() {
            for r in records {
                s.remove(&(self.path.clone(), r.fqdn.clone(), r.value.clone()));
            }
        }
    }

    /// Add entries owned by this process (duplicates are kept once).
    pub fn add(&self, provider: &str, records: &[TxtRecord]) -> Result<(), DnsError> {
        {
            let mut in_flight = lock(&IN_FLIGHT);
            let s = in_flight.get_or_insert_with(HashSet::new);
            for r in records {
                s.insert((self.path.clone(), r.fqdn.clone(), r.value.clone()));
            }
        }
        let _g = lock(&FILE_LOCK);
        let mut all = self.load()?;
        for r in records {
            let p = Pending {
                provider: provider.to_string(),
                record: r.clone(),
                pid: Some(std::process::id()),
            };
            if !all.contains(&p) {
                all.push(p);
            }
        }
        self.save(&all)
    }

    /// Drop entries for these records.
    pub fn remove(&self, provider: &str, records: &[TxtRecord]) -> Result<(), DnsError> {
        let _g = lock(&FILE_LOCK);
        let all = self.load()?;
        let kept: Vec<Pending> = all
            .into_iter()
            .filter(|p| !(p.provider == provider && records.iter().any(|r| same(r, &p.record))))
            .collect();
        self.save(&kept)
    }

    /// Atomic replace: temp file in the same directory, fsync, rename, fsync the directory.
    fn save(&self, entries: &[Pending]) -> Result<(), DnsError> {
        use std::io::Write;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let ctx = |what: &str| format!("{what} {}", self.path.display());
        if entries.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DnsError::io(ctx("removing"), e)),
                _ => Ok(()),
            };
        }
        std::fs::create_dir_all(dir).map_err(|e| DnsError::io(ctx("creating the directory of"), e))?;
        let body = serde_json::to_vec_pretty(entries).expect("serializable");
        let tmp = dir.join(format!(".{FILE}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            DnsError::io(ctx("writing"), e)
        })
    }
}

/// Same record regardless of the zone being known.
fn same(a: &TxtRecord, b: &TxtRecord) -> bool {
    a.fqdn == b.fqdn && a.value == b.value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: &str) -> TxtRecord {
        TxtRecord {
            domain: "a.test".into(),
            fqdn: "_acme-challenge.a.test".into(),
            zone: Some("a.test".into()),
            value: v.into(),
        }
    }

    #[test]
    fn add_remove_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let s = StateFile::new(d.path());
        assert!(s.load().unwrap().is_empty());
        s.add("rfc2136", &[rec("x"), rec("y")]).unwrap();
        s.add("rfc2136", &[rec("x")]).unwrap();
        assert_eq!(s.load().unwrap().len(), 2);
        s.remove("rfc2136", &[rec("x")]).unwrap();
        assert_eq!(s.load().unwrap()[0].record.value, "y");
        s.remove("rfc2136", &[rec("y")]).unwrap();
        assert!(!s.path().exists());
    }

    #[test]
    fn only_records_nobody_owns_are_stale() {
        let d = tempfile::tempdir().unwrap();
        let s = StateFile::new(d.path());
        s.add("rfc2136", &[rec("mine")]).unwrap();
        assert!(s.stale("rfc2136").unwrap().is_empty(), "in flight here");
        // Entries of a dead process and of files without pids are stale.
        let mut all = s.load().unwrap();
        all.push(Pending {
            provider: "rfc2136".into(),
            record: rec("dead"),
            pid: Some(u32::MAX - 1),
        });
        all.push(Pending {
            provider: "rfc2136".into(),
            record: rec("old-format"),
            pid: None,
        });
        s.save(&all).unwrap();
        let values = |v: Vec<TxtRecord>| v.into_iter().map(|r| r.value).collect::<Vec<_>>();
        assert_eq!(values(s.stale("rfc2136").unwrap()), ["dead", "old-format"]);
        assert!(s.stale("cloudflare").unwrap().is_empty());
        s.release(&[rec("mine")]);
        assert_eq!(
            values(s.stale("rfc2136").unwrap()),
            ["mine", "dead", "old-format"]
        );
    }
}
