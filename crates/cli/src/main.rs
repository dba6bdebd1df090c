//! The `certfleet` binary: parse, dispatch to a verb, turn errors into a message and an
//! exit code. Issuance and renewal are certfleet-engine's; this crate is arguments, verbs
//! and output.

/// `println!` for command output that does not panic on a closed pipe (verbs/output.rs).
macro_rules! outln {
    ($($arg:tt)*) => { $crate::verbs::output::line(false, format_args!($($arg)*)) };
}
/// `eprintln!` that does not panic on a closed pipe.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::verbs::output::line(true, format_args!($($arg)*)) };
}

mod account;
mod args;
mod args_certbot;
mod authenticator;
mod cli_ini;
mod deploy;
mod error;
mod fleet_args;
mod overrides;
mod progress;
mod verbs;

use clap::{CommandFactory, FromArgMatches};

use crate::args::{Cli, Command};
use crate::error::CliError;

fn main() -> std::process::ExitCode {
    let argv = match cli_ini::argv_with_defaults(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => return report(e),
    };
    let matches = match Cli::command().args_override_self(true).try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(run(cli, &matches));
    // Do not wait for idle pooled connections or a lingering standalone server.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => report(e),
    }
}

async fn run(cli: Cli, matches: &clap::ArgMatches) -> Result<std::process::ExitCode, CliError> {
    let g = &cli.global;
    match cli.command {
        Command::Certonly(args) => {
            let sub = matches.subcommand_matches("certonly").expect("certonly matched");
            verbs::certonly::run(&dry_run_server(g, args.dry_run), &args, sub).await
        }
        Command::Certificates(args) => verbs::certificates::run(g, &args),
        Command::Doctor(args) => {
            let sub = matches.subcommand_matches("doctor").expect("doctor matched");
            verbs::doctor::run(g, &args, sub).await
        }
        Command::Register => verbs::account::register(g).await,
        Command::UpdateAccount => verbs::account::update(g).await,
        Command::Unregister => verbs::account::unregister(g).await,
        Command::ShowAccount => verbs::account::show(g).await,
        Command::Revoke(args) => verbs::revoke::revoke(g, &args).await,
        Command::Delete(args) => verbs::revoke::delete(g, &args),
        Command::Renew(args) => verbs::renew::run(g, &args).await,
        Command::Run(args) => verbs::daemon::run(g, &args).await,
        Command::Reconfigure(args) => verbs::reconfigure::reconfigure(g, &args),
        Command::UpdateSymlinks(args) => verbs::reconfigure::update_symlinks(g, &args),
        Command::InstallTimer(args) => verbs::timer::install(g, &args),
        Command::Import(args) if args.fleet.is_some() => verbs::import_fleet::run(g, &args).await,
        Command::Import(args) => verbs::import::run(g, &args),
        Command::Generate(args) => verbs::generate::run(&args),
        Command::Serve(args) => verbs::serve::run(g, &args).await,
        Command::Agent(args) => verbs::agent::run(g, &args).await,
        Command::Fleet(args) => verbs::fleet::run(&args).await,
    }
}

/// certbot's rule: a dry run without --server goes to the staging CA, so rehearsals never
/// spend production rate limits.
pub fn dry_run_server(g: &args::GlobalArgs, dry_run: bool) -> args::GlobalArgs {
    let mut g = g.clone();
    if dry_run && g.server.is_none() {
        g.staging = true;
    }
    g
}

fn report(e: CliError) -> std::process::ExitCode {
    errln!("certfleet: {}", e.message);
    std::process::ExitCode::from(e.code as u8)
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info,certfleet=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CERTFLEET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
