//! The fleet database: certificates, hosts, assignments, CSRs, install reports, the event log,
//! renewal leases, ACME accounts, pending http-01 challenges and settings.
//!
//! Embedded SQLite by default (`DIR/fleet.db`: WAL, foreign keys, busy timeout, file mode
//! 0600), PostgreSQL when given a `postgres://` URL. Both go through sqlx's `Any` driver, so
//! every query is written once in portable SQL: timestamps are Unix seconds (`i64`), booleans
//! 0/1, JSON is TEXT, parameters are `$N`. Only the DDL differs (one migration folder per
//! backend, embedded and applied at open), plus two statements: how a write transaction begins
//! (SQLite takes the write lock up front with `BEGIN IMMEDIATE`) and how due certificates are
//! claimed (PostgreSQL skips rows other nodes are claiming with `FOR UPDATE SKIP LOCKED`).
//!
//! Every method takes the current time from the caller, so the renewal logic is tested without
//! sleeping.

/// Every column of `certificates` but the key blobs, as `certificates::cert_from_row` reads them.
macro_rules! cert_columns {
    () => {
        "id, name, identifiers, enabled, comment, key_type, challenge, custody, acme_server, \
         acme_account, profile, created_at, version, cert_pem, chain_pem, serial, not_before, \
         not_after, issuer, key_sha256, issued_at, prev_cert_pem, prev_chain_pem, prev_serial, \
         prev_not_before, prev_not_after, prev_issuer, prev_key_sha256, prev_issued_at, ari_start, \
         ari_end, ari_next_poll, ari_explanation_url, last_attempt, consecutive_failures, \
         next_attempt, next_attempt_reason, last_error, lease_owner, lease_until"
    };
}

/// [`cert_columns`] without the PEMs (empty strings where a certificate exists): what lists
/// show, a few hundred bytes a row instead of several kilobytes.
macro_rules! cert_summary_columns {
    () => {
        "id, name, identifiers, enabled, comment, key_type, challenge, custody, acme_server, \
         acme_account, profile, created_at, version, \
         CASE WHEN cert_pem IS NULL THEN NULL ELSE '' END AS cert_pem, '' AS chain_pem, serial, \
         not_before, not_after, issuer, key_sha256, issued_at, \
         CASE WHEN prev_cert_pem IS NULL THEN NULL ELSE '' END AS prev_cert_pem, '' AS prev_chain_pem, \
         prev_serial, prev_not_before, prev_not_after, prev_issuer, prev_key_sha256, prev_issued_at, \
         ari_start, ari_end, ari_next_poll, ari_explanation_url, last_attempt, consecutive_failures, \
         next_attempt, next_attempt_reason, last_error, lease_owner, lease_until"
    };
}

/// Due: enabled, its next attempt has come, and no node holds a live lease on it. The partial
/// index `certificates_due (next_attempt, id) WHERE enabled = 1` answers it in order.
macro_rules! due_where {
    () => {
        "enabled = 1 AND next_attempt <= $1 AND (lease_until IS NULL OR lease_until <= $1)"
    };
}

/// Every column of `hosts`, as `hosts::host_from_row` reads them.
macro_rules! host_columns {
    () => {
        "id, name, created_at, enrolled_at, client_cert_sha256, client_cert_serial, last_seen, agent_version"
    };
}

/// The state of a certificate, as [`Certificate::state`] decides it, plus `expiring`:
/// valid but within the last sixth of its lifetime (a renewal should have happened by then).
/// `/metrics` and the dashboard both count by it, so they always agree.
macro_rules! state_case {
    () => {
        "CASE \
           WHEN enabled = 0 THEN 'disabled' \
           WHEN lease_until IS NOT NULL AND lease_until > $1 THEN 'renewing' \
           WHEN not_after IS NOT NULL AND not_after <= $1 THEN 'expired' \
           WHEN consecutive_failures > 0 THEN 'failing' \
           WHEN not_after IS NULL THEN 'pending' \
           WHEN (not_after - $1) * 6 < (not_after - not_before) THEN 'expiring' \
           ELSE 'valid' END"
    };
}
/// (`/metrics` and the dashboard count by it.)
mod assignments;
mod certificates;
mod dashboard;
mod error;
mod hosts;
mod model;
mod notifications;
mod records;
mod stats;

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Transaction};

pub use error::{DbError, TokenRejected};
pub use model::{
    Account, Ari, Certificate, CertificateSettings, Challenge, Commit, Csr, Event, Failure, Host,
    HostCredential, IssuedCert, Lease, NewEvent, ServerKeys,
};

pub use dashboard::{
    CertPage, CertRow, DASH_STATES, HostCounts, HostRow, InstallRow, NEEDS_HUMAN, Overview,
    SILENT_AFTER_SECONDS, ServedCheck, Session, WatchTarget,
};
pub use notifications::{CertValidity, FailedInstall, FailingCert, OpenNotification, SilentHost};
pub use stats::{FleetStats, STATES, ServedStat};

use error::Context;

/// The database file's name inside the server's state directory.
pub const DB_FILE: &str = "fleet.db";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// SQLite: the write lock is taken by one connection at a time anyway; a few readers beside it.
const SQLITE_CONNECTIONS: u32 = 4;
const POSTGRES_CONNECTIONS: u32 = 10;
/// How long a SQLite writer waits for another's lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The fleet database. Cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct FleetDb {
    pool: AnyPool,
    backend: Backend,
    /// The file path, or the URL without its password, for messages.
    target: String,
}

impl FleetDb {
    /// Opens (creating if need be) and migrates the database at `target`:
    /// - `postgres://...` or `postgresql://...`: a PostgreSQL database (which must exist);
    /// - `sqlite:PATH` or a plain path: a SQLite file, created mode 0600; a path that is a
    ///   directory means `DIR/fleet.db`.
    pub async fn open(target: &str) -> Result<FleetDb, DbError> {
        sqlx::any::install_default_drivers();
        if target.starts_with("postgres://") || target.starts_with("postgresql://") {
            Self::open_postgres(target).await
        } else {
            let path = target
                .strip_prefix("sqlite://")
                .or_else(|| target.strip_prefix("sqlite:"))
                .unwrap_or(target);
            let mut path = PathBuf::from(path);
            if path.is_dir() {
                path.push(DB_FILE);
            }
            Self::open_sqlite(&path).await
        }
    }

    async fn open_postgres(url: &str) -> Result<FleetDb, DbError> {
        let target = redact(url);
        let options: AnyConnectOptions = url.parse().map_err(|e| DbError::Open {
            target: target.clone(),
            detail: format!("not a valid URL: {e}"),
        })?;
        let pool = AnyPoolOptions::new().max_connections(POSTGRES_CONNECTIONS);
        Self::connect(pool, options, Backend::Postgres, target).await
    }

    async fn open_sqlite(path: &Path) -> Result<FleetDb, DbError> {
        let target = path.display().to_string();
        create_private_file(path).map_err(|detail| DbError::Open {
            target: target.clone(),
            detail,
        })?;
        let url = format!("sqlite://{}?mode=rw", percent_encode_path(path));
        let options: AnyConnectOptions = url.parse().map_err(|e| DbError::Open {
            target: target.clone(),
            detail: format!("unusable path: {e}"),
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(SQLITE_CONNECTIONS)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // busy_timeout first: switching to WAL needs a moment of exclusive access.
                    // mmap: reads of a big database (the dashboard's and /metrics' index scans
                    // over 100,000 certificates) map pages instead of copying each one through
                    // a read() into the 2 MB page cache: 3 to 6 times faster there. Address
                    // space only; the kernel's page cache holds the data either way.
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA foreign_keys = ON; \
                         PRAGMA journal_mode = WAL; PRAGMA mmap_size = 1073741824;"
                    )))
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            });
        Self::connect(pool, options, Backend::Sqlite, target).await
    }

    /// Connects once first, so a wrong URL or a server that is down fails at once (the pool
    /// would retry until its acquire timeout), then opens the pool and migrates.
    async fn connect(
        pool: AnyPoolOptions,
        options: AnyConnectOptions,
        backend: Backend,
        target: String,
    ) -> Result<FleetDb, DbError> {
        let fail = |source| DbError::Connect {
            target: target.clone(),
            source,
        };
        let probe = options.connect().await.map_err(fail)?;
        let _ = probe.close().await;
        let pool = pool
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(fail)?;
        Self::migrate(pool, backend, target).await
    }

    async fn migrate(pool: AnyPool, backend: Backend, target: String) -> Result<FleetDb, DbError> {
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await.map_err(|source| DbError::Migrate {
            target: target.clone(),
            source,
        })?;
        Ok(FleetDb {
            pool,
            backend,
            target,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The file path or the URL (without password) it was opened from.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Closes every connection (waits for those in use).
    pub async fn close(&self) {
        self.pool.close().await
    }

    /// A write transaction. SQLite's `BEGIN IMMEDIATE` takes the write lock at once: a deferred
    /// transaction that read first could not upgrade to writing after another writer committed
    /// (SQLITE_BUSY without waiting).
    async fn begin(&self, op: impl FnOnce() -> String) -> Result<Transaction<'static, Any>, DbError> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .ctx(op)
    }
}

/// Runs a statement that must affect a row; none is [`DbError::NotFound`] (`what` `name`).
pub(crate) async fn execute_one<'e>(
    e: impl sqlx::Executor<'e, Database = Any>,
    q: sqlx::query::Query<'_, Any, sqlx::any::AnyArguments>,
    op: impl FnOnce() -> String,
    what: &'static str,
    name: &str,
) -> Result<(), DbError> {
    let done = q.execute(e).await.ctx(op)?;
    if done.rows_affected() == 0 {
        return Err(DbError::not_found(what, name));
    }
    Ok(())
}

/// Creates the SQLite file with mode 0600 before SQLite does (it would use 0644), and tightens
/// an existing one that others can read. SQLite gives its `-wal` and `-shm` files the mode of
/// the database file.
fn create_private_file(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(format!("directory {} does not exist", dir.display()));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "fleet database was readable by others; setting mode 0600");
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot set mode 0600: {e}"))?;
    }
    Ok(())
}

/// A path as the path part of a `sqlite://` URL (sqlx percent-decodes it).
fn percent_encode_path(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_encoded_for_sqlx() {
        assert_eq!(
            percent_encode_path(Path::new("/var/lib/cf/fleet.db")),
            "/var/lib/cf/fleet.db"
        );
        assert_eq!(
            percent_encode_path(Path::new("/tmp/a b?#%.db")),
            "/tmp/a%20b%3F%23%25.db"
        );
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://fleet:s3cret@db.example:5432/fleet"),
            "postgres://fleet:***@db.example:5432/fleet"
        );
        assert_eq!(redact("postgres://fleet@db/fleet"), "postgres://fleet@db/fleet");
    }
}
