//! One renewal pass over the lineages in `renewal/`, shared by `certfleet renew`, the
//! `certfleet run` daemon and the fleet server.
//!
//! 1. [`load`] every lineage, its certificate and its failure memory, in parallel threads and
//!    without network: a tree with nothing due costs file reads and one parse per lineage.
//! 2. Ask the network only what is needed ([`ari`]): a CA's directory when we do not know (for
//!    a day, see [`crate::ca_cache`]) whether it has ARI, and ARI windows whose poll time has
//!    come ([`LineageState::ari_poll_due`]).
//! 3. [`decide`] each lineage (certfleet-renew's one rule); renew the due ones ([`jobs`]),
//!    `jobs` at a time and paced per CA, each [`attempt`] with the settings of its renewal
//!    conf; run hooks; remember successes and failures.

mod ari;
mod attempt;
mod jobs;
mod load;
mod register;
mod sweep;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use certfleet_core::Clock;
use certfleet_renew::{
    Decision, HookConfig, LineageState, ReloadCommands, RenewalInput, StateStore, decide, next_wakeup,
};
use certfleet_store::Store;
use time::OffsetDateTime;

pub use sweep::sweep_temp_files;

use crate::EngineError;
use crate::ca_cache::CaCache;
use crate::events::EventSink;
use load::{Load, Loaded};

/// New renewals started per second per CA at most (beyond the `jobs` in flight). Far below
/// Let's Encrypt's per-endpoint limits, high enough that 100 renewals are not start-bound.
pub const STARTS_PER_SECOND: f64 = 50.0;

/// What a pass should do.
pub struct PassOptions {
    /// Only these lineages (`--cert-name`); empty: all.
    pub only: Vec<String>,
    pub force: bool,
    pub dry_run: bool,
    pub jobs: usize,
    pub hooks: HookConfig,
    /// A reload given by the caller (`--deploy-reload`), else each lineage's saved one.
    pub reload: Option<ReloadCommands>,
    /// When this process will run again anyway (a timer's period); see [`RenewalInput::next_run`].
    pub next_run: Option<OffsetDateTime>,
    /// A server given by the caller (`--server`): overrides the conf, as in certbot.
    pub server_override: Option<String>,
    /// The CA trust bundle when the conf names none.
    pub ca_bundle: Option<PathBuf>,
    /// An account id given by the caller (`--account`): overrides the conf.
    pub account_override: Option<String>,
    /// Renewal settings given by the caller (certbot's `renew` flags): applied to every
    /// lineage's conf for this run, and saved with a successful renewal.
    pub overrides: crate::overrides::ConfOverrides,
    /// How to register an account at a `server_override` CA where the lineage's account does
    /// not exist (the lineage's contact is used unless these name one).
    pub registration: crate::account::AccountOptions,
    /// Set by a signal handler: start no new renewal, finish the ones in flight.
    pub stop: Arc<AtomicBool>,
    /// Ctrl-C / SIGTERM abort the renewals in flight, removing their challenge responses
    /// (temporary web server configuration, DNS records) first, as `certonly` does; the
    /// daemon instead lets them finish.
    pub interrupt: bool,
    /// What time it is; every decision and every recorded attempt asks it.
    pub clock: Arc<dyn Clock>,
    /// Where renewals starting, succeeding and failing are reported.
    pub events: Arc<dyn EventSink>,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Renewed {
        version: u32,
        not_after: OffsetDateTime,
    },
    /// Dry run: the CA issued, nothing was saved.
    DryRun,
    NotDue {
        due_at: OffsetDateTime,
        reason: String,
    },
    InBackoff {
        retry_at: OffsetDateTime,
        last_error: String,
    },
    /// Renewed only when forced (`autorenew = False`).
    Disabled {
        reason: String,
    },
    Failed {
        error: String,
        next_attempt: Option<OffsetDateTime>,
    },
    /// Skipped because the caller asked to stop.
    Skipped,
    /// The lineage could not be loaded (conf, links or certificate broken).
    Broken {
        error: String,
    },
}

#[derive(Debug, Clone)]
pub struct LineageReport {
    pub name: String,
    pub domains: Vec<String>,
    /// Expiry of the certificate that is live now (after a renewal, the new one).
    pub not_after: Option<OffsetDateTime>,
    pub outcome: Outcome,
}

#[derive(Debug, Default)]
pub struct PassReport {
    pub lineages: Vec<LineageReport>,
    /// Hooks and reloads that failed, with their output.
    pub hook_failures: Vec<String>,
    pub warnings: Vec<String>,
    /// When a daemon should run the next pass.
    pub next_wakeup: Option<OffsetDateTime>,
}

impl LineageReport {
    fn new(l: &Loaded, outcome: Outcome) -> Self {
        LineageReport {
            name: l.lineage.name.clone(),
            domains: l.names.clone(),
            not_after: Some(l.info.not_after),
            outcome,
        }
    }
}

/// The report of a lineage that is not renewed now, if `d` says so.
fn waiting(d: &Decision) -> Option<Outcome> {
    match d {
        Decision::NotYet { due_at, reason } => Some(Outcome::NotDue {
            due_at: *due_at,
            reason: reason.clone(),
        }),
        Decision::InBackoff { retry_at, last_error } => Some(Outcome::InBackoff {
            retry_at: *retry_at,
            last_error: last_error.clone(),
        }),
        Decision::Disabled { reason } => Some(Outcome::Disabled {
            reason: reason.clone(),
        }),
        Decision::RenewNow { .. } => None,
    }
}

/// Where the failure memory lives: `WORK_DIR/renewal-state`.
pub fn state_dir(store: &Store) -> PathBuf {
    store.dirs().work_dir.join("renewal-state")
}

/// The state store, or `None` when it does not exist and must not be created (dry run).
pub fn open_states(store: &Store, create: bool) -> Result<Option<StateStore>, EngineError> {
    let dir = state_dir(store);
    if !create && !dir.is_dir() {
        return Ok(None);
    }
    Ok(Some(StateStore::open(dir)?))
}

/// A lineage's failure memory, if any renewal was ever attempted.
pub fn lineage_state(store: &Store, name: &str) -> Option<LineageState> {
    let states = open_states(store, false).ok()??;
    states.load(name).ok().filter(|s| s.last_attempt.is_some())
}

/// Run one pass. The caller holds the store lock.
pub async fn run_pass(store: &Store, opts: PassOptions) -> Result<PassReport, EngineError> {
    let now = opts.clock.now();
    let states = open_states(store, !opts.dry_run)?;
    let mut names = store.list_lineages()?;
    if !opts.only.is_empty() {
        for n in &opts.only {
            if !names.contains(n) {
                return Err(EngineError::config(format!(
                    "no certificate named {n:?} in {}; run `certfleet certificates` to see the names",
                    store.dirs().renewal_dir().display()
                )));
            }
        }
        names.retain(|n| opts.only.contains(n));
    }

    let mut cache = match &states {
        Some(s) => CaCache::load(s.dir()),
        None => CaCache::load(&state_dir(store)),
    };

    // 1. Load, in parallel: file reads and certificate parsing only. A lineage not due under
    //    the lifetime rule is decided right there, and only a small report is kept of it,
    //    unless its CA is known to have ARI.
    let loaded = load::load_all(store, states.as_ref(), &names, &opts, &|server: &str| {
        cache.has_ari(server, now)
    });
    let mut report = PassReport::default();
    let mut ok: Vec<Loaded> = Vec::new();
    let mut tentative = Vec::new();
    let mut decisions: Vec<(Decision, Option<LineageState>)> = Vec::new();
    for (name, r) in names.iter().zip(loaded) {
        match r {
            Load::Full(l) => ok.push(*l),
            Load::Settled(rep, d) => {
                report.lineages.push(rep);
                decisions.push((d, None));
            }
            Load::Tentative(t) => tentative.push(t),
            Load::Broken(error) => report.lineages.push(broken(name, error)),
        }
    }

    // 2. Only the network we need.
    let mut clients = ari::Clients::default();
    let servers = ok
        .iter()
        .map(|l| (&l.server, &l.ca_bundle))
        .chain(tentative.iter().map(|t| (&t.server, &t.ca_bundle)));
    ari::learn_directories(servers, &mut clients, &mut cache, now, &mut report).await;
    // A tentative decision stands unless its CA turned out to have ARI: then it is loaded
    // again, whole, for its window (rare: only on the first run at an ARI CA, which polls
    // every window anyway).
    let mut reload = Vec::new();
    for t in tentative {
        if cache.has_ari(&t.server, now) == Some(true) {
            reload.push(t.report.name);
        } else {
            report.lineages.push(t.report);
            decisions.push((t.decision, None));
        }
    }
    if !reload.is_empty() {
        let again = load::load_all(store, states.as_ref(), &reload, &opts, &|_: &str| Some(true));
        for (name, r) in reload.iter().zip(again) {
            match r {
                Load::Full(l) => ok.push(*l),
                Load::Broken(error) => report.lineages.push(broken(name, error)),
                Load::Settled(..) | Load::Tentative(_) => unreachable!("loaded as an ARI CA's"),
            }
        }
    }
    ari::poll_due_windows(&mut ok, &cache, &mut clients, states.as_ref(), &opts, &mut report).await;
    if !opts.dry_run {
        cache.save();
    }

    // 3. Decide.
    let mut due = Vec::new();
    for l in ok {
        let decision = match decide_one(&l, &opts) {
            Ok(d) => d,
            Err(e) => {
                let error = format!("{}: {e}", l.lineage.conf_path.display());
                report
                    .lineages
                    .push(LineageReport::new(&l, Outcome::Broken { error }));
                continue;
            }
        };
        match &decision {
            Decision::RenewNow { reason } => due.push((l, reason.clone())),
            _ => {
                let outcome = waiting(&decision).expect("not due now");
                report.lineages.push(LineageReport::new(&l, outcome));
                decisions.push((decision, Some(l.state)));
            }
        }
    }

    // 4. Renew.
    if !due.is_empty() {
        let results = jobs::renew_due(store, states.clone(), due, &mut clients, &opts, &mut report).await;
        for (r, d) in results {
            if let Some((d, s)) = d {
                decisions.push((d, Some(s)));
            }
            report.lineages.push(r);
        }
    }
    report.lineages.sort_by(|a, b| a.name.cmp(&b.name));
    report.next_wakeup = next_wakeup(opts.clock.now(), decisions.iter().map(|(d, s)| (d, s.as_ref())));
    Ok(report)
}

fn broken(name: &str, error: String) -> LineageReport {
    LineageReport {
        name: name.to_string(),
        domains: vec![],
        not_after: None,
        outcome: Outcome::Broken { error },
    }
}

/// certfleet-renew's decision for a loaded lineage, with this pass's settings.
fn decide_one(l: &Loaded, opts: &PassOptions) -> Result<Decision, certfleet_renew::IntervalError> {
    let ari = l.state.ari_for(&l.info.serial).map(|a| a.window.clone());
    let input = RenewalInput {
        cert: &l.facts,
        ari: ari.as_ref(),
        // The raw value: certbot's default of 30 days would override the lifetime rule.
        renew_before_expiry: l.lineage.conf.get("renew_before_expiry"),
        state: Some(&l.state),
        force: opts.force || opts.dry_run,
        autorenew: l.lineage.conf.autorenew(),
        next_run: opts.next_run,
    };
    decide(&input, opts.clock.as_ref())
}
