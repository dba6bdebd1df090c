//! The web dashboard, on the API's HTTPS listener: server-rendered HTML (maud), no JavaScript,
//! one small inline style sheet that also fits a phone. One file per page.
//!
//! Login ([`login`]) with the admin token or the dashboard password (`certfleet fleet admin
//! passwd`, stored as a scrypt hash, see [`password`]). A login makes a session: a random value
//! in the cookie `__Host-certfleet-session` (`Secure; HttpOnly; SameSite=Strict; Path=/`), only
//! its SHA-256 in the database, with an expiry and a CSRF token. Every form carries that token
//! and every POST is refused (403) without it. Failed logins count against the address like
//! failed API authentications ([`super::auth::FailureLimiter`]): past the limit the address
//! gets 429 without its secret being looked at.

pub mod certificate;
pub mod certificates;
pub mod host;
pub mod hosts;
pub mod login;
pub mod overview;
pub mod password;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::state::AppState;
use crate::db::DbError;
use crate::proto::UnixTime;
use crate::token::hash_secret;

pub const SESSION_COOKIE: &str = "__Host-certfleet-session";
/// Pre-login CSRF cookie: the login form's token is checked against it.
pub const LOGIN_COOKIE: &str = "__Host-certfleet-login";
/// A session lasts this long (then log in again).
pub const SESSION_TTL_SECONDS: i64 = 12 * 3600;
/// Rows on one page of the certificate list.
pub const PAGE_SIZE: u32 = 50;

/// The dashboard's routes (the API's router merges them).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/certificates", get(certificates::page))
        .route("/certificates/{name}", get(certificate::page))
        .route("/certificates/{name}/renew", post(certificate::renew))
        .route("/certificates/{name}/enable", post(certificate::enable))
        .route("/certificates/{name}/disable", post(certificate::disable))
        .route("/certificates/{name}/endpoints", post(certificate::add_endpoint))
        .route(
            "/certificates/{name}/endpoints/remove",
            post(certificate::remove_endpoint),
        )
        .route("/hosts", get(hosts::page))
        .route("/hosts/{name}", get(host::page))
}

/// A logged-in request: the session's hashed id and CSRF token. Without a valid session,
/// pages redirect to `/login` and POSTs get 403.
pub struct Session {
    pub id_hash: String,
    pub csrf: String,
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let Some(value) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(not_logged_in(parts));
        };
        let id_hash = hash_secret(value);
        match s.db.session(&id_hash, s.now()).await {
            Ok(Some(sess)) => Ok(Session {
                id_hash,
                csrf: sess.csrf,
            }),
            Ok(None) => Err(not_logged_in(parts)),
            Err(e) => Err(db_failure(e)),
        }
    }
}

fn not_logged_in(parts: &Parts) -> Response {
    if parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD {
        Redirect::to("/login").into_response()
    } else {
        error_page(
            StatusCode::FORBIDDEN,
            "Not logged in",
            "This action needs a dashboard session, and there is none (expired, or logged out). Log in again, then retry.",
        )
    }
}

impl Session {
    /// Whether a POST's form token is this session's; when not, answer [`csrf_refused`].
    pub fn csrf_ok(&self, sent: &str) -> bool {
        let ok = !sent.is_empty() && constant_time_eq(sent.as_bytes(), self.csrf.as_bytes());
        if !ok {
            tracing::warn!("dashboard: a POST without this session's CSRF token was refused");
        }
        ok
    }
}

pub fn csrf_refused() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Form refused (CSRF check)",
        "This form did not carry the token of your dashboard session, so it may not come from this dashboard. \
         Nothing was changed. Go back, reload the page, and submit it again.",
    )
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// The hidden field every form carries.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// Headers every dashboard answer gets: no caching of fleet data, no framing, no scripts.
pub fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

pub fn html_response(status: StatusCode, body: Markup) -> Response {
    secure((status, body).into_response())
}

pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    html_response(
        status,
        layout(
            title,
            None,
            html! {
                h1 { (title) }
                p.error { (message) }
                p { a href="/" { "Back to the overview" } }
            },
        ),
    )
}

pub fn db_failure(e: DbError) -> Response {
    if e.is_not_found() {
        return error_page(StatusCode::NOT_FOUND, "Not found", &e.to_string());
    }
    tracing::error!("dashboard: {e}");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Server error",
        "The server could not read its database; its log says why.",
    )
}

const STYLE: &str = "\
*{box-sizing:border-box}body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}\
header{background:#1f2937;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;align-items:center}\
header a{color:#fff;text-decoration:none}header .brand{font-weight:700;margin-right:auto}\
header form{margin:0}header button{background:none;border:1px solid #9ca3af;color:#fff;border-radius:4px;padding:.15rem .6rem}\
main{padding:1rem;max-width:1200px;margin:auto}h1{font-size:1.35rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}\
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(130px,1fr));gap:.6rem}\
.card{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:.6rem .8rem;text-decoration:none;color:inherit}\
.card b{display:block;font-size:1.6rem}.scroll{overflow-x:auto;background:#fff;border:1px solid #e5e7eb;border-radius:6px}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #eef0f3;vertical-align:top}\
th{font-size:.8rem;text-transform:uppercase;color:#6b7280;background:#fafafa}td small{color:#6b7280}\
.st{display:inline-block;border-radius:999px;padding:0 .55rem;font-size:.8rem;font-weight:600;white-space:nowrap}\
.s-valid,.s-ok,.s-verified,.s-installed,.s-in-sync{background:#dcfce7;color:#166534}\
.s-renewing,.s-pending,.s-waiting{background:#e0f2fe;color:#075985}\
.s-expiring,.s-stale,.s-incomplete-chain,.s-untrusted,.s-out-of-sync,.s-not-configured{background:#fef3c7;color:#92400e}\
.s-failing,.s-expired,.s-mismatch,.s-unreachable,.s-failed,.s-rolled-back,.s-config-test-failed,.s-silent{background:#fee2e2;color:#991b1b}\
.s-disabled,.s-not-enrolled{background:#e5e7eb;color:#374151}.error{color:#991b1b}\
form.inline{display:inline}button,input,select{font:inherit}input,select{padding:.3rem .4rem;border:1px solid #d1d5db;border-radius:4px}\
button{padding:.3rem .8rem;border-radius:4px;border:1px solid #1f2937;background:#1f2937;color:#fff;cursor:pointer}\
.filters{display:flex;flex-wrap:wrap;gap:.5rem;margin-bottom:.8rem}.pager{margin:.8rem 0;display:flex;gap:1rem}\
.login{max-width:360px;margin:12vh auto;background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:1.2rem}\
.login input{width:100%;margin:.4rem 0 .8rem}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{color:#6b7280}dd{margin:0}\
@media (max-width:640px){main{padding:.5rem}th,td{padding:.3rem .4rem}.hide-sm{display:none}}";

/// The page frame; `csrf`: the session's token for the logout button (`None`: not logged in).
pub fn layout(title: &str, csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · certfleet" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a.brand href="/" { "certfleet" }
                    @if let Some(token) = csrf {
                        a href="/" { "Overview" }
                        a href="/certificates" { "Certificates" }
                        a href="/hosts" { "Hosts" }
                        form method="post" action="/logout" {
                            (csrf_field(token))
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A state as a coloured badge.
pub fn badge(state: &str) -> Markup {
    html! { span class={ "st s-" (state) } { (state) } }
}

/// `2026-12-03 18:00 UTC`.
pub fn when(t: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// `in 3 d` / `5 h ago`.
pub fn relative(t: UnixTime, now: UnixTime) -> String {
    let d = t - now;
    let a = d.abs();
    let span = if a >= 2 * 86_400 {
        format!("{} d", a / 86_400)
    } else if a >= 2 * 3600 {
        format!("{} h", a / 3600)
    } else if a >= 120 {
        format!("{} min", a / 60)
    } else {
        format!("{a} s")
    };
    if d >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// Whole days from `now` to `t` (negative: past).
pub fn days_left(t: UnixTime, now: UnixTime) -> i64 {
    (t - now).div_euclid(86_400)
}

/// `12 days left` / `expired 3 days ago`.
pub fn expiry_note(t: UnixTime, now: UnixTime) -> String {
    let d = days_left(t, now);
    if t <= now {
        format!("expired {} days ago", (now - t) / 86_400)
    } else if d == 1 {
        "1 day left".into()
    } else {
        format!("{d} days left")
    }
}

/// `/certificates/NAME` with the name percent-encoded (names are plain, but never trust that).
pub fn cert_link(name: &str) -> String {
    format!("/certificates/{}", encode(name))
}

pub fn host_link(name: &str) -> String {
    format!("/hosts/{}", encode(name))
}

pub fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
