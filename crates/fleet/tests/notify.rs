//! Alerts against real receivers: aiosmtpd on loopback offering STARTTLS with a private CA
//! (trusted through `--notify-ca-file`), an axum webhook receiver that checks the HMAC
//! signature itself, and a command that writes its standard input to a file. The alert watch
//! runs on a real SQLite database with a test clock, so "once a day" is tested without waiting
//! a day.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use certfleet_core::FixedClock;
use certfleet_fleet::db::{Commit, Failure, FleetDb, IssuedCert};
use certfleet_fleet::notify::{Message, Notifier, NotifyConfig, SIGNATURE_HEADER};
use certfleet_fleet::proto::{ChallengeSettings, Custody, InstallReport, InstallState};
use certfleet_fleet::server::alerts::{AlertWatch, WatchSettings};
use certfleet_testkit::{PgDatabase, SmtpReceiver, localhost_tls};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const T0: i64 = 1_800_000_000;
const DAY: i64 = 24 * 3600;
const CA_REASON: &str = "urn:ietf:params:acme:error:connection: 127.0.0.1: Fetching http://www.example.test/.well-known/acme-challenge/x: Connection refused";

/// A webhook receiver: checks `X-Certfleet-Signature-256` with its own HMAC code and its own
/// copy of the secret; 401 on a wrong or missing signature. Keeps every request.
struct Hook {
    url: String,
    got: Arc<Mutex<Vec<(bool, serde_json::Value)>>>,
    _task: tokio::task::JoinHandle<()>,
}

async fn hook(secret: &'static [u8]) -> Hook {
    let got: Arc<Mutex<Vec<(bool, serde_json::Value)>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
                mac.update(&body);
                let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                let sig = headers
                    .get(SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let ok = sig == want
                    && headers.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/json");
                let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                sink.lock().unwrap().push((ok, json));
                if ok {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Hook {
        url: format!("http://{addr}/hook"),
        got,
        _task: task,
    }
}

impl Hook {
    fn accepted(&self) -> Vec<serde_json::Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(ok, _)| *ok)
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn rejected(&self) -> usize {
        self.got.lock().unwrap().iter().filter(|(ok, _)| !*ok).count()
    }
}

fn secret_file(dir: &Path, secret: &str) -> std::path::PathBuf {
    let p = dir.join("webhook.secret");
    std::fs::write(&p, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A command that appends each JSON it gets on stdin, one per line, to `out`.
fn command(dir: &Path, out: &Path) -> std::path::PathBuf {
    let p = dir.join("notify.sh");
    std::fs::write(
        &p,
        format!("#!/bin/sh\n{{ cat; echo; }} >> '{}'\n", out.display()),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn settings(name: &str) -> certfleet_fleet::db::CertificateSettings {
    certfleet_fleet::db::CertificateSettings {
        identifiers: vec![format!("{name}.example.test")],
        custody: Custody::Server,
        key_type: "ecdsa-p256".into(),
        challenge: ChallengeSettings::Http01,
        profile: None,
        comment: None,
        acme_server: None,
        acme_account: None,
    }
}

async fn issue(db: &FleetDb, name: &str, serial: &str, not_before: i64, lifetime: i64) {
    let cert = IssuedCert {
        cert_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        chain_pem: String::new(),
        serial: serial.into(),
        not_before,
        not_after: not_before + lifetime,
        issuer: "Pebble".into(),
        key_sha256: "0".repeat(64),
        issued_at: not_before,
    };
    let c = Commit {
        cert: &cert,
        key_blob: None,
        lease_owner: None,
        csr_id: None,
        next_attempt: cert.not_after - lifetime / 3,
        next_attempt_reason: "one third of the lifetime left",
        actor: "server",
        imported: false,
    };
    db.commit_issued(name, &c).await.unwrap();
}

async fn fail(db: &FleetDb, name: &str, now: i64) {
    let f = Failure {
        now,
        error: CA_REASON,
        next_attempt: now + 600,
        next_attempt_reason: "retry",
        lease_owner: None,
        actor: "server",
    };
    db.record_failure(name, &f).await.unwrap();
}

fn at(t: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t).unwrap()
}

fn watch(
    db: &FleetDb,
    clock: &Arc<FixedClock>,
    notifier: Notifier,
    digest_at: Option<(u8, u8)>,
) -> AlertWatch {
    AlertWatch {
        db: db.clone(),
        clock: clock.clone(),
        notifier: Arc::new(notifier),
        settings: WatchSettings {
            host_silent_after: Duration::from_secs(2 * 3600),
            digest_at,
            interval: Duration::from_secs(1),
            server_url: "https://fleet.example.test:8443".into(),
            default_ca: "https://pebble.example.test/dir".into(),
        },
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn kinds(msgs: &[Message]) -> Vec<(String, String)> {
    msgs.iter()
        .map(|m| {
            (
                m.kind.clone(),
                m.alerts.first().map(|a| a.cause.clone()).unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_renewal_is_told_once_by_every_channel_then_resolved() {
    if !SmtpReceiver::available() {
        println!("SKIPPED: /usr/bin/python3 has no aiosmtpd (apt-get install python3-aiosmtpd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tls = localhost_tls(dir.path()).unwrap();
    let smtp = SmtpReceiver::start_tls(&tls.cert, &tls.key).unwrap();
    let hook = hook(b"hook-s3cret").await;
    let out = dir.path().join("command.out");
    let cfg = NotifyConfig {
        smtp_url: Some(format!("smtp://127.0.0.1:{}", smtp.port())),
        smtp_from: Some("certfleet@example.test".into()),
        emails: vec!["ops@example.test".into()],
        webhooks: vec![hook.url.clone()],
        webhook_secret_file: Some(secret_file(dir.path(), "hook-s3cret")),
        command: Some(command(dir.path(), &out)),
        ca_file: Some(tls.ca_bundle.clone()),
        ..NotifyConfig::default()
    };
    let db = FleetDb::open(&dir.path().display().to_string()).await.unwrap();
    let clock = Arc::new(FixedClock::new(at(T0)));
    let w = watch(&db, &clock, Notifier::from_config(&cfg).unwrap(), None);

    db.create_certificate("www", &settings("www"), &[], T0)
        .await
        .unwrap();
    issue(&db, "www", "01", T0, 90 * DAY).await;
    // Routine state and one failure: nothing.
    assert!(w.pass().await.unwrap().is_empty());
    fail(&db, "www", T0 + 10).await;
    assert!(
        w.pass().await.unwrap().is_empty(),
        "one failure is not yet worth a message"
    );

    // The second failure in a row: one alert, through each channel.
    fail(&db, "www", T0 + 20).await;
    let sent = w.pass().await.unwrap();
    assert_eq!(
        kinds(&sent),
        [("alert".to_string(), "renewal-failing".to_string())]
    );
    // More passes and more failures the same day: nothing new.
    for i in 0..4 {
        clock.set(at(T0 + 3600 * (i + 1)));
        fail(&db, "www", T0 + 3600 * (i + 1)).await;
        assert!(w.pass().await.unwrap().is_empty(), "pass {i} sent again");
    }

    let mail = smtp
        .wait_for(Duration::from_secs(20), |m| m.subject.contains("www"))
        .unwrap();
    assert!(
        mail.tls,
        "the relay offered STARTTLS: the mail must have gone over it"
    );
    assert_eq!(mail.to, ["ops@example.test"]);
    assert_eq!(mail.from, "certfleet@example.test");
    assert!(mail.subject.contains("renewal failing"), "{}", mail.subject);
    assert!(
        mail.body.contains(CA_REASON),
        "the CA's reason, verbatim:\n{}",
        mail.body
    );
    assert!(
        mail.body.contains("certfleet fleet cert show www"),
        "{}",
        mail.body
    );
    wait_until("the webhook", || hook.accepted().len() == 1).await;
    let body = &hook.accepted()[0];
    assert_eq!(body["kind"], "alert");
    assert_eq!(body["alerts"][0]["certificate"], "www");
    assert_eq!(body["alerts"][0]["cause"], "renewal-failing");
    assert!(body["alerts"][0]["detail"].as_str().unwrap().contains(CA_REASON));
    wait_until("the command", || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.lines().count() == 1)
    })
    .await;
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&out).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(line, *body, "the command gets the same JSON as the webhook");

    // A day later and still failing: one reminder.
    clock.set(at(T0 + 20 + DAY));
    let sent = w.pass().await.unwrap();
    assert_eq!(
        kinds(&sent),
        [("reminder".to_string(), "renewal-failing".to_string())]
    );
    assert!(
        sent[0].subject.starts_with("certfleet: still: certificate www"),
        "{}",
        sent[0].subject
    );
    assert!(w.pass().await.unwrap().is_empty());

    // Renewed: one "resolved", then quiet.
    issue(&db, "www", "02", T0 + DAY + 60, 90 * DAY).await;
    clock.set(at(T0 + DAY + 120));
    let sent = w.pass().await.unwrap();
    assert_eq!(
        kinds(&sent),
        [("resolved".to_string(), "renewal-failing".to_string())]
    );
    assert!(w.pass().await.unwrap().is_empty());
    let resolved = smtp
        .wait_for(Duration::from_secs(20), |m| m.subject.contains("resolved"))
        .unwrap();
    assert!(
        resolved.subject.contains("certificate www"),
        "{}",
        resolved.subject
    );
    // Exactly three mails: alert, reminder, resolved; the same over the webhook.
    smtp.wait_for(Duration::from_secs(20), |m| m.subject.contains("still"))
        .unwrap();
    wait_until("three webhooks", || hook.accepted().len() == 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let subjects: Vec<String> = smtp.mails().iter().map(|m| m.subject.clone()).collect();
    assert_eq!(subjects.len(), 3, "{subjects:#?}");
    assert_eq!(hook.rejected(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_failures_expiry_and_silent_hosts_and_the_digest_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = FleetDb::open(&dir.path().display().to_string()).await.unwrap();
    causes_and_digest(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_failures_expiry_and_silent_hosts_and_the_digest_on_postgres() {
    let pg = tokio::task::spawn_blocking(PgDatabase::create)
        .await
        .unwrap()
        .unwrap();
    let db = FleetDb::open(pg.url()).await.unwrap();
    causes_and_digest(db).await;
}

/// Two server nodes sharing one PostgreSQL database, passing at the same moments: each
/// message goes out once between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_postgres_send_each_message_once() {
    let pg = tokio::task::spawn_blocking(PgDatabase::create)
        .await
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hook = hook(b"k").await;
    let cfg = NotifyConfig {
        webhooks: vec![hook.url.clone()],
        webhook_secret_file: Some(secret_file(dir.path(), "k")),
        ..NotifyConfig::default()
    };
    let a = FleetDb::open(pg.url()).await.unwrap();
    let b = FleetDb::open(pg.url()).await.unwrap();
    let clock = Arc::new(FixedClock::new(at(T0)));
    let wa = watch(&a, &clock, Notifier::from_config(&cfg).unwrap(), None);
    let wb = watch(&b, &clock, Notifier::from_config(&cfg).unwrap(), None);
    for i in 0..5 {
        let name = format!("c{i}");
        a.create_certificate(&name, &settings(&name), &[], T0)
            .await
            .unwrap();
        issue(&a, &name, &format!("0{i}"), T0, 90 * DAY).await;
        fail(&a, &name, T0).await;
        fail(&a, &name, T0 + 1).await;
    }
    let mut total = 0;
    for _ in 0..3 {
        let (x, y) = tokio::join!(wa.pass(), wb.pass());
        total += x.unwrap().len() + y.unwrap().len();
    }
    assert_eq!(total, 5, "one alert per certificate between both nodes");
    for i in 0..5 {
        issue(&b, &format!("c{i}"), &format!("1{i}"), T0 + 60, 90 * DAY).await;
    }
    clock.set(at(T0 + 120));
    let mut resolved = 0;
    for _ in 0..3 {
        let (x, y) = tokio::join!(wa.pass(), wb.pass());
        resolved += x.unwrap().len() + y.unwrap().len();
    }
    assert_eq!(resolved, 5, "one resolved per certificate between both nodes");
    wait_until("ten webhooks", || hook.accepted().len() == 10).await;
}

async fn causes_and_digest(db: FleetDb) {
    let dir = tempfile::tempdir().unwrap();
    let hook = hook(b"k").await;
    let cfg = NotifyConfig {
        webhooks: vec![hook.url.clone()],
        webhook_secret_file: Some(secret_file(dir.path(), "k")),
        ..NotifyConfig::default()
    };
    // 06:00 UTC on the test day; the digest goes at 07:30.
    let day0 = T0 - T0 % DAY;
    let clock = Arc::new(FixedClock::new(at(day0 + 6 * 3600)));
    let w = watch(&db, &clock, Notifier::from_config(&cfg).unwrap(), Some((7, 30)));
    let now = day0 + 6 * 3600;

    db.create_host("web1", now - 3 * 3600).await.unwrap();
    let cred = certfleet_fleet::db::HostCredential {
        cert_sha256: "ab",
        serial: "01",
        agent_version: "0.1.0",
    };
    db.set_host_credential("web1", &cred, now - 3 * 3600)
        .await
        .unwrap();
    db.touch_host("web1", now - 3 * 3600, "0.1.0").await.unwrap();
    // "soon" has 5 of its 30 days left (less than a sixth), "old" expired an hour ago.
    db.create_certificate("soon", &settings("soon"), &["web1".into()], now)
        .await
        .unwrap();
    issue(&db, "soon", "0a", now - 25 * DAY, 30 * DAY).await;
    db.create_certificate("old", &settings("old"), &[], now)
        .await
        .unwrap();
    issue(&db, "old", "0b", now - 30 * DAY - 3600, 30 * DAY).await;
    let report = InstallReport {
        certificate: "soon".into(),
        state: InstallState::RolledBack,
        installed_serial: Some("09".into()),
        served_serial: Some("09".into()),
        endpoint: Some("127.0.0.1:443".into()),
        error: Some("the endpoint served serial 09, not 0a".into()),
        agent_version: "0.1.0".into(),
    };
    db.put_install_report("web1", &report, now).await.unwrap();

    // Urgent ones at once; "expiring" and the silent host wait for the digest.
    let mut sent = kinds(&w.pass().await.unwrap());
    sent.sort();
    assert_eq!(
        sent,
        [
            ("alert".to_string(), "expired".to_string()),
            ("alert".to_string(), "install-failed".to_string()),
        ]
    );
    assert!(w.pass().await.unwrap().is_empty());
    clock.set(at(day0 + 7 * 3600 + 29 * 60));
    assert!(w.pass().await.unwrap().is_empty(), "not 07:30 yet");
    clock.set(at(day0 + 7 * 3600 + 31 * 60));
    let sent = w.pass().await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, "digest");
    let mut causes: Vec<&str> = sent[0].alerts.iter().map(|a| a.cause.as_str()).collect();
    causes.sort();
    assert_eq!(causes, ["expiring", "host-silent"]);
    assert!(w.pass().await.unwrap().is_empty(), "one digest a day");

    // The host checks in again and reports a verified install: both resolved.
    let t = day0 + 8 * 3600;
    clock.set(at(t));
    db.touch_host("web1", t, "0.1.0").await.unwrap();
    let ok = InstallReport {
        state: InstallState::Verified,
        error: None,
        ..report
    };
    db.put_install_report("web1", &ok, t).await.unwrap();
    let mut sent = kinds(&w.pass().await.unwrap());
    sent.sort();
    assert_eq!(
        sent,
        [
            ("resolved".to_string(), "host-silent".to_string()),
            ("resolved".to_string(), "install-failed".to_string()),
        ]
    );
    wait_until("five webhooks", || hook.accepted().len() == 5).await;
    // Disabling the expired certificate takes it off the watch without a "resolved".
    db.set_enabled("old", false).await.unwrap();
    assert!(w.pass().await.unwrap().is_empty());
    let open: Vec<String> = db
        .open_notifications()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.subject)
        .collect();
    assert_eq!(
        open,
        ["certificate:soon"],
        "only the expiring certificate is still open"
    );
    let rolled = hook
        .accepted()
        .into_iter()
        .find(|v| v["alerts"][0]["cause"] == "install-failed" && v["kind"] == "alert")
        .unwrap();
    assert_eq!(rolled["alerts"][0]["host"], "web1");
    assert!(
        rolled["text"].as_str().unwrap().contains("rolled back"),
        "{rolled}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_of_channels_are_reported_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    // The receiver's secret is not the server's: every POST is refused.
    let hook = hook(b"the-right-one").await;
    let failing = dir.path().join("fail.sh");
    std::fs::write(
        &failing,
        "#!/bin/sh\ncat >/dev/null\necho 'no route to the pager' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = NotifyConfig {
        webhooks: vec![hook.url.clone()],
        webhook_secret_file: Some(secret_file(dir.path(), "a-wrong-one")),
        command: Some(failing.clone()),
        ..NotifyConfig::default()
    };
    let n = Arc::new(
        Notifier::from_config(&cfg)
            .unwrap()
            .with_retry_delays(vec![Duration::from_millis(100), Duration::from_millis(100)]),
    );
    let msg = Message {
        kind: "test".into(),
        subject: "certfleet: test message".into(),
        text: "test".into(),
        server: "https://fleet.example.test".into(),
        sent_at: T0,
        alerts: vec![],
    };
    let results = n.test(&msg).await;
    assert_eq!(results.len(), 2);
    assert!(!results[0].ok);
    assert!(
        results[0].error.as_deref().unwrap().contains("401"),
        "{results:?}"
    );
    assert!(!results[1].ok);
    let err = results[1].error.as_deref().unwrap();
    assert!(
        err.contains("exit status: 3") && err.contains("no route to the pager"),
        "{err}"
    );

    // In the background: the first attempt and two retries, then it gives up.
    n.deliver(msg.clone());
    wait_until("three more refused POSTs", || hook.rejected() == 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.rejected(), 4, "no attempt after the last retry");
    assert!(hook.accepted().is_empty());

    // A command that hangs is killed at its timeout.
    let slow = dir.path().join("slow.sh");
    std::fs::write(&slow, "#!/bin/sh\nsleep 30\n").unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let n = Notifier::from_config(&NotifyConfig {
        command: Some(slow),
        command_timeout: Some(Duration::from_millis(300)),
        ..NotifyConfig::default()
    })
    .unwrap();
    let started = std::time::Instant::now();
    let r = n.test(&msg).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(r[0].error.as_deref().unwrap().contains("did not finish"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_certificate_is_not_trusted_is_refused() {
    if !SmtpReceiver::available() {
        println!("SKIPPED: /usr/bin/python3 has no aiosmtpd (apt-get install python3-aiosmtpd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tls = localhost_tls(dir.path()).unwrap();
    let smtp = SmtpReceiver::start_tls(&tls.cert, &tls.key).unwrap();
    // No --notify-ca-file: the relay's private CA is not trusted, so STARTTLS fails and
    // nothing goes out in clear instead.
    let n = Notifier::from_config(&NotifyConfig {
        smtp_url: Some(smtp.url()),
        emails: vec!["ops@example.test".into()],
        ..NotifyConfig::default()
    })
    .unwrap();
    let msg = Message {
        kind: "test".into(),
        subject: "certfleet: test message".into(),
        text: "test".into(),
        server: "https://fleet.example.test".into(),
        sent_at: T0,
        alerts: vec![],
    };
    let r = n.test(&msg).await;
    assert!(!r[0].ok);
    let err = r[0].error.as_deref().unwrap();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(smtp.mails().is_empty());
}

fn test_message() -> Message {
    Message {
        kind: "test".into(),
        subject: "certfleet: test message".into(),
        text: "test".into(),
        server: "https://fleet.example.test".into(),
        sent_at: T0,
        alerts: vec![],
    }
}

fn smtp_notifier(url: String, ca: &Path) -> Notifier {
    Notifier::from_config(&NotifyConfig {
        smtp_url: Some(url),
        smtp_from: Some("certfleet@example.test".into()),
        emails: vec!["ops@example.test".into()],
        ca_file: Some(ca.to_path_buf()),
        ..NotifyConfig::default()
    })
    .unwrap()
}

/// `--smtp-url smtp://USER:PASS@...` authenticates after STARTTLS, `smtps://` over TLS from the
/// start; a wrong password is refused without being echoed; a password is never sent to a relay
/// that offers no STARTTLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_auth_over_starttls_and_implicit_tls() {
    use certfleet_testkit::SmtpMode;
    if !SmtpReceiver::available() {
        println!("SKIPPED: /usr/bin/python3 has no aiosmtpd (apt-get install python3-aiosmtpd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tls = localhost_tls(dir.path()).unwrap();
    // The password has characters a URL must percent-encode.
    let password = "pa ss@word:1";
    let encoded = "pa%20ss%40word%3A1";
    for (mode, scheme) in [(SmtpMode::StartTls, "smtp"), (SmtpMode::ImplicitTls, "smtps")] {
        let smtp = SmtpReceiver::start_auth(mode, &tls.cert, &tls.key, "alerts", password).unwrap();
        let ok = smtp_notifier(
            format!("{scheme}://alerts:{encoded}@127.0.0.1:{}", smtp.port()),
            &tls.ca_bundle,
        );
        let r = ok.test(&test_message()).await;
        assert!(r[0].ok, "{scheme}: {r:?}");
        let mail = smtp.wait_for(Duration::from_secs(10), |_| true).unwrap();
        assert!(mail.tls, "{scheme}");
        assert_eq!(mail.login.as_deref(), Some("alerts"), "{scheme}");
        assert!(
            !r[0].channel.contains(encoded)
                && !r[0].channel.contains(password)
                && !r[0].channel.contains("alerts:"),
            "{r:?}"
        );

        let wrong = smtp_notifier(
            format!("{scheme}://alerts:not-the-password@127.0.0.1:{}", smtp.port()),
            &tls.ca_bundle,
        );
        let r = wrong.test(&test_message()).await;
        assert!(!r[0].ok, "{scheme}: a wrong password was accepted");
        let err = r[0].error.as_deref().unwrap();
        assert!(
            err.contains("535") || err.to_lowercase().contains("auth"),
            "{scheme}: {err}"
        );
        assert!(!err.contains("not-the-password"), "{err}");
        assert_eq!(smtp.mails().len(), 1, "{scheme}");
    }
    // No STARTTLS offered: with a password in the URL, nothing is sent in clear.
    let plain = SmtpReceiver::start().unwrap();
    let n = smtp_notifier(
        format!("smtp://alerts:{encoded}@127.0.0.1:{}", plain.port()),
        &tls.ca_bundle,
    );
    let r = n.test(&test_message()).await;
    assert!(!r[0].ok);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(plain.mails().is_empty());
}
