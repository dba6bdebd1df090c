//! http-01 through certbot's manual hooks (`--manual --preferred-challenges http
//! --manual-auth-hook CMD [--manual-cleanup-hook CMD]`): the auth hook puts
//! `$CERTBOT_VALIDATION` at `http://$CERTBOT_DOMAIN/.well-known/acme-challenge/$CERTBOT_TOKEN`
//! (certbot's contract, see [`crate::manual_hooks`]); the cleanup hook removes it.

use std::collections::HashMap;
use std::sync::Mutex;

use certfleet_core::{ChallengeType, Identifier};

use crate::manual_hooks::{self, Env, HookError};
use crate::{ChallengeTask, Solver, SolverError};

#[derive(Debug)]
pub struct ManualHttp01 {
    auth_hook: String,
    cleanup_hook: Option<String>,
    /// Environment of each auth run that succeeded, by token, for its cleanup.
    runs: Mutex<HashMap<String, (String, Env)>>,
}

impl ManualHttp01 {
    pub fn new(auth_hook: impl Into<String>, cleanup_hook: Option<String>) -> Self {
        ManualHttp01 {
            auth_hook: auth_hook.into(),
            cleanup_hook,
            runs: Mutex::new(HashMap::new()),
        }
    }

    async fn clean(&self, runs: Vec<(String, Env)>) -> Result<(), SolverError> {
        let Some(hook) = &self.cleanup_hook else {
            return Ok(());
        };
        let mut errors = Vec::new();
        for (domain, env) in runs {
            if let Err(e) = manual_hooks::run("cleanup", hook, &domain, &env).await {
                errors.push(hook_error(e).to_string());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SolverError::Other(errors.join("; ")))
        }
    }
}

fn hook_error(e: HookError) -> SolverError {
    match e {
        HookError::Spawn { context, source } => SolverError::Io { context, source },
        HookError::Failed(why) => SolverError::Other(why),
    }
}

#[async_trait::async_trait]
impl Solver for ManualHttp01 {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Http01
    }

    async fn preflight(&self, identifiers: &[Identifier]) -> Result<(), SolverError> {
        match identifiers.iter().find(|i| i.is_wildcard()) {
            Some(id) => Err(SolverError::Setup(format!(
                "{id} is a wildcard: wildcards need dns-01; use --manual --preferred-challenges dns with a DNS hook"
            ))),
            None => Ok(()),
        }
    }

    /// One auth hook run per challenge, in order; after a failure the rest are not run (and
    /// the ones that ran are cleaned up by `cleanup`).
    async fn present(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError> {
        let domains: Vec<String> = tasks.iter().map(|t| t.identifier.value()).collect();
        let refs: Vec<&str> = domains.iter().map(String::as_str).collect();
        for (i, t) in tasks.iter().enumerate() {
            let mut env = manual_hooks::certbot_env(&refs, i, &t.key_authorization, Some(&t.token));
            let out = manual_hooks::run("auth", &self.auth_hook, &domains[i], &env)
                .await
                .map_err(hook_error)?;
            env.push(("CERTBOT_AUTH_OUTPUT".into(), out));
            self.runs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(t.token.clone(), (domains[i].clone(), env));
        }
        Ok(())
    }

    async fn cleanup(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError> {
        let runs: Vec<(String, Env)> = {
            let mut map = self.runs.lock().unwrap_or_else(|e| e.into_inner());
            tasks.iter().filter_map(|t| map.remove(&t.token)).collect()
        };
        self.clean(runs).await
    }

    async fn cleanup_all(&self) -> Result<(), SolverError> {
        let runs: Vec<(String, Env)> = self
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, v)| v)
            .collect();
        self.clean(runs).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// certbot's variables reach the hooks: the token and the key authorization for http-01,
    /// the auth hook's output for cleanup, counts and names of the batch.
    #[tokio::test]
    async fn hooks_get_certbots_environment() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log");
        let auth = format!(
            "echo \"auth $CERTBOT_DOMAIN $CERTBOT_TOKEN $CERTBOT_VALIDATION $CERTBOT_REMAINING_CHALLENGES $CERTBOT_ALL_DOMAINS\" >> {0}; echo out-$CERTBOT_TOKEN",
            log.display()
        );
        let cleanup = format!(
            "echo \"cleanup $CERTBOT_DOMAIN $CERTBOT_TOKEN $CERTBOT_AUTH_OUTPUT\" >> {}",
            log.display()
        );
        let s = ManualHttp01::new(auth, Some(cleanup));
        let tasks: Vec<ChallengeTask> = ["a.example.test", "b.example.test"]
            .iter()
            .enumerate()
            .map(|(i, n)| ChallengeTask {
                identifier: Identifier::dns(n).unwrap(),
                token: format!("T{i}"),
                key_authorization: format!("T{i}.th"),
            })
            .collect();
        s.present(&tasks).await.unwrap();
        s.cleanup(&tasks).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "auth a.example.test T0 T0.th 1 a.example.test,b.example.test\n\
             auth b.example.test T1 T1.th 0 a.example.test,b.example.test\n\
             cleanup a.example.test T0 out-T0\ncleanup b.example.test T1 out-T1\n"
        );
        // A failing auth hook is an error with its stderr.
        let s = ManualHttp01::new("echo nope >&2; exit 3", None);
        let e = s.present(&tasks).await.unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("a.example.test"), "{e}");
    }
}
