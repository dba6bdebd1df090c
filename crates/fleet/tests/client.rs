//! Every typed method of `FleetClient` against a recording mock of the API: the route, the
//! method, the body, the decoded answer, and how error answers become `ClientError`s.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use certfleet_fleet::client::{ClientError, FleetClient, ServerTrust};
use certfleet_fleet::proto::{
    ChallengeSettings, CsrUpload, Custody, EnrollRequest, InstallReport, InstallState, NewCertificate,
};
use common::TestServer;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Option<Value>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn cert_view(name: &str) -> Value {
    json!({
        "name": name, "identifiers": ["www.example.com"], "enabled": true, "custody": "agent",
        "key_type": "ecdsa-p256", "challenge": {"type": "http-01"}, "profile": null, "comment": null,
        "state": "valid", "hosts": ["web1"], "serial": "0a", "not_before": 1, "not_after": 2,
        "issuer": "R11", "next_attempt": null, "next_attempt_reason": null, "last_attempt": null,
        "consecutive_failures": 0, "last_error": null
    })
}

/// The answer the mock gives for a route, or `None` for 204.
fn answer(method: &Method, path: &str) -> Result<Option<Value>, (StatusCode, String)> {
    let rest = path.strip_prefix("/api/v1/").unwrap_or("");
    let parts: Vec<&str> = rest.split('/').collect();
    let ok = |v: Value| Ok(Some(v));
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["hosts"]) => ok(json!({"host": "web1", "enrollment_token": "cfe1_x", "expires_at": 5})),
        ("GET", ["hosts"]) => ok(json!([{
            "name": "web1", "created_at": 1, "enrolled_at": null, "last_seen": null,
            "agent_version": null, "certificates": []
        }])),
        ("DELETE", ["hosts", _]) | ("PUT", ["certificates", _, "hosts", _]) => Ok(None),
        ("DELETE", ["certificates", _, "hosts", _]) => Ok(None),
        ("POST", ["certificates"]) => ok(cert_view("www")),
        ("GET", ["certificates"]) => ok(json!([cert_view("www")])),
        ("GET", ["certificates", name]) => {
            let mut detail = cert_view(name);
            detail["installs"] = json!([]);
            detail["events"] =
                json!([{"at": 3, "kind": "issued", "host": null, "actor": "server", "detail": "ok"}]);
            ok(detail)
        }
        ("POST", ["certificates", name, "renew" | "enable" | "disable"]) => ok(cert_view(name)),
        ("POST", ["enroll"]) => ok(json!({"host": "web1", "client_cert_pem": "C", "ca_cert_pem": "CA"})),
        ("GET", ["agent", "assignments"]) => ok(json!([{
            "certificate": "www", "identifiers": ["www.example.com"], "custody": "agent",
            "key_type": "ecdsa-p256", "serial": null, "not_after": null
        }])),
        ("GET", ["agent", "certificates", "missing"]) => Err((
            StatusCode::NOT_FOUND,
            json!({"error": "not-found", "message": "certificate missing is not assigned to web1"})
                .to_string(),
        )),
        ("GET", ["agent", "certificates", "broken"]) => {
            Err((StatusCode::BAD_GATEWAY, "<html>bad gateway</html>".into()))
        }
        ("GET", ["agent", "certificates", "garbled"]) => ok(json!({"certificate": 1})),
        ("GET", ["agent", "certificates", name]) => ok(json!({
            "certificate": name, "identifiers": ["www.example.com"], "serial": "0a",
            "not_before": 1, "not_after": 2, "cert_pem": "C", "chain_pem": "I",
            "fullchain_pem": "CI", "key_sha256": "ab"
        })),
        ("POST", ["agent", "csr" | "report"]) => Ok(None),
        _ => Err((
            StatusCode::IM_A_TEAPOT,
            format!("mock has no route {method} {path}"),
        )),
    }
}

async fn record(State(log): State<Log>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let authorization = req
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap();
    let body = (!bytes.is_empty()).then(|| serde_json::from_slice(&bytes).unwrap());
    log.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        authorization,
        body,
    });
    match answer(&method, &path) {
        Ok(Some(v)) => axum::Json(v).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err((status, text)) => (status, text).into_response(),
    }
}

async fn mock() -> (TestServer, Log) {
    let log = Log::default();
    let app = Router::new().fallback(record).with_state(log.clone());
    (TestServer::start(app).await, log)
}

fn last(log: &Log) -> Seen {
    log.lock().unwrap().last().cloned().unwrap()
}

fn route(log: &Log) -> String {
    let seen = last(log);
    format!("{} {}", seen.method, seen.path)
}

#[tokio::test]
async fn admin_methods_hit_their_routes_with_the_token() {
    let (server, log) = mock().await;
    let token = "cfa1_secret-admin-token";
    let admin = server.pinned().bearer_token(token).build().unwrap();

    let enrollment = admin.add_host("web1").await.unwrap();
    assert_eq!(enrollment.enrollment_token, "cfe1_x");
    assert_eq!(route(&log), "POST /api/v1/hosts");
    assert_eq!(last(&log).body, Some(json!({"name": "web1"})));
    assert_eq!(
        last(&log).authorization.as_deref(),
        Some("Bearer cfa1_secret-admin-token")
    );

    assert_eq!(admin.list_hosts().await.unwrap()[0].name, "web1");
    assert_eq!(route(&log), "GET /api/v1/hosts");
    admin.remove_host("web1").await.unwrap();
    assert_eq!(route(&log), "DELETE /api/v1/hosts/web1");

    let new = NewCertificate {
        name: "www".into(),
        identifiers: vec!["www.example.com".into()],
        hosts: vec!["web1".into()],
        custody: Custody::Server,
        key_type: "ecdsa-p256".into(),
        challenge: ChallengeSettings::Http01,
        profile: None,
        comment: None,
    };
    assert_eq!(admin.add_certificate(&new).await.unwrap().name, "www");
    assert_eq!(route(&log), "POST /api/v1/certificates");
    assert_eq!(last(&log).body.unwrap()["custody"], "server");
    assert_eq!(admin.list_certificates().await.unwrap().len(), 1);
    assert_eq!(route(&log), "GET /api/v1/certificates");
    let detail = admin.show_certificate("www").await.unwrap();
    assert_eq!(
        (detail.certificate.name.as_str(), detail.events.len()),
        ("www", 1)
    );
    assert_eq!(route(&log), "GET /api/v1/certificates/www");
    admin.renew_certificate("www").await.unwrap();
    assert_eq!(route(&log), "POST /api/v1/certificates/www/renew");
    admin.enable_certificate("www").await.unwrap();
    assert_eq!(route(&log), "POST /api/v1/certificates/www/enable");
    admin.disable_certificate("www").await.unwrap();
    assert_eq!(route(&log), "POST /api/v1/certificates/www/disable");
    admin.assign("www", "web1").await.unwrap();
    assert_eq!(route(&log), "PUT /api/v1/certificates/www/hosts/web1");
    admin.unassign("www", "web1").await.unwrap();
    assert_eq!(route(&log), "DELETE /api/v1/certificates/www/hosts/web1");

    // Names are path segments, never path structure.
    admin.remove_host("a/../b c").await.unwrap();
    assert_eq!(route(&log), "DELETE /api/v1/hosts/a%2F..%2Fb%20c");

    let debug = format!("{admin:?}");
    assert!(!debug.contains("secret-admin-token"), "{debug}");
}

#[tokio::test]
async fn enrollment_and_agent_methods_hit_their_routes() {
    let (server, log) = mock().await;
    let agent = server.pinned().build().unwrap();
    let enrolled = agent
        .enroll(&EnrollRequest {
            secret: "s".into(),
            csr_pem: "CSR".into(),
            agent_version: "0.1.0".into(),
        })
        .await
        .unwrap();
    assert_eq!(enrolled.ca_cert_pem, "CA");
    assert_eq!(route(&log), "POST /api/v1/enroll");
    assert_eq!(last(&log).body.unwrap()["csr_pem"], "CSR");
    assert_eq!(last(&log).authorization, None);

    assert_eq!(agent.assignments().await.unwrap()[0].certificate, "www");
    assert_eq!(route(&log), "GET /api/v1/agent/assignments");
    let delivery = agent.certificate("www").await.unwrap();
    assert_eq!((delivery.fullchain_pem.as_str(), delivery.key_pem), ("CI", None));
    assert_eq!(route(&log), "GET /api/v1/agent/certificates/www");
    agent
        .upload_csr(&CsrUpload {
            certificate: "www".into(),
            csr_pem: "CSR2".into(),
        })
        .await
        .unwrap();
    assert_eq!(route(&log), "POST /api/v1/agent/csr");
    assert_eq!(last(&log).body.unwrap()["csr_pem"], "CSR2");
    agent
        .report(&InstallReport {
            certificate: "www".into(),
            state: InstallState::RolledBack,
            installed_serial: None,
            served_serial: Some("0a".into()),
            endpoint: Some("127.0.0.1:443".into()),
            error: Some("nginx served the old certificate".into()),
            agent_version: "0.1.0".into(),
        })
        .await
        .unwrap();
    assert_eq!(route(&log), "POST /api/v1/agent/report");
    assert_eq!(last(&log).body.unwrap()["state"], "rolled-back");
}

#[tokio::test]
async fn error_answers_become_typed_errors() {
    let (server, _) = mock().await;
    let agent = server.pinned().build().unwrap();

    let err = agent.certificate("missing").await.unwrap_err();
    match &err {
        ClientError::Api {
            status,
            kind,
            message,
        } => {
            assert_eq!((*status, kind.as_str()), (404, "not-found"));
            assert_eq!(message, "certificate missing is not assigned to web1");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.status(), Some(404));
    assert_eq!(
        err.to_string(),
        "the fleet server answered 404: certificate missing is not assigned to web1 (not-found)"
    );

    // Something else than the fleet server answered (a proxy's HTML page).
    let err = agent.certificate("broken").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status: 502, kind, message } if kind == "http" && message.contains("bad gateway")),
        "{err:?}"
    );

    let err = agent.certificate("garbled").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Decode { url, .. } if url.ends_with("/api/v1/agent/certificates/garbled")),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_settings_are_refused_before_any_request() {
    let pin = ServerTrust::Pin("ab".repeat(32));
    let err = FleetClient::builder("http://fleet.example.com", pin.clone())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("HTTPS only"), "{err}");
    let err = FleetClient::builder("https://admin:pw@fleet.example.com", pin.clone())
        .build()
        .unwrap_err();
    assert!(!err.to_string().contains("pw"), "{err}");
    let err = FleetClient::builder("https://fleet.example.com", ServerTrust::Pin("abc".into()))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("64 hex digits"), "{err}");
    let err = FleetClient::builder(
        "https://fleet.example.com",
        ServerTrust::CaBundle("nothing".into()),
    )
    .build()
    .unwrap_err();
    assert!(err.to_string().contains("CA bundle"), "{err}");
    let secret_key = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n";
    let (_, csr) = certfleet_fleet::pki::new_client_key_and_csr("web1").unwrap();
    let ca = certfleet_fleet::pki::InternalCa::generate(time::OffsetDateTime::now_utc()).unwrap();
    let cert = ca
        .issue_client_cert(&csr, "web1", time::OffsetDateTime::now_utc())
        .unwrap();
    let builder =
        FleetClient::builder("https://fleet.example.com", pin).client_identity(cert.cert_pem, secret_key);
    assert!(!format!("{builder:?}").contains("c2VjcmV0"));
    let err = builder.build().unwrap_err().to_string();
    assert!(err.contains("client key") && !err.contains("c2VjcmV0"), "{err}");
}
