//! `/login` and `/logout`.
//!
//! The login form has its own CSRF token (a cookie set with the form, compared with the hidden
//! field), so another site cannot log a browser into this dashboard either. The secret is the
//! admin token or the dashboard password; failures count against the address.

use std::net::IpAddr;

use axum::Form;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::password::{PASSWORD_SETTING, verify_password};
use super::{
    LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL_SECONDS, Session, cookie, csrf_field, html_response, layout,
};
use crate::server::state::AppState;
use crate::tls::PeerIdentity;
use crate::token::{hash_secret, new_secret};

const LOGIN_COOKIE_TTL: i64 = 3600;

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    secret: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

fn set_cookie(resp: &mut Response, name: &str, value: &str, max_age: i64) {
    let c = format!("{name}={value}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let token = new_secret();
    let body = layout(
        "Log in",
        None,
        html! {
            form.login method="post" action="/login" {
                h1 { "Log in to certfleet" }
                @if let Some(m) = message {
                    p.error role="alert" { (m) }
                }
                label for="secret" { "Admin token or dashboard password" }
                input id="secret" type="password" name="secret" autocomplete="current-password" required autofocus;
                (csrf_field(&token))
                button type="submit" { "Log in" }
                p { small { "The admin token is in the server's data dir (admin.token). Set a password with "
                    code { "certfleet fleet admin passwd" } "." } }
            }
        },
    );
    let mut resp = html_response(status, body);
    set_cookie(&mut resp, LOGIN_COOKIE, &token, LOGIN_COOKIE_TTL);
    resp
}

/// `GET /login`.
pub async fn form() -> Response {
    login_page(StatusCode::OK, None)
}

fn remote_ip(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<PeerIdentity>().map(|p| p.remote_addr.ip())
}

/// `POST /login`.
pub async fn submit(State(s): State<AppState>, parts: Parts, Form(f): Form<LoginForm>) -> Response {
    let ip = remote_ip(&parts);
    if let Some(ip) = ip
        && s.limiter.blocked(ip)
    {
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed logins from your address. Wait a minute, then try again."),
        );
    }
    let expected = cookie(&parts.headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !super::constant_time_eq(expected.as_bytes(), f.csrf.as_bytes()) {
        tracing::warn!("dashboard login without the login form's CSRF token refused");
        return super::csrf_refused();
    }
    let secret = f.secret.trim();
    let ok = if secret.is_empty() {
        Some(false)
    } else {
        check_secret(&s, secret).await
    };
    match ok {
        Some(true) => {}
        Some(false) => {
            if let Some(ip) = ip {
                s.limiter.record_failure(ip);
            }
            let from = ip
                .map(|i| i.to_string())
                .unwrap_or_else(|| "an unknown address".into());
            tracing::warn!("failed dashboard login from {from}");
            return login_page(
                StatusCode::UNAUTHORIZED,
                Some("That is neither the admin token nor the dashboard password."),
            );
        }
        None => {
            return super::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Server error",
                "The server could not check the secret; its log says why.",
            );
        }
    }
    let value = new_secret();
    let csrf = new_secret();
    let now = s.now();
    if let Err(e) =
        s.db.create_session(&hash_secret(&value), &csrf, now, now + SESSION_TTL_SECONDS)
            .await
    {
        return super::db_failure(e);
    }
    let mut resp = super::secure(Redirect::to("/").into_response());
    set_cookie(&mut resp, SESSION_COOKIE, &value, SESSION_TTL_SECONDS);
    set_cookie(&mut resp, LOGIN_COOKIE, "", 0);
    resp
}

/// The admin token, or the dashboard password (scrypt, off the async threads). `None`: the
/// check itself failed (logged).
async fn check_secret(s: &AppState, secret: &str) -> Option<bool> {
    let failed = |e: &dyn std::fmt::Display| {
        tracing::error!("dashboard login: {e}");
        None
    };
    match s.db.check_admin_token(&hash_secret(secret)).await {
        Ok(Some(_)) => return Some(true),
        Ok(None) => {}
        Err(e) => return failed(&e),
    }
    let stored = match s.db.setting(PASSWORD_SETTING).await {
        Ok(Some(h)) => h,
        Ok(None) => return Some(false),
        Err(e) => return failed(&e),
    };
    let secret = secret.to_string();
    match tokio::task::spawn_blocking(move || verify_password(&secret, &stored)).await {
        Ok(ok) => Some(ok),
        Err(e) => failed(&e),
    }
}

/// `POST /logout`: ends the session (CSRF-checked, so another site cannot log you out).
pub async fn logout(State(s): State<AppState>, sess: Session, Form(f): Form<CsrfForm>) -> Response {
    if !sess.csrf_ok(&f.csrf) {
        return super::csrf_refused();
    }
    if let Err(e) = s.db.delete_session(&sess.id_hash).await {
        return super::db_failure(e);
    }
    let mut resp = super::secure(Redirect::to("/login").into_response());
    set_cookie(&mut resp, SESSION_COOKIE, "", 0);
    resp
}
