//! `certfleet install-timer`: write the systemd units shipped in dist/systemd/ (the
//! twice-daily timer and the daemon), pointing at this binary and these directories.

use std::path::Path;
use std::process::ExitCode as ProcessExit;

use crate::args::{GlobalArgs, InstallTimerArgs};
use crate::error::{CliError, Result};

/// (file name, contents) of every unit, as shipped.
pub const UNITS: [(&str, &str); 3] = [
    (
        "certfleet-renew.service",
        include_str!("../../../../dist/systemd/certfleet-renew.service"),
    ),
    (
        "certfleet-renew.timer",
        include_str!("../../../../dist/systemd/certfleet-renew.timer"),
    ),
    (
        "certfleet.service",
        include_str!("../../../../dist/systemd/certfleet.service"),
    ),
];

/// Fleet mode's units (the server and the agent): packaged, not written by `install-timer`.
pub const FLEET_UNITS: [(&str, &str); 2] = [
    (
        "certfleet-serve.service",
        include_str!("../../../../dist/systemd/certfleet-serve.service"),
    ),
    (
        "certfleet-agent.service",
        include_str!("../../../../dist/systemd/certfleet-agent.service"),
    ),
];

const SHIPPED_BINARY: &str = "/usr/local/bin/certfleet";

pub fn install(g: &GlobalArgs, a: &InstallTimerArgs) -> Result<ProcessExit> {
    if !a.unit_dir.is_dir() {
        return Err(CliError::usage(format!(
            "unit directory {} does not exist (is this a systemd machine? pass --unit-dir DIR)",
            a.unit_dir.display()
        )));
    }
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| CliError::store(format!("cannot find the certfleet binary's path: {e}")))?;
    let exe = exe.display().to_string();
    if exe.contains(char::is_whitespace) {
        return Err(CliError::usage(format!(
            "the certfleet binary's path {exe:?} contains spaces; install it somewhere like {SHIPPED_BINARY}"
        )));
    }
    let extra = dir_flags(g);
    for (name, text) in UNITS {
        let unit = render(text, &exe, &extra);
        let path = a.unit_dir.join(name);
        certfleet_store::atomic::write_file(&path, unit.as_bytes(), 0o644).map_err(CliError::store)?;
        if !g.quiet {
            outln!("Wrote {}", path.display());
        }
    }
    if !g.quiet {
        outln!(
            "\nNow enable ONE of them:\n  systemctl daemon-reload && systemctl enable --now certfleet-renew.timer   \
             # `certfleet renew` twice a day\n  systemctl daemon-reload && systemctl enable --now certfleet.service       \
             # or the daemon (`certfleet run`)\nCheck with: systemctl list-timers certfleet-renew.timer; journalctl -u certfleet-renew"
        );
    }
    Ok(ProcessExit::SUCCESS)
}

/// `--config-dir` etc. when they differ from certbot's defaults, so the units use the same tree.
pub(crate) fn dir_flags(g: &GlobalArgs) -> String {
    let mut out = String::new();
    for (flag, val, default) in [
        ("--config-dir", &g.config_dir, "/etc/letsencrypt"),
        ("--work-dir", &g.work_dir, "/var/lib/letsencrypt"),
        ("--logs-dir", &g.logs_dir, "/var/log/letsencrypt"),
    ] {
        if val != Path::new(default) {
            let abs = std::path::absolute(val).unwrap_or(val.clone());
            out.push_str(&format!(" {flag} {}", systemd_quote(&abs.display().to_string())));
        }
    }
    out
}

pub(crate) fn render(text: &str, exe: &str, extra: &str) -> String {
    text.lines()
        .map(|l| {
            if let Some(rest) = l.strip_prefix(&format!("ExecStart={SHIPPED_BINARY}")) {
                format!("ExecStart={exe}{rest}{extra}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// systemd's command-line quoting (double quotes, backslash escapes, `%` doubled).
fn systemd_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:".contains(c))
    {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_binary_and_dirs() {
        let r = render(UNITS[0].1, "/opt/cf/certfleet", " --config-dir \"/srv/my le\"");
        assert!(
            r.contains("ExecStart=/opt/cf/certfleet renew --non-interactive --config-dir \"/srv/my le\"\n"),
            "{r}"
        );
        assert_eq!(systemd_quote("/a/b"), "/a/b");
        assert_eq!(systemd_quote("/a b/%"), "\"/a b/%%\"");
        assert!(UNITS[1].1.contains("RandomizedDelaySec="));
        assert!(UNITS[1].1.contains("OnCalendar=*-*-* 00,12:00:00"));
    }
}
