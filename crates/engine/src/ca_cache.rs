//! What each ACME server's directory said about ARI (`renewalInfo`), remembered for a day so a
//! `renew` run with nothing due never touches the network just to learn that a CA (Pebble,
//! most private CAs) has no ARI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// How long a directory answer is trusted. A CA that starts offering ARI is noticed within a
/// day; until then its lineages use the lifetime rule, which is safe.
pub const TTL: Duration = Duration::hours(24);

const FILE: &str = "ca-directories.cache";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    renewal_info: bool,
    /// Unix seconds.
    checked: i64,
}

#[derive(Debug, Default)]
pub struct CaCache {
    path: Option<PathBuf>,
    entries: BTreeMap<String, Entry>,
    dirty: bool,
}

impl CaCache {
    /// Load from the renewal state directory; a missing or unreadable file is an empty cache.
    pub fn load(state_dir: &Path) -> Self {
        let path = state_dir.join(FILE);
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            path: Some(path),
            entries,
            dirty: false,
        }
    }

    /// Whether `server` has ARI, if we know it from the last day.
    pub fn has_ari(&self, server: &str, now: OffsetDateTime) -> Option<bool> {
        let e = self.entries.get(server)?;
        let age = now.unix_timestamp() - e.checked;
        (0..TTL.whole_seconds()).contains(&age).then_some(e.renewal_info)
    }

    pub fn record(&mut self, server: &str, renewal_info: bool, now: OffsetDateTime) {
        self.entries.insert(
            server.to_string(),
            Entry {
                renewal_info,
                checked: now.unix_timestamp(),
            },
        );
        self.dirty = true;
    }

    /// Write if changed (atomically; the cache is only an optimisation, so errors are logged).
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        if !self.dirty {
            return;
        }
        let json = serde_json::to_vec_pretty(&self.entries).expect("cache serializes");
        if let Err(e) = certfleet_store::atomic::write_file(path, &json, 0o600) {
            tracing::warn!("could not save {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_for_a_day() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let mut c = CaCache::load(tmp.path());
        assert_eq!(c.has_ari("https://ca/dir", now), None);
        c.record("https://ca/dir", false, now);
        c.save();
        let c = CaCache::load(tmp.path());
        assert_eq!(c.has_ari("https://ca/dir", now), Some(false));
        assert_eq!(c.has_ari("https://ca/dir", now + TTL), None);
    }
}
