//! Hosts and the secrets that let them in: one-time enrollment tokens, the client certificate
//! each enrolled host authenticates with, and the admins' tokens.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use super::error::Context;
use super::{DbError, FleetDb, Host, HostCredential, TokenRejected, execute_one};
use crate::proto::{HostView, UnixTime};

fn host_from_row(row: &AnyRow) -> Result<Host, sqlx::Error> {
    Ok(Host {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        enrolled_at: row.try_get("enrolled_at")?,
        client_cert_sha256: row.try_get("client_cert_sha256")?,
        client_cert_serial: row.try_get("client_cert_serial")?,
        last_seen: row.try_get("last_seen")?,
        agent_version: row.try_get("agent_version")?,
    })
}

/// `SELECT id FROM hosts WHERE name = $1`, or [`DbError::NotFound`].
pub(crate) async fn host_id<'e>(
    e: impl sqlx::Executor<'e, Database = Any>,
    name: &str,
) -> Result<i64, DbError> {
    sqlx::query_scalar::<_, i64>("SELECT id FROM hosts WHERE name = $1")
        .bind(name)
        .fetch_optional(e)
        .await
        .ctx(|| format!("looking up host {name:?}"))?
        .ok_or_else(|| DbError::not_found("host", name))
}

impl FleetDb {
    /// Adds a host (not enrolled yet); [`DbError::Conflict`] if the name is taken.
    pub async fn create_host(&self, name: &str, now: UnixTime) -> Result<Host, DbError> {
        let row = sqlx::query(concat!(
            "INSERT INTO hosts (name, created_at) VALUES ($1, $2) RETURNING ",
            host_columns!()
        ))
        .bind(name)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .ctx_unique(
            || format!("adding host {name:?}"),
            || format!("a host named {name:?} already exists"),
        )?;
        host_from_row(&row).ctx(|| format!("adding host {name:?}"))
    }

    pub async fn host(&self, name: &str) -> Result<Host, DbError> {
        let q = sqlx::query(concat!("SELECT ", host_columns!(), " FROM hosts WHERE name = $1"));
        self.host_where(q.bind(name), || format!("reading host {name:?}"))
            .await?
            .ok_or_else(|| DbError::not_found("host", name))
    }

    /// The enrolled host whose client certificate has this SHA-256 (hex, lowercase) DER digest.
    pub async fn host_by_fingerprint(&self, cert_sha256: &str) -> Result<Option<Host>, DbError> {
        let q = sqlx::query(concat!(
            "SELECT ",
            host_columns!(),
            " FROM hosts WHERE client_cert_sha256 = $1"
        ));
        self.host_where(q.bind(cert_sha256), || {
            "looking up a host by its client certificate".to_owned()
        })
        .await
    }

    async fn host_where(
        &self,
        q: sqlx::query::Query<'_, Any, sqlx::any::AnyArguments>,
        op: impl Fn() -> String,
    ) -> Result<Option<Host>, DbError> {
        let row = q.fetch_optional(&self.pool).await.ctx(&op)?;
        row.as_ref().map(host_from_row).transpose().ctx(op)
    }

    /// Every host, by name.
    pub async fn list_hosts(&self) -> Result<Vec<Host>, DbError> {
        let op = || "listing hosts".to_owned();
        let rows = sqlx::query(concat!("SELECT ", host_columns!(), " FROM hosts ORDER BY name"))
            .fetch_all(&self.pool)
            .await
            .ctx(op)?;
        rows.iter().map(host_from_row).collect::<Result<_, _>>().ctx(op)
    }

    /// Every host as the admin API lists it, with its certificates.
    pub async fn host_views(&self) -> Result<Vec<HostView>, DbError> {
        let hosts = self.list_hosts().await?;
        let mut certs: HashMap<String, Vec<String>> = HashMap::new();
        for (cert, host) in self.all_assignments().await? {
            certs.entry(host).or_default().push(cert);
        }
        Ok(hosts
            .iter()
            .map(|h| {
                let mut c = certs.remove(&h.name).unwrap_or_default();
                c.sort();
                h.view(c)
            })
            .collect())
    }

    /// Deletes a host with its tokens, assignments, CSRs and install reports (its events stay).
    pub async fn delete_host(&self, name: &str) -> Result<(), DbError> {
        let q = sqlx::query("DELETE FROM hosts WHERE name = $1").bind(name);
        execute_one(&self.pool, q, || format!("deleting host {name:?}"), "host", name).await
    }

    /// Records the client certificate a host got at enrollment (replacing an earlier one: the
    /// old certificate stops working).
    pub async fn set_host_credential(
        &self,
        name: &str,
        cred: &HostCredential<'_>,
        now: UnixTime,
    ) -> Result<Host, DbError> {
        let op = || format!("storing the client certificate of host {name:?}");
        let row = sqlx::query(concat!(
            "UPDATE hosts SET client_cert_sha256 = $2, client_cert_serial = $3, agent_version = $4, \
             enrolled_at = $5, last_seen = $5 WHERE name = $1 RETURNING ",
            host_columns!()
        ))
        .bind(name)
        .bind(cred.cert_sha256)
        .bind(cred.serial)
        .bind(cred.agent_version)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .ctx_unique(op, || {
            "another host already has this client certificate".to_owned()
        })?
        .ok_or_else(|| DbError::not_found("host", name))?;
        host_from_row(&row).ctx(op)
    }

    /// Notes that a host called in, with the agent version it runs.
    pub async fn touch_host(&self, name: &str, now: UnixTime, agent_version: &str) -> Result<(), DbError> {
        let q = sqlx::query("UPDATE hosts SET last_seen = $2, agent_version = $3 WHERE name = $1")
            .bind(name)
            .bind(now)
            .bind(agent_version);
        execute_one(&self.pool, q, || format!("updating host {name:?}"), "host", name).await
    }

    /// Stores a new one-time enrollment token (its SHA-256, see [`crate::token::hash_secret`])
    /// for a host.
    pub async fn create_enrollment_token(
        &self,
        host: &str,
        secret_hash: &str,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<(), DbError> {
        let op = || format!("storing an enrollment token for host {host:?}");
        let mut conn = self.pool.acquire().await.ctx(op)?;
        let id = host_id(&mut *conn, host).await?;
        sqlx::query(
            "INSERT INTO enrollment_tokens (host_id, secret_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(secret_hash)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *conn)
        .await
        .ctx_unique(op, || "this enrollment token exists already".to_owned())?;
        Ok(())
    }

    /// Uses up an enrollment token and returns its host's name. One statement marks it used only
    /// if it is unused and unexpired, so of concurrent callers exactly one succeeds; the others
    /// get [`TokenRejected::Used`].
    pub async fn consume_enrollment_token(
        &self,
        secret_hash: &str,
        now: UnixTime,
    ) -> Result<String, DbError> {
        let op = || "using an enrollment token".to_owned();
        let used = sqlx::query_scalar::<_, i64>(
            "UPDATE enrollment_tokens SET used_at = $2 \
             WHERE secret_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING host_id",
        )
        .bind(secret_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .ctx(op)?;
        if let Some(host_id) = used {
            return sqlx::query_scalar("SELECT name FROM hosts WHERE id = $1")
                .bind(host_id)
                .fetch_one(&self.pool)
                .await
                .ctx(op);
        }
        // Refused: say why.
        let row = sqlx::query(
            "SELECT h.name, t.used_at FROM enrollment_tokens t JOIN hosts h ON h.id = t.host_id WHERE t.secret_hash = $1",
        )
        .bind(secret_hash)
        .fetch_optional(&self.pool)
        .await
        .ctx(op)?;
        let Some(row) = row else {
            return Err(TokenRejected::Unknown.into());
        };
        let host: String = row.try_get("name").ctx(op)?;
        let used_at: Option<i64> = row.try_get("used_at").ctx(op)?;
        Err(match used_at {
            Some(_) => TokenRejected::Used { host },
            None => TokenRejected::Expired { host },
        }
        .into())
    }

    /// Stores an admin token's hash with a label (who or what it is for).
    pub async fn put_admin_token(&self, token_hash: &str, label: &str, now: UnixTime) -> Result<(), DbError> {
        sqlx::query("INSERT INTO admin_tokens (token_hash, label, created_at) VALUES ($1, $2, $3)")
            .bind(token_hash)
            .bind(label)
            .bind(now)
            .execute(&self.pool)
            .await
            .ctx_unique(
                || format!("storing admin token {label:?}"),
                || "this admin token exists already".to_owned(),
            )?;
        Ok(())
    }

    /// The label of the admin token with this hash, if there is one.
    pub async fn check_admin_token(&self, token_hash: &str) -> Result<Option<String>, DbError> {
        sqlx::query_scalar("SELECT label FROM admin_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .ctx(|| "checking an admin token".to_owned())
    }

    /// Revokes an admin token; `true` if it existed.
    pub async fn delete_admin_token(&self, token_hash: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM admin_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .ctx(|| "revoking an admin token".to_owned())?;
        Ok(done.rows_affected() > 0)
    }
}
