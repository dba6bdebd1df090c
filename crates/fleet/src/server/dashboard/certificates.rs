//! `/certificates?q=TEXT&state=STATE&after=NAME`: one page of certificates in name order,
//! with what each host installed and what each watched endpoint serves.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    PAGE_SIZE, Session, badge, cert_link, days_left, encode, expiry_note, host_link, html_response, layout,
    relative, when,
};
use crate::db::{CertRow, DASH_STATES, InstallRow, ServedCheck};
use crate::server::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub after: Option<String>,
}

pub async fn page(State(s): State<AppState>, sess: Session, Query(p): Query<ListParams>) -> Response {
    let now = s.now();
    let q = p.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    // An unknown state filters nothing rather than failing the page.
    let state = p.state.as_deref().filter(|st| DASH_STATES.contains(st));
    let after = p.after.as_deref().filter(|a| !a.is_empty());
    let page = match s.db.certificate_page(now, q, state, after, PAGE_SIZE).await {
        Ok(p) => p,
        Err(e) => return super::db_failure(e),
    };
    let filter_query = |after: Option<&str>| {
        let mut parts = Vec::new();
        if let Some(q) = q {
            parts.push(format!("q={}", encode(q)));
        }
        if let Some(st) = state {
            parts.push(format!("state={st}"));
        }
        if let Some(a) = after {
            parts.push(format!("after={}", encode(a)));
        }
        format!("/certificates?{}", parts.join("&"))
    };
    let body = html! {
        h1 { "Certificates" }
        form.filters method="get" action="/certificates" {
            input type="search" name="q" value=(q.unwrap_or_default()) placeholder="name or domain" aria-label="Search";
            select name="state" aria-label="State" {
                option value="" selected[state.is_none()] { "any state" }
                @for st in DASH_STATES { option value=(st) selected[state == Some(st)] { (st) } }
            }
            button type="submit" { "Filter" }
        }
        @if page.rows.is_empty() {
            p { "No certificate matches." }
        } @else {
            div.scroll { table {
                thead { tr {
                    th { "Certificate" } th { "State" } th.hide-sm { "Issuer" } th { "Expires" }
                    th { "Next renewal" } th { "Last error" } th { "Hosts" } th { "Served" }
                } }
                tbody { @for c in &page.rows {
                    (row(c, page.installs.get(&c.name).map(Vec::as_slice).unwrap_or_default(),
                        page.served.get(&c.name).map(Vec::as_slice).unwrap_or_default(), now))
                } }
            } }
        }
        div.pager {
            @if after.is_some() { a href=(filter_query(None)) { "« First page" } }
            @if let Some(next) = &page.next_after { a href=(filter_query(Some(next))) { "Next page »" } }
        }
    };
    html_response(StatusCode::OK, layout("Certificates", Some(&sess.csrf), body))
}

fn row(c: &CertRow, installs: &[InstallRow], served: &[ServedCheck], now: i64) -> Markup {
    html! {
        tr {
            td { a href=(cert_link(&c.name)) { (c.name) } br; small { (c.identifiers.join(", ")) } }
            td { (badge(&c.state)) }
            td.hide-sm { (c.issuer.as_deref().unwrap_or("-")) }
            td {
                @if let Some(na) = c.not_after { (when(na)) br; small { (expiry_note(na, now)) } }
                @else { "not issued" }
            }
            td {
                @if let Some(n) = c.next_attempt { (relative(n, now)) br; small { (c.next_attempt_reason.as_deref().unwrap_or("")) } }
                @else { "-" }
            }
            td { @if let Some(e) = &c.last_error { span.error { (e) } } @else { "-" } }
            td { @for i in installs {
                a href=(host_link(&i.host)) { (i.host) } " "
                (badge(if i.in_sync() { "in-sync" } else { i.state.as_deref().unwrap_or("waiting") }))
                br;
            } }
            td { @for sc in served {
                (sc.endpoint) " " (badge(&sc.state))
                @if let Some(na) = sc.served_not_after { " " small { (days_left(na, now)) " d" } }
                br;
            } }
        }
    }
}
