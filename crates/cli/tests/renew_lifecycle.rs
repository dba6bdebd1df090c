//! Lifecycle verbs around renewal: `reconfigure`, `update_symlinks`, `install-timer`, and the
//! `run` daemon, with the real binary against a real Pebble (and nginx).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use certfleet_testkit::{Nginx, Pebble};
use common::*;

fn cert(path: &Path) -> certfleet_core::CertInfo {
    certfleet_core::CertInfo::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn conf(env: &Env, name: &str) -> String {
    std::fs::read_to_string(env.config_dir().join(format!("renewal/{name}.conf"))).unwrap()
}

#[test]
fn reconfigure_changes_conf_without_issuing_then_renew_uses_it() {
    let env = Env::new(Pebble::start().unwrap());
    assert!(
        env.certonly_standalone(&["rc.example.test"], &[])
            .status
            .success()
    );
    let live = env.live("rc.example.test");
    let serial = cert(&live.join("cert.pem")).serial_hex();
    let before = conf(&env, "rc.example.test");

    // Bad input: refused, nothing written.
    for (args, what) in [
        (
            vec!["reconfigure", "--cert-name", "rc.example.test"],
            "nothing to change",
        ),
        (
            vec![
                "reconfigure",
                "--cert-name",
                "rc.example.test",
                "--webroot",
                "-w",
                "/nonexistent/www",
            ],
            "/nonexistent/www",
        ),
        (
            vec![
                "reconfigure",
                "--cert-name",
                "rc.example.test",
                "--deploy-reload",
                "nginx;reboot",
            ],
            "invalid service",
        ),
        (
            vec![
                "reconfigure",
                "--cert-name",
                "rc.example.test",
                "--key-type",
                "rsa",
                "--rsa-key-size",
                "1024",
            ],
            "1024",
        ),
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(what), "{args:?}: {}", stderr(&out));
        assert_eq!(conf(&env, "rc.example.test"), before, "{args:?} changed the conf");
    }
    let out = env.run(&[
        "reconfigure",
        "--cert-name",
        "missing.example.test",
        "--key-type",
        "rsa",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.example.test"), "{}", stderr(&out));

    // Switch to webroot (nginx on the port Pebble validates), RSA keys, a deploy hook.
    let www = env.tmp.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let _nginx = Nginx::builder()
        .webroot(&www)
        .http_port(env.pebble.http_port())
        .start()
        .unwrap();
    let hook_log = env.tmp.path().join("deployed");
    let hook = format!("echo $RENEWED_DOMAINS > {}", hook_log.display());
    let out = env.run_ok(&[
        "reconfigure",
        "--cert-name",
        "rc.example.test",
        "--webroot",
        "-w",
        www.to_str().unwrap(),
        "--key-type",
        "rsa",
        "--deploy-hook",
        &hook,
    ]);
    assert!(
        stdout(&out).contains("No certificate was issued"),
        "{}",
        stdout(&out)
    );
    let after = conf(&env, "rc.example.test");
    assert!(after.contains("authenticator = webroot"), "{after}");
    assert!(
        after.contains(&format!("rc.example.test = {}", www.display())),
        "{after}"
    );
    assert!(after.contains("key_type = rsa"), "{after}");
    assert!(after.contains("renew_hook = echo"), "{after}");
    assert_eq!(
        cert(&live.join("cert.pem")).serial_hex(),
        serial,
        "reconfigure must not issue"
    );

    // The key type no longer matches: the next plain `renew` renews, through the webroot.
    let out = env.run_ok(&["renew"]);
    assert!(
        stdout(&out).contains("1 renewed"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let key =
        certfleet_core::PrivateKey::from_pem(&std::fs::read_to_string(live.join("privkey.pem")).unwrap())
            .unwrap();
    assert_eq!(key.spec(), certfleet_core::KeySpec::Rsa(2048));
    assert_eq!(
        std::fs::read_to_string(&hook_log).unwrap().trim(),
        "rc.example.test"
    );
    // ... and then it is not due any more.
    let out = env.run_ok(&["renew"]);
    assert!(stdout(&out).contains("0 renewed, 1 not due"), "{}", stdout(&out));
    // Empty values remove a setting.
    env.run_ok(&[
        "reconfigure",
        "--cert-name",
        "rc.example.test",
        "--deploy-hook",
        "",
    ]);
    assert!(!conf(&env, "rc.example.test").contains("renew_hook"));
}

#[test]
fn update_symlinks_points_live_at_newest_complete_version() {
    let env = Env::new(Pebble::start().unwrap());
    assert!(
        env.certonly_standalone(&["us.example.test"], &[])
            .status
            .success()
    );
    env.run_ok(&["renew", "--force-renewal"]);
    let live = env.live("us.example.test");
    // Someone pointed two links back at version 1 by hand.
    for k in ["cert", "privkey"] {
        let link = live.join(format!("{k}.pem"));
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(format!("../../archive/us.example.test/{k}1.pem"), &link).unwrap();
    }
    let out = env.run_ok(&["update_symlinks"]);
    assert!(stdout(&out).contains("version 2"), "{}", stdout(&out));
    for k in ["cert", "privkey", "chain", "fullchain"] {
        let target = std::fs::read_link(live.join(format!("{k}.pem"))).unwrap();
        assert!(target.ends_with(format!("{k}2.pem")), "{k}: {}", target.display());
    }
    env.verify_lineage("us.example.test", &["us.example.test"]);
    // The hyphenated alias works too.
    env.run_ok(&["update-symlinks", "--cert-name", "us.example.test"]);
}

#[test]
fn install_timer_writes_units_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    let units = tmp.path().join("units");
    let bin = env!("CARGO_BIN_EXE_certfleet");
    let run = |dir: &Path| {
        std::process::Command::new(bin)
            .args(["install-timer", "--unit-dir"])
            .arg(dir)
            .args(["--config-dir", "/srv/le"])
            .output()
            .unwrap()
    };
    let out = run(&units);
    assert_eq!(out.status.code(), Some(2), "missing dir is refused");
    std::fs::create_dir(&units).unwrap();
    let out = run(&units);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("systemctl daemon-reload && systemctl enable --now certfleet-renew.timer"),
        "{text}"
    );
    let mut names: Vec<String> = std::fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "certfleet-renew.service",
            "certfleet-renew.timer",
            "certfleet.service"
        ]
    );
    let exe = std::fs::canonicalize(bin).unwrap();
    let svc = std::fs::read_to_string(units.join("certfleet-renew.service")).unwrap();
    assert!(
        svc.contains(&format!(
            "ExecStart={} renew --non-interactive --config-dir /srv/le\n",
            exe.display()
        )),
        "{svc}"
    );
    let daemon = std::fs::read_to_string(units.join("certfleet.service")).unwrap();
    assert!(
        daemon.contains(" run --non-interactive --config-dir /srv/le\n"),
        "{daemon}"
    );
    assert!(daemon.contains("ExecReload=/bin/kill -HUP $MAINPID"), "{daemon}");
    let timer = std::fs::read_to_string(units.join("certfleet-renew.timer")).unwrap();
    assert!(timer.contains("OnCalendar=*-*-* 00,12:00:00") && timer.contains("RandomizedDelaySec="));
    assert_eq!(mode(&units.join("certfleet-renew.timer")), 0o644);
    // Running it again replaces the files in place (no temp files left).
    assert!(run(&units).status.success());
    assert_eq!(std::fs::read_dir(&units).unwrap().count(), 3);
}

/// `certfleet run`: renews a 20-second certificate when it comes due, on its own; re-reads the
/// lineage list on SIGHUP; exits cleanly on SIGTERM.
#[test]
fn daemon_renews_when_due_and_stops_on_sigterm() {
    let env = Env::new(Pebble::builder().validity_seconds(20).start().unwrap());
    assert!(
        env.certonly_standalone(&["d1.example.test"], &[])
            .status
            .success()
    );
    let live = env.live("d1.example.test");
    let first = cert(&live.join("cert.pem")).serial_hex();
    let log_path = env.tmp.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = env
        .cmd(&["run", "--max-sleep", "30"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let wait_for = |what: &dyn Fn() -> bool, secs: u64, label: &str| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !what() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {label}; log:\n{}",
                read_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Due at half of 20 s (+ jitter): renewed by the daemon without anyone asking.
    wait_for(
        &|| cert(&live.join("cert.pem")).serial_hex() != first,
        25,
        "the daemon's renewal",
    );
    wait_for(&|| read_log().contains("next pass at"), 10, "the next sleep");

    // A lineage added while it sleeps is picked up on SIGHUP. (The daemon holds the store
    // lock during its passes only; retry if one is running just now.)
    let mut added = false;
    for _ in 0..5 {
        if env
            .certonly_standalone(&["d2.example.test"], &[])
            .status
            .success()
        {
            added = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(added, "certonly while the daemon sleeps");
    let kill = |sig: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    kill("-HUP");
    wait_for(&|| read_log().contains("SIGHUP"), 10, "SIGHUP");
    // A pass after the SIGHUP that saw both lineages.
    let saw_both = || {
        let text = read_log();
        let after = &text[text.find("SIGHUP").unwrap_or(0)..];
        after
            .lines()
            .filter_map(|l| l.split("pass done: ").nth(1))
            .any(|rest| {
                let nums: Vec<u32> = rest
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse().ok())
                    .collect();
                nums.iter().sum::<u32>() == 2
            })
    };
    wait_for(&saw_both, 10, "a pass over both lineages");

    kill("-TERM");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "daemon did not stop; log:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}\n{}", read_log());
    let text = read_log();
    assert!(text.contains("d1.example.test: renewed"), "{text}");
    assert!(text.contains("stopped"), "{text}");
    env.verify_lineage("d1.example.test", &["d1.example.test"]);
}
