//! Crash safety of `certfleet renew`, proven with the real binary against a real Pebble: it is
//! aborted at every crash point the store defines (`CERTFLEET_CRASH_AT`) and SIGKILLed at
//! random moments; after each, every live/ lineage must point at a complete, matching
//! cert+key+chain set, and the next `renew` must complete. A clean run leaves no temp files.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

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
    "after-symlink-cert",
    "after-symlink-privkey",
    "after-symlink-chain",
    "after-symlink-fullchain",
    "before-exchange",
    "after-exchange",
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
            && (name.contains(".tmp")
                || name.contains(".link-")
                || name.contains(".new-")
                || name.contains(".switch-"))
        {
            out.push(p.display().to_string());
        }
        if e.file_type().unwrap().is_dir() {
            temp_files(&p, out);
        }
    }
}

/// Start `certfleet ARGS`, SIGKILL it at a moment drawn from `[0, window)` (xorshift on
/// `seed`); returns the moment and whether the kill hit a still-running process.
fn kill_at_random(env: &Env, args: &[&str], seed: &mut u64, window: Duration) -> (Duration, bool) {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let at = window.mul_f64((*seed % 10_000) as f64 / 10_000.0);
    let mut child = env
        .cmd(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(at);
    let finished = child.try_wait().unwrap().is_some();
    child.kill().ok(); // SIGKILL
    let status = child.wait().unwrap();
    (at, !finished && status.signal() == Some(9))
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

/// A full disk when the renewal conf is rewritten, after the new version went live: the
/// renewal is reported as done (the new certificate is served) with a warning saying what was
/// not recorded; it used to be reported FAILED.
#[test]
fn disk_full_at_the_conf_write_after_the_switch_is_a_renewal_with_a_warning() {
    let env = setup();
    let before = assert_consistent(&env, "initial");
    let conf = env.config_dir().join(format!("renewal/{}.conf", NAMES[0]));
    let conf_before = std::fs::read(&conf).unwrap();
    let out = env
        .cmd(&["renew", "--force-renewal", "--cert-name", NAMES[0]])
        .env("CERTFLEET_FAIL_AT", "renewal-conf")
        .output()
        .unwrap();
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{all}");
    assert!(stdout(&out).contains("1 renewed"), "{all}");
    assert!(
        all.contains("renewal conf was not rewritten") && all.contains("no space left"),
        "{all}"
    );
    let after = assert_consistent(&env, "after the failed conf write");
    assert_eq!(after[0], before[0] + 1, "the new version is live");
    assert_eq!(
        std::fs::read(&conf).unwrap(),
        conf_before,
        "the conf is untouched"
    );
    let mut tmp = Vec::new();
    temp_files(&env.config_dir(), &mut tmp);
    assert!(tmp.is_empty(), "temp files left: {tmp:?}");
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
        let (at, hit) = kill_at_random(
            &env,
            &["renew", "--force-renewal", "--jobs", "3", "-q"],
            &mut seed,
            window,
        );
        if hit {
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
    clean_and_listed_by_certbot(&env, &NAMES);
}

/// No temp files are left after a clean run, and certbot lists every lineage as valid.
fn clean_and_listed_by_certbot(env: &Env, names: &[&str]) {
    let mut tmp = Vec::new();
    temp_files(&env.config_dir(), &mut tmp);
    temp_files(&env.tmp.path().join("work"), &mut tmp);
    assert!(tmp.is_empty(), "temp files left after a clean run: {tmp:?}");
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
    for n in names {
        assert!(
            text.contains(n),
            "{text}\n{}",
            String::from_utf8_lossy(&listed.stderr)
        );
    }
    assert!(!text.contains("INVALID"), "{text}");
}

/// The live set exactly as a web server reads it right after a kill, through the symlinks
/// with no repair by any tool: cert, key and chain of one version. Returns the cert's
/// archive version, and whether the archive already holds a newer complete version (the
/// kill landed between writing the archive and switching the links).
fn raw_live_matches(env: &Env, name: &str, context: &str) -> (u32, bool) {
    let live = env.live(name);
    let read = |k: &str| {
        std::fs::read_to_string(live.join(format!("{k}.pem")))
            .unwrap_or_else(|e| panic!("{context}: {name}: {k}.pem: {e}"))
    };
    let (cert, chain, full, key) = (read("cert"), read("chain"), read("fullchain"), read("privkey"));
    let info = CertInfo::from_pem(&cert).unwrap();
    let key = PrivateKey::from_pem(&key).unwrap();
    assert!(
        info.matches_key(&key),
        "{context}: {name}: key and certificate of different versions: {:?}",
        ["cert", "privkey", "chain", "fullchain"]
            .map(|k| std::fs::read_link(live.join(format!("{k}.pem"))).ok())
    );
    assert_eq!(
        full,
        format!("{cert}{chain}"),
        "{context}: {name}: fullchain is not cert + chain"
    );
    env.pebble
        .verify_chain(full.as_bytes(), &[name], std::time::SystemTime::now())
        .unwrap_or_else(|e| panic!("{context}: {name}: chain does not verify: {e}"));
    let link = std::fs::read_link(live.join("cert.pem")).unwrap();
    let version = Kind::Cert
        .parse_version(link.file_name().unwrap().to_str().unwrap())
        .unwrap();
    let archive = env.config_dir().join("archive").join(name);
    let newest_complete = (version + 1..version + 50)
        .take_while(|v| {
            ["cert", "chain", "fullchain", "privkey"]
                .iter()
                .all(|k| archive.join(format!("{k}{v}.pem")).exists())
        })
        .last();
    (version, newest_complete.is_some())
}

/// Issue: `kill -9` during `renew --force-renewal` left cert/privkey at version 47 and
/// fullchain at 46 (nginx: "key values mismatch"). Hundreds of SIGKILLs at random moments of
/// runs renewing four lineages at once; after every kill, every live/ set is read raw.
#[test]
fn sigkill_loop_never_leaves_cert_and_key_of_different_versions() {
    const BUDGET: Duration = Duration::from_secs(50);
    const MAX_KILLS: usize = 400;
    let names = [
        "k1.example.test",
        "k2.example.test",
        "k3.example.test",
        "k4.example.test",
    ];
    // Reused authorizations keep each run short, so more kills fit in the budget.
    let env = Env::new(Pebble::builder().env("PEBBLE_AUTHZREUSE", "100").start().unwrap());
    for n in names {
        let out = env.certonly_standalone(&[n], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let args = ["renew", "--force-renewal", "--jobs", "4", "-q"];
    let t0 = Instant::now();
    env.run_ok(&args);
    let mut window = t0.elapsed().mul_f64(1.2);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id());
    let (mut kills, mut mid_run, mut between_archive_and_switch, mut staging_left) = (0, 0, 0, 0);
    let mut versions_seen = std::collections::BTreeSet::new();
    let start = Instant::now();
    while start.elapsed() < BUDGET && kills < MAX_KILLS {
        let (at, hit) = kill_at_random(&env, &args, &mut seed, window);
        kills += 1;
        if hit {
            mid_run += 1;
        } else {
            // Runs got faster (warm caches): draw later kills from a shorter window.
            window = window.mul_f64(0.9);
        }
        let context = format!("kill #{kills} after {at:?}");
        for n in names {
            let (v, newer) = raw_live_matches(&env, n, &context);
            versions_seen.insert(v);
            between_archive_and_switch += usize::from(newer);
        }
        let live_root = env.config_dir().join("live");
        staging_left += std::fs::read_dir(&live_root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".switch-"))
            .count();
    }
    eprintln!(
        "sigkill loop: {kills} kills in {:?}, {mid_run} mid-run; afterwards {between_archive_and_switch} lineage(s) had a newer complete version not yet live, {staging_left} staging dir(s) were left mid-switch; live versions seen: {}..={}",
        start.elapsed(),
        versions_seen.first().unwrap_or(&0),
        versions_seen.last().unwrap_or(&0),
    );
    assert!(
        mid_run >= 100,
        "only {mid_run} of {kills} kills hit a running renew"
    );
    // The next run completes, and the store lock's cleanup leaves no temp files.
    let out = env.run_ok(&["renew", "--force-renewal", "--jobs", "4"]);
    assert!(stdout(&out).contains("4 renewed"), "{}", stdout(&out));
    for n in names {
        raw_live_matches(&env, n, "final");
    }
    clean_and_listed_by_certbot(&env, &names);
}
