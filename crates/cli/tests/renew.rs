//! `certfleet renew` against a real Pebble (and nginx, certbot): what is due, hooks, backoff,
//! dry runs, certbot's lineages, service reloads.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use certfleet_testkit::{Certbot, Nginx, Pebble};
use common::*;

fn serial(path: &Path) -> String {
    certfleet_core::CertInfo::from_pem(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .serial_hex()
}

fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

/// Set a top-level key of a lineage's renewal conf (e.g. `renew_before_expiry`).
fn set_conf_top(env: &Env, name: &str, line: &str) {
    let p = env.config_dir().join(format!("renewal/{name}.conf"));
    let text = std::fs::read_to_string(&p).unwrap();
    let key = line.split('=').next().unwrap().trim();
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with(&format!("{key} ")) && !l.starts_with("# renew_before"))
        .map(str::to_string)
        .collect();
    out.insert(0, line.to_string());
    std::fs::write(&p, out.join("\n") + "\n").unwrap();
}

fn state_json(env: &Env, name: &str) -> serde_json::Value {
    let p = env.tmp.path().join(format!("work/renewal-state/{name}.json"));
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn webroot_certonly(env: &Env, nginx: &Nginx, name: &str, extra: &[&str]) {
    let root = nginx.webroot().to_str().unwrap().to_string();
    let mut args = vec![
        "certonly",
        "--webroot",
        "-w",
        &root,
        "-d",
        name,
        "--agree-tos",
        "--register-unsafely-without-email",
        "-n",
    ];
    args.extend_from_slice(extra);
    env.run_ok(&args);
}

#[test]
fn not_due_then_forced_then_certificates_lists_it() {
    let env = Env::new(Pebble::start().unwrap());
    assert!(
        env.certonly_standalone(&["r1.example.test"], &[])
            .status
            .success()
    );
    let live = env.live("r1.example.test");
    let before = serial(&live.join("cert.pem"));

    let out = env.run_ok(&["renew"]);
    let text = stdout(&out);
    assert!(
        text.contains("r1.example.test") && text.contains("not due"),
        "{text}"
    );
    assert!(text.contains("0 renewed, 1 not due"), "{text}");
    assert_eq!(serial(&live.join("cert.pem")), before);
    // The CA's directory (no ARI) is remembered, so the next run with nothing due needs no network.
    assert!(
        env.tmp
            .path()
            .join("work/renewal-state/ca-directories.cache")
            .exists()
    );

    let out = env.run_ok(&["renew", "--force-renewal", "--no-random-sleep-on-renew"]);
    let text = stdout(&out);
    assert!(text.contains("renewed") && text.contains("version 2"), "{text}");
    let after = serial(&live.join("cert.pem"));
    assert_ne!(before, after);
    assert!(
        std::fs::read_link(live.join("cert.pem"))
            .unwrap()
            .ends_with("cert2.pem")
    );
    env.verify_lineage("r1.example.test", &["r1.example.test"]);
    let state = state_json(&env, "r1.example.test");
    assert_eq!(state["consecutive_failures"], 0, "{state}");
    assert!(state["last_success"].is_string(), "{state}");

    // Unknown --cert-name is a usage error.
    let bad = env.run(&["renew", "--cert-name", "nope.example.test"]);
    assert_eq!(code(&bad), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("nope.example.test"));
}

/// Pebble issues 30-second certificates: not due at first, due at half the lifetime (short
/// lifetimes renew at one half, not one third), renewed for real once that time passes.
#[test]
fn short_lived_certificate_renews_at_half_lifetime() {
    let env = Env::new(Pebble::builder().validity_seconds(30).start().unwrap());
    assert!(
        env.certonly_standalone(&["short.example.test"], &[])
            .status
            .success()
    );
    let live = env.live("short.example.test");
    let info =
        certfleet_core::CertInfo::from_pem(&std::fs::read_to_string(live.join("cert.pem")).unwrap()).unwrap();
    let out = env.run_ok(&["renew"]);
    assert!(stdout(&out).contains("not due"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("half of the certificate's lifetime"),
        "{}",
        stdout(&out)
    );
    // Due at not_after - lifetime/2 - jitter (at most lifetime/50).
    let due = info.not_after - info.lifetime() / 2_i32;
    let wait = (due - time::OffsetDateTime::now_utc())
        .whole_milliseconds()
        .max(0) as u64;
    std::thread::sleep(Duration::from_millis(wait + 300));
    let out = env.run_ok(&["renew"]);
    assert!(stdout(&out).contains("1 renewed"), "{}", stdout(&out));
    assert_ne!(serial(&live.join("cert.pem")), info.serial_hex());
    env.verify_lineage("short.example.test", &["short.example.test"]);
}

/// certbot's hook rules: directory hooks first (alphabetical), then the command-line ones;
/// pre/post once per run; deploy once per renewed lineage with RENEWED_LINEAGE/DOMAINS.
#[test]
fn hooks_from_directories_and_command_line() {
    let env = Env::new(Pebble::start().unwrap());
    for n in ["h1.example.test", "h2.example.test"] {
        assert!(env.certonly_standalone(&[n], &[]).status.success());
    }
    let log = env.tmp.path().join("hooks.log");
    let hooks = env.config_dir().join("renewal-hooks");
    for (kind, name) in [("pre", "10-pre"), ("deploy", "10-deploy"), ("post", "10-post")] {
        let d = hooks.join(kind);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"dir-{kind} lineage=$RENEWED_LINEAGE domains=$RENEWED_DOMAINS failed=$FAILED_DOMAINS\" >> {}\n",
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let l = log.display().to_string();
    let out = env.run(&[
        "renew",
        "--force-renewal",
        "--jobs",
        "2",
        "--pre-hook",
        &format!("echo cli-pre >> {l}"),
        "--deploy-hook",
        &format!("echo \"cli-deploy $RENEWED_LINEAGE $RENEWED_DOMAINS\" >> {l}"),
        "--post-hook",
        &format!("echo \"cli-post renewed=$RENEWED_DOMAINS failed=$FAILED_DOMAINS\" >> {l}"),
    ]);
    assert_eq!(code(&out), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "dir-pre lineage= domains= failed=", "{text}");
    assert_eq!(lines[1], "cli-pre", "{text}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("dir-pre")).count(),
        1,
        "{text}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("cli-pre")).count(),
        1,
        "{text}"
    );
    for n in ["h1.example.test", "h2.example.test"] {
        let live = env.live(n).display().to_string();
        assert!(
            lines.contains(&format!("dir-deploy lineage={live} domains={n} failed=").as_str()),
            "{text}"
        );
        assert!(
            lines.contains(&format!("cli-deploy {live} {n}").as_str()),
            "{text}"
        );
    }
    let n = lines.len();
    assert!(lines[n - 2].starts_with("dir-post"), "{text}");
    assert!(lines[n - 1].starts_with("cli-post renewed="), "{text}");
    assert!(lines[n - 1].contains("h1.example.test") && lines[n - 1].contains("h2.example.test"));
    assert!(lines[n - 1].ends_with("failed="), "{text}");

    // Nothing due: no hook runs at all.
    std::fs::remove_file(&log).unwrap();
    env.run_ok(&["renew", "--pre-hook", &format!("echo cli-pre >> {l}")]);
    assert!(!log.exists(), "hooks ran although nothing was renewed");

    // A failing deploy hook: the renewal stands, the exit code says so (12), stderr has its output.
    let out = env.run(&[
        "renew",
        "--force-renewal",
        "--cert-name",
        "h1.example.test",
        "--no-directory-hooks",
        "--deploy-hook",
        "echo broken-hook-output >&2; exit 3",
    ]);
    assert_eq!(code(&out), Some(12), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("broken-hook-output"), "{}", stderr(&out));
    assert!(stdout(&out).contains("renewed"), "{}", stdout(&out));
    assert!(
        std::fs::read_link(env.live("h1.example.test").join("cert.pem"))
            .unwrap()
            .ends_with("cert3.pem")
    );
    // Directory hooks were skipped with --no-directory-hooks.
    assert!(!log.exists());
}

/// A failed renewal is remembered: the next run waits (says until when), `certificates` shows
/// it, post hooks get FAILED_DOMAINS; after the web server is back, a renewal succeeds and the
/// failure memory is cleared.
#[test]
fn failure_backoff_and_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let webroot = tmp.path().join("www");
    std::fs::create_dir(&webroot).unwrap();
    let nginx = Nginx::builder().webroot(&webroot).start().unwrap();
    let port = nginx.http_port();
    // No authorization reuse: every renewal must validate again.
    let pebble = Pebble::builder()
        .http_port(port)
        .env("PEBBLE_AUTHZREUSE", "0")
        .start()
        .unwrap();
    let env = Env::new(pebble);
    webroot_certonly(&env, &nginx, "bo.example.test", &[]);
    // Due now: renew up to 3000 days before expiry (Pebble issues 5-year certificates).
    set_conf_top(&env, "bo.example.test", "renew_before_expiry = 3000 days");
    drop(nginx); // validation now fails: connection refused

    let post_log = env.tmp.path().join("post.log");
    let post = format!("echo \"failed=$FAILED_DOMAINS\" >> {}", post_log.display());
    let out = env.run(&["renew", "--post-hook", &post]);
    assert_eq!(code(&out), Some(10), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("FAILED"), "{}", stdout(&out));
    assert_eq!(
        std::fs::read_to_string(&post_log).unwrap().trim(),
        "failed=bo.example.test"
    );
    let st = state_json(&env, "bo.example.test");
    assert_eq!(st["consecutive_failures"], 1, "{st}");
    assert!(
        st["last_error"].as_str().unwrap().contains("bo.example.test"),
        "{st}"
    );

    // Second run within the minute: skipped, with the retry time.
    let out = env.run(&["renew"]);
    assert_eq!(code(&out), Some(10), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("backoff") && stdout(&out).contains("retry after"),
        "{}",
        stdout(&out)
    );
    assert_eq!(state_json(&env, "bo.example.test")["consecutive_failures"], 1);

    let listed = env.run_ok(&["certificates"]);
    assert!(
        stdout(&listed).contains("Renewal failures: 1"),
        "{}",
        stdout(&listed)
    );
    assert!(stdout(&listed).contains("next attempt"), "{}", stdout(&listed));
    let json: serde_json::Value =
        serde_json::from_slice(&env.run_ok(&["certificates", "--json"]).stdout).unwrap();
    assert_eq!(json[0]["renewal"]["consecutive_failures"], 1, "{json}");
    assert!(json[0]["renewal"]["next_attempt"].is_string(), "{json}");

    // The web server is back; --force-renewal skips our own backoff.
    let _nginx = Nginx::builder()
        .webroot(&webroot)
        .http_port(port)
        .start()
        .unwrap();
    let out = env.run(&["renew", "--force-renewal"]);
    assert_eq!(code(&out), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    let st = state_json(&env, "bo.example.test");
    assert_eq!(st["consecutive_failures"], 0, "{st}");
    assert!(st.get("last_error").is_none(), "{st}");
    let listed = env.run_ok(&["certificates"]);
    assert!(
        !stdout(&listed).contains("Renewal failures"),
        "{}",
        stdout(&listed)
    );
}

#[test]
fn dry_run_changes_nothing_on_disk() {
    let env = Env::new(Pebble::start().unwrap());
    assert!(
        env.certonly_standalone(&["dry.example.test"], &[])
            .status
            .success()
    );
    env.run_ok(&["renew"]); // creates the state dir and CA cache
    let before = (
        snapshot(&env.config_dir()),
        snapshot(&env.tmp.path().join("work")),
    );
    let log = env.tmp.path().join("deploy.log");
    let out = env.run_ok(&[
        "renew",
        "--dry-run",
        "--deploy-hook",
        &format!("touch {}", log.display()),
    ]);
    assert!(stdout(&out).contains("dry-run ok"), "{}", stdout(&out));
    assert!(stdout(&out).contains("DRY RUN"), "{}", stdout(&out));
    let after = (
        snapshot(&env.config_dir()),
        snapshot(&env.tmp.path().join("work")),
    );
    assert_eq!(before, after);
    assert!(!log.exists(), "deploy hooks do not run in a dry run");
}

/// A lineage certbot created is renewed by certfleet and still listed by certbot.
#[test]
fn certbot_lineage_renewed_and_still_listed_by_certbot() {
    let pebble = Pebble::start().unwrap();
    let certbot = Certbot::for_pebble(&pebble).unwrap();
    certbot
        .certonly_standalone(&["cb.example.test"], pebble.http_port(), &[])
        .unwrap();
    let live = certbot.live_dir("cb.example.test");
    let before = serial(&live.join("cert.pem"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certfleet"))
        .args(["renew", "--force-renewal", "--config-dir"])
        .arg(certbot.config_dir())
        .arg("--work-dir")
        .arg(certbot.work_dir())
        .arg("--logs-dir")
        .arg(certbot.logs_dir())
        .env("CERTFLEET_CA_BUNDLE", pebble.ca_bundle_path())
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    let after = serial(&live.join("cert.pem"));
    assert_ne!(before, after);
    let listed = certbot.run_ok(&["certificates"]).unwrap();
    assert!(listed.stdout.contains("cb.example.test"), "{}", listed.stdout);
    assert!(listed.stdout.contains("VALID"), "{}", listed.stdout);
    assert!(!listed.stderr.contains("parsefail"), "{}", listed.stderr);
    let fullchain = std::fs::read(live.join("fullchain.pem")).unwrap();
    pebble
        .verify_chain(&fullchain, &["cb.example.test"], std::time::SystemTime::now())
        .unwrap();
    // certbot can renew it again after us.
    certbot.run_ok(&["renew", "--force-renewal"]).unwrap();
    assert_ne!(serial(&live.join("cert.pem")), after);
}

/// `--deploy-reload nginx`: config test, then reload; nginx then serves the new certificate.
/// A broken nginx config is reported (exit 12) and nginx is not reloaded.
#[test]
fn deploy_reload_nginx_serves_new_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let webroot = tmp.path().join("www");
    std::fs::create_dir(&webroot).unwrap();
    let mut nginx = Nginx::builder().webroot(&webroot).start().unwrap();
    let env = Env::new(Pebble::builder().http_port(nginx.http_port()).start().unwrap());
    webroot_certonly(&env, &nginx, "reload.example.test", &[]);
    let live = env.live("reload.example.test");
    nginx
        .enable_https(live.join("fullchain.pem"), live.join("privkey.pem"))
        .unwrap();
    let old = std::fs::read_to_string(live.join("cert.pem")).unwrap();
    let old_der = certfleet_core::CertInfo::from_pem(&old).unwrap().der;
    nginx.wait_for_leaf(None, &old_der).unwrap();

    let conf = nginx.conf_path().display().to_string();
    let errlog = nginx.error_log_path().display().to_string();
    let cmds = serde_json::json!({"nginx": {
        "config_test": ["nginx", "-e", errlog, "-t", "-c", conf],
        "reload": nginx.reload_command(),
    }});
    let t0 = Instant::now();
    let out = env
        .cmd(&["renew", "--force-renewal", "--deploy-reload", "nginx"])
        .env("CERTFLEET_RELOAD_COMMANDS", cmds.to_string())
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    let new = std::fs::read_to_string(live.join("cert.pem")).unwrap();
    let new_der = certfleet_core::CertInfo::from_pem(&new).unwrap().der;
    assert_ne!(old_der, new_der);
    nginx.wait_for_leaf(None, &new_der).unwrap();
    println!("renew + reload + served: {:?}", t0.elapsed());

    // Break the config: the test fails, nginx keeps serving the previous certificate.
    let good = std::fs::read_to_string(nginx.conf_path()).unwrap();
    std::fs::write(nginx.conf_path(), format!("{good}\nthis is not nginx syntax;\n")).unwrap();
    let out = env
        .cmd(&["renew", "--force-renewal", "--deploy-reload", "nginx"])
        .env("CERTFLEET_RELOAD_COMMANDS", cmds.to_string())
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(12), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("NOT reloaded"), "{}", stderr(&out));
    nginx.wait_for_leaf(None, &new_der).unwrap();
    std::fs::write(nginx.conf_path(), good).unwrap();
}

/// Many lineages sharing one webroot renewed at once (`--jobs`): one account and connection,
/// concurrent solvers creating and removing the challenge directory do not trip each other.
#[test]
fn concurrent_jobs_share_one_webroot() {
    let tmp = tempfile::tempdir().unwrap();
    let webroot = tmp.path().join("www");
    std::fs::create_dir(&webroot).unwrap();
    let nginx = Nginx::builder().webroot(&webroot).start().unwrap();
    let pebble = Pebble::builder()
        .http_port(nginx.http_port())
        .env("PEBBLE_AUTHZREUSE", "0")
        .start()
        .unwrap();
    let env = Env::new(pebble);
    let names: Vec<String> = (1..=6).map(|i| format!("j{i}.example.test")).collect();
    for n in &names {
        webroot_certonly(&env, &nginx, n, &[]);
    }
    let t0 = Instant::now();
    let out = env.run(&["renew", "--force-renewal", "--jobs", "6"]);
    assert_eq!(code(&out), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("6 renewed"), "{}", stdout(&out));
    println!("6 renewals with --jobs 6: {:?}", t0.elapsed());
    for n in &names {
        env.verify_lineage(n, &[n.as_str()]);
    }
    let left: Vec<_> = std::fs::read_dir(&webroot).unwrap().collect();
    assert!(left.is_empty(), "webroot not cleaned: {left:?}");
}

/// certbot runs deploy hooks on first issuance too (directory ones included); `--no-hooks`
/// runs none. `autorenew = False` keeps a due lineage from renewing unless forced.
#[test]
fn certonly_runs_deploy_hooks_and_autorenew_off_is_honoured() {
    let env = Env::new(Pebble::start().unwrap());
    let log = env.tmp.path().join("deploy.log");
    let d = env.config_dir().join("renewal-hooks/deploy");
    std::fs::create_dir_all(&d).unwrap();
    let script = d.join("50-log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"dir $RENEWED_LINEAGE $RENEWED_DOMAINS\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hook = format!("echo \"cli $RENEWED_DOMAINS\" >> {}", log.display());
    let out = env.certonly_standalone(&["first.example.test"], &["--deploy-hook", &hook]);
    assert!(out.status.success(), "{}", stderr(&out));
    let live = env.live("first.example.test").display().to_string();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("dir {live} first.example.test\ncli first.example.test\n")
    );
    std::fs::remove_file(&log).unwrap();
    let out = env.certonly_standalone(&["nohooks.example.test"], &["--deploy-hook", &hook, "--no-hooks"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!log.exists(), "--no-hooks ran a hook");

    // Due (renew_before_expiry), but autorenew is off: not renewed unless forced.
    set_conf_top(&env, "nohooks.example.test", "renew_before_expiry = 3000 days");
    let conf = env.config_dir().join("renewal/nohooks.example.test.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(
        &conf,
        text.replace("[renewalparams]\n", "[renewalparams]\nautorenew = False\n"),
    )
    .unwrap();
    let out = env.run_ok(&["renew", "--cert-name", "nohooks.example.test"]);
    assert!(stdout(&out).contains("autorenew = False"), "{}", stdout(&out));
    let out = env.run_ok(&["renew", "--cert-name", "nohooks.example.test", "--force-renewal"]);
    assert!(stdout(&out).contains("1 renewed"), "{}", stdout(&out));
}
