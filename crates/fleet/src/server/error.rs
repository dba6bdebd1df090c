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

/// axum's own rejections (a body that is not JSON, a wrong `Content-Type`, a malformed path or
/// query) are plain text; clients of this API expect [`ApiError`] JSON with every 4xx, so this
/// layer rewrites them, keeping the status and axum's words and adding what to send instead.
pub async fn json_rejections(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !status.is_client_error() || is_json {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let (kind, hint) = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported-media-type",
            "; send the body as JSON with `Content-Type: application/json`",
        ),
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => ("invalid", ""),
        StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", ""),
        StatusCode::PAYLOAD_TOO_LARGE => ("too-large", ""),
        _ => ("invalid", ""),
    };
    let message = if text.is_empty() {
        format!("{status}{hint}")
    } else {
        format!("{text}{hint}")
    };
    ApiFailure::new(status, kind, message).into_response()
}
