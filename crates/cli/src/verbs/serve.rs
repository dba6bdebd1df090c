//! `certfleet serve`: the fleet server in the foreground (systemd runs it as a service).

use std::process::ExitCode as ProcessExit;
use std::sync::Arc;

use certfleet_core::SystemClock;
use certfleet_fleet::server::{self, AcmeSettings, ServeConfig};

use crate::account;
use crate::args::GlobalArgs;
use crate::error::{CliError, ExitCode, Result};
use crate::fleet_args::ServeArgs;

pub async fn run(g: &GlobalArgs, a: &ServeArgs) -> Result<ProcessExit> {
    if g.email.is_none() && !g.register_unsafely_without_email {
        return Err(CliError::usage(
            "the server registers an ACME account on first use: pass -m you@example.com (or --register-unsafely-without-email)",
        ));
    }
    let extra_roots = match &a.watch_roots {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::usage(format!("--watch-roots {}: {e}", path.display())))?;
            let roots = certfleet_core::cert::pem_certificates(&text).map_err(|e| {
                CliError::usage(format!(
                    "--watch-roots {}: not a PEM certificate bundle ({e})",
                    path.display()
                ))
            })?;
            if roots.is_empty() {
                return Err(CliError::usage(format!(
                    "--watch-roots {}: no certificate in it; give the PEM of the root(s) to trust",
                    path.display()
                )));
            }
            roots
        }
        None => Vec::new(),
    };
    let cfg = ServeConfig {
        data_dir: a.data_dir.clone(),
        database_url: a.database_url.clone(),
        listen: a.listen,
        http01_listen: a.http01_listen,
        public_url: a.public_url.clone(),
        tls_files: a.tls_cert.clone().zip(a.tls_key.clone()),
        api_names: a.api_names.clone(),
        custody_key_file: a.custody_key_file.clone(),
        jobs: usize::from(a.jobs),
        metrics_token_file: a.metrics_token.clone(),
        notify: certfleet_fleet::notify::NotifyConfig {
            smtp_url: a.notify.smtp_url.clone(),
            smtp_from: a.notify.smtp_from.clone(),
            emails: a.notify.emails.clone(),
            webhooks: a.notify.webhooks.clone(),
            webhook_secret_file: a.notify.notify_webhook_secret.clone(),
            command: a.notify.notify_command.clone(),
            command_timeout: Some(a.notify.notify_command_timeout),
            ca_file: a.notify.notify_ca_file.clone(),
            host_silent_after: Some(a.notify.host_silent_after),
            digest_at: a.notify.notify_digest_at,
            interval: Some(a.notify.notify_interval),
        },
        watch: server::watch::WatchConfig {
            interval: a.watch_interval,
            extra_roots,
            ..Default::default()
        },
        acme: AcmeSettings {
            server: g.server_url(),
            ca_bundle: g.ca_bundle(),
            account: account::options(g),
        },
    };
    let quiet = g.quiet;
    let on_started = move |s: &server::Started| {
        if quiet {
            return;
        }
        println!("certfleet serve: API on {}", s.api_url);
        println!("  fingerprint (agents and `fleet` pin it): {}", s.fingerprint);
        println!("  database: {}", s.database);
        match s.http01 {
            Some(addr) => println!("  http-01 responder on http://{addr}/.well-known/acme-challenge/"),
            None => println!("  no http-01 responder (dns-01 only; add --http-01-listen ADDR for http-01)"),
        }
        println!(
            "  dashboard: {}/ (log in with the admin token or `certfleet fleet admin passwd`)",
            s.api_url
        );
        if let Some(f) = &s.admin_token_file {
            println!(
                "  admin token written to {} (0600); use it with `certfleet fleet --data-dir ...`",
                f.display()
            );
        }
    };
    server::run(cfg, Arc::new(SystemClock), on_started, shutdown_signal())
        .await
        .map_err(|e| CliError::new(ExitCode::Failure, format!("serve: {e}")))?;
    Ok(ProcessExit::SUCCESS)
}

/// SIGTERM (systemd stop) or Ctrl-C.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
