//! `certfleet doctor` against real parts broken on purpose: an nginx with a `deny all` on
//! `.well-known`, a virtual host with another root, a redirect loop, a redirect to a closed
//! port, a server that never answers, an address nothing listens on; TLS served from
//! `cert.pem` only; CAA records in a real BIND; dns-01 updates through BIND with good and bad
//! TSIG keys. Each fault must be named, with its fix.

mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use certfleet_testkit::bind::{Bind, BindOptions};
use certfleet_testkit::{Nginx, Pebble, free_port};
use common::*;
use serde_json::Value;

/// A BIND serving `example.test` with these extra records.
fn bind_with(records: &[&str]) -> Bind {
    Bind::start_with(BindOptions {
        parent_records: records.iter().map(|r| r.to_string()).collect(),
        ..BindOptions::default()
    })
    .unwrap()
}

/// `certfleet doctor ARGS --json` in `dir`'s tree (no systemd units there), resolving through
/// `bind`.
fn doctor(dir: &Path, bind: &Bind, args: &[&str]) -> (Output, Value) {
    let out = doctor_cmd(dir, bind, args).arg("--json").output().unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}):\nstdout: {}\nstderr: {}",
            stdout(&out),
            stderr(&out)
        )
    });
    (out, json)
}

fn doctor_cmd(dir: &Path, bind: &Bind, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_certfleet"));
    c.arg("doctor")
        .args(args)
        .arg("--dns-resolver")
        .arg(bind.addr().to_string())
        .arg("--unit-dir")
        .arg(dir.join("units"))
        .arg("--config-dir")
        .arg(dir.join("etc"))
        .arg("--work-dir")
        .arg(dir.join("work"))
        .arg("--logs-dir")
        .arg(dir.join("logs"))
        .env_remove("REQUESTS_CA_BUNDLE");
    c
}

/// The one check `kind` of `subject` in the report.
fn check<'a>(report: &'a Value, kind: &str, subject: &str) -> &'a Value {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["checks"].as_array().unwrap())
        .find(|c| c["check"] == kind && c["subject"] == subject)
        .unwrap_or_else(|| panic!("no {kind} check of {subject} in {report:#}"))
}

/// Assert status and that detail and fix contain the given texts.
fn expect(report: &Value, kind: &str, subject: &str, status: &str, detail: &[&str], fix: &[&str]) {
    let c = check(report, kind, subject);
    let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    assert_eq!(c["status"], status, "{kind} {subject}: {c:#}");
    for d in detail {
        assert!(
            text("detail").contains(d),
            "{kind} {subject}: detail lacks {d:?}: {c:#}"
        );
    }
    for f in fix {
        assert!(
            text("fix").contains(f),
            "{kind} {subject}: fix lacks {f:?}: {c:#}"
        );
    }
}

/// The scheduler check of this host.
fn expect_host(report: &Value, status: &str, detail: &str, fix: &str) {
    let host = &report["host"][0];
    assert_eq!(host["check"], "scheduler", "{host:#}");
    assert_eq!(host["status"], status, "{host:#}");
    assert!(host["detail"].as_str().unwrap().contains(detail), "{host:#}");
    assert!(host["fix"].as_str().unwrap_or_default().contains(fix), "{host:#}");
}

fn exit_code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A directory others may enter (nginx workers may run as another user).
fn open_dir(p: &Path) -> PathBuf {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.to_path_buf()
}

#[test]
fn http01_faults_of_a_broken_nginx_are_named_with_their_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let base = open_dir(tmp.path());
    let good = open_dir(&base.join("good"));
    let denied = open_dir(&base.join("denied"));
    let other = open_dir(&base.join("other"));
    let lineage_root = open_dir(&base.join("lineage"));
    let port = free_port();
    let closed_tls_port = free_port();
    let vhosts = format!(
        "server {{ listen 127.0.0.1:{port}; server_name good.example.test; root {good}; }}\n\
         server {{ listen 127.0.0.1:{port}; server_name denied.example.test; root {denied};\n\
           location ^~ /.well-known/ {{ deny all; }} }}\n\
         server {{ listen 127.0.0.1:{port}; server_name othervhost.example.test; root {other}; }}\n\
         server {{ listen 127.0.0.1:{port}; server_name loop.example.test;\n\
           return 301 http://loop.example.test$request_uri; }}\n\
         server {{ listen 127.0.0.1:{port}; server_name secure.example.test;\n\
           return 301 https://secure.example.test$request_uri; }}\n\
         server {{ listen 127.0.0.1:{port}; server_name odd.example.test;\n\
           return 302 http://odd.example.test:8080$request_uri; }}\n",
        good = good.display(),
        denied = denied.display(),
        other = other.display(),
    );
    let nginx = Nginx::builder()
        .http_port(port)
        .extra_http_conf(vhosts)
        .start()
        .unwrap();
    // A server that accepts connections and never answers, on another loopback address.
    let _hung = TcpListener::bind(("127.0.0.2", port)).unwrap();
    let bind = bind_with(&[
        "good A 127.0.0.1",
        "denied A 127.0.0.1",
        "othervhost A 127.0.0.1",
        "loop A 127.0.0.1",
        "secure A 127.0.0.1",
        "odd A 127.0.0.1",
        "hung A 127.0.0.2",
        "refused A 127.0.0.3",
    ]);
    let (g, d, l) = (
        good.display().to_string(),
        denied.display().to_string(),
        lineage_root.display().to_string(),
    );
    let (port_s, tls_s) = (port.to_string(), closed_tls_port.to_string());
    let nginx_root = nginx.dir().display().to_string();
    let started = Instant::now();
    #[rustfmt::skip]
    let (out, report) = doctor(&base, &bind, &[
        "--webroot",
        "-w", &g, "-d", "good.example.test", "-d", "loop.example.test", "-d", "secure.example.test",
        "-d", "odd.example.test", "-d", "hung.example.test", "-d", "refused.example.test",
        "-w", &d, "-d", "denied.example.test",
        "-w", &l, "-d", "othervhost.example.test",
        "--http-01-port", &port_s, "--port", &tls_s, "--timeout", "2",
        // nginx's configuration, read to say which server block and root answered.
        "--nginx-server-root", &nginx_root,
    ]);
    let took = started.elapsed();
    assert_eq!(exit_code(&out), 13, "{}", stderr(&out));
    // The hung server costs one timeout, not one per check.
    assert!(took < Duration::from_secs(6), "doctor took {took:?}");

    expect(
        &report,
        "http-01",
        "good.example.test",
        "OK",
        &["served the test file over 127.0.0.1"],
        &[],
    );
    expect(
        &report,
        "dns",
        "good.example.test",
        "OK",
        &["A/AAAA 127.0.0.1, the same at its authoritative server"],
        &[],
    );
    expect(
        &report,
        "caa",
        "good.example.test",
        "OK",
        &["no CAA records"],
        &[],
    );
    expect(
        &report,
        "http-01",
        "denied.example.test",
        "FAIL",
        &[
            "answered 403 Forbidden",
            "refuses the path",
            "location ^~ /.well-known/ at",
            ": `deny all`",
        ],
        &[
            "`location ^~ /.well-known/` at",
            &format!("denies it: add `location ^~ /.well-known/acme-challenge/ {{ allow all; root {d}; }}`"),
        ],
    );
    let o = other.display().to_string();
    let lineage_file = lineage_root.join(".well-known/acme-challenge");
    expect(
        &report,
        "http-01",
        "othervhost.example.test",
        "FAIL",
        &[
            "answered 404 Not Found",
            &lineage_file.display().to_string(),
            "another virtual host's root",
            "(server_name othervhost.example.test)",
            &format!(": root {o}"),
        ],
        &[
            &format!("nginx serves othervhost.example.test from {o}, not {l}"),
            &format!("give certonly `-w {o}` for it"),
            &format!("location ^~ /.well-known/acme-challenge/ {{ root {l}; }}"),
        ],
    );
    expect(
        &report,
        "http-01",
        "loop.example.test",
        "FAIL",
        &[
            "redirect loop: http://loop.example.test/.well-known/acme-challenge/",
            "`return 301 http://loop.example.test$request_uri`",
        ],
        &["location ^~ /.well-known/acme-challenge/"],
    );
    expect(
        &report,
        "http-01",
        "secure.example.test",
        "FAIL",
        &[
            "redirects to https://secure.example.test/.well-known/acme-challenge/",
            "connection refused",
        ],
        &["make https://secure.example.test/"],
    );
    expect(
        &report,
        "http-01",
        "odd.example.test",
        "FAIL",
        &[
            "which the CA will not follow",
            "only to port 80 (http) and 443 (https), not 8080",
        ],
        &["standard ports"],
    );
    expect(
        &report,
        "http-01",
        "hung.example.test",
        "FAIL",
        &["127.0.0.2", "timed out"],
        &["open TCP port 80"],
    );
    expect(
        &report,
        "http-01",
        "refused.example.test",
        "FAIL",
        &["connection refused", "127.0.0.3"],
        &["start the web server for refused.example.test on port 80"],
    );
    // Nothing left behind in the webroots.
    for root in [&good, &denied, &lineage_root] {
        let dir = root.join(".well-known/acme-challenge");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "test files left in {}: {left:?}", dir.display());
    }

    // The human report: one line per check, the fix under each failure.
    let text = doctor_cmd(
        &base,
        &bind,
        &["--webroot", "-w", &d, "-d", "denied.example.test"],
    )
    .args(["--http-01-port", &port_s, "--timeout", "2"])
    .output()
    .unwrap();
    assert_eq!(exit_code(&text), 13);
    let s = stdout(&text);
    assert!(s.contains("denied.example.test (no lineage yet, webroot)"), "{s}");
    assert!(s.contains("  FAIL  http-01       denied.example.test: "), "{s}");
    assert!(s.contains("\n        fix: find what denies it"), "{s}");
    assert!(s.contains(" OK, "), "{s}");
}

#[test]
fn tls_served_from_cert_pem_only_is_named_then_fixed() {
    let bind = bind_with(&["tls A 127.0.0.1"]);
    let mut nginx = Nginx::start().unwrap();
    let pebble = Pebble::builder()
        .dns_server(bind.addr())
        .http_port(nginx.http_port())
        .start()
        .unwrap();
    let env = Env::new(pebble);
    open_dir(env.tmp.path());
    let webroot = nginx.webroot().display().to_string();
    env.run_ok(&[
        "certonly",
        "--webroot",
        "-w",
        &webroot,
        "-d",
        "tls.example.test",
        "--agree-tos",
        "--register-unsafely-without-email",
        "-n",
    ]);
    let live = env.live("tls.example.test");
    nginx
        .enable_https(live.join("cert.pem"), live.join("privkey.pem"))
        .unwrap();
    let roots = env.tmp.path().join("roots.pem");
    let pem: String = env
        .pebble
        .roots()
        .unwrap()
        .iter()
        .map(|d| certfleet_core::cert::der_to_pem(d))
        .collect();
    std::fs::write(&roots, pem).unwrap();
    let https = nginx.https_port().unwrap().to_string();
    let http = nginx.http_port().to_string();
    let run = || {
        let mut c = env.cmd(&["doctor"]);
        c.args(["--cert-name", "tls.example.test", "--json"])
            .args(["--dns-resolver", &bind.addr().to_string()])
            .args(["--http-01-port", &http, "--port", &https])
            .arg("--tls-roots")
            .arg(&roots)
            .arg("--unit-dir")
            .arg(env.tmp.path().join("units"));
        let out = c.output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&out), stderr(&out)));
        (out, v)
    };

    let (out, report) = run();
    assert_eq!(exit_code(&out), 13, "{report:#}");
    let fullchain = live.join("fullchain.pem").display().to_string();
    expect(
        &report,
        "tls",
        "tls.example.test",
        "FAIL",
        &["sends only the certificate", "cert.pem instead of fullchain.pem"],
        &[&format!("ssl_certificate {fullchain};")],
    );
    // The rest of the lineage is healthy.
    for (kind, subject) in [
        ("lineage", "tls.example.test"),
        ("modes", "tls.example.test"),
        ("expiry", "tls.example.test"),
        ("renewal-conf", "tls.example.test"),
        ("account", "tls.example.test"),
        ("renewal-state", "tls.example.test"),
        ("dns", "tls.example.test"),
        ("caa", "tls.example.test"),
        ("http-01", "tls.example.test"),
    ] {
        expect(&report, kind, subject, "OK", &[], &[]);
    }
    expect_host(
        &report,
        "WARN",
        "nothing renews automatically",
        "certfleet install-timer",
    );

    // Fixed: fullchain.pem. Old workers may serve the old chain for a moment after a reload.
    nginx
        .enable_https(live.join("fullchain.pem"), live.join("privkey.pem"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let (out, report) = run();
    assert_eq!(exit_code(&out), 0, "{report:#}");
    expect(
        &report,
        "tls",
        "tls.example.test",
        "OK",
        &[
            "serves tls.example.test's current certificate",
            "1 intermediate sent, chain trusted",
        ],
        &[],
    );

    // The units installed, but neither the timer nor the daemon runs; then the daemon does.
    let units = env.tmp.path().join("units").display().to_string();
    std::fs::create_dir_all(&units).unwrap();
    env.run_ok(&["install-timer", "--unit-dir", &units]);
    let (_, report) = run();
    expect_host(
        &report,
        "WARN",
        "certfleet-renew.timer installed, but it has never fired",
        "systemctl enable --now certfleet-renew.timer",
    );
    let mut daemon = env.cmd(&["run"]).spawn().unwrap();
    let (_, report) = run();
    let _ = daemon.kill();
    let _ = daemon.wait();
    expect_host(
        &report,
        "OK",
        &format!("the daemon (`certfleet run`, pid {}) is running for", daemon.id()),
        "",
    );

    // A private key readable by everyone.
    let key = env.config_dir().join("archive/tls.example.test/privkey1.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (out, report) = run();
    assert_eq!(exit_code(&out), 13);
    expect(
        &report,
        "modes",
        "tls.example.test",
        "FAIL",
        &["readable by every user"],
        &[&format!("chmod 600 {}", key.display())],
    );
}

#[test]
fn caa_records_in_bind_allow_or_refuse_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let bind = bind_with(&[
        "caa-ok A 127.0.0.1",
        "caa-ok CAA 0 issue \"letsencrypt.org\"",
        "caa-bad CAA 0 issue \"pki.goog\"",
        "sub.caa-bad A 127.0.0.1",
        "wild CAA 0 issue \"letsencrypt.org\"",
        "wild CAA 0 issuewild \";\"",
    ]);
    // Let's Encrypt's identity is known without asking it (no network here).
    let (out, report) = doctor(
        tmp.path(),
        &bind,
        &[
            "--server",
            "https://acme-v02.api.letsencrypt.org/directory",
            "-d",
            "caa-ok.example.test",
            "-d",
            "sub.caa-bad.example.test",
            "-d",
            "*.wild.example.test",
            "--timeout",
            "2",
        ],
    );
    assert_eq!(exit_code(&out), 13, "{report:#}");
    expect(
        &report,
        "caa",
        "caa-ok.example.test",
        "OK",
        &[
            "CAA at caa-ok.example.test: issue \"letsencrypt.org\"",
            "allows letsencrypt.org",
        ],
        &[],
    );
    expect(
        &report,
        "caa",
        "sub.caa-bad.example.test",
        "FAIL",
        &[
            "CAA at caa-bad.example.test: issue \"pki.goog\"",
            "may not issue for it",
        ],
        &["caa-bad.example.test. CAA 0 issue \"letsencrypt.org\""],
    );
    expect(
        &report,
        "caa",
        "*.wild.example.test",
        "FAIL",
        &["issuewild \";\"", "may not issue wildcards for it"],
        &["wild.example.test. CAA 0 issuewild \"letsencrypt.org\""],
    );
    // No authenticator given for names without a lineage: http-01 is not guessed.
    expect(
        &report,
        "http-01",
        "caa-ok.example.test",
        "WARN",
        &["not checked"],
        &["--webroot -w DIR"],
    );
}

#[test]
fn dns01_credentials_update_the_zone_and_delegation_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let bind = Bind::start(&["host1.example.test"]).unwrap();
    let ini = tmp.path().join("rfc2136.ini");
    bind.write_rfc2136_ini(&ini).unwrap();
    let ini_s = ini.display().to_string();
    let args = [
        "--dns-rfc2136",
        "--dns-rfc2136-credentials",
        &ini_s,
        "-d",
        "www.host1.example.test",
        "-d",
        "alias.example.test",
        "--timeout",
        "3",
    ];
    let (out, report) = doctor(tmp.path(), &bind, &args);
    assert_eq!(exit_code(&out), 0, "{report:#}");
    expect(
        &report,
        "dns-01",
        "www.host1.example.test",
        "OK",
        &[
            "_acme-challenge.www.host1.example.test is in zone host1.example.test",
            "added, seen at every authoritative server, and removed",
        ],
        &[],
    );
    expect(
        &report,
        "dns-01",
        "alias.example.test",
        "OK",
        &["delegated by CNAME to _acme-challenge.host1.example.test (zone host1.example.test)"],
        &[],
    );
    expect(
        &report,
        "dns",
        "alias.example.test",
        "OK",
        &["none needed for dns-01"],
        &[],
    );
    assert!(bind.txt("_acme-challenge.www.host1.example.test").is_empty());
    assert!(bind.txt("_acme-challenge.host1.example.test").is_empty());

    // A wrong TSIG secret: the update is refused, and doctor says where to look.
    bind.write_rfc2136_ini_with_secret(&ini, "c2VjcmV0LW5vdC10aGUtcmlnaHQtb25lLCBzb3JyeQ==")
        .unwrap();
    let (out, report) = doctor(tmp.path(), &bind, &args);
    assert_eq!(exit_code(&out), 13, "{report:#}");
    expect(
        &report,
        "dns-01",
        "www.host1.example.test",
        "FAIL",
        &["adding and removing a test TXT record failed"],
        &["check the credentials file"],
    );
    assert!(
        !stdout(&out).contains("c2VjcmV0LW5vdC10aGUtcmlnaHQtb25lLCBzb3JyeQ=="),
        "the secret leaked into the report"
    );
}
