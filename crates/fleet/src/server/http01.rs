//! http-01, answered centrally: the renewal loop's solver puts each key authorization into the
//! database, and the responder (`serve --http-01-listen`) answers
//! `GET /.well-known/acme-challenge/TOKEN` from it. Front-ends (nginx, Apache, a load
//! balancer) proxy that one path to the responder, so no host needs a webroot or port 80 of
//! its own, and a responder on any node answers a challenge created by any node.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use certfleet_core::{ChallengeType, Clock};
use certfleet_solvers::{ChallengeTask, Solver, SolverError};

use crate::db::{Challenge, FleetDb};

/// How long a presented challenge stays answerable if its cleanup never runs (a killed node).
const CHALLENGE_TTL_SECONDS: i64 = 3600;

#[derive(Clone)]
struct ResponderState {
    db: FleetDb,
    clock: Arc<dyn Clock>,
}

/// The plain-HTTP responder: only `/.well-known/acme-challenge/{token}`, 404 for anything else.
pub fn responder(db: FleetDb, clock: Arc<dyn Clock>) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(answer))
        .with_state(ResponderState { db, clock })
}

async fn answer(State(s): State<ResponderState>, Path(token): Path<String>) -> Response {
    let now = s.clock.now().unix_timestamp();
    match s.db.challenge(&token, now).await {
        Ok(Some(c)) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            c.key_authorization,
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such challenge\n").into_response(),
        Err(e) => {
            tracing::warn!("http-01 responder: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "challenge store unavailable\n").into_response()
        }
    }
}

/// The renewal loop's http-01 solver: presenting is a database write.
pub struct DbHttp01Solver {
    pub db: FleetDb,
    pub clock: Arc<dyn Clock>,
}

#[async_trait::async_trait]
impl Solver for DbHttp01Solver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Http01
    }

    async fn present(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError> {
        let expires_at = self.clock.now().unix_timestamp() + CHALLENGE_TTL_SECONDS;
        for t in tasks {
            let c = Challenge {
                token: t.token.clone(),
                key_authorization: t.key_authorization.clone(),
                identifier: t.identifier.to_string(),
                expires_at,
            };
            self.db.put_challenge(&c).await.map_err(|e| {
                SolverError::Other(format!("storing the http-01 challenge for {}: {e}", t.identifier))
            })?;
        }
        Ok(())
    }

    async fn cleanup(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError> {
        for t in tasks {
            self.db.delete_challenge(&t.token).await.map_err(|e| {
                SolverError::Other(format!(
                    "removing the http-01 challenge for {}: {e}",
                    t.identifier
                ))
            })?;
        }
        Ok(())
    }
}
