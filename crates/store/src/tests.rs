//! Store-level unit tests (certbot interop lives in tests/).

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use super::*;

fn self_signed(names: &[&str]) -> CertFiles {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let cert = params.self_signed(&key).unwrap();
    CertFiles::new(cert.pem(), cert.pem(), key.serialize_pem())
}

fn conf() -> RenewalConf {
    let mut c = RenewalConf::new();
    c.set_param("authenticator", "webroot");
    c.set_param("server", "https://127.0.0.1:14000/dir");
    c.set_param("key_type", "ecdsa");
    c
}

fn store() -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::new(Dirs::under(d.path()));
    (d, s)
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn new_lineage_layout_matches_certbot() {
    let (_d, s) = store();
    let files = self_signed(&["a.example", "www.a.example"]);
    let saved = s.save_version("a.example", &files, &conf()).unwrap();
    assert_eq!(
        saved,
        SavedVersion {
            name: "a.example".into(),
            version: 1,
            created_lineage: true,
            conf_not_updated: None,
        }
    );
    let cfg = &s.dirs().config_dir;
    assert_eq!(mode(&cfg.join("live")), 0o700);
    assert_eq!(mode(&cfg.join("archive")), 0o700);
    assert_eq!(mode(&cfg.join("archive/a.example/privkey1.pem")), 0o600);
    assert_eq!(mode(&cfg.join("archive/a.example/cert1.pem")), 0o644);
    assert_eq!(
        fs::read_link(cfg.join("live/a.example/fullchain.pem")).unwrap(),
        Path::new("../../archive/a.example/fullchain1.pem")
    );
    assert_eq!(
        fs::read_to_string(cfg.join("live/a.example/README")).unwrap(),
        lineage::readme_text(false)
    );
    assert!(cfg.join("live/README").exists());
    let l = s.load_lineage("a.example").unwrap();
    assert_eq!(l.version(), Some(1));
    l.check().unwrap();
    assert_eq!(l.names().unwrap(), vec!["a.example", "www.a.example"]);
    assert_eq!(l.conf.authenticator(), Some("webroot"));
    assert_eq!(l.conf.version(), Some(renewal_conf::CERTBOT_COMPAT_VERSION));
    assert_eq!(
        l.conf.archive_dir(),
        Some(cfg.join("archive/a.example").to_str().unwrap())
    );
    assert_eq!(
        fs::read_to_string(l.live_path(Kind::Privkey)).unwrap(),
        files.privkey_pem
    );
    assert_eq!(s.list_lineages().unwrap(), vec!["a.example"]);
}

#[test]
fn renewal_adds_version_and_switches_links() {
    let (_d, s) = store();
    s.save_version("a.example", &self_signed(&["a.example"]), &conf())
        .unwrap();
    // Group/world-read bits of the old key carry over (certbot's compute_private_key_mode).
    let cfg = s.dirs().config_dir.clone();
    fs::set_permissions(
        cfg.join("archive/a.example/privkey1.pem"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let mut c = s.load_lineage("a.example").unwrap().conf;
    c.set_param("reuse_key", "True");
    let files2 = self_signed(&["a.example"]);
    let saved = s.save_version("a.example", &files2, &c).unwrap();
    assert_eq!(saved.version, 2);
    assert!(!saved.created_lineage);
    let l = s.load_lineage("a.example").unwrap();
    assert_eq!(l.version(), Some(2));
    assert!(l.conf.reuse_key());
    assert_eq!(
        fs::read_to_string(l.live_path(Kind::Cert)).unwrap(),
        files2.cert_pem
    );
    assert_eq!(mode(&cfg.join("archive/a.example/privkey2.pem")), 0o640);
    assert!(!cfg.join("live/a.example/previous_cert.pem").exists());
    assert_eq!(l.latest_common_version().unwrap(), Some(2));
    assert_eq!(l.next_free_version().unwrap(), 3);
}

#[test]
fn naming_suffixes_and_orphans() {
    let (_d, s) = store();
    let lock = s.lock().unwrap();
    let doms = vec!["*.a.example".to_string(), "a.example".to_string()];
    assert_eq!(s.new_lineage_name(&doms, None, &lock).unwrap(), "a.example");
    s.save_version("a.example", &self_signed(&["a.example"]), &conf())
        .unwrap();
    assert_eq!(s.new_lineage_name(&doms, None, &lock).unwrap(), "a.example-0001");
    // A directory without a conf holding something that is not ours counts as taken.
    fs::create_dir_all(s.dirs().archive_dir().join("a.example-0001")).unwrap();
    fs::write(s.dirs().archive_dir().join("a.example-0001/notes.txt"), "x").unwrap();
    assert_eq!(s.new_lineage_name(&doms, None, &lock).unwrap(), "a.example-0002");
    assert_eq!(
        s.new_lineage_name(&doms, Some("custom"), &lock).unwrap(),
        "custom"
    );
    let e = s
        .save_version("a.example-0001", &self_signed(&["a.example"]), &conf())
        .unwrap_err();
    assert!(matches!(e, StoreError::NameInUse { .. }), "{e}");
}

#[test]
fn interrupted_switch_is_rolled_back_on_load() {
    let (_d, s) = store();
    let live = two_versions(&s);
    // Simulate a crash mid-switch from version 1 to 2: journal complete, cert already on 2.
    for k in Kind::ALL {
        let target = format!("../../archive/a.example/{}1.pem", k.as_str());
        std::os::unix::fs::symlink(&target, live.join(format!("previous_{}.pem", k.as_str()))).unwrap();
        if k != Kind::Cert {
            atomic::replace_symlink(Path::new(&target), &live.join(format!("{}.pem", k.as_str()))).unwrap();
        }
    }
    let l = s.load_lineage("a.example").unwrap();
    assert_eq!(l.version(), Some(1), "rolled back to the complete previous set");
    assert!(!live.join("previous_cert.pem").exists());
    // And update_symlinks moves forward to the newest complete version.
    assert_eq!(s.update_symlinks("a.example").unwrap(), 2);
    assert_eq!(s.load_lineage("a.example").unwrap().version(), Some(2));
}

#[test]
fn no_repair_while_another_instance_holds_the_lock() {
    let (_d, s) = store();
    s.save_version("a.example", &self_signed(&["a.example"]), &conf())
        .unwrap();
    let live = s.dirs().live_dir().join("a.example");
    for k in Kind::ALL {
        let target = format!("../../archive/a.example/{}1.pem", k.as_str());
        std::os::unix::fs::symlink(&target, live.join(format!("previous_{}.pem", k.as_str()))).unwrap();
    }
    // Someone else (e.g. certbot) holds the lock and may be mid-switch: leave the journal.
    let other = lock::DirLock::acquire(&s.dirs().config_dir).unwrap();
    s.load_lineage("a.example").unwrap();
    assert!(live.join("previous_cert.pem").exists());
    drop(other);
    // Our own lock holder repairs.
    let _g = s.lock().unwrap();
    s.load_lineage("a.example").unwrap();
    assert!(!live.join("previous_cert.pem").exists());
}

#[test]
fn partial_version_is_skipped() {
    let (_d, s) = store();
    s.save_version("a.example", &self_signed(&["a.example"]), &conf())
        .unwrap();
    // A crash while writing version 2 left only cert2.pem.
    fs::write(s.dirs().archive_dir().join("a.example/cert2.pem"), "partial").unwrap();
    assert_eq!(s.update_symlinks("a.example").unwrap(), 1);
    let saved = s
        .save_version("a.example", &self_signed(&["a.example"]), &conf())
        .unwrap();
    assert_eq!(saved.version, 3);
    s.load_lineage("a.example").unwrap().check().unwrap();
}

#[test]
fn delete_and_find_by_domains() {
    let (_d, s) = store();
    s.save_version("a", &self_signed(&["a.example"]), &conf())
        .unwrap();
    s.save_version("ab", &self_signed(&["a.example", "b.example"]), &conf())
        .unwrap();
    let want = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let m = s.find_by_domains(&want(&["a.example", "b.example"])).unwrap();
    assert_eq!(m.identical.unwrap().name, "ab");
    assert_eq!(m.subset.unwrap().name, "a");
    let m = s
        .find_by_domains(&want(&["a.example", "b.example", "c.example"]))
        .unwrap();
    assert!(m.identical.is_none());
    assert_eq!(m.subset.unwrap().name, "ab");
    s.delete_lineage("ab").unwrap();
    assert_eq!(s.list_lineages().unwrap(), vec!["a"]);
    assert!(!s.dirs().live_dir().join("ab").exists());
    assert!(!s.dirs().archive_dir().join("ab").exists());
    let e = s.delete_lineage("ab").unwrap_err();
    assert!(e.to_string().contains("ab.conf"), "{e}");
    let e = s.load_lineage("nope").unwrap_err();
    assert!(e.to_string().contains("renewal/nope.conf"), "{e}");
}

#[test]
fn broken_conf_reported_with_file() {
    let (_d, s) = store();
    fs::create_dir_all(s.dirs().renewal_dir()).unwrap();
    fs::write(s.conf_path("bad"), "version = 2.1.0\n").unwrap();
    let e = s.load_lineage("bad").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("bad.conf") && msg.contains("cert = "), "{msg}");
}

#[test]
fn lock_excludes_second_store() {
    let (_d, s) = store();
    let g = s.lock().unwrap();
    let e = Store::new(s.dirs().clone()).lock().unwrap_err();
    assert!(matches!(e, StoreError::Locked { .. }), "{e}");
    drop(g);
    s.lock().unwrap();
}

/// Listing must stay cheap with thousands of lineages: one conf read and a few readlinks.
#[test]
fn list_2000_lineages_fast() {
    let (_d, s) = store();
    let cfg = s.dirs().config_dir.clone();
    fs::create_dir_all(s.dirs().renewal_dir()).unwrap();
    for i in 0..2000 {
        let name = format!("host{i:04}.example");
        let live = cfg.join("live").join(&name);
        let archive = cfg.join("archive").join(&name);
        fs::create_dir_all(&live).unwrap();
        fs::create_dir_all(&archive).unwrap();
        let mut c = conf();
        for k in Kind::ALL {
            fs::write(archive.join(format!("{}1.pem", k.as_str())), "x").unwrap();
            std::os::unix::fs::symlink(
                format!("../../archive/{name}/{}1.pem", k.as_str()),
                live.join(format!("{}.pem", k.as_str())),
            )
            .unwrap();
            c.set(
                k.as_str(),
                live.join(format!("{}.pem", k.as_str()))
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        c.set("archive_dir", archive.to_string_lossy().into_owned());
        fs::write(s.conf_path(&name), c.to_text().unwrap()).unwrap();
    }
    let start = Instant::now();
    let all = s.load_all().unwrap();
    let elapsed = start.elapsed();
    println!("loaded {} lineages in {elapsed:?}", all.len());
    assert_eq!(all.len(), 2000);
    assert!(all.iter().all(|l| l.as_ref().unwrap().version() == Some(1)));
    // Generous bound for a debug build on a shared 2-core machine.
    assert!(elapsed.as_secs_f64() < 5.0, "listing took {elapsed:?}");
}

/// Issue 11: a hook configobj cannot store is refused, naming the key, before the archive,
/// live/ or renewal/ change, for a new lineage and for a renewal alike.
#[test]
fn unstorable_hook_is_refused_before_anything_is_written() {
    let (d, s) = store();
    let bad = "a ''' # b \"\"\" # c";
    let mut c = conf();
    c.set_param("renew_hook", bad);
    let err = s
        .save_version("a.example", &self_signed(&["a.example"]), &c)
        .unwrap_err();
    assert!(err.to_string().contains("\"renew_hook\""), "{err}");
    assert!(!s.dirs().archive_dir().join("a.example").exists());
    assert!(!s.dirs().live_dir().join("a.example").exists());

    s.save_version("a.example", &self_signed(&["a.example"]), &conf())
        .unwrap();
    let before = fs::read_to_string(s.conf_path("a.example")).unwrap();
    let err = s
        .save_version("a.example", &self_signed(&["a.example"]), &c)
        .unwrap_err();
    assert!(err.to_string().contains("\"renew_hook\""), "{err}");
    assert_eq!(fs::read_to_string(s.conf_path("a.example")).unwrap(), before);
    assert!(!d.path().join("config/archive/a.example/cert2.pem").exists());
    assert_eq!(s.load_lineage("a.example").unwrap().version(), Some(1));
}

/// update_symlinks used to report success after pointing links at files that do not exist.
/// Now every target must be a readable file, or it fails naming the file and changes nothing.
#[test]
fn update_symlinks_refuses_links_to_missing_files() {
    let (_d, s) = store();
    let live = two_versions(&s);
    // Links whose directory part points elsewhere (an archive moved by hand), on version 1.
    set_links(&live, "moved", 1);
    let links = || Kind::ALL.map(|k| fs::read_link(live.join(format!("{}.pem", k.as_str()))).unwrap());
    let before = links();
    let err = s.update_symlinks("a.example").unwrap_err().to_string();
    assert!(err.contains("archive/moved/cert2.pem"), "{err}");
    assert_eq!(before, links(), "no link changed");
    // Already on version 2 but the targets are missing: still an error, not success.
    set_links(&live, "moved", 2);
    assert!(s.update_symlinks("a.example").is_err());
}

/// A killed first `certonly` left `archive/NAME/.cert1.pem.tmp-*` and `live/.NAME.new-PID/`
/// (or a complete live/NAME without a renewal conf); the retry took `NAME-0001`. Now the
/// lock's cleanup and the name choice recognise a dead run's leftovers and reuse NAME.
#[test]
fn retry_after_killed_first_certonly_reuses_the_name() {
    let (_d, s) = store();
    let archive = s.dirs().archive_dir().join("a.example");
    let live_root = s.dirs().live_dir();
    fs::create_dir_all(&archive).unwrap();
    fs::write(archive.join("cert1.pem"), "partial").unwrap();
    fs::write(archive.join(".privkey1.pem.tmp-999999-0"), "partial").unwrap();
    fs::create_dir_all(live_root.join(".a.example.new-999999")).unwrap();
    fs::create_dir_all(live_root.join(".b.example.switch-999998/sub")).unwrap();
    let lock = s.lock().unwrap();
    assert!(
        !live_root.join(".a.example.new-999999").exists(),
        "staging dir of a dead run removed"
    );
    assert!(!live_root.join(".b.example.switch-999998").exists());
    let doms = vec!["a.example".to_string()];
    assert_eq!(s.new_lineage_name(&doms, None, &lock).unwrap(), "a.example");
    s.save_version("a.example", &self_signed(&["a.example"]), &conf())
        .unwrap();
    assert_eq!(
        fs::read_dir(&archive).unwrap().count(),
        4,
        "only the new version 1"
    );
    s.load_lineage("a.example").unwrap().check().unwrap();

    // Killed after live/NAME was complete but before the conf: the same.
    fs::remove_file(s.conf_path("a.example")).unwrap();
    assert_eq!(s.new_lineage_name(&doms, None, &lock).unwrap(), "a.example");
    assert!(!live_root.join("a.example").exists());
    // Something of the user's in it: left alone, a suffix is used.
    s.save_version("a.example", &self_signed(&["a.example"]), &conf())
        .unwrap();
    fs::remove_file(s.conf_path("a.example")).unwrap();
    fs::write(live_root.join("a.example/combined.pem"), "mine").unwrap();
    assert_eq!(s.new_lineage_name(&doms, None, &lock).unwrap(), "a.example-0001");
    assert!(live_root.join("a.example/combined.pem").exists());
}

/// Files a deploy hook put into live/NAME survive the directory exchange of a renewal.
#[test]
fn renewal_keeps_other_files_in_the_live_directory() {
    let (_d, s) = store();
    s.save_version("a.example", &self_signed(&["a.example"]), &conf())
        .unwrap();
    let live = s.dirs().live_dir().join("a.example");
    fs::write(live.join("combined.pem"), "hook output").unwrap();
    fs::create_dir(live.join("extra")).unwrap();
    fs::write(live.join("extra/x"), "x").unwrap();
    std::os::unix::fs::symlink("combined.pem", live.join("alias.pem")).unwrap();
    s.save_version("a.example", &self_signed(&["a.example"]), &conf())
        .unwrap();
    assert_eq!(
        fs::read_to_string(live.join("combined.pem")).unwrap(),
        "hook output"
    );
    assert_eq!(fs::read_to_string(live.join("extra/x")).unwrap(), "x");
    assert_eq!(
        fs::read_link(live.join("alias.pem")).unwrap(),
        Path::new("combined.pem")
    );
    assert!(live.join("README").exists());
    assert_eq!(s.load_lineage("a.example").unwrap().version(), Some(2));
    let leftovers: Vec<_> = fs::read_dir(s.dirs().live_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A FIFO in renewal/ hung `renew` and `certificates` (reading it waits for a writer
/// forever, under the store lock). It is skipped with a warning; loading it by name fails
/// at once, naming it.
#[test]
fn fifo_in_renewal_dir_is_skipped_not_opened() {
    let (_d, s) = store();
    s.save_version("a.example", &self_signed(&["a.example"]), &conf())
        .unwrap();
    let fifo = s.conf_path("stuck");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    fs::create_dir(s.conf_path("dir")).unwrap();
    let t = Instant::now();
    assert_eq!(s.list_lineages().unwrap(), vec!["a.example".to_string()]);
    let e = s.load_lineage("stuck").unwrap_err().to_string();
    assert!(e.contains("stuck.conf") && e.contains("FIFO"), "{e}");
    assert!(t.elapsed().as_secs() < 5);
}

/// A conf without [renewalparams] was renewed against Let's Encrypt production by default.
/// It is broken: the error names the file and says how to repair it.
#[test]
fn conf_without_renewalparams_is_broken_not_defaulted() {
    let (_d, s) = store();
    s.save_version("a.example", &self_signed(&["a.example"]), &conf())
        .unwrap();
    let path = s.conf_path("a.example");
    let text = fs::read_to_string(&path).unwrap();
    let cut = text.find("\n# Options used in the renewal process").unwrap();
    fs::write(&path, &text[..cut + 1]).unwrap();
    let e = s.load_lineage("a.example").unwrap_err().to_string();
    assert!(
        e.contains("a.example.conf") && e.contains("[renewalparams]"),
        "{e}"
    );
    assert!(e.contains("server = ") && e.contains("never falls back"), "{e}");
    // Present but without a server: the same.
    fs::write(
        &path,
        format!("{}\n[renewalparams]\nauthenticator = webroot\n", &text[..cut]),
    )
    .unwrap();
    let e = s.load_lineage("a.example").unwrap_err().to_string();
    assert!(e.contains("`server =`"), "{e}");
}

/// Point the four live links at `../../archive/DIR/{kind}VERSION.pem`.
fn set_links(live: &Path, dir: &str, version: u32) {
    for k in Kind::ALL {
        let target = format!("../../archive/{dir}/{}{version}.pem", k.as_str());
        atomic::replace_symlink(Path::new(&target), &live.join(format!("{}.pem", k.as_str()))).unwrap();
    }
}

/// Lineage a.example with versions 1 and 2 (2 live); returns its live directory.
fn two_versions(s: &Store) -> PathBuf {
    for _ in 0..2 {
        s.save_version("a.example", &self_signed(&["a.example"]), &conf())
            .unwrap();
    }
    s.dirs().live_dir().join("a.example")
}
