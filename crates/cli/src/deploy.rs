//! Hooks and service reloads around an issuance, shared by `certonly` (first issuance) and
//! `renew`: turns the flags into certfleet-renew's [`HookConfig`] and resolves
//! `--deploy-reload SERVICE` into the commands to run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use certfleet_renew::{
    HookCommand, HookConfig, HookKind, HookResult, HookRunner, LineageHooks, ReloadCommands, Service,
    deploy_reload, run_hook,
};
use certfleet_store::RenewalConf;

use crate::args::GlobalArgs;
use crate::error::{CliError, Result};

/// Overrides the built-in reload commands, per service, as JSON:
/// `{"nginx": {"config_test": ["/opt/nginx/sbin/nginx", "-t"], "reload": ["/opt/nginx/sbin/nginx", "-s", "reload"]}}`.
/// For servers not managed by systemd, or installed elsewhere (and for tests).
pub const RELOAD_ENV: &str = "CERTFLEET_RELOAD_COMMANDS";

/// Renewal-conf key (in `[renewalparams]`) remembering `--deploy-reload`; certbot ignores it.
pub const RELOAD_CONF_KEY: &str = "deploy_reload";

/// The hook flags common to `certonly` and `renew`.
#[derive(Debug, Clone, Default)]
pub struct HookFlags {
    pub pre_hook: Option<String>,
    pub post_hook: Option<String>,
    pub deploy_hook: Option<String>,
    pub no_directory_hooks: bool,
    pub timeout: Option<Duration>,
    pub dry_run: bool,
}

pub fn hook_config(g: &GlobalArgs, f: &HookFlags) -> HookConfig {
    let mut cfg = HookConfig::new(&crate::account::store(g).dirs().config_dir);
    cfg.pre_hook = f.pre_hook.clone();
    cfg.post_hook = f.post_hook.clone();
    cfg.deploy_hook = f.deploy_hook.clone();
    if f.no_directory_hooks {
        cfg.hooks_dir = None;
    }
    if let Some(t) = f.timeout {
        cfg.timeout = t;
    }
    cfg.dry_run = f.dry_run;
    cfg
}

/// The hooks a renewal conf saved (certbot's `pre_hook`, `post_hook`, `renew_hook`).
pub fn lineage_hooks(conf: &RenewalConf) -> LineageHooks {
    LineageHooks {
        pre_hook: conf.pre_hook().map(str::to_string),
        post_hook: conf.post_hook().map(str::to_string),
        deploy_hook: conf.renew_hook().map(str::to_string),
    }
}

/// `--hook-timeout`: seconds, or a number with `s`/`m`/`h`.
pub fn parse_timeout(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1),
        Some((i, 'm')) => (&t[..i], 60),
        Some((i, 'h')) => (&t[..i], 3600),
        _ => (t, 1),
    };
    match num.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n * mult)),
        _ => Err(format!(
            "{s:?} is not a timeout: write seconds (300) or 90s, 5m, 1h"
        )),
    }
}

/// The check-then-reload commands for a service name, honouring [`RELOAD_ENV`].
pub fn reload_commands(service: &str) -> Result<ReloadCommands> {
    let svc: Service = service
        .parse()
        .map_err(|e: certfleet_renew::ServiceError| CliError::usage(format!("--deploy-reload: {e}")))?;
    let mut cmds = ReloadCommands::for_service(&svc);
    if let Some(raw) = std::env::var_os(RELOAD_ENV) {
        #[derive(serde::Deserialize)]
        struct Override {
            config_test: Option<Vec<String>>,
            reload: Vec<String>,
        }
        let map: BTreeMap<String, Override> = serde_json::from_str(&raw.to_string_lossy())
            .map_err(|e| {
                CliError::usage(format!(
                    "{RELOAD_ENV} is not valid JSON of the form {{\"nginx\": {{\"config_test\": [..], \"reload\": [..]}}}}: {e}"
                ))
            })?;
        if let Some(o) = map.get(svc.unit()).or_else(|| map.get(service)) {
            if o.reload.is_empty() {
                return Err(CliError::usage(format!(
                    "{RELOAD_ENV}: the reload command for {service} is empty"
                )));
            }
            cmds.config_test = o.config_test.clone().filter(|c| !c.is_empty());
            cmds.reload = o.reload.clone();
        }
    }
    Ok(cmds)
}

/// Test the configuration and reload; a failure comes back as a message for the summary.
pub async fn run_reload(cmds: &ReloadCommands, timeout: Duration) -> std::result::Result<(), String> {
    match deploy_reload(cmds, timeout).await {
        Ok(r) => {
            tracing::info!("reloaded {}: {}", cmds.service, r.reload);
            Ok(())
        }
        Err(e) => {
            tracing::warn!("{e}");
            Err(e.to_string())
        }
    }
}

/// Hooks around one `certonly` issuance, as certbot runs them: `--pre-hook` before,
/// deploy hooks (`renewal-hooks/deploy/*` then `--deploy-hook`) and `--deploy-reload` after the
/// lineage is saved, `--post-hook` at the end either way. (certbot runs the pre and post
/// directory hooks only for `renew`; so do we.)
pub struct IssuanceHooks {
    cfg: HookConfig,
    runner: Option<HookRunner>,
    reload: Option<ReloadCommands>,
    failures: Vec<String>,
}

impl IssuanceHooks {
    /// `enabled` is false for `--no-hooks`.
    pub fn new(g: &GlobalArgs, flags: &HookFlags, reload: Option<&str>, enabled: bool) -> Result<Self> {
        let cfg = hook_config(g, flags);
        let reload = match reload {
            Some(s) if enabled => Some(reload_commands(s)?),
            _ => None,
        };
        Ok(Self {
            runner: enabled.then(|| HookRunner::new(cfg.clone())),
            cfg,
            reload,
            failures: Vec::new(),
        })
    }

    pub async fn pre(&mut self) {
        if self.runner.is_some()
            && let Some(cmd) = self.cfg.pre_hook.clone()
        {
            let r = run_hook(HookKind::Pre, &HookCommand::Shell(cmd), &[], self.cfg.timeout).await;
            self.note(std::slice::from_ref(&r));
        }
    }

    /// The lineage at `live_dir` was saved with these names.
    pub async fn deployed(&mut self, live_dir: &Path, domains: &[String]) {
        if let Some(r) = &mut self.runner {
            let res = r.renewed(live_dir, domains, &LineageHooks::default()).await;
            self.note(&res);
        }
        if let Some(cmds) = &self.reload
            && !self.cfg.dry_run
            && let Err(e) = run_reload(cmds, self.cfg.timeout).await
        {
            self.failures.push(e);
        }
    }

    /// Run the post hook; `Err` (exit code 12) if any hook failed, after reporting each.
    pub async fn finish(mut self) -> Result<()> {
        if let Some(r) = self.runner.take() {
            if let Some(cmd) = self.cfg.post_hook.clone() {
                let res = run_hook(HookKind::Post, &HookCommand::Shell(cmd), &[], self.cfg.timeout).await;
                self.note(std::slice::from_ref(&res));
            }
            for w in r.warnings() {
                eprintln!("certfleet: warning: {w}");
            }
        }
        if self.failures.is_empty() {
            return Ok(());
        }
        for f in &self.failures {
            eprintln!("certfleet: hook failed: {f}");
        }
        Err(CliError::new(
            crate::error::ExitCode::Hook,
            format!(
                "{} hook(s) failed (see above); the certificate itself was handled as reported",
                self.failures.len()
            ),
        ))
    }

    /// The issuance failed: run the post hook, then hand back the issuance's error.
    pub async fn abort(self, e: CliError) -> CliError {
        let _ = self.finish().await;
        e
    }

    fn note(&mut self, results: &[HookResult]) {
        for r in results.iter().filter(|r| !r.success()) {
            self.failures.push(r.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_timeout("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_timeout("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_timeout("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("soon").is_err());
    }
}
