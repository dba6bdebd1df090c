//! Hook settings from the command line, and the report of `certonly`'s hooks.

use certfleet_engine::deploy::{self, HookFlags, IssuanceHooks};
use certfleet_renew::HookConfig;

use crate::args::GlobalArgs;
use crate::error::{CliError, Result};

pub fn hook_config(g: &GlobalArgs, f: &HookFlags) -> HookConfig {
    deploy::hook_config(&g.config_dir, f)
}

/// Run the post hook, print warnings and failures; `Err` (exit code 12) if any hook failed.
pub async fn finish(hooks: IssuanceHooks) -> Result<()> {
    let report = hooks.finish().await;
    for w in &report.warnings {
        eprintln!("certfleet: warning: {w}");
    }
    for f in &report.failures {
        eprintln!("certfleet: hook failed: {f}");
    }
    Ok(report.result()?)
}

/// The issuance failed: run the post hook, then hand back the issuance's error.
pub async fn abort(hooks: IssuanceHooks, e: CliError) -> CliError {
    let _ = finish(hooks).await;
    e
}
