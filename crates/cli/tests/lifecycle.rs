//! Accounts, revocation, deletion and certbot interop, against real Pebble and real certbot.

mod common;

use certfleet_testkit::{Certbot, Pebble};
use common::*;

fn serial_of(path: &std::path::Path) -> String {
    certfleet_core::CertInfo::from_pem(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .serial_hex()
}

#[test]
fn revoke_with_account_then_lineage_deleted() {
    let env = Env::new(Pebble::start().unwrap());
    assert!(
        env.certonly_standalone(&["rev.example.test"], &[])
            .status
            .success()
    );
    let serial = serial_of(&env.live("rev.example.test").join("cert.pem"));
    assert_eq!(env.pebble.cert_status(&serial).unwrap()["Status"], "Valid");
    env.run_ok(&[
        "revoke",
        "--cert-name",
        "rev.example.test",
        "--reason",
        "keycompromise",
        "-n",
    ]);
    let status = env.pebble.cert_status(&serial).unwrap();
    assert_eq!(status["Status"], "Revoked", "{status}");
    assert!(
        !env.live("rev.example.test").exists(),
        "non-interactive revoke deletes the lineage, as certbot"
    );
    assert!(!env.config_dir().join("renewal/rev.example.test.conf").exists());
}

#[test]
fn revoke_with_certificate_key_keeps_lineage() {
    let env = Env::new(Pebble::start().unwrap());
    assert!(
        env.certonly_standalone(&["revkey.example.test"], &[])
            .status
            .success()
    );
    let live = env.live("revkey.example.test");
    let serial = serial_of(&live.join("cert.pem"));
    // A different, empty config dir: no account at all, only the certificate and its key.
    let other = tempfile::tempdir().unwrap();
    let out = env
        .cmd(&["revoke", "--no-delete-after-revoke", "-n"])
        .arg("--cert-path")
        .arg(live.join("cert.pem"))
        .arg("--key-path")
        .arg(live.join("privkey.pem"))
        .arg("--config-dir")
        .arg(other.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.pebble.cert_status(&serial).unwrap()["Status"], "Revoked");
    assert!(live.join("cert.pem").exists());
    let bad = env.run(&[
        "revoke",
        "--cert-name",
        "revkey.example.test",
        "--reason",
        "becausewhynot",
        "-n",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("keycompromise"), "{}", stderr(&bad));
}

#[test]
fn delete_removes_everything_and_asks_without_n() {
    let env = Env::new(Pebble::start().unwrap());
    assert!(
        env.certonly_standalone(&["del.example.test"], &[])
            .status
            .success()
    );
    let out = env.run(&["delete", "--cert-name", "del.example.test"]);
    assert_eq!(out.status.code(), Some(2), "no terminal and no -n: refuse");
    assert!(env.live("del.example.test").exists());
    env.run_ok(&["delete", "--cert-name", "del.example.test", "-n"]);
    for p in [
        "live/del.example.test",
        "archive/del.example.test",
        "renewal/del.example.test.conf",
    ] {
        assert!(!env.config_dir().join(p).exists(), "{p} left behind");
    }
    let out = env.run(&["delete", "--cert-name", "nope", "-n"]);
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn account_verbs() {
    let env = Env::new(Pebble::start().unwrap());
    let out = env.run(&["show_account"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("certfleet register"), "{}", stderr(&out));
    let out = env.run(&["register", "-m", "one@example.test"]);
    assert_eq!(out.status.code(), Some(2), "needs --agree-tos");
    assert!(stderr(&out).contains("--agree-tos"));
    env.run_ok(&["register", "-m", "one@example.test", "--agree-tos"]);
    let shown = stdout(&env.run_ok(&["show_account"]));
    assert!(
        shown.contains("one@example.test") && shown.contains("valid"),
        "{shown}"
    );
    env.run_ok(&["update_account", "-m", "two@example.test"]);
    assert!(stdout(&env.run_ok(&["show_account"])).contains("two@example.test"));
    // The account directory has certbot's shape and modes.
    let accounts = env.config_dir().join("accounts");
    let key = walk_find(&accounts, "private_key.json").expect("private_key.json");
    assert_eq!(mode(&key), 0o400);
    env.run_ok(&["unregister", "-n"]);
    assert!(walk_find(&accounts, "private_key.json").is_none());
}

fn walk_find(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if p.is_dir()
            && let Some(f) = walk_find(&p, name)
        {
            return Some(f);
        }
    }
    None
}

#[test]
fn certbot_lists_what_certfleet_wrote() {
    let env = Env::new(Pebble::start().unwrap());
    assert!(
        env.certonly_standalone(&["ours.example.test", "www.ours.example.test"], &[])
            .status
            .success()
    );
    let certbot = Certbot::with_dirs(
        env.config_dir(),
        env.tmp.path().join("work"),
        env.tmp.path().join("logs"),
    )
    .server(env.pebble.directory_url())
    .ca_bundle(env.pebble.ca_bundle_path());
    let out = certbot.run_ok(&["certificates"]).unwrap();
    assert!(
        out.stdout.contains("Certificate Name: ours.example.test"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Domains: ours.example.test www.ours.example.test"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("VALID"), "{}", out.stdout);
    assert!(!out.stdout.contains("INVALID"), "{}", out.stdout);
    assert!(
        !out.stderr.contains("parse"),
        "certbot could not parse our renewal conf: {}",
        out.stderr
    );
}

#[test]
fn certfleet_uses_lineage_and_account_certbot_wrote() {
    let pebble = Pebble::start().unwrap();
    let certbot = Certbot::for_pebble(&pebble).unwrap();
    certbot
        .certonly_standalone(&["cb.example.test"], pebble.http_port(), &["--key-type", "rsa"])
        .unwrap();
    let cb_serial = serial_of(&certbot.live_dir("cb.example.test").join("cert.pem"));

    // Point a certfleet environment at certbot's tree.
    let env = Env::new(pebble);
    let dirs = [
        "--config-dir",
        certbot.config_dir().to_str().unwrap(),
        "--work-dir",
        certbot.work_dir().to_str().unwrap(),
    ];
    let listed = env.cmd(&["certificates", "--json"]).args(dirs).output().unwrap();
    assert!(listed.status.success(), "{}", stderr(&listed));
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(json[0]["name"], "cb.example.test");
    assert_eq!(json[0]["status"], "VALID");
    assert!(json[0]["key_type"].as_str().unwrap().starts_with("RSA"));

    // Renew it with certbot's (RSA) account: no new account must appear.
    let accounts_before = count_accounts(certbot.config_dir());
    let port = env.pebble.http_port().to_string();
    let out = env
        .cmd(&[
            "certonly",
            "--standalone",
            "--http-01-address",
            "127.0.0.1",
            "--http-01-port",
            &port,
            "-d",
            "cb.example.test",
            "--force-renewal",
            "-n",
        ])
        .args(dirs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(count_accounts(certbot.config_dir()), accounts_before);
    let live = certbot.live_dir("cb.example.test");
    assert!(
        std::fs::read_link(live.join("cert.pem"))
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("cert2.pem")
    );
    assert_ne!(serial_of(&live.join("cert.pem")), cb_serial);
    env.pebble
        .verify_chain(
            &std::fs::read(live.join("fullchain.pem")).unwrap(),
            &["cb.example.test"],
            std::time::SystemTime::now(),
        )
        .unwrap();
    // And certbot still reads the lineage after certfleet renewed it.
    let out = certbot.run_ok(&["certificates"]).unwrap();
    assert!(
        out.stdout.contains("cb.example.test") && out.stdout.contains("VALID"),
        "{}",
        out.stdout
    );
}

fn count_accounts(config: &std::path::Path) -> usize {
    fn walk(d: &std::path::Path, n: &mut usize) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.join("private_key.json").exists() {
                *n += 1;
            } else if p.is_dir() {
                walk(&p, n);
            }
        }
    }
    let mut n = 0;
    walk(&config.join("accounts"), &mut n);
    n
}
