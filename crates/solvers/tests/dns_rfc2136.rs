//! dns-01 through RFC 2136 + TSIG against a real BIND 9 (see certfleet_testkit::bind).
//! Every assertion about what DNS holds is made with `dig`, independently of our code.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use certfleet_core::Identifier;
use certfleet_solvers::dns::{Dns01Config, Dns01Solver, ProviderConfig, txt_value};
use certfleet_solvers::{ChallengeTask, Solver};
use certfleet_testkit::bind::{Bind, BindOptions};

struct Setup {
    bind: Bind,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(zones: &[&str]) -> Setup {
        Setup::with(BindOptions {
            zones: zones.iter().map(|z| z.to_string()).collect(),
            ..BindOptions::default()
        })
    }

    fn with(opts: BindOptions) -> Setup {
        let bind = Bind::start_with(opts).expect("start BIND");
        let dir = tempfile::tempdir().unwrap();
        bind.write_rfc2136_ini(&dir.path().join("rfc2136.ini")).unwrap();
        Setup { bind, dir }
    }

    fn ini(&self) -> PathBuf {
        self.dir.path().join("rfc2136.ini")
    }

    fn config(&self) -> Dns01Config {
        let mut c = Dns01Config::new(ProviderConfig::Rfc2136 {
            credentials: self.ini(),
        });
        c.resolver = Some(self.bind.addr());
        c.propagation_timeout = Duration::from_secs(10);
        c.state_dir = Some(self.dir.path().join("state"));
        c
    }

    fn solver(&self) -> Dns01Solver {
        Dns01Solver::from_config(&self.config()).expect("solver")
    }
}

fn task(name: &str, ka: &str) -> ChallengeTask {
    ChallengeTask {
        identifier: Identifier::dns(name).unwrap(),
        token: ka.split('.').next().unwrap().to_string(),
        key_authorization: ka.to_string(),
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn single_name_is_present_then_cleaned() {
    let s = Setup::new(&["host1.example.test"]);
    let solver = s.solver();
    let tasks = [task("host1.example.test", "tok1.thumb")];
    let t0 = Instant::now();
    solver.present(&tasks).await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "present took {:?}",
        t0.elapsed()
    );
    assert_eq!(
        s.bind.txt("_acme-challenge.host1.example.test"),
        vec![txt_value("tok1.thumb")]
    );
    solver.cleanup(&tasks).await.unwrap();
    assert!(s.bind.txt("_acme-challenge.host1.example.test").is_empty());
    assert!(!s.dir.path().join("state/dns01-pending.json").exists());
}

#[tokio::test]
async fn wildcard_and_apex_values_are_both_visible() {
    let s = Setup::new(&["host1.example.test"]);
    let solver = s.solver();
    let tasks = [
        task("host1.example.test", "apex.thumb"),
        task("*.host1.example.test", "wild.thumb"),
    ];
    solver.present(&tasks).await.unwrap();
    assert_eq!(
        s.bind.txt("_acme-challenge.host1.example.test"),
        sorted(vec![txt_value("apex.thumb"), txt_value("wild.thumb")])
    );
    solver.cleanup(&tasks).await.unwrap();
    assert!(s.bind.txt("_acme-challenge.host1.example.test").is_empty());
}

#[tokio::test]
async fn names_in_two_sub_zones_at_once() {
    let s = Setup::new(&["host1.example.test", "host2.example.test"]);
    let solver = s.solver();
    let tasks = [
        task("host1.example.test", "a.thumb"),
        task("www.host2.example.test", "b.thumb"),
        task("host2.example.test", "c.thumb"),
    ];
    solver.present(&tasks).await.unwrap();
    assert_eq!(
        s.bind.txt("_acme-challenge.host1.example.test"),
        vec![txt_value("a.thumb")]
    );
    assert_eq!(
        s.bind.txt("_acme-challenge.www.host2.example.test"),
        vec![txt_value("b.thumb")]
    );
    assert_eq!(
        s.bind.txt("_acme-challenge.host2.example.test"),
        vec![txt_value("c.thumb")]
    );
    solver.cleanup(&tasks).await.unwrap();
    for n in ["host1", "www.host2", "host2"] {
        assert!(
            s.bind
                .txt(&format!("_acme-challenge.{n}.example.test"))
                .is_empty(),
            "{n}"
        );
    }
}

#[tokio::test]
async fn cname_delegation_writes_at_the_target() {
    let s = Setup::new(&["host1.example.test"]);
    let solver = s.solver();
    let tasks = [task("alias.example.test", "alias.thumb")];
    solver.present(&tasks).await.unwrap();
    // The parent zone is not updatable: the value can only be at the CNAME target.
    assert_eq!(
        s.bind.txt("_acme-challenge.host1.example.test"),
        vec![txt_value("alias.thumb")]
    );
    assert_eq!(
        s.bind.dig("_acme-challenge.alias.example.test", "CNAME"),
        vec!["_acme-challenge.host1.example.test.".to_string()]
    );
    // What a CA's resolver (e.g. Pebble's VA, pointed at this BIND) sees.
    assert_eq!(
        s.bind.resolve_txt("_acme-challenge.alias.example.test"),
        vec![txt_value("alias.thumb")]
    );
    solver.cleanup(&tasks).await.unwrap();
    assert!(s.bind.txt("_acme-challenge.host1.example.test").is_empty());
}

#[tokio::test]
async fn cname_delegation_with_an_authoritative_only_resolver() {
    let s = Setup::with(BindOptions {
        zones: vec!["host1.example.test".into()],
        recursion: false,
        ..BindOptions::default()
    });
    let solver = s.solver();
    let tasks = [task("alias.example.test", "alias.thumb")];
    solver.present(&tasks).await.unwrap();
    assert_eq!(
        s.bind.txt("_acme-challenge.host1.example.test"),
        vec![txt_value("alias.thumb")]
    );
    solver.cleanup(&tasks).await.unwrap();
    assert!(s.bind.txt("_acme-challenge.host1.example.test").is_empty());
}

#[tokio::test]
async fn wrong_tsig_secret_is_a_clear_error_and_leaves_nothing() {
    let s = Setup::new(&["host1.example.test"]);
    // Same length, different bytes.
    s.bind
        .write_rfc2136_ini_with_secret(&s.ini(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .unwrap();
    let solver = s.solver();
    let tasks = [task("host1.example.test", "x.thumb")];
    let err = solver.present(&tasks).await.unwrap_err().to_string();
    assert!(err.contains("BADSIG") && err.contains("certfleet-key"), "{err}");
    assert!(!err.contains("AAAAAAAA"), "secret leaked: {err}");
    let _ = solver.cleanup(&tasks).await;
    assert!(s.bind.txt("_acme-challenge.host1.example.test").is_empty());
}

#[tokio::test]
async fn unknown_key_name_is_a_clear_error() {
    let s = Setup::new(&["host1.example.test"]);
    let ini = std::fs::read_to_string(s.ini())
        .unwrap()
        .replace("certfleet-key", "other-key");
    std::fs::write(s.ini(), ini).unwrap();
    let err = s
        .solver()
        .present(&[task("host1.example.test", "x.thumb")])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("BADKEY") && err.contains("other-key"), "{err}");
}

#[tokio::test]
async fn update_outside_the_policy_is_refused_with_a_hint() {
    let s = Setup::new(&["host1.example.test"]);
    // example.test itself has no update-policy.
    let err = s
        .solver()
        .present(&[task("example.test", "x.thumb")])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("REFUSED") && err.contains("_acme-challenge.example.test"),
        "{err}"
    );
}

#[tokio::test]
async fn cleanup_removes_only_our_values() {
    let s = Setup::new(&["host1.example.test"]);
    s.bind
        .nsupdate_add_txt(
            "host1.example.test",
            "_acme-challenge.host1.example.test",
            "someone-else",
        )
        .unwrap();
    let solver = s.solver();
    let tasks = [task("host1.example.test", "ours.thumb")];
    solver.present(&tasks).await.unwrap();
    assert_eq!(
        s.bind.txt("_acme-challenge.host1.example.test"),
        sorted(vec!["someone-else".into(), txt_value("ours.thumb")])
    );
    solver.cleanup(&tasks).await.unwrap();
    assert_eq!(
        s.bind.txt("_acme-challenge.host1.example.test"),
        vec!["someone-else".to_string()]
    );
}

#[tokio::test]
async fn stale_record_of_a_crashed_run_is_removed_next_time() {
    let s = Setup::new(&["host1.example.test"]);
    {
        // "Crash": present, then drop the solver without cleanup.
        let solver = s.solver();
        solver
            .present(&[task("host1.example.test", "old.thumb")])
            .await
            .unwrap();
    }
    assert_eq!(
        s.bind.txt("_acme-challenge.host1.example.test"),
        vec![txt_value("old.thumb")]
    );
    let solver = s.solver();
    let tasks = [task("host1.example.test", "new.thumb")];
    solver.present(&tasks).await.unwrap();
    assert_eq!(
        s.bind.txt("_acme-challenge.host1.example.test"),
        vec![txt_value("new.thumb")]
    );
    solver.cleanup(&tasks).await.unwrap();
    assert!(s.bind.txt("_acme-challenge.host1.example.test").is_empty());
}

#[tokio::test]
async fn tsig_algorithms_sha512_sha1_md5() {
    for alg in ["hmac-sha512", "hmac-sha1", "hmac-md5"] {
        let s = Setup::with(BindOptions {
            zones: vec!["host1.example.test".into()],
            algorithm: alg.into(),
            ..BindOptions::default()
        });
        let solver = s.solver();
        let tasks = [task("host1.example.test", "alg.thumb")];
        solver
            .present(&tasks)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(
            s.bind.txt("_acme-challenge.host1.example.test"),
            vec![txt_value("alg.thumb")],
            "{alg}"
        );
        solver.cleanup(&tasks).await.unwrap();
        assert!(
            s.bind.txt("_acme-challenge.host1.example.test").is_empty(),
            "{alg}"
        );
    }
}

#[tokio::test]
async fn large_answers_fall_back_to_tcp() {
    let s = Setup::new(&["host1.example.test"]);
    // ~40 x 100-byte values: far over the 1232-byte UDP answer size, so BIND truncates.
    let mut script = String::from("zone host1.example.test\n");
    for i in 0..40 {
        script.push_str(&format!(
            "update add _acme-challenge.host1.example.test 60 TXT \"{i:03}{}\"\n",
            "x".repeat(97)
        ));
    }
    script.push_str("send\n");
    s.bind.nsupdate(&script).unwrap();
    let solver = s.solver();
    let tasks = [task("host1.example.test", "big.thumb")];
    solver.present(&tasks).await.unwrap();
    assert!(
        s.bind
            .txt("_acme-challenge.host1.example.test")
            .contains(&txt_value("big.thumb"))
    );
    solver.cleanup(&tasks).await.unwrap();
    let left = s.bind.txt("_acme-challenge.host1.example.test");
    assert_eq!(left.len(), 40);
    assert!(!left.contains(&txt_value("big.thumb")));
}

#[tokio::test]
async fn world_readable_credentials_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new(&["host1.example.test"]);
    std::fs::set_permissions(s.ini(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Dns01Solver::from_config(&s.config()).unwrap_err().to_string();
    assert!(
        err.ends_with(&format!("run: chmod 600 {}", s.ini().display())),
        "{err}"
    );
}

#[tokio::test]
async fn preflight_rejects_ip_identifiers() {
    let s = Setup::new(&["host1.example.test"]);
    let err = s
        .solver()
        .preflight(&[Identifier::ip("192.0.2.1").unwrap()])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("192.0.2.1 is an IP address"), "{err}");
}

#[tokio::test]
async fn sign_query_finds_the_zone_on_a_primary_that_requires_tsig_for_queries() {
    use certfleet_solvers::dns::DnsProvider;
    use certfleet_solvers::dns::TxtRecord;
    use certfleet_solvers::dns::rfc2136::{Rfc2136Config, Rfc2136Provider};
    let s = Setup::with(BindOptions {
        zones: vec!["host1.example.test".into()],
        zone_options: vec!["allow-query { key certfleet-key; };".into()],
        ..BindOptions::default()
    });
    let rec = TxtRecord {
        domain: "host1.example.test".into(),
        fqdn: "_acme-challenge.host1.example.test".into(),
        zone: None,
        value: "signed-query".into(),
    };
    // Unsigned, the SOA walk is refused: certbot's plugin fails the same way.
    let plain = Rfc2136Provider::new(&Rfc2136Config::from_certbot_ini(&s.ini()).unwrap()).unwrap();
    assert!(plain.set_txt(&rec).await.is_err());

    let mut ini = std::fs::read_to_string(s.ini()).unwrap();
    ini.push_str("dns_rfc2136_sign_query = true\n");
    std::fs::write(s.ini(), ini).unwrap();
    let signed = Rfc2136Provider::new(&Rfc2136Config::from_certbot_ini(&s.ini()).unwrap()).unwrap();
    assert_eq!(
        signed.set_txt(&rec).await.unwrap(),
        Some("host1.example.test".into())
    );
    signed.remove_txt(&rec).await.unwrap();
}

#[tokio::test]
async fn preflight_checks_the_tsig_key_before_any_order() {
    let s = Setup::new(&["host1.example.test"]);
    let ids = [Identifier::dns("host1.example.test").unwrap()];
    s.solver().preflight(&ids).await.unwrap();
    s.bind
        .write_rfc2136_ini_with_secret(&s.ini(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .unwrap();
    let err = s.solver().preflight(&ids).await.unwrap_err().to_string();
    assert!(err.contains("BADSIG") && err.contains("certfleet-key"), "{err}");
    assert!(err.contains(&s.bind.addr().to_string()), "{err}");
    assert!(!err.contains("AAAAAAAA"), "secret leaked: {err}");
}

#[tokio::test]
async fn concurrent_solvers_sharing_a_state_dir_keep_each_others_records() {
    // `renew --jobs`: two lineages in one process, one state file. The second one's stale
    // sweep must not remove the first one's records while it is being validated.
    let s = Setup::new(&["host1.example.test", "host2.example.test"]);
    let a = s.solver();
    let b = s.solver();
    let ta = [task("host1.example.test", "a.thumb")];
    let tb = [task("host2.example.test", "b.thumb")];
    a.present(&ta).await.unwrap();
    b.present(&tb).await.unwrap();
    assert_eq!(
        s.bind.txt("_acme-challenge.host1.example.test"),
        vec![txt_value("a.thumb")]
    );
    b.cleanup(&tb).await.unwrap();
    a.cleanup(&ta).await.unwrap();
    assert!(s.bind.txt("_acme-challenge.host1.example.test").is_empty());
    assert!(s.bind.txt("_acme-challenge.host2.example.test").is_empty());
}
