//! Config test and reload commands: argv from the agent's own config only (no shell), a
//! timeout that kills the whole process group, and an environment cleared down to a fixed
//! `PATH` and `LC_ALL=C`, so nothing of the agent's environment (proxy settings, tokens) leaks
//! into them. Their output is captured for the report; no key ever passes through them.

use std::time::Duration;

use certfleet_renew::{HookCommand, HookKind, HookResult, HookStatus, run_hook};

/// The only `PATH` commands see; a bare program name is looked up here.
pub const COMMAND_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How much of a failed command's output goes into a report.
const REPORT_TAIL_CHARS: usize = 1500;

/// `env -i` empties the environment and then executes the program with `PATH` looked up in
/// the new one; the renew crate's runner supplies the timeout, process group and capture.
const ENV: &str = "/usr/bin/env";

/// Runs `argv` with the cleared environment.
pub(crate) async fn run(kind: HookKind, argv: &[String], timeout: Duration) -> HookResult {
    let mut full = vec![
        ENV.to_string(),
        "-i".to_string(),
        format!("PATH={COMMAND_PATH}"),
        "LC_ALL=C".to_string(),
    ];
    full.extend(argv.iter().cloned());
    let mut r = run_hook(kind, &HookCommand::Argv(full), &[], timeout).await;
    // Messages show what the operator configured, not the wrapper; env's 127 means the
    // program was not found.
    r.command = HookCommand::Argv(argv.to_vec());
    if r.status == HookStatus::Exited(127) && r.stdout_tail.is_empty() && r.stderr_tail.contains(ENV) {
        r.status = HookStatus::SpawnFailed(format!(
            "`{}` not found (PATH is {COMMAND_PATH}); write its absolute path",
            argv[0]
        ));
    }
    r
}

/// `what failed: the end of its output`, for reports.
pub(crate) fn describe_failure(r: &HookResult) -> String {
    let status = match &r.status {
        HookStatus::Exited(c) => format!("exited with status {c}"),
        HookStatus::Signaled(s) => format!("was killed by signal {s}"),
        HookStatus::TimedOut => format!("ran longer than {:.0?} and was killed", r.duration),
        HookStatus::SpawnFailed(e) => format!("could not be started: {e}"),
    };
    let out = r.output();
    let tail = match out.char_indices().rev().nth(REPORT_TAIL_CHARS) {
        Some((i, _)) => format!("...{}", &out[i..]),
        None => out,
    };
    if tail.is_empty() {
        format!("{} `{}` {status}", r.kind, r.command)
    } else {
        format!("{} `{}` {status}: {tail}", r.kind, r.command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn environment_is_cleared() {
        let r = run(HookKind::Reload, &argv(&["env"]), Duration::from_secs(10)).await;
        assert!(r.success(), "{r}");
        let mut vars: Vec<&str> = r.stdout_tail.lines().collect();
        vars.sort();
        assert_eq!(vars, vec!["LC_ALL=C", &format!("PATH={COMMAND_PATH}")]);
    }

    #[tokio::test]
    async fn failure_reports_stderr_tail_and_missing_programs() {
        let r = run(
            HookKind::ConfigTest,
            &argv(&["sh", "-c", "echo broken config line 3 >&2; exit 1"]),
            Duration::from_secs(10),
        )
        .await;
        let d = describe_failure(&r);
        assert!(d.contains("exited with status 1: broken config line 3"), "{d}");
        assert!(d.contains("`sh -c"), "{d}");
        let r = run(
            HookKind::Reload,
            &argv(&["no-such-program-xyz"]),
            Duration::from_secs(10),
        )
        .await;
        assert!(
            describe_failure(&r).contains("`no-such-program-xyz` not found"),
            "{r:?}"
        );
        let r = run(
            HookKind::Reload,
            &argv(&["sleep", "5"]),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(r.status, HookStatus::TimedOut);
    }
}
