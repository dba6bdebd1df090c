//! The dashboard through the real router (`api::app`): login with the admin token and with the
//! password `fleet admin passwd` sets, the session cookie's attributes, CSRF refusals on every
//! form, session expiry, logout, the login rate limit, and the certificate list's paging,
//! search and state filter.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use certfleet_core::FixedClock;
use certfleet_fleet::db::{CertificateSettings, Commit, FleetDb, IssuedCert};
use certfleet_fleet::pki::InternalCa;
use certfleet_fleet::proto::{ChallengeSettings, Custody};
use certfleet_fleet::server::{AppState, api};
use certfleet_fleet::tls::PeerIdentity;
use certfleet_fleet::token::hash_secret;
use tower::ServiceExt;

const T0: i64 = 1_800_000_000;
const DAY: i64 = 86_400;
const TOKEN: &str = "cfa1_dashboard-test-token";

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
    clock: Arc<FixedClock>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::from_unix_timestamp(T0).unwrap();
    let clock = Arc::new(FixedClock::new(now));
    let db = FleetDb::open(&dir.path().display().to_string()).await.unwrap();
    db.put_admin_token(&hash_secret(TOKEN), "test", T0).await.unwrap();
    let state = AppState::for_tests(db, clock.clone(), InternalCa::generate(now).unwrap());
    Fixture {
        _dir: dir,
        state,
        clock,
    }
}

fn settings(name: &str) -> CertificateSettings {
    CertificateSettings {
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

async fn issue(db: &FleetDb, name: &str, not_before: i64) {
    let cert = IssuedCert {
        cert_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        chain_pem: String::new(),
        serial: format!("{not_before:x}"),
        not_before,
        not_after: not_before + 90 * DAY,
        issuer: "Pebble Intermediate".into(),
        key_sha256: "0".repeat(64),
        issued_at: not_before,
    };
    let c = Commit {
        cert: &cert,
        key_blob: None,
        lease_owner: None,
        csr_id: None,
        next_attempt: cert.not_after - 30 * DAY,
        next_attempt_reason: "one third of its lifetime left",
        actor: "server",
        imported: false,
    };
    db.commit_issued(name, &c).await.unwrap();
}

#[derive(Debug)]
struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Resp {
    fn location(&self) -> Option<&str> {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok())
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// The value this answer sets for cookie `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            c.split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    /// The page's CSRF token (the hidden field of its forms).
    fn csrf(&self) -> String {
        let re = regex::Regex::new(r#"name="csrf" value="([^"]+)""#).unwrap();
        re.captures(&self.body)
            .unwrap_or_else(|| panic!("no CSRF field in:\n{}", self.body))[1]
            .to_string()
    }
}

async fn send(s: &AppState, req: Request<Body>) -> Resp {
    let resp = api::app(s.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 16 << 20).await.unwrap();
    Resp {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get(s: &AppState, path: &str, session: Option<&str>) -> Resp {
    let mut req = Request::get(path);
    if let Some(v) = session {
        req = req.header(header::COOKIE, format!("__Host-certfleet-session={v}"));
    }
    send(s, req.body(Body::empty()).unwrap()).await
}

async fn post(
    s: &AppState,
    path: &str,
    cookies: &str,
    form: &[(&str, &str)],
    from: Option<SocketAddr>,
) -> Resp {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req = Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookies)
        .body(Body::from(body))
        .unwrap();
    if let Some(addr) = from {
        req.extensions_mut().insert(PeerIdentity {
            client_cert_fingerprint: None,
            remote_addr: addr,
        });
    }
    send(s, req).await
}

/// Logs in through the form with `secret`; the session cookie's value, or the failed answer.
async fn login(s: &AppState, secret: &str, from: Option<SocketAddr>) -> Result<String, Resp> {
    let form = get(s, "/login", None).await;
    assert_eq!(form.status, StatusCode::OK);
    let token = form.cookie("__Host-certfleet-login").expect("login cookie");
    let resp = post(
        s,
        "/login",
        &format!("__Host-certfleet-login={token}"),
        &[("secret", secret), ("csrf", &form.csrf())],
        from,
    )
    .await;
    match resp.cookie("__Host-certfleet-session") {
        Some(v) if !v.is_empty() => {
            assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
            assert_eq!(resp.location(), Some("/"));
            Ok(v)
        }
        _ => Err(resp),
    }
}

#[tokio::test]
async fn login_sets_a_strict_host_cookie_and_pages_need_it() {
    let f = fixture().await;
    let s = &f.state;
    // Not logged in: pages send to /login.
    for path in ["/", "/certificates", "/hosts"] {
        let r = get(s, path, None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.location(), Some("/login"), "{path}");
    }
    let r = get(s, "/", Some("made-up")).await;
    assert_eq!(r.location(), Some("/login"));

    // The login form sets its own CSRF cookie, with the same attributes.
    let form = get(s, "/login", None).await;
    assert!(form.body.contains("Admin token or dashboard password"));
    let login_cookie = form
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-certfleet-login="))
        .unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            login_cookie.split("; ").any(|a| a == attr),
            "{attr} in {login_cookie}"
        );
    }
    assert!(
        form.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );

    // Wrong secret: 401, the form again with a message, no session.
    let r = login(s, "cfa1_wrong", None).await.unwrap_err();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.body
            .contains("neither the admin token nor the dashboard password"),
        "{}",
        r.body
    );
    // A login POST without the form's token (another site's form): 403, no session.
    let r = post(s, "/login", "", &[("secret", TOKEN)], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("CSRF"), "{}", r.body);
    assert!(r.cookie("__Host-certfleet-session").is_none());
    let r = post(
        s,
        "/login",
        "__Host-certfleet-login=abc",
        &[("secret", TOKEN), ("csrf", "abd")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The admin token logs in.
    let form = get(s, "/login", None).await;
    let token = form.cookie("__Host-certfleet-login").unwrap();
    let r = post(
        s,
        "/login",
        &format!("__Host-certfleet-login={token}"),
        &[("secret", TOKEN), ("csrf", &form.csrf())],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let cookie = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-certfleet-session="))
        .unwrap();
    let attrs: Vec<&str> = cookie.split("; ").collect();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(attrs.contains(&attr), "{attr} in {cookie}");
    }
    assert!(!attrs.iter().any(|a| a.starts_with("Domain")), "{cookie}");
    let session = r.cookie("__Host-certfleet-session").unwrap();
    // Only the hash is stored.
    assert!(s.db.session(&session, T0).await.unwrap().is_none());
    assert!(s.db.session(&hash_secret(&session), T0).await.unwrap().is_some());

    let r = get(s, "/", Some(&session)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Needs a human"));
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    let r = get(s, "/hosts", Some(&session)).await;
    assert_eq!(r.status, StatusCode::OK);

    // Twelve hours later the session is gone.
    f.clock.advance(time::Duration::seconds(12 * 3600 + 1));
    let r = get(s, "/", Some(&session)).await;
    assert_eq!(r.location(), Some("/login"));
}

#[tokio::test]
async fn every_form_needs_the_sessions_csrf_token() {
    let f = fixture().await;
    let s = &f.state;
    s.db.create_certificate("web", &settings("web"), &[], T0)
        .await
        .unwrap();
    issue(&s.db, "web", T0 - DAY).await;
    let session = login(s, TOKEN, None).await.unwrap();
    let page = get(s, "/certificates/web", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    let events_before = s.db.events(Some("web"), 100).await.unwrap().len();
    let cookie = format!("__Host-certfleet-session={session}");

    for action in ["renew", "disable", "enable", "endpoints", "endpoints/remove"] {
        let path = format!("/certificates/web/{action}");
        for form in [vec![], vec![("csrf", "wrong")], vec![("csrf", "")]] {
            let mut form = form;
            form.push(("endpoint", "127.0.0.1:443"));
            let r = post(s, &path, &cookie, &form, None).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} {form:?}");
            assert!(r.body.contains("CSRF check"), "{}", r.body);
            assert!(r.body.contains("Nothing was changed"));
        }
        // Another session's token is as wrong as none.
        let other = login(s, TOKEN, None).await.unwrap();
        let other_csrf = get(s, "/", Some(&other)).await.csrf();
        let r = post(s, &path, &cookie, &[("csrf", &other_csrf)], None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    // No session at all: 403 too (not a redirect that would drop the POST silently).
    let r = post(s, "/certificates/web/renew", "", &[("csrf", &csrf)], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = post(s, "/logout", &cookie, &[], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        s.db.events(Some("web"), 100).await.unwrap().len(),
        events_before,
        "a refused form changed something"
    );
    assert!(s.db.certificate("web").await.unwrap().enabled);

    // With the token: done, logged with who did it, back to the page.
    let r = post(s, "/certificates/web/disable", &cookie, &[("csrf", &csrf)], None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), Some("/certificates/web"));
    assert!(!s.db.certificate("web").await.unwrap().enabled);
    let r = post(s, "/certificates/web/enable", &cookie, &[("csrf", &csrf)], None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = post(s, "/certificates/web/renew", &cookie, &[("csrf", &csrf)], None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(s.db.certificate("web").await.unwrap().next_attempt, Some(T0));
    let r = post(
        s,
        "/certificates/web/endpoints",
        &cookie,
        &[("csrf", &csrf), ("endpoint", "web.example.com:8443"), ("sni", "")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = post(
        s,
        "/certificates/web/endpoints",
        &cookie,
        &[("csrf", &csrf), ("endpoint", "no port here")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("HOST:PORT"), "{}", r.body);
    let kinds: Vec<(String, String)> =
        s.db.events(Some("web"), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.actor))
            .collect();
    for k in ["watch-added", "renew-requested", "enabled", "disabled"] {
        assert!(
            kinds.contains(&(k.to_string(), "admin (dashboard)".to_string())),
            "{k} in {kinds:?}"
        );
    }
    let page = get(s, "/certificates/web", Some(&session)).await;
    assert!(page.body.contains("renew-requested"));
    assert!(page.body.contains("admin (dashboard)"));

    // Logout ends the session and clears the cookie.
    let r = post(s, "/logout", &cookie, &[("csrf", &csrf)], None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), Some("/login"));
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("__Host-certfleet-session=;") && c.contains("Max-Age=0"))
    );
    assert_eq!(get(s, "/", Some(&session)).await.location(), Some("/login"));
    let r = post(s, "/certificates/web/renew", &cookie, &[("csrf", &csrf)], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn password_login_and_brute_force_lockout() {
    let f = fixture().await;
    let s = &f.state;
    let set = |pw: &str, token: &str| {
        Request::put("/api/v1/admin/password")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::json!({ "password": pw }).to_string()))
            .unwrap()
    };
    // Only with the admin token; weak ones refused with the reason.
    assert_eq!(
        send(s, set("a long enough password", "cfa1_nope")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = send(s, set("short", TOKEN)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("at least 12"), "{}", r.body);
    // No password yet: only the token logs in.
    assert!(login(s, "a long enough password", None).await.is_err());
    let before = login(s, TOKEN, None).await.unwrap();
    assert_eq!(
        send(s, set("a long enough password", TOKEN)).await.status,
        StatusCode::NO_CONTENT
    );
    let stored = s.db.setting("dashboard-password").await.unwrap().unwrap();
    assert!(stored.starts_with("scrypt$"), "{stored}");
    assert!(!stored.contains("a long enough password"));
    // Setting a password ended the sessions made before.
    assert_eq!(get(s, "/", Some(&before)).await.location(), Some("/login"));
    let session = login(s, "a long enough password", None).await.unwrap();
    assert_eq!(get(s, "/", Some(&session)).await.status, StatusCode::OK);
    assert!(login(s, "a long enough passwor", None).await.is_err());

    // Brute force: after 10 failures from one address, even the right secret gets 429.
    let attacker: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    for i in 0..10 {
        let r = login(s, &format!("guess {i}"), Some(attacker)).await.unwrap_err();
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = login(s, "a long enough password", Some(attacker))
        .await
        .unwrap_err();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.body.contains("Too many failed logins"), "{}", r.body);
    // Another address is not affected.
    let other: SocketAddr = "192.0.2.8:40000".parse().unwrap();
    assert!(login(s, "a long enough password", Some(other)).await.is_ok());
}

#[tokio::test]
async fn certificate_list_pages_searches_and_filters() {
    let f = fixture().await;
    let s = &f.state;
    for i in 0..120 {
        let name = format!("c{i:03}");
        s.db.create_certificate(&name, &settings(&name), &[], T0)
            .await
            .unwrap();
        // c000..c009 near the end of their lifetime, the rest fresh.
        let nb = if i < 10 { T0 - 80 * DAY } else { T0 - DAY };
        issue(&s.db, &name, nb).await;
    }
    let session = login(s, TOKEN, None).await.unwrap();
    let rows = |body: &str| {
        let re = regex::Regex::new(r#"<td><a href="/certificates/(c\d+)""#).unwrap();
        re.captures_iter(body)
            .map(|c| c[1].to_string())
            .collect::<Vec<_>>()
    };
    let p1 = get(s, "/certificates", Some(&session)).await;
    assert_eq!(p1.status, StatusCode::OK);
    let r1 = rows(&p1.body);
    assert_eq!(r1.len(), 50);
    assert_eq!(r1[0], "c000");
    assert!(
        p1.body.contains(r#"href="/certificates?after=c049""#),
        "{}",
        p1.body
    );
    let p3 = get(s, "/certificates?after=c099", Some(&session)).await;
    let r3 = rows(&p3.body);
    assert_eq!(r3.len(), 20);
    assert_eq!(r3[0], "c100");
    assert!(!p3.body.contains("Next page"));

    // Search by name or domain, case-insensitive; LIKE wildcards are literal.
    let r = get(s, "/certificates?q=C11", Some(&session)).await;
    assert_eq!(
        rows(&r.body),
        (110..120).map(|i| format!("c{i:03}")).collect::<Vec<_>>()
    );
    let r = get(s, "/certificates?q=c007.example", Some(&session)).await;
    assert_eq!(rows(&r.body), vec!["c007"]);
    let r = get(s, "/certificates?q=c_0", Some(&session)).await;
    assert!(rows(&r.body).is_empty());

    // State filter, and the overview counts and lists the same.
    let r = get(s, "/certificates?state=expiring", Some(&session)).await;
    assert_eq!(
        rows(&r.body),
        (0..10).map(|i| format!("c{i:03}")).collect::<Vec<_>>()
    );
    let o = get(s, "/", Some(&session)).await;
    assert!(
        o.body
            .contains(r#"href="/certificates?state=expiring"><b>10</b>"#),
        "{}",
        o.body
    );
    assert!(
        o.body.contains(r#"href="/certificates?state=valid"><b>110</b>"#),
        "{}",
        o.body
    );
    assert!(o.body.contains("less than a sixth of its lifetime left"));
    // Unknown certificate: a 404 page.
    assert_eq!(
        get(s, "/certificates/nope", Some(&session)).await.status,
        StatusCode::NOT_FOUND
    );
}

/// The dashboard's queries give the same answers on SQLite and PostgreSQL: overview counts and
/// order, list filters and paging, host sync counts, watch endpoints and findings, sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_agree_on_sqlite_and_postgres() {
    use certfleet_fleet::db::{Failure, ServedCheck};
    use certfleet_fleet::proto::{InstallReport, InstallState};
    let pg = tokio::task::spawn_blocking(certfleet_testkit::PgDatabase::create)
        .await
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for target in [dir.path().display().to_string(), pg.url().to_string()] {
        let db = FleetDb::open(&target).await.unwrap();
        for h in ["h1", "h2"] {
            db.create_host(h, T0).await.unwrap();
            db.touch_host(h, T0 - 60, "0.1.0").await.unwrap();
        }
        let hosts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (name, nb, on) in [
            ("a-valid", T0 - DAY, hosts(&["h1"])),
            ("b-expiring", T0 - 80 * DAY, hosts(&["h1"])),
            ("c-expired", T0 - 95 * DAY, hosts(&[])),
            ("d-failing", T0 - 10 * DAY, hosts(&["h2"])),
            ("e-disabled", T0 - DAY, hosts(&[])),
        ] {
            db.create_certificate(name, &settings(name), &on, T0 - 100 * DAY)
                .await
                .unwrap();
            issue(&db, name, nb).await;
        }
        let f = Failure {
            now: T0,
            error: "rateLimited",
            next_attempt: T0 + 3600,
            next_attempt_reason: "backoff",
            lease_owner: None,
            actor: "server",
        };
        db.record_failure("d-failing", &f).await.unwrap();
        db.set_enabled("e-disabled", false).await.unwrap();
        // h1 installed a-valid's current serial; b-expiring an old one; h2 nothing yet.
        for (cert, serial) in [
            ("a-valid", format!("{:x}", T0 - DAY)),
            ("b-expiring", "0ld".to_string()),
        ] {
            let r = InstallReport {
                certificate: cert.into(),
                state: InstallState::Verified,
                installed_serial: Some(serial),
                served_serial: None,
                endpoint: Some("127.0.0.1:1".into()),
                error: None,
                agent_version: "0.1.0".into(),
            };
            db.put_install_report("h1", &r, T0).await.unwrap();
        }

        let o = db.overview(T0, 10).await.unwrap();
        let count = |s: &str| o.by_state.iter().find(|(k, _)| *k == s).unwrap().1;
        assert_eq!(
            (
                count("valid"),
                count("expiring"),
                count("expired"),
                count("failing"),
                count("disabled")
            ),
            (1, 1, 1, 1, 1),
            "{target}"
        );
        let needs: Vec<&str> = o.needs_human.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(needs, ["c-expired", "d-failing", "b-expiring"], "{target}");
        assert_eq!(o.needs_human[1].last_error.as_deref(), Some("rateLimited"));
        assert_eq!((o.hosts.in_sync, o.hosts.out_of_sync), (0, 2), "{target}");

        let p = db.certificate_page(T0, None, None, None, 2).await.unwrap();
        let names: Vec<&str> = p.rows.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a-valid", "b-expiring"]);
        assert_eq!(p.next_after.as_deref(), Some("b-expiring"));
        assert_eq!(p.installs["a-valid"][0].host, "h1");
        assert!(p.installs["a-valid"][0].in_sync());
        assert!(!p.installs["b-expiring"][0].in_sync());
        let p = db
            .certificate_page(T0, Some("D-FAIL"), Some("failing"), Some("a"), 10)
            .await
            .unwrap();
        assert_eq!(p.rows.len(), 1, "{target}");
        assert_eq!(p.rows[0].state, "failing");
        assert!(p.next_after.is_none());
        let p = db.certificate_page(T0, Some("%"), None, None, 10).await.unwrap();
        assert!(p.rows.is_empty(), "{target}: % is literal");

        let rows = db.host_rows().await.unwrap();
        let h1 = rows.iter().find(|h| h.name == "h1").unwrap();
        assert_eq!((h1.assigned, h1.behind, h1.failures), (2, 1, 0), "{target}");
        let h2 = rows.iter().find(|h| h.name == "h2").unwrap();
        assert_eq!((h2.assigned, h2.behind), (1, 1), "{target}");

        assert!(
            db.add_watch_endpoint("a-valid", "a.example.com:443", None, T0)
                .await
                .unwrap()
        );
        assert!(
            !db.add_watch_endpoint("a-valid", "a.example.com:443", None, T0)
                .await
                .unwrap()
        );
        let targets = db.watch_targets().await.unwrap();
        let mut eps: Vec<(String, String)> = targets
            .iter()
            .map(|t| (t.certificate.clone(), t.source.clone()))
            .collect();
        eps.sort();
        assert_eq!(
            eps,
            [
                ("a-valid".to_string(), "admin".to_string()),
                ("a-valid".to_string(), "host:h1".to_string()),
                ("b-expiring".to_string(), "host:h1".to_string()),
            ],
            "{target}"
        );
        let id = targets[0].certificate_id;
        let check = ServedCheck {
            certificate: targets[0].certificate.clone(),
            endpoint: targets[0].endpoint.clone(),
            source: targets[0].source.clone(),
            state: "stale".into(),
            detail: "serves the previous certificate".into(),
            leaf_sha256: None,
            served_serial: Some("0ld".into()),
            served_not_after: Some(T0 + DAY),
            chain_len: 2,
            checked_at: T0,
        };
        db.put_served_checks(&[(id, check.clone())]).await.unwrap();
        assert_eq!(db.all_served_checks().await.unwrap(), vec![check.clone()]);
        let o = db.overview(T0, 10).await.unwrap();
        assert_eq!(o.served, vec![("stale".to_string(), 1)]);
        assert_eq!(o.served_problems, vec![check]);
        assert!(
            db.remove_watch_endpoint("a-valid", "a.example.com:443")
                .await
                .unwrap()
        );

        db.create_session("h", "c", T0, T0 + 10).await.unwrap();
        assert_eq!(db.session("h", T0 + 9).await.unwrap().unwrap().csrf, "c");
        assert!(db.session("h", T0 + 10).await.unwrap().is_none());
        assert!(db.delete_session("h").await.unwrap());
        db.close().await;
    }
}
