//! One storage test suite, run against both backends: every case is an `async fn(TestDb)` and
//! `suite!` makes a `sqlite::CASE` and a `postgres::CASE` test of it. PostgreSQL is the server in
//! `DATABASE_URL` when set, else a throwaway cluster (certfleet-testkit); each test gets a fresh
//! database either way.

use std::collections::HashSet;

use certfleet_fleet::db::{
    Account, Ari, Backend, CertificateSettings, Challenge, Commit, DbError, Failure, FleetDb, HostCredential,
    IssuedCert, NewEvent, TokenRejected,
};
use certfleet_fleet::proto::{CertState, ChallengeSettings, Custody, InstallReport, InstallState};
use certfleet_testkit::PgDatabase;

const T0: i64 = 1_800_000_000;
const HOUR: i64 = 3600;

struct TestDb {
    db: FleetDb,
    /// What `FleetDb::open` was given (to open it again).
    target: String,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

async fn open(backend: Backend) -> TestDb {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().display().to_string();
            TestDb {
                db: FleetDb::open(&target).await.unwrap(),
                target,
                _dir: Some(dir),
                _pg: None,
            }
        }
        Backend::Postgres => {
            let pg = tokio::task::spawn_blocking(PgDatabase::create)
                .await
                .unwrap()
                .unwrap();
            let target = pg.url().to_owned();
            TestDb {
                db: FleetDb::open(&target).await.unwrap(),
                target,
                _dir: None,
                _pg: Some(pg),
            }
        }
    }
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::open(super::Backend::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::open(super::Backend::Postgres).await).await
                }
            )*
        }
    };
}

suite!(
    certificate_crud,
    names_are_unique,
    unknown_host_rolls_back_create,
    due_certificates_in_order,
    lease_claim_extend_release,
    lease_race_has_one_winner,
    claim_due_race_splits_the_work,
    commit_keeps_previous,
    commit_checks_the_lease,
    failures_count_and_reset,
    ari_window,
    hosts_and_credentials,
    enrollment_token_is_single_use,
    enrollment_token_race_has_one_winner,
    admin_tokens,
    assignments,
    csrs,
    install_reports,
    events_are_append_only_and_newest_first,
    accounts,
    challenges,
    settings,
    views,
    migrations_are_idempotent_on_reopen,
    fleet_stats,
);

fn settings_for(names: &[&str]) -> CertificateSettings {
    CertificateSettings {
        identifiers: names.iter().map(|s| s.to_string()).collect(),
        custody: Custody::Agent,
        key_type: "ecdsa-p256".into(),
        challenge: ChallengeSettings::Http01,
        profile: None,
        comment: None,
        acme_server: None,
        acme_account: None,
    }
}

async fn add_cert(db: &FleetDb, name: &str) {
    db.create_certificate(name, &settings_for(&[&format!("{name}.example.com")]), &[], T0)
        .await
        .unwrap();
}

fn issued(serial: &str, at: i64) -> IssuedCert {
    IssuedCert {
        cert_pem: format!("-----BEGIN CERTIFICATE-----\n{serial}\n-----END CERTIFICATE-----\n"),
        chain_pem: "-----BEGIN CERTIFICATE-----\nCHAIN\n-----END CERTIFICATE-----\n".into(),
        serial: serial.into(),
        not_before: at,
        not_after: at + 90 * 24 * HOUR,
        issuer: "Pebble Intermediate".into(),
        key_sha256: format!("{serial:0>64}"),
        issued_at: at,
    }
}

fn commit<'a>(cert: &'a IssuedCert, owner: Option<&'a str>) -> Commit<'a> {
    Commit {
        cert,
        key_blob: None,
        lease_owner: owner,
        csr_id: None,
        next_attempt: cert.not_after - 30 * 24 * HOUR,
        next_attempt_reason: "two thirds of the lifetime",
        actor: "server",
        imported: false,
    }
}

async fn certificate_crud(t: TestDb) {
    let db = &t.db;
    let mut s = settings_for(&["www.example.com", "example.com"]);
    s.custody = Custody::Server;
    s.challenge = ChallengeSettings::Dns01 {
        provider: "rfc2136".into(),
        credentials: "/etc/certfleet/rfc2136.ini".into(),
        propagation_seconds: Some(30),
    };
    s.comment = Some("front page".into());
    s.profile = Some("tlsserver".into());
    let c = db.create_certificate("www", &s, &[], T0).await.unwrap();
    assert_eq!((c.name.as_str(), &c.settings, c.enabled), ("www", &s, true));
    assert_eq!((c.version, c.consecutive_failures, c.created_at), (0, 0, T0));
    assert_eq!(c.next_attempt, Some(T0), "a new certificate is due at once");
    assert_eq!(c.state(T0), CertState::Pending);
    assert!(c.current.is_none() && c.previous.is_none() && c.lease.is_none() && c.ari.is_none());
    assert_eq!(db.certificate("www").await.unwrap(), c);

    add_cert(db, "api").await;
    let names: Vec<String> = db
        .list_certificates()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["api", "www"]);

    let mut s2 = s.clone();
    s2.identifiers.push("static.example.com".into());
    s2.comment = None;
    s2.acme_server = Some("https://acme-staging-v02.api.letsencrypt.org/directory".into());
    let u = db.update_certificate("www", &s2).await.unwrap();
    assert_eq!(u.settings, s2);

    let d = db.set_enabled("www", false).await.unwrap();
    assert!(!d.enabled);
    assert_eq!(d.state(T0), CertState::Disabled);
    assert!(db.set_enabled("www", true).await.unwrap().enabled);

    let r = db.schedule("www", T0 + 5, "renewal requested").await.unwrap();
    assert_eq!(
        (r.next_attempt, r.next_attempt_reason.as_deref()),
        (Some(T0 + 5), Some("renewal requested"))
    );

    db.delete_certificate("www").await.unwrap();
    assert!(db.find_certificate("www").await.unwrap().is_none());
    let e = db.certificate("www").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(e.to_string(), "there is no certificate named \"www\"");
    assert!(db.delete_certificate("www").await.unwrap_err().is_not_found());
    assert!(db.set_enabled("www", true).await.unwrap_err().is_not_found());
    assert!(db.update_certificate("www", &s).await.unwrap_err().is_not_found());
    assert!(db.schedule("www", T0, "x").await.unwrap_err().is_not_found());
}

async fn names_are_unique(t: TestDb) {
    let db = &t.db;
    add_cert(db, "www").await;
    let e = db
        .create_certificate("www", &settings_for(&["other.example.com"]), &[], T0)
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{e:?}");
    assert_eq!(e.to_string(), "a certificate named \"www\" already exists");
    db.create_host("web1", T0).await.unwrap();
    let e = db.create_host("web1", T0).await.unwrap_err();
    assert_eq!(e.to_string(), "a host named \"web1\" already exists");
    assert_eq!(db.list_certificates().await.unwrap().len(), 1);
}

async fn unknown_host_rolls_back_create(t: TestDb) {
    let db = &t.db;
    db.create_host("web1", T0).await.unwrap();
    let hosts = vec!["web1".to_string(), "nope".to_string()];
    let e = db
        .create_certificate("www", &settings_for(&["www.example.com"]), &hosts, T0)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "there is no host named \"nope\"");
    assert!(db.find_certificate("www").await.unwrap().is_none());
    assert!(db.certificates_of("web1").await.unwrap().is_empty());
}

async fn due_certificates_in_order(t: TestDb) {
    let db = &t.db;
    for (name, at) in [
        ("c", T0 + 30),
        ("a", T0 + 10),
        ("b", T0 + 20),
        ("later", T0 + HOUR),
        ("off", T0),
    ] {
        add_cert(db, name).await;
        db.schedule(name, at, "test").await.unwrap();
    }
    db.set_enabled("off", false).await.unwrap();
    let due = |now, limit| async move {
        db.due_certificates(now, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
    };
    assert!(due(T0, 10).await.is_empty());
    assert_eq!(due(T0 + 20, 10).await, ["a", "b"]);
    assert_eq!(due(T0 + 100, 10).await, ["a", "b", "c"]);
    assert_eq!(due(T0 + 100, 2).await, ["a", "b"]);
    // A live lease hides a certificate; an expired one does not.
    assert!(db.claim_lease("a", "node1", T0 + 100, T0 + 200).await.unwrap());
    assert_eq!(due(T0 + 100, 10).await, ["b", "c"]);
    assert_eq!(due(T0 + 200, 10).await, ["a", "b", "c"]);
    assert_eq!(due(T0 + 2 * HOUR, 10).await, ["a", "b", "c", "later"]);
}

async fn lease_claim_extend_release(t: TestDb) {
    let db = &t.db;
    add_cert(db, "www").await;
    assert!(db.claim_lease("www", "n1", T0, T0 + 60).await.unwrap());
    assert!(
        db.claim_lease("www", "n1", T0 + 1, T0 + 61).await.unwrap(),
        "re-claiming one's own lease"
    );
    assert!(!db.claim_lease("www", "n2", T0 + 30, T0 + 90).await.unwrap());
    let c = db.certificate("www").await.unwrap();
    assert_eq!(
        c.lease.as_ref().map(|l| (l.owner.as_str(), l.until)),
        Some(("n1", T0 + 61))
    );
    assert_eq!(c.state(T0 + 30), CertState::Renewing);

    assert!(!db.extend_lease("www", "n2", T0 + 30, T0 + 120).await.unwrap());
    assert!(db.extend_lease("www", "n1", T0 + 30, T0 + 120).await.unwrap());
    assert!(!db.claim_lease("www", "n2", T0 + 100, T0 + 200).await.unwrap());
    // Expired: n1 can no longer extend it, n2 can take it.
    assert!(!db.extend_lease("www", "n1", T0 + 120, T0 + 300).await.unwrap());
    assert!(db.claim_lease("www", "n2", T0 + 120, T0 + 300).await.unwrap());
    assert!(!db.release_lease("www", "n1").await.unwrap());
    assert!(db.release_lease("www", "n2").await.unwrap());
    assert!(db.certificate("www").await.unwrap().lease.is_none());
    assert!(db.claim_lease("www", "n1", T0 + 130, T0 + 200).await.unwrap());

    for e in [
        db.claim_lease("nope", "n1", T0, T0 + 1).await.unwrap_err(),
        db.extend_lease("nope", "n1", T0, T0 + 1).await.unwrap_err(),
        db.release_lease("nope", "n1").await.unwrap_err(),
    ] {
        assert!(e.is_not_found(), "{e}");
    }
}

async fn lease_race_has_one_winner(t: TestDb) {
    let db = &t.db;
    for i in 0..10 {
        let name = format!("c{i}");
        add_cert(db, &name).await;
        let (a, b) = (db.clone(), db.clone());
        let (n1, n2) = (name.clone(), name.clone());
        let one = tokio::spawn(async move { a.claim_lease(&n1, "node-a", T0, T0 + 60).await.unwrap() });
        let two = tokio::spawn(async move { b.claim_lease(&n2, "node-b", T0, T0 + 60).await.unwrap() });
        let (one, two) = (one.await.unwrap(), two.await.unwrap());
        assert!(one ^ two, "round {i}: node-a {one}, node-b {two}");
        let holder = db.certificate(&name).await.unwrap().lease.unwrap().owner;
        assert_eq!(holder, if one { "node-a" } else { "node-b" });
    }
    // An expired lease can be taken over.
    assert!(db.claim_lease("c0", "node-c", T0 + 60, T0 + 120).await.unwrap());
}

async fn claim_due_race_splits_the_work(t: TestDb) {
    let db = &t.db;
    for i in 0..40 {
        add_cert(db, &format!("c{i:02}")).await;
    }
    let claim = |node: &'static str| {
        let db = db.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = db.claim_due(node, T0, T0 + 60, 3).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                assert!(batch.iter().all(|c| c.lease.as_ref().unwrap().owner == node));
                got.extend(batch.into_iter().map(|c| c.name));
            }
        })
    };
    let (a, b) = (claim("node-a"), claim("node-b"));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let all: HashSet<&String> = a.iter().chain(&b).collect();
    assert_eq!(a.len() + b.len(), 40, "a {a:?}\nb {b:?}");
    assert_eq!(all.len(), 40, "a certificate was claimed twice");
    assert!(db.due_certificates(T0, 100).await.unwrap().is_empty());
    // Once the leases expire they are due again, earliest first.
    let again = db.claim_due("node-c", T0 + 60, T0 + 120, 5).await.unwrap();
    let names: Vec<&str> = again.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["c00", "c01", "c02", "c03", "c04"]);
}

async fn commit_keeps_previous(t: TestDb) {
    let db = &t.db;
    add_cert(db, "www").await;
    let v1 = issued("01", T0);
    assert!(db.claim_lease("www", "n1", T0, T0 + 60).await.unwrap());
    let c = db
        .commit_issued(
            "www",
            &Commit {
                key_blob: Some(b"key-1"),
                ..commit(&v1, Some("n1"))
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (c.version, c.current.as_ref(), c.previous.as_ref()),
        (1, Some(&v1), None)
    );
    assert!(c.lease.is_none(), "commit releases the lease");
    assert_eq!(c.last_attempt, Some(T0));
    assert_eq!(c.next_attempt, Some(v1.not_after - 30 * 24 * HOUR));
    assert_eq!(c.state(T0 + 1), CertState::Valid);

    let v2 = issued("02", T0 + 60 * 24 * HOUR);
    let c = db
        .commit_issued(
            "www",
            &Commit {
                key_blob: Some(b"key-2"),
                ..commit(&v2, None)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (c.version, c.current.as_ref(), c.previous.as_ref()),
        (2, Some(&v2), Some(&v1))
    );
    assert_eq!(db.certificate("www").await.unwrap(), c);
    let keys = db.server_keys("www").await.unwrap();
    assert_eq!(
        (keys.current.as_deref(), keys.previous.as_deref()),
        (Some(&b"key-2"[..]), Some(&b"key-1"[..]))
    );
    let kinds: Vec<(String, String)> = db
        .events(Some("www"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.actor))
        .collect();
    assert_eq!(
        kinds,
        [
            ("renewed".into(), "server".into()),
            ("issued".into(), "server".into())
        ]
    );
    assert!(
        db.events(Some("www"), 1).await.unwrap()[0]
            .detail
            .contains("serial 02")
    );
    assert_eq!(v2.fullchain_pem(), format!("{}{}", v2.cert_pem, v2.chain_pem));
    assert!(
        db.commit_issued("nope", &commit(&v2, None))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

async fn commit_checks_the_lease(t: TestDb) {
    let db = &t.db;
    add_cert(db, "www").await;
    assert!(db.claim_lease("www", "n1", T0, T0 + 60).await.unwrap());
    // n1's lease expired and n2 took over: n1's late commit must not land.
    assert!(db.claim_lease("www", "n2", T0 + 61, T0 + 120).await.unwrap());
    let v1 = issued("01", T0 + 62);
    let e = db
        .commit_issued("www", &commit(&v1, Some("n1")))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DbError::LeaseLost { holder: Some(h), .. } if h == "n2"),
        "{e:?}"
    );
    assert!(e.to_string().contains("no longer held by \"n1\""), "{e}");
    let c = db.certificate("www").await.unwrap();
    assert_eq!((c.version, c.current.is_none()), (0, true));
    assert!(
        db.events(Some("www"), 10).await.unwrap().is_empty(),
        "nothing half-committed"
    );
    let f = Failure {
        now: T0 + 62,
        error: "x",
        next_attempt: T0 + 100,
        next_attempt_reason: "retry",
        lease_owner: Some("n1"),
        actor: "server",
    };
    assert!(matches!(
        db.record_failure("www", &f).await,
        Err(DbError::LeaseLost { .. })
    ));
}

async fn failures_count_and_reset(t: TestDb) {
    let db = &t.db;
    add_cert(db, "www").await;
    for n in 1..=3u32 {
        assert!(db.claim_lease("www", "n1", T0, T0 + 60).await.unwrap());
        let f = Failure {
            now: T0 + i64::from(n),
            error: &format!("rate limited ({n})"),
            next_attempt: T0 + i64::from(n) * HOUR,
            next_attempt_reason: "backoff",
            lease_owner: Some("n1"),
            actor: "server",
        };
        let c = db.record_failure("www", &f).await.unwrap();
        assert_eq!(c.consecutive_failures, n);
        assert_eq!(c.last_error.as_deref(), Some(f.error));
        assert_eq!(
            (c.last_attempt, c.next_attempt),
            (Some(f.now), Some(f.next_attempt))
        );
        assert!(c.lease.is_none());
        assert_eq!(c.state(T0 + 10), CertState::Failing);
    }
    let events = db.events(Some("www"), 10).await.unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.kind == "failed"));
    assert_eq!(events[0].detail, "rate limited (3)");
    let c = db
        .commit_issued("www", &commit(&issued("01", T0 + 5 * HOUR), None))
        .await
        .unwrap();
    assert_eq!((c.consecutive_failures, c.last_error), (0, None));
    assert!(
        db.record_failure(
            "nope",
            &Failure {
                lease_owner: None,
                ..events_failure()
            }
        )
        .await
        .unwrap_err()
        .is_not_found()
    );
}

fn events_failure() -> Failure<'static> {
    Failure {
        now: T0,
        error: "e",
        next_attempt: T0,
        next_attempt_reason: "r",
        lease_owner: None,
        actor: "server",
    }
}

async fn ari_window(t: TestDb) {
    let db = &t.db;
    add_cert(db, "www").await;
    let ari = Ari {
        start: T0 + 10 * HOUR,
        end: T0 + 12 * HOUR,
        next_poll: T0 + 6 * HOUR,
        explanation_url: Some("https://ca.example/incident".into()),
    };
    assert_eq!(
        db.set_ari("www", Some(&ari)).await.unwrap().ari,
        Some(ari.clone())
    );
    let no_url = Ari {
        explanation_url: None,
        ..ari
    };
    assert_eq!(db.set_ari("www", Some(&no_url)).await.unwrap().ari, Some(no_url));
    assert_eq!(db.set_ari("www", None).await.unwrap().ari, None);
    assert!(db.set_ari("nope", None).await.unwrap_err().is_not_found());
}

async fn hosts_and_credentials(t: TestDb) {
    let db = &t.db;
    let h = db.create_host("web1", T0).await.unwrap();
    assert_eq!((h.name.as_str(), h.created_at, h.enrolled_at), ("web1", T0, None));
    db.create_host("web0", T0).await.unwrap();
    let names: Vec<String> = db
        .list_hosts()
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.name)
        .collect();
    assert_eq!(names, ["web0", "web1"]);
    assert_eq!(db.host("web1").await.unwrap(), h);

    let fp = "ab".repeat(32);
    assert!(db.host_by_fingerprint(&fp).await.unwrap().is_none());
    let cred = HostCredential {
        cert_sha256: &fp,
        serial: "7f01",
        agent_version: "0.1.0",
    };
    let e = db.set_host_credential("web1", &cred, T0 + 5).await.unwrap();
    assert_eq!(e.enrolled_at, Some(T0 + 5));
    assert_eq!(e.last_seen, Some(T0 + 5));
    assert_eq!(e.client_cert_serial.as_deref(), Some("7f01"));
    assert_eq!(db.host_by_fingerprint(&fp).await.unwrap(), Some(e));
    let err = db.set_host_credential("web0", &cred, T0).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");

    db.touch_host("web1", T0 + 50, "0.2.0").await.unwrap();
    let h = db.host("web1").await.unwrap();
    assert_eq!(
        (h.last_seen, h.agent_version.as_deref()),
        (Some(T0 + 50), Some("0.2.0"))
    );

    add_cert(db, "www").await;
    db.assign("www", "web1", T0).await.unwrap();
    db.delete_host("web1").await.unwrap();
    assert!(db.host("web1").await.unwrap_err().is_not_found());
    assert!(
        db.hosts_of("www").await.unwrap().is_empty(),
        "assignments go with the host"
    );
    assert!(db.host_by_fingerprint(&fp).await.unwrap().is_none());
    assert!(db.delete_host("web1").await.unwrap_err().is_not_found());
    assert!(db.touch_host("web1", T0, "x").await.unwrap_err().is_not_found());
}

async fn enrollment_token_is_single_use(t: TestDb) {
    let db = &t.db;
    db.create_host("web1", T0).await.unwrap();
    db.create_enrollment_token("web1", "h1", T0, T0 + HOUR)
        .await
        .unwrap();
    db.create_enrollment_token("web1", "h2", T0, T0 + HOUR)
        .await
        .unwrap();
    assert_eq!(db.consume_enrollment_token("h1", T0 + 10).await.unwrap(), "web1");
    let used = db.consume_enrollment_token("h1", T0 + 11).await.unwrap_err();
    assert!(
        matches!(&used, DbError::Token(TokenRejected::Used { host }) if host == "web1"),
        "{used:?}"
    );
    let expired = db.consume_enrollment_token("h2", T0 + HOUR).await.unwrap_err();
    assert!(
        matches!(&expired, DbError::Token(TokenRejected::Expired { .. })),
        "{expired:?}"
    );
    let unknown = db.consume_enrollment_token("h3", T0).await.unwrap_err();
    assert!(matches!(unknown, DbError::Token(TokenRejected::Unknown)));
    assert!(
        db.create_enrollment_token("nope", "h4", T0, T0 + 1)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        db.create_enrollment_token("web1", "h1", T0, T0 + 1)
            .await
            .unwrap_err()
            .is_conflict()
    );
    // Deleting the host takes its tokens along.
    db.create_enrollment_token("web1", "h5", T0, T0 + HOUR)
        .await
        .unwrap();
    db.delete_host("web1").await.unwrap();
    assert!(matches!(
        db.consume_enrollment_token("h5", T0).await,
        Err(DbError::Token(TokenRejected::Unknown))
    ));
}

async fn enrollment_token_race_has_one_winner(t: TestDb) {
    let db = &t.db;
    db.create_host("web1", T0).await.unwrap();
    for i in 0..10 {
        let hash = format!("secret-{i}");
        db.create_enrollment_token("web1", &hash, T0, T0 + HOUR)
            .await
            .unwrap();
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (db, hash) = (db.clone(), hash.clone());
                tokio::spawn(async move { db.consume_enrollment_token(&hash, T0 + 1).await })
            })
            .collect();
        let mut won = 0;
        for r in racers {
            match r.await.unwrap() {
                Ok(host) => {
                    assert_eq!(host, "web1");
                    won += 1;
                }
                Err(DbError::Token(TokenRejected::Used { .. })) => {}
                Err(e) => panic!("round {i}: {e:?}"),
            }
        }
        assert_eq!(won, 1, "round {i}");
    }
}

async fn admin_tokens(t: TestDb) {
    let db = &t.db;
    assert_eq!(db.check_admin_token("h").await.unwrap(), None);
    db.put_admin_token("h", "alice", T0).await.unwrap();
    assert_eq!(db.check_admin_token("h").await.unwrap().as_deref(), Some("alice"));
    assert!(
        db.put_admin_token("h", "bob", T0)
            .await
            .unwrap_err()
            .is_conflict()
    );
    assert!(db.delete_admin_token("h").await.unwrap());
    assert!(!db.delete_admin_token("h").await.unwrap());
    assert_eq!(db.check_admin_token("h").await.unwrap(), None);
}

async fn assignments(t: TestDb) {
    let db = &t.db;
    for h in ["web1", "web2"] {
        db.create_host(h, T0).await.unwrap();
    }
    let hosts = vec!["web2".to_string()];
    db.create_certificate("www", &settings_for(&["www.example.com"]), &hosts, T0)
        .await
        .unwrap();
    add_cert(db, "api").await;
    assert!(db.assign("www", "web1", T0).await.unwrap());
    assert!(
        !db.assign("www", "web1", T0).await.unwrap(),
        "assigning twice is a no-op"
    );
    assert!(db.assign("api", "web1", T0).await.unwrap());
    assert_eq!(db.hosts_of("www").await.unwrap(), ["web1", "web2"]);
    assert_eq!(db.certificates_of("web1").await.unwrap(), ["api", "www"]);
    assert!(db.is_assigned("www", "web2").await.unwrap());
    assert!(!db.is_assigned("api", "web2").await.unwrap());
    assert!(!db.is_assigned("nope", "web2").await.unwrap());

    db.put_csr("www", "web1", b"csr-a", "aa", T0).await.unwrap();
    db.put_csr("www", "web1", b"csr-b", "bb", T0 + 1).await.unwrap();
    db.put_csr("www", "web2", b"csr-c", "cc", T0).await.unwrap();
    let a = db.host_assignments("web1").await.unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!((a[0].certificate.as_str(), a[0].csr_keys.len()), ("api", 0));
    assert_eq!(
        (a[1].certificate.as_str(), &a[1].csr_keys),
        ("www", &vec!["aa".to_string(), "bb".to_string()])
    );
    assert_eq!((a[1].serial.as_ref(), a[1].custody), (None, Custody::Agent));
    db.commit_issued("www", &commit(&issued("0a", T0), None))
        .await
        .unwrap();
    let a = db.host_assignments("web1").await.unwrap();
    assert_eq!(
        (a[1].serial.as_deref(), a[1].not_after),
        (Some("0a"), Some(T0 + 90 * 24 * HOUR))
    );

    assert!(db.unassign("www", "web1").await.unwrap());
    assert!(!db.unassign("www", "web1").await.unwrap());
    assert_eq!(db.hosts_of("www").await.unwrap(), ["web2"]);
    assert!(db.assign("www", "nope", T0).await.unwrap_err().is_not_found());
    assert!(db.assign("nope", "web1", T0).await.unwrap_err().is_not_found());
    assert!(db.unassign("www", "nope").await.unwrap_err().is_not_found());
    assert!(db.hosts_of("nope").await.unwrap_err().is_not_found());
    assert!(db.certificates_of("nope").await.unwrap_err().is_not_found());
    assert!(db.host_assignments("nope").await.unwrap_err().is_not_found());
    // Deleting a certificate takes its assignments along.
    db.delete_certificate("api").await.unwrap();
    assert!(db.certificates_of("web1").await.unwrap().is_empty());
}

async fn csrs(t: TestDb) {
    let db = &t.db;
    add_cert(db, "www").await;
    for h in ["web1", "web2"] {
        db.create_host(h, T0).await.unwrap();
    }
    assert_eq!(db.latest_unused_csr("www", None).await.unwrap(), None);
    let a = db.put_csr("www", "web1", b"csr-a", "aa", T0).await.unwrap();
    let b = db.put_csr("www", "web1", b"csr-b", "bb", T0 + 10).await.unwrap();
    let c = db.put_csr("www", "web2", b"csr-c", "cc", T0 + 5).await.unwrap();
    let latest = db.latest_unused_csr("www", Some("web1")).await.unwrap().unwrap();
    assert_eq!(
        (latest.id, latest.der.as_slice(), latest.host.as_str()),
        (b, &b"csr-b"[..], "web1")
    );
    assert_eq!(
        (latest.certificate.as_str(), latest.spki_sha256.as_str()),
        ("www", "bb")
    );
    assert_eq!(
        db.latest_unused_csr("www", Some("web2"))
            .await
            .unwrap()
            .unwrap()
            .id,
        c
    );
    assert_eq!(db.latest_unused_csr("www", None).await.unwrap().unwrap().id, b);

    // Used by a commit: the next newest unused one comes up.
    db.commit_issued(
        "www",
        &Commit {
            csr_id: Some(b),
            ..commit(&issued("01", T0 + 20), None)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        db.latest_unused_csr("www", Some("web1"))
            .await
            .unwrap()
            .unwrap()
            .id,
        a
    );
    db.mark_csr_used(a, "02").await.unwrap();
    assert_eq!(db.latest_unused_csr("www", Some("web1")).await.unwrap(), None);
    // The same key again: replaces the CSR, unused again, same row.
    let again = db.put_csr("www", "web1", b"csr-b2", "bb", T0 + 30).await.unwrap();
    assert_eq!(again, b);
    let latest = db.latest_unused_csr("www", Some("web1")).await.unwrap().unwrap();
    assert_eq!(
        (latest.der.as_slice(), latest.uploaded_at, latest.used_by_serial),
        (&b"csr-b2"[..], T0 + 30, None)
    );

    assert!(db.mark_csr_used(9999, "x").await.unwrap_err().is_not_found());
    assert!(
        db.put_csr("nope", "web1", b"", "x", T0)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        db.put_csr("www", "nope", b"", "x", T0)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        db.latest_unused_csr("nope", None)
            .await
            .unwrap_err()
            .is_not_found()
    );
}

fn report(state: InstallState, serial: &str) -> InstallReport {
    InstallReport {
        certificate: "www".into(),
        state,
        installed_serial: Some(serial.into()),
        served_serial: Some(serial.into()),
        endpoint: Some("127.0.0.1:443".into()),
        error: None,
        agent_version: "0.1.0".into(),
    }
}

async fn install_reports(t: TestDb) {
    let db = &t.db;
    add_cert(db, "www").await;
    for h in ["web1", "web2", "web3"] {
        db.create_host(h, T0).await.unwrap();
    }
    db.assign("www", "web1", T0).await.unwrap();
    db.assign("www", "web2", T0).await.unwrap();
    db.put_install_report("web1", &report(InstallState::Installed, "01"), T0 + 1)
        .await
        .unwrap();
    let mut failed = report(InstallState::RolledBack, "01");
    failed.error = Some("nginx served the old certificate".into());
    db.put_install_report("web1", &failed, T0 + 2).await.unwrap();
    let views = db.install_reports("www").await.unwrap();
    assert_eq!(views.len(), 2, "{views:?}");
    assert_eq!(views[0].host, "web1");
    assert_eq!(views[0].state, Some(InstallState::RolledBack));
    assert_eq!(
        views[0].error.as_deref(),
        Some("nginx served the old certificate")
    );
    assert_eq!(views[0].reported_at, Some(T0 + 2));
    assert_eq!(
        (views[1].host.as_str(), views[1].state, views[1].reported_at),
        ("web2", None, None)
    );
    // A host that reported and was unassigned since is still listed; web3 never was.
    db.unassign("www", "web1").await.unwrap();
    let hosts: Vec<String> = db
        .install_reports("www")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.host)
        .collect();
    assert_eq!(hosts, ["web1", "web2"]);
    assert!(
        db.put_install_report("nope", &failed, T0)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(db.install_reports("nope").await.unwrap_err().is_not_found());
}

async fn events_are_append_only_and_newest_first(t: TestDb) {
    let db = &t.db;
    let mut ids = Vec::new();
    for (i, cert) in ["www", "api", "www", "www"].iter().enumerate() {
        let detail = format!("event {i}");
        let ev = NewEvent {
            at: T0, // same second: the id orders them
            certificate: Some(cert),
            host: (i == 1).then_some("web1"),
            kind: "assigned",
            actor: "admin",
            detail: &detail,
        };
        ids.push(db.append_event(&ev).await.unwrap());
    }
    let none = NewEvent {
        at: T0 + 1,
        certificate: None,
        host: None,
        kind: "server-started",
        actor: "server",
        detail: "",
    };
    db.append_event(&none).await.unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let www: Vec<String> = db
        .events(Some("www"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.detail)
        .collect();
    assert_eq!(www, ["event 3", "event 2", "event 0"]);
    assert_eq!(db.events(Some("www"), 2).await.unwrap().len(), 2);
    let all = db.events(None, 10).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(
        (all[0].kind.as_str(), all[0].certificate.as_deref()),
        ("server-started", None)
    );
    assert_eq!(all[3].host.as_deref(), Some("web1"));
    let view: certfleet_fleet::proto::EventView = all[3].clone().into();
    assert_eq!((view.actor.as_str(), view.detail.as_str()), ("admin", "event 1"));

    // The log refuses changes even from plain SQL.
    sqlx::any::install_default_drivers();
    let url = match db.backend() {
        Backend::Sqlite => format!("sqlite://{}/fleet.db", t.target),
        Backend::Postgres => t.target.clone(),
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    for sql in ["UPDATE events SET detail = 'forged'", "DELETE FROM events"] {
        let e = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    pool.close().await;
    assert_eq!(db.events(None, 10).await.unwrap(), all);
}

async fn accounts(t: TestDb) {
    let db = &t.db;
    let url = "https://acme-v02.api.letsencrypt.org/directory";
    assert_eq!(db.account(url).await.unwrap(), None);
    let mut a = Account {
        server_url: url.into(),
        account_url: "https://acme-v02.api.letsencrypt.org/acme/acct/1".into(),
        key_pem: "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n".into(),
        contact: vec!["mailto:admin@example.com".into()],
        created_at: T0,
    };
    db.put_account(&a).await.unwrap();
    assert_eq!(db.account(url).await.unwrap(), Some(a.clone()));
    a.account_url = "https://acme-v02.api.letsencrypt.org/acme/acct/2".into();
    a.contact = vec![];
    db.put_account(&Account {
        created_at: T0 + 99,
        ..a.clone()
    })
    .await
    .unwrap();
    assert_eq!(
        db.account(url).await.unwrap(),
        Some(a),
        "replaced, creation time kept"
    );
    assert_eq!(db.account("https://other.example/dir").await.unwrap(), None);
}

async fn challenges(t: TestDb) {
    let db = &t.db;
    let c = |token: &str, expires_at| Challenge {
        token: token.into(),
        key_authorization: format!("{token}.thumbprint"),
        identifier: "www.example.com".into(),
        expires_at,
    };
    db.put_challenge(&c("t1", T0 + 60)).await.unwrap();
    db.put_challenge(&c("t2", T0 + 10)).await.unwrap();
    db.put_challenge(&c("t3", T0 + 600)).await.unwrap();
    assert_eq!(db.challenge("t1", T0).await.unwrap(), Some(c("t1", T0 + 60)));
    assert_eq!(db.challenge("t2", T0 + 10).await.unwrap(), None, "expired");
    assert_eq!(db.challenge("nope", T0).await.unwrap(), None);
    db.put_challenge(&c("t1", T0 + 120)).await.unwrap();
    assert_eq!(
        db.challenge("t1", T0 + 100).await.unwrap(),
        Some(c("t1", T0 + 120))
    );
    assert_eq!(db.expire_challenges(T0 + 120).await.unwrap(), 2);
    assert!(db.delete_challenge("t3").await.unwrap());
    assert!(!db.delete_challenge("t3").await.unwrap());
    assert_eq!(db.expire_challenges(T0 + 10_000).await.unwrap(), 0);
}

async fn settings(t: TestDb) {
    let db = &t.db;
    assert_eq!(db.setting("ca.cert_pem").await.unwrap(), None);
    db.put_setting("ca.cert_pem", "PEM1", T0).await.unwrap();
    db.put_setting("ca.cert_pem", "PEM2", T0 + 1).await.unwrap();
    db.put_setting("other", "", T0).await.unwrap();
    assert_eq!(db.setting("ca.cert_pem").await.unwrap().as_deref(), Some("PEM2"));
    assert_eq!(db.setting("other").await.unwrap().as_deref(), Some(""));
}

async fn views(t: TestDb) {
    let db = &t.db;
    for h in ["web1", "web2"] {
        db.create_host(h, T0).await.unwrap();
    }
    let hosts = vec!["web2".to_string(), "web1".to_string()];
    db.create_certificate("www", &settings_for(&["www.example.com"]), &hosts, T0)
        .await
        .unwrap();
    add_cert(db, "api").await;
    db.commit_issued("www", &commit(&issued("0b", T0), None))
        .await
        .unwrap();
    let v = db.certificate_views(T0 + 1, None, 100).await.unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(
        (v[0].name.as_str(), v[0].state, v[0].hosts.len()),
        ("api", CertState::Pending, 0)
    );
    assert_eq!((v[1].name.as_str(), v[1].state), ("www", CertState::Valid));
    assert_eq!(v[1].hosts, ["web1", "web2"]);
    assert_eq!(
        (v[1].serial.as_deref(), v[1].issuer.as_deref()),
        (Some("0b"), Some("Pebble Intermediate"))
    );
    let expired = db
        .certificate_views(T0 + 91 * 24 * HOUR, None, 100)
        .await
        .unwrap();
    assert_eq!(expired[1].state, CertState::Expired);
    // Pages by name: one at a time, each with its own hosts.
    let first = db.certificate_views(T0 + 1, None, 1).await.unwrap();
    assert_eq!((first.len(), first[0].name.as_str()), (1, "api"));
    let second = db.certificate_views(T0 + 1, Some("api"), 1).await.unwrap();
    assert_eq!((second[0].name.as_str(), second[0].hosts.len()), ("www", 2));
    assert_eq!(second[0].serial.as_deref(), Some("0b"));
    assert!(
        db.certificate_views(T0 + 1, Some("www"), 1)
            .await
            .unwrap()
            .is_empty()
    );

    db.put_install_report("web1", &report(InstallState::Verified, "0b"), T0 + 2)
        .await
        .unwrap();
    let d = db.certificate_detail("www", T0 + 3, 10).await.unwrap();
    assert_eq!(d.certificate.name, "www");
    assert_eq!(d.installs.len(), 2);
    assert_eq!(d.installs[0].state, Some(InstallState::Verified));
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.events[0].kind, "issued");
    assert!(
        db.certificate_detail("nope", T0, 10)
            .await
            .unwrap_err()
            .is_not_found()
    );

    let hv = db.host_views().await.unwrap();
    assert_eq!(
        (hv[0].name.as_str(), hv[0].certificates.as_slice()),
        ("web1", &["www".to_string()][..])
    );
    assert_eq!(hv.len(), 2);
}

/// `/metrics`' database side: one certificate in each state, what hosts serve, last check-ins.
async fn fleet_stats(t: TestDb) {
    const DAY: i64 = 24 * HOUR;
    let db = &t.db;
    let now = T0 + DAY;
    for name in [
        "disabled", "expired", "expiring", "failing", "pending", "renewing", "valid",
    ] {
        add_cert(db, name).await;
    }
    db.commit_issued("valid", &commit(&issued("0a", T0), None))
        .await
        .unwrap();
    // The current one of "valid" is 0d, the previous 0a.
    let newer = issued("0d", T0 + HOUR);
    db.commit_issued("valid", &commit(&newer, None)).await.unwrap();
    // 90-day lifetime: 9 days left is within the last sixth (15 days).
    db.commit_issued("expiring", &commit(&issued("0b", T0 - 80 * DAY), None))
        .await
        .unwrap();
    db.commit_issued("expired", &commit(&issued("0c", T0 - 100 * DAY), None))
        .await
        .unwrap();
    db.record_failure("failing", &events_failure()).await.unwrap();
    db.set_enabled("disabled", false).await.unwrap();
    assert!(db.claim_lease("renewing", "node", now, now + 600).await.unwrap());

    for h in ["web1", "web2", "web3", "web4"] {
        db.create_host(h, T0).await.unwrap();
        db.assign("valid", h, T0).await.unwrap();
    }
    let serving = |serial: &str| InstallReport {
        certificate: "valid".into(),
        ..report(InstallState::Verified, serial)
    };
    // web1 still serves the previous one, web2 the current (other case), web3 something
    // unknown; web4 reported and was unassigned since: not counted.
    db.put_install_report("web1", &serving("0a"), now).await.unwrap();
    db.put_install_report("web2", &serving("0D"), now).await.unwrap();
    db.put_install_report("web3", &serving("ff"), now).await.unwrap();
    db.put_install_report("web4", &serving("0d"), now).await.unwrap();
    db.unassign("valid", "web4").await.unwrap();
    db.touch_host("web2", now - 60, "0.1.0").await.unwrap();

    let s = db.fleet_stats(now).await.unwrap();
    let states: Vec<&str> = s.by_state.iter().map(|(st, _)| *st).collect();
    assert_eq!(states, certfleet_fleet::db::STATES);
    assert!(s.by_state.iter().all(|(_, n)| *n == 1), "{:?}", s.by_state);
    assert_eq!(
        s.expiry,
        [
            ("expired".to_string(), T0 - 10 * DAY),
            ("expiring".to_string(), T0 + 10 * DAY),
            ("valid".to_string(), newer.not_after),
        ]
    );
    let served: Vec<(&str, bool, Option<i64>)> = s
        .served
        .iter()
        .map(|r| (r.host.as_str(), r.serves_current, r.served_not_after))
        .collect();
    assert_eq!(
        served,
        [
            ("web1", false, Some(T0 + 90 * DAY)),
            ("web2", true, Some(newer.not_after)),
            ("web3", false, None),
        ]
    );
    assert!(s.served.iter().all(|r| r.certificate == "valid"));
    assert_eq!(s.last_seen, [("web2".to_string(), now - 60)]);
}

async fn migrations_are_idempotent_on_reopen(t: TestDb) {
    add_cert(&t.db, "www").await;
    t.db.close().await;
    for _ in 0..2 {
        let again = FleetDb::open(&t.target).await.unwrap();
        assert_eq!(again.certificate("www").await.unwrap().name, "www");
        again.close().await;
    }
}

// SQLite only: the file itself.

#[tokio::test]
async fn sqlite_file_is_private_and_in_the_state_dir() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = FleetDb::open(dir.path().to_str().unwrap()).await.unwrap();
    assert_eq!(db.backend(), Backend::Sqlite);
    add_cert(&db, "www").await;
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("fleet.db"), 0o600);
    assert_eq!(mode("fleet.db-wal"), 0o600, "WAL mode, same permissions");
    db.close().await;

    // An existing file others can read is tightened; a `sqlite:` URL names a file.
    let loose = dir.path().join("loose.db");
    std::fs::write(&loose, b"").unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let db = FleetDb::open(&format!("sqlite:{}", loose.display()))
        .await
        .unwrap();
    assert_eq!(db.target(), loose.display().to_string());
    assert_eq!(mode("loose.db"), 0o600);
    db.close().await;

    let e = FleetDb::open(&dir.path().join("missing/fleet.db").display().to_string())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[tokio::test]
async fn postgres_connection_errors_name_the_server_without_password() {
    let e = FleetDb::open("postgres://fleet:s3cret@127.0.0.1:1/fleet")
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("postgres://fleet:***@127.0.0.1:1/fleet"), "{msg}");
    assert!(!msg.contains("s3cret"), "{msg}");
}
