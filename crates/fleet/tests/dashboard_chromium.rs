//! A real headless Chromium (Debian `chromium` + `chromium-driver`, driven over WebDriver)
//! logs in to the dashboard served over the real TLS listener by typing the admin token into
//! the login form, then loads every page: each screenshot must be a real PNG of the window's
//! size, and each page must show its text. On a phone-sized window no page scrolls sideways.
//!
//! Set `CERTFLEET_DASHBOARD_PNG=FILE` to keep the overview's screenshot (docs/dashboard.png),
//! `CERTFLEET_DASHBOARD_SHOTS=DIR` to keep every page's.
//! Without the browser the test is skipped with a message, except in CI (`CI` set), where
//! that is a failure.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use certfleet_core::SystemClock;
use certfleet_fleet::db::{
    CertificateSettings, Commit, Failure, FleetDb, HostCredential, IssuedCert, NewEvent, ServedCheck,
};
use certfleet_fleet::pki::{InternalCa, ServerIdentity};
use certfleet_fleet::proto::{ChallengeSettings, Custody, InstallReport, InstallState};
use certfleet_fleet::server::{AppState, api};
use certfleet_fleet::token::hash_secret;
use serde_json::{Value, json};

const TOKEN: &str = "cfa1_chromium-test-token";
const DAY: i64 = 86_400;
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const W3C_ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

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

async fn issue(db: &FleetDb, name: &str, not_before: i64, days: i64, reason: &str) {
    let cert = IssuedCert {
        cert_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        chain_pem: String::new(),
        serial: format!("04{:x}", not_before ^ name.len() as i64),
        not_before,
        not_after: not_before + days * DAY,
        issuer: "R11 (Let's Encrypt)".into(),
        key_sha256: "0".repeat(64),
        issued_at: not_before,
    };
    let c = Commit {
        cert: &cert,
        key_blob: None,
        lease_owner: None,
        csr_id: None,
        next_attempt: cert.not_after - days * DAY / 3,
        next_attempt_reason: reason,
        actor: "server",
        imported: false,
    };
    db.commit_issued(name, &c).await.unwrap();
}

/// A small fleet with something in every state.
async fn seed(db: &FleetDb, now: i64) {
    db.put_admin_token(&hash_secret(TOKEN), "test", now)
        .await
        .unwrap();
    for (h, seen, version) in [
        ("web1", Some(now - 120), "0.1.0"),
        ("web2", Some(now - 300), "0.1.0"),
        ("mail1", Some(now - 3 * DAY), "0.0.9"),
        ("db1", None, ""),
    ] {
        db.create_host(h, now - 30 * DAY).await.unwrap();
        if let Some(t) = seen {
            let fp = hash_secret(h);
            let cred = HostCredential {
                cert_sha256: &fp,
                serial: "1a2b",
                agent_version: version,
            };
            db.set_host_credential(h, &cred, now - 30 * DAY).await.unwrap();
            db.touch_host(h, t, version).await.unwrap();
        }
    }
    let certs: [(&str, &[&str], &[&str]); 13] = [
        ("www", &["example.com", "www.example.com"], &["web1", "web2"]),
        ("vpn", &["vpn.example.com"], &[]),
        ("grafana", &["grafana.example.com"], &["web1"]),
        ("git", &["git.example.com"], &["web2"]),
        (
            "shop",
            &["shop.example.com", "www.shop.example.com"],
            &["web1", "web2"],
        ),
        ("api", &["api.example.com"], &["web1"]),
        ("blog", &["blog.example.com"], &["web2"]),
        ("mail", &["mail.example.com"], &["mail1"]),
        ("intranet", &["intranet.example.com"], &[]),
        ("status", &["status.example.com"], &["web1"]),
        ("legacy", &["legacy.example.com"], &[]),
        ("cdn", &["cdn.example.com"], &["web2"]),
        ("new-app", &["new.example.com"], &[]),
    ];
    for (name, ids, hosts) in certs {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        db.create_certificate(name, &settings(ids), &hosts, now - 60 * DAY)
            .await
            .unwrap();
    }
    issue(db, "www", now - 12 * DAY, 90, "ARI window from the CA").await;
    issue(db, "vpn", now - 78 * DAY, 90, "one third of its lifetime left").await;
    issue(db, "grafana", now - 3 * DAY, 90, "one third of its lifetime left").await;
    issue(db, "git", now - 44 * DAY, 90, "one third of its lifetime left").await;
    issue(db, "shop", now - 10 * DAY, 90, "one third of its lifetime left").await;
    issue(db, "api", now - 5 * DAY, 90, "ARI window from the CA").await;
    issue(db, "blog", now - 20 * DAY, 90, "one third of its lifetime left").await;
    issue(db, "mail", now - 80 * DAY, 90, "one third of its lifetime left").await;
    issue(
        db,
        "intranet",
        now - 95 * DAY,
        90,
        "one third of its lifetime left",
    )
    .await;
    issue(db, "status", now - 30 * DAY, 90, "one third of its lifetime left").await;
    issue(db, "legacy", now - 40 * DAY, 90, "one third of its lifetime left").await;
    issue(db, "cdn", now - 2 * DAY, 90, "ARI window from the CA").await;
    for _ in 0..3 {
        let f = Failure {
            now: now - 3600,
            error: "the CA could not reach http://mail.example.com/.well-known/acme-challenge/…: connection refused \
                    (is port 80 open and proxied to the http-01 responder?)",
            next_attempt: now + 4 * 3600,
            next_attempt_reason: "backoff after 3 failures in a row",
            lease_owner: None,
            actor: "server",
        };
        db.record_failure("mail", &f).await.unwrap();
    }
    db.set_enabled("legacy", false).await.unwrap();
    db.claim_lease("cdn", "node-a", now, now + 600).await.unwrap();
    let reports = [
        ("web1", "shop", InstallState::Verified, "203.0.113.10:443", None),
        ("web2", "shop", InstallState::Verified, "203.0.113.11:443", None),
        ("web1", "api", InstallState::Verified, "203.0.113.10:8443", None),
        ("web1", "status", InstallState::Verified, "203.0.113.10:443", None),
        ("web1", "www", InstallState::Verified, "203.0.113.10:443", None),
        ("web1", "grafana", InstallState::Installed, "", None),
        ("web2", "www", InstallState::Verified, "203.0.113.11:443", None),
        ("web2", "git", InstallState::Verified, "203.0.113.11:443", None),
        ("web2", "cdn", InstallState::Verified, "203.0.113.11:443", None),
        (
            "web2",
            "blog",
            InstallState::RolledBack,
            "203.0.113.11:443",
            Some("after the reload 203.0.113.11:443 still served serial 03ff…: old files restored"),
        ),
        ("mail1", "mail", InstallState::Installed, "", None),
    ];
    for (host, cert, state, endpoint, error) in reports {
        let c = db.certificate(cert).await.unwrap();
        let serial = c.current.as_ref().map(|c| c.serial.clone());
        let r = InstallReport {
            certificate: cert.into(),
            state,
            installed_serial: serial.clone(),
            served_serial: serial,
            endpoint: (!endpoint.is_empty()).then(|| endpoint.to_string()),
            error: error.map(str::to_string),
            agent_version: "0.1.0".into(),
        };
        db.put_install_report(host, &r, now - 600).await.unwrap();
        let ev = NewEvent {
            at: now - 600,
            certificate: Some(cert),
            host: Some(host),
            kind: state.as_str(),
            actor: &format!("host:{host}"),
            detail: error.unwrap_or("serial matches"),
        };
        db.append_event(&ev).await.unwrap();
    }
    let shop = db.certificate("shop").await.unwrap();
    let blog = db.certificate("blog").await.unwrap();
    let check = |cert: &str, endpoint: &str, state: &str, detail: &str, na: i64| ServedCheck {
        certificate: cert.into(),
        endpoint: endpoint.into(),
        source: "host:web1".into(),
        state: state.into(),
        detail: detail.into(),
        leaf_sha256: None,
        served_serial: None,
        served_not_after: Some(na),
        chain_len: 2,
        checked_at: now - 60,
    };
    let www = db.certificate("www").await.unwrap();
    let git = db.certificate("git").await.unwrap();
    let www_na = www.current.as_ref().unwrap().not_after;
    let git_na = git.current.as_ref().unwrap().not_after;
    let shop_na = shop.current.as_ref().unwrap().not_after;
    let blog_na = blog.current.as_ref().unwrap().not_after;
    db.put_served_checks(&[
        (
            www.id,
            check("www", "203.0.113.10:443", "ok", "serves the newest certificate; chain trusted", www_na),
        ),
        (
            www.id,
            check("www", "203.0.113.11:443", "ok", "serves the newest certificate; chain trusted", www_na),
        ),
        (
            git.id,
            check(
                "git",
                "203.0.113.11:443",
                "stale",
                "serves the previous certificate (serial 03a1…): the service was not reloaded after the renewal",
                git_na - 60 * DAY,
            ),
        ),
        (
            shop.id,
            check("shop", "203.0.113.10:443", "ok", "serves the newest certificate; chain trusted", shop_na),
        ),
        (
            blog.id,
            check(
                "blog",
                "203.0.113.11:443",
                "incomplete-chain",
                "serves the certificate without the intermediate that signed it (R11): the service uses cert.pem \
                 instead of fullchain.pem",
                blog_na,
            ),
        ),
    ])
    .await
    .unwrap();
}

struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
    session: String,
}

impl Drop for Driver {
    /// Closes the browser even when the test failed midway (a killed chromedriver would leave
    /// it running): the session is deleted, then chromedriver's whole process group is killed.
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = Command::new("curl")
                .args(["-s", "--max-time", "5", "-X", "DELETE"])
                .arg(format!("{}/session/{}", self.base, self.session))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ =
                nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(profile: &Path, log: &Path) -> Driver {
        let port = certfleet_testkit::free_port();
        use std::os::unix::process::CommandExt;
        let child = Command::new(CHROMEDRIVER)
            // Its own process group, with the browser it starts: killed together at the end.
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer on {base}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut d = Driver {
            child,
            base,
            http,
            session: String::new(),
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--hide-scrollbars", "--no-first-run",
                         format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let v = d.call(reqwest::Method::POST, "/session", Some(caps)).await;
        d.session = v["sessionId"].as_str().expect("a session id").to_string();
        d
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method.clone(), path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status} {v}"));
        }
        Ok(v["value"].clone())
    }

    /// After a click the browser navigates on its own time: wait for the page at `url` (calls
    /// made while the old page unloads may fail; they are retried).
    async fn wait_url(&self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.try_call(reqwest::Method::GET, &self.at("/url"), None).await;
            let ready = self
                .try_call(
                    reqwest::Method::POST,
                    &self.at("/execute/sync"),
                    Some(json!({"script": "return document.readyState", "args": []})),
                )
                .await;
            if now.as_ref().ok().and_then(|v| v.as_str()) == Some(url) && ready == Ok(json!("complete")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still at {now:?} ({ready:?}), expected {url}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    async fn goto(&self, url: &str) {
        self.call(
            reqwest::Method::POST,
            &self.at("/url"),
            Some(json!({ "url": url })),
        )
        .await;
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, &self.at("/url"), None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn element(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self
                .try_call(
                    reqwest::Method::POST,
                    &self.at("/element"),
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            match v.as_ref().ok().and_then(|v| v[W3C_ELEMENT].as_str()) {
                Some(id) => return id.to_string(),
                None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                None => panic!("no element for {css}: {v:?}"),
            }
        }
    }

    /// The visible text of the first element matching `css` (found again if the page was
    /// replaced meanwhile).
    async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let e = self.element(css).await;
            match self
                .try_call(
                    reqwest::Method::GET,
                    &self.at(&format!("/element/{e}/text")),
                    None,
                )
                .await
            {
                Ok(v) => return v.as_str().unwrap().to_string(),
                Err(err) if err.contains("stale element") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => panic!("text of {css}: {err}"),
            }
        }
    }

    /// Waits until the text of `css` contains `needle` (the page after a form was sent).
    async fn wait_text(&self, css: &str, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.text(css).await;
            if text.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed {needle:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn script(&self, js: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            &self.at("/execute/sync"),
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// A PNG screenshot of the viewport, checked: PNG signature, IHDR size as the window's.
    async fn screenshot(&self) -> Vec<u8> {
        let b64 = self
            .call(reqwest::Method::GET, &self.at("/screenshot"), None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        assert_eq!(&png[12..16], b"IHDR");
        let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
        let (iw, ih) = (
            self.script("return window.innerWidth").await.as_u64().unwrap(),
            self.script("return window.innerHeight").await.as_u64().unwrap(),
        );
        assert_eq!((u64::from(w), u64::from(h)), (iw, ih), "screenshot size");
        // A blank page compresses to a few hundred bytes; text and tables do not.
        assert!(png.len() > 8_000, "screenshot of {} bytes: blank?", png.len());
        png
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_logs_in_and_sees_every_page() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser test: apt-get install chromium chromium-driver"
        );
        eprintln!(
            "SKIPPED chromium_logs_in_and_sees_every_page: {CHROMIUM} or {CHROMEDRIVER} missing \
             (apt-get install chromium chromium-driver)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SystemClock);
    let now_dt = time::OffsetDateTime::now_utc();
    let now = now_dt.unix_timestamp();
    let db = FleetDb::open(&dir.path().display().to_string()).await.unwrap();
    seed(&db, now).await;
    let ca = InternalCa::generate(now_dt).unwrap();
    let (identity, _) =
        ServerIdentity::load_or_create(dir.path(), &["127.0.0.1".to_string()], now_dt).unwrap();
    let tls = certfleet_fleet::tls::server_config(&identity, &ca).unwrap();
    let state = AppState::for_tests(db, clock, ca);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(certfleet_fleet::tls::serve_tls(
        listener,
        tls,
        api::app(state),
        async {
            let _ = stop_rx.await;
        },
    ));
    let base = format!("https://{addr}");

    let profile = tempfile::tempdir().unwrap();
    let log = dir.path().join("chromedriver.log");
    let d = Driver::start(profile.path(), &log).await;

    // Not logged in: the overview sends to the login page.
    d.goto(&format!("{base}/")).await;
    assert_eq!(d.url().await, format!("{base}/login"));
    let png = d.screenshot().await;
    assert!(d.text("main").await.contains("Log in to certfleet"));
    let _ = png;

    // A wrong token: the form again, with the reason.
    let secret = d.element("#secret").await;
    d.call(
        reqwest::Method::POST,
        &d.at(&format!("/element/{secret}/value")),
        Some(json!({"text": "cfa1_wrong"})),
    )
    .await;
    let button = d.element("button[type=submit]").await;
    d.call(
        reqwest::Method::POST,
        &d.at(&format!("/element/{button}/click")),
        Some(json!({})),
    )
    .await;
    d.wait_text("main", "neither the admin token").await;

    // The admin token: logged in, on the overview.
    let secret = d.element("#secret").await;
    d.call(
        reqwest::Method::POST,
        &d.at(&format!("/element/{secret}/value")),
        Some(json!({ "text": TOKEN })),
    )
    .await;
    let button = d.element("main button[type=submit]").await;
    d.call(
        reqwest::Method::POST,
        &d.at(&format!("/element/{button}/click")),
        Some(json!({})),
    )
    .await;
    d.wait_url(&format!("{base}/")).await;
    // The browser keeps the cookie as HttpOnly: scripts cannot read it.
    assert_eq!(d.script("return document.cookie").await, json!(""));

    let pages: [(&str, &[&str]); 6] = [
        (
            "/",
            &[
                "Needs a human",
                "mail",
                "connection refused",
                "incomplete-chain",
                "Hosts",
            ],
        ),
        (
            "/certificates",
            &[
                "shop.example.com",
                "R11",
                "ARI window",
                "backoff after 3 failures",
                "expired",
            ],
        ),
        ("/certificates?state=failing", &["mail.example.com"]),
        (
            "/certificates/blog",
            &[
                "rolled-back",
                "cert.pem instead of fullchain.pem",
                "History",
                "Renew now",
            ],
        ),
        ("/hosts", &["web1", "mail1", "silent", "not-enrolled"]),
        ("/hosts/web2", &["blog", "rolled-back", "old files restored"]),
    ];
    for (path, want) in pages {
        d.goto(&format!("{base}{path}")).await;
        assert_eq!(
            d.url().await,
            format!("{base}{path}"),
            "redirected away from {path}"
        );
        let png = d.screenshot().await;
        let text = d.text("body").await;
        for w in want {
            assert!(text.contains(w), "{path} lacks {w:?}:\n{text}");
        }
        if path == "/"
            && let Some(out) = std::env::var_os("CERTFLEET_DASHBOARD_PNG")
        {
            std::fs::write(&out, &png).unwrap();
        }
        if let Some(dir) = std::env::var_os("CERTFLEET_DASHBOARD_SHOTS") {
            let file = format!(
                "{}.png",
                path.trim_start_matches('/').replace(['/', '?', '='], "_")
            );
            std::fs::write(Path::new(&dir).join(file), &png).unwrap();
        }
        assert!(!text.contains("certificates?state=\""), "{path}");
    }

    // A form from the page: "Renew now" on the certificate page, through the browser.
    d.goto(&format!("{base}/certificates/api")).await;
    let renew = d.element("form[action$='/renew'] button").await;
    d.call(
        reqwest::Method::POST,
        &d.at(&format!("/element/{renew}/click")),
        Some(json!({})),
    )
    .await;
    d.wait_url(&format!("{base}/certificates/api")).await;
    d.wait_text("main", "renew-requested").await;

    // A phone: nothing wider than the screen (wide tables scroll inside their box).
    d.call(
        reqwest::Method::POST,
        &d.at("/window/rect"),
        Some(json!({"width": 390, "height": 844})),
    )
    .await;
    for path in ["/", "/certificates", "/certificates/blog", "/hosts"] {
        d.goto(&format!("{base}{path}")).await;
        let fits = d
            .script("return document.documentElement.scrollWidth <= window.innerWidth")
            .await;
        assert_eq!(fits, json!(true), "{path} scrolls sideways on a phone");
        d.screenshot().await;
    }

    // Log out through the header's button: back to the login page, the session ended.
    let logout = d.element("header form button").await;
    d.call(
        reqwest::Method::POST,
        &d.at(&format!("/element/{logout}/click")),
        Some(json!({})),
    )
    .await;
    d.wait_url(&format!("{base}/login")).await;
    d.goto(&format!("{base}/hosts")).await;
    assert_eq!(d.url().await, format!("{base}/login"));

    d.call(reqwest::Method::DELETE, &d.at(""), None).await;
    drop(d);
    let _ = stop_tx.send(());
    let _ = server.await;
}
