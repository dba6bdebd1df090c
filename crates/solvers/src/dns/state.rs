//! What this host presented and has not yet removed, in `<dir>/dns01-pending.json`: written
//! *before* a record is added and pruned after it is removed, so the records of a run that
//! crashed in between are found and removed by the next run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{DnsError, TxtRecord};

const FILE: &str = "dns01-pending.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// [`super::DnsProvider::name`] of the provider that added it.
    pub provider: String,
    pub record: TxtRecord,
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

    /// Add entries (duplicates are kept once).
    pub fn add(&self, provider: &str, records: &[TxtRecord]) -> Result<(), DnsError> {
        let mut all = self.load()?;
        for r in records {
            let p = Pending {
                provider: provider.to_string(),
                record: r.clone(),
            };
            if !all.contains(&p) {
                all.push(p);
            }
        }
        self.save(&all)
    }

    /// Drop entries for these records.
    pub fn remove(&self, provider: &str, records: &[TxtRecord]) -> Result<(), DnsError> {
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
}
