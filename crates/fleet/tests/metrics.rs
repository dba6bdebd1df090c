//! `/metrics` through the real router (`api::app`, no sockets): the text parses as Prometheus
//! exposition (prometheus-parse, plus a strict line check of the OpenMetrics shape), the
//! families and values follow the database and the counters, and `--metrics-token` is enforced.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use certfleet_core::FixedClock;
use certfleet_fleet::db::{Commit, Failure, FleetDb, IssuedCert};
use certfleet_fleet::pki::InternalCa;
use certfleet_fleet::proto::{ChallengeSettings, Custody, InstallReport, InstallState};
use certfleet_fleet::server::metrics::{CONTENT_TYPE, FailureReason};
use certfleet_fleet::server::{AppState, api};
use prometheus_parse::{Sample, Scrape, Value};
use tower::ServiceExt;

const T0: i64 = 1_800_000_000;
const DAY: i64 = 24 * 3600;

async fn state(dir: &tempfile::TempDir, token: Option<&str>) -> AppState {
    let now = time::OffsetDateTime::from_unix_timestamp(T0).unwrap();
    let db = FleetDb::open(&dir.path().display().to_string()).await.unwrap();
    AppState {
        metrics_token: token.map(Arc::from),
        ..AppState::for_tests(
            db,
            Arc::new(FixedClock::new(now)),
            InternalCa::generate(now).unwrap(),
        )
    }
}

fn settings(name: &str) -> certfleet_fleet::db::CertificateSettings {
    certfleet_fleet::db::CertificateSettings {
        identifiers: vec![format!("{name}.example.com")],
        custody: Custody::Server,
        key_type: "ecdsa-p256".into(),
        challenge: ChallengeSettings::Http01,
        profile: None,
        comment: None,
        acme_server: None,
        acme_account: None,
    }
}

fn issued(serial: &str, not_before: i64) -> IssuedCert {
    IssuedCert {
        cert_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        chain_pem: String::new(),
        serial: serial.into(),
        not_before,
        not_after: not_before + 90 * DAY,
        issuer: "Pebble".into(),
        key_sha256: "0".repeat(64),
        issued_at: not_before,
    }
}

async fn issue(db: &FleetDb, name: &str, serial: &str, not_before: i64) {
    let cert = issued(serial, not_before);
    let c = Commit {
        cert: &cert,
        key_blob: None,
        lease_owner: None,
        csr_id: None,
        next_attempt: cert.not_after - 30 * DAY,
        next_attempt_reason: "two thirds",
        actor: "server",
        imported: false,
    };
    db.commit_issued(name, &c).await.unwrap();
}

async fn get(state: &AppState, auth: Option<&str>) -> (StatusCode, Option<String>, String) {
    let mut req = Request::get("/metrics");
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let resp = api::app(state.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    let body = axum::body::to_bytes(resp.into_body(), 64 << 20).await.unwrap();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

/// Parses with prometheus-parse, after checking every line has the exposition format's shape
/// (the parser skips lines it does not understand; this test must not).
fn parse(text: &str) -> Scrape {
    let sample = regex::Regex::new(
        r#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*",?)*\})? -?[0-9.e+Inf]+$"#,
    )
    .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "OpenMetrics ends with # EOF");
    for l in &lines {
        let ok = l.starts_with("# HELP certfleet_")
            || l.starts_with("# TYPE certfleet_")
            || *l == "# EOF"
            || (l.starts_with("certfleet_") && sample.is_match(l));
        assert!(ok, "not exposition format: {l:?}\n{text}");
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn value(s: &Sample) -> f64 {
    match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{}: not a number: {other:?}", s.metric),
    }
}

/// The value of `metric` with exactly these labels (and no others).
fn find(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == metric
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v))
        })
        .map(value)
}

#[tokio::test]
async fn metrics_follow_the_database_and_the_counters() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(&dir, None).await;
    let db = &s.db;
    for name in ["www", "old", "soon", "new", "off"] {
        db.create_certificate(name, &settings(name), &[], T0 - 200 * DAY)
            .await
            .unwrap();
    }
    issue(db, "www", "0a", T0 - DAY).await;
    issue(db, "old", "0b", T0 - 100 * DAY).await;
    issue(db, "soon", "0c", T0 - 80 * DAY).await;
    db.set_enabled("off", false).await.unwrap();
    db.create_host("web1", T0).await.unwrap();
    db.assign("www", "web1", T0).await.unwrap();
    let report = InstallReport {
        certificate: "www".into(),
        state: InstallState::Verified,
        installed_serial: Some("0a".into()),
        served_serial: Some("0a".into()),
        endpoint: Some("127.0.0.1:443".into()),
        error: None,
        agent_version: "0.1.0".into(),
    };
    db.put_install_report("web1", &report, T0).await.unwrap();
    db.touch_host("web1", T0 - 30, "0.1.0").await.unwrap();
    // The counters, as the renewal loop and the agent handlers bump them.
    s.metrics.issued("localhost:14000", 3.2);
    s.metrics.attempt_seconds("localhost:14000", 0.7);
    s.metrics.failed("localhost:14000", FailureReason::RateLimited);
    s.metrics.checkin("web1");
    s.metrics.install_report("web1", InstallState::Verified);

    let (status, ctype, text) = get(&s, None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(ctype.as_deref(), Some(CONTENT_TYPE));
    let m = parse(&text);
    for (state, n) in [
        ("valid", 1.0),
        ("expiring", 1.0),
        ("expired", 1.0),
        ("disabled", 1.0),
        ("pending", 1.0),
        ("failing", 0.0),
        ("renewing", 0.0),
    ] {
        assert_eq!(
            find(&m, "certfleet_certificates", &[("state", state)]),
            Some(n),
            "{state}\n{text}"
        );
    }
    let expiry = |c| find(&m, "certfleet_certificate_expiry_seconds", &[("certificate", c)]);
    assert_eq!(expiry("www"), Some((89 * DAY) as f64));
    assert_eq!(expiry("soon"), Some((10 * DAY) as f64));
    assert_eq!(expiry("old"), Some((-10 * DAY) as f64));
    assert_eq!(expiry("new"), None, "never issued: no expiry");
    let pair = [("certificate", "www"), ("host", "web1")];
    assert_eq!(find(&m, "certfleet_host_serves_current", &pair), Some(1.0));
    assert_eq!(
        find(&m, "certfleet_host_certificate_expiry_seconds", &pair),
        Some((89 * DAY) as f64)
    );
    assert_eq!(
        find(
            &m,
            "certfleet_host_last_seen_timestamp_seconds",
            &[("host", "web1")]
        ),
        Some((T0 - 30) as f64)
    );
    let ca = [("ca", "localhost:14000")];
    assert_eq!(find(&m, "certfleet_renewals_total", &ca), Some(1.0));
    assert_eq!(
        find(
            &m,
            "certfleet_renewal_failures_total",
            &[("ca", "localhost:14000"), ("reason", "rate-limited")]
        ),
        Some(1.0)
    );
    assert_eq!(
        find(&m, "certfleet_agent_checkins_total", &[("host", "web1")]),
        Some(1.0)
    );
    assert_eq!(
        find(
            &m,
            "certfleet_install_reports_total",
            &[("host", "web1"), ("state", "verified")]
        ),
        Some(1.0)
    );
    assert_eq!(
        find(&m, "certfleet_acme_issuance_duration_seconds_count", &ca),
        Some(2.0)
    );
    let hist = m
        .samples
        .iter()
        .find(|s| s.metric == "certfleet_acme_issuance_duration_seconds")
        .expect("the histogram");
    let Value::Histogram(buckets) = &hist.value else {
        panic!("not a histogram: {hist:?}")
    };
    let le1 = buckets.iter().find(|b| b.less_than == 1.0).unwrap();
    assert_eq!(le1.count, 1.0, "0.7 s is under 1 s, 3.2 s is not");
    for family in [
        "certfleet_certificates",
        "certfleet_certificate_expiry_seconds",
        "certfleet_host_serves_current",
        "certfleet_renewals",
        "certfleet_acme_issuance_duration_seconds",
    ] {
        assert!(m.docs.contains_key(family), "HELP of {family}");
    }

    // A failure now: the host serves an old serial, "www" fails its next attempt.
    let old = InstallReport {
        served_serial: Some("09".into()),
        ..report
    };
    db.put_install_report("web1", &old, T0).await.unwrap();
    let f = Failure {
        now: T0,
        error: "the CA could not validate",
        next_attempt: T0 + 600,
        next_attempt_reason: "retry",
        lease_owner: None,
        actor: "server",
    };
    db.record_failure("www", &f).await.unwrap();
    let m = parse(&get(&s, None).await.2);
    assert_eq!(find(&m, "certfleet_host_serves_current", &pair), Some(0.0));
    assert_eq!(find(&m, "certfleet_host_certificate_expiry_seconds", &pair), None);
    assert_eq!(
        find(&m, "certfleet_certificates", &[("state", "failing")]),
        Some(1.0)
    );
    assert_eq!(
        find(&m, "certfleet_certificates", &[("state", "valid")]),
        Some(0.0)
    );
}

#[tokio::test]
async fn the_metrics_token_is_required_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(&dir, Some("s3cret-metrics-token")).await;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-metrics-toke"),
        Some("s3cret-metrics-token"),
    ] {
        let (status, _, body) = get(&s, auth).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}: {body}");
        assert!(!body.contains("certfleet_"), "{body}");
    }
    let (status, _, body) = get(&s, Some("Bearer s3cret-metrics-token")).await;
    assert_eq!(status, StatusCode::OK);
    parse(&body);

    // Open without a token.
    let dir = tempfile::tempdir().unwrap();
    let open = state(&dir, None).await;
    assert_eq!(get(&open, None).await.0, StatusCode::OK);
}
