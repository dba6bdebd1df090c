//! No secret in any output. A whole single-host life (account registration, dns-01 through a
//! real BIND with TSIG, a failure with a wrong TSIG secret, renewals, a dry run, a crash report,
//! `certificates --json`, `show_account`) runs at trace log level with umask 000; then every
//! byte it printed and every file under its logs directory is searched for the test's secrets:
//! each private key (PEM lines, and the DER as base64 and base64url), the account key's private
//! JWK members, both TSIG secrets. Every key file must be 0600 (the account key 0400, as
//! certbot writes it) whatever the umask.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine;
use certfleet_testkit::bind::Bind;
use certfleet_testkit::pebble::Pebble;
use common::*;

/// `cmd` run through `sh` with umask 000, so nothing but certfleet's own modes protect files.
fn with_umask_0(cmd: Command) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => files_under(&p, out),
            Ok(m) if m.is_file() => out.push(p),
            _ => {}
        }
    }
}

/// The strings that must never be printed: for each key, its PEM body lines and its DER in
/// both base64 alphabets; for the account key, its private JWK members.
fn key_secrets(config_dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    files_under(config_dir, &mut files);
    let mut secrets = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        if text.contains("PRIVATE KEY-----") {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(
                mode, 0o600,
                "{name}: a private key must be 0600 whatever the umask"
            );
            for line in text.lines().filter(|l| !l.starts_with("-----") && l.len() >= 24) {
                secrets.push((name.clone(), line.to_string()));
            }
            let body: String = text
                .lines()
                .skip_while(|l| !l.contains("PRIVATE KEY-----"))
                .skip(1)
                .take_while(|l| !l.starts_with("-----"))
                .collect();
            let der = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
            let std64 = base64::engine::general_purpose::STANDARD.encode(&der);
            let url64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&der);
            // A long middle slice: any printing of the key would contain it.
            for b in [std64, url64] {
                secrets.push((name.clone(), b[b.len() / 3..b.len() / 3 + 40].to_string()));
            }
        }
        if f.file_name().is_some_and(|n| n == "private_key.json") {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            // certbot writes it 0400; never readable by group or others.
            assert_eq!(
                mode & 0o077,
                0,
                "{name}: the account key is {mode:o} under umask 000"
            );
            let jwk: serde_json::Value = serde_json::from_str(&text).unwrap();
            for member in ["d", "p", "q", "dp", "dq", "qi"] {
                if let Some(v) = jwk[member].as_str() {
                    secrets.push((format!("{name} {member}"), v.to_string()));
                }
            }
        }
    }
    secrets
}

#[test]
fn no_key_or_secret_in_any_output_and_keys_are_0600_under_umask_000() {
    let bind = Bind::start(&["s.example.test"]).unwrap();
    let pebble = Pebble::builder()
        .dns_server(bind.addr())
        .env("PEBBLE_VA_NOSLEEP", "1")
        .start()
        .unwrap();
    let env = Env::new(pebble);
    let ini = env.tmp.path().join("rfc2136.ini");
    bind.write_rfc2136_ini(&ini).unwrap();
    let wrong_secret = base64::engine::general_purpose::STANDARD.encode(b"a wrong TSIG secret 0123456789");
    let wrong_ini = env.tmp.path().join("wrong.ini");
    bind.write_rfc2136_ini_with_secret(&wrong_ini, &wrong_secret)
        .unwrap();
    let tsig = std::fs::read_to_string(&ini)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("dns_rfc2136_secret = ").map(str::to_string))
        .unwrap();

    let mut outputs: Vec<(String, Output)> = Vec::new();
    let mut run = |what: &str, args: &[&str], extra_env: &[(&str, &str)]| {
        let mut cmd = env.cmd(args);
        cmd.arg("-vv").env("CERTFLEET_LOG", "trace");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = with_umask_0(cmd).output().unwrap();
        outputs.push((what.to_string(), out));
    };
    let issue = |ini: &Path, name: &'static str| -> Vec<String> {
        [
            "certonly",
            "--dns-rfc2136",
            "--dns-rfc2136-credentials",
            ini.to_str().unwrap(),
            "--agree-tos",
            "-m",
            "admin@example.test",
            "-n",
            "-d",
            name,
        ]
        .map(str::to_string)
        .to_vec()
    };
    let args = issue(&ini, "www.s.example.test");
    run(
        "certonly",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    );
    let args = issue(&wrong_ini, "bad.s.example.test");
    run(
        "certonly with a wrong TSIG secret",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    );
    run("renew", &["renew", "--force-renewal"], &[]);
    run("renew --dry-run", &["renew", "--dry-run"], &[]);
    run(
        "renew killed at a crash point",
        &["renew", "--force-renewal"],
        &[("CERTFLEET_CRASH_AT", "before-symlinks")],
    );
    run("renew after the crash", &["renew", "--force-renewal"], &[]);
    run("certificates --json", &["certificates", "--json"], &[]);
    run("show_account", &["show_account"], &[]);

    // The runs did what they should (or the search below proves little).
    let status = |w: &str| outputs.iter().find(|(x, _)| x == w).unwrap().1.status;
    assert!(status("certonly").success(), "{}", stderr(&outputs[0].1));
    assert!(!status("certonly with a wrong TSIG secret").success());
    assert!(status("renew").success());
    assert_eq!(status("renew killed at a crash point").code(), None, "aborted");
    assert!(status("renew after the crash").success());

    let mut secrets = key_secrets(&env.config_dir());
    assert!(secrets.len() >= 10, "keys found: {}", secrets.len());
    secrets.push(("TSIG secret".into(), tsig));
    secrets.push(("wrong TSIG secret".into(), wrong_secret));

    let mut texts: Vec<(String, String)> = outputs
        .iter()
        .map(|(w, o)| (w.clone(), format!("{}{}", stdout(o), stderr(o))))
        .collect();
    let mut logs = Vec::new();
    files_under(&env.tmp.path().join("logs"), &mut logs);
    for f in logs {
        texts.push((
            f.display().to_string(),
            std::fs::read_to_string(&f).unwrap_or_default(),
        ));
    }
    let printed: usize = texts.iter().map(|(_, t)| t.len()).sum();
    assert!(printed > 10_000, "trace output expected, got {printed} bytes");
    for (what, text) in &texts {
        for (whose, secret) in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} printed a secret ({whose})"
            );
        }
    }
}
