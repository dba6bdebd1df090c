//! Regressions for reliability bugs users found, each named after what broke, run with the
//! real binary (and a real Pebble where the CA matters).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use certfleet_testkit::Pebble;
use common::*;

/// certfleet with only its three directories under `root` (no CA needed).
fn bare(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_certfleet"));
    c.args(args)
        .arg("--config-dir")
        .arg(root.join("etc"))
        .arg("--work-dir")
        .arg(root.join("work"))
        .arg("--logs-dir")
        .arg(root.join("logs"));
    c
}

/// Run to completion, or kill it and fail after `limit`.
fn run_within(mut cmd: Command, limit: Duration, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            child.kill().ok();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} hung for {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn certbot_reads_conf(conf: &Path) -> serde_json::Value {
    let script = "import sys, json, configobj\n\
                  c = configobj.ConfigObj(sys.argv[1], encoding='utf-8', default_encoding='utf-8')\n\
                  print(json.dumps(c.dict()))";
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Issue 11: this hook made the renewal conf unreadable to certfleet (not to certbot), and
/// every later renew failed. A hook configobj cannot store at all is refused up front.
#[test]
fn deploy_hook_with_both_quote_kinds_survives_renew() {
    let env = Env::new(Pebble::start().unwrap());
    let log = env.tmp.path().join("hook.log");
    let hook = format!("sh -c 'echo \"x\" >> {}'", log.display());
    let out = env.certonly_standalone(&["q.example.test"], &["--deploy-hook", &hook]);
    assert!(out.status.success(), "{}", stderr(&out));
    let conf = env.config_dir().join("renewal/q.example.test.conf");
    assert_eq!(certbot_reads_conf(&conf)["renewalparams"]["renew_hook"], hook);
    let out = env.run_ok(&["renew", "--force-renewal"]);
    assert!(stdout(&out).contains("1 renewed"), "{}", stdout(&out));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "x\nx\n",
        "hook ran at issue and renewal"
    );
    assert_eq!(certbot_reads_conf(&conf)["renewalparams"]["renew_hook"], hook);

    let out = env.certonly_standalone(&["r.example.test"], &["--deploy-hook", "a ''' # b \"\"\" # c"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--deploy-hook"), "{}", stderr(&out));
    assert!(!env.live("r.example.test").exists());
    assert!(!env.config_dir().join("archive/r.example.test").exists());
}

/// A killed first `certonly` left archive temp files and a live staging dir behind (or a
/// complete live/NAME without a conf); the retry took NAME-0001. It now reuses NAME.
#[test]
fn retry_after_killed_first_certonly_reuses_the_name() {
    let env = Env::new(Pebble::start().unwrap());
    for point in [
        "after-archive-cert",
        "after-symlink-chain",
        "after-exchange",
        "before-renewal-conf",
    ] {
        let name = format!("{}.example.test", point.replace('-', ""));
        let out = env
            .certonly_standalone_cmd(&[&name], &[])
            .env("CERTFLEET_CRASH_AT", point)
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(6), "{point}: {}", stderr(&out));
        let out = env.certonly_standalone(&[&name], &[]);
        assert!(out.status.success(), "{point}: {}", stderr(&out));
        assert!(
            env.config_dir().join(format!("renewal/{name}.conf")).exists(),
            "{point}"
        );
        assert!(
            !env.live(&format!("{name}-0001")).exists(),
            "{point}: took a suffix"
        );
        env.verify_lineage(&name, &[&name]);
        let leftovers: Vec<_> = std::fs::read_dir(env.config_dir().join("live"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{point}: {leftovers:?}");
        let archive: Vec<_> = std::fs::read_dir(env.config_dir().join("archive").join(&name))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(archive.len(), 4, "{point}: {archive:?}");
    }
}

/// A FIFO in renewal/ hung `renew` and `certificates` while they held the lock.
#[test]
fn fifo_in_renewal_dir_does_not_hang_renew_or_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let renewal = tmp.path().join("etc/renewal");
    std::fs::create_dir_all(&renewal).unwrap();
    let fifo = renewal.join("stuck.conf");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for args in [
        &["certificates"][..],
        &["renew", "--server", "http://127.0.0.1:1/dir"][..],
    ] {
        let out = run_within(
            bare(tmp.path(), args),
            Duration::from_secs(20),
            &format!("{args:?}"),
        );
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&fifo.display().to_string()) && stderr(&out).contains("FIFO"),
            "{args:?}: the warning names the file: {}",
            stderr(&out)
        );
    }
}

/// `certfleet certificates | head -1` panicked on the closed pipe (exit 134) in 4 of 10 runs.
#[test]
fn certificates_into_a_closed_pipe_exits_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    for format in [&[][..], &["--json"][..], &["--certbot-format"][..]] {
        for _ in 0..5 {
            let mut args = vec!["certificates"];
            args.extend_from_slice(format);
            let mut child = bare(tmp.path(), &args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // Close the read end before the child writes: its first line hits EPIPE.
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{format:?}: {:?} {}",
                out.status,
                stderr(&out)
            );
            assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        }
    }
}

/// A renewal conf without [renewalparams] was renewed against Let's Encrypt production.
#[test]
fn conf_without_renewalparams_is_broken_not_renewed_against_production() {
    let env = Env::new(Pebble::start().unwrap());
    let out = env.certonly_standalone(&["p.example.test"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let conf = env.config_dir().join("renewal/p.example.test.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let cut = text.find("[renewalparams]").unwrap();
    std::fs::write(&conf, &text[..cut]).unwrap();
    // No --server: before the fix this went to the default (production) CA.
    let out = run_within(
        bare(env.tmp.path(), &["renew", "--force-renewal"]),
        Duration::from_secs(30),
        "renew",
    );
    let all = format!("{}{}", stdout(&out), stderr(&out));
    // 11, not 10 ("still valid"): a broken lineage will not renew until someone repairs it.
    assert_eq!(out.status.code(), Some(11), "{all}");
    assert!(all.contains("BROKEN") && all.contains("[renewalparams]"), "{all}");
    assert!(all.contains("will not renew until repaired"), "{all}");
    assert!(all.contains("p.example.test.conf"), "{all}");
    assert!(!all.contains("letsencrypt.org"), "{all}");
}

/// `--server not-a-url` exited 4 ("builder error"), `--cert-name ../x` exited 5; both are
/// usage errors (2) saying what is wrong. An unreachable server says why.
#[test]
fn bad_server_url_and_cert_name_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (&["certificates", "--server", "not-a-url"][..], "not a URL"),
        (
            &["certificates", "--server", "ftp://ca.example/dir"][..],
            "https://",
        ),
        (&["certificates", "--server", "https://"][..], "host"),
        (&["certonly", "-d", "a.example", "--cert-name", "../x"][..], "'/'"),
        (&["delete", "--cert-name", ".."][..], "'.'"),
        (&["delete", "--cert-name=-x"][..], "'-'"),
        (&["renew", "--cert-name", "a\u{1}b"][..], "control"),
    ] {
        let out = bare(tmp.path(), args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    let out = run_within(
        bare(
            tmp.path(),
            &[
                "register",
                "--server",
                "http://127.0.0.1:1/dir",
                "--agree-tos",
                "-m",
                "a@example.test",
            ],
        ),
        Duration::from_secs(30),
        "register",
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).to_lowercase().contains("connection refused"),
        "{}",
        stderr(&out)
    );
}

/// `update_symlinks` reported success after pointing links at files that do not exist.
#[test]
fn update_symlinks_refuses_missing_targets() {
    let env = Env::new(Pebble::start().unwrap());
    let out = env.certonly_standalone(&["u.example.test"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.run_ok(&["renew", "--force-renewal"]);
    let live = env.live("u.example.test");
    // Links into an archive directory that was moved away, at version 1.
    for k in ["cert", "privkey", "chain", "fullchain"] {
        let link = live.join(format!("{k}.pem"));
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(format!("../../archive/moved/{k}1.pem"), &link).unwrap();
    }
    let before = snapshot(&env.config_dir());
    let out = env.run(&["update_symlinks"]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("archive/moved/cert2.pem"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(&env.config_dir()), before, "no link changed");
}

/// `certificates` showed INVALID for a garbage or foreign key while `renew` said "not due"
/// (exit 0), and an empty fullchain showed VALID. Both now judge the live set the same way, and
/// `renew` repairs it at once (with a new key when the key is the broken part, even with
/// reuse_key).
#[test]
fn broken_live_set_is_invalid_in_certificates_and_repaired_by_renew() {
    let env = Env::new(Pebble::start().unwrap());
    for (name, extra) in [
        ("garbage.example.test", &["--reuse-key"][..]),
        ("foreign.example.test", &[][..]),
        ("empty.example.test", &[][..]),
    ] {
        let out = env.certonly_standalone(&[name], extra);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let live = |n: &str, f: &str| env.live(n).join(f);
    std::fs::write(live("garbage.example.test", "privkey.pem"), "not a key\n").unwrap();
    let other = std::fs::read(live("empty.example.test", "privkey.pem")).unwrap();
    std::fs::write(live("foreign.example.test", "privkey.pem"), other).unwrap();
    std::fs::write(live("empty.example.test", "fullchain.pem"), "").unwrap();

    let statuses = |env: &Env| -> serde_json::Value {
        let out = env.run_ok(&["certificates", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = statuses(&env);
    for row in before.as_array().unwrap() {
        assert_eq!(row["status"], "INVALID", "{row}");
        assert!(row["problem"].as_str().unwrap().contains(".pem"), "{row}");
    }

    let out = env.run(&["renew"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{all}");
    assert!(stdout(&out).contains("3 renewed"), "{all}");
    assert!(all.contains("live files are broken"), "{all}");
    assert!(
        all.contains("reuse_key is set, but the live key is broken"),
        "{all}"
    );
    for row in statuses(&env).as_array().unwrap() {
        assert_eq!(row["status"], "VALID", "{row}");
    }
    for n in [
        "garbage.example.test",
        "foreign.example.test",
        "empty.example.test",
    ] {
        env.verify_lineage(n, &[n]);
    }
    // Repaired: the next run has nothing to do.
    let out = env.run_ok(&["renew"]);
    assert!(stdout(&out).contains("0 renewed, 3 not due"), "{}", stdout(&out));
}
