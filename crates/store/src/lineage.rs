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
//! 1. Render the new renewal conf (a value configobj cannot store fails here, before any
//!    file changes).
//! 2. Write `certN+1 chainN+1 fullchainN+1 privkeyN+1` into `archive/NAME/`, each atomically,
//!    then fsync the directory. Nothing refers to these names yet, so a crash here leaves
//!    `live/` on the complete set N; the next run skips past the partial N+1 (certbot's
//!    `next_free_version` does the same).
//! 3. Check that all four new targets exist and are readable.
//! 4. Assemble the next `live/NAME` next to it, as `live/.NAME.switch-PID`: the four new
//!    relative links, plus hard links to README and anything else kept in `live/NAME`.
//!    fsync it.
//! 5. Swap the two directories with one `renameat2(RENAME_EXCHANGE)` and fsync `live/`.
//!    Before it every reader sees set N, after it set N+1: all four links change at once.
//!    (certbot switches link by link with a `previous_*` journal that a reader must repair
//!    first; a web server reading in that window, or after a crash in it, gets a key of
//!    one version and a certificate of another.)
//! 6. Remove the staging directory, which now holds set N's links (directories a user put
//!    into `live/NAME` are moved over first).
//! 7. Only then write the renewal conf (atomically). A crash before it leaves the previous
//!    conf, which still describes the same live paths.
//!
//! A crash leaves at most a staging directory; [`crate::Store::lock`] removes those (the
//! lock proves their writer is dead). certbot's own journal is still honoured:
//! [`crate::Store::load_lineage`] rolls back a switch certbot left half done, as certbot's
//! `RenewableCert._fix_symlinks` does. Where links are spread over several directories (a
//! hand-edited conf) or the filesystem cannot exchange, we fall back to that journal.
//!
//! A new lineage is built the same way: `live/NAME` is assembled under the staging name and
//! renamed into place whole, and the renewal conf comes last: until it exists neither certbot
//! nor certfleet sees the lineage at all. A crash leaves at most an `archive/NAME` and
//! `live/NAME` without a conf; [`crate::Store::new_lineage_name`] recognises such leftovers
//! and removes them, so the retry gets NAME again instead of `NAME-0001` plus an orphan.

use std::ffi::OsString;
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
    if name.contains('/') {
        return bad("it contains '/' (use a plain name such as example.com)");
    }
    if name.chars().any(char::is_control) {
        return bad("it contains a control character");
    }
    if name.starts_with('.') {
        return bad("it starts with '.' (names such as . and .. would leave live/)");
    }
    if name.starts_with('-') {
        return bad("it starts with '-' (it would read as an option to other tools)");
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

/// Whether `paths` hold only what an interrupted creation of the lineage leaves: no
/// renewal conf, an archive of version-1 files (and temp files), and a live directory of
/// links into it plus README. Anything else there is someone's data and stays.
pub(crate) fn is_interrupted_create(paths: &LineagePaths) -> bool {
    if fs::symlink_metadata(&paths.conf).is_ok() {
        return false;
    }
    let ours_in_archive =
        |name: &str| atomic::is_temp_name(name) || Kind::ALL.iter().any(|k| k.parse_version(name) == Some(1));
    let ours_in_live = |name: &str, path: &Path| {
        if name == "README" || atomic::is_temp_name(name) {
            return true;
        }
        let Some(k) = Kind::ALL.iter().find(|k| name == format!("{}.pem", k.as_str())) else {
            return false;
        };
        // Only a link into this lineage's own archive, at version 1.
        fs::read_link(path).is_ok_and(|t| {
            resolve_link(path, &t) == normalize(&paths.archive_dir.join(k.archive_file_name(1)))
        })
    };
    let only = |dir: &Path, ok: &dyn Fn(&str, &Path) -> bool| match fs::symlink_metadata(dir) {
        Err(_) => true,
        Ok(m) if !m.is_dir() => false,
        Ok(_) => fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .map(|e| e.map(|e| (e.file_name(), e.path())))
                .all(|e| e.is_ok_and(|(n, p)| n.to_str().is_some_and(|n| ok(n, &p))))
        }),
    };
    only(&paths.archive_dir, &|n, _| ours_in_archive(n)) && only(&paths.live_dir, &ours_in_live)
}

/// Remove what [`is_interrupted_create`] recognised: live directory first, so no link ever
/// points at a removed file.
pub(crate) fn remove_interrupted_create(paths: &LineagePaths) -> Result<(), StoreError> {
    remove_dir_all_if_exists(&paths.live_dir)?;
    remove_dir_all_if_exists(&paths.archive_dir)?;
    if let Some(p) = paths.live_dir.parent() {
        atomic::sync_dir(p)?;
    }
    Ok(())
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

/// Where `kind`'s link should point for `version`, raw (as written into the symlink) and
/// resolved. certbot's `_update_link_to` keeps the directory part of the current link;
/// without a current link we point into the archive directory, relative as certbot does.
fn link_target(lineage: &Lineage, kind: Kind, version: u32) -> (PathBuf, PathBuf) {
    let live = lineage.live_path(kind);
    let dir = match &lineage.raw_targets[kind.idx()] {
        Some(raw) => raw.parent().map(Path::to_path_buf).unwrap_or_default(),
        None => relpath(&lineage.archive_dir, live.parent().unwrap_or(Path::new("/"))),
    };
    let raw = dir.join(kind.archive_file_name(version));
    let resolved = resolve_link(live, &raw);
    (raw, resolved)
}

/// Every new target must be a readable regular file, or nothing changes: a link to a
/// missing file takes a web server down at its next reload.
fn check_targets(lineage: &Lineage, targets: &[(PathBuf, PathBuf); 4]) -> Result<(), StoreError> {
    for (k, (_, resolved)) in Kind::ALL.iter().zip(targets) {
        let problem = match fs::File::open(resolved).and_then(|f| f.metadata()) {
            Ok(m) if m.is_file() => continue,
            Ok(_) => "is not a regular file".to_string(),
            Err(e) => format!("cannot be read: {e}"),
        };
        return Err(lineage.broken(format!(
            "{} would point at {}, which {problem}; no link was changed (restore the file, or run `certfleet renew --force-renewal --cert-name {}` to issue a fresh set)",
            lineage.live_path(*k).display(),
            resolved.display(),
            lineage.name
        )));
    }
    Ok(())
}

/// Switch the four live links to `version` all at once (see the module docs).
pub(crate) fn switch_links(lineage: &Lineage, version: u32) -> Result<(), StoreError> {
    let targets = Kind::ALL.map(|k| link_target(lineage, k, version));
    check_targets(lineage, &targets)?;
    if Kind::ALL
        .iter()
        .all(|k| lineage.raw_targets[k.idx()].as_ref() == Some(&targets[k.idx()].0))
    {
        return Ok(());
    }
    crash::point("before-symlinks");
    // The exchange needs the four links side by side in one real directory (always so
    // for certbot's layout; a hand-edited conf may differ).
    let dir = lineage.live[0].parent().unwrap_or(Path::new("/"));
    let same_dir = lineage.live.iter().all(|l| l.parent() == Some(dir));
    let real_dir = fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
    if same_dir && real_dir {
        let links: Vec<(OsString, PathBuf)> = Kind::ALL
            .iter()
            .filter_map(|k| {
                Some((
                    lineage.live_path(*k).file_name()?.to_owned(),
                    targets[k.idx()].0.clone(),
                ))
            })
            .collect();
        match replace_live_dir(dir, &links, true) {
            Err(StoreError::Io { source, .. }) if exchange_unsupported(&source) => {
                tracing::warn!(
                    "the filesystem of {} cannot exchange directories atomically; switching links one by one",
                    dir.display()
                );
            }
            other => return other,
        }
    }
    switch_links_journal(lineage, &targets)
}

fn exchange_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

/// `live/.NAME.switch-PID`: where the next `live/NAME` is assembled.
fn staging_dir(live_dir: &Path) -> Result<PathBuf, StoreError> {
    let name = live_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| StoreError::io("name", live_dir, std::io::ErrorKind::InvalidInput.into()))?;
    Ok(live_dir.with_file_name(format!(".{name}.{STAGING_TAG}-{}", std::process::id())))
}

/// Tag of staging directories; older versions used `new` for new lineages.
const STAGING_TAG: &str = "switch";
const STAGING_TAGS: [&str; 2] = [STAGING_TAG, "new"];

/// The lineage directory name and writer pid of a staging directory name
/// (`.NAME.switch-PID`), if it is one.
pub(crate) fn parse_staging_name(file_name: &str) -> Option<(&str, u32)> {
    let (name, tail) = file_name.strip_prefix('.')?.rsplit_once('.')?;
    let (tag, pid) = tail.split_once('-')?;
    (STAGING_TAGS.contains(&tag) && !name.is_empty()).then_some(())?;
    Some((name, pid.parse().ok()?))
}

/// Make `live_dir` hold exactly `links` (name, symlink content) plus what else it held
/// (README, files a deploy hook put there), switching all links in one step: the new
/// directory is assembled next to it and swapped in with `renameat2(RENAME_EXCHANGE)`, so a
/// reader (or a crash) sees the complete old set or the complete new set, never a mix.
/// A missing `live_dir` is simply renamed into place. `readme`: write certbot's README if
/// the old directory had none.
fn replace_live_dir(live_dir: &Path, links: &[(OsString, PathBuf)], readme: bool) -> Result<(), StoreError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    let parent = live_dir.parent().unwrap_or(Path::new("/"));
    let staging = staging_dir(live_dir)?;
    remove_dir_all_if_exists(&staging)?;
    let old = fs::symlink_metadata(live_dir).ok();
    let mode = old.as_ref().map_or(atomic::DIR_MODE, |m| m.mode() & 0o7777);
    fs::create_dir(&staging).ctx("create directory", &staging)?;
    let built = (|| {
        fs::set_permissions(&staging, fs::Permissions::from_mode(mode)).ctx("chmod", &staging)?;
        if let Some(m) = &old {
            // Keep the owner too (best effort: only root can give files away).
            let _ = std::os::unix::fs::lchown(&staging, Some(m.uid()), Some(m.gid()));
        }
        for (i, (name, target)) in links.iter().enumerate() {
            let link = staging.join(name);
            symlink(target, &link).ctx("create symlink", &link)?;
            crash::point(&format!("after-symlink-{}", Kind::ALL[i % 4].as_str()));
        }
        let moved_later = if old.is_some() {
            carry_over(live_dir, &staging, links)?
        } else {
            Vec::new()
        };
        if readme && fs::symlink_metadata(staging.join("README")).is_err() {
            atomic::write_file_deferred(
                &staging.join("README"),
                readme_text(false).as_bytes(),
                atomic::PUBLIC_MODE,
            )?;
        }
        atomic::sync_dir(&staging)?;
        Ok(moved_later)
    })();
    let moved_later = match built {
        Ok(m) => m,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    crash::point("before-exchange");
    let swapped = if old.is_some() {
        exchange(parent, &staging, live_dir)
    } else {
        fs::rename(&staging, live_dir).ctx("rename into place", live_dir)
    };
    if let Err(e) = swapped {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    atomic::sync_dir(parent)?;
    crash::point("after-exchange");
    if old.is_some() {
        // `staging` now holds the old set; hand over what could not be linked, then drop it.
        merge_leftover(&staging, live_dir, &moved_later)?;
    }
    crash::point("after-symlinks");
    Ok(())
}

/// Copy into `staging` what `live_dir` holds besides the links: regular files as hard
/// links (same file, no copy to go stale), symlinks as symlinks. Directories and other
/// entries cannot be in both places; they are returned, to be moved after the exchange.
fn carry_over(
    live_dir: &Path,
    staging: &Path,
    links: &[(OsString, PathBuf)],
) -> Result<Vec<OsString>, StoreError> {
    let mut later = Vec::new();
    for entry in fs::read_dir(live_dir).ctx("list", live_dir)? {
        let entry = entry.ctx("list", live_dir)?;
        let name = entry.file_name();
        if links.iter().any(|(n, _)| *n == name) || is_journal_link(&name) {
            continue;
        }
        let (src, dst) = (entry.path(), staging.join(&name));
        let ft = entry.file_type().ctx("stat", &src)?;
        if ft.is_file() {
            fs::hard_link(&src, &dst)
                .or_else(|_| fs::copy(&src, &dst).map(drop))
                .ctx("link", &dst)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&src).ctx("read symlink", &src)?;
            std::os::unix::fs::symlink(target, &dst).ctx("create symlink", &dst)?;
        } else {
            later.push(name);
        }
    }
    Ok(later)
}

/// certbot's journal links (`previous_cert.pem`, ...): never carried into a new set.
fn is_journal_link(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| {
        Kind::ALL
            .iter()
            .any(|k| n == format!("previous_{}.pem", k.as_str()))
    })
}

/// `renameat2(a, b, RENAME_EXCHANGE)` within `parent`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(parent: &Path, a: &Path, b: &Path) -> Result<(), StoreError> {
    use nix::fcntl::{RenameFlags, renameat2};
    let dir = fs::File::open(parent).ctx("open directory", parent)?;
    let name = |p: &Path| p.file_name().map(std::ffi::OsStr::to_owned).unwrap_or_default();
    renameat2(
        &dir,
        name(a).as_os_str(),
        &dir,
        name(b).as_os_str(),
        RenameFlags::RENAME_EXCHANGE,
    )
    .map_err(|e| StoreError::io("exchange directories", b, e.into()))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(_parent: &Path, _a: &Path, b: &Path) -> Result<(), StoreError> {
    Err(StoreError::io(
        "exchange directories",
        b,
        std::io::Error::from_raw_os_error(libc::ENOSYS),
    ))
}

/// After an exchange (or a crash around one) `leftover` is a staging directory next to
/// `live_dir`: move into `live_dir` the entries only it has that are not links or files
/// (those were carried over as links and copies), then remove it.
fn merge_leftover(leftover: &Path, live_dir: &Path, names: &[OsString]) -> Result<(), StoreError> {
    if fs::symlink_metadata(live_dir).is_ok_and(|m| m.is_dir()) {
        let candidates: Vec<OsString> = if names.is_empty() {
            fs::read_dir(leftover)
                .ctx("list", leftover)?
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| !t.is_file() && !t.is_symlink()))
                .map(|e| e.file_name())
                .collect()
        } else {
            names.to_vec()
        };
        for n in candidates {
            let dst = live_dir.join(&n);
            if fs::symlink_metadata(&dst).is_err() {
                fs::rename(leftover.join(&n), &dst).ctx("move back", &dst)?;
            }
        }
        atomic::sync_dir(live_dir)?;
    }
    remove_dir_all_if_exists(leftover)
}

fn remove_dir_all_if_exists(dir: &Path) -> Result<(), StoreError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io("remove", dir, e)),
        _ => Ok(()),
    }
}

/// Remove the staging directories in `live_root` that runs killed mid-switch left
/// behind, handing anything of the user's back to its lineage. Call only with the store
/// lock held: then no live process is switching, so every staging directory is a dead
/// run's. Returns what was removed.
pub(crate) fn clean_staging(live_root: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(live_root) else {
        return Ok(removed);
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some((name, pid)) = file_name.to_str().and_then(parse_staging_name) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let path = entry.path();
        merge_leftover(&path, &live_root.join(name), &[])?;
        removed.push(path);
    }
    Ok(removed)
}

/// The old way, for links spread over several directories (or a filesystem without
/// `RENAME_EXCHANGE`): certbot's journal (see [`fix_symlinks`]), links switched one by one.
fn switch_links_journal(lineage: &Lineage, targets: &[(PathBuf, PathBuf); 4]) -> Result<(), StoreError> {
    let live = &lineage.live;
    let dirs: Vec<&Path> = {
        let mut d: Vec<&Path> = live.iter().filter_map(|l| l.parent()).collect();
        d.dedup();
        d
    };
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
    // 2. The switch itself.
    for k in Kind::ALL {
        atomic::replace_symlink(&targets[k.idx()].0, &live[k.idx()])?;
    }
    for d in &dirs {
        atomic::sync_dir(d)?;
    }
    // 3. Drop the journal.
    for k in Kind::ALL {
        let p = previous_link(&live[k.idx()], k);
        fs::remove_file(&p).ctx("remove", &p)?;
    }
    for d in &dirs {
        atomic::sync_dir(d)?;
    }
    crash::point("after-symlinks");
    Ok(())
}

/// A conf without `[renewalparams]` (or without `server` in it) does not say which CA
/// issued the certificate: renewing it "with the defaults" would go to Let's Encrypt
/// production with whatever account happens to exist. certbot skips such a file as a
/// parse failure; so do we, saying how to repair it.
fn check_renewal_params(name: &str, conf_path: &Path, conf: &RenewalConf) -> Result<(), StoreError> {
    let missing = match conf.params() {
        None => "has no [renewalparams] section",
        Some(p) if p.get_str("server").is_none_or(|s| s.trim().is_empty()) => {
            "has no `server =` line in [renewalparams]"
        }
        Some(_) => return Ok(()),
    };
    Err(StoreError::LineageBroken {
        name: name.to_string(),
        path: conf_path.to_path_buf(),
        msg: format!(
            "the renewal conf {missing}, so it does not say which CA and account to renew with \
             (certfleet never falls back to a default CA); restore the file from a backup, add \
             `server = <ACME directory URL>` (and account, authenticator) under [renewalparams], or \
             re-issue with `certfleet certonly --cert-name {name} --server URL -d ...`"
        ),
    })
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
    check_renewal_params(name, &conf_path, &conf)?;
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
    // Temp files of a killed run (we hold the lock, so it is dead).
    atomic::remove_temp_files(archive_dir);
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

fn write_conf(path: &Path, text: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    // Keep the mode of an existing conf (certbot copies it); new confs are 0644.
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(atomic::PUBLIC_MODE);
    crash::point("before-renewal-conf");
    crash::fail("renewal-conf").ctx("write", path)?;
    atomic::write_file(path, text.as_bytes(), mode)?;
    crash::point("after-renewal-conf");
    Ok(())
}

/// Add version N+1 to an existing lineage (see the module docs for the order): save it and make
/// it live, then rewrite the conf. Once the links have moved the new certificate is served, so
/// a failed conf write is returned beside the version, not as a failure of the renewal.
pub(crate) fn save_successor(
    lineage: &Lineage,
    files: &CertFiles,
    conf: &RenewalConf,
) -> Result<(u32, Option<StoreError>), StoreError> {
    // Render the conf first: a value configobj cannot store is refused before any file changes.
    let conf_text = conf_for_write(conf, &lineage.archive_dir, &lineage.live).to_text()?;
    let version = lineage.next_free_version()?;
    atomic::create_dir(&lineage.archive_dir, atomic::DIR_MODE)?;
    let old_key = lineage.current_target(Kind::Privkey);
    write_archive(&lineage.archive_dir, version, files, old_key.as_deref())?;
    switch_links(lineage, version)?;
    Ok((version, write_conf(&lineage.conf_path, &conf_text).err()))
}

/// Create a brand-new lineage at `paths` with version 1.
pub(crate) fn create_new(
    name: &str,
    paths: &LineagePaths,
    files: &CertFiles,
    conf: &RenewalConf,
) -> Result<(), StoreError> {
    let live: [PathBuf; 4] = Kind::ALL.map(|k| paths.live_dir.join(format!("{}.pem", k.as_str())));
    // Render the conf first: a value configobj cannot store is refused before any file changes.
    let conf_text = conf_for_write(conf, &paths.archive_dir, &live).to_text()?;
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
    // live/NAME appears complete or not at all.
    let links: Vec<(OsString, PathBuf)> = Kind::ALL
        .iter()
        .map(|k| {
            let target = relpath(&paths.archive_dir.join(k.archive_file_name(1)), &paths.live_dir);
            (OsString::from(format!("{}.pem", k.as_str())), target)
        })
        .collect();
    if fs::symlink_metadata(&paths.live_dir).is_ok() {
        // An empty leftover directory (checked above): a rename cannot replace it portably.
        fs::remove_dir(&paths.live_dir).ctx("remove empty", &paths.live_dir)?;
    }
    replace_live_dir(&paths.live_dir, &links, true)?;

    write_conf(&paths.conf, &conf_text)
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
