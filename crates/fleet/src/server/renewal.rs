//! The server's renewal loop: claim the certificates whose next attempt has come (with a lease,
//! so several nodes never renew one certificate twice), ask the CA's ARI when its poll time has
//! come, [`decide`] with the same rule as `certfleet renew`, issue through the engine, commit
//! the new certificate (or the failure and its backoff) in one transaction.
//!
//! Every decision ends in a `next_attempt` stored with the certificate, so the loop itself keeps
//! no memory: a killed server resumes where the database says, and the due query is one index
//! scan however many certificates there are.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use certfleet_acme::{Account, AccountKey, AcmeClient};
use certfleet_core::{CertInfo, Identifier, PrivateKey};
use certfleet_engine::account::AccountOptions;
use certfleet_engine::issue::{IssueRequest, KeySource, issue_replacing};
use certfleet_engine::{EngineError, NoEvents};
use certfleet_renew::{AriWindow, CertFacts, Decision, RenewalInput, decide, names_mismatch};
use certfleet_solvers::Solver;
use certfleet_solvers::dns::{Dns01Config, Dns01Solver, ProviderConfig, registry};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use super::http01::DbHttp01Solver;
use super::metrics::{FailureReason, ca_label};
use super::state::AppState;
use crate::db::{Ari, Certificate, Commit, Failure, IssuedCert};
use crate::pki;
use crate::proto::{ChallengeSettings, Custody, UnixTime};

/// A node holds a certificate this long per claim; an issuance is bounded well below it.
const LEASE_SECONDS: i64 = 15 * 60;
/// One issuance (order, validation, finalize, download) gives up after this.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(300);
/// The loop looks at the database at least this often, even if nothing woke it.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// An agent-custody certificate with no fresh CSR looks again after this.
const CSR_WAIT_SECONDS: i64 = 3600;
/// The reason `fleet cert renew` stores: the loop renews such a certificate even if not due.
pub const ADMIN_RENEW_REASON: &str = "renewal requested by the admin";

/// Which CA and account the server uses (the global `--server`, `--ca-bundle`, `-m`,
/// `--agree-tos`, `--eab-*` flags).
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub server: String,
    pub ca_bundle: Option<PathBuf>,
    pub account: AccountOptions,
}

pub struct RenewalLoop {
    pub state: AppState,
    pub acme: AcmeSettings,
    /// This node's lease owner name.
    pub node: String,
    pub jobs: usize,
    /// Where dns-01 keeps its pending-records file (crash cleanup).
    pub work_dir: PathBuf,
    /// One account per CA directory URL, opened or registered on first use.
    accounts: Mutex<HashMap<String, Arc<Account>>>,
}

impl RenewalLoop {
    pub fn new(state: AppState, acme: AcmeSettings, node: String, jobs: usize, work_dir: PathBuf) -> Self {
        Self {
            state,
            acme,
            node,
            jobs: jobs.max(1),
            work_dir,
            accounts: Mutex::new(HashMap::new()),
        }
    }

    /// Run until `stop` fires; renewals in flight finish first (each is bounded by
    /// [`ISSUE_TIMEOUT`]).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let sem = Arc::new(tokio::sync::Semaphore::new(self.jobs));
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            let free = sem.available_permits() as u32;
            if free > 0 {
                let now = self.state.now();
                match self
                    .state
                    .db
                    .claim_due(&self.node, now, now + LEASE_SECONDS, free)
                    .await
                {
                    Ok(due) => {
                        for cert in due {
                            let permit = sem.clone().acquire_owned().await.expect("semaphore never closed");
                            let me = self.clone();
                            tasks.spawn(async move {
                                me.work(cert).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => tracing::error!("renewal loop: finding due certificates: {e}"),
                }
            }
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                _ = self.state.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = stop.changed() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// One claimed certificate: decide, maybe renew, always leave a next attempt behind.
    async fn work(&self, cert: Certificate) {
        let name = cert.name.clone();
        if let Err(e) = self.work_inner(&cert).await {
            tracing::error!("{name}: {e}");
            // The lease runs out by itself; release it now so another node need not wait.
            let _ = self.state.db.release_lease(&name, &self.node).await;
        }
    }

    async fn work_inner(&self, cert: &Certificate) -> Result<(), crate::db::DbError> {
        let db = &self.state.db;
        let name = &cert.name;
        let server = cert
            .settings
            .acme_server
            .clone()
            .unwrap_or_else(|| self.acme.server.clone());
        let force = cert.next_attempt_reason.as_deref() == Some(ADMIN_RENEW_REASON);

        // Renewal, not first issuance: is it due? (ARI first, when the CA has it.)
        if let Some(cur) = &cert.current
            && !force
        {
            let info = CertInfo::from_pem(&cur.cert_pem).ok();
            let ari = match &info {
                Some(info) => self.poll_ari(cert, info, &server).await,
                None => cert.ari.clone(),
            };
            let decision = self.decision(cert, cur, ari.as_ref());
            if let Decision::NotYet { due_at, reason } = decision {
                let mut at = due_at.unix_timestamp();
                if let Some(a) = &ari {
                    at = at.min(a.next_poll.max(self.state.now() + 60));
                }
                db.schedule(name, at, &reason).await?;
                db.release_lease(name, &self.node).await?;
                return Ok(());
            }
        }

        // Agent custody: the host's CSR is the key. None yet: wait for it, no failure.
        let (key, csr_id) = match cert.settings.custody {
            Custody::Server => match crate::proto::key_spec(&cert.settings.key_type) {
                Some(spec) => (KeySource::Generate(spec), None),
                None => {
                    return self
                        .fail(
                            cert,
                            &format!("unknown key type {:?}", cert.settings.key_type),
                            FailureReason::Other,
                            None,
                        )
                        .await;
                }
            },
            Custody::Agent => match db.latest_unused_csr(name, None).await? {
                Some(csr) => (KeySource::Csr(csr.der), Some(csr.id)),
                None => {
                    let hosts = db.hosts_of(name).await?;
                    let reason = if hosts.is_empty() {
                        "waiting for a host: assign one (certfleet fleet assign CERT HOST); its agent sends the CSR".to_string()
                    } else {
                        format!(
                            "waiting for a CSR from {} (its agent sends one at its next sync)",
                            hosts.join(", ")
                        )
                    };
                    db.schedule(name, self.state.now() + CSR_WAIT_SECONDS, &reason)
                        .await?;
                    db.release_lease(name, &self.node).await?;
                    return Ok(());
                }
            },
        };

        let started = std::time::Instant::now();
        match self.issue(cert, &server, key).await {
            Ok((issued, replaced)) => {
                self.state
                    .metrics
                    .issued(&ca_label(&server), started.elapsed().as_secs_f64());
                self.commit(cert, issued, csr_id, replaced).await
            }
            Err(e) => {
                self.state
                    .metrics
                    .attempt_seconds(&ca_label(&server), started.elapsed().as_secs_f64());
                let retry = e.retry_after().map(|d| self.state.clock.now() + d);
                self.fail(cert, &e.message(), FailureReason::of(&e), retry).await
            }
        }
    }

    /// The CA's current ARI window for `info`, polled when the stored one's time has come.
    async fn poll_ari(&self, cert: &Certificate, info: &CertInfo, server: &str) -> Option<Ari> {
        let now = self.state.now();
        if cert.ari.as_ref().is_some_and(|a| a.next_poll > now) {
            return cert.ari.clone();
        }
        let aki = info.authority_key_id.as_ref()?;
        let account = self.account(server).await.ok()?;
        let client = account.client();
        client.directory().renewal_info.as_ref()?;
        let id = certfleet_acme::cert_id(aki, &info.serial);
        match Account::renewal_info(client, &id).await {
            Ok(Some(ri)) => {
                let next_poll = ri
                    .retry_after
                    .map(|d| now + d.as_secs() as i64)
                    .unwrap_or(now + 6 * 3600)
                    .clamp(now + 60, now + 24 * 3600);
                let ari = Ari {
                    start: ri.window_start.unix_timestamp(),
                    end: ri.window_end.unix_timestamp(),
                    next_poll,
                    explanation_url: ri.explanation_url,
                };
                if let Err(e) = self.state.db.set_ari(&cert.name, Some(&ari)).await {
                    tracing::warn!("{}: storing the ARI window: {e}", cert.name);
                }
                Some(ari)
            }
            Ok(None) => cert.ari.clone(),
            Err(e) => {
                tracing::warn!("{}: ARI poll failed: {e}", cert.name);
                cert.ari.clone()
            }
        }
    }

    /// `certfleet renew`'s rule, on the database's facts.
    fn decision(&self, cert: &Certificate, cur: &IssuedCert, ari: Option<&Ari>) -> Decision {
        let facts = match CertInfo::from_pem(&cur.cert_pem) {
            Ok(info) => {
                let facts = CertFacts::from_cert(&info);
                match names_mismatch(&info.names, &cert.settings.identifiers) {
                    Some(why) => facts.with_mismatch(why),
                    None => facts,
                }
            }
            Err(e) => {
                return Decision::RenewNow {
                    reason: format!("the stored certificate is unreadable ({e})"),
                };
            }
        };
        let window = ari.map(|a| {
            AriWindow::new(
                OffsetDateTime::from_unix_timestamp(a.start).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                OffsetDateTime::from_unix_timestamp(a.end).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                a.explanation_url.clone(),
                self.state.clock.now(),
                None,
            )
        });
        let input = RenewalInput {
            ari: window.as_ref(),
            ..RenewalInput::new(&facts)
        };
        decide(&input, self.state.clock.as_ref()).unwrap_or_else(|e| Decision::RenewNow {
            reason: e.to_string(),
        })
    }

    async fn account(&self, server: &str) -> Result<Arc<Account>, EngineError> {
        let mut map = self.accounts.lock().await;
        if let Some(a) = map.get(server) {
            return Ok(a.clone());
        }
        let client: AcmeClient =
            certfleet_engine::account::connect(server, self.acme.ca_bundle.clone()).await?;
        let account = match self.state.db.account(server).await {
            Ok(Some(rec)) => {
                let key = PrivateKey::from_pem(&rec.key_pem).map_err(|e| {
                    EngineError::config(format!("the stored ACME account key for {server}: {e}"))
                })?;
                let key = AccountKey::new(key)?;
                Account::from_parts(&client, key, rec.account_url)
            }
            Ok(None) => {
                let (account, _) =
                    certfleet_engine::account::register_new(&self.acme.account, &client, &NoEvents).await?;
                let rec = crate::db::Account {
                    server_url: server.to_string(),
                    account_url: account.url().to_string(),
                    key_pem: account.key().private_key().to_pem(),
                    contact: self
                        .acme
                        .account
                        .email
                        .iter()
                        .flat_map(|e| e.split(','))
                        .map(|e| format!("mailto:{}", e.trim()))
                        .collect(),
                    created_at: self.state.now(),
                };
                if let Err(e) = self.state.db.put_account(&rec).await {
                    return Err(EngineError::config(format!(
                        "saving the new ACME account for {server}: {e}"
                    )));
                }
                tracing::info!("registered ACME account {} at {server}", account.url());
                account
            }
            Err(e) => {
                return Err(EngineError::config(format!(
                    "reading the ACME account for {server}: {e}"
                )));
            }
        };
        let account = Arc::new(account);
        map.insert(server.to_string(), account.clone());
        Ok(account)
    }

    fn solver(&self, cert: &Certificate) -> Result<Box<dyn Solver>, EngineError> {
        Ok(match &cert.settings.challenge {
            ChallengeSettings::Http01 => Box::new(DbHttp01Solver {
                db: self.state.db.clone(),
                clock: self.state.clock.clone(),
            }),
            ChallengeSettings::Dns01 {
                provider,
                credentials,
                propagation_seconds,
            } => {
                let reg = registry::by_name(provider)
                    .ok_or_else(|| EngineError::config(format!("unknown DNS provider {provider:?}")))?;
                let mut cfg = Dns01Config::new(ProviderConfig::Registered {
                    provider: reg,
                    credentials: credentials.into(),
                });
                cfg.min_wait = Duration::from_secs(propagation_seconds.unwrap_or(0));
                cfg.state_dir = Some(self.work_dir.clone());
                Box::new(Dns01Solver::from_config(&cfg).map_err(certfleet_solvers::SolverError::from)?)
            }
        })
    }

    /// Issue through the engine; returns the new certificate and whether `replaces` was sent.
    async fn issue(
        &self,
        cert: &Certificate,
        server: &str,
        key: KeySource,
    ) -> Result<(certfleet_engine::issue::Issued, bool), EngineError> {
        let ids: Vec<Identifier> = certfleet_core::identifier::parse_domain_args(&cert.settings.identifiers)
            .map_err(|e| EngineError::config(e.to_string()))?;
        let account = self.account(server).await?;
        let solver = self.solver(cert)?;
        solver.preflight(&ids).await?;
        let replaces = cert.current.as_ref().and_then(|cur| {
            account.client().directory().renewal_info.as_ref()?;
            let info = CertInfo::from_pem(&cur.cert_pem).ok()?;
            Some(certfleet_acme::cert_id(
                info.authority_key_id.as_ref()?,
                &info.serial,
            ))
        });
        let req = IssueRequest {
            identifiers: ids,
            key,
            preferred_profile: cert.settings.profile.clone(),
            required_profile: None,
            preferred_chain: None,
            replaces: replaces.clone(),
            timeout: ISSUE_TIMEOUT,
        };
        tracing::info!(
            "{}: {} at {server}",
            cert.name,
            if cert.current.is_some() {
                "renewing"
            } else {
                "issuing"
            }
        );
        let issued = issue_replacing(&account, solver.as_ref(), req, &NoEvents).await?;
        Ok((issued, replaces.is_some()))
    }

    async fn commit(
        &self,
        cert: &Certificate,
        issued: certfleet_engine::issue::Issued,
        csr_id: Option<i64>,
        replaced: bool,
    ) -> Result<(), crate::db::DbError> {
        let name = &cert.name;
        let info = &issued.info;
        let key_blob = match (&cert.settings.custody, &issued.key) {
            (Custody::Server, Some(k)) => match self.state.secretbox.seal(name, k.to_pem().as_bytes()) {
                Ok(b) => Some(b.into_bytes()),
                Err(e) => {
                    return self
                        .fail(
                            cert,
                            &format!("sealing the new key: {e}"),
                            FailureReason::Other,
                            None,
                        )
                        .await;
                }
            },
            _ => None,
        };
        let key_sha256 = pki::spki_sha256_of_cert(&issued.cert_pem).unwrap_or_default();
        let new = IssuedCert {
            cert_pem: issued.cert_pem.clone(),
            chain_pem: issued.chain_pem.clone(),
            serial: info.serial_hex(),
            not_before: info.not_before.unix_timestamp(),
            not_after: info.not_after.unix_timestamp(),
            issuer: info.issuer_cn.clone().unwrap_or_default(),
            key_sha256,
            issued_at: self.state.now(),
        };
        let next = next_renewal(info, self.state.clock.as_ref());
        let reason = format!(
            "{}{}",
            next.1,
            if replaced {
                " (the order replaced the previous one, ARI)"
            } else {
                ""
            }
        );
        let commit = Commit {
            cert: &new,
            key_blob: key_blob.as_deref(),
            lease_owner: Some(&self.node),
            csr_id,
            next_attempt: next.0,
            next_attempt_reason: &reason,
            actor: "server",
            imported: false,
        };
        self.state.db.commit_issued(name, &commit).await?;
        tracing::info!(
            "{name}: issued serial {}, valid until {}",
            new.serial,
            info.not_after
        );
        Ok(())
    }

    async fn fail(
        &self,
        cert: &Certificate,
        error: &str,
        reason: FailureReason,
        ca_retry_after: Option<OffsetDateTime>,
    ) -> Result<(), crate::db::DbError> {
        let server = cert.settings.acme_server.as_deref().unwrap_or(&self.acme.server);
        self.state.metrics.failed(&ca_label(server), reason);
        let now = self.state.clock.now();
        let next = certfleet_renew::backoff::next_attempt(now, cert.consecutive_failures + 1, ca_retry_after);
        let reason = format!(
            "retry after {} failure{}",
            cert.consecutive_failures + 1,
            if cert.consecutive_failures == 0 { "" } else { "s" }
        );
        tracing::warn!("{}: {error}; next attempt at {next}", cert.name);
        let f = Failure {
            now: now.unix_timestamp(),
            error,
            next_attempt: next.unix_timestamp(),
            next_attempt_reason: &reason,
            lease_owner: Some(&self.node),
            actor: "server",
        };
        self.state.db.record_failure(&cert.name, &f).await?;
        Ok(())
    }
}

/// When a certificate just committed (issued here or imported) is next renewed, and why.
pub(crate) fn next_renewal(info: &CertInfo, clock: &dyn certfleet_core::Clock) -> (UnixTime, String) {
    let facts = CertFacts::from_cert(info);
    // Without renew_before_expiry the rule cannot fail; the fallback only keeps a schedule.
    match decide(&RenewalInput::new(&facts), clock) {
        Ok(d) => (
            d.wake_at(clock.now()).unwrap_or(info.not_after).unix_timestamp(),
            d.to_string(),
        ),
        Err(e) => (
            info.not_after.unix_timestamp() - 30 * 86400,
            format!("30 days before expiry ({e})"),
        ),
    }
}
