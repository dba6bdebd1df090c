//! What ties certificates to hosts: assignments, the CSRs hosts upload, their install reports.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};

use super::certificates::{cert_from_row, cert_id};
use super::error::Context;
use super::hosts::host_id;
use super::model::{enum_from_str, enum_to_str};
use super::{Csr, DbError, FleetDb, execute_one};
use crate::proto::{Assignment, HostInstallView, InstallReport, UnixTime};

/// Assigns inside a transaction; `true` if it was not assigned before.
pub(crate) async fn assign_in(
    conn: &mut AnyConnection,
    cert_id: i64,
    cert: &str,
    host: &str,
    now: UnixTime,
) -> Result<bool, DbError> {
    let host_id = host_id(&mut *conn, host).await?;
    let done = sqlx::query(
        "INSERT INTO assignments (certificate_id, host_id, assigned_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(cert_id)
    .bind(host_id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .ctx(|| format!("assigning certificate {cert:?} to host {host:?}"))?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn mark_csr_used_in<'e>(
    e: impl sqlx::Executor<'e, Database = Any>,
    id: i64,
    serial: &str,
) -> Result<(), DbError> {
    let q = sqlx::query("UPDATE csrs SET used_by_serial = $2 WHERE id = $1")
        .bind(id)
        .bind(serial);
    execute_one(e, q, || format!("marking CSR {id} used"), "CSR", &id.to_string()).await
}

fn csr_from_row(row: &AnyRow) -> Result<Csr, sqlx::Error> {
    Ok(Csr {
        id: row.try_get("id")?,
        certificate: row.try_get("certificate")?,
        host: row.try_get("host")?,
        der: row.try_get("csr_der")?,
        spki_sha256: row.try_get("spki_sha256")?,
        uploaded_at: row.try_get("uploaded_at")?,
        used_by_serial: row.try_get("used_by_serial")?,
    })
}

/// Both ids, each or [`DbError::NotFound`].
async fn ids(conn: &mut AnyConnection, cert: &str, host: &str) -> Result<(i64, i64), DbError> {
    Ok((cert_id(&mut *conn, cert).await?, host_id(&mut *conn, host).await?))
}

impl FleetDb {
    /// Assigns a certificate to a host; `true` if it was not assigned before.
    pub async fn assign(&self, cert: &str, host: &str, now: UnixTime) -> Result<bool, DbError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .ctx(|| format!("assigning {cert:?} to {host:?}"))?;
        let cert_id = cert_id(&mut *conn, cert).await?;
        assign_in(&mut conn, cert_id, cert, host, now).await
    }

    /// `true` if it was assigned.
    pub async fn unassign(&self, cert: &str, host: &str) -> Result<bool, DbError> {
        let op = || format!("unassigning certificate {cert:?} from host {host:?}");
        let mut conn = self.pool.acquire().await.ctx(op)?;
        let (cert_id, host_id) = ids(&mut conn, cert, host).await?;
        let done = sqlx::query("DELETE FROM assignments WHERE certificate_id = $1 AND host_id = $2")
            .bind(cert_id)
            .bind(host_id)
            .execute(&mut *conn)
            .await
            .ctx(op)?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn is_assigned(&self, cert: &str, host: &str) -> Result<bool, DbError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM assignments a JOIN certificates c ON c.id = a.certificate_id \
             JOIN hosts h ON h.id = a.host_id WHERE c.name = $1 AND h.name = $2",
        )
        .bind(cert)
        .bind(host)
        .fetch_one(&self.pool)
        .await
        .ctx(|| format!("checking whether {cert:?} is assigned to {host:?}"))?;
        Ok(n > 0)
    }

    /// The hosts a certificate is assigned to, by name.
    pub async fn hosts_of(&self, cert: &str) -> Result<Vec<String>, DbError> {
        let op = || format!("listing the hosts of certificate {cert:?}");
        let mut conn = self.pool.acquire().await.ctx(op)?;
        let id = cert_id(&mut *conn, cert).await?;
        sqlx::query_scalar(
            "SELECT h.name FROM assignments a JOIN hosts h ON h.id = a.host_id WHERE a.certificate_id = $1 ORDER BY h.name",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .ctx(op)
    }

    /// The certificates assigned to a host, by name.
    pub async fn certificates_of(&self, host: &str) -> Result<Vec<String>, DbError> {
        let op = || format!("listing the certificates of host {host:?}");
        let mut conn = self.pool.acquire().await.ctx(op)?;
        let id = host_id(&mut *conn, host).await?;
        sqlx::query_scalar(
            "SELECT c.name FROM assignments a JOIN certificates c ON c.id = a.certificate_id WHERE a.host_id = $1 ORDER BY c.name",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .ctx(op)
    }

    /// Every (certificate, host) pair, by host name.
    pub(crate) async fn all_assignments(&self) -> Result<Vec<(String, String)>, DbError> {
        let rows = sqlx::query(
            "SELECT c.name AS certificate, h.name AS host FROM assignments a \
             JOIN certificates c ON c.id = a.certificate_id JOIN hosts h ON h.id = a.host_id ORDER BY h.name, c.name",
        )
        .fetch_all(&self.pool)
        .await
        .ctx(|| "listing assignments".to_owned())?;
        rows.iter()
            .map(|r| Ok((r.try_get("certificate")?, r.try_get("host")?)))
            .collect::<Result<_, sqlx::Error>>()
            .ctx(|| "listing assignments".to_owned())
    }

    /// What `GET agent/assignments` answers a host: its certificates, each with the SPKI hashes
    /// of the CSRs this host uploaded for it.
    pub async fn host_assignments(&self, host: &str) -> Result<Vec<Assignment>, DbError> {
        let op = || format!("listing the assignments of host {host:?}");
        let mut conn = self.pool.acquire().await.ctx(op)?;
        let id = host_id(&mut *conn, host).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            cert_columns!(),
            " FROM certificates WHERE id IN (SELECT certificate_id FROM assignments WHERE host_id = $1) ORDER BY name"
        ))
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .ctx(op)?;
        let keys = sqlx::query(
            "SELECT certificate_id, spki_sha256 FROM csrs WHERE host_id = $1 AND used_by_serial IS NULL ORDER BY uploaded_at, id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .ctx(op)?;
        let mut by_cert: HashMap<i64, Vec<String>> = HashMap::new();
        for k in &keys {
            by_cert
                .entry(k.try_get("certificate_id").ctx(op)?)
                .or_default()
                .push(k.try_get("spki_sha256").ctx(op)?);
        }
        rows.iter()
            .map(|r| {
                let cert = cert_from_row(r)?;
                Ok(cert.assignment(by_cert.remove(&cert.id).unwrap_or_default()))
            })
            .collect()
    }

    /// Stores a CSR a host uploaded for a certificate and returns its id. The same key uploaded
    /// again replaces the stored CSR and makes it unused again.
    pub async fn put_csr(
        &self,
        cert: &str,
        host: &str,
        der: &[u8],
        spki_sha256: &str,
        now: UnixTime,
    ) -> Result<i64, DbError> {
        let op = || format!("storing a CSR of host {host:?} for certificate {cert:?}");
        let mut conn = self.pool.acquire().await.ctx(op)?;
        let (cert_id, host_id) = ids(&mut conn, cert, host).await?;
        sqlx::query_scalar(
            "INSERT INTO csrs (certificate_id, host_id, csr_der, spki_sha256, uploaded_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (certificate_id, host_id, spki_sha256) DO UPDATE SET csr_der = excluded.csr_der, \
             uploaded_at = excluded.uploaded_at, used_by_serial = NULL RETURNING id",
        )
        .bind(cert_id)
        .bind(host_id)
        .bind(der.to_vec())
        .bind(spki_sha256)
        .bind(now)
        .fetch_one(&mut *conn)
        .await
        .ctx(op)
    }

    /// The newest CSR not yet used for a certificate, from `host` or (with `None`) any host.
    pub async fn latest_unused_csr(&self, cert: &str, host: Option<&str>) -> Result<Option<Csr>, DbError> {
        let op = || format!("finding an unused CSR for certificate {cert:?}");
        let row = sqlx::query(
            "SELECT s.id, c.name AS certificate, h.name AS host, s.csr_der, s.spki_sha256, s.uploaded_at, s.used_by_serial \
             FROM csrs s JOIN certificates c ON c.id = s.certificate_id JOIN hosts h ON h.id = s.host_id \
             WHERE c.name = $1 AND ($2 IS NULL OR h.name = $2) AND s.used_by_serial IS NULL \
             ORDER BY s.uploaded_at DESC, s.id DESC LIMIT 1",
        )
        .bind(cert)
        .bind(host)
        .fetch_optional(&self.pool)
        .await
        .ctx(op)?;
        match row {
            Some(r) => Ok(Some(csr_from_row(&r).ctx(op)?)),
            None => {
                cert_id(&self.pool, cert).await?;
                Ok(None)
            }
        }
    }

    /// Marks a CSR used by the certificate with `serial` ([`super::Commit::csr_id`] does it as
    /// part of the commit).
    pub async fn mark_csr_used(&self, id: i64, serial: &str) -> Result<(), DbError> {
        mark_csr_used_in(&self.pool, id, serial).await
    }

    /// Stores what a host reports about a certificate, replacing its previous report.
    pub async fn put_install_report(
        &self,
        host: &str,
        report: &InstallReport,
        now: UnixTime,
    ) -> Result<(), DbError> {
        let cert = report.certificate.as_str();
        let op = || format!("storing the install report of host {host:?} for certificate {cert:?}");
        let mut conn = self.pool.acquire().await.ctx(op)?;
        let (cert_id, host_id) = ids(&mut conn, cert, host).await?;
        sqlx::query(
            "INSERT INTO install_reports (certificate_id, host_id, state, installed_serial, served_serial, endpoint, error, reported_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (certificate_id, host_id) DO UPDATE SET \
             state = excluded.state, installed_serial = excluded.installed_serial, served_serial = excluded.served_serial, \
             endpoint = excluded.endpoint, error = excluded.error, reported_at = excluded.reported_at",
        )
        .bind(cert_id)
        .bind(host_id)
        .bind(enum_to_str(&report.state))
        .bind(report.installed_serial.as_deref())
        .bind(report.served_serial.as_deref())
        .bind(report.endpoint.as_deref())
        .bind(report.error.as_deref())
        .bind(now)
        .execute(&mut *conn)
        .await
        .ctx(op)?;
        Ok(())
    }

    /// The install state of a certificate on every host it is assigned to (state `None`: no
    /// report yet) and on hosts that reported before it was unassigned, by host name.
    pub async fn install_reports(&self, cert: &str) -> Result<Vec<HostInstallView>, DbError> {
        let op = || format!("listing the install reports of certificate {cert:?}");
        let mut conn = self.pool.acquire().await.ctx(op)?;
        let id = cert_id(&mut *conn, cert).await?;
        let rows = sqlx::query(
            "SELECT h.name, r.state, r.installed_serial, r.served_serial, r.endpoint, r.error, r.reported_at \
             FROM hosts h LEFT JOIN install_reports r ON r.host_id = h.id AND r.certificate_id = $1 \
             WHERE r.certificate_id IS NOT NULL \
             OR EXISTS (SELECT 1 FROM assignments a WHERE a.host_id = h.id AND a.certificate_id = $1) \
             ORDER BY h.name",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .ctx(op)?;
        rows.iter()
            .map(|r| {
                let host: String = r.try_get("name").ctx(op)?;
                let state: Option<String> = r.try_get("state").ctx(op)?;
                Ok(HostInstallView {
                    state: state
                        .map(|s| enum_from_str(&s, "install state", &host))
                        .transpose()?,
                    installed_serial: r.try_get("installed_serial").ctx(op)?,
                    served_serial: r.try_get("served_serial").ctx(op)?,
                    endpoint: r.try_get("endpoint").ctx(op)?,
                    error: r.try_get("error").ctx(op)?,
                    reported_at: r.try_get("reported_at").ctx(op)?,
                    host,
                })
            })
            .collect()
    }
}
