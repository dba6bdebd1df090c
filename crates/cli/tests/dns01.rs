//! `certfleet certonly` with dns-01 against a real Pebble whose VA resolves through a real
//! BIND 9: RFC 2136 + TSIG updates, certbot's manual hooks, wildcards, several zones, CNAME
//! delegation, failures and cleanup. Every issued chain is verified against Pebble's roots.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use certfleet_store::RenewalConf;
use certfleet_testkit::Certbot;
use certfleet_testkit::bind::Bind;
use certfleet_testkit::pebble::Pebble;
use common::*;

/// Pebble validating through `bind`, no random VA sleep.
fn pebble_via(bind: &Bind) -> Pebble {
    Pebble::builder()
        .dns_server(bind.addr())
        .env("PEBBLE_VA_NOSLEEP", "1")
        .start()
        .unwrap()
}

/// A certbot dns-rfc2136 ini for `bind` in the test's temp dir.
fn rfc2136_ini(env: &Env, bind: &Bind) -> PathBuf {
    let ini = env.tmp.path().join("rfc2136.ini");
    bind.write_rfc2136_ini(&ini).unwrap();
    ini
}

/// `certonly --dns-rfc2136` for `names`, non-interactive.
fn certonly_rfc2136(env: &Env, ini: &Path, names: &[&str], extra: &[&str]) -> Output {
    let mut args = vec![
        "certonly",
        "--dns-rfc2136",
        "--dns-rfc2136-credentials",
        ini.to_str().unwrap(),
        "--agree-tos",
        "-m",
        "admin@example.test",
        "-n",
    ];
    for n in names {
        args.extend(["-d", n]);
    }
    args.extend_from_slice(extra);
    env.run(&args)
}

fn ok(env: &Env, bind: &Bind, out: &Output) {
    assert!(
        out.status.success(),
        "certfleet failed ({:?}):\nstdout: {}\nstderr: {}\npebble: {}\nbind: {}",
        out.status,
        stdout(out),
        stderr(out),
        tail(&env.pebble.log()),
        tail(&bind.log())
    );
}

fn renewal_conf(env: &Env, name: &str) -> (String, RenewalConf) {
    let path = env.config_dir().join("renewal").join(format!("{name}.conf"));
    let text = std::fs::read_to_string(&path).unwrap();
    let conf = RenewalConf::parse(&text, &path).unwrap();
    (text, conf)
}

fn pending_file(env: &Env) -> PathBuf {
    env.tmp.path().join("work").join("dns01-pending.json")
}

#[test]
fn single_name_rfc2136_records_certbot_keys_and_cleans_only_its_own() {
    let bind = Bind::start(&["host1.example.test"]).unwrap();
    let env = Env::new(pebble_via(&bind));
    let ini = rfc2136_ini(&env, &bind);
    let name = "_acme-challenge.www.host1.example.test";
    // Someone else's value at the same name must survive; a value a crashed earlier run
    // recorded in the pending file must be removed.
    bind.nsupdate_add_txt("host1.example.test", name, "someone-elses")
        .unwrap();
    bind.nsupdate_add_txt("host1.example.test", name, "stale-from-a-crash")
        .unwrap();
    std::fs::create_dir_all(pending_file(&env).parent().unwrap()).unwrap();
    std::fs::write(
        pending_file(&env),
        format!(
            r#"[{{"provider":"rfc2136","record":{{"domain":"www.host1.example.test","fqdn":"{name}","zone":"host1.example.test","value":"stale-from-a-crash"}}}}]"#
        ),
    )
    .unwrap();

    let out = certonly_rfc2136(
        &env,
        &ini,
        &["www.host1.example.test"],
        &["--dns-rfc2136-propagation-seconds", "0"],
    );
    ok(&env, &bind, &out);
    env.verify_lineage("www.host1.example.test", &["www.host1.example.test"]);
    assert_eq!(bind.txt(name), vec!["someone-elses"]);
    assert!(!pending_file(&env).exists(), "pending-records file left behind");

    // certbot's [renewalparams] keys, so certbot (with its dns-rfc2136 plugin) can renew it.
    let (text, conf) = renewal_conf(&env, "www.host1.example.test");
    let abs_ini = ini.display().to_string();
    assert_eq!(conf.authenticator(), Some("dns-rfc2136"), "{text}");
    assert_eq!(conf.param_str("dns_rfc2136_credentials"), Some(abs_ini.as_str()));
    assert_eq!(conf.param_str("dns_rfc2136_propagation_seconds"), Some("0"));
    assert_eq!(conf.pref_challs(), vec!["dns-01"]);
    assert!(text.contains("\npref_challs = dns-01,\n"), "{text}");
    // The TSIG secret stays in the credentials file.
    assert!(!text.contains(bind.key_secret()), "{text}");
    assert!(!stderr(&out).contains(bind.key_secret()));
}

#[test]
fn wildcard_and_apex_in_one_certificate() {
    let bind = Bind::start(&["host1.example.test"]).unwrap();
    let env = Env::new(pebble_via(&bind));
    let ini = rfc2136_ini(&env, &bind);
    let out = certonly_rfc2136(&env, &ini, &["host1.example.test", "*.host1.example.test"], &[]);
    ok(&env, &bind, &out);
    env.verify_lineage(
        "host1.example.test",
        &["host1.example.test", "anything.host1.example.test"],
    );
    assert!(bind.txt("_acme-challenge.host1.example.test").is_empty());
}

#[test]
fn renew_rebuilds_dns_lineages_from_their_conf_concurrently() {
    // Two dns-01 lineages renewed at once (`renew --jobs`) share one pending-records file:
    // neither run may remove the other's records.
    let bind = Bind::start(&["host1.example.test", "host2.example.test"]).unwrap();
    let env = Env::new(pebble_via(&bind));
    let ini = rfc2136_ini(&env, &bind);
    ok(
        &env,
        &bind,
        &certonly_rfc2136(&env, &ini, &["host1.example.test", "*.host1.example.test"], &[]),
    );
    ok(
        &env,
        &bind,
        &certonly_rfc2136(&env, &ini, &["host2.example.test", "*.host2.example.test"], &[]),
    );
    let serial = |n: &str| std::fs::read(env.live(n).join("cert.pem")).unwrap();
    let before = (serial("host1.example.test"), serial("host2.example.test"));
    let out = env.run(&["renew", "--force-renewal", "--jobs", "2", "-n"]);
    ok(&env, &bind, &out);
    assert_ne!(serial("host1.example.test"), before.0, "host1 renewed");
    assert_ne!(serial("host2.example.test"), before.1, "host2 renewed");
    env.verify_lineage(
        "host2.example.test",
        &["host2.example.test", "x.host2.example.test"],
    );
    for n in [
        "_acme-challenge.host1.example.test",
        "_acme-challenge.host2.example.test",
    ] {
        assert!(bind.txt(n).is_empty(), "{n} left behind");
    }
    assert!(!pending_file(&env).exists());
}

#[test]
fn names_in_two_sub_zones_in_one_certificate() {
    let bind = Bind::start(&["host1.example.test", "host2.example.test"]).unwrap();
    let env = Env::new(pebble_via(&bind));
    let ini = rfc2136_ini(&env, &bind);
    let out = certonly_rfc2136(
        &env,
        &ini,
        &[
            "a.host1.example.test",
            "b.host2.example.test",
            "*.host2.example.test",
        ],
        &[],
    );
    ok(&env, &bind, &out);
    env.verify_lineage(
        "a.host1.example.test",
        &[
            "a.host1.example.test",
            "b.host2.example.test",
            "x.host2.example.test",
        ],
    );
    for n in [
        "_acme-challenge.a.host1.example.test",
        "_acme-challenge.b.host2.example.test",
        "_acme-challenge.host2.example.test",
    ] {
        assert!(bind.txt(n).is_empty(), "{n} left behind");
    }
}

#[test]
fn cname_delegation_writes_at_the_target() {
    // The parent zone example.test is not updatable; it holds
    // _acme-challenge.alias.example.test CNAME _acme-challenge.host1.example.test.
    let bind = Bind::start(&["host1.example.test"]).unwrap();
    let env = Env::new(pebble_via(&bind));
    let ini = rfc2136_ini(&env, &bind);
    let out = certonly_rfc2136(&env, &ini, &["alias.example.test"], &["-v"]);
    ok(&env, &bind, &out);
    env.verify_lineage("alias.example.test", &["alias.example.test"]);
    assert!(bind.txt("_acme-challenge.host1.example.test").is_empty());
    assert_eq!(
        bind.dig("_acme-challenge.alias.example.test", "CNAME"),
        vec!["_acme-challenge.host1.example.test."],
        "the delegation CNAME itself must be untouched"
    );
}

#[test]
fn wrong_tsig_key_fails_clearly_and_leaves_nothing() {
    let bind = Bind::start(&["host1.example.test"]).unwrap();
    let env = Env::new(pebble_via(&bind));
    let ini = env.tmp.path().join("wrong.ini");
    // Same length and shape as the real secret, different bytes.
    let wrong = "c2VjcmV0LXRoYXQtaXMtd3Jvbmctc2VjcmV0LXRoYXQtaXM=";
    bind.write_rfc2136_ini_with_secret(&ini, wrong).unwrap();
    let out = certonly_rfc2136(&env, &ini, &["www.host1.example.test"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "a wrong key is a setup error: {err}");
    assert!(err.contains(bind.key_name()), "names the key: {err}");
    assert!(err.contains(&bind.addr().to_string()), "names the server: {err}");
    assert!(!err.contains(wrong), "secret leaked: {err}");
    assert!(bind.txt("_acme-challenge.www.host1.example.test").is_empty());
    assert!(!env.live("www.host1.example.test").exists(), "no lineage");
    assert!(
        !env.config_dir()
            .join("renewal")
            .join("www.host1.example.test.conf")
            .exists()
    );
    assert!(!pending_file(&env).exists());
    assert!(err.contains("BADSIG"), "{err}");
    // Caught by the preflight: no account, no order at the CA.
    assert!(!err.contains("ordering"), "{err}");
    assert!(!env.config_dir().join("accounts").exists());
}

#[test]
fn failed_validation_at_the_ca_still_removes_the_records() {
    // certfleet updates (and checks) bind_a; Pebble looks at bind_b, which never gets the
    // record: the CA's validation fails after everything looked fine locally.
    let bind_a = Bind::start(&["host1.example.test"]).unwrap();
    let bind_b = Bind::start(&["host1.example.test"]).unwrap();
    let env = Env::new(pebble_via(&bind_b));
    let ini = rfc2136_ini(&env, &bind_a);
    let out = certonly_rfc2136(&env, &ini, &["host1.example.test", "*.host1.example.test"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "validation failure exit code: {err}");
    assert!(err.contains("could not validate"), "{err}");
    assert!(
        bind_a.txt("_acme-challenge.host1.example.test").is_empty(),
        "left behind in bind_a"
    );
    assert!(!env.live("host1.example.test").exists());
    assert!(!pending_file(&env).exists());
}

/// Hook scripts: publish/remove with nsupdate and log certbot's variables to $HOOK_LOG.
fn write_hooks(dir: &Path, bind: &Bind, auth_value: &str) -> (String, String) {
    let nsupdate = format!(
        "nsupdate -k {} <<EOF\nserver 127.0.0.1 {}\nzone host1.example.test\nupdate %s _acme-challenge.$CERTBOT_DOMAIN. 60 TXT \"%s\"\nsend\nEOF\n",
        bind.key_file().display(),
        bind.port()
    );
    let auth = dir.join("auth.sh");
    std::fs::write(
        &auth,
        format!(
            "#!/bin/sh\nset -e\n{{ env | grep ^CERTBOT_ | sort; echo TOKEN_SET=${{CERTBOT_TOKEN+yes}}; echo --; }} >> \"$HOOK_LOG/auth\"\n{}echo \"published $CERTBOT_DOMAIN\"\n",
            nsupdate.replacen("%s", "add", 1).replacen("%s", auth_value, 1)
        ),
    )
    .unwrap();
    let cleanup = dir.join("cleanup.sh");
    std::fs::write(
        &cleanup,
        format!(
            "#!/bin/sh\nset -e\n{{ env | grep ^CERTBOT_ | sort; echo --; }} >> \"$HOOK_LOG/cleanup\"\n{}",
            nsupdate.replacen("%s", "delete", 1).replacen("%s", auth_value, 1)
        ),
    )
    .unwrap();
    for f in [&auth, &cleanup] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (auth.display().to_string(), cleanup.display().to_string())
}

#[test]
fn exec_hooks_get_certbots_variables_and_certbot_renews_the_lineage() {
    let bind = Bind::start(&["host1.example.test"]).unwrap();
    let env = Env::new(pebble_via(&bind));
    let (auth, cleanup) = write_hooks(env.tmp.path(), &bind, "$CERTBOT_VALIDATION");
    let log = env.tmp.path().join("hooklog");
    std::fs::create_dir(&log).unwrap();
    let resolver = bind.addr().to_string();
    let out = env
        .cmd(&[
            "certonly",
            "--manual",
            "--preferred-challenges",
            "dns",
            "--manual-auth-hook",
            &auth,
            "--manual-cleanup-hook",
            &cleanup,
            "--dns-resolver",
            &resolver,
            "-d",
            "host1.example.test",
            "-d",
            "*.host1.example.test",
            "--agree-tos",
            "-m",
            "admin@example.test",
            "-n",
        ])
        .env("HOOK_LOG", &log)
        .env("CERTBOT_TOKEN", "must-not-leak-into-dns-hooks")
        .output()
        .unwrap();
    ok(&env, &bind, &out);
    env.verify_lineage(
        "host1.example.test",
        &["host1.example.test", "x.host1.example.test"],
    );
    assert!(bind.txt("_acme-challenge.host1.example.test").is_empty());

    let auth_log = std::fs::read_to_string(log.join("auth")).unwrap();
    let runs: Vec<&str> = auth_log.split("--\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(runs.len(), 2, "{auth_log}");
    for (i, run) in runs.iter().enumerate() {
        assert!(run.contains("CERTBOT_DOMAIN=host1.example.test\n"), "{run}");
        assert!(
            run.contains("CERTBOT_ALL_DOMAINS=host1.example.test,host1.example.test\n"),
            "{run}"
        );
        assert!(
            run.contains(&format!("CERTBOT_REMAINING_CHALLENGES={}\n", 1 - i)),
            "{run}"
        );
        let v = run
            .lines()
            .find_map(|l| l.strip_prefix("CERTBOT_VALIDATION="))
            .expect("CERTBOT_VALIDATION");
        assert_eq!(v.len(), 43, "base64url SHA-256: {v}");
        assert!(
            run.contains("TOKEN_SET=\n"),
            "CERTBOT_TOKEN is unset for dns-01: {run}"
        );
    }
    let cleanup_log = std::fs::read_to_string(log.join("cleanup")).unwrap();
    assert_eq!(cleanup_log.matches("--\n").count(), 2, "{cleanup_log}");
    assert!(
        cleanup_log.contains("CERTBOT_AUTH_OUTPUT=published host1.example.test\n"),
        "{cleanup_log}"
    );

    let (text, conf) = renewal_conf(&env, "host1.example.test");
    assert_eq!(conf.authenticator(), Some("manual"), "{text}");
    assert_eq!(conf.manual_auth_hook(), Some(auth.as_str()));
    assert_eq!(conf.manual_cleanup_hook(), Some(cleanup.as_str()));
    assert_eq!(conf.pref_challs(), vec!["dns-01"]);

    // Real certbot renews what certfleet wrote, with the same hooks, through the same BIND.
    let certbot = Certbot::with_dirs(
        env.config_dir(),
        env.tmp.path().join("work"),
        env.tmp.path().join("logs"),
    )
    .ca_bundle(env.pebble.ca_bundle_path())
    .env("HOOK_LOG", log.display().to_string());
    let before = std::fs::read(env.live("host1.example.test").join("cert.pem")).unwrap();
    certbot
        .run_ok(&["renew", "--cert-name", "host1.example.test", "--force-renewal"])
        .unwrap();
    let after = std::fs::read(env.live("host1.example.test").join("cert.pem")).unwrap();
    assert_ne!(before, after, "certbot renewed the certificate");
    env.verify_lineage(
        "host1.example.test",
        &["host1.example.test", "x.host1.example.test"],
    );
    assert!(bind.txt("_acme-challenge.host1.example.test").is_empty());
}

#[test]
fn propagation_timeout_names_the_server_and_runs_the_cleanup_hook() {
    let bind = Bind::start(&["host1.example.test"]).unwrap();
    let env = Env::new(pebble_via(&bind));
    // The hook publishes a wrong value: the check must never see the expected one.
    let (auth, cleanup) = write_hooks(env.tmp.path(), &bind, "not-the-validation");
    let log = env.tmp.path().join("hooklog");
    std::fs::create_dir(&log).unwrap();
    let resolver = bind.addr().to_string();
    let started = std::time::Instant::now();
    let out = env
        .cmd(&[
            "certonly",
            "--manual",
            "--preferred-challenges",
            "dns-01",
            "--manual-auth-hook",
            &auth,
            "--manual-cleanup-hook",
            &cleanup,
            "--dns-resolver",
            &resolver,
            "--dns-propagation-timeout",
            "2",
            "-d",
            "www.host1.example.test",
            "--agree-tos",
            "-m",
            "admin@example.test",
            "-n",
        ])
        .env("HOOK_LOG", &log)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(started.elapsed().as_secs() < 15, "bounded by the timeout");
    assert!(err.contains("not visible after 2 s"), "{err}");
    assert!(err.contains(&bind.addr().to_string()), "names the server: {err}");
    assert!(err.contains("not-the-validation"), "says what it answers: {err}");
    assert!(
        std::fs::read_to_string(log.join("cleanup"))
            .unwrap()
            .contains("--\n")
    );
    assert!(bind.txt("_acme-challenge.www.host1.example.test").is_empty());
    assert!(!env.live("www.host1.example.test").exists());
}

#[test]
fn refusals_before_any_ca_request() {
    let env = Env::new(Pebble::start().unwrap());
    let ini = env.tmp.path().join("rfc2136.ini");
    std::fs::write(
        &ini,
        "dns_rfc2136_server = 127.0.0.1\ndns_rfc2136_name = k\ndns_rfc2136_secret = c2VjcmV0\n\
         dns_rfc2136_algorithm = HMAC-SHA256\n",
    )
    .unwrap();
    std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o644)).unwrap();
    let base = [
        "--agree-tos",
        "-m",
        "admin@example.test",
        "-n",
        "-d",
        "a.example.test",
    ];
    let run = |args: &[&str]| {
        let mut all = vec!["certonly"];
        all.extend_from_slice(args);
        all.extend_from_slice(&base);
        let out = env.run(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        stderr(&out)
    };

    let err = run(&[
        "--dns-rfc2136",
        "--dns-rfc2136-credentials",
        ini.to_str().unwrap(),
    ]);
    assert!(
        err.contains(&format!("chmod 600 {}", ini.display())),
        "the exact chmod to run: {err}"
    );
    let err = run(&["--dns-rfc2136"]);
    assert!(err.contains("--dns-rfc2136-credentials FILE"), "{err}");
    let err = run(&["--manual", "--preferred-challenges", "dns"]);
    assert!(err.contains("--manual-auth-hook"), "{err}");
    // No -n and no terminal (stdin is not a TTY here): refused all the same.
    let out = env.run(&[
        "certonly",
        "--manual",
        "--preferred-challenges",
        "dns",
        "--agree-tos",
        "-m",
        "admin@example.test",
        "-d",
        "a.example.test",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("needs a terminal"), "{}", stderr(&out));
    // A wildcard with http-01: the message names the dns-01 flags.
    let webroot = env.tmp.path().display().to_string();
    let mut args = vec!["certonly", "--webroot", "-w", &webroot, "-d", "*.example.test"];
    args.extend_from_slice(&base[..4]);
    let out = env.run(&args);
    assert!(!out.status.success());
    for flag in ["--dns-rfc2136", "--dns-cloudflare", "--manual"] {
        assert!(stderr(&out).contains(flag), "{}", stderr(&out));
    }
    assert!(
        !env.config_dir().join("accounts").exists(),
        "nothing was sent to the CA"
    );
}

#[test]
fn ctrl_c_while_waiting_removes_the_records() {
    let bind = Bind::start(&["host1.example.test"]).unwrap();
    let env = Env::new(pebble_via(&bind));
    let ini = rfc2136_ini(&env, &bind);
    let name = "_acme-challenge.www.host1.example.test";
    // A long certbot-style minimum wait keeps the records up long enough to interrupt.
    let child = env
        .cmd(&[
            "certonly",
            "--dns-rfc2136",
            "--dns-rfc2136-credentials",
            ini.to_str().unwrap(),
            "--dns-rfc2136-propagation-seconds",
            "60",
            "-d",
            "www.host1.example.test",
            "--agree-tos",
            "-m",
            "admin@example.test",
            "-n",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while bind.txt(name).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the record never appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(pending_file(&env).exists());
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed().as_secs() < 10, "exits promptly");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("interrupted (Ctrl-C): challenge responses removed"),
        "{err}"
    );
    assert!(bind.txt(name).is_empty(), "record left behind after Ctrl-C");
    assert!(!pending_file(&env).exists());
    assert!(!env.live("www.host1.example.test").exists());
}
