//! Certificates: settings, state, the renewal schedule, leases and committing new versions.

use std::collections::HashMap;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::error::Context;
use super::model::{enum_from_str, enum_to_str, json_from_str, json_to_string};
use super::{
    Ari, Backend, Certificate, CertificateSettings, Commit, DbError, Failure, FleetDb, IssuedCert, Lease,
    NewEvent, ServerKeys, execute_one,
};
use crate::proto::{CertificateDetail, CertificateView, UnixTime};

pub(crate) fn cert_from_row(row: &AnyRow) -> Result<Certificate, DbError> {
    let name: String = row.try_get("name").ctx(|| "reading a certificate".to_owned())?;
    let get = |e: sqlx::Error| DbError::Sql {
        op: format!("reading certificate {name:?}"),
        source: e,
    };
    let identifiers: String = row.try_get("identifiers").map_err(get)?;
    let challenge: String = row.try_get("challenge").map_err(get)?;
    let custody: String = row.try_get("custody").map_err(get)?;
    let ari_start: Option<i64> = row.try_get("ari_start").map_err(get)?;
    let lease_owner: Option<String> = row.try_get("lease_owner").map_err(get)?;
    let failures: i64 = row.try_get("consecutive_failures").map_err(get)?;
    Ok(Certificate {
        id: row.try_get("id").map_err(get)?,
        settings: CertificateSettings {
            identifiers: json_from_str(&identifiers, "identifiers", &name)?,
            custody: enum_from_str(&custody, "key custody", &name)?,
            key_type: row.try_get("key_type").map_err(get)?,
            challenge: json_from_str(&challenge, "challenge settings", &name)?,
            profile: row.try_get("profile").map_err(get)?,
            comment: row.try_get("comment").map_err(get)?,
            acme_server: row.try_get("acme_server").map_err(get)?,
            acme_account: row.try_get("acme_account").map_err(get)?,
        },
        enabled: row.try_get::<i64, _>("enabled").map_err(get)? != 0,
        created_at: row.try_get("created_at").map_err(get)?,
        version: row.try_get("version").map_err(get)?,
        current: issued_from_row(row, "").map_err(get)?,
        previous: issued_from_row(row, "prev_").map_err(get)?,
        ari: match ari_start {
            Some(start) => Some(Ari {
                start,
                end: row.try_get("ari_end").map_err(get)?,
                next_poll: row.try_get("ari_next_poll").map_err(get)?,
                explanation_url: row.try_get("ari_explanation_url").map_err(get)?,
            }),
            None => None,
        },
        last_attempt: row.try_get("last_attempt").map_err(get)?,
        consecutive_failures: u32::try_from(failures).unwrap_or(u32::MAX),
        next_attempt: row.try_get("next_attempt").map_err(get)?,
        next_attempt_reason: row.try_get("next_attempt_reason").map_err(get)?,
        last_error: row.try_get("last_error").map_err(get)?,
        lease: match lease_owner {
            Some(owner) => Some(Lease {
                owner,
                until: row.try_get("lease_until").map_err(get)?,
            }),
            None => None,
        },
        name,
    })
}

fn issued_from_row(row: &AnyRow, prefix: &str) -> Result<Option<IssuedCert>, sqlx::Error> {
    let col = |c: &str| format!("{prefix}{c}");
    let Some(cert_pem) = row.try_get::<Option<String>, _>(col("cert_pem").as_str())? else {
        return Ok(None);
    };
    Ok(Some(IssuedCert {
        cert_pem,
        chain_pem: row.try_get(col("chain_pem").as_str())?,
        serial: row.try_get(col("serial").as_str())?,
        not_before: row.try_get(col("not_before").as_str())?,
        not_after: row.try_get(col("not_after").as_str())?,
        issuer: row.try_get(col("issuer").as_str())?,
        key_sha256: row.try_get(col("key_sha256").as_str())?,
        issued_at: row.try_get(col("issued_at").as_str())?,
    }))
}

fn certs_from_rows(rows: &[AnyRow]) -> Result<Vec<Certificate>, DbError> {
    rows.iter().map(cert_from_row).collect()
}

/// `SELECT id FROM certificates WHERE name = $1`, or [`DbError::NotFound`].
pub(crate) async fn cert_id<'e>(
    e: impl sqlx::Executor<'e, Database = Any>,
    name: &str,
) -> Result<i64, DbError> {
    sqlx::query_scalar::<_, i64>("SELECT id FROM certificates WHERE name = $1")
        .bind(name)
        .fetch_optional(e)
        .await
        .ctx(|| format!("looking up certificate {name:?}"))?
        .ok_or_else(|| DbError::not_found("certificate", name))
}

/// `due_certificates`: `$1` now, `$2` limit.
const DUE_SQL: &str = concat!(
    "SELECT ",
    cert_columns!(),
    " FROM certificates WHERE ",
    due_where!(),
    " ORDER BY next_attempt, id LIMIT $2"
);

fn settings_conflict(name: &str) -> String {
    format!("a certificate named {name:?} already exists")
}

/// Binds `$2`..`$9`: identifiers, comment, key_type, challenge, custody, acme_server,
/// acme_account, profile.
fn bind_settings<'q>(
    q: Query<'q, Any, AnyArguments>,
    s: &'q CertificateSettings,
) -> Query<'q, Any, AnyArguments> {
    q.bind(json_to_string(&s.identifiers))
        .bind(s.comment.as_deref())
        .bind(s.key_type.as_str())
        .bind(json_to_string(&s.challenge))
        .bind(enum_to_str(&s.custody))
        .bind(s.acme_server.as_deref())
        .bind(s.acme_account.as_deref())
        .bind(s.profile.as_deref())
}

impl FleetDb {
    /// Adds a certificate, due at once (`next_attempt = now`), assigned to `hosts` (which must
    /// exist); [`DbError::Conflict`] if the name is taken. One transaction.
    pub async fn create_certificate(
        &self,
        name: &str,
        settings: &CertificateSettings,
        hosts: &[String],
        now: UnixTime,
    ) -> Result<Certificate, DbError> {
        let op = || format!("adding certificate {name:?}");
        let mut tx = self.begin(op).await?;
        let q = sqlx::query(concat!(
            "INSERT INTO certificates (name, identifiers, enabled, comment, key_type, challenge, custody, \
             acme_server, acme_account, profile, created_at, next_attempt, next_attempt_reason) \
             VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8, $9, $10, $10, 'new certificate') RETURNING ",
            cert_columns!()
        ))
        .bind(name);
        let row = bind_settings(q, settings)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .ctx_unique(op, || settings_conflict(name))?;
        let cert = cert_from_row(&row)?;
        for host in hosts {
            super::assignments::assign_in(&mut tx, cert.id, name, host, now).await?;
        }
        tx.commit().await.ctx(op)?;
        Ok(cert)
    }

    pub async fn certificate(&self, name: &str) -> Result<Certificate, DbError> {
        self.find_certificate(name)
            .await?
            .ok_or_else(|| DbError::not_found("certificate", name))
    }

    pub async fn find_certificate(&self, name: &str) -> Result<Option<Certificate>, DbError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            cert_columns!(),
            " FROM certificates WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .ctx(|| format!("reading certificate {name:?}"))?;
        row.as_ref().map(cert_from_row).transpose()
    }

    /// Every certificate, by name.
    pub async fn list_certificates(&self) -> Result<Vec<Certificate>, DbError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            cert_columns!(),
            " FROM certificates ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .ctx(|| "listing certificates".to_owned())?;
        certs_from_rows(&rows)
    }

    /// Replaces a certificate's settings (takes effect at its next renewal).
    pub async fn update_certificate(
        &self,
        name: &str,
        s: &CertificateSettings,
    ) -> Result<Certificate, DbError> {
        let q = sqlx::query(concat!(
            "UPDATE certificates SET identifiers = $2, comment = $3, key_type = $4, challenge = $5, \
             custody = $6, acme_server = $7, acme_account = $8, profile = $9 WHERE name = $1 RETURNING ",
            cert_columns!()
        ))
        .bind(name);
        self.update_returning(bind_settings(q, s), name, "updating").await
    }

    /// Deletes a certificate with its assignments, CSRs and install reports (its events stay).
    pub async fn delete_certificate(&self, name: &str) -> Result<(), DbError> {
        let q = sqlx::query("DELETE FROM certificates WHERE name = $1").bind(name);
        execute_one(
            &self.pool,
            q,
            || format!("deleting certificate {name:?}"),
            "certificate",
            name,
        )
        .await
    }

    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<Certificate, DbError> {
        let q = sqlx::query(concat!(
            "UPDATE certificates SET enabled = $2 WHERE name = $1 RETURNING ",
            cert_columns!()
        ))
        .bind(name)
        .bind(i64::from(enabled));
        self.update_returning(q, name, if enabled { "enabling" } else { "disabling" })
            .await
    }

    /// Sets when the renewal loop next looks at a certificate, and why then (`now` with
    /// "renewal requested" for an admin's `renew`).
    pub async fn schedule(&self, name: &str, at: UnixTime, reason: &str) -> Result<Certificate, DbError> {
        let q = sqlx::query(concat!(
            "UPDATE certificates SET next_attempt = $2, next_attempt_reason = $3 WHERE name = $1 RETURNING ",
            cert_columns!()
        ))
        .bind(name)
        .bind(at)
        .bind(reason);
        self.update_returning(q, name, "scheduling").await
    }

    /// Stores (or with `None` clears) the CA's renewal window for the current certificate.
    pub async fn set_ari(&self, name: &str, ari: Option<&Ari>) -> Result<Certificate, DbError> {
        let q = sqlx::query(concat!(
            "UPDATE certificates SET ari_start = $2, ari_end = $3, ari_next_poll = $4, ari_explanation_url = $5 \
             WHERE name = $1 RETURNING ",
            cert_columns!()
        ))
        .bind(name)
        .bind(ari.map(|a| a.start))
        .bind(ari.map(|a| a.end))
        .bind(ari.map(|a| a.next_poll))
        .bind(ari.and_then(|a| a.explanation_url.as_deref()));
        self.update_returning(q, name, "storing the renewal window of")
            .await
    }

    async fn update_returning(
        &self,
        q: Query<'_, Any, AnyArguments>,
        name: &str,
        verb: &str,
    ) -> Result<Certificate, DbError> {
        let row = q
            .fetch_optional(&self.pool)
            .await
            .ctx(|| format!("{verb} certificate {name:?}"))?
            .ok_or_else(|| DbError::not_found("certificate", name))?;
        cert_from_row(&row)
    }

    /// Up to `limit` certificates due at `now` (see `due_where!`), earliest first. Read only:
    /// take each with [`FleetDb::claim_lease`], or use [`FleetDb::claim_due`].
    pub async fn due_certificates(&self, now: UnixTime, limit: u32) -> Result<Vec<Certificate>, DbError> {
        let rows = sqlx::query(DUE_SQL)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .ctx(|| "listing due certificates".to_owned())?;
        certs_from_rows(&rows)
    }

    /// Leases up to `limit` due certificates to `owner` until `until`, in one statement, and
    /// returns them earliest first. Concurrent callers never get the same certificate: SQLite
    /// runs one writer at a time; PostgreSQL skips rows another claimer has locked and checks the
    /// lease again on the row it updates.
    pub async fn claim_due(
        &self,
        owner: &str,
        now: UnixTime,
        until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Certificate>, DbError> {
        const SQLITE: &str = concat!(
            "UPDATE certificates SET lease_owner = $3, lease_until = $4 WHERE id IN (SELECT id FROM certificates WHERE ",
            due_where!(),
            " ORDER BY next_attempt, id LIMIT $2) RETURNING ",
            cert_columns!()
        );
        const POSTGRES: &str = concat!(
            "UPDATE certificates SET lease_owner = $3, lease_until = $4 WHERE id IN (SELECT id FROM certificates WHERE ",
            due_where!(),
            " ORDER BY next_attempt, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
             AND (lease_until IS NULL OR lease_until <= $1) RETURNING ",
            cert_columns!()
        );
        let sql = match self.backend {
            Backend::Sqlite => SQLITE,
            Backend::Postgres => POSTGRES,
        };
        let rows = sqlx::query(sql)
            .bind(now)
            .bind(i64::from(limit))
            .bind(owner)
            .bind(until)
            .fetch_all(&self.pool)
            .await
            .ctx(|| format!("claiming due certificates for {owner:?}"))?;
        let mut certs = certs_from_rows(&rows)?;
        certs.sort_by_key(|c| (c.next_attempt, c.id));
        Ok(certs)
    }

    /// Takes the renewal lease of one certificate for `owner` until `until`: true if taken (free,
    /// expired, or already `owner`'s), false if another node holds a live lease. Atomic.
    pub async fn claim_lease(
        &self,
        name: &str,
        owner: &str,
        now: UnixTime,
        until: UnixTime,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE certificates SET lease_owner = $2, lease_until = $4 \
             WHERE name = $1 AND (lease_until IS NULL OR lease_until <= $3 OR lease_owner = $2)",
        )
        .bind(name)
        .bind(owner)
        .bind(now)
        .bind(until)
        .execute(&self.pool)
        .await
        .ctx(|| format!("claiming the renewal lease of certificate {name:?}"))?;
        self.affected_or_missing(done.rows_affected(), name).await
    }

    /// Extends `owner`'s live lease to `until`; false if it expired or another node holds it.
    pub async fn extend_lease(
        &self,
        name: &str,
        owner: &str,
        now: UnixTime,
        until: UnixTime,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE certificates SET lease_until = $4 WHERE name = $1 AND lease_owner = $2 AND lease_until > $3",
        )
        .bind(name)
        .bind(owner)
        .bind(now)
        .bind(until)
        .execute(&self.pool)
        .await
        .ctx(|| format!("extending the renewal lease of certificate {name:?}"))?;
        self.affected_or_missing(done.rows_affected(), name).await
    }

    /// Gives up `owner`'s lease; false if `owner` did not hold it.
    pub async fn release_lease(&self, name: &str, owner: &str) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE certificates SET lease_owner = NULL, lease_until = NULL WHERE name = $1 AND lease_owner = $2",
        )
        .bind(name)
        .bind(owner)
        .execute(&self.pool)
        .await
        .ctx(|| format!("releasing the renewal lease of certificate {name:?}"))?;
        self.affected_or_missing(done.rows_affected(), name).await
    }

    /// Gives up every lease `owner` holds (a node restarting after a crash: its leases would
    /// otherwise keep those certificates waiting until they run out). Returns how many.
    pub async fn release_leases_of(&self, owner: &str) -> Result<u64, DbError> {
        let done = sqlx::query(
            "UPDATE certificates SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&self.pool)
        .await
        .ctx(|| format!("releasing the renewal leases of node {owner:?}"))?;
        Ok(done.rows_affected())
    }

    /// `true` if a row was affected; `false` if none was but the certificate exists.
    async fn affected_or_missing(&self, rows: u64, name: &str) -> Result<bool, DbError> {
        if rows > 0 {
            return Ok(true);
        }
        cert_id(&self.pool, name).await.map(|_| false)
    }

    /// Commits a newly issued certificate in one transaction: the current one becomes the
    /// previous one (with its key), the version goes up, failures are reset, the next attempt is
    /// scheduled, the lease is released, the CSR (if any) is marked used, and an `issued` (first
    /// version) or `renewed` event is logged. [`DbError::LeaseLost`] if `lease_owner` is given and
    /// no longer holds the lease.
    pub async fn commit_issued(&self, name: &str, c: &Commit<'_>) -> Result<Certificate, DbError> {
        let op = || format!("committing the new certificate of {name:?}");
        let new = c.cert;
        let mut tx = self.begin(op).await?;
        let row = sqlx::query(concat!(
            "UPDATE certificates SET \
             prev_cert_pem = cert_pem, prev_chain_pem = chain_pem, prev_serial = serial, \
             prev_not_before = not_before, prev_not_after = not_after, prev_issuer = issuer, \
             prev_key_sha256 = key_sha256, prev_issued_at = issued_at, prev_key_blob = key_blob, \
             cert_pem = $2, chain_pem = $3, serial = $4, not_before = $5, not_after = $6, issuer = $7, \
             key_sha256 = $8, issued_at = $9, key_blob = $10, \
             version = version + 1, consecutive_failures = 0, last_error = NULL, last_attempt = $9, \
             next_attempt = $11, next_attempt_reason = $12, lease_owner = NULL, lease_until = NULL, \
             ari_start = NULL, ari_end = NULL, ari_next_poll = NULL, ari_explanation_url = NULL \
             WHERE name = $1 AND ($13 IS NULL OR lease_owner = $13) RETURNING ",
            cert_columns!()
        ))
        .bind(name)
        .bind(new.cert_pem.as_str())
        .bind(new.chain_pem.as_str())
        .bind(new.serial.as_str())
        .bind(new.not_before)
        .bind(new.not_after)
        .bind(new.issuer.as_str())
        .bind(new.key_sha256.as_str())
        .bind(new.issued_at)
        .bind(c.key_blob.map(<[u8]>::to_vec))
        .bind(c.next_attempt)
        .bind(c.next_attempt_reason)
        .bind(c.lease_owner)
        .fetch_optional(&mut *tx)
        .await
        .ctx(op)?;
        let Some(row) = row else {
            return Err(self.lease_lost(&mut tx, name, c.lease_owner).await);
        };
        let cert = cert_from_row(&row)?;
        if let Some(csr) = c.csr_id {
            super::assignments::mark_csr_used_in(&mut *tx, csr, &new.serial).await?;
        }
        let detail = format!(
            "serial {}, valid until {}, issued by {}",
            new.serial,
            rfc3339(new.not_after),
            new.issuer
        );
        let event = NewEvent {
            at: new.issued_at,
            certificate: Some(name),
            host: None,
            kind: match (c.imported, cert.version) {
                (true, _) => "imported",
                (false, 1) => "issued",
                (false, _) => "renewed",
            },
            actor: c.actor,
            detail: &detail,
        };
        super::records::insert_event(&mut *tx, &event).await?;
        tx.commit().await.ctx(op)?;
        Ok(cert)
    }

    /// Records a failed attempt in one transaction: failures + 1, the error, the retry time;
    /// releases the lease and logs a `failed` event. [`DbError::LeaseLost`] as for
    /// [`FleetDb::commit_issued`].
    pub async fn record_failure(&self, name: &str, f: &Failure<'_>) -> Result<Certificate, DbError> {
        let op = || format!("recording the failed attempt of {name:?}");
        let mut tx = self.begin(op).await?;
        let row = sqlx::query(concat!(
            "UPDATE certificates SET consecutive_failures = consecutive_failures + 1, last_attempt = $2, \
             last_error = $3, next_attempt = $4, next_attempt_reason = $5, lease_owner = NULL, lease_until = NULL \
             WHERE name = $1 AND ($6 IS NULL OR lease_owner = $6) RETURNING ",
            cert_columns!()
        ))
        .bind(name)
        .bind(f.now)
        .bind(f.error)
        .bind(f.next_attempt)
        .bind(f.next_attempt_reason)
        .bind(f.lease_owner)
        .fetch_optional(&mut *tx)
        .await
        .ctx(op)?;
        let Some(row) = row else {
            return Err(self.lease_lost(&mut tx, name, f.lease_owner).await);
        };
        let cert = cert_from_row(&row)?;
        let event = NewEvent {
            at: f.now,
            certificate: Some(name),
            host: None,
            kind: "failed",
            actor: f.actor,
            detail: f.error,
        };
        super::records::insert_event(&mut *tx, &event).await?;
        tx.commit().await.ctx(op)?;
        Ok(cert)
    }

    /// Why a lease-checked update matched no row: no such certificate, or the lease is gone.
    async fn lease_lost(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        name: &str,
        owner: Option<&str>,
    ) -> DbError {
        let holder =
            sqlx::query_scalar::<_, Option<String>>("SELECT lease_owner FROM certificates WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut **tx)
                .await;
        match holder {
            Ok(None) => DbError::not_found("certificate", name),
            Ok(Some(holder)) => DbError::LeaseLost {
                certificate: name.to_owned(),
                owner: owner.unwrap_or_default().to_owned(),
                holder,
            },
            Err(source) => DbError::Sql {
                op: format!("reading the renewal lease of certificate {name:?}"),
                source,
            },
        }
    }

    /// The encrypted server-custody keys of the current and previous certificate.
    pub async fn server_keys(&self, name: &str) -> Result<ServerKeys, DbError> {
        let row = sqlx::query("SELECT key_blob, prev_key_blob FROM certificates WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .ctx(|| format!("reading the keys of certificate {name:?}"))?
            .ok_or_else(|| DbError::not_found("certificate", name))?;
        let op = || format!("reading the keys of certificate {name:?}");
        Ok(ServerKeys {
            current: row.try_get("key_blob").ctx(op)?,
            previous: row.try_get("prev_key_blob").ctx(op)?,
        })
    }

    /// One page of certificates as the admin API lists them: by name, the first `limit` after
    /// `after`, read without their PEMs (a list of 100,000 must not hold 100,000 chains).
    pub async fn certificate_views(
        &self,
        now: UnixTime,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CertificateView>, DbError> {
        let op = || "listing certificates".to_owned();
        // Two statements rather than `$1 IS NULL OR name > $1`, which the planners cannot answer
        // from the name index: every page would scan and sort the whole table.
        let rows = match after {
            Some(after) => sqlx::query(concat!(
                "SELECT ",
                cert_summary_columns!(),
                " FROM certificates WHERE name > $1 ORDER BY name LIMIT $2"
            ))
            .bind(after),
            None => sqlx::query(concat!(
                "SELECT ",
                cert_summary_columns!(),
                " FROM certificates ORDER BY name LIMIT $1"
            )),
        }
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .ctx(op)?;
        let certs = certs_from_rows(&rows)?;
        let (Some(first), Some(last)) = (certs.first(), certs.last()) else {
            return Ok(Vec::new());
        };
        let pairs = sqlx::query(
            "SELECT c.name AS certificate, h.name AS host FROM assignments a \
             JOIN certificates c ON c.id = a.certificate_id JOIN hosts h ON h.id = a.host_id \
             WHERE c.name >= $1 AND c.name <= $2 ORDER BY h.name",
        )
        .bind(&first.name)
        .bind(&last.name)
        .fetch_all(&self.pool)
        .await
        .ctx(op)?;
        let mut hosts: HashMap<String, Vec<String>> = HashMap::new();
        for r in &pairs {
            hosts
                .entry(r.try_get("certificate").ctx(op)?)
                .or_default()
                .push(r.try_get("host").ctx(op)?);
        }
        Ok(certs
            .iter()
            .map(|c| c.view(hosts.remove(&c.name).unwrap_or_default(), now))
            .collect())
    }

    /// One certificate with its hosts' install reports and its newest `events` events.
    pub async fn certificate_detail(
        &self,
        name: &str,
        now: UnixTime,
        events: u32,
    ) -> Result<CertificateDetail, DbError> {
        let cert = self.certificate(name).await?;
        let hosts = self.hosts_of(name).await?;
        Ok(CertificateDetail {
            certificate: cert.view(hosts, now),
            installs: self.install_reports(name).await?,
            events: self
                .events(Some(name), events)
                .await?
                .into_iter()
                .map(Into::into)
                .collect(),
        })
    }
}

/// `2026-12-03T08:00:00Z`, for event details.
pub(crate) fn rfc3339(t: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::{DUE_SQL, FleetDb};

    /// The query plan of `due_certificates` on `db`, one line per step.
    async fn due_plan(db: &FleetDb, explain: &'static str) -> String {
        let mut conn = db.pool.acquire().await.unwrap();
        if db.backend == super::Backend::Postgres {
            // On an empty table a sequential scan is cheapest; ask whether the index can serve.
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        let sql = format!("{explain} {DUE_SQL}");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(1_i64)
            .bind(10_i64)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let col = if explain == "EXPLAIN" { 0 } else { 3 };
        rows.iter()
            .map(|r| r.try_get::<String, _>(col).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn due_query_uses_its_index_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = FleetDb::open(dir.path().to_str().unwrap()).await.unwrap();
        let plan = due_plan(&db, "EXPLAIN QUERY PLAN").await;
        assert!(plan.contains("USING INDEX certificates_due"), "{plan}");
        assert!(
            !plan.contains("TEMP B-TREE"),
            "sorts instead of reading in index order:\n{plan}"
        );
    }

    #[tokio::test]
    async fn due_query_uses_its_index_on_postgres() {
        let pg = tokio::task::spawn_blocking(certfleet_testkit::PgDatabase::create)
            .await
            .unwrap()
            .unwrap();
        let db = FleetDb::open(pg.url()).await.unwrap();
        let plan = due_plan(&db, "EXPLAIN").await;
        assert!(plan.contains("certificates_due"), "{plan}");
        assert!(
            !plan.contains("Sort"),
            "sorts instead of reading in index order:\n{plan}"
        );
    }
}
