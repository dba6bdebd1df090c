//! Power-cut tests: a child process saves a certificate version and aborts at a named point
//! (`CERTFLEET_CRASH_AT`); then both certfleet and the real certbot must find `live/`
//! pointing at one complete, matching set (cert, chain, fullchain and key of one version).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use certfleet_core::{CertInfo, PrivateKey};
use certfleet_store::{CertFiles, Kind, Store};
use common::*;

const SERVER: &str = "https://127.0.0.1:14000/dir";
const DIR_ENV: &str = "CERTFLEET_TEST_CRASH_DIR";
const MODE_ENV: &str = "CERTFLEET_TEST_CRASH_MODE";

fn write_files(dir: &Path, tag: &str, f: &CertFiles) {
    for (k, v) in [
        ("cert", &f.cert_pem),
        ("chain", &f.chain_pem),
        ("fullchain", &f.fullchain_pem),
        ("privkey", &f.privkey_pem),
    ] {
        std::fs::write(dir.join(format!("{tag}.{k}")), v).unwrap();
    }
}

fn read_files(dir: &Path, tag: &str) -> CertFiles {
    let r = |k: &str| std::fs::read_to_string(dir.join(format!("{tag}.{k}"))).unwrap();
    CertFiles {
        cert_pem: r("cert"),
        chain_pem: r("chain"),
        fullchain_pem: r("fullchain"),
        privkey_pem: r("privkey"),
    }
}

/// Runs only inside the child process started by the tests below.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else { return };
    let dir = Path::new(&dir);
    let store = Store::new(dirs_in(dir));
    let _lock = store.lock().unwrap();
    let files = read_files(dir, "next");
    let name = if std::env::var(MODE_ENV).as_deref() == Ok("new") {
        "b.example"
    } else {
        "a.example"
    };
    store.save_version(name, &files, &webroot_conf(SERVER)).unwrap();
}

fn run_child(dir: &Path, point: &str, mode: &str) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture"])
        .env("CERTFLEET_CRASH_AT", point)
        .env(DIR_ENV, dir)
        .env(MODE_ENV, mode)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "crash point {point:?} was never reached ({status})"
    );
}

/// The live set is complete and consistent: key matches cert, fullchain = cert + chain, and
/// it is exactly one of the versions we wrote. Returns which one (1-based index).
fn assert_consistent(store: &Store, name: &str, versions: &[&CertFiles]) -> usize {
    let l = store.load_lineage(name).unwrap();
    l.check().unwrap();
    let read = |k: Kind| std::fs::read_to_string(l.live_path(k)).unwrap();
    let (cert, chain, full, key) = (
        read(Kind::Cert),
        read(Kind::Chain),
        read(Kind::Fullchain),
        read(Kind::Privkey),
    );
    assert_eq!(full, format!("{cert}{chain}"));
    let spki = CertInfo::from_pem(&cert).unwrap().spki_der;
    assert_eq!(
        PrivateKey::from_pem(&key).unwrap().public_key_spki_der(),
        spki,
        "key does not match cert"
    );
    let idx = versions
        .iter()
        .position(|v| v.cert_pem == cert && v.privkey_pem == key && v.chain_pem == chain)
        .expect("live set is one of the written versions");
    assert_eq!(l.version(), Some(idx as u32 + 1));
    idx + 1
}

/// The live set as read through the symlinks alone, with no repair: which of `versions`
/// (1-based) it is. Panics on a mixed set.
fn raw_live_set(dirs: &certfleet_store::Dirs, name: &str, versions: &[&CertFiles]) -> usize {
    let live = dirs.config_dir.join("live").join(name);
    let read = |k: &str| std::fs::read_to_string(live.join(format!("{k}.pem"))).unwrap();
    let (cert, chain, full, key) = (read("cert"), read("chain"), read("fullchain"), read("privkey"));
    assert_eq!(full, format!("{cert}{chain}"), "fullchain = cert + chain");
    let spki = CertInfo::from_pem(&cert).unwrap().spki_der;
    assert_eq!(
        PrivateKey::from_pem(&key).unwrap().public_key_spki_der(),
        spki,
        "key matches cert"
    );
    1 + versions
        .iter()
        .position(|v| v.cert_pem == cert && v.privkey_pem == key && v.chain_pem == chain)
        .expect("live set is one of the written versions")
}

fn certbot_sees(dirs: &certfleet_store::Dirs, name: &str, files: &CertFiles) {
    let (ok, out) = certbot_certificates(dirs);
    assert!(ok, "{out}");
    assert!(!out.contains("parse failures"), "{out}");
    let t = CertInfo::from_pem(&files.cert_pem).unwrap().not_after;
    let expiry = format!(
        "Expiry Date: {:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    assert!(out.contains(&format!("Certificate Name: {name}")), "{out}");
    assert!(out.contains(&expiry), "certbot should see {expiry}:\n{out}");
}

#[test]
fn renewal_crash_at_every_point_leaves_a_complete_set() {
    // (point, version live afterwards)
    let points = [
        ("after-archive-cert", 1),
        ("after-archive-chain", 1),
        ("after-archive-fullchain", 1),
        ("after-archive-privkey", 1),
        ("before-symlinks", 1),
        ("after-symlink-cert", 1),
        ("after-symlink-privkey", 1),
        ("after-symlink-chain", 1),
        ("after-symlink-fullchain", 1),
        ("before-exchange", 1),
        ("after-exchange", 2),
        ("after-symlinks", 2),
        ("before-renewal-conf", 2),
        ("after-renewal-conf", 2),
    ];
    for (point, expected) in points {
        // Twice: once with certbot reading the crashed tree first (its own repair), once
        // with certfleet first.
        for certbot_first in [true, false] {
            let tmp = tempfile::tempdir().unwrap();
            let dirs = dirs_in(tmp.path());
            let store = Store::new(dirs.clone());
            let v1 = cert_files(&["a.example"], 30);
            let v2 = cert_files(&["a.example"], 90);
            store
                .save_version("a.example", &v1, &webroot_conf(SERVER))
                .unwrap();
            write_files(tmp.path(), "next", &v2);
            run_child(tmp.path(), point, "renew");
            // What a web server reading live/ right after the crash gets, before any repair.
            assert_eq!(
                raw_live_set(&dirs, "a.example", &[&v1, &v2]),
                expected,
                "raw live/ after crash at {point}"
            );
            let live = if certbot_first {
                certbot_sees(&dirs, "a.example", if expected == 1 { &v1 } else { &v2 });
                assert_consistent(&store, "a.example", &[&v1, &v2])
            } else {
                let live = assert_consistent(&store, "a.example", &[&v1, &v2]);
                certbot_sees(&dirs, "a.example", if live == 1 { &v1 } else { &v2 });
                live
            };
            assert_eq!(live, expected, "after crash at {point}");
            // The store carries on: the next version saves cleanly.
            let v3 = cert_files(&["a.example"], 60);
            let saved = store
                .save_version("a.example", &v3, &webroot_conf(SERVER))
                .unwrap();
            assert!(saved.version >= 2, "{point}: {saved:?}");
            store.load_lineage("a.example").unwrap().check().unwrap();
            if !certbot_first {
                continue;
            }
            // update_symlinks moves a rolled-back lineage to its newest complete version.
            assert_eq!(store.update_symlinks("a.example").unwrap(), saved.version);
        }
    }
}

#[test]
fn new_lineage_crash_is_invisible_or_complete() {
    let points = [
        ("after-archive-cert", false),
        ("after-archive-privkey", false),
        ("before-symlinks", false),
        ("after-symlink-cert", false),
        ("before-exchange", false),
        ("after-exchange", false),
        ("after-symlinks", false),
        ("before-renewal-conf", false),
        ("after-renewal-conf", true),
    ];
    for (point, visible) in points {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = dirs_in(tmp.path());
        let store = Store::new(dirs.clone());
        // An existing lineage must be untouched by the crash.
        let a = cert_files(&["a.example"], 30);
        store
            .save_version("a.example", &a, &webroot_conf(SERVER))
            .unwrap();
        let b = cert_files(&["b.example"], 50);
        write_files(tmp.path(), "next", &b);
        run_child(tmp.path(), point, "new");
        let names = store.list_lineages().unwrap();
        assert_eq!(
            names.contains(&"b.example".to_string()),
            visible,
            "{point}: {names:?}"
        );
        let (ok, out) = certbot_certificates(&dirs);
        assert!(ok && !out.contains("parse failures"), "{point}: {out}");
        assert_eq!(
            out.contains("Certificate Name: b.example"),
            visible,
            "{point}: {out}"
        );
        assert_consistent(&store, "a.example", &[&a]);
        if visible {
            assert_consistent(&store, "b.example", &[&b]);
        } else {
            // Issuing again reuses the name: the crash's leftovers are recognised and removed.
            let lock = store.lock().unwrap();
            let name = store
                .new_lineage_name(&["b.example".to_string()], None, &lock)
                .unwrap();
            // The leftovers of the interrupted creation are recognised: the name is reused.
            assert_eq!(name, "b.example", "{point}");
            store.save_version(&name, &b, &webroot_conf(SERVER)).unwrap();
            assert_consistent(&store, &name, &[&b]);
            drop(lock);
            let (ok, out) = certbot_certificates(&dirs);
            assert!(ok && out.contains(&format!("Certificate Name: {name}")), "{out}");
        }
    }
}
