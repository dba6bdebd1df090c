//! certbot's `--manual-auth-hook` / `--manual-cleanup-hook` for dns-01: run a shell command
//! per challenge, one after the other in order, with certbot's environment:
//!
//! - `CERTBOT_DOMAIN`: the domain being validated (no `*.`);
//! - `CERTBOT_VALIDATION`: the TXT value;
//! - `CERTBOT_REMAINING_CHALLENGES`: how many challenges come after this one;
//! - `CERTBOT_ALL_DOMAINS`: every domain of the batch, comma-separated;
//! - `CERTBOT_AUTH_OUTPUT` (cleanup only): the auth hook's trimmed standard output.
//!
//! `CERTBOT_TOKEN` is not set for dns-01 (certbot removes it too; it is an http-01 file name).
//! Unlike certbot, a hook exiting non-zero is an error, with the end of its stderr.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{DnsError, DnsProvider, TxtRecord};
use crate::manual_hooks::Env;

const NAME: &str = "manual-hooks";

/// Runs user hooks through `sh -c`, as certbot does.
#[derive(Debug)]
pub struct ExecHooks {
    auth_hook: String,
    cleanup_hook: Option<String>,
    /// Environment of each auth run, keyed by (domain, value), reused for its cleanup.
    runs: Mutex<HashMap<(String, String), Env>>,
}

impl ExecHooks {
    pub fn new(auth_hook: impl Into<String>, cleanup_hook: Option<String>) -> Self {
        ExecHooks {
            auth_hook: auth_hook.into(),
            cleanup_hook,
            runs: Mutex::new(HashMap::new()),
        }
    }

    fn env_for(records: &[TxtRecord], i: usize) -> Env {
        let domains: Vec<&str> = records.iter().map(|r| r.domain.as_str()).collect();
        crate::manual_hooks::certbot_env(&domains, i, &records[i].value, None)
    }

    fn remember(&self, r: &TxtRecord, env: Env) {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((r.domain.clone(), r.value.clone()), env);
    }

    fn recall(&self, r: &TxtRecord) -> Option<Env> {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(r.domain.clone(), r.value.clone()))
    }
}

/// Run `sh -c hook` with `env`; returns trimmed stdout.
async fn run_hook(
    which: &str,
    hook: &str,
    domain: &str,
    env: &[(String, String)],
) -> Result<String, DnsError> {
    crate::manual_hooks::run(which, hook, domain, env)
        .await
        .map_err(|e| match e {
            crate::manual_hooks::HookError::Spawn { context, source } => DnsError::io(context, source),
            crate::manual_hooks::HookError::Failed(why) => DnsError::provider(NAME, why),
        })
}

#[async_trait::async_trait]
impl DnsProvider for ExecHooks {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn set_txt(&self, record: &TxtRecord) -> Result<Option<String>, DnsError> {
        self.set_all(std::slice::from_ref(record)).await.remove(0)
    }

    async fn remove_txt(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.remove_all(std::slice::from_ref(record)).await.remove(0)
    }

    /// One after the other, in order (`CERTBOT_REMAINING_CHALLENGES` counts down); after a
    /// failure the remaining hooks are not run.
    async fn set_all(&self, records: &[TxtRecord]) -> Vec<Result<Option<String>, DnsError>> {
        let mut results = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            if results.iter().any(Result::is_err) {
                results.push(Err(DnsError::provider(
                    NAME,
                    format!("not run for {}: an earlier hook failed", r.domain),
                )));
                continue;
            }
            let mut env = Self::env_for(records, i);
            match run_hook("auth", &self.auth_hook, &r.domain, &env).await {
                Ok(out) => {
                    env.push(("CERTBOT_AUTH_OUTPUT".into(), out));
                    self.remember(r, env);
                    results.push(Ok(None));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        results
    }

    /// Runs the cleanup hook for each record whose auth hook ran in this process.
    async fn remove_all(&self, records: &[TxtRecord]) -> Vec<Result<(), DnsError>> {
        let mut results = Vec::with_capacity(records.len());
        for r in records {
            let (Some(hook), Some(env)) = (&self.cleanup_hook, self.recall(r)) else {
                results.push(Ok(()));
                continue;
            };
            results.push(run_hook("cleanup", hook, &r.domain, &env).await.map(|_| ()));
        }
        results
    }

    fn removes_stale(&self) -> bool {
        false
    }
}
