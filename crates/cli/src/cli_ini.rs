//! certbot's `cli.ini`: default flags read before the command line, so users' existing
//! `/etc/letsencrypt/cli.ini` (email, key type, authenticator, server...) keeps working.
//! Command-line flags override it (clap runs with `args_override_self`).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::CommandFactory;

use crate::args::Cli;
use crate::error::CliError;

const FLEET_VERBS: [&str; 3] = ["serve", "agent", "fleet"];

/// Insert the ini's flags right after the verb, for the flags that verb knows.
pub fn argv_with_defaults(argv: Vec<OsString>) -> Result<Vec<OsString>, CliError> {
    let strs: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    // Fleet mode is not certbot's: its verbs take no defaults from cli.ini, and `agent run`'s
    // `--config` is the agent's own TOML file.
    if strs
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_some_and(|v| FLEET_VERBS.contains(&v.as_str()))
    {
        return Ok(argv);
    }
    let explicit = flag_value(&strs, &["-c", "--config"]);
    let path = match &explicit {
        Some(p) => PathBuf::from(p),
        None => {
            let dir = flag_value(&strs, &["--config-dir"]).unwrap_or_else(|| "/etc/letsencrypt".into());
            PathBuf::from(dir).join("cli.ini")
        }
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => return Ok(argv),
        Err(e) => {
            return Err(CliError::usage(format!(
                "cannot read config file {}: {e}",
                path.display()
            )));
        }
    };
    let pairs = certfleet_store::CliIni::parse(&text, &path)
        .map_err(|e| CliError::usage(e.to_string()))?
        .entries;
    let cmd = Cli::command();
    let Some((verb_pos, verb)) = strs.iter().enumerate().skip(1).find(|(_, a)| {
        cmd.get_subcommands()
            .any(|s| s.get_name() == a.as_str() || s.get_all_aliases().any(|al| al == a.as_str()))
    }) else {
        return Ok(argv);
    };
    let sub = cmd.find_subcommand(verb).expect("found above");
    let knows = |long: &str| {
        sub.get_arguments()
            .chain(cmd.get_arguments())
            .any(|a| a.get_long() == Some(long) || a.get_all_aliases().is_some_and(|al| al.contains(&long)))
    };
    let mut extra: Vec<OsString> = Vec::new();
    for (key, value) in pairs {
        // certbot spells the authenticator as a key; we have one flag per authenticator.
        let (key, value) = if key == "authenticator" {
            (value, String::new())
        } else {
            (key, value)
        };
        if !knows(&key) {
            tracing::debug!("{}: ignoring {key:?} (not used by `{verb}`)", path.display());
            continue;
        }
        if matches!(value.as_str(), "" | "true" | "True") {
            extra.push(format!("--{key}").into());
        } else {
            extra.push(format!("--{key}").into());
            extra.push(value.into());
        }
    }
    let mut out: Vec<OsString> = argv[..=verb_pos].to_vec();
    out.extend(extra);
    out.extend_from_slice(&argv[verb_pos + 1..]);
    Ok(out)
}

fn flag_value(args: &[String], names: &[&str]) -> Option<String> {
    let mut found = None;
    for (i, a) in args.iter().enumerate() {
        for n in names {
            if a == n {
                found = args.get(i + 1).cloned();
            } else if let Some(v) = a.strip_prefix(&format!("{n}=")) {
                found = Some(v.to_string());
            }
        }
    }
    found
}
