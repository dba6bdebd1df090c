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
            let mut cmd = Cli::command();
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
            for (name, text) in super::timer::UNITS {
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
