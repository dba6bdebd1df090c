//! `certfleet doctor`: choose what to check (every lineage, `--cert-name`, `-d` names, or
//! names before their first certonly with certonly's flags), run the engine's checks, print
//! one line per check with the fix under each WARN/FAIL, or JSON.

use std::process::ExitCode as ProcessExit;

use certfleet_core::Identifier;
use certfleet_core::identifier::parse_domain_args;
use certfleet_engine::doctor::{self, Check, Group, Kind, Options, Report, Status, Target};
use clap::parser::ValueSource;
use serde_json::json;

use crate::account;
use crate::args::{CertonlyArgs, DoctorArgs, GlobalArgs};
use crate::authenticator;
use crate::error::{CliError, ExitCode, Result};

pub async fn run(g: &GlobalArgs, a: &DoctorArgs, m: &clap::ArgMatches) -> Result<ProcessExit> {
    let c = &a.certonly;
    let store = account::store(g);
    let default_server = g.server_url();
    let mut targets = Vec::new();
    // Lineages that cannot even be loaded get one FAIL each.
    let mut broken: Vec<Group> = Vec::new();
    let wanted = if c.domains.is_empty() {
        vec![]
    } else {
        parse_domain_args(&c.domains).map_err(|e| CliError::usage(e.to_string()))?
    };

    let all = store.list_lineages().map_err(CliError::store)?;
    let names: Vec<String> = match &c.cert_name {
        Some(n) if all.contains(n) => vec![n.clone()],
        // The name a first certonly will give: only the -d names are checked.
        Some(_) if !wanted.is_empty() => vec![],
        Some(n) => {
            return Err(CliError::usage(format!(
                "no certificate named {n:?} in {}; run `certfleet certificates` to see the names, or give \
                 -d NAME (and certonly's flags: --webroot -w DIR ...) to check names before their first certonly",
                store.dirs().renewal_dir().display()
            )));
        }
        None => all,
    };
    let mut covered: Vec<Identifier> = Vec::new();
    for name in names {
        let lin = match store.load_lineage(&name) {
            Ok(l) => l,
            Err(e) => {
                if wanted.is_empty() {
                    broken.push(unloadable(&name, &e.to_string()));
                }
                continue;
            }
        };
        let mut t = Target::for_lineage(lin, &default_server);
        if !wanted.is_empty() {
            t.names.retain(|n| wanted.contains(n));
            if t.names.is_empty() {
                continue;
            }
            covered.extend(t.names.iter().cloned());
        }
        targets.push(t);
    }
    // Names with no lineage yet: checked with the flags certonly will get, if given (cli.ini's
    // authenticator counts: certonly would use it too).
    let orphans: Vec<Identifier> = wanted.into_iter().filter(|n| !covered.contains(n)).collect();
    if !orphans.is_empty() {
        let auth = if authenticator_chosen(c) {
            Some(authenticator::from_args(c, m, &orphans)?)
        } else {
            None
        };
        targets.push(Target {
            lineage: None,
            names: orphans,
            auth,
            server: default_server.clone(),
        });
    }

    let tls_roots = match &a.tls_roots {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CliError::usage(format!("--tls-roots {}: {e}", p.display())))?;
            certfleet_core::cert::pem_certificates(&text)
                .map_err(|e| CliError::usage(format!("--tls-roots {}: {e}", p.display())))?
        }
        None => vec![],
    };
    // The CA's port 80 stand-in only when given: a lineage's own http01_port is where its
    // built-in server listens, not where the CA connects.
    let http_port = match m.value_source("http01_port") {
        Some(ValueSource::CommandLine) => c.http01_port,
        _ => 80,
    };
    let opts = Options {
        store,
        resolver: c.dns_resolver,
        http_port,
        tls_port: a.port,
        timeout: a.timeout,
        tls_roots,
        ca_bundle: g.ca_bundle(),
        unit_dir: a.unit_dir.clone(),
        nginx_server_root: c.plugins.nginx_server_root.clone().or_else(|| {
            let etc = std::path::PathBuf::from("/etc/nginx");
            etc.join("nginx.conf").is_file().then_some(etc)
        }),
        now: time::OffsetDateTime::now_utc(),
    };
    let mut report = doctor::run(targets, opts).await;
    report.groups.extend(broken);

    if a.json {
        print_json(&report);
    } else {
        print_text(&report, g.quiet);
    }
    if report.failed() {
        Ok(ProcessExit::from(ExitCode::NeedsAttention as u8))
    } else {
        Ok(ProcessExit::SUCCESS)
    }
}

/// Whether certonly's flags name an authenticator (then `-d` names are checked with it).
fn authenticator_chosen(c: &CertonlyArgs) -> bool {
    c.webroot
        || !c.webroot_path.is_empty()
        || c.standalone
        || c.tls_alpn_01
        || c.manual
        || c.dns_providers.chosen().is_some()
        || c.plugins.nginx
        || c.plugins.apache
        || c.compat.authenticator.is_some()
        || c.compat.configurator.is_some()
        || c.compat.webroot_map.is_some()
}

fn unloadable(name: &str, why: &str) -> Group {
    Group {
        lineage: Some(name.to_string()),
        names: vec![],
        authenticator: None,
        checks: vec![Check::fail(
            Kind::RenewalConf,
            name,
            why,
            format!(
                "repair or remove the lineage's files (`certfleet delete --cert-name {name}` removes it for good)"
            ),
        )],
    }
}

fn print_text(report: &Report, quiet: bool) {
    let mut first = true;
    let mut section = |title: String, checks: &[Check]| {
        let shown: Vec<&Check> = checks
            .iter()
            .filter(|c| !quiet || c.status != Status::Ok)
            .collect();
        if shown.is_empty() {
            return;
        }
        if !first {
            outln!("");
        }
        first = false;
        outln!("{title}");
        for c in shown {
            outln!(
                "  {:<4}  {:<13} {}: {}",
                c.status.as_str(),
                c.check.as_str(),
                c.subject,
                c.detail
            );
            if let Some(f) = &c.fix {
                outln!("        fix: {f}");
            }
        }
    };
    for gr in &report.groups {
        let how = gr
            .authenticator
            .as_deref()
            .map(|a| format!(", {a}"))
            .unwrap_or_default();
        let title = match &gr.lineage {
            Some(l) => format!("{l} (lineage{how}): {}", gr.names.join(" ")),
            None => format!("{} (no lineage yet{how})", gr.names.join(" ")),
        };
        section(title, &gr.checks);
    }
    section("this host".into(), &report.host);
    let (ok, warn, fail) = (
        report.count(Status::Ok),
        report.count(Status::Warn),
        report.count(Status::Fail),
    );
    if !quiet || fail + warn > 0 {
        outln!("");
        outln!("{ok} OK, {warn} WARN, {fail} FAIL");
    }
}

fn print_json(report: &Report) {
    let out = json!({
        "ok": !report.failed(),
        "summary": {
            "ok": report.count(Status::Ok),
            "warn": report.count(Status::Warn),
            "fail": report.count(Status::Fail),
        },
        "groups": report.groups,
        "host": report.host,
    });
    outln!("{}", serde_json::to_string_pretty(&out).expect("json"));
}
