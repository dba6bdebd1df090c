//! The engine as the fleet server uses it, against a real Pebble: `issue` hands back the
//! bundle and stores nothing; `run_pass` decides with the injected clock and reports through
//! the event sink.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certfleet_core::{FixedClock, Identifier, KeySpec, SystemClock};
use certfleet_engine::account::{self, AccountOptions};
use certfleet_engine::authenticator::{AuthSpec, SolverContext};
use certfleet_engine::issue::{self, IssueRequest, KeySource};
use certfleet_engine::renewal::{self, Outcome, PassOptions};
use certfleet_engine::{Event, EventSink, NoEvents};
use certfleet_renew::HookConfig;
use certfleet_store::{CertFiles, Dirs, RenewalConf, Store};
use certfleet_testkit::Pebble;

/// Every event, as one line each.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl EventSink for Recorder {
    fn event(&self, e: &Event<'_>) {
        let line = match e {
            Event::Step(s) => format!("step: {s}"),
            Event::Renewing { name, .. } => format!("renewing {name}"),
            Event::Renewed { name, version, .. } => format!("renewed {name} v{version}"),
            Event::RenewalFailed { name, error } => format!("failed {name}: {}", error.message()),
        };
        self.0.lock().unwrap().push(line);
    }
}

impl Recorder {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_returns_the_bundle_and_renewal_pass_uses_the_clock() {
    let pebble = Pebble::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(Dirs::under(tmp.path()));
    let server = pebble.directory_url();
    let client = account::connect(&server, Some(pebble.ca_bundle_path().to_path_buf()))
        .await
        .unwrap();
    let opts = AccountOptions {
        agree_tos: true,
        register_unsafely_without_email: true,
        ..AccountOptions::default()
    };
    let (acct, body) = account::register_new(&opts, &client, &NoEvents).await.unwrap();

    // issue(): the bundle comes back; nothing is written anywhere.
    let name = "engine.example.test";
    let auth = AuthSpec::Standalone {
        address: "127.0.0.1".into(),
        port: pebble.http_port(),
    };
    let ctx = SolverContext {
        work_dir: store.dirs().work_dir.clone(),
    };
    let solver = auth.solver(&ctx).await.unwrap();
    let events = Recorder::default();
    let req = IssueRequest {
        identifiers: vec![Identifier::dns(name).unwrap()],
        key: KeySource::Generate(KeySpec::EcdsaP256),
        preferred_profile: None,
        required_profile: None,
        preferred_chain: None,
        replaces: None,
        timeout: Duration::from_secs(60),
    };
    let issued = issue::issue(&acct, solver.as_ref(), req, &events).await.unwrap();
    drop(solver);
    assert_eq!(
        issued.fullchain_pem,
        format!("{}{}", issued.cert_pem, issued.chain_pem)
    );
    assert_eq!(issued.info.names, vec![name.to_string()]);
    let key = issued.key.clone().expect("a generated key comes back");
    assert!(issued.info.matches_key(&key));
    pebble
        .verify_chain(
            issued.fullchain_pem.as_bytes(),
            &[name],
            std::time::SystemTime::now(),
        )
        .unwrap();
    let steps = events.lines();
    assert!(
        steps[0].starts_with("step: ordering a certificate for"),
        "{steps:?}"
    );
    assert!(
        steps.iter().any(|s| s == "step: downloading the certificate"),
        "{steps:?}"
    );
    assert!(!store.dirs().config_dir.exists(), "issue() stores nothing");

    // The caller stores it as a lineage; a pass at a chosen time renews it or not.
    let rec = account::record(&acct, body, &SystemClock);
    store.accounts().save(&server, &rec).unwrap();
    let mut conf = RenewalConf::default();
    auth.record(&mut conf);
    conf.set_param("server", server.clone());
    conf.set_param("account", rec.id.clone());
    conf.set_param("ca_bundle", pebble.ca_bundle_path().display().to_string());
    let files = CertFiles::new(issued.cert_pem.clone(), issued.chain_pem.clone(), key.to_pem());
    store.save_version(name, &files, &conf).unwrap();

    let pass = |clock: Arc<FixedClock>, events: Arc<Recorder>| PassOptions {
        only: vec![],
        force: false,
        dry_run: false,
        jobs: 2,
        hooks: HookConfig::new(&store.dirs().config_dir),
        reload: None,
        next_run: None,
        server_override: None,
        ca_bundle: None,
        account_override: None,
        overrides: Default::default(),
        interrupt: false,
        registration: Default::default(),
        stop: Arc::new(AtomicBool::new(false)),
        clock,
        events,
    };
    let now = issued.info.not_before + time::Duration::days(1);
    let events = Arc::new(Recorder::default());
    // A first pass with nothing due (no state, no directory cache yet) writes nothing but the
    // CA directory cache; a later one writes nothing at all.
    let before = snapshot(tmp.path());
    let report = renewal::run_pass(&store, pass(Arc::new(FixedClock::new(now)), events.clone()))
        .await
        .unwrap();
    assert!(
        matches!(report.lineages[0].outcome, Outcome::NotDue { .. }),
        "{report:?}"
    );
    assert!(events.lines().is_empty(), "{:?}", events.lines());
    let after = snapshot(tmp.path());
    let state_dir = store.dirs().work_dir.join("renewal-state");
    let changed = changes(&before, &after);
    assert_eq!(
        changed,
        vec![state_dir.join("ca-directories.cache")],
        "a first pass with nothing due"
    );
    let report = renewal::run_pass(&store, pass(Arc::new(FixedClock::new(now)), events.clone()))
        .await
        .unwrap();
    assert!(
        matches!(report.lineages[0].outcome, Outcome::NotDue { .. }),
        "{report:?}"
    );
    let changed = changes(&after, &snapshot(tmp.path()));
    assert!(changed.is_empty(), "a later pass with nothing due: {changed:?}");

    let late = issued.info.not_after - time::Duration::days(1);
    let report = renewal::run_pass(&store, pass(Arc::new(FixedClock::new(late)), events.clone()))
        .await
        .unwrap();
    assert!(
        matches!(report.lineages[0].outcome, Outcome::Renewed { version: 2, .. }),
        "{report:?}"
    );
    let lines = events.lines();
    assert!(lines.contains(&format!("renewing {name}")), "{lines:?}");
    assert!(lines.contains(&format!("renewed {name} v2")), "{lines:?}");
    // The success was recorded at the clock's time, not the wall clock's.
    let state = renewal::lineage_state(&store, name).unwrap();
    assert_eq!(state.last_attempt, Some(late));
}

type Snapshot = std::collections::BTreeMap<std::path::PathBuf, (std::time::SystemTime, u64)>;

/// Every file and link under `root` with its mtime and size (links not followed; directories
/// only change when one of these does).
fn snapshot(root: &std::path::Path) -> Snapshot {
    let mut out = Snapshot::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let meta = e.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                todo.push(e.path());
            } else {
                out.insert(e.path(), (meta.modified().unwrap(), meta.len()));
            }
        }
    }
    out
}

/// The paths added, removed or modified between two snapshots, sorted.
fn changes(a: &Snapshot, b: &Snapshot) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = a
        .keys()
        .chain(b.keys())
        .filter(|p| a.get(*p) != b.get(*p))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}
