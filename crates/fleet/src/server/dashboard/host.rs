//! `/hosts/{name}`: one host: what it installed and verified for each of its certificates,
//! its failures, and its history.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::{Session, badge, cert_link, html_response, layout, relative, when};
use crate::server::state::AppState;

const EVENTS: u32 = 200;

pub async fn page(State(s): State<AppState>, sess: Session, Path(name): Path<String>) -> Response {
    let now = s.now();
    let host = match s.db.host(&name).await {
        Ok(h) => h,
        Err(e) => return super::db_failure(e),
    };
    let (installs, events) = match tokio::try_join!(
        s.db.install_rows(None, Some(&name)),
        s.db.host_events(&name, EVENTS)
    ) {
        Ok(x) => x,
        Err(e) => return super::db_failure(e),
    };
    let body = html! {
        h1 { (host.name) }
        dl {
            dt { "Last check-in" } dd { @if let Some(t) = host.last_seen { (when(t)) " (" (relative(t, now)) ")" } @else { "never" } }
            dt { "Agent version" } dd { (host.agent_version.as_deref().unwrap_or("-")) }
            dt { "Enrolled" } dd { @if let Some(t) = host.enrolled_at { (when(t)) } @else { "not yet (enrollment token pending)" } }
            dt { "Client certificate" } dd { (host.client_cert_serial.as_deref().unwrap_or("-")) }
        }
        h2 { "Certificates" }
        @if installs.is_empty() { p { "No certificate assigned." } } @else {
            div.scroll { table {
                thead { tr { th { "Certificate" } th { "State" } th { "Installed" } th { "Current" } th { "Served" } th { "Endpoint" } th { "Error" } th { "Reported" } } }
                tbody { @for i in &installs { tr {
                    td { a href=(cert_link(&i.certificate)) { (i.certificate) } }
                    td { (badge(i.state.as_deref().unwrap_or("waiting"))) @if i.in_sync() { " " (badge("in-sync")) } }
                    td { (i.installed_serial.as_deref().unwrap_or("-")) }
                    td { (i.current_serial.as_deref().unwrap_or("-")) }
                    td { (i.served_serial.as_deref().unwrap_or("-")) }
                    td { (i.endpoint.as_deref().unwrap_or("-")) }
                    td { @if let Some(e) = &i.error { span.error { (e) } } @else { "-" } }
                    td { @if let Some(t) = i.reported_at { (relative(t, now)) } @else { "never" } }
                } } }
            } }
        }
        h2 { "History" }
        div.scroll { table {
            thead { tr { th { "When" } th { "Event" } th { "Certificate" } th { "By" } th { "Detail" } } }
            tbody { @for e in &events { tr {
                td { (when(e.at)) }
                td { (e.kind) }
                td { @if let Some(c) = &e.certificate { a href=(cert_link(c)) { (c) } } @else { "-" } }
                td { (e.actor) }
                td { (e.detail) }
            } } }
        } }
    };
    html_response(StatusCode::OK, layout(&name, Some(&sess.csrf), body))
}
