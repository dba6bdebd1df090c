//! `/hosts`: every host, when it last checked in, its agent version, how many of its
//! certificates it has not installed at their current serial yet, and its failures.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::{Session, badge, host_link, html_response, layout, relative};
use crate::db::SILENT_AFTER_SECONDS;
use crate::server::state::AppState;

pub async fn page(State(s): State<AppState>, sess: Session) -> Response {
    let now = s.now();
    let hosts = match s.db.host_rows().await {
        Ok(h) => h,
        Err(e) => return super::db_failure(e),
    };
    let body = html! {
        h1 { "Hosts" }
        @if hosts.is_empty() {
            p { "No host yet: " code { "certfleet fleet host add NAME" } " prints the token its agent enrolls with." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Host" } th { "State" } th { "Last check-in" } th { "Agent" } th { "Behind" } th { "Failures" } } }
                tbody { @for h in &hosts {
                    @let state = match h.last_seen {
                        None => "not-enrolled",
                        Some(t) if now - t > SILENT_AFTER_SECONDS => "silent",
                        Some(_) if h.behind > 0 => "out-of-sync",
                        Some(_) => "in-sync",
                    };
                    tr {
                        td { a href=(host_link(&h.name)) { (h.name) } }
                        td { (badge(state)) }
                        td { @if let Some(t) = h.last_seen { (relative(t, now)) } @else { "never (not enrolled yet)" } }
                        td { (h.agent_version.as_deref().unwrap_or("-")) }
                        td { (h.behind) " of " (h.assigned) }
                        td { @if h.failures > 0 { span.error { (h.failures) } } @else { "0" } }
                    }
                } }
            } }
        }
    };
    html_response(StatusCode::OK, layout("Hosts", Some(&sess.csrf), body))
}
