//! Per-lineage failure memory that survives between runs: one small JSON file per lineage in a
//! state directory the caller chooses (e.g. `<work_dir>/renewal-state/`).
//!
//! One file per lineage rather than one index: concurrent renewals (`--jobs N`) each rewrite
//! only their own few hundred bytes, so a crash or a corrupt write loses at most one
//! lineage's memory and no lock is needed between jobs. Reading 10,000 of them is measured by
//! `tests::load_10k_lineages_is_fast`: 0.2-0.3 s in a debug build on a busy 2-core machine,
//! mostly open/read syscalls. One index file would read faster (one 4 MB parse) but every
//! save would rewrite all 10,000 entries and concurrent jobs would need a lock around it; a
//! renew run reads 10,000 certificates from the store anyway, which costs more than this.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::backoff;
use crate::decide::AriWindow;
use crate::ts;

/// If the CA sends no Retry-After with an ARI response, poll again after this (RFC 9773
/// suggests a few hours), and never wait longer than [`ARI_MAX_POLL`] whatever it says, so a
/// changed window (e.g. a mass revocation) is noticed within a day.
pub const ARI_DEFAULT_POLL: Duration = Duration::hours(6);
pub const ARI_MAX_POLL: Duration = Duration::hours(24);

const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageState {
    #[serde(default = "format_version")]
    pub version: u32,
    pub lineage: String,
    #[serde(default, with = "ts::option", skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<OffsetDateTime>,
    #[serde(default, with = "ts::option", skip_serializing_if = "Option::is_none")]
    pub last_success: Option<OffsetDateTime>,
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// No attempt before this (the backoff schedule, floored by `ca_retry_after`).
    #[serde(default, with = "ts::option", skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<OffsetDateTime>,
    /// What the CA demanded (`rateLimited` / Retry-After); even `--force-renewal` honours it.
    #[serde(default, with = "ts::option", skip_serializing_if = "Option::is_none")]
    pub ca_retry_after: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ari: Option<AriState>,
}

fn format_version() -> u32 {
    FORMAT_VERSION
}

/// The last ARI answer for the lineage's current certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AriState {
    /// Hex serial of the certificate the window is for; a renewed certificate needs a new poll.
    pub cert_serial: String,
    pub window: AriWindow,
    #[serde(with = "ts")]
    pub fetched_at: OffsetDateTime,
    /// The random instant picked inside `window` (kept so runs agree and can report it).
    #[serde(with = "ts")]
    pub chosen: OffsetDateTime,
    /// When to poll the CA again.
    #[serde(with = "ts")]
    pub next_poll: OffsetDateTime,
}

impl LineageState {
    pub fn new(lineage: impl Into<String>) -> Self {
        Self {
            version: FORMAT_VERSION,
            lineage: lineage.into(),
            last_attempt: None,
            last_success: None,
            consecutive_failures: 0,
            last_error: None,
            next_attempt: None,
            ca_retry_after: None,
            ari: None,
        }
    }

    /// A failed attempt. `ca_retry_after` is the CA's `rateLimited` / Retry-After time, if any.
    pub fn record_failure(
        &mut self,
        now: OffsetDateTime,
        error: impl Into<String>,
        ca_retry_after: Option<OffsetDateTime>,
    ) {
        self.last_attempt = Some(now);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.last_error = Some(error.into());
        self.ca_retry_after = ca_retry_after.filter(|t| *t > now);
        self.next_attempt = Some(backoff::next_attempt(
            now,
            self.consecutive_failures,
            self.ca_retry_after,
        ));
    }

    /// A successful renewal: forget failures, and the ARI window of the replaced certificate.
    pub fn record_success(&mut self, now: OffsetDateTime) {
        self.last_attempt = Some(now);
        self.last_success = Some(now);
        self.consecutive_failures = 0;
        self.last_error = None;
        self.next_attempt = None;
        self.ca_retry_after = None;
        self.ari = None;
    }

    /// The CA's ARI answer for certificate `serial`. Keeps the earlier chosen instant when the
    /// window did not move, so a lineage does not re-roll its renewal time on every poll.
    pub fn record_ari(&mut self, now: OffsetDateTime, serial: &[u8], window: AriWindow) {
        let serial_hex = hex(serial);
        let next_poll = window
            .retry_after
            .unwrap_or(now + ARI_DEFAULT_POLL)
            .min(now + ARI_MAX_POLL)
            .max(now);
        let chosen = match &self.ari {
            Some(old) if old.cert_serial == serial_hex && old.window.same_window(&window) => old.chosen,
            _ => window.chosen_instant(serial),
        };
        self.ari = Some(AriState {
            cert_serial: serial_hex,
            window,
            fetched_at: now,
            chosen,
            next_poll,
        });
    }

    /// The stored ARI answer, only if it is for certificate `serial`.
    pub fn ari_for(&self, serial: &[u8]) -> Option<&AriState> {
        self.ari.as_ref().filter(|a| a.cert_serial == hex(serial))
    }

    /// Should the CA's renewalInfo be fetched for certificate `serial` now?
    pub fn ari_poll_due(&self, now: OffsetDateTime, serial: &[u8]) -> bool {
        self.ari_for(serial).is_none_or(|a| a.next_poll <= now)
    }

    pub fn next_ari_poll(&self) -> Option<OffsetDateTime> {
        self.ari.as_ref().map(|a| a.next_poll)
    }

    /// If an attempt now would be too soon after failures, until when to wait.
    pub fn backoff_until(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let until = self.next_attempt.into_iter().chain(self.ca_retry_after).max()?;
        (until > now).then_some(until)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("renewal state {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "renewal state file {path} is unreadable ({source}); delete it to forget this lineage's \
         failure history (certificates are not affected)"
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid lineage name {0:?}: it must not be empty")]
    BadName(String),
}

/// Everything `load_all` read, and the files it had to skip (report them as warnings).
#[derive(Debug, Default)]
pub struct LoadedStates {
    pub states: BTreeMap<String, LineageState>,
    pub problems: Vec<StateError>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// Use (creating, mode 0700) `dir` for state files.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateError> {
        let dir = dir.into();
        let io = |source| StateError::Io {
            path: dir.clone(),
            source,
        };
        if !dir.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io)?;
        }
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file for a lineage: its name, with anything but `[A-Za-z0-9._-]` (and a leading
    /// dot) percent-encoded, so no lineage name can escape the directory or hide as a temp file.
    pub fn path_for(&self, lineage: &str) -> Result<PathBuf, StateError> {
        if lineage.is_empty() {
            return Err(StateError::BadName(lineage.to_string()));
        }
        let mut name = String::with_capacity(lineage.len() + 5);
        for (i, b) in lineage.bytes().enumerate() {
            let plain = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0);
            if plain {
                name.push(b as char);
            } else {
                name.push_str(&format!("%{b:02X}"));
            }
        }
        name.push_str(".json");
        Ok(self.dir.join(name))
    }

    /// The lineage's state; a fresh one if none was ever saved.
    pub fn load(&self, lineage: &str) -> Result<LineageState, StateError> {
        let path = self.path_for(lineage)?;
        match fs::read(&path) {
            Ok(bytes) => {
                let mut s: LineageState =
                    serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path, source })?;
                s.lineage = lineage.to_string();
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LineageState::new(lineage)),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Write atomically: temp file in the same directory, fsync, rename, fsync the directory.
    pub fn save(&self, state: &LineageState) -> Result<(), StateError> {
        let path = self.path_for(&state.lineage)?;
        let json = serde_json::to_vec_pretty(state).expect("state serializes");
        write_atomic(&path, &json).map_err(|source| StateError::Io { path, source })
    }

    pub fn remove(&self, lineage: &str) -> Result<(), StateError> {
        let path = self.path_for(lineage)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StateError::Io { path, source: e }),
            _ => Ok(()),
        }
    }

    /// Every saved state. A corrupt file does not stop the others from loading.
    pub fn load_all(&self) -> Result<LoadedStates, StateError> {
        let io = |source| StateError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut out = LoadedStates::default();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue; // temp files of an interrupted save, and anything not ours
            }
            let path = entry.path();
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(source) => {
                    out.problems.push(StateError::Io { path, source });
                    continue;
                }
            };
            match serde_json::from_slice::<LineageState>(&bytes) {
                Ok(s) => {
                    out.states.insert(s.lineage.clone(), s);
                }
                Err(source) => out.problems.push(StateError::Corrupt { path, source }),
            }
        }
        Ok(out)
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{file_name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn window(start: OffsetDateTime, hours: i64) -> AriWindow {
        AriWindow {
            start,
            end: start + Duration::hours(hours),
            explanation_url: None,
            retry_after: None,
        }
    }

    #[test]
    fn failures_follow_schedule_and_success_resets() {
        let t0 = datetime!(2025-05-01 12:00 UTC);
        let mut s = LineageState::new("example.com");
        s.record_failure(t0, "connection refused", None);
        assert_eq!(s.consecutive_failures, 1);
        assert_eq!(s.backoff_until(t0), Some(t0 + Duration::minutes(1)));
        assert_eq!(s.backoff_until(t0 + Duration::minutes(1)), None);
        s.record_failure(t0, "again", None);
        assert_eq!(s.next_attempt, Some(t0 + Duration::minutes(10)));
        s.record_failure(t0, "again", None);
        assert_eq!(s.next_attempt, Some(t0 + Duration::minutes(100)));
        s.record_failure(t0, "and again", None);
        assert_eq!(s.next_attempt, Some(t0 + Duration::days(1)));
        assert_eq!(s.last_error.as_deref(), Some("and again"));
        s.record_success(t0 + Duration::days(1));
        assert_eq!(s.consecutive_failures, 0);
        assert_eq!(s.backoff_until(t0 + Duration::days(1)), None);
        assert_eq!(s.last_error, None);
        assert_eq!(s.last_success, Some(t0 + Duration::days(1)));
    }

    #[test]
    fn rate_limit_pushes_next_attempt() {
        let t0 = datetime!(2025-05-01 12:00 UTC);
        let mut s = LineageState::new("a");
        s.record_failure(
            t0,
            "urn:ietf:params:acme:error:rateLimited",
            Some(t0 + Duration::hours(5)),
        );
        assert_eq!(s.backoff_until(t0), Some(t0 + Duration::hours(5)));
        assert_eq!(s.ca_retry_after, Some(t0 + Duration::hours(5)));
        // A CA time already past is not kept.
        s.record_failure(t0 + Duration::hours(6), "x", Some(t0));
        assert_eq!(s.ca_retry_after, None);
    }

    #[test]
    fn ari_chosen_instant_is_kept_until_window_moves() {
        let t0 = datetime!(2025-05-01 12:00 UTC);
        let serial = [1u8, 2, 3];
        let mut s = LineageState::new("a");
        let mut w = window(t0 + Duration::days(10), 48);
        w.retry_after = Some(t0 + Duration::hours(2));
        s.record_ari(t0, &serial, w.clone());
        let a = s.ari_for(&serial).unwrap().clone();
        assert!(a.chosen >= w.start && a.chosen <= w.end);
        assert_eq!(a.next_poll, t0 + Duration::hours(2));
        assert!(!s.ari_poll_due(t0 + Duration::hours(1), &serial));
        assert!(s.ari_poll_due(t0 + Duration::hours(2), &serial));
        assert!(s.ari_poll_due(t0, &[9]), "another certificate needs its own poll");
        assert!(s.ari_for(&[9]).is_none());

        // Same window polled again: same chosen instant; the default poll interval applies.
        w.retry_after = None;
        s.record_ari(t0 + Duration::hours(3), &serial, w.clone());
        assert_eq!(s.ari.as_ref().unwrap().chosen, a.chosen);
        assert_eq!(
            s.next_ari_poll(),
            Some(t0 + Duration::hours(3) + ARI_DEFAULT_POLL)
        );

        // A far Retry-After is capped.
        w.retry_after = Some(t0 + Duration::days(30));
        s.record_ari(t0, &serial, w);
        assert_eq!(s.next_ari_poll(), Some(t0 + ARI_MAX_POLL));

        // Window moved: a new instant inside the new window.
        let w2 = window(t0 + Duration::days(1), 2);
        s.record_ari(t0, &serial, w2.clone());
        let c = s.ari.as_ref().unwrap().chosen;
        assert!(c >= w2.start && c <= w2.end);
        s.record_success(t0);
        assert!(s.ari.is_none());
    }

    #[test]
    fn save_load_roundtrip_is_atomic_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::open(tmp.path().join("state")).unwrap();
        assert_eq!(
            fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let t0 = datetime!(2025-05-01 12:00:00.5 UTC);
        let mut s = store.load("example.com").unwrap();
        assert_eq!(s, LineageState::new("example.com"));
        s.record_failure(
            t0,
            "dns-01 for example.com: NXDOMAIN",
            Some(t0 + Duration::hours(1)),
        );
        s.record_ari(t0, &[0xab], window(t0, 5));
        store.save(&s).unwrap();
        assert_eq!(store.load("example.com").unwrap(), s);
        let path = store.path_for("example.com").unwrap();
        assert_eq!(path, store.dir().join("example.com.json"));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"2025-05-01T12:00:00.5Z\""), "{text}");
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        store.remove("example.com").unwrap();
        store.remove("example.com").unwrap();
        assert_eq!(
            store.load("example.com").unwrap(),
            LineageState::new("example.com")
        );
    }

    #[test]
    fn hostile_names_stay_inside_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::open(tmp.path()).unwrap();
        for name in [
            "../../etc/passwd",
            ".hidden",
            "a/b",
            "ünïcode.example",
            "*.example.com",
        ] {
            let p = store.path_for(name).unwrap();
            assert_eq!(p.parent().unwrap(), tmp.path(), "{name}");
            assert!(
                !p.file_name().unwrap().to_string_lossy().starts_with('.'),
                "{name}"
            );
            let mut s = LineageState::new(name);
            s.record_failure(datetime!(2025-01-01 0:00 UTC), "e", None);
            store.save(&s).unwrap();
            assert_eq!(store.load(name).unwrap(), s);
        }
        assert_eq!(store.load_all().unwrap().states.len(), 5);
        assert!(matches!(store.path_for(""), Err(StateError::BadName(_))));
    }

    #[test]
    fn corrupt_file_is_reported_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::open(tmp.path()).unwrap();
        store.save(&LineageState::new("good")).unwrap();
        fs::write(store.path_for("bad").unwrap(), b"{not json").unwrap();
        fs::write(tmp.path().join(".good.json.123.0.tmp"), b"partial").unwrap();
        let e = store.load("bad").unwrap_err();
        assert!(
            e.to_string().contains("bad.json") && e.to_string().contains("delete it"),
            "{e}"
        );
        let all = store.load_all().unwrap();
        assert_eq!(all.states.keys().collect::<Vec<_>>(), ["good"]);
        assert_eq!(all.problems.len(), 1);
    }

    #[test]
    fn load_10k_lineages_is_fast() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::open(tmp.path()).unwrap();
        let t0 = datetime!(2025-05-01 12:00 UTC);
        // Written directly (not via save) to keep 10k fsyncs out of the test's time.
        for i in 0..10_000 {
            let mut s = LineageState::new(format!("host{i}.example.com"));
            if i % 3 == 0 {
                s.record_failure(t0, "connection refused by 192.0.2.1:80", None);
            }
            s.record_ari(t0, &(i as u32).to_be_bytes(), window(t0 + Duration::days(20), 48));
            fs::write(
                store.path_for(&s.lineage).unwrap(),
                serde_json::to_vec_pretty(&s).unwrap(),
            )
            .unwrap();
        }
        let start = std::time::Instant::now();
        let all = store.load_all().unwrap();
        let elapsed = start.elapsed();
        println!("load_all of 10,000 lineage state files: {elapsed:?}");
        assert_eq!(all.states.len(), 10_000);
        assert!(all.problems.is_empty());
        assert!(elapsed < std::time::Duration::from_secs(5), "took {elapsed:?}");
    }
}
