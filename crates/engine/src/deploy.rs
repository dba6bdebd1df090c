//! Hooks and service reloads around an issuance, shared by a first issuance and renewals:
//! turns hook settings into certfleet-renew's [`HookConfig`] and resolves a reload service
//! name (`--deploy-reload SERVICE`) into the commands to run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use certfleet_renew::{
    HookCommand, HookConfig, HookKind, HookResult, HookRunner, LineageHooks, ReloadCommands, Service,
    deploy_reload, run_hook,
};
use certfleet_store::RenewalConf;

use crate::EngineError;

/// Overrides the built-in reload commands, per service, as JSON:
/// `{"nginx": {"config_test": ["/opt/nginx/sbin/nginx", "-t"], "reload": ["/opt/nginx/sbin/nginx", "-s", "reload"]}}`.
/// For servers not managed by systemd, or installed elsewhere (and for tests).
pub const RELOAD_ENV: &str = "CERTFLEET_RELOAD_COMMANDS";

/// Renewal-conf key (in `[renewalparams]`) remembering `--deploy-reload`; certbot ignores it.
pub const RELOAD_CONF_KEY: &str = "deploy_reload";

/// The hook settings common to a first issuance and renewals.
#[derive(Debug, Clone, Default)]
pub struct HookFlags {
    pub pre_hook: Option<String>,
    pub post_hook: Option<String>,
    pub deploy_hook: Option<String>,
    pub no_directory_hooks: bool,
    pub timeout: Option<Duration>,
    pub dry_run: bool,
}

/// The hook configuration for a certbot tree whose config dir is `config_dir`.
pub fn hook_config(config_dir: &Path, f: &HookFlags) -> HookConfig {
    let mut cfg = HookConfig::new(config_dir);
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

/// The check-then-reload commands for a service name, honouring [`RELOAD_ENV`].
pub fn reload_commands(service: &str) -> Result<ReloadCommands, EngineError> {
    let svc: Service = service
        .parse()
        .map_err(|e: certfleet_renew::ServiceError| EngineError::config(format!("--deploy-reload: {e}")))?;
    let mut cmds = ReloadCommands::for_service(&svc);
    if let Some(raw) = std::env::var_os(RELOAD_ENV) {
        #[derive(serde::Deserialize)]
        struct Override {
            config_test: Option<Vec<String>>,
            reload: Vec<String>,
        }
        let map: BTreeMap<String, Override> = serde_json::from_str(&raw.to_string_lossy())
            .map_err(|e| {
                EngineError::config(format!(
                    "{RELOAD_ENV} is not valid JSON of the form {{\"nginx\": {{\"config_test\": [..], \"reload\": [..]}}}}: {e}"
                ))
            })?;
        if let Some(o) = map.get(svc.unit()).or_else(|| map.get(service)) {
            if o.reload.is_empty() {
                return Err(EngineError::config(format!(
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
pub async fn run_reload(cmds: &ReloadCommands, timeout: Duration) -> Result<(), String> {
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

/// Hooks around one first issuance, as certbot runs them for `certonly`: the pre hook before,
/// deploy hooks (`renewal-hooks/deploy/*` then the deploy hook) and the reload after the
/// lineage is saved, the post hook at the end either way. (certbot runs the pre and post
/// directory hooks only for `renew`; so do we.)
pub struct IssuanceHooks {
    cfg: HookConfig,
    runner: Option<HookRunner>,
    reload: Vec<ReloadCommands>,
    failures: Vec<String>,
}

/// What the hooks of an issuance left to report.
#[derive(Debug, Default)]
pub struct HookReport {
    /// Hook directory problems (e.g. a non-executable file skipped).
    pub warnings: Vec<String>,
    /// Hooks and reloads that failed, with their output.
    pub failures: Vec<String>,
}

impl HookReport {
    /// `Err(EngineError::Hook)` if any hook failed.
    pub fn result(self) -> Result<(), EngineError> {
        if self.failures.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Hook {
                failures: self.failures,
            })
        }
    }
}

impl IssuanceHooks {
    /// `enabled` is false for `--no-hooks`; `reload` is a service name.
    pub fn new(cfg: HookConfig, reload: Option<&str>, enabled: bool) -> Result<Self, EngineError> {
        let reload = match reload {
            Some(s) if enabled => vec![reload_commands(s)?],
            _ => vec![],
        };
        Ok(Self {
            runner: enabled.then(|| HookRunner::new(cfg.clone())),
            cfg,
            reload,
            failures: Vec::new(),
        })
    }

    /// Also reload this service after the lineage is saved (an installer's reload).
    pub fn add_reload(&mut self, cmds: ReloadCommands) {
        if !self.reload.iter().any(|r| r.service == cmds.service) {
            self.reload.push(cmds);
        }
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
        if !self.cfg.dry_run {
            for cmds in &self.reload {
                if let Err(e) = run_reload(cmds, self.cfg.timeout).await {
                    self.failures.push(e);
                }
            }
        }
    }

    /// Run the post hook; report every warning and failure.
    pub async fn finish(mut self) -> HookReport {
        let mut warnings = Vec::new();
        if let Some(r) = self.runner.take() {
            if let Some(cmd) = self.cfg.post_hook.clone() {
                let res = run_hook(HookKind::Post, &HookCommand::Shell(cmd), &[], self.cfg.timeout).await;
                self.note(std::slice::from_ref(&res));
            }
            warnings = r.warnings().to_vec();
        }
        HookReport {
            warnings,
            failures: self.failures,
        }
    }

    fn note(&mut self, results: &[HookResult]) {
        for r in results.iter().filter(|r| !r.success()) {
            self.failures.push(r.to_string());
        }
    }
}
