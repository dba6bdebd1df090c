//! certbot-compatible on-disk store: the same `live/`, `archive/`, `renewal/` and
//! `accounts/` tree certbot 2.1 reads and writes, so certbot and certfleet can take over
//! each other's certificates and accounts.
//!
//! Every write goes through [`atomic`] (temp file, fsync, rename, fsync directory); private
//! keys are 0600 (account keys 0400, as certbot). See [`lineage`] for why a crash at any
//! point leaves `live/` on a complete, matching set.

pub mod accounts;
pub mod atomic;
pub mod cli_ini;
pub mod crash;
pub mod error;
pub mod jwk;
pub mod lineage;
pub mod lock;
mod pyjson;
pub mod renewal_conf;

use std::fs;
use std::path::{Path, PathBuf};

pub use accounts::{Account, AccountMeta, AccountStore, Regr};
pub use cli_ini::CliIni;
pub use error::StoreError;
pub use lineage::{CertFiles, Kind, Lineage};
pub use lock::StoreLock;
pub use renewal_conf::{RenewalConf, Value};

use error::IoContext;
use lineage::LineagePaths;

/// certbot's three directories (`--config-dir`, `--work-dir`, `--logs-dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    pub config_dir: PathBuf,
    pub work_dir: PathBuf,
    pub logs_dir: PathBuf,
}

impl Default for Dirs {
    fn default() -> Self {
        Dirs {
            config_dir: PathBuf::from("/etc/letsencrypt"),
            work_dir: PathBuf::from("/var/lib/letsencrypt"),
            logs_dir: PathBuf::from("/var/log/letsencrypt"),
        }
    }
}

impl Dirs {
    pub fn new(
        config_dir: impl Into<PathBuf>,
        work_dir: impl Into<PathBuf>,
        logs_dir: impl Into<PathBuf>,
    ) -> Self {
        Dirs {
            config_dir: config_dir.into(),
            work_dir: work_dir.into(),
            logs_dir: logs_dir.into(),
        }
    }

    /// All three under one directory (handy for tests): `D/config`, `D/work`, `D/logs`.
    pub fn under(root: &Path) -> Self {
        Dirs::new(root.join("config"), root.join("work"), root.join("logs"))
    }

    pub fn live_dir(&self) -> PathBuf {
        self.config_dir.join("live")
    }
    pub fn archive_dir(&self) -> PathBuf {
        self.config_dir.join("archive")
    }
    pub fn renewal_dir(&self) -> PathBuf {
        self.config_dir.join("renewal")
    }
    pub fn accounts_dir(&self) -> PathBuf {
        self.config_dir.join("accounts")
    }
    /// `renewal-hooks/{pre,deploy,post}`.
    pub fn renewal_hooks_dir(&self) -> PathBuf {
        self.config_dir.join("renewal-hooks")
    }
}

/// Lineages that match a set of domains (certbot's `find_duplicative_certs`).
#[derive(Debug, Default)]
pub struct DomainMatches {
    /// A lineage whose certificate has exactly these names.
    pub identical: Option<Lineage>,
    /// The lineage with the most names that are all among these names (for `--expand`).
    pub subset: Option<Lineage>,
}

/// What [`Store::save_version`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedVersion {
    pub name: String,
    pub version: u32,
    pub created_lineage: bool,
    /// A renewal's new version is live, but rewriting its renewal conf failed (disk full, say):
    /// the old conf still renews it, only this run's settings are not recorded. Why, if so.
    pub conf_not_updated: Option<String>,
}

/// The store. Cheap to create; methods touch the disk only when called.
#[derive(Debug, Clone)]
pub struct Store {
    dirs: Dirs,
}

impl Store {
    /// Relative directories are made absolute (certbot does the same), because the renewal
    /// conf records absolute paths.
    pub fn new(dirs: Dirs) -> Self {
        let abs = |p: PathBuf| lineage::normalize(&std::path::absolute(&p).unwrap_or(p));
        Store {
            dirs: Dirs {
                config_dir: abs(dirs.config_dir),
                work_dir: abs(dirs.work_dir),
                logs_dir: abs(dirs.logs_dir),
            },
        }
    }

    pub fn dirs(&self) -> &Dirs {
        &self.dirs
    }

    /// Create the config and work directories (0755, as certbot) if missing.
    pub fn ensure_dirs(&self) -> Result<(), StoreError> {
        atomic::create_dir(&self.dirs.config_dir, atomic::DIR_MODE)?;
        atomic::create_dir(&self.dirs.work_dir, atomic::DIR_MODE)
    }

    /// Take the lock certbot takes (`.certbot.lock` in the config and work directories),
    /// without waiting. Hold the returned guard for the whole run.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        self.lock_waiting(std::time::Duration::ZERO, |_| {})
    }

    /// [`Store::lock`], waiting up to `wait` for another certbot or certfleet run to finish;
    /// `waiting` is told once who holds the lock, when it is not free at once.
    pub fn lock_waiting(
        &self,
        wait: std::time::Duration,
        waiting: impl FnOnce(&str),
    ) -> Result<StoreLock, StoreError> {
        self.ensure_dirs()?;
        let lock = StoreLock::acquire(&self.dirs.config_dir, &self.dirs.work_dir, wait, waiting)?;
        self.clean_leftovers(&lock);
        Ok(lock)
    }

    /// Remove what runs killed mid-write left in `live/` and `renewal/`: staging directories
    /// of a link switch or a new lineage, and temporary files. Holding the lock proves every
    /// writer that made them is gone (certbot and certfleet only write under it). Failures
    /// are logged, not fatal: leftovers never change what `live/` points at.
    pub fn clean_leftovers(&self, _lock: &StoreLock) {
        let live_root = self.dirs.live_dir();
        let mut removed = match lineage::clean_staging(&live_root) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cleaning up after an interrupted run: {e}");
                Vec::new()
            }
        };
        for dir in [live_root, self.dirs.renewal_dir()] {
            removed.extend(atomic::remove_temp_files(&dir));
        }
        for p in removed {
            tracing::info!("removed {} (left by an interrupted run)", p.display());
        }
    }

    pub fn accounts(&self) -> AccountStore {
        AccountStore::new(self.dirs.accounts_dir())
    }

    fn paths(&self, name: &str) -> LineagePaths {
        LineagePaths {
            conf: self.conf_path(name),
            live_dir: self.dirs.live_dir().join(name),
            archive_dir: self.dirs.archive_dir().join(name),
        }
    }

    /// `renewal/NAME.conf`.
    pub fn conf_path(&self, name: &str) -> PathBuf {
        self.dirs.renewal_dir().join(format!("{name}.conf"))
    }

    /// `live/NAME` (where the four symlinks and README are).
    pub fn live_dir(&self, name: &str) -> PathBuf {
        self.dirs.live_dir().join(name)
    }

    /// Lineage names, from `renewal/*.conf`, sorted (certbot's `renewal_conf_files`).
    pub fn list_lineages(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.dirs.renewal_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("list", &dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.ctx("list", &dir)?;
            let file_name = entry.file_name();
            let Some(n) = file_name.to_str() else { continue };
            // glob("*.conf") skips hidden files, which is also where our temp files live.
            let Some(stem) = n.strip_suffix(".conf").filter(|_| !n.starts_with('.')) else {
                continue;
            };
            // Only regular files (or links to them): opening a FIFO would block forever
            // while we hold the lock. stat does not open it.
            let path = entry.path();
            match fs::metadata(&path) {
                Ok(m) if m.is_file() => names.push(stem.to_string()),
                Ok(m) => tracing::warn!(
                    "skipping {}: it is {}, not a regular file",
                    path.display(),
                    atomic::file_kind(&m.file_type())
                ),
                Err(e) => tracing::warn!("skipping {}: {e}", path.display()),
            }
        }
        names.sort();
        Ok(names)
    }

    /// Load one lineage, repairing an interrupted link switch first as certbot does (only
    /// when no other process holds the store lock: a holder may be mid-switch).
    pub fn load_lineage(&self, name: &str) -> Result<Lineage, StoreError> {
        lineage::validate_name(name)?;
        let conf = self.conf_path(name);
        if fs::symlink_metadata(&conf).is_err() {
            return Err(StoreError::LineageNotFound {
                name: name.to_string(),
                path: conf,
            });
        }
        lineage::load(
            name,
            conf,
            self.dirs.archive_dir().join(name),
            &self.dirs.config_dir,
        )
    }

    /// Load every lineage; broken ones come back as errors (certbot's "parse failures").
    pub fn load_all(&self) -> Result<Vec<Result<Lineage, StoreError>>, StoreError> {
        Ok(self
            .list_lineages()?
            .iter()
            .map(|n| self.load_lineage(n))
            .collect())
    }

    /// Name for a new lineage: `--cert-name`, or the first domain without `*.`; if taken,
    /// `NAME-0001`, `NAME-0002`, ... (certbot's `unique_lineage_name`). A name is taken when
    /// its renewal conf exists or leftover `live/` / `archive/` directories are not empty.
    ///
    /// A name whose only contents are what an interrupted creation of it leaves (version 1
    /// archive files, temp files, a live/ directory of links to them, no renewal conf) is
    /// reused after removing them: the lock proves that run is dead, and taking `NAME-0001`
    /// instead would leave an orphan that never renews.
    pub fn new_lineage_name(
        &self,
        domains: &[String],
        cert_name: Option<&str>,
        _lock: &StoreLock,
    ) -> Result<String, StoreError> {
        let base = lineage::base_lineage_name(domains, cert_name)?;
        for name in std::iter::once(base.clone()).chain((1..10000).map(|i| format!("{base}-{i:04}"))) {
            let paths = self.paths(&name);
            if lineage::name_is_free(&paths) {
                return Ok(name);
            }
            if lineage::is_interrupted_create(&paths) {
                tracing::warn!(
                    "removing {} and {}: an interrupted run left them without a renewal conf",
                    paths.live_dir.display(),
                    paths.archive_dir.display()
                );
                lineage::remove_interrupted_create(&paths)?;
                return Ok(name);
            }
        }
        Err(StoreError::InvalidName {
            name: base,
            reason: "all 9999 suffixes are in use".into(),
        })
    }

    /// Save a certificate version. If `renewal/NAME.conf` exists this adds version N+1 to
    /// that lineage, otherwise it creates lineage NAME with version 1. `conf` supplies the
    /// renewal parameters (and any other keys); its file references (`archive_dir`, `cert`,
    /// `privkey`, `chain`, `fullchain`) and `version` are filled in here.
    /// Hold [`Store::lock`] while calling this.
    pub fn save_version(
        &self,
        name: &str,
        files: &CertFiles,
        conf: &RenewalConf,
    ) -> Result<SavedVersion, StoreError> {
        lineage::validate_name(name)?;
        let paths = self.paths(name);
        if fs::symlink_metadata(&paths.conf).is_ok() {
            let l = self.load_lineage(name)?;
            let (version, conf_not_updated) = lineage::save_successor(&l, files, conf)?;
            return Ok(SavedVersion {
                name: name.to_string(),
                version,
                created_lineage: false,
                conf_not_updated: conf_not_updated.map(|e| e.to_string()),
            });
        }
        for d in [
            self.dirs.renewal_dir(),
            self.dirs.archive_dir(),
            self.dirs.live_dir(),
        ] {
            atomic::create_dir(&d, atomic::PRIVATE_DIR_MODE)?;
        }
        let base_readme = self.dirs.live_dir().join("README");
        if fs::symlink_metadata(&base_readme).is_err() {
            atomic::write_file(
                &base_readme,
                lineage::readme_text(true).as_bytes(),
                atomic::PUBLIC_MODE,
            )?;
        }
        lineage::create_new(name, &paths, files, conf)?;
        Ok(SavedVersion {
            name: name.to_string(),
            version: 1,
            created_lineage: true,
            conf_not_updated: None,
        })
    }

    /// Point `live/NAME` at the newest version for which all four archive files exist
    /// (certbot's `ensure_deployed`). Returns the version now live.
    pub fn update_symlinks(&self, name: &str) -> Result<u32, StoreError> {
        let l = self.load_lineage(name)?;
        let latest = l
            .latest_common_version()?
            .ok_or_else(|| StoreError::LineageBroken {
                name: name.to_string(),
                path: l.archive_dir.clone(),
                msg: "no complete version (cert, privkey, chain and fullchain) in the archive".into(),
            })?;
        // Checks that every target is there even when no link has to move.
        lineage::switch_links(&l, latest)?;
        Ok(latest)
    }

    /// Delete a lineage as `certbot delete` does: the renewal conf first (so a crash never
    /// leaves a conf pointing at missing files), then the live links and README, then the
    /// archive directory.
    pub fn delete_lineage(&self, name: &str) -> Result<(), StoreError> {
        lineage::validate_name(name)?;
        let paths = self.paths(name);
        let conf = match RenewalConf::load(&paths.conf) {
            Ok(c) => Some(c),
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::LineageNotFound {
                    name: name.to_string(),
                    path: paths.conf,
                });
            }
            // A corrupt conf is still deleted, with the default live/archive locations.
            Err(_) => None,
        };
        fs::remove_file(&paths.conf).ctx("remove", &paths.conf)?;
        atomic::sync_dir(&self.dirs.renewal_dir())?;
        let mut live_dirs = Vec::new();
        for k in Kind::ALL {
            let link = conf
                .as_ref()
                .and_then(|c| c.get(k.as_str()))
                .map(PathBuf::from)
                .unwrap_or_else(|| paths.live_dir.join(format!("{}.pem", k.as_str())));
            let _ = fs::remove_file(&link);
            if let Some(p) = link.parent() {
                live_dirs.push(p.to_path_buf());
            }
        }
        live_dirs.dedup();
        if live_dirs.len() == 1 {
            let d = &live_dirs[0];
            let _ = fs::remove_file(d.join("README"));
            for k in Kind::ALL {
                let _ = fs::remove_file(d.join(format!("previous_{}.pem", k.as_str())));
            }
            let _ = fs::remove_dir(d);
        }
        let archive = conf
            .as_ref()
            .and_then(|c| c.archive_dir())
            .map(PathBuf::from)
            .unwrap_or(paths.archive_dir);
        match fs::remove_dir_all(&archive) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", &archive, e)),
        }
    }

    /// Lineages whose current certificate has exactly `domains`, and the largest one whose
    /// names are a subset of `domains`. Broken lineages are skipped, as certbot does.
    pub fn find_by_domains(&self, domains: &[String]) -> Result<DomainMatches, StoreError> {
        use std::collections::HashSet;
        let wanted: HashSet<&str> = domains.iter().map(String::as_str).collect();
        let mut out = DomainMatches::default();
        let mut subset_len = 0;
        for l in self.load_all()?.into_iter().flatten() {
            let Ok(names) = l.names() else { continue };
            let have: HashSet<&str> = names.iter().map(String::as_str).collect();
            if have == wanted {
                out.identical = Some(l);
            } else if have.is_subset(&wanted) && (out.subset.is_none() || have.len() > subset_len) {
                subset_len = have.len();
                out.subset = Some(l);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
