//! The served-certificate watch against a real nginx on loopback: `cert.pem` only is flagged
//! as an incomplete chain, `fullchain.pem` is ok, a renewal nginx was not reloaded for is
//! `stale`, a port nobody listens on is `unreachable`; the endpoints agents report are watched;
//! the findings reach `/metrics`.

#[path = "agentkit/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use certfleet_core::SystemClock;
use certfleet_fleet::db::{CertificateSettings, Commit, FleetDb, IssuedCert, ServedCheck};
use certfleet_fleet::pki::InternalCa;
use certfleet_fleet::proto::{ChallengeSettings, Custody, Delivery, InstallReport, InstallState};
use certfleet_fleet::server::watch::{Watch, WatchConfig};
use certfleet_fleet::server::{AppState, api};
use certfleet_testkit::{Nginx, free_port};
use common::{TestCa, new_key, world_dir};
use tower::ServiceExt;

fn settings(names: &[&str]) -> CertificateSettings {
    CertificateSettings {
        identifiers: names.iter().map(|s| s.to_string()).collect(),
        custody: Custody::Server,
        key_type: "ecdsa-p256".into(),
        challenge: ChallengeSettings::Http01,
        profile: None,
        comment: None,
        acme_server: None,
        acme_account: None,
    }
}

/// Commits what the test CA issued as the certificate's newest version.
async fn commit(db: &FleetDb, name: &str, d: &Delivery) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let cert = IssuedCert {
        cert_pem: d.cert_pem.clone(),
        chain_pem: d.chain_pem.clone(),
        serial: d.serial.clone(),
        not_before: d.not_before,
        not_after: d.not_after,
        issuer: "agent test intermediate".into(),
        key_sha256: d.key_sha256.clone(),
        issued_at: now,
    };
    let c = Commit {
        cert: &cert,
        key_blob: None,
        lease_owner: None,
        csr_id: None,
        next_attempt: d.not_after - 10 * 86_400,
        next_attempt_reason: "one third of its lifetime left",
        actor: "server",
        imported: false,
    };
    db.commit_issued(name, &c).await.unwrap();
}

async fn finding(db: &FleetDb, name: &str) -> ServedCheck {
    let checks = db.served_checks(name).await.unwrap();
    assert_eq!(checks.len(), 1, "{checks:?}");
    checks.into_iter().next().unwrap()
}

/// Rounds until the finding is `state` (nginx's old workers keep the old files ~100 ms after
/// a reload), at most 10 s.
async fn until_state(w: &Watch, db: &FleetDb, name: &str, state: &str) -> ServedCheck {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        w.round().await.unwrap();
        let f = finding(db, name).await;
        if f.state == state || Instant::now() > deadline {
            assert_eq!(f.state, state, "{f:?}");
            return f;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_flags_cert_pem_without_chain_then_accepts_fullchain() {
    let dbdir = tempfile::tempdir().unwrap();
    let db = FleetDb::open(&dbdir.path().display().to_string()).await.unwrap();
    let ca = TestCa::new();
    let key = new_key();
    let d1 = ca.deliver("web", &["localhost"], &key);
    let t0 = time::OffsetDateTime::now_utc().unix_timestamp();
    db.create_certificate("web", &settings(&["localhost"]), &[], t0)
        .await
        .unwrap();
    commit(&db, "web", &d1).await;

    let files = world_dir();
    let (cert, full, keyf) = (
        files.path().join("cert.pem"),
        files.path().join("fullchain.pem"),
        files.path().join("privkey.pem"),
    );
    std::fs::write(&cert, &d1.cert_pem).unwrap();
    std::fs::write(&full, &d1.fullchain_pem).unwrap();
    std::fs::write(&keyf, key.to_pem()).unwrap();
    // The trap: ssl_certificate pointing at cert.pem.
    let mut nginx = Nginx::builder().https(&cert, &keyf).start().unwrap();
    let port = nginx.https_port().unwrap();
    assert!(
        db.add_watch_endpoint("web", &format!("127.0.0.1:{port}"), Some("localhost"), t0)
            .await
            .unwrap()
    );

    let cfg = WatchConfig {
        extra_roots: vec![ca.root_der.clone()],
        ..WatchConfig::default()
    };
    let w = Watch::new(db.clone(), Arc::new(SystemClock), cfg.clone());
    let f = until_state(&w, &db, "web", "incomplete-chain").await;
    assert_eq!(f.chain_len, 1);
    assert!(f.detail.contains("fullchain.pem"), "{}", f.detail);
    assert_eq!(f.served_serial.as_deref(), Some(d1.serial.as_str()));
    assert_eq!(f.source, "admin");

    // Fixed: fullchain.pem.
    nginx.enable_https(&full, &keyf).unwrap();
    let f = until_state(&w, &db, "web", "ok").await;
    assert_eq!(f.chain_len, 2);
    assert_eq!(f.served_not_after, Some(d1.not_after));

    // Without the test root the same chain leads nowhere trusted.
    let w_plain = Watch::new(db.clone(), Arc::new(SystemClock), WatchConfig::default());
    let f = until_state(&w_plain, &db, "web", "untrusted").await;
    assert!(f.detail.contains("--watch-roots"), "{}", f.detail);

    // A renewal the service was not reloaded for.
    let d2 = ca.deliver("web", &["localhost"], &key);
    commit(&db, "web", &d2).await;
    let f = until_state(&w, &db, "web", "stale").await;
    assert!(f.detail.contains("not reloaded"), "{}", f.detail);
    std::fs::write(&full, &d2.fullchain_pem).unwrap();
    nginx.reload().unwrap();
    until_state(&w, &db, "web", "ok").await;

    // The findings reach /metrics.
    let now = time::OffsetDateTime::now_utc();
    let state = AppState::for_tests(
        db.clone(),
        Arc::new(SystemClock),
        InternalCa::generate(now).unwrap(),
    );
    let resp = api::app(state)
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("certfleet_served_endpoints{state=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("certfleet_served_endpoints{state=\"incomplete-chain\"} 0"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "certfleet_served_expiry_seconds{{certificate=\"web\",endpoint=\"127.0.0.1:{port}\"}}"
            ))
        })
        .unwrap_or_else(|| panic!("no served expiry series:\n{text}"));
    let secs: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        (secs - (d2.not_after - now.unix_timestamp())).abs() < 60,
        "{line}"
    );
}

#[tokio::test]
async fn agents_endpoints_are_watched_and_dead_ones_reported() {
    let dbdir = tempfile::tempdir().unwrap();
    let db = FleetDb::open(&dbdir.path().display().to_string()).await.unwrap();
    let ca = TestCa::new();
    let d = ca.deliver("api", &["localhost"], &new_key());
    let t0 = time::OffsetDateTime::now_utc().unix_timestamp();
    db.create_host("web1", t0).await.unwrap();
    db.create_certificate("api", &settings(&["localhost"]), &["web1".to_string()], t0)
        .await
        .unwrap();
    commit(&db, "api", &d).await;
    // Nothing listens there (a port just found free).
    let dead = format!("127.0.0.1:{}", free_port());
    let report = InstallReport {
        certificate: "api".into(),
        state: InstallState::Verified,
        installed_serial: Some(d.serial.clone()),
        served_serial: Some(d.serial.clone()),
        endpoint: Some(dead.clone()),
        error: None,
        agent_version: "test".into(),
    };
    db.put_install_report("web1", &report, t0).await.unwrap();
    let targets = db.watch_targets().await.unwrap();
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert_eq!(targets[0].source, "host:web1");
    assert_eq!(targets[0].endpoint, dead);

    let w = Watch::new(db.clone(), Arc::new(SystemClock), WatchConfig::default());
    let round = w.round().await.unwrap();
    assert_eq!(round.checked, 1);
    let f = finding(&db, "api").await;
    assert_eq!(f.state, "unreachable");
    assert!(f.detail.contains(&dead), "{}", f.detail);

    // Unassigned: no longer watched, and its finding goes with the next round.
    db.unassign("api", "web1").await.unwrap();
    assert!(db.watch_targets().await.unwrap().is_empty());
    w.round().await.unwrap();
    assert!(db.served_checks("api").await.unwrap().is_empty());
}
