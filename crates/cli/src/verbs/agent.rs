//! `certfleet agent enroll|run|fetch`: the fleet agent on a host.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode as ProcessExit;
use std::time::Duration;

use certfleet_fleet::agent::sync::{self, SyncError, SyncSummary};
use certfleet_fleet::agent::{Agent, AgentConfig};
use certfleet_fleet::client::ClientError;

use crate::args::GlobalArgs;
use crate::error::{CliError, ExitCode, Result};
use crate::fleet_args::{AgentArgs, AgentCommand};

/// After a failed sync, retry sooner than the interval: 30 s, doubling, up to the interval.
const FIRST_RETRY: Duration = Duration::from_secs(30);

pub async fn run(g: &GlobalArgs, a: &AgentArgs) -> Result<ProcessExit> {
    match &a.command {
        AgentCommand::Enroll { state_dir, token } => enroll(state_dir, token).await,
        AgentCommand::Run { once } => {
            let path = g.config_file.as_ref().ok_or_else(|| {
                CliError::usage("agent run needs its config: --config /etc/certfleet/agent.toml")
            })?;
            run_agent(path, *once).await
        }
        AgentCommand::Fetch { state_dir, name } => fetch(state_dir, name).await,
    }
}

pub(crate) fn sync_error(e: SyncError) -> CliError {
    let code = match &e {
        SyncError::Token(_) | SyncError::NotEnrolled { .. } => ExitCode::Usage,
        SyncError::Client(ClientError::Api { status, .. }) if (400..500).contains(status) => ExitCode::Usage,
        SyncError::File { .. } => ExitCode::Store,
        _ => ExitCode::Failure,
    };
    CliError::new(code, e.to_string())
}

async fn enroll(state_dir: &Path, token: &str) -> Result<ProcessExit> {
    let token = if token == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::usage(format!("reading the token from standard input: {e}")))?;
        s
    } else {
        token.to_string()
    };
    let e = sync::enroll(state_dir, &token).await.map_err(sync_error)?;
    eprintln!(
        "enrolled as host {} with {} (credentials in {})",
        e.host,
        e.url,
        state_dir.display()
    );
    Ok(ProcessExit::SUCCESS)
}

async fn run_agent(config_path: &Path, once: bool) -> Result<ProcessExit> {
    let config = AgentConfig::load(config_path).map_err(|e| CliError::usage(e.to_string()))?;
    let interval = config.interval;
    let url = config
        .server
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_string());
    let agent = Agent::new(config).map_err(|e| CliError::new(ExitCode::Store, e.to_string()))?;
    for name in agent.recovered() {
        eprintln!("{name}: an install interrupted by a crash was undone; installing again");
    }
    let (client, enrollment) = sync::client(&agent.config().state_dir, url.as_deref()).map_err(sync_error)?;
    let mut retry = FIRST_RETRY;
    loop {
        let result = sync::sync_once(&agent, &client).await;
        if once {
            let summary = result.map_err(sync_error)?;
            print_summary(&enrollment.host, &summary);
            return Ok(if summary.all_good() {
                ProcessExit::SUCCESS
            } else {
                ProcessExit::from(ExitCode::Failure as u8)
            });
        }
        let pause = match result {
            Ok(summary) => {
                print_summary(&enrollment.host, &summary);
                retry = FIRST_RETRY;
                if summary.all_good() {
                    interval
                } else {
                    retry.min(interval)
                }
            }
            Err(e) => {
                eprintln!("certfleet agent: sync failed: {e}");
                let p = retry.min(interval);
                retry = (retry * 2).min(interval);
                p
            }
        };
        // Jitter spreads a fleet's agents (up to a tenth of the pause).
        let jitter = Duration::from_millis(rand::random_range(0..=pause.as_millis() as u64 / 10));
        tokio::select! {
            _ = tokio::time::sleep(pause + jitter) => {}
            _ = crate::verbs::serve::shutdown_signal() => return Ok(ProcessExit::SUCCESS),
        }
    }
}

fn print_summary(host: &str, s: &SyncSummary) {
    for i in &s.items {
        let r = &i.report;
        let serial = r.installed_serial.as_deref().unwrap_or("-");
        match &r.error {
            Some(e) => eprintln!("{host}: {}: {} (serial {serial}): {e}", i.certificate, r.state),
            None => eprintln!("{host}: {}: {} (serial {serial})", i.certificate, r.state),
        }
    }
    if s.items.is_empty() {
        eprintln!("{host}: no certificates are assigned to this host");
    }
}

async fn fetch(state_dir: &Path, name: &str) -> Result<ProcessExit> {
    let (client, _) = sync::client(state_dir, None).map_err(sync_error)?;
    let d = client.certificate(name).await.map_err(|e| sync_error(e.into()))?;
    println!("certificate: {}", d.certificate);
    println!("names:       {}", d.identifiers.join(", "));
    println!("serial:      {}", d.serial);
    println!("valid:       {} .. {}", fmt(d.not_before), fmt(d.not_after));
    println!(
        "key:         {}",
        match &d.key_pem {
            Some(_) => "from the server (server custody; not printed)".to_string(),
            None => format!("this host's own key, SPKI SHA-256 {}", d.key_sha256),
        }
    );
    print!("{}", d.fullchain_pem);
    Ok(ProcessExit::SUCCESS)
}

fn fmt(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(crate::verbs::renew::fmt_time)
        .unwrap_or_else(|_| t.to_string())
}
