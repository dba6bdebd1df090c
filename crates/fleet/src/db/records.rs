//! The append-only event log, ACME accounts, pending http-01 challenges and settings.

use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use super::error::Context;
use super::model::{json_from_str, json_to_string};
use super::{Account, Challenge, DbError, Event, FleetDb, NewEvent};
use crate::proto::UnixTime;

/// Appends an event (also inside a transaction); returns its id, which orders the log.
pub(crate) async fn insert_event<'e>(
    e: impl sqlx::Executor<'e, Database = Any>,
    ev: &NewEvent<'_>,
) -> Result<i64, DbError> {
    sqlx::query_scalar(
        "INSERT INTO events (at, certificate, host, kind, actor, detail) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(ev.at)
    .bind(ev.certificate)
    .bind(ev.host)
    .bind(ev.kind)
    .bind(ev.actor)
    .bind(ev.detail)
    .fetch_one(e)
    .await
    .ctx(|| format!("logging a {:?} event", ev.kind))
}

fn event_from_row(row: &AnyRow) -> Result<Event, sqlx::Error> {
    Ok(Event {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        certificate: row.try_get("certificate")?,
        host: row.try_get("host")?,
        kind: row.try_get("kind")?,
        actor: row.try_get("actor")?,
        detail: row.try_get("detail")?,
    })
}

fn challenge_from_row(row: &AnyRow) -> Result<Challenge, sqlx::Error> {
    Ok(Challenge {
        token: row.try_get("token")?,
        key_authorization: row.try_get("key_authorization")?,
        identifier: row.try_get("identifier")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl FleetDb {
    /// Appends to the event log (which refuses updates and deletes); returns the event's id.
    pub async fn append_event(&self, ev: &NewEvent<'_>) -> Result<i64, DbError> {
        insert_event(&self.pool, ev).await
    }

    /// The newest `limit` events, newest first: of one certificate, or (`None`) of all.
    pub async fn events(&self, certificate: Option<&str>, limit: u32) -> Result<Vec<Event>, DbError> {
        let q = match certificate {
            Some(name) => sqlx::query(
                "SELECT id, at, certificate, host, kind, actor, detail FROM events \
                 WHERE certificate = $2 ORDER BY id DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .bind(name),
            None => sqlx::query(
                "SELECT id, at, certificate, host, kind, actor, detail FROM events ORDER BY id DESC LIMIT $1",
            )
            .bind(i64::from(limit)),
        };
        let op = || match certificate {
            Some(name) => format!("reading the events of certificate {name:?}"),
            None => "reading the event log".to_owned(),
        };
        let rows = q.fetch_all(&self.pool).await.ctx(op)?;
        rows.iter().map(event_from_row).collect::<Result<_, _>>().ctx(op)
    }

    /// The server's ACME account at the CA with this directory URL.
    pub async fn account(&self, server_url: &str) -> Result<Option<Account>, DbError> {
        let op = || format!("reading the ACME account for {server_url}");
        let row = sqlx::query(
            "SELECT server_url, account_url, key_pem, contact, created_at FROM accounts WHERE server_url = $1",
        )
        .bind(server_url)
        .fetch_optional(&self.pool)
        .await
        .ctx(op)?;
        let Some(row) = row else { return Ok(None) };
        let contact: String = row.try_get("contact").ctx(op)?;
        Ok(Some(Account {
            server_url: row.try_get("server_url").ctx(op)?,
            account_url: row.try_get("account_url").ctx(op)?,
            key_pem: row.try_get("key_pem").ctx(op)?,
            contact: json_from_str(&contact, "ACME account contact", server_url)?,
            created_at: row.try_get("created_at").ctx(op)?,
        }))
    }

    /// Stores the account for its CA, replacing an earlier one (keeping its creation time).
    pub async fn put_account(&self, a: &Account) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO accounts (server_url, account_url, key_pem, contact, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (server_url) DO UPDATE SET account_url = excluded.account_url, key_pem = excluded.key_pem, \
             contact = excluded.contact",
        )
        .bind(a.server_url.as_str())
        .bind(a.account_url.as_str())
        .bind(a.key_pem.as_str())
        .bind(json_to_string(&a.contact))
        .bind(a.created_at)
        .execute(&self.pool)
        .await
        .ctx(|| format!("storing the ACME account for {}", a.server_url))?;
        Ok(())
    }

    /// Publishes an http-01 answer for every node's responder (replacing one with this token).
    pub async fn put_challenge(&self, c: &Challenge) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO challenges (token, key_authorization, identifier, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (token) DO UPDATE SET key_authorization = excluded.key_authorization, \
             identifier = excluded.identifier, expires_at = excluded.expires_at",
        )
        .bind(c.token.as_str())
        .bind(c.key_authorization.as_str())
        .bind(c.identifier.as_str())
        .bind(c.expires_at)
        .execute(&self.pool)
        .await
        .ctx(|| format!("publishing the http-01 challenge for {}", c.identifier))?;
        Ok(())
    }

    /// The unexpired challenge with this token.
    pub async fn challenge(&self, token: &str, now: UnixTime) -> Result<Option<Challenge>, DbError> {
        let op = || "looking up an http-01 challenge".to_owned();
        let row = sqlx::query(
            "SELECT token, key_authorization, identifier, expires_at FROM challenges WHERE token = $1 AND expires_at > $2",
        )
        .bind(token)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .ctx(op)?;
        row.as_ref().map(challenge_from_row).transpose().ctx(op)
    }

    /// `true` if it existed.
    pub async fn delete_challenge(&self, token: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM challenges WHERE token = $1")
            .bind(token)
            .execute(&self.pool)
            .await
            .ctx(|| "removing an http-01 challenge".to_owned())?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes every challenge expired at `now`; returns how many.
    pub async fn expire_challenges(&self, now: UnixTime) -> Result<u64, DbError> {
        let done = sqlx::query("DELETE FROM challenges WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .ctx(|| "removing expired http-01 challenges".to_owned())?;
        Ok(done.rows_affected())
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>, DbError> {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .ctx(|| format!("reading setting {key:?}"))
    }

    pub async fn put_setting(&self, key: &str, value: &str, now: UnixTime) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(value)
        .bind(now)
        .execute(&self.pool)
        .await
        .ctx(|| format!("storing setting {key:?}"))?;
        Ok(())
    }
}
