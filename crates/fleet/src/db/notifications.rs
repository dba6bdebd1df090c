//! What the alert watch reads (certificates failing, expiring or expired, failed installs,
//! silent hosts) and its de-duplication table `notifications` (one row per open cause).
//!
//! Every state change of `notifications` is a single statement whose affected-row count says
//! whether this caller made it, so nodes sharing a PostgreSQL database never send an alert twice.

use sqlx::Row;

use super::error::Context;
use super::{DbError, FleetDb};
use crate::proto::UnixTime;

/// A certificate whose last renewals failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingCert {
    pub name: String,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub acme_server: Option<String>,
}

/// A certificate's current validity (for "expiring" and "expired").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertValidity {
    pub name: String,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    pub next_attempt_reason: Option<String>,
}

/// A host's last report for a certificate said install, verify or config test failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedInstall {
    pub certificate: String,
    pub host: String,
    pub state: String,
    pub error: Option<String>,
    pub reported_at: UnixTime,
}

/// An enrolled host not heard from since `last_seen` (its enrollment when it never checked in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentHost {
    pub name: String,
    pub last_seen: UnixTime,
}

/// An open alert cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenNotification {
    pub subject: String,
    pub cause: String,
    pub detail: String,
    pub urgent: bool,
    pub opened_at: UnixTime,
    /// `None`: not sent yet (waiting for the digest).
    pub last_sent_at: Option<UnixTime>,
}

impl FleetDb {
    /// Enabled certificates with at least `min_failures` failed attempts in a row.
    pub async fn failing_certificates(&self, min_failures: u32) -> Result<Vec<FailingCert>, DbError> {
        let op = || "finding failing certificates".to_owned();
        let rows = sqlx::query(
            "SELECT name, consecutive_failures, last_error, acme_server FROM certificates \
             WHERE enabled = 1 AND consecutive_failures >= $1 ORDER BY name",
        )
        .bind(i64::from(min_failures))
        .fetch_all(&self.pool)
        .await
        .ctx(op)?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get("consecutive_failures")?;
                Ok(FailingCert {
                    name: r.try_get("name")?,
                    consecutive_failures: u32::try_from(n).unwrap_or(u32::MAX),
                    last_error: r.try_get("last_error")?,
                    acme_server: r.try_get("acme_server")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .ctx(op)
    }

    /// Enabled certificates whose current certificate has expired at `now` or has less than a
    /// sixth of its lifetime left.
    pub async fn expiring_certificates(&self, now: UnixTime) -> Result<Vec<CertValidity>, DbError> {
        let op = || "finding expiring certificates".to_owned();
        let rows = sqlx::query(
            "SELECT name, not_before, not_after, next_attempt_reason FROM certificates \
             WHERE enabled = 1 AND not_after IS NOT NULL AND not_before IS NOT NULL \
             AND (not_after <= $1 OR (not_after - $1) * 6 < (not_after - not_before)) ORDER BY name",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .ctx(op)?;
        rows.iter()
            .map(|r| {
                Ok(CertValidity {
                    name: r.try_get("name")?,
                    not_before: r.try_get("not_before")?,
                    not_after: r.try_get("not_after")?,
                    next_attempt_reason: r.try_get("next_attempt_reason")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .ctx(op)
    }

    /// Last reports of a failed install, verification or config test (or a rollback), for
    /// certificates still assigned to the reporting host.
    pub async fn failed_installs(&self) -> Result<Vec<FailedInstall>, DbError> {
        let op = || "finding failed installs".to_owned();
        let rows = sqlx::query(
            "SELECT c.name AS certificate, h.name AS host, r.state, r.error, r.reported_at \
             FROM install_reports r JOIN certificates c ON c.id = r.certificate_id \
             JOIN hosts h ON h.id = r.host_id \
             JOIN assignments a ON a.certificate_id = r.certificate_id AND a.host_id = r.host_id \
             WHERE r.state IN ('failed', 'rolled-back', 'config-test-failed') AND c.enabled = 1 \
             ORDER BY c.name, h.name",
        )
        .fetch_all(&self.pool)
        .await
        .ctx(op)?;
        rows.iter()
            .map(|r| {
                Ok(FailedInstall {
                    certificate: r.try_get("certificate")?,
                    host: r.try_get("host")?,
                    state: r.try_get("state")?,
                    error: r.try_get("error")?,
                    reported_at: r.try_get("reported_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .ctx(op)
    }

    /// Enrolled hosts last seen (or enrolled, if never seen) before `before`.
    pub async fn silent_hosts(&self, before: UnixTime) -> Result<Vec<SilentHost>, DbError> {
        let op = || "finding silent hosts".to_owned();
        let rows = sqlx::query(
            "SELECT name, COALESCE(last_seen, enrolled_at) AS seen FROM hosts \
             WHERE enrolled_at IS NOT NULL AND COALESCE(last_seen, enrolled_at) < $1 ORDER BY name",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await
        .ctx(op)?;
        rows.iter()
            .map(|r| {
                Ok(SilentHost {
                    name: r.try_get("name")?,
                    last_seen: r.try_get("seen")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .ctx(op)
    }

    /// Every open alert cause.
    pub async fn open_notifications(&self) -> Result<Vec<OpenNotification>, DbError> {
        let op = || "reading open notifications".to_owned();
        let rows = sqlx::query(
            "SELECT subject, cause, detail, urgent, opened_at, last_sent_at FROM notifications \
             ORDER BY subject, cause",
        )
        .fetch_all(&self.pool)
        .await
        .ctx(op)?;
        rows.iter()
            .map(|r| {
                let urgent: i64 = r.try_get("urgent")?;
                Ok(OpenNotification {
                    subject: r.try_get("subject")?,
                    cause: r.try_get("cause")?,
                    detail: r.try_get("detail")?,
                    urgent: urgent != 0,
                    opened_at: r.try_get("opened_at")?,
                    last_sent_at: r.try_get("last_sent_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .ctx(op)
    }

    /// Opens a cause; `sent_at` `None` leaves it for the digest. `false`: it was open already
    /// (another node made it), so the caller sends nothing.
    pub async fn open_notification(&self, n: &OpenNotification) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO notifications (subject, cause, detail, urgent, opened_at, last_sent_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subject, cause) DO NOTHING",
        )
        .bind(&n.subject)
        .bind(&n.cause)
        .bind(&n.detail)
        .bind(i64::from(n.urgent))
        .bind(n.opened_at)
        .bind(n.last_sent_at)
        .execute(&self.pool)
        .await
        .ctx(|| format!("opening notification {} {}", n.subject, n.cause))?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks an open cause sent at `now` (with its current `detail`) if its last sending is
    /// still `was` (`None`: never). `false`: someone else sent it meanwhile.
    pub async fn mark_notification_sent(
        &self,
        subject: &str,
        cause: &str,
        detail: &str,
        was: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE notifications SET last_sent_at = $1, detail = $2 \
             WHERE subject = $3 AND cause = $4 AND COALESCE(last_sent_at, -1) = $5",
        )
        .bind(now)
        .bind(detail)
        .bind(subject)
        .bind(cause)
        .bind(was.unwrap_or(-1))
        .execute(&self.pool)
        .await
        .ctx(|| format!("marking notification {subject} {cause} sent"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Closes a cause that cleared. `false`: it was closed already (by another node).
    pub async fn close_notification(&self, subject: &str, cause: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM notifications WHERE subject = $1 AND cause = $2")
            .bind(subject)
            .bind(cause)
            .execute(&self.pool)
            .await
            .ctx(|| format!("closing notification {subject} {cause}"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets setting `key` to `value` only if it is now `was` (`None`: unset); `true` if this
    /// call changed it. Once-a-day jobs claim their day with it.
    pub async fn swap_setting(
        &self,
        key: &str,
        was: Option<&str>,
        value: &str,
        now: UnixTime,
    ) -> Result<bool, DbError> {
        let op = || format!("updating setting {key:?}");
        let done = match was {
            None => sqlx::query(
                "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(value)
            .bind(now),
            Some(old) => sqlx::query(
                "UPDATE settings SET value = $2, updated_at = $3 WHERE key = $1 AND value = $4",
            )
            .bind(key)
            .bind(value)
            .bind(now)
            .bind(old),
        }
        .execute(&self.pool)
        .await
        .ctx(op)?;
        Ok(done.rows_affected() == 1)
    }
}
