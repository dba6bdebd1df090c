//! `POST certificates/{name}/import` through the real router (`api::app`, no sockets): a
//! certificate issued elsewhere becomes the current one of an agent-custody certificate only
//! when it is what the fleet certificate says (names, chain, newer), and never for server
//! custody (an import carries no key).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use certfleet_core::FixedClock;
use certfleet_fleet::db::{CertificateSettings, FleetDb};
use certfleet_fleet::pki::InternalCa;
use certfleet_fleet::proto::{ChallengeSettings, Custody};
use certfleet_fleet::server::{AppState, api};
use certfleet_fleet::token::hash_secret;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use tower::ServiceExt;

const T0: i64 = 1_800_000_000;
const TOKEN: &str = "admin-s3cret";

async fn state(dir: &tempfile::TempDir) -> AppState {
    let now = OffsetDateTime::from_unix_timestamp(T0).unwrap();
    let db = FleetDb::open(&dir.path().display().to_string()).await.unwrap();
    db.put_admin_token(&hash_secret(TOKEN), "test", T0).await.unwrap();
    db.create_host("web1", T0).await.unwrap();
    for (name, custody) in [("www", Custody::Agent), ("shared", Custody::Server)] {
        let settings = CertificateSettings {
            identifiers: vec![format!("{name}.example.test")],
            custody,
            key_type: "ecdsa-p256".into(),
            challenge: ChallengeSettings::Http01,
            profile: None,
            comment: None,
            acme_server: None,
            acme_account: None,
        };
        db.create_certificate(name, &settings, &["web1".to_string()], T0)
            .await
            .unwrap();
    }
    AppState::for_tests(
        db,
        Arc::new(FixedClock::new(now)),
        InternalCa::generate(now).unwrap(),
    )
}

/// An intermediate (its PEM) that signs leaves.
fn intermediate(cn: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    let pem = p.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(p, key))
}

/// A leaf for `names` valid from T0 for `days`, signed by `issuer`.
fn leaf(names: &[&str], days: i64, issuer: &Issuer<'_, KeyPair>) -> String {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let t0 = OffsetDateTime::from_unix_timestamp(T0).unwrap();
    p.not_before = t0 - Duration::hours(1);
    p.not_after = t0 + Duration::days(days);
    p.signed_by(&key, issuer).unwrap().pem()
}

async fn post(state: &AppState, path: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::post(format!("/api/v1/{path}"))
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = api::app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn import_takes_only_the_certificate_the_fleet_certificate_describes() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(&dir).await;
    let (chain, ca) = intermediate("Test Intermediate");
    let (other_chain, _) = intermediate("Another Intermediate");
    let body = |cert: &str, chain: &str| json!({"cert_pem": cert, "chain_pem": chain});
    let message = |v: &Value| v["message"].as_str().unwrap_or_default().to_string();

    // Other names, another CA's chain, server custody: refused, nothing recorded.
    let (st, v) = post(
        &s,
        "certificates/www/import",
        body(&leaf(&["evil.example.test"], 90, &ca), &chain),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(message(&v).contains("evil.example.test"), "{v}");
    let good = leaf(&["www.example.test"], 90, &ca);
    let (st, v) = post(&s, "certificates/www/import", body(&good, &other_chain)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(message(&v).contains("did not sign"), "{v}");
    let (st, v) = post(
        &s,
        "certificates/shared/import",
        body(&leaf(&["shared.example.test"], 90, &ca), &chain),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(message(&v).contains("server custody"), "{v}");
    assert_eq!(s.db.certificate("www").await.unwrap().version, 0);

    // The right one: current, scheduled for later (two thirds of 90 days), logged as imported.
    let (st, v) = post(&s, "certificates/www/import", body(&good, &chain)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let c = s.db.certificate("www").await.unwrap();
    assert_eq!(c.version, 1);
    let next = c.next_attempt.unwrap();
    assert!(next > T0 + 50 * 86_400 && next < T0 + 70 * 86_400, "{next}");
    let events = s.db.events(Some("www"), 10).await.unwrap();
    assert_eq!(events[0].kind, "imported", "{events:?}");
    // Again: nothing changes. An older (shorter-lived) one: refused.
    let (st, _) = post(&s, "certificates/www/import", body(&good, &chain)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.db.certificate("www").await.unwrap().version, 1);
    let (st, v) = post(
        &s,
        "certificates/www/import",
        body(&leaf(&["www.example.test"], 30, &ca), &chain),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(s.db.certificate("www").await.unwrap().version, 1);
}
