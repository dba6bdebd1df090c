//! `/certificates/{name}`: one certificate, what each host installed, what each endpoint
//! serves, its event history; actions (renew now, disable, enable, watch an endpoint) as
//! CSRF-checked POST forms that answer with a redirect back here.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::{
    Session, badge, cert_link, csrf_field, days_left, expiry_note, host_link, html_response, layout,
    relative, secure, when,
};
use crate::agent::config::Endpoint;
use crate::db::NewEvent;
use crate::server::state::AppState;

/// Events shown.
const EVENTS: u32 = 200;
/// Who the event log names for dashboard actions.
const ACTOR: &str = "admin (dashboard)";

pub async fn page(State(s): State<AppState>, sess: Session, Path(name): Path<String>) -> Response {
    let now = s.now();
    let c = match s.db.certificate_row(&name, now).await {
        Ok(c) => c,
        Err(e) => return super::db_failure(e),
    };
    let (installs, served, events) = match tokio::try_join!(
        s.db.install_rows(Some(&name), None),
        s.db.served_checks(&name),
        s.db.events(Some(&name), EVENTS)
    ) {
        Ok(x) => x,
        Err(e) => return super::db_failure(e),
    };
    let link = cert_link(&name);
    let body = html! {
        h1 { (c.name) " " (badge(&c.state)) }
        dl {
            dt { "Names" } dd { (c.identifiers.join(", ")) }
            dt { "Issuer" } dd { (c.issuer.as_deref().unwrap_or("-")) }
            dt { "Serial" } dd { (c.serial.as_deref().unwrap_or("-")) }
            dt { "Expires" } dd {
                @if let Some(na) = c.not_after { (when(na)) " (" (expiry_note(na, now)) ")" } @else { "not issued yet" }
            }
            dt { "Next renewal" } dd {
                @if let Some(n) = c.next_attempt { (when(n)) " (" (relative(n, now)) "): " (c.next_attempt_reason.as_deref().unwrap_or("")) }
                @else { "-" }
            }
            dt { "Last error" } dd {
                @if let Some(e) = &c.last_error { span.error { (e) } " (" (c.consecutive_failures) " in a row)" } @else { "none" }
            }
        }
        p {
            form.inline method="post" action={ (link) "/renew" } { (csrf_field(&sess.csrf)) button type="submit" { "Renew now" } }
            " "
            @if c.enabled {
                form.inline method="post" action={ (link) "/disable" } { (csrf_field(&sess.csrf)) button type="submit" { "Disable" } }
            } @else {
                form.inline method="post" action={ (link) "/enable" } { (csrf_field(&sess.csrf)) button type="submit" { "Enable" } }
            }
        }
        h2 { "Hosts" }
        @if installs.is_empty() { p { "Not assigned to any host." } } @else {
            div.scroll { table {
                thead { tr { th { "Host" } th { "State" } th { "Installed" } th { "Served" } th { "Endpoint" } th { "Error" } th { "Reported" } } }
                tbody { @for i in &installs { tr {
                    td { a href=(host_link(&i.host)) { (i.host) } }
                    td { (badge(i.state.as_deref().unwrap_or("waiting"))) @if i.in_sync() { " " (badge("in-sync")) } }
                    td { (i.installed_serial.as_deref().unwrap_or("-")) }
                    td { (i.served_serial.as_deref().unwrap_or("-")) }
                    td { (i.endpoint.as_deref().unwrap_or("-")) }
                    td { @if let Some(e) = &i.error { span.error { (e) } } @else { "-" } }
                    td { @if let Some(t) = i.reported_at { (relative(t, now)) } @else { "never" } }
                } } }
            } }
        }
        h2 { "What endpoints serve" }
        @if served.is_empty() { p { "No finding yet (the watch checks every interval)." } } @else {
            div.scroll { table {
                thead { tr { th { "Endpoint" } th { "State" } th { "Finding" } th { "Days left" } th { "Checked" } th {} } }
                tbody { @for sc in &served { tr {
                    td { (sc.endpoint) br; small { (sc.source) } }
                    td { (badge(&sc.state)) }
                    td { (sc.detail) }
                    td { @if let Some(na) = sc.served_not_after { (days_left(na, now)) } @else { "-" } }
                    td { (relative(sc.checked_at, now)) }
                    td { @if sc.source == "admin" {
                        form.inline method="post" action={ (link) "/endpoints/remove" } {
                            (csrf_field(&sess.csrf)) input type="hidden" name="endpoint" value=(sc.endpoint);
                            button type="submit" { "Stop watching" }
                        }
                    } }
                } } }
            } }
        }
        form.filters method="post" action={ (link) "/endpoints" } {
            (csrf_field(&sess.csrf))
            input name="endpoint" placeholder="HOST:PORT" required aria-label="Endpoint";
            input name="sni" placeholder="server name (optional)" aria-label="Server name";
            button type="submit" { "Watch this endpoint" }
        }
        h2 { "History" }
        div.scroll { table {
            thead { tr { th { "When" } th { "Event" } th { "Host" } th { "By" } th { "Detail" } } }
            tbody { @for e in &events { tr {
                td { (when(e.at)) }
                td { (e.kind) }
                td { @if let Some(h) = &e.host { a href=(host_link(h)) { (h) } } @else { "-" } }
                td { (e.actor) }
                td { (e.detail) }
            } } }
        } }
    };
    html_response(StatusCode::OK, layout(&name, Some(&sess.csrf), body))
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub struct EndpointForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    sni: String,
}

async fn log(s: &AppState, name: &str, kind: &str, detail: &str) {
    let ev = NewEvent {
        at: s.now(),
        certificate: Some(name),
        host: None,
        kind,
        actor: ACTOR,
        detail,
    };
    if let Err(e) = s.db.append_event(&ev).await {
        tracing::warn!("recording event {kind}: {e}");
    }
}

fn back(name: &str) -> Response {
    secure(Redirect::to(&cert_link(name)).into_response())
}

pub async fn renew(
    State(s): State<AppState>,
    sess: Session,
    Path(name): Path<String>,
    Form(f): Form<ActionForm>,
) -> Response {
    if !sess.csrf_ok(&f.csrf) {
        return super::csrf_refused();
    }
    if let Err(e) =
        s.db.schedule(&name, s.now(), crate::server::renewal::ADMIN_RENEW_REASON)
            .await
    {
        return super::db_failure(e);
    }
    log(&s, &name, "renew-requested", "").await;
    s.wake.notify_one();
    back(&name)
}

async fn set_enabled(s: AppState, sess: Session, name: String, csrf: &str, enabled: bool) -> Response {
    if !sess.csrf_ok(csrf) {
        return super::csrf_refused();
    }
    if let Err(e) = s.db.set_enabled(&name, enabled).await {
        return super::db_failure(e);
    }
    log(&s, &name, if enabled { "enabled" } else { "disabled" }, "").await;
    if enabled {
        s.wake.notify_one();
    }
    back(&name)
}

pub async fn enable(
    State(s): State<AppState>,
    sess: Session,
    Path(name): Path<String>,
    Form(f): Form<ActionForm>,
) -> Response {
    set_enabled(s, sess, name, &f.csrf, true).await
}

pub async fn disable(
    State(s): State<AppState>,
    sess: Session,
    Path(name): Path<String>,
    Form(f): Form<ActionForm>,
) -> Response {
    set_enabled(s, sess, name, &f.csrf, false).await
}

pub async fn add_endpoint(
    State(s): State<AppState>,
    sess: Session,
    Path(name): Path<String>,
    Form(f): Form<EndpointForm>,
) -> Response {
    if !sess.csrf_ok(&f.csrf) {
        return super::csrf_refused();
    }
    let endpoint: Endpoint = match f.endpoint.trim().parse() {
        Ok(e) => e,
        Err(why) => {
            return super::error_page(
                StatusCode::BAD_REQUEST,
                "Endpoint not added",
                &format!(
                    "{:?} is not an endpoint ({why}): write HOST:PORT, e.g. www.example.com:443 or [2001:db8::1]:443",
                    f.endpoint
                ),
            );
        }
    };
    let sni = f.sni.trim();
    if !sni.is_empty() && rustls::pki_types::ServerName::try_from(sni.to_string()).is_err() {
        return super::error_page(
            StatusCode::BAD_REQUEST,
            "Endpoint not added",
            &format!(
                "{sni:?} is not a server name: write the DNS name the service answers to, or leave it empty"
            ),
        );
    }
    let endpoint = endpoint.to_string();
    match s
        .db
        .add_watch_endpoint(&name, &endpoint, (!sni.is_empty()).then_some(sni), s.now())
        .await
    {
        Ok(true) => log(&s, &name, "watch-added", &endpoint).await,
        Ok(false) => {}
        Err(e) => return super::db_failure(e),
    }
    back(&name)
}

pub async fn remove_endpoint(
    State(s): State<AppState>,
    sess: Session,
    Path(name): Path<String>,
    Form(f): Form<EndpointForm>,
) -> Response {
    if !sess.csrf_ok(&f.csrf) {
        return super::csrf_refused();
    }
    match s.db.remove_watch_endpoint(&name, &f.endpoint).await {
        Ok(true) => log(&s, &name, "watch-removed", &f.endpoint).await,
        Ok(false) => {}
        Err(e) => return super::db_failure(e),
    }
    back(&name)
}
