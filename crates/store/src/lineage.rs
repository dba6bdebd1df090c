//! Certificate lineages, laid out exactly as certbot lays them out:
//!
//! ```text
//! renewal/NAME.conf                    what to renew and how (renewal_conf.rs)
//! archive/NAME/{cert,chain,fullchain,privkey}N.pem   every version ever issued
//! live/NAME/{cert,chain,fullchain,privkey}.pem      relative symlinks to the current N
//! live/NAME/README
//! ```
//!
//! The current version is not stored anywhere: like certbot, we read it from the targets of
//! the `live/` symlinks.
//!
//! # Crash safety of `save_version`
//! Order of a renewal (version N -> N+1) and why a crash anywhere is safe:
//! 1. Write `certN+1 chainN+1 fullchainN+1 privkeyN+1` into `archive/NAME/`, each atomically,
//!    then fsync the directory. Nothing refers to these names yet, so a crash here leaves
//!    `live/` on the complete set N; the next run skips past the partial N+1 (certbot's
//!    `next_free_version` does the same).
//! 2. Journal: create `live/NAME/previous_{kind}.pem` for all four kinds, pointing where the
//!    live links point now (certbot's own recovery protocol, `update_all_links_to`).
//! 3. Swap the four `live/NAME/{kind}.pem` links one by one (each an atomic rename).
//! 4. Delete the four `previous_*` links (same order they were made), fsync.
//!
//! A reader that finds *all four* `previous_*` links (crash in step 3, or before step 4
//! started) rolls the live links back to them: set N, complete. If it finds only some (crash
//! in step 2: set N is still live; crash in step 4: set N+1 is fully live) it just deletes
//! them. certbot's `RenewableCert._fix_symlinks` does exactly this whenever it loads a
//! lineage, and so does [`crate::Store::load_lineage`], so either tool repairs the other's
//! interrupted switch, and every reader sees a complete, matching set.
//! 5. Only then write the renewal conf (atomically). A crash before it leaves the previous
//!    conf, which still describes the same live paths.
//!
//! A new lineage is built the same way, except the `live/NAME` directory is assembled under
//! a temporary name and renamed into place whole, and the renewal conf comes last: until it
//! exists neither certbot nor certfleet sees the lineage at all. A crash leaves at most an
//! orphan `archive/NAME` or `live/NAME` without a conf; [`crate::Store::new_lineage_name`] skips
//! such names (giving `NAME-0001`), so an orphan never blocks issuance.

use std::fs;
use std::path::{Component, Path, PathBuf};

use certfleet_core::CertInfo;

use crate::atomic;
use crate::crash;
use crate::error::{IoContext, StoreError};
use crate::renewal_conf::RenewalConf;

/// The four files of a lineage version, in certbot's `ALL_FOUR` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Cert,
    Privkey,
    Chain,
    Fullchain,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Cert, Kind::Privkey, Kind::Chain, Kind::Fullchain];

    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Cert => "cert",
            Kind::Privkey => "privkey",
            Kind::Chain => "chain",
            Kind::Fullchain => "fullchain",
        }
    }

    fn idx(&self) -> usize {
        *self as usize
    }

    /// `cert7.pem` -> 7, for this kind only.
    pub fn parse_version(&self, file_name: &str) -> Option<u32> {
        let digits = file_name.strip_prefix(self.as_str())?.strip_suffix(".pem")?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    pub fn archive_file_name(&self, version: u32) -> String {
        format!("{}{version}.pem", self.as_str())
    }
}

/// The PEM texts of one certificate version.
#[derive(Clone)]
pub struct CertFiles {
    pub cert_pem: String,
    pub chain_pem: String,
    pub fullchain_pem: String,
    pub privkey_pem: String,
}

impl std::fmt::Debug for CertFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertFiles")
            .field("privkey_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl CertFiles {
    /// Build from the certificate and the chain; `fullchain` is their concatenation, as
    /// certbot writes it.
    pub fn new(cert_pem: String, chain_pem: String, privkey_pem: String) -> Self {
        let fullchain_pem = format!("{cert_pem}{chain_pem}");
        CertFiles {
            cert_pem,
            chain_pem,
            fullchain_pem,
            privkey_pem,
        }
    }

    fn get(&self, kind: Kind) -> &str {
        match kind {
            Kind::Cert => &self.cert_pem,
            Kind::Privkey => &self.privkey_pem,
            Kind::Chain => &self.chain_pem,
            Kind::Fullchain => &self.fullchain_pem,
        }
    }
}

/// A loaded lineage: its conf, where its live links are and what they point at.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub name: String,
    pub conf_path: PathBuf,
    pub conf: RenewalConf,
    /// `archive_dir` from the conf, or `<config>/archive/NAME`.
    pub archive_dir: PathBuf,
    live: [PathBuf; 4],
    /// Raw symlink contents (usually `../../archive/NAME/cert3.pem`).
    raw_targets: [Option<PathBuf>; 4],
}

impl Lineage {
    /// The live symlink for `kind` (e.g. `/etc/letsencrypt/live/NAME/fullchain.pem`).
    pub fn live_path(&self, kind: Kind) -> &Path {
        &self.live[kind.idx()]
    }

    /// Absolute path of the file the live link points at (certbot's `current_target`).
    pub fn current_target(&self, kind: Kind) -> Option<PathBuf> {
        let raw = self.raw_targets[kind.idx()].as_ref()?;
        Some(resolve_link(self.live_path(kind), raw))
    }

    /// Version the live link of `kind` points at (certbot's `current_version`).
    pub fn current_version(&self, kind: Kind) -> Option<u32> {
        let raw = self.raw_targets[kind.idx()].as_ref()?;
        kind.parse_version(raw.file_name()?.to_str()?)
    }

    /// The current version: the cert's, when all four links agree on it.
    pub fn version(&self) -> Option<u32> {
        let v = self.current_version(Kind::Cert)?;
        Kind::ALL
            .iter()
            .all(|k| self.current_version(*k) == Some(v))
            .then_some(v)
    }

    /// Versions of `kind` present in the archive directory, sorted.
    pub fn available_versions(&self, kind: Kind) -> Result<Vec<u32>, StoreError> {
        let mut v = Vec::new();
        for entry in fs::read_dir(&self.archive_dir).ctx("list", &self.archive_dir)? {
            let entry = entry.ctx("list", &self.archive_dir)?;
            if let Some(n) = entry.file_name().to_str().and_then(|n| kind.parse_version(n)) {
                v.push(n);
            }
        }
        v.sort_unstable();
        Ok(v)
    }

    fn all_available(&self) -> Result<[Vec<u32>; 4], StoreError> {
        let mut out: [Vec<u32>; 4] = Default::default();
        for entry in fs::read_dir(&self.archive_dir).ctx("list", &self.archive_dir)? {
            let entry = entry.ctx("list", &self.archive_dir)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            for k in Kind::ALL {
                if let Some(n) = k.parse_version(name) {
                    out[k.idx()].push(n);
                }
            }
        }
        Ok(out)
    }

    /// Newest version for which all four files exist (certbot's `latest_common_version`).
    pub fn latest_common_version(&self) -> Result<Option<u32>, StoreError> {
        let all = self.all_available()?;
        Ok(all[0]
            .iter()
            .copied()
            .filter(|n| all[1..].iter().all(|v| v.contains(n)))
            .max())
    }

    /// One more than any version of any kind present (certbot's `next_free_version`).
    pub fn next_free_version(&self) -> Result<u32, StoreError> {
        let all = self.all_available()?;
        Ok(all.iter().flatten().copied().max().unwrap_or(0) + 1)
    }

    pub fn archive_path(&self, kind: Kind, version: u32) -> PathBuf {
        self.archive_dir.join(kind.archive_file_name(version))
    }

    /// Parse the current certificate.
    pub fn cert_info(&self) -> Result<CertInfo, StoreError> {
        let path = self.live_path(Kind::Cert);
        let text = fs::read_to_string(path).ctx("read certificate", path)?;
        CertInfo::from_pem(&text).map_err(|e| StoreError::LineageBroken {
            name: self.name.clone(),
            path: path.to_path_buf(),
            msg: format!("cannot parse certificate: {e}"),
        })
    }

    /// Expiry of the current certificate (certbot's `target_expiry`).
    pub fn not_after(&self) -> Result<time::OffsetDateTime, StoreError> {
        Ok(self.cert_info()?.not_after)
    }

    /// The certificate's names as certbot lists them: the subject CN first (if any), then
    /// the subjectAltNames, without duplicates.
    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        let info = self.cert_info()?;
        Ok(certbot_names(&info))
    }

    /// Whether every live link exists and points at an existing archive file of the same
    /// version (certbot's `_check_symlinks` plus version agreement).
    pub fn check(&self) -> Result<(), StoreError> {
        for k in Kind::ALL {
            let target = self.current_target(k).ok_or_else(|| {
                self.broken(format!(
                    "{} is not a symlink; run `certfleet` or `certbot` to re-issue",
                    self.live_path(k).display()
                ))
            })?;
            if !target.exists() {
                return Err(self.broken(format!(
                    "target {} of symlink {} does not exist",
                    target.display(),
                    self.live_path(k).display()
                )));
            }
        }
        if self.version().is_none() {
            return Err(self.broken("live links point at different versions".into()));
        }
        Ok(())
    }

    fn broken(&self, msg: String) -> StoreError {
        StoreError::LineageBroken {
            name: self.name.clone(),
            path: self.conf_path.clone(),
            msg,
        }
    }
}

/// certbot's `get_names_from_cert`: CN first, then SANs, de-duplicated.
pub fn certbot_names(info: &CertInfo) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for n in info.subject_cn.iter().chain(info.names.iter()) {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

/// Lexical normalisation, like Python's `os.path.normpath` (no symlinks resolved).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn resolve_link(link: &Path, raw: &Path) -> PathBuf {
    if raw.is_absolute() {
        normalize(raw)
    } else {
        normalize(&link.parent().unwrap_or(Path::new("/")).join(raw))
    }
}

/// `os.path.relpath(target, start)` for absolute, normalised paths.
pub(crate) fn relpath(target: &Path, start: &Path) -> PathBuf {
    let (target, start) = (normalize(target), normalize(start));
    let t: Vec<_> = target.components().collect();
    let s: Vec<_> = start.components().collect();
    let common = t.iter().zip(s.iter()).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..s.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

/// certbot's `live/NAME/README` (and, with `base`, the one in `live/`).
pub fn readme_text(base: bool) -> String {
    let prefix = if base { "[cert name]/" } else { "" };
    format!(
        "This directory contains your keys and certificates.\n\n\
`{prefix}privkey.pem`  : the private key for your certificate.\n\
`{prefix}fullchain.pem`: the certificate file used in most server software.\n\
`{prefix}chain.pem`    : used for OCSP stapling in Nginx >=1.3.7.\n\
`{prefix}cert.pem`     : will break many server configurations, and should not be used\n\
                 without reading further documentation (see link below).\n\n\
WARNING: DO NOT MOVE OR RENAME THESE FILES!\n\
         Certbot expects these files to remain in this location in order\n\
         to function properly!\n\n\
We recommend not moving these files. For more information, see the Certbot\n\
User Guide at https://certbot.eff.org/docs/using.html#where-are-my-certificates.\n"
    )
}

/// Reject names that would escape `live/` or collide with our temporary files.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| {
        Err(StoreError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("it contains '/' (use a plain name such as example.com)");
    }
    if name.starts_with('.') {
        return bad("it starts with '.'");
    }
    Ok(())
}

/// certbot's `_choose_lineagename`: `--cert-name` if given, else the first domain with a
/// leading `*.` removed.
pub fn base_lineage_name(domains: &[String], cert_name: Option<&str>) -> Result<String, StoreError> {
    let name = match cert_name {
        Some(n) => n.to_string(),
        None => {
            let first = domains.first().ok_or_else(|| StoreError::InvalidName {
                name: String::new(),
                reason: "no domains given to name the certificate after (pass -d DOMAIN)".into(),
            })?;
            first.strip_prefix("*.").unwrap_or(first).to_string()
        }
    };
    validate_name(&name)?;
    Ok(name)
}

/// Paths of one lineage under a config dir.
pub(crate) struct LineagePaths {
    pub conf: PathBuf,
    pub live_dir: PathBuf,
    pub archive_dir: PathBuf,
}

fn exists_nonempty_dir_or_file(p: &Path) -> bool {
    match fs::symlink_metadata(p) {
        Err(_) => false,
        Ok(m) if m.is_dir() => fs::read_dir(p).map(|mut d| d.next().is_some()).unwrap_or(true),
        Ok(_) => true,
    }
}

pub(crate) fn name_is_free(paths: &LineagePaths) -> bool {
    fs::symlink_metadata(&paths.conf).is_err()
        && !exists_nonempty_dir_or_file(&paths.live_dir)
        && !exists_nonempty_dir_or_file(&paths.archive_dir)
}

fn previous_link(live: &Path, kind: Kind) -> PathBuf {
    live.parent()
        .unwrap_or(Path::new("/"))
        .join(format!("previous_{}.pem", kind.as_str()))
}

/// certbot's `_fix_symlinks`: roll back an interrupted link switch. Cheap when there is
/// nothing to do (two lstat calls), which keeps listing thousands of lineages fast.
pub(crate) fn fix_symlinks(live: &[PathBuf; 4], config_dir: &Path) -> Result<(), StoreError> {
    let prev: Vec<PathBuf> = Kind::ALL
        .iter()
        .map(|k| previous_link(&live[k.idx()], *k))
        .collect();
    // Journal links are created and deleted in ALL_FOUR order, so any non-empty set of them
    // contains the first or the last.
    if fs::symlink_metadata(&prev[0]).is_err() && fs::symlink_metadata(&prev[3]).is_err() {
        return Ok(());
    }
    let Some(_guard) = crate::lock::for_repair(config_dir)? else {
        tracing::debug!("another instance holds the lock and may be switching links; not repairing");
        return Ok(());
    };
    tracing::warn!(
        "found an interrupted certificate switch in {}; restoring the previous links",
        live[0].parent().unwrap_or(Path::new("")).display()
    );
    // `exists` follows the link, as certbot's os.path.exists does.
    if prev.iter().all(|p| p.exists()) {
        for k in Kind::ALL {
            let target = fs::read_link(&prev[k.idx()]).ctx("read symlink", &prev[k.idx()])?;
            atomic::replace_symlink(&target, &live[k.idx()])?;
        }
    }
    for p in &prev {
        if fs::symlink_metadata(p).is_ok() {
            fs::remove_file(p).ctx("remove", p)?;
        }
    }
    for dir in live.iter().filter_map(|l| l.parent()) {
        atomic::sync_dir(dir)?;
    }
    Ok(())
}

/// Switch the four live links to `version` with certbot's journal (see module docs).
pub(crate) fn switch_links(lineage: &Lineage, version: u32) -> Result<(), StoreError> {
    let live = &lineage.live;
    let dirs: Vec<&Path> = {
        let mut d: Vec<&Path> = live.iter().filter_map(|l| l.parent()).collect();
        d.dedup();
        d
    };
    crash::point("before-symlinks");
    // 1. Journal: previous_* -> where the links point now.
    for k in Kind::ALL {
        let raw = lineage.raw_targets[k.idx()]
            .as_ref()
            .ok_or_else(|| lineage.broken(format!("{} is not a symlink", lineage.live_path(k).display())))?;
        atomic::replace_symlink(raw, &previous_link(&live[k.idx()], k))?;
    }
    for d in &dirs {
        atomic::sync_dir(d)?;
    }
    crash::point("after-previous-links");
    // 2. The switch itself. Keep each link's directory part, as certbot's _update_link_to.
    for k in Kind::ALL {
        let raw = lineage.raw_targets[k.idx()].as_ref().expect("checked above");
        let dir = raw.parent().map(Path::to_path_buf).unwrap_or_default();
        atomic::replace_symlink(&dir.join(k.archive_file_name(version)), &live[k.idx()])?;
        crash::point(&format!("after-symlink-{}", k.as_str()));
    }
    for d in &dirs {
        atomic::sync_dir(d)?;
    }
    // 3. Drop the journal.
    for k in Kind::ALL {
        let p = previous_link(&live[k.idx()], k);
        fs::remove_file(&p).ctx("remove", &p)?;
        if k == Kind::Cert {
            crash::point("after-remove-previous-cert");
        }
    }
    for d in &dirs {
        atomic::sync_dir(d)?;
    }
    crash::point("after-symlinks");
    Ok(())
}

/// Load a lineage from its conf (repairing an interrupted link switch first).
pub(crate) fn load(
    name: &str,
    conf_path: PathBuf,
    default_archive: PathBuf,
    config_dir: &Path,
) -> Result<Lineage, StoreError> {
    let conf = RenewalConf::load(&conf_path)?;
    let mut live: [PathBuf; 4] = Default::default();
    for k in Kind::ALL {
        let p = conf.get(k.as_str()).ok_or_else(|| StoreError::LineageBroken {
            name: name.to_string(),
            path: conf_path.clone(),
            msg: format!(
                "renewal config file is missing a required file reference ({} = ...)",
                k.as_str()
            ),
        })?;
        live[k.idx()] = PathBuf::from(p);
    }
    let archive_dir = conf.archive_dir().map(PathBuf::from).unwrap_or(default_archive);
    fix_symlinks(&live, config_dir)?;
    let mut raw_targets: [Option<PathBuf>; 4] = Default::default();
    for k in Kind::ALL {
        raw_targets[k.idx()] = fs::read_link(&live[k.idx()]).ok();
    }
    Ok(Lineage {
        name: name.to_string(),
        conf_path,
        conf,
        archive_dir,
        live,
        raw_targets,
    })
}

/// Mode and group for a new private key: certbot keeps the previous key's group and its
/// group bits and world-read bit (`compute_private_key_mode`), on top of 0600.
fn privkey_mode_and_group(old: Option<&Path>) -> (u32, Option<u32>) {
    use std::os::unix::fs::MetadataExt;
    match old.and_then(|p| fs::metadata(p).ok()) {
        Some(m) => (atomic::KEY_MODE | (m.mode() & 0o074), Some(m.gid())),
        None => (atomic::KEY_MODE, None),
    }
}

/// Write the four archive files of `version`, fsync the directory.
fn write_archive(
    archive_dir: &Path,
    version: u32,
    files: &CertFiles,
    old_privkey: Option<&Path>,
) -> Result<(), StoreError> {
    // Key last: the brief's crash points are after-archive-cert ... after-archive-privkey.
    for k in [Kind::Cert, Kind::Chain, Kind::Fullchain, Kind::Privkey] {
        let path = archive_dir.join(k.archive_file_name(version));
        if k == Kind::Privkey {
            let (mode, gid) = privkey_mode_and_group(old_privkey);
            atomic::write_file_opts(&path, files.get(k).as_bytes(), mode, gid)?;
        } else {
            atomic::write_file_deferred(&path, files.get(k).as_bytes(), atomic::PUBLIC_MODE)?;
        }
        crash::point(&format!("after-archive-{}", k.as_str()));
    }
    atomic::sync_dir(archive_dir)
}

/// Fill in the file references of a conf as certbot's `write_renewal_config` does.
fn conf_for_write(conf: &RenewalConf, archive_dir: &Path, live: &[PathBuf; 4]) -> RenewalConf {
    let mut c = conf.clone();
    // An existing conf keeps the version certbot wrote (see prepare_for_write).
    if c.get("version").is_none_or(str::is_empty) {
        c.set("version", crate::renewal_conf::CERTBOT_COMPAT_VERSION);
    }
    c.set("archive_dir", archive_dir.to_string_lossy().into_owned());
    for k in Kind::ALL {
        c.set(k.as_str(), live[k.idx()].to_string_lossy().into_owned());
    }
    c.params_mut();
    c.prepare_for_write();
    c
}

fn write_conf(path: &Path, conf: &RenewalConf) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let text = conf.to_text()?;
    // Keep the mode of an existing conf (certbot copies it); new confs are 0644.
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(atomic::PUBLIC_MODE);
    crash::point("before-renewal-conf");
    atomic::write_file(path, text.as_bytes(), mode)?;
    crash::point("after-renewal-conf");
    Ok(())
}

/// Add version N+1 to an existing lineage (see the module docs for the order).
pub(crate) fn save_successor(
    lineage: &Lineage,
    files: &CertFiles,
    conf: &RenewalConf,
) -> Result<u32, StoreError> {
    let version = lineage.next_free_version()?;
    atomic::create_dir(&lineage.archive_dir, atomic::DIR_MODE)?;
    let old_key = lineage.current_target(Kind::Privkey);
    write_archive(&lineage.archive_dir, version, files, old_key.as_deref())?;
    switch_links(lineage, version)?;
    let new_conf = conf_for_write(conf, &lineage.archive_dir, &lineage.live);
    write_conf(&lineage.conf_path, &new_conf)?;
    Ok(version)
}

/// Create a brand-new lineage at `paths` with version 1.
pub(crate) fn create_new(
    name: &str,
    paths: &LineagePaths,
    files: &CertFiles,
    conf: &RenewalConf,
) -> Result<(), StoreError> {
    let live_root = paths.live_dir.parent().expect("live dir has a parent");
    if exists_nonempty_dir_or_file(&paths.archive_dir) {
        return Err(StoreError::NameInUse {
            name: name.to_string(),
            path: paths.archive_dir.clone(),
        });
    }
    if exists_nonempty_dir_or_file(&paths.live_dir) {
        return Err(StoreError::NameInUse {
            name: name.to_string(),
            path: paths.live_dir.clone(),
        });
    }
    atomic::create_dir(&paths.archive_dir, atomic::DIR_MODE)?;
    write_archive(&paths.archive_dir, 1, files, None)?;

    crash::point("before-symlinks");
    // Assemble live/NAME under a temporary name so it appears complete or not at all.
    let tmp = live_root.join(format!(".{name}.new-{}", std::process::id()));
    if fs::symlink_metadata(&tmp).is_ok() {
        fs::remove_dir_all(&tmp).ctx("remove stale", &tmp)?;
    }
    atomic::create_dir(&tmp, atomic::DIR_MODE)?;
    let mut live: [PathBuf; 4] = Default::default();
    for k in Kind::ALL {
        live[k.idx()] = paths.live_dir.join(format!("{}.pem", k.as_str()));
        let target = relpath(&paths.archive_dir.join(k.archive_file_name(1)), &paths.live_dir);
        let link = tmp.join(format!("{}.pem", k.as_str()));
        std::os::unix::fs::symlink(&target, &link).ctx("create symlink", &link)?;
        crash::point(&format!("after-symlink-{}", k.as_str()));
    }
    atomic::write_file_deferred(
        &tmp.join("README"),
        readme_text(false).as_bytes(),
        atomic::PUBLIC_MODE,
    )?;
    atomic::sync_dir(&tmp)?;
    if fs::symlink_metadata(&paths.live_dir).is_ok() {
        // An empty leftover directory (checked above): rename cannot replace it portably.
        fs::remove_dir(&paths.live_dir).ctx("remove empty", &paths.live_dir)?;
    }
    fs::rename(&tmp, &paths.live_dir).ctx("rename into place", &paths.live_dir)?;
    atomic::sync_dir(live_root)?;
    crash::point("after-symlinks");

    let new_conf = conf_for_write(conf, &paths.archive_dir, &live);
    write_conf(&paths.conf, &new_conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_versions() {
        assert_eq!(Kind::Cert.parse_version("cert12.pem"), Some(12));
        assert_eq!(Kind::Cert.parse_version("cert.pem"), None);
        assert_eq!(Kind::Cert.parse_version("certx.pem"), None);
        assert_eq!(Kind::Chain.parse_version("cert1.pem"), None);
        assert_eq!(Kind::Fullchain.archive_file_name(3), "fullchain3.pem");
    }

    #[test]
    fn relative_paths_like_python() {
        assert_eq!(
            relpath(
                Path::new("/etc/le/archive/a.com/cert1.pem"),
                Path::new("/etc/le/live/a.com")
            ),
            PathBuf::from("../../archive/a.com/cert1.pem")
        );
        assert_eq!(
            resolve_link(
                Path::new("/etc/le/live/a/cert.pem"),
                Path::new("../../archive/a/cert2.pem")
            ),
            PathBuf::from("/etc/le/archive/a/cert2.pem")
        );
    }

    #[test]
    fn naming_follows_certbot() {
        let d = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            base_lineage_name(&d(&["*.example.com", "example.com"]), None).unwrap(),
            "example.com"
        );
        assert_eq!(
            base_lineage_name(&d(&["a.example"]), Some("mine")).unwrap(),
            "mine"
        );
        assert!(base_lineage_name(&d(&[]), None).is_err());
        assert!(base_lineage_name(&d(&["a"]), Some("../x")).is_err());
    }

    #[test]
    fn readme_matches_certbot_text() {
        let t = readme_text(false);
        assert!(t.starts_with("This directory contains your keys and certificates.\n\n`privkey.pem`  :"));
        assert!(readme_text(true).contains("`[cert name]/fullchain.pem`"));
    }
}
