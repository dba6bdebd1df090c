//! One error type for the store. Every message names the file involved and, where there is
//! one, what the user can do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}, line {line}: {msg} (fix or remove that line; the file is in certbot's configobj format)"
    )]
    ConfParse { path: PathBuf, line: usize, msg: String },
    #[error("{path}: cannot write value of {key:?}: {msg}")]
    ConfValue { path: PathBuf, key: String, msg: String },
    #[error("{path}, line {line}: {msg} (expected `key = value`, a bare `flag`, or a `#` comment)")]
    CliIni { path: PathBuf, line: usize, msg: String },
    #[error(
        "another certbot/certfleet instance is running ({holder} holds the lock on {path}{}); wait for it to \
         finish and retry",
        waited_for(*waited)
    )]
    Locked {
        path: PathBuf,
        /// "pid 1234: certbot renew", as well as it can be told.
        holder: String,
        waited: std::time::Duration,
    },
    #[error("no certificate named {name:?} (expected {path}); run `certbot certificates` to see the names")]
    LineageNotFound { name: String, path: PathBuf },
    #[error("certificate {name:?} is broken: {msg} (renewal conf {path})")]
    LineageBroken {
        name: String,
        path: PathBuf,
        msg: String,
    },
    #[error("invalid certificate name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("certificate name {name:?} is already in use ({path} exists); pick another --cert-name")]
    NameInUse { name: String, path: PathBuf },
    #[error("no account {id} for this server (expected directory {path}); register one first")]
    AccountNotFound { id: String, path: PathBuf },
    #[error(
        "account file {path} is unreadable: {msg}; restore it from backup or delete the account directory"
    )]
    AccountCorrupt { path: PathBuf, msg: String },
    #[error("{path}: {msg}")]
    Key { path: PathBuf, msg: String },
    #[error("{path} is {kind}, not a regular file; remove it or move it out of the way")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("invalid ACME server URL {url:?}: {msg}")]
    ServerUrl { url: String, msg: String },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

fn waited_for(d: std::time::Duration) -> String {
    // A run that did not wait (`-n`) fails within microseconds: say nothing then.
    if d < std::time::Duration::from_millis(100) {
        String::new()
    } else {
        format!("; waited {:.1}s", d.as_secs_f64())
    }
}

/// Shorthand: attach an operation and a path to an io::Result.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::io(op, path, e))
    }
}
