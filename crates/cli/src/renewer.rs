//! One renewal pass over the lineages in `renewal/`, shared by `certfleet renew` and the
//! `certfleet run` daemon.
//!
//! 1. Load every lineage, its certificate and its failure memory, in parallel threads and
//!    without network: a tree with nothing due costs file reads and one parse per lineage.
//! 2. Ask the network only what is needed: a CA's directory when we do not know (for a day,
//!    see [`crate::ca_cache`]) whether it has ARI, ARI windows whose poll time has come
//!    ([`LineageState::ari_poll_due`]), and accounts for the lineages that are due.
//! 3. [`decide`] each lineage; renew the due ones, `jobs` at a time and paced per CA, with the
//!    settings of their renewal conf; run hooks; remember successes and failures.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration as StdDuration;

use certfleet_acme::{Account, AccountKey, AcmeClient, ClientOptions};
use certfleet_core::{CertInfo, Clock, Identifier, KeySpec, SystemClock};
use certfleet_renew::{
    AriWindow, CertFacts, Decision, HookConfig, HookResult, HookRunner, LineageState, Pacer, ReloadCommands,
    RenewalInput, StateStore, decide, next_wakeup,
};
use certfleet_store::{CertFiles, Lineage, Store};
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::authenticator::{AuthSpec, SolverContext};
use crate::ca_cache::CaCache;
use crate::deploy;
use crate::error::CliError;
use crate::issue::{self, IssueRequest, KeySource};
use crate::progress::Progress;

/// New renewals started per second per CA at most (beyond the `--jobs` in flight). Far below
/// Let's Encrypt's per-endpoint limits, high enough that 100 renewals are not start-bound.
pub const STARTS_PER_SECOND: f64 = 50.0;
/// Concurrent ARI polls per run.
const ARI_POLL_CONCURRENCY: usize = 16;

/// What a pass should do.
pub struct PassOptions {
    /// Only these lineages (`--cert-name`); empty: all.
    pub only: Vec<String>,
    pub force: bool,
    pub dry_run: bool,
    pub jobs: usize,
    pub hooks: HookConfig,
    /// `--deploy-reload` from the command line (else each lineage's saved one).
    pub reload: Option<ReloadCommands>,
    /// When this process will run again anyway (a timer's period); see [`RenewalInput::next_run`].
    pub next_run: Option<OffsetDateTime>,
    /// `--server` given on the command line: overrides the conf, as in certbot.
    pub server_override: Option<String>,
    /// `--ca-bundle`/env: used when the conf names none.
    pub ca_bundle: Option<PathBuf>,
    /// `--account` on the command line.
    pub account_override: Option<String>,
    /// Set by a signal handler: start no new renewal, finish the ones in flight.
    pub stop: Arc<AtomicBool>,
    /// Print one line per renewal as it starts and ends (stderr).
    pub verbose: bool,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Renewed {
        version: u32,
        not_after: OffsetDateTime,
    },
    /// `--dry-run`: the CA issued, nothing was saved.
    DryRun,
    NotDue {
        due_at: OffsetDateTime,
        reason: String,
    },
    InBackoff {
        retry_at: OffsetDateTime,
        last_error: String,
    },
    Failed {
        error: String,
        next_attempt: Option<OffsetDateTime>,
    },
    /// Skipped because the daemon is shutting down.
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

struct Loaded {
    lineage: Lineage,
    info: CertInfo,
    names: Vec<String>,
    state: LineageState,
    facts: CertFacts,
    server: String,
    ca_bundle: Option<PathBuf>,
}

pub fn state_dir(store: &Store) -> PathBuf {
    store.dirs().work_dir.join("renewal-state")
}

/// The state store, or `None` when it does not exist and must not be created (dry run).
pub fn open_states(store: &Store, create: bool) -> Result<Option<StateStore>, CliError> {
    let dir = state_dir(store);
    if !create && !dir.is_dir() {
        return Ok(None);
    }
    StateStore::open(dir).map(Some).map_err(CliError::store)
}

/// A lineage's failure memory, if any renewal was ever attempted (for `certificates`).
pub fn lineage_state(store: &Store, name: &str) -> Option<LineageState> {
    let states = open_states(store, false).ok()??;
    states.load(name).ok().filter(|s| s.last_attempt.is_some())
}

/// One line for `certificates` when the last renewals failed.
pub fn failure_note(state: &LineageState) -> Option<String> {
    if state.consecutive_failures == 0 {
        return None;
    }
    let next = state
        .backoff_until(OffsetDateTime::now_utc())
        .map(|t| format!("next attempt after {}", fmt_time(t)))
        .unwrap_or_else(|| "next attempt at the next `renew`".into());
    Some(format!(
        "{} (last: {}); {next}",
        state.consecutive_failures,
        state.last_error.as_deref().unwrap_or("unknown error")
    ))
}

/// Run one pass. The caller holds the store lock.
pub async fn run_pass(store: &Store, opts: PassOptions) -> Result<PassReport, CliError> {
    let clock = SystemClock;
    let now = clock.now();
    let states = open_states(store, !opts.dry_run)?;
    let mut names = store.list_lineages().map_err(CliError::store)?;
    if !opts.only.is_empty() {
        for n in &opts.only {
            if !names.contains(n) {
                return Err(CliError::usage(format!(
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

    // 1. Load, in parallel: file reads and certificate parsing only. A lineage of a CA known
    //    to have no ARI is decided right there, and only a small report is kept of it unless
    //    it is due.
    let loaded = load_all(store, states.as_ref(), &names, &opts, &|server: &str| {
        cache.has_ari(server, now) == Some(false)
    });
    let mut report = PassReport::default();
    let mut ok: Vec<Loaded> = Vec::new();
    let mut decisions: Vec<(Decision, Option<LineageState>)> = Vec::new();
    for (name, r) in names.iter().zip(loaded) {
        match r {
            Load::Full(l) => ok.push(*l),
            Load::Settled(rep, d) => {
                report.lineages.push(rep);
                decisions.push((d, None));
            }
            Load::Broken(error) => report.lineages.push(LineageReport {
                name: name.clone(),
                domains: vec![],
                not_after: None,
                outcome: Outcome::Broken { error },
            }),
        }
    }

    // 2. Only the network we need.
    let mut clients = Clients::default();
    let mut servers: Vec<(String, Option<PathBuf>)> = ok
        .iter()
        .map(|l| (l.server.clone(), l.ca_bundle.clone()))
        .collect();
    servers.sort();
    servers.dedup();
    for (server, bundle) in &servers {
        if cache.has_ari(server, now).is_none() {
            match clients.get(server, bundle).await {
                Ok(c) => cache.record(server, c.directory().renewal_info.is_some(), now),
                Err(e) => report
                    .warnings
                    .push(format!("cannot read the directory of {server}: {}", e.message)),
            }
        }
    }
    let ari_server = |s: &str| cache.has_ari(s, now).unwrap_or(false);
    let polls: Vec<usize> = ok
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            ari_server(&l.server)
                && l.info.authority_key_id.is_some()
                && l.state.ari_poll_due(now, &l.info.serial)
                && now < l.info.not_after
        })
        .map(|(i, _)| i)
        .collect();
    if !polls.is_empty() {
        poll_ari(
            &mut ok,
            &polls,
            &mut clients,
            states.as_ref(),
            opts.dry_run,
            &mut report,
        )
        .await;
    }
    if !opts.dry_run {
        cache.save();
    }

    // 3. Decide.
    let mut due = Vec::new();
    for l in ok {
        let decision = match decide_one(&l, &opts, &clock) {
            Ok(d) => d,
            Err(e) => {
                report.lineages.push(LineageReport {
                    name: l.lineage.name.clone(),
                    domains: l.names.clone(),
                    not_after: Some(l.info.not_after),
                    outcome: Outcome::Broken {
                        error: format!("{}: {e}", l.lineage.conf_path.display()),
                    },
                });
                continue;
            }
        };
        match &decision {
            Decision::RenewNow { reason } => due.push((l, reason.clone())),
            Decision::NotYet { due_at, reason } => {
                report.lineages.push(LineageReport {
                    name: l.lineage.name.clone(),
                    domains: l.names.clone(),
                    not_after: Some(l.info.not_after),
                    outcome: Outcome::NotDue {
                        due_at: *due_at,
                        reason: reason.clone(),
                    },
                });
                decisions.push((decision, Some(l.state)));
            }
            Decision::InBackoff { retry_at, last_error } => {
                report.lineages.push(LineageReport {
                    name: l.lineage.name.clone(),
                    domains: l.names.clone(),
                    not_after: Some(l.info.not_after),
                    outcome: Outcome::InBackoff {
                        retry_at: *retry_at,
                        last_error: last_error.clone(),
                    },
                });
                decisions.push((decision, Some(l.state)));
            }
        }
    }

    // 4. Renew.
    if !due.is_empty() {
        let results = renew_due(store, states.clone(), due, &mut clients, &opts, &mut report).await;
        for (r, d) in results {
            if let Some((d, s)) = d {
                decisions.push((d, Some(s)));
            }
            report.lineages.push(r);
        }
    }
    report.lineages.sort_by(|a, b| a.name.cmp(&b.name));
    report.next_wakeup = next_wakeup(
        OffsetDateTime::now_utc(),
        decisions.iter().map(|(d, s)| (d, s.as_ref())),
    );
    Ok(report)
}

enum Load {
    /// Needs the network (ARI, or due): everything kept.
    Full(Box<Loaded>),
    /// Decided without network and not due: only the report.
    Settled(LineageReport, Decision),
    Broken(String),
}

fn decide_one(l: &Loaded, opts: &PassOptions, clock: &dyn Clock) -> Result<Decision, String> {
    // certbot's `autorenew = False`: only an explicit --force-renewal (or dry run) renews it.
    if !l.lineage.conf.autorenew() && !opts.force && !opts.dry_run {
        return Ok(Decision::NotYet {
            due_at: l.info.not_after,
            reason: "autorenew = False in its renewal conf (use --force-renewal)".into(),
        });
    }
    let ari = l.state.ari_for(&l.info.serial).map(|a| a.window.clone());
    let input = RenewalInput {
        cert: &l.facts,
        ari: ari.as_ref(),
        // The raw value: certbot's default of 30 days would override the lifetime rule.
        renew_before_expiry: l.lineage.conf.get("renew_before_expiry"),
        state: Some(&l.state),
        force: opts.force || opts.dry_run,
        next_run: opts.next_run,
    };
    decide(&input, clock).map_err(|e| e.to_string())
}

fn load_all(
    store: &Store,
    states: Option<&StateStore>,
    names: &[String],
    opts: &PassOptions,
    no_ari: &(dyn Fn(&str) -> bool + Sync),
) -> Vec<Load> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
        .min(names.len().div_ceil(64).max(1));
    if threads <= 1 {
        return names
            .iter()
            .map(|n| settle(load_one(store, states, n, opts), opts, no_ari))
            .collect();
    }
    let chunk = names.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|n| settle(load_one(store, states, n, opts), opts, no_ari))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("loader thread"))
            .collect()
    })
}

fn settle(r: Result<Loaded, String>, opts: &PassOptions, no_ari: &dyn Fn(&str) -> bool) -> Load {
    let l = match r {
        Ok(l) => l,
        Err(e) => return Load::Broken(e),
    };
    if no_ari(&l.server) {
        let d = decide_one(&l, opts, &SystemClock);
        let outcome = match &d {
            Ok(Decision::NotYet { due_at, reason }) => Some(Outcome::NotDue {
                due_at: *due_at,
                reason: reason.clone(),
            }),
            Ok(Decision::InBackoff { retry_at, last_error }) => Some(Outcome::InBackoff {
                retry_at: *retry_at,
                last_error: last_error.clone(),
            }),
            _ => None,
        };
        if let (Some(outcome), Ok(d)) = (outcome, d) {
            let rep = LineageReport {
                name: l.lineage.name,
                domains: l.names,
                not_after: Some(l.info.not_after),
                outcome,
            };
            return Load::Settled(rep, d);
        }
    }
    Load::Full(Box::new(l))
}

fn load_one(
    store: &Store,
    states: Option<&StateStore>,
    name: &str,
    opts: &PassOptions,
) -> Result<Loaded, String> {
    let lineage = store.load_lineage(name).map_err(|e| e.to_string())?;
    // Version agreement only (no syscalls); reading the certificate below proves its link,
    // and a renewal writes a fresh set anyway.
    if lineage.version().is_none() {
        return Err(format!(
            "{}: the live links are missing or point at different versions; run `certfleet update_symlinks`",
            lineage
                .live_path(certfleet_store::Kind::Cert)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ));
    }
    let info = lineage.cert_info().map_err(|e| e.to_string())?;
    let names = certfleet_store::lineage::certbot_names(&info);
    let state = match states {
        Some(s) => s.load(name).unwrap_or_else(|e| {
            tracing::warn!("{e}");
            LineageState::new(name)
        }),
        None => LineageState::new(name),
    };
    let mut facts = CertFacts::from_cert(&info);
    if let Some(why) = key_mismatch(&lineage, &info) {
        facts = facts.with_mismatch(why);
    }
    let server = opts
        .server_override
        .clone()
        .or_else(|| lineage.conf.server().map(str::to_string))
        .unwrap_or_else(|| crate::args::LE_PRODUCTION.to_string());
    let ca_bundle = lineage
        .conf
        .param_str("ca_bundle")
        .map(PathBuf::from)
        .or_else(|| opts.ca_bundle.clone());
    Ok(Loaded {
        lineage,
        info,
        names,
        state,
        facts,
        server,
        ca_bundle,
    })
}

/// The key type of a certificate, from its public key (no private key read).
pub fn cert_key_spec(info: &CertInfo) -> Option<KeySpec> {
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&info.spki_der).ok()?;
    match spki.parsed().ok()? {
        PublicKey::RSA(rsa) => Some(KeySpec::Rsa(rsa.key_size() as u32)),
        PublicKey::EC(point) => match point.data().len() {
            65 => Some(KeySpec::EcdsaP256),
            97 => Some(KeySpec::EcdsaP384),
            _ => None,
        },
        _ => None,
    }
}

/// The key spec the conf asks for; without `key_type` (certbot < 2.0 confs) keep the
/// certificate's current type, as certbot does.
pub fn wanted_key_spec(lineage: &Lineage, info: &CertInfo) -> Result<KeySpec, String> {
    let conf = &lineage.conf;
    let rsa = conf.rsa_key_size().map_err(|e| e.to_string())?;
    match conf.key_type() {
        Some(kt) => KeySpec::from_certbot(kt, conf.elliptic_curve(), rsa)
            .map_err(|e| format!("{}: {e}", lineage.conf_path.display())),
        None => Ok(cert_key_spec(info).unwrap_or(match rsa {
            Some(b) => KeySpec::Rsa(b),
            None => KeySpec::Rsa(2048),
        })),
    }
}

fn key_mismatch(lineage: &Lineage, info: &CertInfo) -> Option<String> {
    lineage.conf.key_type()?;
    let want = wanted_key_spec(lineage, info).ok()?;
    let have = cert_key_spec(info)?;
    (want != have).then(|| format!("the certificate's key is {have}, the configuration asks for {want}"))
}

#[derive(Default)]
struct Clients {
    map: HashMap<(String, Option<PathBuf>), AcmeClient>,
}

impl Clients {
    async fn get(&mut self, server: &str, bundle: &Option<PathBuf>) -> Result<AcmeClient, CliError> {
        let key = (server.to_string(), bundle.clone());
        if let Some(c) = self.map.get(&key) {
            return Ok(c.clone());
        }
        let c = AcmeClient::connect(
            server,
            &ClientOptions {
                ca_bundle: bundle.clone(),
                timeout: None,
            },
        )
        .await
        .map_err(CliError::acme)?;
        self.map.insert(key, c.clone());
        Ok(c)
    }
}

async fn poll_ari(
    ok: &mut [Loaded],
    polls: &[usize],
    clients: &mut Clients,
    states: Option<&StateStore>,
    dry_run: bool,
    report: &mut PassReport,
) {
    let mut jobs = Vec::new();
    for &i in polls {
        let l = &ok[i];
        let client = match clients.get(&l.server, &l.ca_bundle).await {
            Ok(c) => c,
            Err(e) => {
                report
                    .warnings
                    .push(format!("ARI for {}: {}", l.lineage.name, e.message));
                continue;
            }
        };
        let id = certfleet_acme::cert_id(
            l.info.authority_key_id.as_deref().unwrap_or_default(),
            &l.info.serial,
        );
        jobs.push(async move { (i, Account::renewal_info(&client, &id).await) });
    }
    let results: Vec<_> = futures::stream::iter(jobs)
        .buffer_unordered(ARI_POLL_CONCURRENCY)
        .collect()
        .await;
    for (i, r) in results {
        let l = &mut ok[i];
        let now = OffsetDateTime::now_utc();
        match r {
            Ok(Some(ri)) => {
                let w = AriWindow::new(
                    ri.window_start,
                    ri.window_end,
                    ri.explanation_url,
                    now,
                    ri.retry_after,
                );
                tracing::info!("ARI for {}: window {} .. {}", l.lineage.name, w.start, w.end);
                l.state.record_ari(now, &l.info.serial, w);
                if !dry_run
                    && let Some(s) = states
                    && let Err(e) = s.save(&l.state)
                {
                    report.warnings.push(e.to_string());
                }
            }
            Ok(None) => {}
            Err(e) => report.warnings.push(format!(
                "could not fetch the CA's renewal window for {} ({e}); using the lifetime rule",
                l.lineage.name
            )),
        }
    }
}

/// Everything the renewal jobs share.
struct Shared {
    store: Store,
    states: Option<StateStore>,
    hooks: Mutex<HookRunner>,
    dry_run: bool,
    cli_reload: Option<ReloadCommands>,
    reloads: Mutex<BTreeMap<String, ReloadCommands>>,
    hook_failures: std::sync::Mutex<Vec<String>>,
    standalone_ports: HashMap<String, Arc<Mutex<()>>>,
    stop: Arc<AtomicBool>,
    verbose: bool,
}

type Job = (LineageReport, Option<(Decision, LineageState)>);
/// (server, CA bundle, account id): one ACME account per combination, shared by jobs.
type AccountKeyId = (String, Option<PathBuf>, Option<String>);

async fn renew_due(
    store: &Store,
    states: Option<StateStore>,
    due: Vec<(Loaded, String)>,
    clients: &mut Clients,
    opts: &PassOptions,
    report: &mut PassReport,
) -> Vec<Job> {
    // Accounts, one per (server, bundle, account id), shared by every job that uses it.
    let mut accounts: HashMap<AccountKeyId, Result<Arc<Account>, String>> = HashMap::new();
    let mut pacers: HashMap<String, Pacer> = HashMap::new();
    let mut standalone_ports = HashMap::new();
    for (l, _) in &due {
        let acct_id = opts
            .account_override
            .clone()
            .or_else(|| l.lineage.conf.account().map(str::to_string));
        let key = (l.server.clone(), l.ca_bundle.clone(), acct_id.clone());
        if let std::collections::hash_map::Entry::Vacant(slot) = accounts.entry(key) {
            let acct = match clients.get(&l.server, &l.ca_bundle).await {
                Ok(c) => load_account(store, &c, acct_id.as_deref()),
                Err(e) => Err(e.message),
            };
            slot.insert(acct.map(Arc::new));
        }
        pacers
            .entry(l.server.clone())
            .or_insert_with(|| Pacer::new(opts.jobs, STARTS_PER_SECOND, opts.jobs as u32));
        if l.lineage.conf.authenticator() == Some("standalone") {
            let port = format!(
                "{}:{}",
                l.lineage.conf.param_str("http01_address").unwrap_or(""),
                l.lineage.conf.param_str("http01_port").unwrap_or("80")
            );
            standalone_ports
                .entry(port)
                .or_insert_with(|| Arc::new(Mutex::new(())));
        }
    }
    let shared = Arc::new(Shared {
        store: store.clone(),
        states,
        hooks: Mutex::new(HookRunner::new(opts.hooks.clone())),
        dry_run: opts.dry_run,
        cli_reload: opts.reload.clone(),
        reloads: Mutex::new(BTreeMap::new()),
        hook_failures: std::sync::Mutex::new(Vec::new()),
        standalone_ports,
        stop: opts.stop.clone(),
        verbose: opts.verbose,
    });
    // --jobs bounds the whole run; each CA's pacer also bounds (and paces) its own share.
    let global = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (l, reason) in due {
        let acct_id = opts
            .account_override
            .clone()
            .or_else(|| l.lineage.conf.account().map(str::to_string));
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

fn load_account(store: &Store, client: &AcmeClient, id: Option<&str>) -> Result<Account, String> {
    let server = client.directory_url();
    let mut list = store.accounts().list(server).map_err(|e| e.to_string())?;
    list.sort_by(|a, b| a.meta.creation_dt.cmp(&b.meta.creation_dt));
    let rec = match id {
        Some(id) => list.into_iter().find(|a| a.id == id).ok_or_else(|| {
            format!(
                "account {id} (named in the renewal conf) is not in {} for {server}; restore it, or \
                 `certfleet reconfigure --cert-name NAME --server URL` after registering",
                store.dirs().accounts_dir().display()
            )
        })?,
        None => list.into_iter().next().ok_or_else(|| {
            format!(
                "no account for {server}: run `certfleet register --server {server} -m EMAIL --agree-tos`"
            )
        })?,
    };
    let key = AccountKey::new(rec.key.clone()).map_err(|e| format!("account {}: {e}", rec.id))?;
    let uri = rec
        .uri()
        .ok_or_else(|| format!("account {} has no URL in regr.json", rec.id))?;
    Ok(Account::from_parts(client, key, uri.to_string()))
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
    acct: Result<Arc<Account>, String>,
) -> Job {
    let name = l.lineage.name.clone();
    let mut rep = LineageReport {
        name: name.clone(),
        domains: l.names.clone(),
        not_after: Some(l.info.not_after),
        outcome: Outcome::Skipped,
    };
    if shared.stop.load(Ordering::SeqCst) {
        return (rep, None);
    }
    let lh = deploy::lineage_hooks(&l.lineage.conf);
    {
        let mut h = shared.hooks.lock().await;
        let pre = h.before_attempt(&lh).await;
        note_hooks(shared, &pre);
    }
    if shared.verbose {
        eprintln!("certfleet: renewing {name}: {reason}");
    }
    let result = match acct {
        Ok(a) => attempt(shared, &l, &a).await,
        Err(e) => Err(CliError::store(e)),
    };
    let now = OffsetDateTime::now_utc();
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
            let reload = shared.cli_reload.clone().or_else(|| {
                l.lineage
                    .conf
                    .param_str(deploy::RELOAD_CONF_KEY)
                    .map(|s| deploy::reload_commands(s).map_err(|e| e.message))
                    .and_then(|r| match r {
                        Ok(c) => Some(c),
                        Err(e) => {
                            shared.hook_failures.lock().unwrap().push(format!("{name}: {e}"));
                            None
                        }
                    })
            });
            if let Some(c) = reload {
                shared.reloads.lock().await.insert(c.service.clone(), c);
            }
            if shared.verbose {
                eprintln!(
                    "certfleet: renewed {name} (version {version}, expires {})",
                    fmt_time(info.not_after)
                );
            }
            let facts = CertFacts::from_cert(&info);
            let next = decide(&RenewalInput::new(&facts), &SystemClock).ok();
            rep.not_after = Some(info.not_after);
            rep.outcome = Outcome::Renewed {
                version,
                not_after: info.not_after,
            };
            (rep, next.map(|d| (d, l.state)))
        }
        Err(e) => {
            let ca_retry = e
                .retry_after
                .and_then(|d| time::Duration::try_from(d).ok())
                .map(|d| now + d);
            let first_line = e.message.lines().next().unwrap_or_default().to_string();
            l.state.record_failure(now, first_line.clone(), ca_retry);
            save_state(shared, &l.state);
            shared.hooks.lock().await.failed(&l.names);
            eprintln!("certfleet: renewing {name} failed: {}", e.message);
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

/// Issue and save one renewal. `Ok(None)` for a dry run.
async fn attempt(shared: &Shared, l: &Loaded, acct: &Account) -> Result<Option<(u32, CertInfo)>, CliError> {
    let lin = &l.lineage;
    let ids: Vec<Identifier> = l
        .names
        .iter()
        .map(|n| {
            if n.parse::<std::net::IpAddr>().is_ok() {
                Identifier::ip(n)
            } else {
                Identifier::dns(n)
            }
        })
        .collect::<Result<_, _>>()
        .map_err(|e| CliError::usage(format!("{}: {e}", lin.name)))?;
    let auth = AuthSpec::from_conf(&lin.conf, &ids)?;
    let key = if lin.conf.reuse_key() {
        KeySource::Reuse(crate::lineage_key(lin).map_err(CliError::store)?)
    } else {
        KeySource::Generate(wanted_key_spec(lin, &l.info).map_err(CliError::usage)?)
    };
    let has_ari = acct.client().directory().renewal_info.is_some();
    // Never in a dry run: `replaces` tells the CA the old certificate is done with.
    let replaces = match (&l.info.authority_key_id, has_ari && !shared.dry_run) {
        (Some(aki), true) => Some(certfleet_acme::cert_id(aki, &l.info.serial)),
        _ => None,
    };
    if let Some(id) = &replaces {
        tracing::info!("{}: new order replaces={id} (ARI)", lin.name);
    }
    // Standalone lineages on one port take turns.
    let _port = match &auth {
        AuthSpec::Standalone { address, port } => {
            let lock = shared.standalone_ports.get(&format!("{address}:{port}")).cloned();
            match lock {
                Some(m) => Some(m.lock_owned().await),
                None => None,
            }
        }
        _ => None,
    };
    let solver = auth
        .solver(&SolverContext {
            work_dir: shared.store.dirs().work_dir.clone(),
        })
        .await?;
    solver.preflight(&ids).await.map_err(CliError::solver)?;
    let progress = Progress::new(true);
    let req = |replaces: Option<String>, key: KeySource| IssueRequest {
        identifiers: ids.clone(),
        key,
        preferred_profile: lin.conf.param_str("preferred_profile").map(str::to_string),
        required_profile: lin.conf.param_str("required_profile").map(str::to_string),
        preferred_chain: lin.conf.preferred_chain().map(str::to_string),
        replaces,
        timeout: StdDuration::from_secs(300),
    };
    let retry_key = match &key {
        KeySource::Generate(s) => KeySource::Generate(*s),
        KeySource::Reuse(k) => KeySource::Reuse(k.clone()),
        KeySource::Csr(d) => KeySource::Csr(d.clone()),
    };
    let issued = match issue::issue(acct, solver.as_ref(), req(replaces.clone(), key), &progress).await {
        Ok(i) => i,
        // A CA that already saw this certificate replaced (an earlier run crashed after the
        // order) refuses `replaces`; the renewal itself is still wanted.
        Err(e) if replaces.is_some() && e.message.to_ascii_lowercase().contains("replace") => {
            tracing::warn!(
                "{}: the CA refused `replaces` ({}); ordering without it",
                lin.name,
                e.message
            );
            issue::issue(acct, solver.as_ref(), req(None, retry_key), &progress).await?
        }
        Err(e) => return Err(e),
    };
    if shared.dry_run {
        return Ok(None);
    }
    let key_pem = issued.key.as_ref().expect("lineages always have a key").to_pem();
    let files = CertFiles::new(issued.cert_pem.clone(), issued.chain_pem.clone(), key_pem);
    let store = shared.store.clone();
    let name = lin.name.clone();
    let conf = lin.conf.clone();
    let saved = tokio::task::spawn_blocking(move || store.save_version(&name, &files, &conf))
        .await
        .map_err(|e| CliError::store(format!("saving {}: {e}", lin.name)))?
        .map_err(CliError::store)?;
    // Orphans of a run that was killed mid-write (we hold the store lock, so nobody else is
    // writing here now).
    sweep_temp_files(&lin.archive_dir);
    sweep_temp_files(&shared.store.live_dir(&lin.name));
    for dir in [shared.store.live_dir(&lin.name).parent(), lin.conf_path.parent()]
        .into_iter()
        .flatten()
    {
        sweep_temp_files(dir);
    }
    if let Some(s) = &shared.states {
        sweep_temp_files(s.dir());
    }
    Ok(Some((saved.version, issued.info)))
}

/// Remove the temp files of the store's and the state store's atomic writes left by a process
/// that died (`.NAME.tmp-PID-N`, `.NAME.link-PID-N`, `.NAME.new-PID`, `.NAME.json.PID.N.tmp`),
/// never this process's own.
pub fn sweep_temp_files(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id().to_string();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(pid) = temp_file_pid(name)
            && pid != me
        {
            let path = e.path();
            let res = if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match res {
                Ok(()) => tracing::info!("removed {} left by an interrupted run", path.display()),
                Err(err) => tracing::warn!("cannot remove {}: {err}", path.display()),
            }
        }
    }
}

/// The pid in a temp file name of ours, if `name` is one.
fn temp_file_pid(name: &str) -> Option<&str> {
    if !name.starts_with('.') {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    for marker in [".tmp-", ".link-"] {
        if let Some(i) = name.rfind(marker) {
            let (pid, n) = name[i + marker.len()..].split_once('-')?;
            return (digits(pid) && digits(n)).then_some(pid);
        }
    }
    if let Some(i) = name.rfind(".new-") {
        let pid = &name[i + 5..];
        return digits(pid).then_some(pid);
    }
    let rest = name.strip_suffix(".tmp")?;
    let (rest, n) = rest.rsplit_once('.')?;
    let (_, pid) = rest.rsplit_once('.')?;
    (digits(pid) && digits(n)).then_some(pid)
}

/// `2025-05-01 12:00:00 UTC`.
pub fn fmt_time(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC).format(&fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_file_names() {
        assert_eq!(temp_file_pid(".cert3.pem.tmp-123-0"), Some("123"));
        assert_eq!(temp_file_pid(".cert.pem.link-77-12"), Some("77"));
        assert_eq!(temp_file_pid(".a.example.new-4242"), Some("4242"));
        assert_eq!(temp_file_pid(".a.example.json.99.3.tmp"), Some("99"));
        assert_eq!(temp_file_pid("cert3.pem"), None);
        assert_eq!(temp_file_pid(".certbot.lock"), None);
        assert_eq!(temp_file_pid("README"), None);
        assert_eq!(temp_file_pid(".x.tmp-abc-1"), None);
    }

    #[test]
    fn time_format() {
        let t = time::macros::datetime!(2025-05-01 12:03:04 UTC);
        assert_eq!(fmt_time(t), "2025-05-01 12:03:04 UTC");
    }
}
