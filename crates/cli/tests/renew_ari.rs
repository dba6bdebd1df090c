//! ARI (RFC 9773) renewal against acme2certifier, which has `renewalInfo` (Pebble has not):
//! a window in the past makes a certificate due, `replaces` names the old certificate, and the
//! CA's Retry-After decides when the window is polled again.

mod common;
use common::tail_lines;

use std::path::Path;
use std::process::Output;

use certfleet_testkit::Acme2Certifier;

fn certfleet(a2c: &Acme2Certifier, dir: &Path, args: &[&str]) -> Output {
    a2c.command(env!("CARGO_BIN_EXE_certfleet"))
        .args(args)
        .arg("--config-dir")
        .arg(dir.join("etc"))
        .arg("--work-dir")
        .arg(dir.join("work"))
        .arg("--logs-dir")
        .arg(dir.join("logs"))
        .args(["--server", &a2c.directory_url()])
        .env("CERTFLEET_CA_BUNDLE", a2c.ca_bundle_path())
        .env_remove("REQUESTS_CA_BUNDLE")
        .output()
        .unwrap()
}

fn ok(a2c: &Acme2Certifier, dir: &Path, args: &[&str]) -> Output {
    let out = certfleet(a2c, dir, args);
    assert!(
        out.status.success(),
        "certfleet {args:?}: {:?}\n{}\n{}\n--- a2c log tail ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tail_lines(&a2c.log(), 40)
    );
    out
}

fn issue(a2c: &Acme2Certifier, dir: &Path, name: &str) {
    ok(
        a2c,
        dir,
        &[
            "certonly",
            "--standalone",
            "--http-01-address",
            "127.0.0.1",
            "-d",
            name,
            "--agree-tos",
            "--register-unsafely-without-email",
            "-n",
        ],
    );
}

fn cert_info(dir: &Path, name: &str) -> certfleet_core::CertInfo {
    let p = dir.join(format!("etc/live/{name}/cert.pem"));
    certfleet_core::CertInfo::from_pem(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn renewal_info_requests(a2c: &Acme2Certifier) -> usize {
    a2c.log().matches("GET /acme/renewal-info").count() + a2c.log().matches("GET /renewal-info").count()
}

/// `renewal_force`: the window is in the past, so `renew` (not forced) renews at once and
/// sends `replaces` with the old certificate's CertID.
#[test]
fn window_in_the_past_renews_with_replaces() {
    let a2c = Acme2Certifier::builder().renewal_force(true).start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    issue(&a2c, dir, "ari.example.test");
    let old = cert_info(dir, "ari.example.test");
    let cert_id = certfleet_acme::cert_id(old.authority_key_id.as_deref().unwrap(), &old.serial);

    let out = ok(&a2c, dir, &["renew", "-v"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 renewed"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ARI renewal window"), "{err}");
    let new = cert_info(dir, "ari.example.test");
    assert_ne!(new.serial, old.serial);
    let fullchain = std::fs::read(dir.join("etc/live/ari.example.test/fullchain.pem")).unwrap();
    a2c.verify_chain(&fullchain, &["ari.example.test"], std::time::SystemTime::now())
        .unwrap();
    assert!(
        err.contains(&format!("new order replaces={cert_id}")),
        "{err}\n--- a2c ---\n{}",
        tail_lines(&a2c.log(), 30)
    );
    // On the wire: the new-order request the CA received carried `replaces` = the old CertID
    // (recorded by the test server in front of acme2certifier, which ignores the field).
    let orders: Vec<serde_json::Value> = a2c
        .requests()
        .into_iter()
        .filter(|r| r["payload"]["identifiers"].is_array())
        .collect();
    assert_eq!(orders.len(), 2, "first issuance and the renewal: {orders:?}");
    assert!(orders[0]["payload"].get("replaces").is_none(), "{orders:?}");
    assert_eq!(orders[1]["payload"]["replaces"], cert_id.as_str(), "{orders:?}");
    // ARI state of the replaced certificate is gone; a fresh poll is due for the new one.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("work/renewal-state/ari.example.test.json")).unwrap())
            .unwrap();
    assert!(state.get("ari").is_none(), "{state}");
    assert_eq!(state["consecutive_failures"], 0, "{state}");
}

/// A window in the future: not due, the window and its Retry-After are stored, and the next
/// run does not ask the CA again before that time.
#[test]
fn window_in_the_future_is_stored_and_retry_after_honoured() {
    let a2c = Acme2Certifier::builder()
        .retry_after_timeout(3600)
        .start()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    issue(&a2c, dir, "arif.example.test");
    let before = renewal_info_requests(&a2c);
    let out = ok(&a2c, dir, &["renew"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not due"), "{text}");
    assert!(text.contains("ARI renewal window"), "{text}");
    let polls = renewal_info_requests(&a2c);
    assert_eq!(polls, before + 1, "{}", tail_lines(&a2c.log(), 40));
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("work/renewal-state/arif.example.test.json")).unwrap(),
    )
    .unwrap();
    let ari = &state["ari"];
    assert!(ari["window"]["start"].is_string(), "{state}");
    let fetched = time::OffsetDateTime::parse(
        ari["fetched_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let next = time::OffsetDateTime::parse(
        ari["next_poll"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let gap = (next - fetched).whole_seconds();
    assert!(
        (3590..=3610).contains(&gap),
        "Retry-After 3600 s, got {gap} s: {state}"
    );

    // Again: within Retry-After, no poll; same decision.
    let out = ok(&a2c, dir, &["renew"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("not due"));
    assert_eq!(
        renewal_info_requests(&a2c),
        polls,
        "polled again before Retry-After"
    );
}
