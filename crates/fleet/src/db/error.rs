//! One error type for the fleet database. Every message says which operation failed and on
//! which certificate or host; the sqlx error stays attached as the source.

/// Why an enrollment token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    #[error("unknown enrollment token (mistyped, or its host was deleted): ask for a new one")]
    Unknown,
    #[error("the enrollment token of host {host:?} has expired: ask for a new one")]
    Expired { host: String },
    #[error("the enrollment token of host {host:?} was already used: ask for a new one")]
    Used { host: String },
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open the fleet database {target}: {detail}")]
    Open { target: String, detail: String },
    #[error("cannot connect to the fleet database {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot bring the fleet database {target} up to date: {source}")]
    Migrate {
        target: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed; `op` says what was being done, e.g. `reading certificate "www"`.
    #[error("{op}: {source}")]
    Sql {
        op: String,
        #[source]
        source: sqlx::Error,
    },
    /// A unique name (or key) is taken, e.g. "a certificate named "www" already exists".
    #[error("{0}")]
    Conflict(String),
    #[error("there is no {what} named {name:?}")]
    NotFound { what: &'static str, name: String },
    /// The renewal lease of a certificate is held by another node (or by nobody) now.
    #[error("the renewal lease of certificate {certificate:?} is no longer held by {owner:?}{}",
        holder.as_ref().map(|h| format!(" (now held by {h:?})")).unwrap_or_default())]
    LeaseLost {
        certificate: String,
        owner: String,
        holder: Option<String>,
    },
    #[error(transparent)]
    Token(#[from] TokenRejected),
    /// A stored value does not decode (edited by hand, or written by a newer version).
    #[error("the {what} stored for {name:?} is damaged: {detail}")]
    Corrupt {
        what: &'static str,
        name: String,
        detail: String,
    },
}

impl DbError {
    pub(crate) fn not_found(what: &'static str, name: &str) -> Self {
        DbError::NotFound {
            what,
            name: name.to_owned(),
        }
    }

    pub(crate) fn corrupt(what: &'static str, name: &str, detail: impl std::fmt::Display) -> Self {
        DbError::Corrupt {
            what,
            name: name.to_owned(),
            detail: detail.to_string(),
        }
    }

    /// True for a unique-constraint violation ("name already taken").
    pub fn is_conflict(&self) -> bool {
        matches!(self, DbError::Conflict(_))
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, DbError::NotFound { .. })
    }
}

/// Attaches "what was being done" to a sqlx error.
pub(crate) trait Context<T> {
    fn ctx(self, op: impl FnOnce() -> String) -> Result<T, DbError>;
    /// As [`Context::ctx`], but a unique violation becomes [`DbError::Conflict`] with `conflict`.
    fn ctx_unique(self, op: impl FnOnce() -> String, conflict: impl FnOnce() -> String)
    -> Result<T, DbError>;
}

impl<T> Context<T> for Result<T, sqlx::Error> {
    fn ctx(self, op: impl FnOnce() -> String) -> Result<T, DbError> {
        self.map_err(|source| DbError::Sql { op: op(), source })
    }

    fn ctx_unique(
        self,
        op: impl FnOnce() -> String,
        conflict: impl FnOnce() -> String,
    ) -> Result<T, DbError> {
        self.map_err(|source| match &source {
            sqlx::Error::Database(e) if e.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                DbError::Conflict(conflict())
            }
            _ => DbError::Sql { op: op(), source },
        })
    }
}
