//! API failures: a status, a stable kind and a message that says what to do, as JSON
//! ([`crate::proto::ApiError`]). Internal errors are logged in full and answered vaguely.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::db::DbError;
use crate::proto::ApiError;

#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl ApiFailure {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed; its log says why",
        )
    }
}

impl From<DbError> for ApiFailure {
    fn from(e: DbError) -> Self {
        match &e {
            DbError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            DbError::NotFound { .. } => Self::not_found(e.to_string()),
            DbError::Token(_) => Self::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()),
            _ => Self::internal(e),
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let body = ApiError {
            error: self.kind.to_string(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}
