//! What the web dashboard and the served-certificate watch read and write: login sessions,
//! the overview's counts, one page of the certificate list, a host's installs and history,
//! the endpoints to watch and what the watch found there.
//!
//! Every page is a handful of queries whose cost does not grow with the fleet: counts come
//! from the narrow `certificates_metrics` index, lists are pages in name order
//! (`name > $after ... LIMIT n`, the name index), and what belongs to a page is read by the
//! ids on it.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::Context;
use super::{DbError, FleetDb};
use crate::proto::UnixTime;

/// The columns a list row needs (no PEMs, no keys).
macro_rules! dash_row_columns {
    () => {
        "id, name, identifiers, enabled, issuer, serial, not_before, not_after, next_attempt, \
         next_attempt_reason, consecutive_failures, last_error, "
    };
}

/// Every state the dashboard shows, in the overview's order.
pub const DASH_STATES: [&str; 7] = [
    "valid", "renewing", "failing", "expiring", "expired", "pending", "disabled",
];

/// States that need a human (listed first on the overview).
pub const NEEDS_HUMAN: [&str; 3] = ["expired", "failing", "expiring"];

/// A host that has not checked in for this long is "silent".
pub const SILENT_AFTER_SECONDS: i64 = 24 * 3600;

/// A dashboard login session (the row of a hashed cookie value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub csrf: String,
    pub expires_at: UnixTime,
}

/// One certificate as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    pub id: i64,
    pub name: String,
    pub identifiers: Vec<String>,
    pub enabled: bool,
    /// One of [`DASH_STATES`].
    pub state: String,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    pub not_before: Option<UnixTime>,
    pub not_after: Option<UnixTime>,
    pub next_attempt: Option<UnixTime>,
    pub next_attempt_reason: Option<String>,
    pub consecutive_failures: i64,
    pub last_error: Option<String>,
}

/// What one host reported about one certificate (or `state: None`: assigned, no report yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallRow {
    pub certificate: String,
    pub host: String,
    pub state: Option<String>,
    pub installed_serial: Option<String>,
    pub served_serial: Option<String>,
    pub endpoint: Option<String>,
    pub error: Option<String>,
    pub reported_at: Option<UnixTime>,
    /// The certificate's current serial, to tell "in sync" from "behind".
    pub current_serial: Option<String>,
}

impl InstallRow {
    /// Installed the certificate's current serial (serials compare without case or leading zeros).
    pub fn in_sync(&self) -> bool {
        let norm = |s: &str| s.trim_start_matches('0').to_ascii_lowercase();
        matches!(self.state.as_deref(), Some("verified" | "installed"))
            && match (&self.installed_serial, &self.current_serial) {
                (Some(a), Some(b)) => norm(a) == norm(b),
                _ => false,
            }
    }
}

/// What the watch last found on one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedCheck {
    pub certificate: String,
    pub endpoint: String,
    /// `admin` or `host:NAME`: who named the endpoint.
    pub source: String,
    /// `ok`, `incomplete-chain`, `untrusted`, `stale`, `mismatch`, `expired`, `unreachable`.
    pub state: String,
    /// Plain words: what was served and what to do.
    pub detail: String,
    pub leaf_sha256: Option<String>,
    pub served_serial: Option<String>,
    pub served_not_after: Option<UnixTime>,
    pub chain_len: i64,
    pub checked_at: UnixTime,
}

/// One endpoint the watch checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchTarget {
    pub certificate_id: i64,
    pub certificate: String,
    pub identifiers: Vec<String>,
    pub endpoint: String,
    pub sni: Option<String>,
    pub source: String,
    /// The newest issued certificate and the one before it (PEM).
    pub cert_pem: String,
    pub prev_cert_pem: Option<String>,
}

/// Host counts for the overview.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCounts {
    pub in_sync: i64,
    pub out_of_sync: i64,
    pub silent: i64,
    pub never: i64,
}

/// The overview page's data.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    /// `(state, count)` for every state of [`DASH_STATES`].
    pub by_state: Vec<(&'static str, i64)>,
    pub hosts: HostCounts,
    /// `(state, count)` of the watch's findings.
    pub served: Vec<(String, i64)>,
    /// Certificates that need a human, worst first (at most the limit asked for).
    pub needs_human: Vec<CertRow>,
    /// Endpoints not served right, worst first.
    pub served_problems: Vec<ServedCheck>,
}

/// One page of the certificate list.
#[derive(Debug, Clone, Default)]
pub struct CertPage {
    pub rows: Vec<CertRow>,
    /// Give as `after` for the next page; `None`: this is the last.
    pub next_after: Option<String>,
    pub installs: HashMap<String, Vec<InstallRow>>,
    pub served: HashMap<String, Vec<ServedCheck>>,
}

/// A host as its page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    pub name: String,
    pub created_at: UnixTime,
    pub enrolled_at: Option<UnixTime>,
    pub last_seen: Option<UnixTime>,
    pub agent_version: Option<String>,
    pub assigned: i64,
    /// Enabled, issued certificates assigned to it that it has not installed at their
    /// current serial.
    pub behind: i64,
    pub failures: i64,
}

fn cert_row(r: &AnyRow) -> Result<CertRow, sqlx::Error> {
    let name: String = r.try_get("name")?;
    let ids: String = r.try_get("identifiers")?;
    let enabled: i64 = r.try_get("enabled")?;
    Ok(CertRow {
        id: r.try_get("id")?,
        identifiers: serde_json::from_str(&ids).unwrap_or_else(|_| vec![ids.clone()]),
        name,
        enabled: enabled != 0,
        state: r.try_get("state")?,
        issuer: r.try_get("issuer")?,
        serial: r.try_get("serial")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        next_attempt: r.try_get("next_attempt")?,
        next_attempt_reason: r.try_get("next_attempt_reason")?,
        consecutive_failures: r.try_get("consecutive_failures")?,
        last_error: r.try_get("last_error")?,
    })
}

fn install_row(r: &AnyRow) -> Result<InstallRow, sqlx::Error> {
    Ok(InstallRow {
        certificate: r.try_get("certificate")?,
        host: r.try_get("host")?,
        state: r.try_get("state")?,
        installed_serial: r.try_get("installed_serial")?,
        served_serial: r.try_get("served_serial")?,
        endpoint: r.try_get("endpoint")?,
        error: r.try_get("error")?,
        reported_at: r.try_get("reported_at")?,
        current_serial: r.try_get("current_serial")?,
    })
}

fn served_row(r: &AnyRow) -> Result<ServedCheck, sqlx::Error> {
    Ok(ServedCheck {
        certificate: r.try_get("certificate")?,
        endpoint: r.try_get("endpoint")?,
        source: r.try_get("source")?,
        state: r.try_get("state")?,
        detail: r.try_get("detail")?,
        leaf_sha256: r.try_get("leaf_sha256")?,
        served_serial: r.try_get("served_serial")?,
        served_not_after: r.try_get("served_not_after")?,
        chain_len: r.try_get("chain_len")?,
        checked_at: r.try_get("checked_at")?,
    })
}

const INSTALL_SELECT: &str = "SELECT c.name AS certificate, h.name AS host, r.state, r.installed_serial, \
     r.served_serial, r.endpoint, r.error, r.reported_at, c.serial AS current_serial \
     FROM assignments a JOIN certificates c ON c.id = a.certificate_id JOIN hosts h ON h.id = a.host_id \
     LEFT JOIN install_reports r ON r.certificate_id = a.certificate_id AND r.host_id = a.host_id";

/// The assignments whose host has not installed the certificate's current serial (enabled,
/// issued certificates only). The certificates are walked through the narrow
/// `certificates_metrics` index (`CROSS JOIN` keeps them the outer loop in SQLite, and
/// `enabled <> 0` keeps SQLite off the partial `certificates_due` index), so no row with its
/// PEMs is read; assignments and reports are found by their keys. Installed serials are the
/// server's own strings (the agent reports the serial it was delivered), so they compare as is.
const BEHIND_FROM: &str = "FROM certificates c CROSS JOIN assignments a \
     LEFT JOIN install_reports r ON r.certificate_id = a.certificate_id AND r.host_id = a.host_id \
     WHERE a.certificate_id = c.id AND c.enabled <> 0 AND c.serial IS NOT NULL \
     AND (r.state IS NULL OR r.state NOT IN ('verified', 'installed') OR r.installed_serial IS NULL \
     OR r.installed_serial <> c.serial)";

const SERVED_SELECT: &str = "SELECT c.name AS certificate, s.endpoint, s.source, s.state, s.detail, \
     s.leaf_sha256, s.served_serial, s.served_not_after, s.chain_len, s.checked_at \
     FROM served_checks s JOIN certificates c ON c.id = s.certificate_id";

/// `$from, $from+1, ...` for `n` ids.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `%text%` for LIKE, with LIKE's own characters taken literally (ESCAPE '\').
fn like_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch.to_ascii_lowercase());
    }
    p.push('%');
    p
}

impl FleetDb {
    // ---- sessions ----

    /// Stores a new session (its cookie value hashed) and drops expired ones.
    pub async fn create_session(
        &self,
        id_hash: &str,
        csrf: &str,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<(), DbError> {
        let op = || "storing a dashboard session".to_owned();
        sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .ctx(op)?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (id_hash, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id_hash)
        .bind(csrf)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .ctx(op)?;
        Ok(())
    }

    /// The unexpired session with this hashed cookie value.
    pub async fn session(&self, id_hash: &str, now: UnixTime) -> Result<Option<Session>, DbError> {
        let op = || "reading a dashboard session".to_owned();
        let row = sqlx::query(
            "SELECT csrf, expires_at FROM dashboard_sessions WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .ctx(op)?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(Session {
            csrf: r.try_get("csrf").ctx(op)?,
            expires_at: r.try_get("expires_at").ctx(op)?,
        }))
    }

    /// Logs a session out; `true` if it existed.
    pub async fn delete_session(&self, id_hash: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .ctx(|| "removing a dashboard session".to_owned())?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends every session (a new dashboard password was set).
    pub async fn delete_all_sessions(&self) -> Result<u64, DbError> {
        let done = sqlx::query("DELETE FROM dashboard_sessions")
            .execute(&self.pool)
            .await
            .ctx(|| "removing dashboard sessions".to_owned())?;
        Ok(done.rows_affected())
    }

    // ---- pages ----

    /// The overview at `now`: counts, and the first `limit` certificates and endpoints that
    /// need a human.
    pub async fn overview(&self, now: UnixTime, limit: u32) -> Result<Overview, DbError> {
        let op = || "reading the dashboard overview".to_owned();
        let mut conn = self.pool.acquire().await.ctx(op)?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            state_case!(),
            " AS state, COUNT(*) AS n FROM certificates GROUP BY 1"
        ))
        .bind(now)
        .fetch_all(&mut *conn)
        .await
        .ctx(op)?;
        let mut by_state: Vec<(&'static str, i64)> = DASH_STATES.iter().map(|s| (*s, 0)).collect();
        for r in &rows {
            let state: String = r.try_get("state").ctx(op)?;
            let n: i64 = r.try_get("n").ctx(op)?;
            if let Some(slot) = by_state.iter_mut().find(|(s, _)| *s == state) {
                slot.1 = n;
            }
        }

        // Expired first, then failing, then expiring; soonest expiry first within each. The
        // inner query reads only columns of the `certificates_metrics` index (and the rowid),
        // so choosing the rows never reads the PEMs; only the chosen rows are read whole.
        // `enabled <> 0`, not `= 1`: SQLite would otherwise walk the partial index
        // `certificates_due` and read every row for the other columns.
        let needs = sqlx::query(concat!(
            "SELECT ",
            dash_row_columns!(),
            state_case!(),
            " AS state FROM certificates WHERE id IN (SELECT id FROM certificates \
             WHERE enabled <> 0 AND (lease_until IS NULL OR lease_until <= $1) AND (consecutive_failures > 0 OR \
             (not_after IS NOT NULL AND (not_after - $1) * 6 < (not_after - not_before))) \
             ORDER BY CASE WHEN not_after <= $1 THEN 0 WHEN consecutive_failures > 0 THEN 1 ELSE 2 END, \
             not_after, name LIMIT $2) \
             ORDER BY CASE WHEN not_after <= $1 THEN 0 WHEN consecutive_failures > 0 THEN 1 ELSE 2 END, not_after, name"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .ctx(op)?;
        let needs_human = needs.iter().map(cert_row).collect::<Result<_, _>>().ctx(op)?;

        // A host is in sync when every enabled, issued certificate assigned to it is installed
        // at its current serial; silent when it has not checked in for a day; never: not
        // enrolled yet. One pass over every assignment (see [`BEHIND_FROM`]).
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT a.host_id {BEHIND_FROM}"
        )))
        .fetch_all(&mut *conn)
        .await
        .ctx(op)?;
        let behind: std::collections::HashSet<i64> = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, sqlx::Error>>()
            .ctx(op)?;
        let hosts = sqlx::query("SELECT id, last_seen FROM hosts")
            .fetch_all(&mut *conn)
            .await
            .ctx(op)?;
        let mut counts = HostCounts::default();
        for r in &hosts {
            let id: i64 = r.try_get("id").ctx(op)?;
            let last_seen: Option<i64> = r.try_get("last_seen").ctx(op)?;
            match last_seen {
                None => counts.never += 1,
                Some(t) if now - t > SILENT_AFTER_SECONDS => counts.silent += 1,
                Some(_) if behind.contains(&id) => counts.out_of_sync += 1,
                Some(_) => counts.in_sync += 1,
            }
        }

        let rows =
            sqlx::query("SELECT state, COUNT(*) AS n FROM served_checks GROUP BY state ORDER BY state")
                .fetch_all(&mut *conn)
                .await
                .ctx(op)?;
        let served = rows
            .iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .ctx(op)?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SERVED_SELECT} WHERE s.state <> 'ok' ORDER BY s.served_not_after, c.name, s.endpoint LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .ctx(op)?;
        let served_problems = rows.iter().map(served_row).collect::<Result<_, _>>().ctx(op)?;
        Ok(Overview {
            by_state,
            hosts: counts,
            served,
            needs_human,
            served_problems,
        })
    }

    /// One page of certificates in name order after `after`: those whose name or names
    /// contain `search` (case-insensitive), in `state` (one of [`DASH_STATES`]) if given.
    pub async fn certificate_page(
        &self,
        now: UnixTime,
        search: Option<&str>,
        state: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<CertPage, DbError> {
        let op = || "listing certificates for the dashboard".to_owned();
        let mut conn = self.pool.acquire().await.ctx(op)?;
        // Rows are chosen by the inner query from the name order and the narrow
        // `certificates_metrics` index (plus `identifiers` for a search), then only the page's
        // rows are read whole.
        let mut conds = Vec::new();
        // $1 now, $2 limit + 1, then the optional ones in this order.
        let mut n = 2;
        if after.is_some() {
            n += 1;
            conds.push(format!("name > ${n}"));
        }
        if search.is_some() {
            n += 1;
            conds.push(format!(
                "(lower(name) LIKE ${n} ESCAPE '\\' OR lower(identifiers) LIKE ${n} ESCAPE '\\')"
            ));
        }
        if state.is_some() {
            n += 1;
            conds.push(format!("{} = ${n}", state_case!()));
        }
        let filter = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let sql = format!(
            concat!(
                "SELECT ",
                dash_row_columns!(),
                state_case!(),
                " AS state FROM certificates WHERE id IN \
                 (SELECT id FROM certificates {} ORDER BY name LIMIT $2) ORDER BY name"
            ),
            filter
        );
        let pattern = search.map(like_pattern);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::from(limit) + 1);
        if let Some(a) = after {
            q = q.bind(a);
        }
        if let Some(p) = &pattern {
            q = q.bind(p.as_str());
        }
        if let Some(s) = state {
            q = q.bind(s);
        }
        let rows = q.fetch_all(&mut *conn).await.ctx(op)?;
        let mut rows: Vec<CertRow> = rows.iter().map(cert_row).collect::<Result<_, _>>().ctx(op)?;
        let next_after = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.name.clone())
        } else {
            None
        };
        let mut page = CertPage {
            next_after,
            ..CertPage::default()
        };
        if !rows.is_empty() {
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let sql = format!(
                "{INSTALL_SELECT} WHERE a.certificate_id IN ({}) ORDER BY h.name",
                placeholders(1, ids.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in &ids {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&mut *conn).await.ctx(op)? {
                let i = install_row(&r).ctx(op)?;
                page.installs.entry(i.certificate.clone()).or_default().push(i);
            }
            let sql = format!(
                "{SERVED_SELECT} WHERE s.certificate_id IN ({}) ORDER BY s.endpoint",
                placeholders(1, ids.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in &ids {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&mut *conn).await.ctx(op)? {
                let s = served_row(&r).ctx(op)?;
                page.served.entry(s.certificate.clone()).or_default().push(s);
            }
        }
        page.rows = rows;
        Ok(page)
    }

    /// One certificate as a list row (state at `now`).
    pub async fn certificate_row(&self, name: &str, now: UnixTime) -> Result<CertRow, DbError> {
        let op = || format!("reading certificate {name:?}");
        let row = sqlx::query(concat!(
            "SELECT ",
            dash_row_columns!(),
            state_case!(),
            " AS state FROM certificates WHERE name = $2"
        ))
        .bind(now)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .ctx(op)?;
        match row {
            Some(r) => cert_row(&r).ctx(op),
            None => Err(DbError::not_found("certificate", name)),
        }
    }

    /// The install reports of one certificate (`host: None`) or of one host (`cert: None`),
    /// for every assignment.
    pub async fn install_rows(
        &self,
        cert: Option<&str>,
        host: Option<&str>,
    ) -> Result<Vec<InstallRow>, DbError> {
        let op = || "reading install reports".to_owned();
        let (sql, key) = match (cert, host) {
            (Some(c), _) => (format!("{INSTALL_SELECT} WHERE c.name = $1 ORDER BY h.name"), c),
            (None, Some(h)) => (format!("{INSTALL_SELECT} WHERE h.name = $1 ORDER BY c.name"), h),
            (None, None) => return Ok(Vec::new()),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .ctx(op)?;
        rows.iter().map(install_row).collect::<Result<_, _>>().ctx(op)
    }

    /// What the watch found for one certificate.
    pub async fn served_checks(&self, cert: &str) -> Result<Vec<ServedCheck>, DbError> {
        let op = || format!("reading the served checks of {cert:?}");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SERVED_SELECT} WHERE c.name = $1 ORDER BY s.endpoint"
        )))
        .bind(cert)
        .fetch_all(&self.pool)
        .await
        .ctx(op)?;
        rows.iter().map(served_row).collect::<Result<_, _>>().ctx(op)
    }

    /// Every host with its counts (three grouped passes, none reading a certificate's PEMs).
    pub async fn host_rows(&self) -> Result<Vec<HostRow>, DbError> {
        let op = || "listing hosts for the dashboard".to_owned();
        let mut conn = self.pool.acquire().await.ctx(op)?;
        let mut counts: HashMap<i64, (i64, i64, i64)> = HashMap::new();
        let rows = sqlx::query("SELECT host_id, COUNT(*) FROM assignments GROUP BY host_id")
            .fetch_all(&mut *conn)
            .await
            .ctx(op)?;
        for r in rows {
            counts.entry(r.try_get(0).ctx(op)?).or_default().0 = r.try_get(1).ctx(op)?;
        }
        // One row per assignment behind / per failed report, counted here: a GROUP BY would
        // make SQLite walk the host indexes and look up every row instead of one covering scan.
        for (i, sql) in [
            format!("SELECT a.host_id {BEHIND_FROM}"),
            "SELECT host_id FROM install_reports WHERE state IN ('failed', 'rolled-back', 'config-test-failed')"
                .to_string(),
        ]
        .into_iter()
        .enumerate()
        {
            for r in sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut *conn)
                .await
                .ctx(op)?
            {
                let e = counts.entry(r.try_get(0).ctx(op)?).or_default();
                if i == 0 {
                    e.1 += 1;
                } else {
                    e.2 += 1;
                }
            }
        }
        let rows = sqlx::query(
            "SELECT id, name, created_at, enrolled_at, last_seen, agent_version FROM hosts ORDER BY name",
        )
        .fetch_all(&mut *conn)
        .await
        .ctx(op)?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get("id")?;
                let (assigned, behind, failures) = counts.get(&id).copied().unwrap_or_default();
                Ok(HostRow {
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    enrolled_at: r.try_get("enrolled_at")?,
                    last_seen: r.try_get("last_seen")?,
                    agent_version: r.try_get("agent_version")?,
                    assigned,
                    behind,
                    failures,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .ctx(op)
    }

    /// The newest `limit` events about one host, newest first.
    pub async fn host_events(&self, host: &str, limit: u32) -> Result<Vec<super::Event>, DbError> {
        let op = || format!("reading the events of host {host:?}");
        let rows = sqlx::query(
            "SELECT id, at, certificate, host, kind, actor, detail FROM events WHERE host = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(host)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .ctx(op)?;
        rows.iter()
            .map(|r| {
                Ok(super::Event {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    certificate: r.try_get("certificate")?,
                    host: r.try_get("host")?,
                    kind: r.try_get("kind")?,
                    actor: r.try_get("actor")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .ctx(op)
    }

    // ---- the served-certificate watch ----

    /// Adds an endpoint (`HOST:PORT`) to watch for a certificate; `false` if it was there.
    pub async fn add_watch_endpoint(
        &self,
        cert: &str,
        endpoint: &str,
        sni: Option<&str>,
        now: UnixTime,
    ) -> Result<bool, DbError> {
        let op = || format!("adding endpoint {endpoint} to watch for {cert:?}");
        let mut conn = self.pool.acquire().await.ctx(op)?;
        let id = super::certificates::cert_id(&mut *conn, cert).await?;
        let done = sqlx::query(
            "INSERT INTO watch_endpoints (certificate_id, endpoint, sni, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (certificate_id, endpoint) DO NOTHING",
        )
        .bind(id)
        .bind(endpoint)
        .bind(sni)
        .bind(now)
        .execute(&mut *conn)
        .await
        .ctx(op)?;
        Ok(done.rows_affected() > 0)
    }

    /// Stops watching an endpoint (and forgets what was found there); `false` if it was not watched.
    pub async fn remove_watch_endpoint(&self, cert: &str, endpoint: &str) -> Result<bool, DbError> {
        let op = || format!("removing watched endpoint {endpoint} of {cert:?}");
        let mut conn = self.pool.acquire().await.ctx(op)?;
        let id = super::certificates::cert_id(&mut *conn, cert).await?;
        let done = sqlx::query("DELETE FROM watch_endpoints WHERE certificate_id = $1 AND endpoint = $2")
            .bind(id)
            .bind(endpoint)
            .execute(&mut *conn)
            .await
            .ctx(op)?;
        sqlx::query(
            "DELETE FROM served_checks WHERE certificate_id = $1 AND endpoint = $2 AND source = 'admin'",
        )
        .bind(id)
        .bind(endpoint)
        .execute(&mut *conn)
        .await
        .ctx(op)?;
        Ok(done.rows_affected() > 0)
    }

    /// Every endpoint to watch: those admins added and those assigned hosts verify against,
    /// for enabled, issued certificates (an admin's entry wins over a host's for the same one).
    pub async fn watch_targets(&self) -> Result<Vec<WatchTarget>, DbError> {
        let op = || "listing the endpoints to watch".to_owned();
        let rows = sqlx::query(
            "SELECT c.id, c.name, c.identifiers, c.cert_pem, c.prev_cert_pem, w.endpoint, w.sni, 'admin' AS source \
             FROM watch_endpoints w JOIN certificates c ON c.id = w.certificate_id \
             WHERE c.enabled = 1 AND c.cert_pem IS NOT NULL \
             UNION ALL \
             SELECT c.id, c.name, c.identifiers, c.cert_pem, c.prev_cert_pem, r.endpoint, NULL AS sni, \
             'host:' || h.name AS source \
             FROM install_reports r JOIN assignments a ON a.certificate_id = r.certificate_id AND a.host_id = r.host_id \
             JOIN certificates c ON c.id = r.certificate_id JOIN hosts h ON h.id = r.host_id \
             WHERE c.enabled = 1 AND c.cert_pem IS NOT NULL AND r.endpoint IS NOT NULL AND r.endpoint <> '' \
             AND NOT EXISTS (SELECT 1 FROM watch_endpoints w WHERE w.certificate_id = c.id AND w.endpoint = r.endpoint)",
        )
        .fetch_all(&self.pool)
        .await
        .ctx(op)?;
        let mut out: Vec<WatchTarget> = Vec::with_capacity(rows.len());
        for r in &rows {
            let ids: String = r.try_get("identifiers").ctx(op)?;
            let t = WatchTarget {
                certificate_id: r.try_get("id").ctx(op)?,
                certificate: r.try_get("name").ctx(op)?,
                identifiers: serde_json::from_str(&ids).unwrap_or_default(),
                endpoint: r.try_get("endpoint").ctx(op)?,
                sni: r.try_get("sni").ctx(op)?,
                source: r.try_get("source").ctx(op)?,
                cert_pem: r.try_get("cert_pem").ctx(op)?,
                prev_cert_pem: r.try_get("prev_cert_pem").ctx(op)?,
            };
            // Two hosts may verify against the same endpoint: check it once.
            if !out
                .iter()
                .any(|o| o.certificate_id == t.certificate_id && o.endpoint == t.endpoint)
            {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Replaces the watch's findings with this round's, in one transaction (so endpoints no
    /// longer watched drop out, and readers never see half a round).
    pub async fn put_served_checks(&self, checks: &[(i64, ServedCheck)]) -> Result<(), DbError> {
        let op = || "storing the served-certificate checks".to_owned();
        let mut tx = self.begin(op).await?;
        sqlx::query("DELETE FROM served_checks")
            .execute(&mut *tx)
            .await
            .ctx(op)?;
        for (cert_id, c) in checks {
            sqlx::query(
                "INSERT INTO served_checks (certificate_id, endpoint, source, state, detail, leaf_sha256, served_serial, \
                 served_not_after, chain_len, checked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (certificate_id, endpoint) DO UPDATE SET source = excluded.source, state = excluded.state, \
                 detail = excluded.detail, leaf_sha256 = excluded.leaf_sha256, served_serial = excluded.served_serial, \
                 served_not_after = excluded.served_not_after, chain_len = excluded.chain_len, checked_at = excluded.checked_at",
            )
            .bind(*cert_id)
            .bind(c.endpoint.as_str())
            .bind(c.source.as_str())
            .bind(c.state.as_str())
            .bind(c.detail.as_str())
            .bind(c.leaf_sha256.as_deref())
            .bind(c.served_serial.as_deref())
            .bind(c.served_not_after)
            .bind(c.chain_len)
            .bind(c.checked_at)
            .execute(&mut *tx)
            .await
            .ctx(op)?;
        }
        tx.commit().await.ctx(op)
    }

    /// Every finding of the watch, by certificate and endpoint (for `/metrics`).
    pub async fn all_served_checks(&self) -> Result<Vec<ServedCheck>, DbError> {
        let op = || "reading the served-certificate checks".to_owned();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SERVED_SELECT} ORDER BY c.name, s.endpoint"
        )))
        .fetch_all(&self.pool)
        .await
        .ctx(op)?;
        rows.iter().map(served_row).collect::<Result<_, _>>().ctx(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_pattern("Web_1%"), "%web\\_1\\%%");
        assert_eq!(placeholders(3, 2), "$3, $4");
    }
}
