//! `certfleet run`: the renewal daemon. A loop of renewal passes; between them it sleeps until
//! the earliest due time, ARI poll or retry of any lineage (plus jitter, capped by
//! `--max-sleep`). SIGHUP ends the sleep so the lineage list is read again at once; SIGTERM
//! and SIGINT stop it between steps: no new renewal starts, the ones in flight finish.
//! The store lock is held only during a pass, so `certonly` and friends work in between.

use std::process::ExitCode as ProcessExit;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use crate::account;
use crate::args::{GlobalArgs, RunArgs};
use crate::error::{CliError, Result};
use crate::verbs::renew::{fmt_time, pass_options};
use certfleet_engine::renewal::{self, Outcome};

/// After a failed pass (store locked by another run, unreadable tree), try again after this.
const RETRY_PASS: Duration = Duration::from_secs(60);

pub async fn run(g: &GlobalArgs, a: &RunArgs) -> Result<ProcessExit> {
    let store = account::store(g);
    let stop = Arc::new(AtomicBool::new(false));
    let wake_term = Arc::new(Notify::new());
    let wake_hup = Arc::new(Notify::new());
    let sig = |k| signal(k).map_err(|e| CliError::store(format!("cannot install signal handler: {e}")));
    let (mut term, mut int, mut hup) = (
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
        sig(SignalKind::hangup())?,
    );
    {
        let (stop, wake_term, wake_hup) = (stop.clone(), wake_term.clone(), wake_hup.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => {
                        log("SIGTERM: stopping after the renewals in flight");
                        stop.store(true, Ordering::SeqCst);
                        wake_term.notify_one();
                    }
                    _ = int.recv() => {
                        log("SIGINT: stopping after the renewals in flight");
                        stop.store(true, Ordering::SeqCst);
                        wake_term.notify_one();
                    }
                    _ = hup.recv() => {
                        log("SIGHUP: re-reading the certificate list");
                        wake_hup.notify_one();
                    }
                }
            }
        });
    }
    let max_sleep = Duration::from_secs(a.max_sleep.max(1));
    log(&format!(
        "started (config {}, {} jobs, pid {})",
        store.dirs().config_dir.display(),
        a.jobs,
        std::process::id()
    ));
    while !stop.load(Ordering::SeqCst) {
        let sleep = match pass(g, a, &store, &stop).await {
            Ok(Some(wake)) => {
                let secs = (wake - OffsetDateTime::now_utc()).whole_milliseconds().max(0) as u64;
                Duration::from_millis(secs).min(max_sleep)
            }
            Ok(None) => max_sleep,
            Err(e) => {
                log(&format!(
                    "pass failed: {} (retrying in {}s)",
                    e.message,
                    RETRY_PASS.as_secs()
                ));
                RETRY_PASS
            }
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let sleep = (sleep + jitter(sleep)).max(Duration::from_secs(1));
        let at = OffsetDateTime::now_utc() + sleep;
        log(&format!(
            "next pass at {} (in {}s)",
            fmt_time(at),
            sleep.as_secs()
        ));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake_hup.notified() => {}
            _ = wake_term.notified() => {}
        }
    }
    log("stopped");
    Ok(ProcessExit::SUCCESS)
}

/// One renewal pass under the store lock; the time of the next wanted pass.
async fn pass(
    g: &GlobalArgs,
    a: &RunArgs,
    store: &certfleet_store::Store,
    stop: &Arc<AtomicBool>,
) -> Result<Option<OffsetDateTime>> {
    let _lock = account::lock(g, store)?;
    let mut opts = pass_options(g, &a.hooks, a.jobs, false)?;
    opts.stop = stop.clone();
    let report = renewal::run_pass(store, opts).await?;
    let mut counts = (0, 0, 0);
    for l in &report.lineages {
        match &l.outcome {
            Outcome::Renewed { version, not_after } => {
                counts.0 += 1;
                log(&format!(
                    "{}: renewed (version {version}, expires {})",
                    l.name,
                    fmt_time(*not_after)
                ));
            }
            Outcome::Failed { error, next_attempt } => {
                counts.2 += 1;
                log(&format!(
                    "{} ({}): renewal FAILED: {error}; next attempt {}",
                    l.name,
                    l.domains.join(", "),
                    next_attempt.map(fmt_time).unwrap_or_else(|| "next pass".into())
                ));
            }
            Outcome::Broken { error } => {
                counts.2 += 1;
                log(&format!("{}: BROKEN: {error}", l.name));
            }
            _ => counts.1 += 1,
        }
    }
    for w in &report.warnings {
        log(&format!("warning: {w}"));
    }
    for h in &report.hook_failures {
        log(&format!("hook failed: {h}"));
    }
    log(&format!(
        "pass done: {} renewed, {} not due or waiting, {} failed",
        counts.0, counts.1, counts.2
    ));
    Ok(report.next_wakeup)
}

fn log(msg: &str) {
    errln!("certfleet run: {msg}");
}

/// Up to 1/20 of the sleep, at most 5 minutes: many daemons started together drift apart.
fn jitter(sleep: Duration) -> Duration {
    let cap = (sleep / 20).min(Duration::from_secs(300));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = (u64::from(nanos) ^ u64::from(std::process::id()).rotate_left(32))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    cap.mul_f64((seed >> 11) as f64 / (1u64 << 53) as f64)
}
