//! `certfleet certonly` against a real Pebble: every issued chain is verified with a real
//! X.509 path validator against the roots Pebble generated at startup.

mod common;

use std::os::unix::fs::symlink;

use certfleet_testkit::{Nginx, Pebble};
use common::*;

#[test]
fn standalone_ecdsa_with_sans() {
    let env = Env::new(Pebble::start().unwrap());
    let out = env.certonly_standalone(&["a.example.test", "B.Example.Test."], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Successfully received certificate"));
    env.verify_lineage("a.example.test", &["a.example.test", "b.example.test"]);
    let live = env.live("a.example.test");
    assert_eq!(mode(&live.join("privkey.pem")), 0o600);
    assert_eq!(mode(&env.config_dir().join("archive")), 0o700);
    assert!(
        std::fs::symlink_metadata(live.join("cert.pem"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let key = std::fs::read_to_string(live.join("privkey.pem")).unwrap();
    let key = certfleet_core::PrivateKey::from_pem(&key).unwrap();
    assert_eq!(key.spec(), certfleet_core::KeySpec::EcdsaP256);
    let cert =
        certfleet_core::CertInfo::from_pem(&std::fs::read_to_string(live.join("cert.pem")).unwrap()).unwrap();
    assert!(cert.matches_key(&key));

    let listed = env.run_ok(&["certificates", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(json[0]["name"], "a.example.test");
    assert_eq!(json[0]["status"], "VALID");
    assert_eq!(json[0]["key_type"], "ECDSA P-256");

    let table = stdout(&env.run_ok(&["certificates"]));
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("EXPIRES") && header.contains("STATUS"),
        "{table}"
    );
    let row = lines.next().unwrap();
    for cell in [
        "a.example.test b.example.test",
        "ECDSA P-256",
        "VALID",
        "fullchain.pem",
        "privkey.pem",
    ] {
        assert!(row.contains(cell), "{cell} missing: {table}");
    }
    // A private key that does not belong to the certificate makes the lineage INVALID.
    let archive_key = env.config_dir().join("archive/a.example.test/privkey1.pem");
    let original = std::fs::read(&archive_key).unwrap();
    let other = certfleet_core::PrivateKey::generate(certfleet_core::KeySpec::EcdsaP256).unwrap();
    std::fs::write(&archive_key, other.to_pem()).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&env.run_ok(&["certificates", "--json"]).stdout).unwrap();
    assert_eq!(json[0]["status"], "INVALID", "{json}");
    assert!(
        json[0]["problem"].as_str().unwrap().contains("does not match"),
        "{json}"
    );
    std::fs::write(&archive_key, original).unwrap();
    let certbot_style = stdout(&env.run_ok(&["certificates", "--certbot-format"]));
    assert!(
        certbot_style.contains("Certificate Name: a.example.test"),
        "{certbot_style}"
    );
    assert!(
        certbot_style.contains("Domains: a.example.test b.example.test"),
        "{certbot_style}"
    );
}

#[test]
fn webroot_served_by_nginx_rsa_and_pairing() {
    let tmp = tempfile::tempdir().unwrap();
    let root_a = tmp.path().join("site-a");
    std::fs::create_dir(&root_a).unwrap();
    // Two -w paths; nginx serves one, the other is a symlink to it, so both validate and the
    // stored webroot_map shows the per-domain pairing.
    let root_b = tmp.path().join("site-b");
    symlink(&root_a, &root_b).unwrap();
    let nginx = Nginx::builder().webroot(&root_a).start().unwrap();
    let env = Env::new(Pebble::builder().http_port(nginx.http_port()).start().unwrap());
    let (a, b) = (root_a.to_str().unwrap(), root_b.to_str().unwrap());
    let out = env.run(&[
        "certonly",
        "--webroot",
        "-w",
        a,
        "-d",
        "www.example.test",
        "-w",
        b,
        "-d",
        "b.example.test,c.example.test",
        "--key-type",
        "rsa",
        "--rsa-key-size",
        "3072",
        "--cert-name",
        "site",
        "--agree-tos",
        "--register-unsafely-without-email",
        "-n",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        tail(&env.pebble.log())
    );
    env.verify_lineage("site", &["www.example.test", "b.example.test", "c.example.test"]);
    let key = std::fs::read_to_string(env.live("site").join("privkey.pem")).unwrap();
    assert_eq!(
        certfleet_core::PrivateKey::from_pem(&key).unwrap().spec(),
        certfleet_core::KeySpec::Rsa(3072)
    );
    let conf = std::fs::read_to_string(env.config_dir().join("renewal/site.conf")).unwrap();
    assert!(conf.contains("authenticator = webroot"), "{conf}");
    assert!(conf.contains(&format!("www.example.test = {a}")), "{conf}");
    assert!(conf.contains(&format!("c.example.test = {b}")), "{conf}");
    // Challenge files are cleaned up.
    let left: Vec<_> = std::fs::read_dir(&root_a).unwrap().collect();
    assert!(left.is_empty(), "webroot not cleaned: {left:?}");
}

#[test]
fn badnonce_rejections_are_retried() {
    let env = Env::new(
        Pebble::builder()
            .env("PEBBLE_WFE_NONCEREJECT", "50")
            .start()
            .unwrap(),
    );
    let out = env.certonly_standalone(&["nonce.example.test"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.verify_lineage("nonce.example.test", &["nonce.example.test"]);
}

#[test]
fn preferred_chain_picks_alternate_root() {
    let env = Env::new(
        Pebble::builder()
            .env("PEBBLE_ALTERNATE_ROOTS", "2")
            .start()
            .unwrap(),
    );
    let roots = env.pebble.roots().unwrap();
    assert_eq!(roots.len(), 3);
    let cn = certfleet_core::CertInfo::from_der(&roots[2])
        .unwrap()
        .subject_cn
        .unwrap();
    let out = env.certonly_standalone(&["alt.example.test"], &["--preferred-chain", &cn]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.verify_lineage("alt.example.test", &["alt.example.test"]), 2);
    let conf = std::fs::read_to_string(env.config_dir().join("renewal/alt.example.test.conf")).unwrap();
    assert!(conf.contains(&format!("preferred_chain = {cn}")), "{conf}");
}

#[test]
fn default_chain_without_preference() {
    let env = Env::new(
        Pebble::builder()
            .env("PEBBLE_ALTERNATE_ROOTS", "2")
            .start()
            .unwrap(),
    );
    let out = env.certonly_standalone(&["def.example.test"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.verify_lineage("def.example.test", &["def.example.test"]), 0);
}

#[test]
fn eab_required_and_given() {
    let env = Env::new(Pebble::builder().eab(true).start().unwrap());
    let out = env.certonly_standalone(&["eab.example.test"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--eab-kid"), "{}", stderr(&out));
    let (kid, key) = env.pebble.eab_keys()[0].clone();
    let out = env.certonly_standalone(
        &["eab.example.test"],
        &["--eab-kid", &kid, "--eab-hmac-key", &key],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    env.verify_lineage("eab.example.test", &["eab.example.test"]);
}

#[test]
fn csr_gets_certificate_without_key() {
    let env = Env::new(Pebble::start().unwrap());
    let dir = env.tmp.path();
    let key = certfleet_core::PrivateKey::generate(certfleet_core::KeySpec::EcdsaP384).unwrap();
    let ids = [
        certfleet_core::Identifier::dns("csr.example.test").unwrap(),
        certfleet_core::Identifier::dns("www.csr.example.test").unwrap(),
    ];
    let csr = key.csr_der(&ids).unwrap();
    std::fs::write(dir.join("req.der"), &csr).unwrap();
    let (cert, chain, full) = (dir.join("c.pem"), dir.join("ch.pem"), dir.join("fc.pem"));
    let port = env.pebble.http_port().to_string();
    env.run_ok(&[
        "certonly",
        "--standalone",
        "--http-01-address",
        "127.0.0.1",
        "--http-01-port",
        &port,
        "--csr",
        dir.join("req.der").to_str().unwrap(),
        "--cert-path",
        cert.to_str().unwrap(),
        "--chain-path",
        chain.to_str().unwrap(),
        "--fullchain-path",
        full.to_str().unwrap(),
        "--agree-tos",
        "--register-unsafely-without-email",
        "-n",
    ]);
    let fc = std::fs::read(&full).unwrap();
    env.pebble
        .verify_chain(
            &fc,
            &["csr.example.test", "www.csr.example.test"],
            std::time::SystemTime::now(),
        )
        .unwrap();
    let info = certfleet_core::CertInfo::from_pem(&std::fs::read_to_string(&cert).unwrap()).unwrap();
    assert!(info.matches_key(&key));
    assert!(
        !env.config_dir().join("live").exists(),
        "--csr must not create a lineage"
    );
}

#[test]
fn dry_run_leaves_tree_untouched() {
    let env = Env::new(Pebble::start().unwrap());
    env.certonly_standalone(&["dry.example.test"], &[]);
    let before = snapshot(&env.config_dir());
    let out = env.certonly_standalone(&["dry.example.test"], &["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("dry run was successful"));
    assert_eq!(before, snapshot(&env.config_dir()));
    // And on an empty tree: no account, no lineage, nothing.
    let env2 = Env::new(Pebble::start().unwrap());
    let out = env2.certonly_standalone(&["dry2.example.test"], &["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        snapshot(&env2.config_dir()).is_empty(),
        "{:?}",
        snapshot(&env2.config_dir())
    );
}

#[test]
fn existing_certificate_not_due_is_kept_unless_forced() {
    let env = Env::new(Pebble::start().unwrap());
    assert!(
        env.certonly_standalone(&["keep.example.test"], &[])
            .status
            .success()
    );
    let out = env.certonly_standalone(&["keep.example.test"], &[]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("not yet due"), "{}", stdout(&out));
    let out = env.certonly_standalone(&["keep.example.test"], &["--force-renewal"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let target = std::fs::read_link(env.live("keep.example.test").join("cert.pem")).unwrap();
    assert!(target.to_str().unwrap().ends_with("cert2.pem"), "{target:?}");
    env.verify_lineage("keep.example.test", &["keep.example.test"]);
}

#[test]
fn bad_input_is_refused_and_nothing_written() {
    let env = Env::new(Pebble::start().unwrap());
    for (domains, needle) in [
        (vec!["exa mple.test"], "space"),
        (vec!["a..b.test"], "empty label"),
        (vec!["*.wild.example.test"], "dns-01"),
    ] {
        let out = env.certonly_standalone(&domains, &[]);
        assert_eq!(out.status.code(), Some(2), "{domains:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{domains:?}: {}", stderr(&out));
    }
    let many: Vec<String> = (0..101).map(|i| format!("n{i}.example.test")).collect();
    let out = env.certonly_standalone(&[&many.join(",")], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("at most 100"), "{}", stderr(&out));
    let out = env.run(&[
        "certonly",
        "--webroot",
        "-w",
        "/nonexistent/dir",
        "-d",
        "x.example.test",
        "-n",
        "--agree-tos",
        "--register-unsafely-without-email",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("/nonexistent/dir"), "{}", stderr(&out));
    assert!(!env.config_dir().join("live").exists());
    assert!(!env.config_dir().join("accounts").exists());
}

#[test]
fn standalone_port_taken_is_a_clear_error() {
    let env = Env::new(Pebble::start().unwrap());
    let _busy = std::net::TcpListener::bind(("127.0.0.1", env.pebble.http_port())).unwrap();
    let out = env.certonly_standalone(&["busy.example.test"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));
}

#[test]
fn unreachable_ca_exit_code() {
    let env = Env::new(Pebble::start().unwrap());
    let port = certfleet_testkit::free_port();
    let out = env
        .cmd(&[
            "certonly",
            "--standalone",
            "--http-01-port",
            "0",
            "-d",
            "x.example.test",
            "-n",
            "--agree-tos",
            "--register-unsafely-without-email",
        ])
        .arg("--server")
        .arg(format!("https://127.0.0.1:{port}/dir"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));
}

#[test]
fn validation_failure_gets_hints() {
    let tmp = tempfile::tempdir().unwrap();
    let nginx = Nginx::builder()
        .webroot(tmp.path())
        .challenge_forbidden(true)
        .start()
        .unwrap();
    let env = Env::new(Pebble::builder().http_port(nginx.http_port()).start().unwrap());
    let out = env.run(&[
        "certonly",
        "--webroot",
        "-w",
        tmp.path().to_str().unwrap(),
        "-d",
        "forbidden.example.test",
        "--agree-tos",
        "--register-unsafely-without-email",
        "-n",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("forbidden.example.test") && err.contains("403"),
        "{err}"
    );
    assert!(err.contains("hint:") && err.contains("reverse proxy"), "{err}");
    assert!(!env.config_dir().join("live").exists());
}
