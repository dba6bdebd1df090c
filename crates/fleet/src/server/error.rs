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
/// Only plain text (or no body type) is rewritten: the dashboard's HTML error pages stay pages.
pub async fn json_rejections(resp: Response) -> Response {
    let status = resp.status();
    let plain = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    if !status.is_client_error() || !plain {
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

/// Request bodies are at most this big (axum's default limit for JSON).
pub const MAX_BODY: usize = 2 << 20;

/// Reads the whole request body before the handler runs. Over HTTP/2 an answer given before the
/// body was read (a 401, or a 415 for JSON sent as text/plain) makes hyper reset the stream, and
/// clients such as curl then report a framing error instead of the answer; with the body read
/// first every client sees the status and the [`ApiError`] that says what was wrong.
pub async fn read_body_first(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiFailure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("the request body is over {} MiB or was cut off", MAX_BODY >> 20),
            )
            .into_response();
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}
