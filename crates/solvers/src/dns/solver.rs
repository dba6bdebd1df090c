//! [`Dns01Solver`]: the [`Solver`] for dns-01, and [`Dns01Config`], what the CLI fills in.
//!
//! `present`: remove records a crashed run left behind, find where each TXT goes (CNAME
//! chain, zone by SOA), note the records in the state file, add them all through the provider,
//! then wait until every authoritative server answers every value. `cleanup`: remove exactly
//! those values and forget them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certfleet_core::{ChallengeType, Identifier};

use super::exec::ExecHooks;
use super::lookup::Resolver;
use super::manual::Manual;
use super::propagation::{self, PropagationPolicy};
use super::registry::{self, Registration};
use super::state::StateFile;
use super::{DnsError, DnsProvider, TxtRecord, norm};
use crate::{ChallengeTask, Solver, SolverError};

/// The TXT value for a key authorization: base64url-no-pad(SHA-256(key_authorization)).
pub fn txt_value(key_authorization: &str) -> String {
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// Which provider, and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderConfig {
    /// `--dns-<name> --dns-<name>-credentials FILE`: a provider of the [`registry`] with its
    /// certbot credentials ini.
    ///
    /// [`registry`]: super::registry
    Registered {
        provider: &'static Registration,
        credentials: PathBuf,
    },
    /// Shorthand for `Registered` with the rfc2136 provider (the first API, kept for callers).
    Rfc2136 { credentials: PathBuf },
    /// `--manual --manual-auth-hook CMD [--manual-cleanup-hook CMD]`.
    Hooks {
        auth_hook: String,
        cleanup_hook: Option<String>,
    },
    /// `--manual` without hooks: print, wait for Enter on stdin.
    Manual,
}

/// Everything the CLI decides about dns-01.
#[derive(Debug, Clone)]
pub struct Dns01Config {
    pub provider: ProviderConfig,
    /// `--dns-propagation-timeout` (default 120 s).
    pub propagation_timeout: Duration,
    /// `--dns-<provider>-propagation-seconds`: wait at least this long (default 0).
    pub min_wait: Duration,
    /// `--dns-resolver IP:PORT` for CNAME/SOA/NS lookups. Default: the rfc2136 server for
    /// rfc2136, else the first nameserver of /etc/resolv.conf.
    pub resolver: Option<SocketAddr>,
    /// Check the authoritative servers before returning from `present` (default true).
    pub check_propagation: bool,
    /// Where the pending-records file lives (e.g. certbot's work dir); None: no crash recovery.
    pub state_dir: Option<PathBuf>,
}

impl ProviderConfig {
    /// The registered provider and its credentials file, for the variants that have one.
    pub fn registered(&self) -> Option<(&'static Registration, &std::path::Path)> {
        match self {
            ProviderConfig::Registered {
                provider,
                credentials,
            } => Some((provider, credentials)),
            ProviderConfig::Rfc2136 { credentials } => Some((
                registry::by_name("rfc2136").expect("rfc2136 is registered"),
                credentials,
            )),
            ProviderConfig::Hooks { .. } | ProviderConfig::Manual => None,
        }
    }
}

impl Dns01Config {
    pub fn new(provider: ProviderConfig) -> Self {
        Dns01Config {
            provider,
            propagation_timeout: Duration::from_secs(120),
            min_wait: Duration::ZERO,
            resolver: None,
            check_propagation: true,
            state_dir: None,
        }
    }
}

/// dns-01 through any [`DnsProvider`].
pub struct Dns01Solver {
    provider: Arc<dyn DnsProvider>,
    resolver: Option<Resolver>,
    policy: PropagationPolicy,
    check_propagation: bool,
    state: Option<StateFile>,
    /// key authorization -> record presented, so cleanup removes what present added even if
    /// DNS changed in between.
    presented: Mutex<HashMap<String, TxtRecord>>,
}

impl std::fmt::Debug for Dns01Solver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns01Solver")
            .field("provider", &self.provider.name())
            .field("resolver", &self.resolver)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Dns01Solver {
    /// Build the provider named in `cfg` (reading and checking its credentials file).
    pub fn from_config(cfg: &Dns01Config) -> Result<Self, DnsError> {
        let provider: Arc<dyn DnsProvider> = match &cfg.provider {
            ProviderConfig::Registered { .. } | ProviderConfig::Rfc2136 { .. } => {
                let (provider, credentials) = cfg.provider.registered().expect("a registered provider");
                (provider.build)(credentials)?
            }
            ProviderConfig::Hooks {
                auth_hook,
                cleanup_hook,
            } => Arc::new(ExecHooks::new(auth_hook.clone(), cleanup_hook.clone())),
            ProviderConfig::Manual => Arc::new(Manual::stdio()),
        };
        Self::with_provider(provider, cfg)
    }

    /// Use a ready-made provider; `cfg.provider` is ignored.
    pub fn with_provider(provider: Arc<dyn DnsProvider>, cfg: &Dns01Config) -> Result<Self, DnsError> {
        let resolver = match cfg.resolver {
            Some(a) => Some(Resolver::new(a)),
            // Only hooks without a propagation check can do without DNS lookups.
            None => provider.default_resolver().or_else(|| Resolver::system().ok()),
        };
        Ok(Dns01Solver {
            provider,
            resolver,
            policy: PropagationPolicy {
                timeout: cfg.propagation_timeout,
                min_wait: cfg.min_wait,
                ..PropagationPolicy::default()
            },
            check_propagation: cfg.check_propagation,
            state: cfg.state_dir.as_deref().map(StateFile::new),
            presented: Mutex::new(HashMap::new()),
        })
    }

    /// Override the poll interval bounds (tests of the timeout path).
    pub fn set_poll_intervals(&mut self, initial: Duration, max: Duration) {
        self.policy.initial_interval = initial;
        self.policy.max_interval = max;
    }

    fn resolver(&self) -> Result<&Resolver, DnsError> {
        self.resolver
            .as_ref()
            .ok_or_else(|| DnsError::Config("no DNS resolver known; pass --dns-resolver IP:PORT".into()))
    }

    /// Where the TXT for `identifier` goes and in which zone.
    async fn plan_one(&self, identifier: &Identifier, value: String) -> Result<TxtRecord, DnsError> {
        let Identifier::Dns(_) = identifier else {
            return Err(DnsError::Config(format!(
                "{identifier} is an IP address: dns-01 cannot validate it (use http-01 or tls-alpn-01)"
            )));
        };
        let domain = identifier.base_name();
        let name = format!("_acme-challenge.{domain}");
        // Hooks without a check need no lookups (they may point at DNS we cannot see).
        if !self.check_propagation && self.provider.name() == "manual-hooks" {
            return Ok(TxtRecord {
                domain,
                fqdn: name,
                zone: None,
                value,
            });
        }
        let r = self.resolver()?;
        let fqdn = r.follow_cname(&name).await?;
        let zone = r.find_zone(&fqdn).await?;
        Ok(TxtRecord {
            domain,
            fqdn,
            zone: Some(zone),
            value,
        })
    }

    async fn plan(&self, tasks: &[ChallengeTask]) -> Result<Vec<TxtRecord>, DnsError> {
        let plans = tasks
            .iter()
            .map(|t| self.plan_one(&t.identifier, txt_value(&t.key_authorization)));
        futures::future::join_all(plans).await.into_iter().collect()
    }

    /// Remove what a previous run of this provider recorded but never cleaned up.
    async fn remove_stale(&self, keep: &[TxtRecord]) -> Result<(), DnsError> {
        let (Some(state), true) = (&self.state, self.provider.removes_stale()) else {
            return Ok(());
        };
        let stale: Vec<TxtRecord> = state
            .stale(self.provider.name())?
            .into_iter()
            .filter(|r| !keep.iter().any(|k| k.fqdn == r.fqdn && k.value == r.value))
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        tracing::info!(count = stale.len(), "removing TXT records left by an earlier run");
        let results = self.provider.remove_all(&stale).await;
        let done: Vec<TxtRecord> = stale
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(s, _)| s.clone())
            .collect();
        for (s, r) in stale.iter().zip(results) {
            if let Err(e) = r {
                tracing::warn!(name = %s.fqdn, error = %e, "could not remove a stale TXT record");
            }
        }
        state.remove(self.provider.name(), &done)
    }

    fn remembered(&self, task: &ChallengeTask) -> Option<TxtRecord> {
        self.presented
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&task.key_authorization)
            .cloned()
    }
}

/// A solver dropped without cleanup (a crash inside a long-running process, a cancelled
/// task) no longer owns its records: the next run removes them as stale.
impl Drop for Dns01Solver {
    fn drop(&mut self) {
        if let Some(state) = &self.state {
            let p = self.presented.get_mut().unwrap_or_else(|e| e.into_inner());
            let records: Vec<TxtRecord> = p.values().cloned().collect();
            state.release(&records);
        }
    }
}

/// First error of a batch, plus how many more there were.
fn first_error<T>(results: Vec<Result<T, DnsError>>) -> Result<Vec<T>, DnsError> {
    let mut oks = Vec::new();
    let mut errs = Vec::new();
    for r in results {
        match r {
            Ok(v) => oks.push(v),
            Err(e) => errs.push(e),
        }
    }
    match errs.len() {
        0 => Ok(oks),
        1 => Err(errs.remove(0)),
        n => {
            let first = errs.remove(0);
            Err(DnsError::Provider {
                provider: "dns-01",
                why: format!(
                    "{first} (and {} more failure{})",
                    n - 1,
                    if n > 2 { "s" } else { "" }
                ),
            })
        }
    }
}

#[async_trait::async_trait]
impl Solver for Dns01Solver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Dns01
    }

    /// Provider usable, every name resolvable to a zone: fail before the order is placed.
    async fn preflight(&self, identifiers: &[Identifier]) -> Result<(), SolverError> {
        self.provider.preflight().await?;
        let plans = identifiers.iter().map(|i| self.plan_one(i, String::new()));
        first_error(futures::future::join_all(plans).await)?;
        Ok(())
    }

    async fn present(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError> {
        let mut records = self.plan(tasks).await?;
        self.remove_stale(&records).await?;
        // Written before the change, so a crash in between still leaves a trace.
        if let Some(state) = &self.state {
            state.add(self.provider.name(), &records)?;
        }
        {
            let mut p = self.presented.lock().unwrap_or_else(|e| e.into_inner());
            for (t, r) in tasks.iter().zip(&records) {
                p.insert(t.key_authorization.clone(), r.clone());
            }
        }
        let zones = first_error(self.provider.set_all(&records).await)?;
        for (r, z) in records.iter_mut().zip(zones) {
            if let Some(z) = z {
                r.zone = Some(norm(&z));
            }
        }
        if self.check_propagation {
            propagation::wait_for(self.resolver()?, &records, &self.policy).await?;
        } else if !self.policy.min_wait.is_zero() {
            tokio::time::sleep(self.policy.min_wait).await;
        }
        Ok(())
    }

    async fn cleanup_all(&self) -> Result<(), SolverError> {
        let records: Vec<TxtRecord> = {
            let mut p = self.presented.lock().unwrap_or_else(|e| e.into_inner());
            let mut v: Vec<TxtRecord> = p.drain().map(|(_, r)| r).collect();
            v.dedup();
            v
        };
        if records.is_empty() {
            return Ok(());
        }
        let results = self.provider.remove_all(&records).await;
        if let Some(state) = &self.state {
            let done: Vec<TxtRecord> = records
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(r, _)| r.clone())
                .collect();
            state.release(&records);
            state.remove(self.provider.name(), &done)?;
        }
        first_error(results)?;
        Ok(())
    }

    async fn cleanup(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError> {
        let mut records = Vec::new();
        for t in tasks {
            match self.remembered(t) {
                Some(r) => records.push(r),
                // Not presented by this process: recompute (cleanup after a restart).
                None => match self
                    .plan_one(&t.identifier, txt_value(&t.key_authorization))
                    .await
                {
                    Ok(r) => records.push(r),
                    Err(e) => {
                        tracing::warn!(identifier = %t.identifier, error = %e, "cannot locate TXT to remove")
                    }
                },
            }
        }
        let results = self.provider.remove_all(&records).await;
        let done: Vec<TxtRecord> = records
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(r, _)| r.clone())
            .collect();
        {
            let mut p = self.presented.lock().unwrap_or_else(|e| e.into_inner());
            for t in tasks {
                if let Some(r) = p.get(&t.key_authorization)
                    && done.contains(r)
                {
                    p.remove(&t.key_authorization);
                }
            }
        }
        if let Some(state) = &self.state {
            state.release(&records);
            state.remove(self.provider.name(), &done)?;
        }
        first_error(results)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_value_is_rfc8555_example_shape() {
        // SHA-256("") base64url without padding.
        assert_eq!(txt_value(""), "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
        assert_eq!(txt_value("token.thumb").len(), 43);
    }
}
