//! Crash safety of `certfleet renew`, proven with the real binary against a real Pebble: it is
//! aborted at every crash point the store defines (`CERTFLEET_CRASH_AT`) and SIGKILLed at
//! random moments; after each, every live/ lineage must point at a complete, matching
//! cert+key+chain set, and the next `renew` must complete. A clean run leaves no temp files.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Instant;

use certfleet_core::{CertInfo, PrivateKey};
use certfleet_store::{Dirs, Kind, Store};
use certfleet_testkit::Pebble;
use common::*;

/// Every crash point in crates/store/src/lineage.rs reached by renewing an existing lineage.
const CRASH_POINTS: [&str; 14] = [
    "after-archive-cert",
    "after-archive-chain",
    "after-archive-fullchain",
    "after-archive-privkey",
    "before-symlinks",
    "after-previous-links",
    "after-symlink-cert",
    "after-symlink-privkey",
    "after-symlink-chain",
    "after-symlink-fullchain",
    "after-remove-previous-cert",
    "after-symlinks",
    "before-renewal-conf",
    "after-renewal-conf",
];

const NAMES: [&str; 3] = ["c1.example.test", "c2.example.test", "c3.example.test"];

fn store(env: &Env) -> Store {
    Store::new(Dirs::new(
        env.config_dir(),
        env.tmp.path().join("work"),
        env.tmp.path().join("logs"),
    ))
}

/// What any reader (certbot, certfleet, a web server after the reader's repair) sees: all four
/// links on one version, key matching the certificate, fullchain = cert + chain, chain valid.
fn assert_consistent(env: &Env, context: &str) -> Vec<u32> {
    let store = store(env);
    let mut versions = Vec::new();
    for name in NAMES {
        let l = store
            .load_lineage(name)
            .unwrap_or_else(|e| panic!("{context}: {name}: {e}"));
        l.check().unwrap_or_else(|e| panic!("{context}: {name}: {e}"));
        let read = |k: Kind| std::fs::read_to_string(l.live_path(k)).unwrap();
        let (cert, chain, full, key) = (
            read(Kind::Cert),
            read(Kind::Chain),
            read(Kind::Fullchain),
            read(Kind::Privkey),
        );
        let info = CertInfo::from_pem(&cert).unwrap();
        let key = PrivateKey::from_pem(&key).unwrap();
        assert!(
            info.matches_key(&key),
            "{context}: {name}: key does not match cert"
        );
        assert_eq!(full, format!("{cert}{chain}"), "{context}: {name}: fullchain");
        env.verify_lineage(name, &[name]);
        versions.push(l.version().unwrap());
    }
    versions
}

fn temp_files(dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if name.starts_with('.')
            && (name.contains(".tmp") || name.contains(".link-") || name.contains(".new-"))
        {
            out.push(p.display().to_string());
        }
        if e.file_type().unwrap().is_dir() {
            temp_files(&p, out);
        }
    }
}

fn setup() -> Env {
    let env = Env::new(Pebble::start().unwrap());
    for n in NAMES {
        let out = env.certonly_standalone(&[n], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    env
}

#[test]
fn crash_at_every_store_point_then_renew_completes() {
    let env = setup();
    let mut last = assert_consistent(&env, "initial");
    for point in CRASH_POINTS {
        let out = env
            .cmd(&["renew", "--force-renewal", "--cert-name", NAMES[0], "-q"])
            .env("CERTFLEET_CRASH_AT", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(6), // SIGABRT
            "crash point {point} was not reached: {:?}\n{}",
            out.status,
            stderr(&out)
        );
        let v = assert_consistent(&env, &format!("after crash at {point}"));
        // Before the link switch the old version stays live; after it the new one.
        let switched = CRASH_POINTS.iter().position(|p| *p == point).unwrap() >= 10;
        if switched {
            assert!(
                v[0] > last[0],
                "{point}: the new version should be live ({v:?} vs {last:?})"
            );
        } else {
            assert_eq!(v[0], last[0], "{point}: the old version should stay live");
        }
        // The next run completes the job (the lineage is not due, so force it).
        let out = env.run_ok(&["renew", "--force-renewal", "--cert-name", NAMES[0]]);
        assert!(stdout(&out).contains("1 renewed"), "{point}: {}", stdout(&out));
        last = assert_consistent(&env, &format!("after the renew following {point}"));
        let mut tmp = Vec::new();
        temp_files(&env.config_dir(), &mut tmp);
        temp_files(&env.tmp.path().join("work"), &mut tmp);
        assert!(
            tmp.is_empty(),
            "{point}: temp files left after a clean run: {tmp:?}"
        );
        // Nothing to do now: a plain renew exits 0.
        env.run_ok(&["renew", "-q"]);
    }
}

/// SIGKILL at moments spread over a whole run renewing three lineages at once.
#[test]
fn sigkill_at_random_moments() {
    let env = setup();
    // How long a clean run takes, to spread the kills over it.
    let t0 = Instant::now();
    env.run_ok(&["renew", "--force-renewal", "--jobs", "3", "-q"]);
    let full = t0.elapsed();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    // Kill moments are drawn over the duration of a clean run; when a run finishes before its
    // kill (runs get faster once caches are warm), the window shrinks, so the test keeps
    // landing kills inside runs however fast or loaded the machine is.
    let mut window = full;
    let mut killed_mid_run = 0;
    let mut attempts = 0;
    while killed_mid_run < 16 && attempts < 48 {
        attempts += 1;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = window.mul_f64((seed % 1000) as f64 / 1000.0);
        let mut child = env
            .cmd(&["renew", "--force-renewal", "--jobs", "3", "-q"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok(); // SIGKILL
        let status = child.wait().unwrap();
        if !finished && status.signal() == Some(9) {
            killed_mid_run += 1;
        } else {
            window = window.mul_f64(0.7);
        }
        assert_consistent(&env, &format!("kill #{attempts} after {at:?}"));
    }
    assert!(
        killed_mid_run >= 16,
        "only {killed_mid_run} of {attempts} kills hit a running renew"
    );
    // The next run completes and cleans up after the killed ones.
    let out = env.run_ok(&["renew", "--force-renewal", "--jobs", "3"]);
    assert!(stdout(&out).contains("3 renewed"), "{}", stdout(&out));
    assert_consistent(&env, "final");
    let mut tmp = Vec::new();
    temp_files(&env.config_dir(), &mut tmp);
    temp_files(&env.tmp.path().join("work"), &mut tmp);
    assert!(tmp.is_empty(), "temp files left after a clean run: {tmp:?}");
    // certbot reads the tree as well.
    let listed = std::process::Command::new("certbot")
        .args(["certificates", "--config-dir"])
        .arg(env.config_dir())
        .arg("--work-dir")
        .arg(env.tmp.path().join("work"))
        .arg("--logs-dir")
        .arg(env.tmp.path().join("logs"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    for n in NAMES {
        assert!(
            text.contains(n),
            "{text}\n{}",
            String::from_utf8_lossy(&listed.stderr)
        );
    }
    assert!(!text.contains("INVALID"), "{text}");
}
