//! `certfleet generate man|completions|units DIR` (hidden): the files the .deb ships, made
//! from the one clap definition and the one copy of the systemd units (dist/systemd/), so the
//! package cannot drift from the binary. scripts/deb.sh runs it before `cargo deb`.

use std::path::Path;
use std::process::ExitCode as ProcessExit;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::{Cli, GenerateArgs};
use crate::error::{CliError, Result};

pub fn run(a: &GenerateArgs) -> Result<ProcessExit> {
    let io = |what: &str, e: std::io::Error| {
        CliError::store(format!("writing {what} into {}: {e}", a.dir.display()))
    };
    std::fs::create_dir_all(&a.dir).map_err(|e| io("files", e))?;
    match a.what.as_str() {
        "man" => man(&a.dir).map_err(|e| io("man pages", e))?,
        "completions" => {
            let mut cmd = without_hidden_verbs(Cli::command());
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                clap_complete::generate_to(shell, &mut cmd, "certfleet", &a.dir)
                    .map_err(|e| io("completions", e))?;
            }
        }
        _ => {
            if a.binary.contains(char::is_whitespace) || !a.binary.starts_with('/') {
                return Err(CliError::usage(format!(
                    "--binary {:?}: give the installed binary's absolute path, without spaces",
                    a.binary
                )));
            }
            for (name, text) in super::timer::UNITS.iter().chain(&super::timer::FLEET_UNITS) {
                let unit = super::timer::render(text, &a.binary, "");
                std::fs::write(a.dir.join(name), unit).map_err(|e| io("units", e))?;
            }
        }
    }
    Ok(ProcessExit::SUCCESS)
}

/// certfleet.1, and certfleet-VERB.1 for every verb that is not hidden (fleet's nested ones
/// as certfleet-fleet-host-add.1 and so on).
fn man(dir: &Path) -> std::io::Result<()> {
    clap_mangen::generate_to(Cli::command(), dir)
}

/// The command line as completions should offer it: clap_complete's bash and zsh scripts list
/// hidden verbs too (`generate`), so they are left out here. Completions need only the
/// arguments and verbs; clap has no way to remove a subcommand, hence the copy.
fn without_hidden_verbs(cmd: clap::Command) -> clap::Command {
    let verbs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut out = clap::Command::new("certfleet")
        .version(env!("CARGO_PKG_VERSION"))
        .args(cmd.get_arguments().cloned());
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    out.subcommands(verbs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_offer_every_visible_verb_and_no_hidden_one() {
        let mut cmd = without_hidden_verbs(Cli::command());
        let mut bash = Vec::new();
        clap_complete::generate(Shell::Bash, &mut cmd, "certfleet", &mut bash);
        let bash = String::from_utf8(bash).unwrap();
        for verb in [
            "certonly",
            "renew",
            "import",
            "install-timer",
            "fleet",
            "--config-dir",
        ] {
            assert!(bash.contains(verb), "{verb} missing");
        }
        assert!(!bash.contains("generate"));
    }
}
