//! Step 4 of a pass: renew the due lineages, `jobs` at a time and paced per CA; run the hooks
//! around them; remember each success and failure; reload each service once at the end.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use certfleet_acme::Account;
use certfleet_core::Clock;
use certfleet_renew::{
    CertFacts, Decision, HookResult, HookRunner, LineageState, Pacer, ReloadCommands, RenewalInput,
    StateStore, decide,
};
use certfleet_store::Store;
use tokio::sync::Mutex;

use super::ari::Clients;
use super::load::Loaded;
use super::{LineageReport, Outcome, PassOptions, PassReport, STARTS_PER_SECOND, attempt};
use crate::EngineError;
use crate::deploy;
use crate::events::{Event, EventSink};

/// Everything the renewal jobs share.
pub(super) struct Shared {
    pub store: Store,
    pub states: Option<StateStore>,
    pub hooks: Mutex<HookRunner>,
    pub dry_run: bool,
    pub cli_reload: Option<ReloadCommands>,
    pub reloads: Mutex<BTreeMap<String, ReloadCommands>>,
    pub hook_failures: std::sync::Mutex<Vec<String>>,
    /// certbot's `--new-key`.
    pub new_key: bool,
    /// See [`PassOptions::interrupt`].
    pub interrupt: bool,
    /// `--server` was given: renewals record it (and the account used there).
    pub server_override: bool,
    pub stop: Arc<AtomicBool>,
    pub clock: Arc<dyn Clock>,
    pub events: Arc<dyn EventSink>,
}

type Job = (LineageReport, Option<(Decision, LineageState)>);
/// (server, CA bundle, account id): one ACME account per combination, shared by jobs.
type AccountKeyId = (String, Option<PathBuf>, Option<String>);

pub(super) async fn renew_due(
    store: &Store,
    states: Option<StateStore>,
    due: Vec<(Loaded, String)>,
    clients: &mut Clients,
    opts: &PassOptions,
    report: &mut PassReport,
) -> Vec<Job> {
    // Accounts, one per (server, bundle, account id), shared by every job that uses it.
    let mut accounts: HashMap<AccountKeyId, Result<Arc<Account>, Arc<EngineError>>> = HashMap::new();
    let mut pacers: HashMap<String, Pacer> = HashMap::new();
    for (l, _) in &due {
        let acct_id = account_id(&l.lineage, opts);
        let key = (l.server.clone(), l.ca_bundle.clone(), acct_id.clone());
        if let std::collections::hash_map::Entry::Vacant(slot) = accounts.entry(key) {
            let acct = match clients.get(&l.server, &l.ca_bundle).await {
                Ok(c) => match crate::account::for_renewal(store, &c, acct_id.as_deref()) {
                    Err(EngineError::NoAccount { what }) if opts.server_override.is_some() => {
                        super::register::at_new_server(store, &c, &l.lineage, opts, &what).await
                    }
                    other => other,
                },
                Err(e) => Err(e),
            };
            slot.insert(acct.map(Arc::new).map_err(Arc::new));
        }
        pacers
            .entry(l.server.clone())
            .or_insert_with(|| Pacer::new(opts.jobs, STARTS_PER_SECOND, opts.jobs as u32));
    }
    let shared = Arc::new(Shared {
        store: store.clone(),
        states,
        hooks: Mutex::new(HookRunner::new(opts.hooks.clone())),
        dry_run: opts.dry_run,
        cli_reload: opts.reload.clone(),
        reloads: Mutex::new(BTreeMap::new()),
        hook_failures: std::sync::Mutex::new(Vec::new()),
        new_key: opts.overrides.new_key,
        interrupt: opts.interrupt,
        server_override: opts.server_override.is_some(),
        stop: opts.stop.clone(),
        clock: opts.clock.clone(),
        events: opts.events.clone(),
    });
    // `jobs` bounds the whole pass; each CA's pacer also bounds (and paces) its own share.
    let global = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (l, reason) in due {
        let acct_id = account_id(&l.lineage, opts);
        let acct = accounts[&(l.server.clone(), l.ca_bundle.clone(), acct_id)].clone();
        let pacer = pacers[&l.server].clone();
        let shared = shared.clone();
        let global = global.clone();
        tasks.spawn(async move {
            let _slot = global.acquire_owned().await.expect("never closed");
            let _permit = pacer.acquire().await;
            renew_job(&shared, l, reason, acct).await
        });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(j) => out.push(j),
            Err(e) => report.warnings.push(format!("a renewal task failed: {e}")),
        }
    }
    // Reload each service once, after every deploy hook, before the post hooks.
    let reloads = std::mem::take(&mut *shared.reloads.lock().await);
    let timeout = opts.hooks.timeout;
    for cmds in reloads.values() {
        if let Err(e) = deploy::run_reload(cmds, timeout).await {
            shared.hook_failures.lock().unwrap().push(e);
        }
    }
    let mut hooks = shared.hooks.lock().await;
    let post = hooks.finish().await;
    note_hooks(&shared, &post);
    report.warnings.extend(hooks.warnings().iter().cloned());
    report
        .hook_failures
        .extend(std::mem::take(&mut *shared.hook_failures.lock().unwrap()));
    out
}

/// The account a lineage renews with: the caller's override, else its conf's.
fn account_id(lineage: &certfleet_store::Lineage, opts: &PassOptions) -> Option<String> {
    opts.account_override
        .clone()
        .or_else(|| lineage.conf.account().map(str::to_string))
}

fn note_hooks(shared: &Shared, results: &[HookResult]) {
    let mut f = shared.hook_failures.lock().unwrap();
    for r in results.iter().filter(|r| !r.success()) {
        f.push(r.to_string());
    }
}

async fn renew_job(
    shared: &Shared,
    mut l: Loaded,
    reason: String,
    acct: Result<Arc<Account>, Arc<EngineError>>,
) -> Job {
    let name = l.lineage.name.clone();
    let mut rep = LineageReport::new(&l, Outcome::Skipped);
    if shared.stop.load(Ordering::SeqCst) {
        return (rep, None);
    }
    let lh = deploy::lineage_hooks(&l.lineage.conf);
    {
        let mut h = shared.hooks.lock().await;
        let pre = h.before_attempt(&lh).await;
        note_hooks(shared, &pre);
    }
    shared.events.event(&Event::Renewing {
        name: &name,
        reason: &reason,
    });
    let result = match &acct {
        Ok(a) => attempt::attempt(shared, &l, a).await.map_err(Arc::new),
        Err(e) => Err(e.clone()),
    };
    let now = shared.clock.now();
    match result {
        Ok(None) => {
            rep.outcome = Outcome::DryRun;
            (rep, None)
        }
        Ok(Some((version, info))) => {
            l.state.record_success(now);
            save_state(shared, &l.state);
            let live_dir = shared.store.live_dir(&name);
            {
                let mut h = shared.hooks.lock().await;
                let res = h.renewed(&live_dir, &l.names, &lh).await;
                note_hooks(shared, &res);
            }
            if let Some(c) = reload_for(shared, &l) {
                shared.reloads.lock().await.insert(c.service.clone(), c);
            }
            // certbot's installer (nginx, apache): reload so the new certificate is served.
            match crate::authenticator::http::installer_reload(&l.lineage.conf) {
                Ok(Some(c)) => {
                    shared.reloads.lock().await.insert(c.service.clone(), c);
                }
                Ok(None) => {}
                Err(e) => shared.hook_failures.lock().unwrap().push(format!("{name}: {e}")),
            }
            shared.events.event(&Event::Renewed {
                name: &name,
                version,
                not_after: info.not_after,
            });
            let facts = CertFacts::from_cert(&info);
            let next = decide(&RenewalInput::new(&facts), shared.clock.as_ref()).ok();
            rep.not_after = Some(info.not_after);
            rep.outcome = Outcome::Renewed {
                version,
                not_after: info.not_after,
            };
            (rep, next.map(|d| (d, l.state)))
        }
        Err(e) => {
            let ca_retry = e
                .retry_after()
                .and_then(|d| time::Duration::try_from(d).ok())
                .map(|d| now + d);
            let first_line = e.message().lines().next().unwrap_or_default().to_string();
            l.state.record_failure(now, first_line.clone(), ca_retry);
            save_state(shared, &l.state);
            shared.hooks.lock().await.failed(&l.names);
            shared.events.event(&Event::RenewalFailed {
                name: &name,
                error: &e,
            });
            rep.outcome = Outcome::Failed {
                error: first_line.clone(),
                next_attempt: l.state.next_attempt,
            };
            let d = l.state.next_attempt.map(|retry_at| {
                (
                    Decision::InBackoff {
                        retry_at,
                        last_error: first_line,
                    },
                    l.state.clone(),
                )
            });
            (rep, d)
        }
    }
}

/// The reload after this lineage's renewal: the caller's, else the one its conf saved (a
/// bad saved one is a hook failure, not a failed renewal).
fn reload_for(shared: &Shared, l: &Loaded) -> Option<ReloadCommands> {
    if let Some(c) = &shared.cli_reload {
        return Some(c.clone());
    }
    let saved = l.lineage.conf.param_str(deploy::RELOAD_CONF_KEY)?;
    match deploy::reload_commands(saved) {
        Ok(c) => Some(c),
        Err(e) => {
            let name = &l.lineage.name;
            shared.hook_failures.lock().unwrap().push(format!("{name}: {e}"));
            None
        }
    }
}

fn save_state(shared: &Shared, state: &LineageState) {
    if shared.dry_run {
        return;
    }
    if let Some(s) = &shared.states
        && let Err(e) = s.save(state)
    {
        tracing::warn!("{e}");
    }
}
