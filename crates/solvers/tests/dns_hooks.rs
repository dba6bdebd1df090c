//! dns-01 through certbot-style exec hooks and manual mode, against a real BIND 9; and the
//! propagation check's timeout report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certfleet_core::Identifier;
use certfleet_solvers::dns::manual::Manual;
use certfleet_solvers::dns::{Dns01Config, Dns01Solver, ProviderConfig, txt_value};
use certfleet_solvers::{ChallengeTask, Solver};
use certfleet_testkit::bind::Bind;

fn task(name: &str, ka: &str) -> ChallengeTask {
    ChallengeTask {
        identifier: Identifier::dns(name).unwrap(),
        token: ka.split('.').next().unwrap().to_string(),
        key_authorization: ka.to_string(),
    }
}

fn config(bind: &Bind, provider: ProviderConfig) -> Dns01Config {
    let mut c = Dns01Config::new(provider);
    c.resolver = Some(bind.addr());
    c.propagation_timeout = Duration::from_secs(10);
    c
}

/// A hook pair that updates BIND with nsupdate, as a certbot user's scripts would, and logs
/// the CERTBOT_* environment it was given.
fn hooks(bind: &Bind, log: &std::path::Path) -> ProviderConfig {
    let nsupdate = |op: &str| {
        format!(
            "printf 'server 127.0.0.1 {port}\\nzone host1.example.test\\nupdate {op} _acme-challenge.%s 60 TXT \"%s\"\\nsend\\n' \
             \"$CERTBOT_DOMAIN\" \"$CERTBOT_VALIDATION\" | nsupdate -k {key}",
            port = bind.port(),
            key = bind.key_file().display()
        )
    };
    let log = log.display();
    ProviderConfig::Hooks {
        auth_hook: format!(
            "{} && (echo '--- auth'; env | grep ^CERTBOT_ | sort) >> {log} && echo \"auth-out-$CERTBOT_REMAINING_CHALLENGES\"",
            nsupdate("add")
        ),
        cleanup_hook: Some(format!(
            "{} && (echo '--- cleanup'; env | grep ^CERTBOT_ | sort) >> {log}",
            nsupdate("delete")
        )),
    }
}

#[tokio::test]
async fn exec_hooks_get_certbots_environment_and_values_propagate() {
    let bind = Bind::start(&["host1.example.test"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hooks.log");
    let solver = Dns01Solver::from_config(&config(&bind, hooks(&bind, &log))).unwrap();
    let tasks = [
        task("host1.example.test", "apex.thumb"),
        task("*.host1.example.test", "wild.thumb"),
    ];
    solver.present(&tasks).await.unwrap();
    let mut both = vec![txt_value("apex.thumb"), txt_value("wild.thumb")];
    both.sort();
    assert_eq!(bind.txt("_acme-challenge.host1.example.test"), both);

    solver.cleanup(&tasks).await.unwrap();
    assert!(bind.txt("_acme-challenge.host1.example.test").is_empty());

    let log = std::fs::read_to_string(&log).unwrap();
    let all = "CERTBOT_ALL_DOMAINS=host1.example.test,host1.example.test";
    let expected = format!(
        "--- auth\n{all}\nCERTBOT_DOMAIN=host1.example.test\nCERTBOT_REMAINING_CHALLENGES=1\nCERTBOT_VALIDATION={a}\n\
         --- auth\n{all}\nCERTBOT_DOMAIN=host1.example.test\nCERTBOT_REMAINING_CHALLENGES=0\nCERTBOT_VALIDATION={w}\n\
         --- cleanup\n{all}\nCERTBOT_AUTH_OUTPUT=auth-out-1\nCERTBOT_DOMAIN=host1.example.test\n\
         CERTBOT_REMAINING_CHALLENGES=1\nCERTBOT_VALIDATION={a}\n\
         --- cleanup\n{all}\nCERTBOT_AUTH_OUTPUT=auth-out-0\nCERTBOT_DOMAIN=host1.example.test\n\
         CERTBOT_REMAINING_CHALLENGES=0\nCERTBOT_VALIDATION={w}\n",
        a = txt_value("apex.thumb"),
        w = txt_value("wild.thumb"),
    );
    assert_eq!(log, expected);
}

#[tokio::test]
async fn failing_auth_hook_is_reported_with_its_stderr() {
    let bind = Bind::start(&["host1.example.test"]).unwrap();
    let provider = ProviderConfig::Hooks {
        auth_hook: "echo 'zone API said no' >&2; exit 3".into(),
        cleanup_hook: None,
    };
    let solver = Dns01Solver::from_config(&config(&bind, provider)).unwrap();
    let err = solver
        .present(&[task("host1.example.test", "a.thumb")])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--manual-auth-hook for host1.example.test failed"),
        "{err}"
    );
    assert!(err.contains("zone API said no"), "{err}");
}

#[tokio::test]
async fn propagation_timeout_says_which_server_answers_what() {
    let bind = Bind::start(&["host1.example.test"]).unwrap();
    // A hook that "forgets" to create the record.
    let mut cfg = config(
        &bind,
        ProviderConfig::Hooks {
            auth_hook: "true".into(),
            cleanup_hook: None,
        },
    );
    cfg.propagation_timeout = Duration::from_millis(800);
    let solver = Dns01Solver::from_config(&cfg).unwrap();
    let t0 = Instant::now();
    let err = solver
        .present(&[task("host1.example.test", "a.thumb")])
        .await
        .unwrap_err()
        .to_string();
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let want = format!(
        "ns1.example.test ({}) answers no TXT (NXDOMAIN) for _acme-challenge.host1.example.test, expected [\"{}\"]",
        bind.addr(),
        txt_value("a.thumb")
    );
    assert!(err.contains(&want), "{err}\nwanted: {want}");
}

#[tokio::test]
async fn min_wait_is_honoured_even_when_records_are_visible() {
    let bind = Bind::start(&["host1.example.test"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&bind, hooks(&bind, &dir.path().join("log")));
    cfg.min_wait = Duration::from_millis(700);
    let solver = Dns01Solver::from_config(&cfg).unwrap();
    let tasks = [task("host1.example.test", "a.thumb")];
    let t0 = Instant::now();
    solver.present(&tasks).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(700));
    solver.cleanup(&tasks).await.unwrap();
}

#[derive(Clone, Default)]
struct Screen(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Screen {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn manual_prints_the_records_waits_for_enter_then_checks_them() {
    let bind = Bind::start(&["host1.example.test"]).unwrap();
    let screen = Screen::default();
    let manual = Manual::with_io(Box::new(&b"\n"[..]), Box::new(screen.clone()));
    let cfg = config(&bind, ProviderConfig::Manual);
    let solver = Dns01Solver::with_provider(Arc::new(manual), &cfg).unwrap();
    let tasks = [task("alias.example.test", "m.thumb")];
    // The "person" creates the record (at the CNAME target) before pressing Enter.
    bind.nsupdate_add_txt(
        "host1.example.test",
        "_acme-challenge.host1.example.test",
        &txt_value("m.thumb"),
    )
    .unwrap();
    solver.present(&tasks).await.unwrap();
    let shown = String::from_utf8(screen.0.lock().unwrap().clone()).unwrap();
    let block = format!(
        "Please deploy a DNS TXT record under the name:\n\n_acme-challenge.host1.example.test.\n\n\
         with the following value:\n\n{}\n\n(_acme-challenge.alias.example.test is a CNAME to this name.)\n",
        txt_value("m.thumb")
    );
    assert!(shown.starts_with(&block), "{shown}");
    assert!(shown.contains("Press Enter"), "{shown}");
}

#[tokio::test]
async fn manual_without_a_terminal_says_to_use_a_hook() {
    let bind = Bind::start(&["host1.example.test"]).unwrap();
    let manual = Manual::with_io(Box::new(&b""[..]), Box::new(Screen::default()));
    let solver =
        Dns01Solver::with_provider(Arc::new(manual), &config(&bind, ProviderConfig::Manual)).unwrap();
    let err = solver
        .present(&[task("host1.example.test", "m.thumb")])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--manual-auth-hook"), "{err}");
}
