//! ACME accounts in certbot's layout:
//! `accounts/<netloc><path of the directory URL>/<id>/{meta.json,private_key.json,regr.json}`
//! e.g. `accounts/acme-v02.api.letsencrypt.org/directory/5736cf.../`. The id is certbot's:
//! the MD5 of the account public key's PEM, so both tools name the same key the same way.

use std::fs;
use std::path::{Path, PathBuf};

use certfleet_core::PrivateKey;
use time::OffsetDateTime;

use crate::atomic;
use crate::error::{IoContext, StoreError};
use crate::jwk;
use crate::pyjson;

/// certbot writes the key file read-only for its owner.
pub const ACCOUNT_KEY_MODE: u32 = 0o400;

/// certbot's `constants.LE_REUSE_SERVERS`: accounts of the old endpoint serve the new one.
const LE_REUSE_SERVERS: &[(&str, &str)] = &[
    (
        "acme-v02.api.letsencrypt.org/directory",
        "acme-v01.api.letsencrypt.org/directory",
    ),
    (
        "acme-staging-v02.api.letsencrypt.org/directory",
        "acme-staging.api.letsencrypt.org/directory",
    ),
];

/// `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountMeta {
    /// RFC 3339 in UTC without fraction, as pyrfc3339 writes it: `2024-05-01T12:00:00Z`.
    pub creation_dt: String,
    pub creation_host: String,
    pub register_to_eff: Option<String>,
}

/// `regr.json`: the registration resource. certbot writes `{"body": {}, "uri": "..."}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Regr {
    pub body: serde_json::Value,
    pub uri: Option<String>,
    /// Written by certbot for ACME v1 servers only; kept if present.
    pub new_authzr_uri: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Account {
    /// certbot's id ([`jwk::account_id`]).
    pub id: String,
    pub key: PrivateKey,
    pub meta: AccountMeta,
    pub regr: Regr,
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `2024-05-01T12:00:00Z`.
pub fn rfc3339_seconds(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC).format(&fmt).unwrap_or_default()
}

impl Account {
    /// A new account record for `key` registered at `account_uri`, created now on this host.
    pub fn new(key: PrivateKey, account_uri: &str, now: OffsetDateTime) -> Self {
        Account {
            id: jwk::account_id(&key),
            key,
            meta: AccountMeta {
                creation_dt: rfc3339_seconds(now),
                creation_host: hostname(),
                register_to_eff: None,
            },
            regr: Regr {
                body: serde_json::json!({}),
                uri: Some(account_uri.to_string()),
                new_authzr_uri: None,
            },
        }
    }

    /// The account URL (`kid` for JWS), if known.
    pub fn uri(&self) -> Option<&str> {
        self.regr.uri.as_deref()
    }
}

/// certbot's `server_path`: netloc + path of the server URL (Python's `urlparse`, no
/// normalisation: host case and explicit ports are kept as written).
pub fn server_path(server: &str) -> Result<String, StoreError> {
    let bad = |msg: &str| StoreError::ServerUrl {
        url: server.to_string(),
        msg: msg.to_string(),
    };
    let rest = server
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| bad("expected https://host/path"))?;
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let rest = &rest[..end];
    let (netloc, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if netloc.is_empty() {
        return Err(bad("no host in the URL"));
    }
    let joined = format!("{netloc}{path}");
    if joined.split('/').any(|c| c == "..") {
        return Err(bad("'..' in the URL path"));
    }
    Ok(joined)
}

fn corrupt(path: &Path, msg: impl Into<String>) -> StoreError {
    StoreError::AccountCorrupt {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, StoreError> {
    let text = fs::read_to_string(path).ctx("read", path)?;
    serde_json::from_str(&text).map_err(|e| corrupt(path, format!("not JSON: {e}")))
}

/// Account storage under `<config_dir>/accounts`.
#[derive(Debug, Clone)]
pub struct AccountStore {
    accounts_dir: PathBuf,
}

impl AccountStore {
    pub fn new(accounts_dir: PathBuf) -> Self {
        AccountStore { accounts_dir }
    }

    /// `accounts/<server path>`.
    pub fn dir_for_server(&self, server: &str) -> Result<PathBuf, StoreError> {
        Ok(self.accounts_dir.join(server_path(server)?))
    }

    fn dirs_to_search(&self, server: &str) -> Result<Vec<PathBuf>, StoreError> {
        let sp = server_path(server)?;
        let mut v = vec![self.accounts_dir.join(&sp)];
        if let Some((_, prev)) = LE_REUSE_SERVERS.iter().find(|(new, _)| *new == sp) {
            v.push(self.accounts_dir.join(prev));
        }
        Ok(v)
    }

    /// All loadable accounts for `server`, sorted by id. Unreadable ones are skipped with a
    /// warning, as certbot does. For Let's Encrypt v2 URLs, falls back to v1 accounts.
    pub fn list(&self, server: &str) -> Result<Vec<Account>, StoreError> {
        for dir in self.dirs_to_search(server)? {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("list", &dir, e)),
            };
            let mut ids: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect();
            ids.sort();
            let mut out = Vec::new();
            for id in ids {
                match load_dir(&dir.join(&id), &id) {
                    Ok(a) => out.push(a),
                    Err(e) => tracing::warn!("skipping account: {e}"),
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
        Ok(Vec::new())
    }

    pub fn load(&self, server: &str, id: &str) -> Result<Account, StoreError> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(StoreError::AccountNotFound {
                id: id.to_string(),
                path: self.accounts_dir.clone(),
            });
        }
        let dirs = self.dirs_to_search(server)?;
        for dir in &dirs {
            let d = dir.join(id);
            if d.is_dir() {
                return load_dir(&d, id);
            }
        }
        Err(StoreError::AccountNotFound {
            id: id.to_string(),
            path: dirs[0].join(id),
        })
    }

    /// Write (or overwrite) an account: directory 0700, `private_key.json` 0400.
    pub fn save(&self, server: &str, account: &Account) -> Result<PathBuf, StoreError> {
        let dir = self.dir_for_server(server)?.join(&account.id);
        atomic::create_dir(&self.accounts_dir, atomic::PRIVATE_DIR_MODE)?;
        atomic::create_dir(&dir, atomic::PRIVATE_DIR_MODE)?;
        let key_json = jwk::key_to_jwk_json(&account.key).map_err(|m| StoreError::Key {
            path: dir.join("private_key.json"),
            msg: m,
        })?;
        let mut meta = vec![
            ("creation_dt", pyjson::string(&account.meta.creation_dt)),
            ("creation_host", pyjson::string(&account.meta.creation_host)),
        ];
        if let Some(eff) = &account.meta.register_to_eff {
            meta.push(("register_to_eff", pyjson::string(eff)));
        }
        let mut regr = vec![("body", pyjson::value(&account.regr.body))];
        if let Some(u) = &account.regr.new_authzr_uri {
            regr.push(("new_authzr_uri", pyjson::string(u)));
        }
        regr.push((
            "uri",
            account
                .regr
                .uri
                .as_deref()
                .map(pyjson::string)
                .unwrap_or_else(|| "null".into()),
        ));
        atomic::write_file_deferred(
            &dir.join("private_key.json"),
            key_json.as_bytes(),
            ACCOUNT_KEY_MODE,
        )?;
        atomic::write_file_deferred(&dir.join("meta.json"), pyjson::object(&meta).as_bytes(), 0o644)?;
        atomic::write_file_deferred(&dir.join("regr.json"), pyjson::object(&regr).as_bytes(), 0o644)?;
        atomic::sync_dir(&dir)?;
        if let Some(parent) = dir.parent() {
            atomic::sync_dir(parent)?;
        }
        Ok(dir)
    }

    /// Delete an account directory; then the server's directory if it is left empty.
    pub fn delete(&self, server: &str, id: &str) -> Result<(), StoreError> {
        let server_dir = self.dir_for_server(server)?;
        let dir = server_dir.join(id);
        if id.is_empty() || id.contains('/') || !dir.is_dir() {
            return Err(StoreError::AccountNotFound {
                id: id.to_string(),
                path: dir,
            });
        }
        // A symlink (certbot's v1 -> v2 reuse) is unlinked along with what it points to.
        let meta = fs::symlink_metadata(&dir).ctx("stat", &dir)?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&dir).ctx("read symlink", &dir)?;
            let target = if target.is_absolute() {
                target
            } else {
                server_dir.join(target)
            };
            fs::remove_file(&dir).ctx("remove", &dir)?;
            fs::remove_dir_all(&target).ctx("remove", &target)?;
        } else {
            fs::remove_dir_all(&dir).ctx("remove", &dir)?;
        }
        if fs::read_dir(&server_dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
        {
            fs::remove_dir(&server_dir).ctx("remove", &server_dir)?;
        }
        Ok(())
    }
}

fn load_dir(dir: &Path, id: &str) -> Result<Account, StoreError> {
    let regr_path = dir.join("regr.json");
    let key_path = dir.join("private_key.json");
    let meta_path = dir.join("meta.json");
    let regr_v = read_json(&regr_path)?;
    let key_v = read_json(&key_path)?;
    let meta_v = read_json(&meta_path)?;
    account_from_json(dir, id, &regr_v, &key_v, &meta_v)
}

/// An account from the JSON of the three files of `dir` (named in errors), as [`AccountStore`]
/// reads them.
#[doc(hidden)]
pub fn account_from_json(
    dir: &Path,
    id: &str,
    regr_v: &serde_json::Value,
    key_v: &serde_json::Value,
    meta_v: &serde_json::Value,
) -> Result<Account, StoreError> {
    let key_path = dir.join("private_key.json");
    let meta_path = dir.join("meta.json");
    let key = jwk::key_from_jwk(key_v).map_err(|m| corrupt(&key_path, m))?;
    let s = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let meta = AccountMeta {
        creation_dt: s(meta_v, "creation_dt").ok_or_else(|| corrupt(&meta_path, "no creation_dt"))?,
        creation_host: s(meta_v, "creation_host").unwrap_or_default(),
        register_to_eff: s(meta_v, "register_to_eff"),
    };
    let regr = Regr {
        body: regr_v
            .get("body")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
        uri: s(regr_v, "uri"),
        new_authzr_uri: s(regr_v, "new_authzr_uri"),
    };
    let computed = jwk::account_id(&key);
    if computed != id {
        // certbot recomputes the id from the key and ignores the directory name; say so.
        tracing::debug!("account directory {id} holds key with id {computed}");
    }
    Ok(Account {
        id: computed,
        key,
        meta,
        regr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_like_urlparse() {
        assert_eq!(
            server_path("https://acme-v02.api.letsencrypt.org/directory").unwrap(),
            "acme-v02.api.letsencrypt.org/directory"
        );
        assert_eq!(
            server_path("https://127.0.0.1:14000/dir").unwrap(),
            "127.0.0.1:14000/dir"
        );
        assert_eq!(server_path("https://Host:443/a/b?x=1").unwrap(), "Host:443/a/b");
        assert!(server_path("not a url").is_err());
        assert!(server_path("https://h/../../etc").is_err());
    }

    #[test]
    fn save_list_load_delete() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let store = AccountStore::new(d.path().join("accounts"));
        let server = "https://127.0.0.1:14000/dir";
        let key = PrivateKey::generate(certfleet_core::KeySpec::EcdsaP256).unwrap();
        let acc = Account::new(
            key,
            "https://127.0.0.1:14000/my-account/1",
            OffsetDateTime::now_utc(),
        );
        let dir = store.save(server, &acc).unwrap();
        assert!(dir.ends_with(format!("127.0.0.1:14000/dir/{}", acc.id)));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("private_key.json")), 0o400);
        let listed = store.list(server).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, acc.id);
        assert_eq!(listed[0].uri(), acc.uri());
        let loaded = store.load(server, &acc.id).unwrap();
        assert_eq!(loaded.meta, acc.meta);
        assert!(store.list("https://other/dir").unwrap().is_empty());
        store.delete(server, &acc.id).unwrap();
        assert!(store.list(server).unwrap().is_empty());
        let e = store.load(server, &acc.id).unwrap_err();
        assert!(e.to_string().contains(&acc.id), "{e}");
    }
}
