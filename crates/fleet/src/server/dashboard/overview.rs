//! `/`: counts by state, hosts in sync / out of sync / silent, what the watch found, and
//! first of all the certificates and endpoints that need a human.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::{Session, badge, cert_link, expiry_note, html_response, layout, relative, when};
use crate::server::state::AppState;

/// When the renewal loop tries next, or since when it should have.
fn next_note(n: i64, now: i64) -> String {
    if n <= now {
        format!("renewal due since {}", relative(n, now).trim_end_matches(" ago"))
    } else {
        format!("next attempt {}", relative(n, now))
    }
}

/// Rows of each "needs a human" list.
const NEEDS_LIMIT: u32 = 25;

pub async fn page(State(s): State<AppState>, sess: Session) -> Response {
    let now = s.now();
    let o = match s.db.overview(now, NEEDS_LIMIT).await {
        Ok(o) => o,
        Err(e) => return super::db_failure(e),
    };
    let total: i64 = o.by_state.iter().map(|(_, n)| n).sum();
    let served_total: i64 = o.served.iter().map(|(_, n)| n).sum();
    let body = html! {
        h1 { "Overview" }
        h2 { "Needs a human" }
        @if o.needs_human.is_empty() && o.served_problems.is_empty() {
            p { "Nothing: every certificate renews on time and every watched endpoint serves the newest one." }
        }
        @if !o.needs_human.is_empty() {
            div.scroll { table {
                thead { tr { th { "Certificate" } th { "State" } th { "Expires" } th { "Why" } } }
                tbody { @for c in &o.needs_human {
                    tr {
                        td { a href=(cert_link(&c.name)) { (c.name) } br; small { (c.identifiers.join(", ")) } }
                        td { (badge(&c.state)) }
                        td { @if let Some(na) = c.not_after { (when(na)) br; small { (expiry_note(na, now)) } } @else { "-" } }
                        td {
                            @if let Some(e) = &c.last_error {
                                (e) br; small { (c.consecutive_failures) " failure(s) in a row" }
                            } @else if c.state == "expired" {
                                "expired without a successful renewal"
                                @if let (Some(n), Some(r)) = (c.next_attempt, &c.next_attempt_reason) { br; small { (next_note(n, now)) ": " (r) } }
                            } @else if c.state == "expiring" {
                                "less than a sixth of its lifetime left and not renewed"
                                @if let (Some(n), Some(r)) = (c.next_attempt, &c.next_attempt_reason) { br; small { (next_note(n, now)) ": " (r) } }
                            } @else { "-" }
                        }
                    }
                } }
            } }
        }
        @if !o.served_problems.is_empty() {
            h2 { "Endpoints not serving the newest certificate correctly" }
            div.scroll { table {
                thead { tr { th { "Endpoint" } th { "Certificate" } th { "State" } th { "What was served" } } }
                tbody { @for c in &o.served_problems {
                    tr {
                        td { (c.endpoint) br; small { (c.source) } }
                        td { a href=(cert_link(&c.certificate)) { (c.certificate) } }
                        td { (badge(&c.state)) }
                        td { (c.detail) br; small { "checked " (relative(c.checked_at, now)) } }
                    }
                } }
            } }
        }
        h2 { "Certificates (" (total) ")" }
        div.cards {
            @for (state, n) in &o.by_state {
                a.card href={ "/certificates?state=" (state) } { b { (n) } (badge(state)) }
            }
        }
        h2 { "Hosts" }
        div.cards {
            a.card href="/hosts" { b { (o.hosts.in_sync) } (badge("in-sync")) }
            a.card href="/hosts" { b { (o.hosts.out_of_sync) } (badge("out-of-sync")) }
            a.card href="/hosts" { b { (o.hosts.silent) } (badge("silent")) }
            a.card href="/hosts" { b { (o.hosts.never) } (badge("not-enrolled")) }
        }
        h2 { "Served-certificate watch (" (served_total) " endpoints)" }
        @if o.served.is_empty() {
            p { "No endpoint watched yet: agents report the endpoints they verify; add others on a certificate's page." }
        } @else {
            div.cards { @for (state, n) in &o.served { div.card { b { (n) } (badge(state)) } } }
        }
    };
    html_response(StatusCode::OK, layout("Overview", Some(&sess.csrf), body))
}
