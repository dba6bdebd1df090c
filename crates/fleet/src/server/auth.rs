//! Who is asking: an admin (bearer token), an enrolled host (TLS client certificate from the
//! internal CA), or nobody. The two credential kinds are checked by different extractors, so an
//! agent credential can never act as an admin and the other way round.
//!
//! Failed attempts (a credential presented and refused) are counted per remote address; past
//! [`MAX_FAILURES`] in [`FAILURE_WINDOW`] that address gets `429` without its credential being
//! looked at, and each failure is logged with the address (never with what was presented). A
//! request without any credential is a plain `401`, not counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};

use super::error::ApiFailure;
use super::state::AppState;
use crate::db::Host;
use crate::tls::PeerIdentity;
use crate::token::hash_secret;

pub const MAX_FAILURES: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Failed authentications per remote address, in fixed windows.
#[derive(Default)]
pub struct FailureLimiter {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailureLimiter {
    /// Too many failures from `ip` in the current window?
    pub fn blocked(&self, ip: IpAddr) -> bool {
        let map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip)
            .is_some_and(|(start, n)| start.elapsed() < FAILURE_WINDOW && *n >= MAX_FAILURES)
    }

    pub fn record_failure(&self, ip: IpAddr) {
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        // Forget old windows so the map cannot grow without bound under a scan.
        if map.len() > 10_000 {
            map.retain(|_, (start, _)| start.elapsed() < FAILURE_WINDOW);
        }
        let entry = map.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= FAILURE_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

fn peer(parts: &Parts) -> Option<&PeerIdentity> {
    parts.extensions.get::<PeerIdentity>()
}

fn remote_ip(parts: &Parts) -> Option<IpAddr> {
    peer(parts).map(|p| p.remote_addr.ip())
}

/// Refuse early when this address failed too often; call before checking a credential.
pub fn check_not_blocked(state: &AppState, parts: &Parts) -> Result<(), ApiFailure> {
    if let Some(ip) = remote_ip(parts)
        && state.limiter.blocked(ip)
    {
        return Err(ApiFailure::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            format!("too many failed authentications from {ip}; wait a minute"),
        ));
    }
    Ok(())
}

pub fn auth_failed(state: &AppState, parts: &Parts, what: &str) -> ApiFailure {
    let ip = remote_ip(parts);
    if let Some(ip) = ip {
        state.limiter.record_failure(ip);
    }
    let from = ip
        .map(|i| i.to_string())
        .unwrap_or_else(|| "an unknown address".into());
    tracing::warn!(
        "failed authentication from {from} on {} {}: {what}",
        parts.method,
        parts.uri.path()
    );
    ApiFailure::new(StatusCode::UNAUTHORIZED, "unauthorized", what.to_string())
}

/// A request that presents no credential at all: always `401` with what to present. It guesses
/// nothing, so it is neither counted nor refused with `429` (a client that forgot its token
/// learns that, not "wait a minute"; and such requests cannot lock the admin out).
fn no_credential(what: &str) -> ApiFailure {
    ApiFailure::new(StatusCode::UNAUTHORIZED, "unauthorized", what.to_string())
}

/// A request carrying a valid admin token.
pub struct Admin;

impl<S> FromRequestParts<S> for Admin
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = token else {
            return Err(no_credential(
                "this needs the admin token (Authorization: Bearer ...; `certfleet fleet --token-file FILE`)",
            ));
        };
        check_not_blocked(&state, parts)?;
        match state.db.check_admin_token(&hash_secret(token)).await {
            Ok(Some(_)) => Ok(Admin),
            Ok(None) => Err(auth_failed(&state, parts, "the admin token is not valid")),
            Err(e) => Err(e.into()),
        }
    }
}

/// A request from an enrolled host (its TLS client certificate is the credential).
pub struct AgentHost(pub Host);

impl<S> FromRequestParts<S> for AgentHost
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let Some(fp) = peer(parts).and_then(|p| p.client_cert_fingerprint.clone()) else {
            return Err(no_credential(
                "this needs the host's client certificate: enroll with `certfleet agent enroll`",
            ));
        };
        check_not_blocked(&state, parts)?;
        match state.db.host_by_fingerprint(&fp).await {
            Ok(Some(host)) => {
                // Every agent request is a check-in: the dashboard's "last seen".
                let version = parts
                    .headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("certfleet/"))
                    .unwrap_or("unknown");
                state.db.touch_host(&host.name, state.now(), version).await?;
                Ok(AgentHost(host))
            }
            Ok(None) => Err(auth_failed(
                &state,
                parts,
                "this client certificate belongs to no enrolled host (removed? enroll again with a new token)",
            )),
            Err(e) => Err(e.into()),
        }
    }
}
