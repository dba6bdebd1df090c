//! `certfleet certificates`: what is installed, when it expires, and where the files are.

use std::process::ExitCode as ProcessExit;

use serde_json::json;
use time::OffsetDateTime;

use certfleet_engine::lineage::{cert_key_spec, lineage_problem};
use certfleet_engine::renewal::lineage_state;
use certfleet_renew::LineageState;
use certfleet_store::Kind;

use crate::account;
use crate::args::{CertificatesArgs, GlobalArgs};
use crate::error::{CliError, Result};

struct Row {
    name: String,
    domains: Vec<String>,
    key_type: String,
    expiry: Option<OffsetDateTime>,
    status: &'static str,
    problem: Option<String>,
    cert_path: String,
    key_path: String,
}

pub fn run(g: &GlobalArgs, a: &CertificatesArgs) -> Result<ProcessExit> {
    let store = account::store(g);
    let now = OffsetDateTime::now_utc();
    let mut names = store.list_lineages().map_err(CliError::store)?;
    if let Some(n) = &a.cert_name {
        names.retain(|x| x == n);
    }
    let mut rows = Vec::new();
    for name in names {
        let row = match store.load_lineage(&name) {
            Ok(lin) => {
                let cert_path = lin.live_path(Kind::Fullchain).display().to_string();
                let key_path = lin.live_path(Kind::Privkey).display().to_string();
                match lin.cert_info() {
                    Ok(info) => {
                        let key_type = cert_key_spec(&info)
                            .map(|k| k.to_string())
                            .unwrap_or_else(|| "unknown".into());
                        let (status, problem) = match lineage_problem(&lin, &info) {
                            Some(p) => ("INVALID", Some(p)),
                            None if info.is_expired_at(now) => ("EXPIRED", None),
                            None => ("VALID", None),
                        };
                        Row {
                            name,
                            domains: info.names.clone(),
                            key_type,
                            expiry: Some(info.not_after),
                            status,
                            problem,
                            cert_path,
                            key_path,
                        }
                    }
                    Err(e) => Row {
                        name,
                        domains: vec![],
                        key_type: String::new(),
                        expiry: None,
                        status: "INVALID",
                        problem: Some(e.to_string()),
                        cert_path,
                        key_path,
                    },
                }
            }
            Err(e) => Row {
                name,
                domains: vec![],
                key_type: String::new(),
                expiry: None,
                status: "INVALID",
                problem: Some(e.to_string()),
                cert_path: String::new(),
                key_path: String::new(),
            },
        };
        if !a.domains.is_empty()
            && !a
                .domains
                .iter()
                .all(|d| row.domains.iter().any(|x| x.eq_ignore_ascii_case(d)))
        {
            continue;
        }
        rows.push(row);
    }

    if a.json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "domains": r.domains,
                    "key_type": r.key_type,
                    "expiry": r.expiry.map(|t| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()),
                    "days_left": r.expiry.map(|t| (t - now).whole_days()),
                    "status": r.status,
                    "problem": r.problem,
                    "certificate_path": r.cert_path,
                    "private_key_path": r.key_path,
                    "renewal": lineage_state(&store, &r.name),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&out).expect("json"));
        return Ok(ProcessExit::SUCCESS);
    }
    if rows.is_empty() {
        outln!("No certificates found in {}.", g.config_dir.display());
        return Ok(ProcessExit::SUCCESS);
    }
    if a.certbot_format {
        print_certbot_layout(&store, &rows, now);
    } else {
        print_table(&store, &rows, now);
    }
    Ok(ProcessExit::SUCCESS)
}

fn left(expiry: OffsetDateTime, now: OffsetDateTime) -> String {
    let left = expiry - now;
    if left.whole_days() >= 1 {
        format!("{} days", left.whole_days())
    } else if left.is_positive() {
        format!("{} hours", left.whole_hours())
    } else {
        "expired".to_string()
    }
}

/// One line per lineage, columns aligned; problems and renewal failures follow the table.
fn print_table(store: &certfleet_store::Store, rows: &[Row], now: OffsetDateTime) {
    let minute = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    let header = [
        "NAME",
        "DOMAINS",
        "KEY TYPE",
        "EXPIRES (UTC)",
        "LEFT",
        "STATUS",
        "CERTIFICATE",
        "PRIVATE KEY",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.domains.join(" "),
                r.key_type.clone(),
                r.expiry
                    .and_then(|t| t.format(&minute).ok())
                    .unwrap_or_else(|| "unknown".into()),
                r.expiry.map(|t| left(t, now)).unwrap_or_default(),
                r.status.to_string(),
                r.cert_path.clone(),
                r.key_path.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[&str]| {
        let parts: Vec<String> = cols.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        outln!("{}", parts.join("  ").trim_end());
    };
    line(&header);
    for row in &cells {
        line(&row.each_ref().map(String::as_str));
    }
    for r in rows {
        if let Some(p) = &r.problem {
            outln!("{}: Problem: {p}", r.name);
        }
        if let Some(f) = lineage_state(store, &r.name)
            .as_ref()
            .and_then(|s| failure_note(s, now))
        {
            outln!("{}: Renewal failures: {f}", r.name);
        }
    }
}

fn print_certbot_layout(store: &certfleet_store::Store, rows: &[Row], now: OffsetDateTime) {
    outln!("Found the following certificates:");
    for r in rows {
        outln!("  Certificate Name: {}", r.name);
        outln!("    Domains: {}", r.domains.join(" "));
        outln!("    Key Type: {}", r.key_type);
        match r.expiry {
            Some(t) => outln!(
                "    Expiry Date: {} ({}: {})",
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                r.status,
                left(t, now)
            ),
            None => outln!("    Expiry Date: unknown ({})", r.status),
        }
        if let Some(p) = &r.problem {
            outln!("    Problem: {p}");
        }
        if let Some(f) = lineage_state(store, &r.name)
            .as_ref()
            .and_then(|s| failure_note(s, now))
        {
            outln!("    Renewal failures: {f}");
        }
        outln!("    Certificate Path: {}", r.cert_path);
        outln!("    Private Key Path: {}", r.key_path);
    }
}

/// One line for a lineage whose last renewals failed.
fn failure_note(state: &LineageState, now: OffsetDateTime) -> Option<String> {
    if state.consecutive_failures == 0 {
        return None;
    }
    let next = state
        .backoff_until(now)
        .map(|t| format!("next attempt after {}", super::renew::fmt_time(t)))
        .unwrap_or_else(|| "next attempt at the next `renew`".into());
    Some(format!(
        "{} (last: {}); {next}",
        state.consecutive_failures,
        state.last_error.as_deref().unwrap_or("unknown error")
    ))
}
