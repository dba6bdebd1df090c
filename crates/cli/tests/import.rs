//! `certfleet import` on a tree the real certbot wrote (Pebble as CA, a real nginx): a
//! `--nginx` lineage and a `--webroot` one with a deploy hook carry over, one whose conf names
//! a certbot plugin certfleet does not have (`dns-ovh`) does not. Each verdict is then checked
//! against what `certfleet renew` really does, and the suggested fix is applied.

mod common;

use std::path::Path;

use certfleet_testkit::webserver::Sites;
use certfleet_testkit::{Certbot, Pebble, free_port};
use common::{Env, snapshot, stderr, stdout};

fn certbot(env: &Env) -> Certbot {
    Certbot::with_dirs(
        env.config_dir(),
        env.tmp.path().join("work"),
        env.tmp.path().join("logs"),
    )
    .server(env.pebble.directory_url())
    .ca_bundle(env.pebble.ca_bundle_path())
}

fn leaf(env: &Env, name: &str) -> Vec<u8> {
    std::fs::read(env.live(name).join("cert.pem")).unwrap()
}

#[test]
fn import_reports_a_certbot_host_and_the_report_holds() {
    let http = free_port();
    let env = Env::new(
        Pebble::builder()
            .http_port(http)
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .start()
            .unwrap(),
    );
    let docroot = env.tmp.path().join("docroot");
    std::fs::create_dir_all(&docroot).unwrap();
    let sites = [
        (
            "n.conf",
            format!(
                "server {{\n    listen 127.0.0.1:{http};\n    server_name n.example.test;\n    root /nonexistent;\n}}\n"
            ),
        ),
        (
            "w.conf",
            format!(
                "server {{\n    listen 127.0.0.1:{http};\n    server_name w.example.test o.example.test;\n    root {};\n}}\n",
                docroot.display()
            ),
        ),
    ];
    let nginx = Sites::nginx(&sites, &[http]).unwrap();
    let root = nginx.server_root().display().to_string();
    let hp = http.to_string();
    let cb = certbot(&env);
    let reg = ["--agree-tos", "--register-unsafely-without-email"];
    cb.run_ok(
        &[
            &[
                "certonly",
                "--nginx",
                "--nginx-server-root",
                &root,
                "--nginx-ctl",
                "nginx",
            ][..],
            &["--http-01-port", &hp, "-d", "n.example.test"],
            &reg,
        ]
        .concat(),
    )
    .unwrap();
    let marks = env.tmp.path().join("deployed");
    let hook = format!("/bin/sh -c 'echo \"$RENEWED_LINEAGE\" >> {}'", marks.display());
    let w = docroot.display().to_string();
    for name in ["w.example.test", "o.example.test"] {
        cb.run_ok(
            &[
                &[
                    "certonly",
                    "--webroot",
                    "-w",
                    &w,
                    "-d",
                    name,
                    "--deploy-hook",
                    &hook,
                ][..],
                &reg,
            ]
            .concat(),
        )
        .unwrap();
    }
    std::fs::remove_file(&marks).unwrap();
    // o.example.test now names a certbot plugin certfleet does not have, as a host using
    // certbot-dns-ovh has it.
    let o_conf = env.config_dir().join("renewal/o.example.test.conf");
    let text = std::fs::read_to_string(&o_conf).unwrap();
    let text = text
        .lines()
        .filter(|l| !l.starts_with("webroot_path") && !l.starts_with("[[webroot_map]]") && !l.starts_with("o.example.test ="))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            "authenticator = webroot",
            "authenticator = dns-ovh\ndns_ovh_credentials = /etc/letsencrypt/ovh.ini\ndns_ovh_propagation_seconds = 60",
        );
    assert!(text.contains("authenticator = dns-ovh"), "{text}");
    std::fs::write(&o_conf, text + "\n").unwrap();

    let before = snapshot(&env.config_dir());
    let started = std::time::Instant::now();
    let out = env.run(&["import"]);
    let took = started.elapsed();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(13), "{text}\n{}", stderr(&out));
    eprintln!("import of 3 lineages: {took:?}\n{text}");
    // Read-only.
    assert_eq!(snapshot(&env.config_dir()), before);
    for want in [
        "n.example.test (n.example.test): carries over",
        "w.example.test (w.example.test): carries over",
        "o.example.test (o.example.test): does NOT carry over",
        "\"dns-ovh\" is a certbot plugin certfleet does not have",
        "certfleet certonly --cert-name o.example.test -d o.example.test --force-renewal --webroot -w DOCROOT",
        "nginx: after a renewal certfleet tests the configuration and reloads (nginx ",
        "deploy hook (renew_hook)",
        "Not ready: o.example.test would not renew under certfleet",
        "systemctl enable --now certfleet-renew.timer",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    let cfg = env.config_dir().display().to_string();
    assert!(
        text.contains(&format!("certfleet install-timer --config-dir {cfg}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("certfleet renew --dry-run --config-dir {cfg}")),
        "{text}"
    );
    if [
        "/lib/systemd/system/certbot.timer",
        "/usr/lib/systemd/system/certbot.timer",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
    {
        assert!(
            text.contains("  systemctl disable --now certbot.timer\n"),
            "{text}"
        );
    }
    if Path::new("/etc/cron.d/certbot").exists() {
        assert!(
            text.contains("  mv /etc/cron.d/certbot /etc/cron.d/certbot.disabled\n"),
            "{text}"
        );
    }

    // The same in JSON.
    let out = env.run(&["import", "--json"]);
    assert_eq!(out.status.code(), Some(13));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["all_carry_over"], false);
    let lineages = j["lineages"].as_array().unwrap();
    let by_name = |n: &str| lineages.iter().find(|l| l["name"] == n).unwrap().clone();
    assert_eq!(by_name("n.example.test")["carries_over"], true);
    assert_eq!(by_name("w.example.test")["carries_over"], true);
    let o = by_name("o.example.test");
    assert_eq!(o["carries_over"], false);
    let auth = o["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["topic"] == "authenticator")
        .unwrap();
    assert_eq!(auth["status"], "blocked");
    assert!(
        auth["action"]
            .as_str()
            .unwrap()
            .contains("keep certbot renewing it")
    );
    let n = by_name("n.example.test");
    let n_topics: Vec<&str> = n["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["topic"].as_str().unwrap())
        .collect();
    for t in ["files", "authenticator", "installer", "account", "key", "renewal"] {
        assert!(n_topics.contains(&t), "{t} missing: {n_topics:?}");
    }

    // What it said holds: the two renew under certfleet (through nginx, with the hook)...
    let (n0, w0) = (leaf(&env, "n.example.test"), leaf(&env, "w.example.test"));
    env.run_ok(&[
        "renew",
        "--force-renewal",
        "--cert-name",
        "n.example.test",
        "--cert-name",
        "w.example.test",
    ]);
    assert_ne!(leaf(&env, "n.example.test"), n0);
    assert_ne!(leaf(&env, "w.example.test"), w0);
    let deployed = std::fs::read_to_string(&marks).unwrap();
    assert_eq!(deployed.trim(), env.live("w.example.test").display().to_string());
    // ...and the third does not.
    let out = env.run(&["renew", "--force-renewal", "--cert-name", "o.example.test"]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(stderr(&out).contains("dns-ovh"), "{}", stderr(&out));

    // The suggested fix, then import is satisfied, and certbot still reads the tree.
    env.run_ok(&[
        "certonly",
        "--cert-name",
        "o.example.test",
        "-d",
        "o.example.test",
        "--force-renewal",
        "--webroot",
        "-w",
        &w,
        "-n",
    ]);
    let out = env.run(&["import"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("Every lineage carries over. To switch this host:"));
    let out = cb.run_ok(&["certificates"]).unwrap();
    for n in ["n.example.test", "w.example.test", "o.example.test"] {
        assert!(
            out.stdout.contains(&format!("Certificate Name: {n}")),
            "{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("INVALID"), "{}", out.stdout);
}

/// A conf certbot cannot parse either, an unknown lineage and a missing config dir: clear
/// errors, right exit codes.
#[test]
fn import_bad_input() {
    let env = Env::new(Pebble::builder().start().unwrap());
    let out = env.run(&["import"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not a directory"), "{}", stderr(&out));
    std::fs::create_dir_all(env.config_dir().join("renewal")).unwrap();
    let out = env.run(&["import"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("No lineages under"), "{}", stdout(&out));
    let out = env.run(&["import", "--cert-name", "nope.example.test"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no lineage \"nope.example.test\""),
        "{}",
        stderr(&out)
    );
    std::fs::write(
        env.config_dir().join("renewal/x.example.test.conf"),
        "this is not an ini file\n[",
    )
    .unwrap();
    let out = env.run(&["import", "--json"]);
    assert_eq!(out.status.code(), Some(13), "{}", stdout(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["lineages"][0]["items"][0]["topic"], "files");
    assert_eq!(j["lineages"][0]["items"][0]["status"], "blocked");
}
