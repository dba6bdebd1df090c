//! `certfleet fleet ...`: the admin's client of the fleet API.

use std::path::Path;
use std::process::ExitCode as ProcessExit;

use certfleet_fleet::client::{ClientError, FleetClient, ServerTrust};
use certfleet_fleet::proto::{CertificateView, ChallengeSettings, Custody, NewCertificate};
use time::OffsetDateTime;

use crate::error::{CliError, ExitCode, Result};
use crate::fleet_args::{
    AdminCommand, CertAddArgs, CertCommand, FleetArgs, FleetCommand, FleetConnArgs, HostCommand,
    NotifyCommand,
};

pub async fn run(a: &FleetArgs) -> Result<ProcessExit> {
    let client = connect(&a.conn)?;
    match &a.command {
        FleetCommand::Host(HostCommand::Add { name }) => {
            let e = client.add_host(name).await.map_err(api_error)?;
            println!("{}", e.enrollment_token);
        }
        FleetCommand::Host(HostCommand::List { json }) => {
            let hosts = client.list_hosts().await.map_err(api_error)?;
            if *json {
                print_json(&hosts);
            } else {
                let rows = hosts
                    .iter()
                    .map(|h| {
                        vec![
                            h.name.clone(),
                            if h.enrolled_at.is_some() {
                                "enrolled"
                            } else {
                                "not enrolled"
                            }
                            .to_string(),
                            h.last_seen.map(ago).unwrap_or_else(|| "never".into()),
                            h.agent_version.clone().unwrap_or_else(|| "-".into()),
                            h.certificates.join(", "),
                        ]
                    })
                    .collect();
                print_table(&["HOST", "STATE", "LAST SEEN", "AGENT", "CERTIFICATES"], rows);
            }
        }
        FleetCommand::Host(HostCommand::Remove { name }) => {
            client.remove_host(name).await.map_err(api_error)?;
            eprintln!("host {name} removed; its agent can no longer fetch anything");
        }
        FleetCommand::Cert(CertCommand::Add(args)) => {
            let view = client
                .add_certificate(&new_certificate(args)?)
                .await
                .map_err(api_error)?;
            eprintln!(
                "certificate {} added ({}); {}",
                view.name,
                view.identifiers.join(", "),
                match view.custody {
                    Custody::Agent if view.hosts.is_empty() =>
                        "assign it to a host: its agent sends the CSR, then the server issues".to_string(),
                    Custody::Agent => format!(
                        "issued once {} sends its CSR (next agent sync)",
                        view.hosts.join(", ")
                    ),
                    Custody::Server => "the server issues it now".to_string(),
                }
            );
        }
        FleetCommand::Cert(CertCommand::List { json }) => {
            let certs = client.list_certificates().await.map_err(api_error)?;
            if *json {
                print_json(&certs);
            } else {
                print_table(
                    &["NAME", "STATE", "NAMES", "EXPIRES", "NEXT", "HOSTS", "LAST ERROR"],
                    certs.iter().map(cert_row).collect(),
                );
            }
        }
        FleetCommand::Cert(CertCommand::Show { name, json }) => {
            let d = client.show_certificate(name).await.map_err(api_error)?;
            if *json {
                print_json(&d);
            } else {
                let c = &d.certificate;
                println!("certificate {}: {:?}", c.name, c.state);
                println!("  names:     {}", c.identifiers.join(", "));
                println!("  custody:   {} ({})", c.custody.as_str(), c.key_type);
                if let (Some(serial), Some(na)) = (&c.serial, c.not_after) {
                    println!(
                        "  current:   serial {serial}, expires {} ({})",
                        fmt_time(na),
                        left(na)
                    );
                    println!("  issuer:    {}", c.issuer.as_deref().unwrap_or("-"));
                }
                if let Some(n) = c.next_attempt {
                    println!(
                        "  next:      {} ({})",
                        fmt_time(n),
                        c.next_attempt_reason.as_deref().unwrap_or("-")
                    );
                }
                if let Some(e) = &c.last_error {
                    println!("  failures:  {} in a row; last: {e}", c.consecutive_failures);
                }
                println!("  hosts:");
                for i in &d.installs {
                    println!(
                        "    {:<16} {:<20} installed {} served {}{}",
                        i.host,
                        i.state
                            .map(|s| format!("{s:?}"))
                            .unwrap_or_else(|| "no report yet".into()),
                        i.installed_serial.as_deref().unwrap_or("-"),
                        i.served_serial.as_deref().unwrap_or("-"),
                        i.error
                            .as_deref()
                            .map(|e| format!("  error: {e}"))
                            .unwrap_or_default()
                    );
                }
                println!("  events (newest first):");
                for e in &d.events {
                    println!(
                        "    {}  {:<18} {:<16} {}",
                        fmt_time(e.at),
                        e.kind,
                        e.host.as_deref().unwrap_or(&e.actor),
                        e.detail
                    );
                }
            }
        }
        FleetCommand::Cert(CertCommand::Renew { name }) => {
            client.renew_certificate(name).await.map_err(api_error)?;
            eprintln!("renewal of {name} scheduled now");
        }
        FleetCommand::Cert(CertCommand::Enable { name }) => {
            client.enable_certificate(name).await.map_err(api_error)?;
        }
        FleetCommand::Cert(CertCommand::Disable { name }) => {
            client.disable_certificate(name).await.map_err(api_error)?;
        }
        FleetCommand::Assign { cert, host } => client.assign(cert, host).await.map_err(api_error)?,
        FleetCommand::Unassign { cert, host } => client.unassign(cert, host).await.map_err(api_error)?,
        FleetCommand::Notify(NotifyCommand::Test { json }) => {
            let report = client.notify_test().await.map_err(api_error)?;
            if *json {
                print_json(&report);
            }
            if report.channels.is_empty() {
                return Err(CliError::new(
                    ExitCode::Failure,
                    "the server has no notification channel: start `certfleet serve` with --smtp-url and \
                     --notify-email, --notify-webhook or --notify-command",
                ));
            }
            if !*json {
                for c in &report.channels {
                    match &c.error {
                        None => println!("ok      {}", c.channel),
                        Some(e) => println!("FAILED  {}: {e}", c.channel),
                    }
                }
            }
            let failed = report.channels.iter().filter(|c| !c.ok).count();
            if failed > 0 {
                return Err(CliError::new(
                    ExitCode::Failure,
                    format!(
                        "{failed} of {} notification channel(s) failed; the server's log has the same reasons",
                        report.channels.len()
                    ),
                ));
            }
        }
        FleetCommand::Admin(AdminCommand::Passwd { password_file }) => {
            let password = match password_file {
                Some(f) => read_password_file(f)?,
                None => ask_password()?,
            };
            client
                .set_dashboard_password(&password)
                .await
                .map_err(api_error)?;
            eprintln!("dashboard password set; every dashboard session was logged out");
        }
    }
    Ok(ProcessExit::SUCCESS)
}

/// URL, token and pin from the flags/environment, or from a server's data dir.
pub(crate) fn connect(c: &FleetConnArgs) -> Result<FleetClient> {
    let from_dir = |file: &str| c.data_dir.as_ref().map(|d| d.join(file));
    let url = match (&c.url, &c.data_dir) {
        (Some(u), _) => u.clone(),
        (None, Some(_)) => {
            let listen = read_trimmed(&from_dir("api.url").expect("data dir given")).ok();
            listen.unwrap_or_else(|| "https://127.0.0.1:8443".to_string())
        }
        (None, None) => {
            return Err(CliError::usage(
                "which fleet server? pass --url https://HOST:8443 (or CERTFLEET_URL), or --data-dir DIR on the server",
            ));
        }
    };
    let token_file = c
        .token_file
        .clone()
        .or_else(|| from_dir("admin.token"))
        .ok_or_else(|| {
            CliError::usage("pass --token-file FILE (or CERTFLEET_TOKEN_FILE) with the admin token")
        })?;
    let token = read_trimmed(&token_file)?;
    let pin = match (&c.fingerprint, from_dir("api.fingerprint")) {
        (Some(f), _) => Some(f.clone()),
        (None, Some(p)) => Some(read_trimmed(&p)?),
        (None, None) => None,
    };
    let trust = pin.map(ServerTrust::Pin).unwrap_or(ServerTrust::SystemRoots);
    FleetClient::builder(&url, trust)
        .bearer_token(token)
        .build()
        .map_err(api_error)
}

/// The first line of the file, without its line end.
fn read_password_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read --password-file {}: {e}", path.display())))?;
    let line = text.lines().next().unwrap_or_default().to_string();
    if line.is_empty() {
        return Err(CliError::usage(format!(
            "--password-file {}: its first line is empty; put the password there",
            path.display()
        )));
    }
    Ok(line)
}

/// Asks twice on the terminal (echo off while typing, through `stty`) or reads two lines from
/// a pipe; both must match.
fn ask_password() -> Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let tty = std::io::stdin().is_terminal();
    let stty = |arg: &str| {
        if tty {
            let _ = std::process::Command::new("stty")
                .arg(arg)
                .stdin(std::process::Stdio::inherit())
                .status();
        }
    };
    let mut lines = Vec::new();
    let stdin = std::io::stdin();
    for prompt in ["New dashboard password: ", "Again: "] {
        if tty {
            eprint!("{prompt}");
            let _ = std::io::stderr().flush();
        }
        stty("-echo");
        let mut line = String::new();
        let read = stdin.lock().read_line(&mut line);
        stty("echo");
        if tty {
            eprintln!();
        }
        read.map_err(|e| CliError::usage(format!("cannot read the password: {e}")))?;
        lines.push(line.trim_end_matches(['\r', '\n']).to_string());
    }
    if lines[0].is_empty() {
        return Err(CliError::usage(
            "no password given: type it twice, pipe two lines, or use --password-file FILE",
        ));
    }
    if lines[0] != lines[1] {
        return Err(CliError::usage("the two passwords differ; nothing was changed"));
    }
    Ok(lines.swap_remove(0))
}

fn read_trimmed(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))
}

fn new_certificate(a: &CertAddArgs) -> Result<NewCertificate> {
    let custody = match a.custody.as_str() {
        "agent" => Custody::Agent,
        "server" => Custody::Server,
        other => return Err(CliError::usage(format!("--custody {other}: use agent or server"))),
    };
    let key_type = match (a.key_type.as_str(), a.elliptic_curve.as_str()) {
        ("ecdsa", "secp256r1") => "ecdsa-p256".to_string(),
        ("ecdsa", "secp384r1") => "ecdsa-p384".to_string(),
        ("ecdsa", c) => {
            return Err(CliError::usage(format!(
                "--elliptic-curve {c}: use secp256r1 or secp384r1"
            )));
        }
        ("rsa", _) if [2048, 3072, 4096].contains(&a.rsa_key_size) => format!("rsa{}", a.rsa_key_size),
        ("rsa", _) => {
            return Err(CliError::usage(format!(
                "--rsa-key-size {}: use 2048, 3072 or 4096",
                a.rsa_key_size
            )));
        }
        (t, _) => return Err(CliError::usage(format!("--key-type {t}: use ecdsa or rsa"))),
    };
    let challenge = challenge(&a.dns)?;
    Ok(NewCertificate {
        name: a.name.clone(),
        identifiers: a
            .domains
            .iter()
            .flat_map(|d| d.split(','))
            .map(|d| d.trim().to_string())
            .collect(),
        hosts: a.hosts.clone(),
        custody,
        key_type,
        challenge,
        profile: a.profile.clone(),
        comment: a.comment.clone(),
    })
}

/// How the server proves control: its http-01 responder, or the `--dns-<provider>` given
/// (credentials being a path on the server).
pub(crate) fn challenge(dns: &crate::args::DnsProviderArgs) -> Result<ChallengeSettings> {
    Ok(match dns.chosen() {
        None => ChallengeSettings::Http01,
        Some(p) => {
            let credentials = p.credentials.as_ref().ok_or_else(|| {
                CliError::usage(format!(
                    "--{} needs --{} FILE (a path on the server)",
                    p.provider.flag, p.provider.credentials_flag
                ))
            })?;
            let credentials = std::path::absolute(credentials)
                .unwrap_or_else(|_| credentials.clone())
                .to_string_lossy()
                .into_owned();
            ChallengeSettings::Dns01 {
                provider: p.provider.name.to_string(),
                credentials,
                propagation_seconds: p.propagation_seconds,
            }
        }
    })
}

/// Exit 2 for what the admin must fix in the request, 1 for the rest.
pub(crate) fn api_error(e: ClientError) -> CliError {
    let code = match &e {
        ClientError::Api { status, .. } if (400..500).contains(status) => ExitCode::Usage,
        ClientError::Url { .. } | ClientError::Setup(_) => ExitCode::Usage,
        _ => ExitCode::Failure,
    };
    CliError::new(code, e.to_string())
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("plain data serializes")
    );
}

fn cert_row(c: &CertificateView) -> Vec<String> {
    vec![
        c.name.clone(),
        format!("{:?}", c.state).to_lowercase(),
        c.identifiers.join(","),
        c.not_after
            .map(|t| format!("{} ({})", fmt_time(t), left(t)))
            .unwrap_or_else(|| "-".into()),
        c.next_attempt.map(fmt_time).unwrap_or_else(|| "-".into()),
        if c.hosts.is_empty() {
            "-".into()
        } else {
            c.hosts.join(",")
        },
        c.last_error.clone().unwrap_or_default(),
    ]
}

fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let parts: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == n {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

fn fmt_time(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .map(crate::verbs::renew::fmt_time)
        .unwrap_or_else(|_| t.to_string())
}

fn left(t: i64) -> String {
    let d = t - OffsetDateTime::now_utc().unix_timestamp();
    if d <= 0 {
        "expired".into()
    } else if d >= 86400 {
        format!("{} days left", d / 86400)
    } else {
        format!("{} hours left", d / 3600)
    }
}

fn ago(t: i64) -> String {
    let d = OffsetDateTime::now_utc().unix_timestamp() - t;
    match d {
        ..60 => "just now".into(),
        60..3600 => format!("{} min ago", d / 60),
        3600..86400 => format!("{} h ago", d / 3600),
        _ => format!("{} days ago", d / 86400),
    }
}
