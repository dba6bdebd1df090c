//! `certfleet agent ...` (wired once the agent's sync lands).
use std::process::ExitCode as ProcessExit;

use crate::args::GlobalArgs;
use crate::error::{CliError, Result};
use crate::fleet_args::AgentArgs;

pub async fn run(_g: &GlobalArgs, _a: &AgentArgs) -> Result<ProcessExit> {
    Err(CliError::usage("agent: not built yet"))
}
