//! `certfleet renew`: renew what is due, print a summary, and exit with a code that tells
//! monitoring what happened (see [`exit_code`]).

use std::io::Write;
use std::process::ExitCode as ProcessExit;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use certfleet_core::SystemClock;
use certfleet_engine::deploy::{HookFlags, reload_commands};
use certfleet_engine::renewal::{self, Outcome, PassOptions, PassReport};
use certfleet_engine::{Event, EventSink};
use time::OffsetDateTime;

use crate::account;
use crate::args::{GlobalArgs, RenewArgs, RenewHookArgs};
use crate::deploy;
use crate::error::{ExitCode, Result};

/// How often the shipped timer runs `renew`; an ARI instant before the next run renews now.
pub const TIMER_PERIOD: time::Duration = time::Duration::hours(12);

pub async fn run(g: &GlobalArgs, a: &RenewArgs) -> Result<ProcessExit> {
    let store = account::store(g);
    let _lock = account::lock(g, &store)?;
    let opts = pass_options(g, &a.hooks, a.jobs, a.dry_run)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        // Ctrl-C / SIGTERM: no new renewal starts; the ones in flight stop and remove their
        // challenge responses (see PassOptions::interrupt).
        let stop = stop.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let opts = PassOptions {
        overrides: crate::overrides::renew_overrides(&a.auth, &a.plugins, &a.compat)?,
        interrupt: true,
        stop,
        only: a.cert_name.clone(),
        force: a.force_renewal,
        next_run: Some(OffsetDateTime::now_utc() + TIMER_PERIOD),
        ..opts
    };
    let report = renewal::run_pass(&store, opts).await?;
    if !g.quiet {
        print_summary(&report, a.dry_run);
    } else {
        print_problems(&report);
    }
    Ok(ProcessExit::from(
        exit_code(&report, OffsetDateTime::now_utc()) as u8
    ))
}

/// The options shared by `renew` and `run`.
pub fn pass_options(g: &GlobalArgs, h: &RenewHookArgs, jobs: u16, dry_run: bool) -> Result<PassOptions> {
    let flags = HookFlags {
        pre_hook: h.pre_hook.clone(),
        post_hook: h.post_hook.clone(),
        deploy_hook: h.deploy_hook.clone(),
        no_directory_hooks: h.no_directory_hooks,
        timeout: h.hook_timeout,
        dry_run,
    };
    let reload = h.deploy_reload.as_deref().map(reload_commands).transpose()?;
    let server_override = match (&g.server, g.staging) {
        (None, false) => None,
        _ => Some(g.server_url()),
    };
    Ok(PassOptions {
        only: vec![],
        force: false,
        dry_run,
        jobs: usize::from(jobs.max(1)),
        hooks: deploy::hook_config(g, &flags),
        reload,
        next_run: None,
        server_override,
        ca_bundle: g.ca_bundle(),
        account_override: g.account.clone(),
        interrupt: false,
        overrides: Default::default(),
        registration: account::options(g),
        stop: Arc::new(AtomicBool::new(false)),
        clock: Arc::new(SystemClock),
        events: Arc::new(RenewalLines { verbose: !g.quiet }),
    })
}

/// A renewal pass's events as stderr lines: one per renewal as it starts and ends (not with
/// --quiet), and every failure with its hints.
struct RenewalLines {
    verbose: bool,
}

impl EventSink for RenewalLines {
    fn event(&self, e: &Event<'_>) {
        match e {
            Event::Renewing { name, reason } if self.verbose => {
                eprintln!("certfleet: renewing {name}: {reason}");
            }
            Event::Renewed {
                name,
                version,
                not_after,
            } if self.verbose => {
                eprintln!(
                    "certfleet: renewed {name} (version {version}, expires {})",
                    fmt_time(*not_after)
                );
            }
            Event::RenewalFailed { name, error } => {
                eprintln!("certfleet: renewing {name} failed: {}", error.message());
            }
            _ => {}
        }
    }
}

/// `2025-05-01 12:00:00 UTC`.
pub fn fmt_time(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC).format(&fmt).unwrap_or_default()
}

/// 11 if a certificate is expired or will be before its next retry, or a lineage is broken
/// (its certificate cannot even be read, and it will not renew until repaired), else 10 if a
/// renewal failed or waits in backoff, else 12 if a hook failed, else 0.
pub fn exit_code(r: &PassReport, now: OffsetDateTime) -> ExitCode {
    let mut failed = false;
    let mut expiring = false;
    for l in &r.lineages {
        let retry = match &l.outcome {
            Outcome::Failed { next_attempt, .. } => Some(next_attempt.unwrap_or(now)),
            Outcome::InBackoff { retry_at, .. } => Some(*retry_at),
            Outcome::Broken { .. } => {
                expiring = true;
                None
            }
            _ => None,
        };
        if let Some(retry) = retry {
            failed = true;
            if l.not_after.is_some_and(|na| na <= retry.max(now)) {
                expiring = true;
            }
        }
    }
    if expiring {
        ExitCode::RenewExpiring
    } else if failed {
        ExitCode::RenewFailedStillValid
    } else if !r.hook_failures.is_empty() {
        ExitCode::Hook
    } else {
        ExitCode::Success
    }
}

pub fn print_summary(r: &PassReport, dry_run: bool) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let _ = write_summary(&mut out, r, dry_run);
    let _ = out.flush();
    drop(out);
    print_problems(r);
}

fn print_problems(r: &PassReport) {
    for w in &r.warnings {
        errln!("certfleet: warning: {w}");
    }
    for h in &r.hook_failures {
        errln!("certfleet: hook failed: {h}");
    }
    let broken: Vec<&str> = r
        .lineages
        .iter()
        .filter(|l| matches!(l.outcome, Outcome::Broken { .. }))
        .map(|l| l.name.as_str())
        .collect();
    if !broken.is_empty() {
        errln!(
            "certfleet: {} will not renew until repaired: `certfleet certificates --cert-name NAME` shows \
             what is wrong; `certfleet update_symlinks` points live/ back at the newest complete version \
             in archive/; a lineage beyond repair is issued again with `certfleet delete --cert-name NAME` \
             and then `certfleet certonly` with its names",
            broken.join(", ")
        );
    }
}

fn write_summary(out: &mut impl Write, r: &PassReport, dry_run: bool) -> std::io::Result<()> {
    if r.lineages.is_empty() {
        writeln!(out, "No certificates found.")?;
        return Ok(());
    }
    let width = r
        .lineages
        .iter()
        .map(|l| l.name.len())
        .max()
        .unwrap_or(0)
        .clamp(11, 48);
    if dry_run {
        writeln!(out, "** DRY RUN: simulating renewal; nothing was saved **")?;
    }
    writeln!(out, "{:<width$}  {:<10}  DETAILS", "CERTIFICATE", "RESULT")?;
    let mut counts = [0usize; 5];
    for l in &r.lineages {
        let (result, details, idx) = match &l.outcome {
            Outcome::Renewed { version, not_after } => (
                "renewed",
                format!("version {version}, expires {}", fmt_time(*not_after)),
                0,
            ),
            Outcome::DryRun => ("dry-run ok", "the CA issued a certificate (not saved)".into(), 0),
            Outcome::NotDue { due_at, reason } => {
                ("not due", format!("due {} ({reason})", fmt_time(*due_at)), 1)
            }
            Outcome::Disabled { reason } => ("not due", reason.clone(), 1),
            Outcome::InBackoff { retry_at, last_error } => (
                "backoff",
                format!("retry after {}: {last_error}", fmt_time(*retry_at)),
                2,
            ),
            Outcome::Failed { error, next_attempt } => (
                "FAILED",
                match next_attempt {
                    Some(t) => format!("{error} (next attempt after {})", fmt_time(*t)),
                    None => error.clone(),
                },
                3,
            ),
            Outcome::Broken { error } => ("BROKEN", error.clone(), 3),
            Outcome::Skipped => ("skipped", "shutting down".into(), 4),
        };
        counts[idx] += 1;
        writeln!(out, "{:<width$}  {result:<10}  {details}", l.name)?;
    }
    writeln!(
        out,
        "{} renewed, {} not due, {} in backoff, {} failed{}",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        if r.hook_failures.is_empty() {
            String::new()
        } else {
            format!(", {} hook problem(s)", r.hook_failures.len())
        }
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use certfleet_engine::renewal::LineageReport;
    use time::Duration;

    #[test]
    fn time_format() {
        let t = time::macros::datetime!(2025-05-01 12:03:04 UTC);
        assert_eq!(fmt_time(t), "2025-05-01 12:03:04 UTC");
    }

    fn lin(outcome: Outcome, not_after: OffsetDateTime) -> LineageReport {
        LineageReport {
            name: "a".into(),
            domains: vec![],
            not_after: Some(not_after),
            outcome,
        }
    }

    #[test]
    fn exit_codes_tell_cases_apart() {
        let now = OffsetDateTime::now_utc();
        let mut r = PassReport::default();
        assert_eq!(exit_code(&r, now), ExitCode::Success);
        r.lineages.push(lin(
            Outcome::NotDue {
                due_at: now,
                reason: String::new(),
            },
            now + Duration::days(30),
        ));
        assert_eq!(exit_code(&r, now), ExitCode::Success);
        r.hook_failures.push("x".into());
        assert_eq!(exit_code(&r, now), ExitCode::Hook);
        r.lineages.push(lin(
            Outcome::Failed {
                error: "e".into(),
                next_attempt: Some(now + Duration::minutes(1)),
            },
            now + Duration::days(30),
        ));
        assert_eq!(exit_code(&r, now), ExitCode::RenewFailedStillValid);
        r.lineages.push(lin(
            Outcome::InBackoff {
                retry_at: now + Duration::days(1),
                last_error: "e".into(),
            },
            now + Duration::hours(3),
        ));
        assert_eq!(exit_code(&r, now), ExitCode::RenewExpiring);
    }

    #[test]
    fn a_broken_lineage_is_not_reported_as_still_valid() {
        let now = OffsetDateTime::now_utc();
        let mut r = PassReport::default();
        r.lineages.push(LineageReport {
            name: "b".into(),
            domains: vec![],
            not_after: None,
            outcome: Outcome::Broken {
                error: "cannot read certificate".into(),
            },
        });
        assert_eq!(exit_code(&r, now), ExitCode::RenewExpiring);
    }
}
