//! certfleet-store against the real certbot 2.1 (Debian package) and its Python modules:
//! each side must read what the other wrote.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use certfleet_core::{CertInfo, KeySpec, PrivateKey};
use certfleet_store::{Account, CliIni, Kind, RenewalConf, Store, StoreError, Value};
use common::*;

const SERVER: &str = "https://127.0.0.1:14000/dir";

fn expiry_line(files: &certfleet_store::CertFiles) -> String {
    let t = CertInfo::from_pem(&files.cert_pem).unwrap().not_after;
    format!(
        "Expiry Date: {:04}-{:02}-{:02} {:02}:{:02}:{:02}+00:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[test]
fn certbot_lists_lineages_we_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = dirs_in(tmp.path());
    let store = Store::new(dirs.clone());
    let _lock_dir = store.ensure_dirs();
    let v1 = cert_files(&["a.example", "www.a.example"], 60);
    let saved = store
        .save_version("a.example", &v1, &webroot_conf(SERVER))
        .unwrap();
    assert_eq!(saved.version, 1);
    // A wildcard lineage named the certbot way.
    let name = store
        .new_lineage_name(
            &["*.b.example".to_string(), "b.example".to_string()],
            None,
            &store.lock().unwrap(),
        )
        .unwrap();
    assert_eq!(name, "b.example");
    let wild = cert_files(&["*.b.example", "b.example"], 80);
    store.save_version(&name, &wild, &webroot_conf(SERVER)).unwrap();

    let (ok, out) = certbot_certificates(&dirs);
    assert!(ok, "{out}");
    let live = dirs.config_dir.join("live/a.example");
    for needle in [
        "Certificate Name: a.example".to_string(),
        "Domains: a.example www.a.example".to_string(),
        expiry_line(&v1),
        format!("Certificate Path: {}", live.join("fullchain.pem").display()),
        format!("Private Key Path: {}", live.join("privkey.pem").display()),
        "Certificate Name: b.example".to_string(),
        "Domains: *.b.example b.example".to_string(),
        expiry_line(&wild),
    ] {
        assert!(out.contains(&needle), "missing {needle:?} in:\n{out}");
    }
    assert!(!out.contains("parse failures"), "{out}");

    // Renew: certbot follows the links to version 2.
    let conf = store.load_lineage("a.example").unwrap().conf;
    let v2 = cert_files(&["a.example", "www.a.example"], 89);
    assert_eq!(store.save_version("a.example", &v2, &conf).unwrap().version, 2);
    let (ok, out) = certbot_certificates(&dirs);
    assert!(ok, "{out}");
    assert!(out.contains(&expiry_line(&v2)), "{out}");

    // certbot's own RenewableCert agrees on versions and reads our renewal params.
    let script = format!(
        "{}lin = storage.RenewableCert(storage.renewal_file_for_certname(config, 'a.example'), config)\n\
         print(json.dumps({{'v': lin.current_version('cert'), 'latest': lin.latest_common_version(), \
         'pending': lin.has_pending_deployment(), 'auth': lin.configuration['renewalparams']['authenticator'], \
         'wr': lin.configuration['renewalparams']['webroot_path'], \
         'map': dict(lin.configuration['renewalparams']['webroot_map']), 'names': lin.names()}}))\n",
        py_config_prelude(&dirs, "certificates", SERVER, &[])
    );
    let v: serde_json::Value = serde_json::from_str(python(&script, &[]).trim()).unwrap();
    assert_eq!(v["v"], 2);
    assert_eq!(v["latest"], 2);
    assert_eq!(v["pending"], false);
    assert_eq!(v["auth"], "webroot");
    assert_eq!(v["wr"], serde_json::json!(["/var/www/html"]));
    assert_eq!(v["map"], serde_json::json!({"a.example": "/var/www/html"}));
    assert_eq!(v["names"], serde_json::json!(["a.example", "www.a.example"]));

    // certbot delete removes what we wrote cleanly; then our delete of the other one.
    store.delete_lineage("b.example").unwrap();
    let (ok, out) = certbot_certificates(&dirs);
    assert!(ok && !out.contains("b.example"), "{out}");
}

#[test]
fn we_read_and_renew_a_lineage_certbot_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = dirs_in(tmp.path());
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let v1 = cert_files(&["a.example", "www.a.example"], 30);
    let cert_path = tmp.path().join("c.pem");
    let key_path = tmp.path().join("k.pem");
    std::fs::write(&cert_path, &v1.cert_pem).unwrap();
    std::fs::write(&key_path, &v1.privkey_pem).unwrap();
    // certbot's storage module writes versions 1 and 2 with real CLI options.
    let script = format!(
        "{}cert = open(sys.argv[1], 'rb').read(); key = open(sys.argv[2], 'rb').read()\n\
         lin = storage.RenewableCert.new_lineage('a.example', cert, key, cert, config)\n\
         v = lin.save_successor(1, cert, key, cert, config)\n\
         lin.update_all_links_to(v)\n\
         print(lin.lineagename, v)\n",
        py_config_prelude(
            &dirs,
            "certonly",
            SERVER,
            &[
                "--webroot",
                "-w",
                www.to_str().unwrap(),
                "-d",
                "a.example",
                "-d",
                "www.a.example",
                "--pre-hook",
                "echo 'x' \"y\"",
                "--deploy-hook",
                "systemctl reload nginx",
                "--key-type",
                "ecdsa",
                "--reuse-key",
                "--rsa-key-size",
                "4096",
            ]
        )
    );
    assert_eq!(
        python(
            &script,
            &[cert_path.to_str().unwrap(), key_path.to_str().unwrap()]
        )
        .trim(),
        "a.example 2"
    );

    let store = Store::new(dirs.clone());
    assert_eq!(store.list_lineages().unwrap(), vec!["a.example"]);
    let l = store.load_lineage("a.example").unwrap();
    l.check().unwrap();
    assert_eq!(l.version(), Some(2));
    assert_eq!(l.names().unwrap(), vec!["a.example", "www.a.example"]);
    let c = &l.conf;
    assert_eq!(c.server(), Some(SERVER));
    assert_eq!(c.key_type(), Some("ecdsa"));
    assert!(c.reuse_key());
    assert_eq!(c.rsa_key_size().unwrap(), Some(4096));
    assert_eq!(c.pre_hook(), Some("echo 'x' \"y\""));
    assert_eq!(c.renew_hook(), Some("systemctl reload nginx"));
    assert_eq!(c.webroot_path(), vec![www.to_str().unwrap().to_string()]);
    // Our writer reproduces certbot's file byte for byte.
    let on_disk = std::fs::read_to_string(&l.conf_path).unwrap();
    assert_eq!(c.to_text().unwrap(), on_disk);

    // Renew it ourselves: version 3, and certbot agrees.
    let v3 = cert_files(&["a.example", "www.a.example"], 90);
    assert_eq!(store.save_version("a.example", &v3, c).unwrap().version, 3);
    let (ok, out) = certbot_certificates(&dirs);
    assert!(ok, "{out}");
    assert!(out.contains(&expiry_line(&v3)), "{out}");
    let after = RenewalConf::load(&l.conf_path).unwrap();
    assert_eq!(after.pre_hook(), Some("echo 'x' \"y\""));
    assert_eq!(store.load_lineage("a.example").unwrap().version(), Some(3));
}

#[test]
fn configobj_reads_what_we_write() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.conf");
    let mut c = RenewalConf::new();
    c.set("renew_before_expiry", "20 days");
    let values = [
        ("plain", "value"),
        ("both_quotes", "sh -c \"echo 'x'\""),
        ("comma", "a, b"),
        ("hash", "echo # not a comment"),
        ("spaces", "  padded  "),
        ("newline", "line1\nline2"),
        ("empty", ""),
        ("unicode", "h\u{e9}llo"),
    ];
    for (k, v) in values {
        c.set_param(k, v);
    }
    c.set_param("list2", Value::List(vec!["/a".into(), "/b c".into()]));
    c.set_param("list1", Value::List(vec!["/only".into()]));
    c.set_param("list0", Value::List(vec![]));
    c.set_webroot_map(&[("a.example".into(), "/w,1".into())]);
    c.prepare_for_write();
    let text = c.to_text().unwrap();
    std::fs::write(&path, &text).unwrap();
    let script = "import sys, json, io, configobj\n\
                  c = configobj.ConfigObj(sys.argv[1], encoding='utf-8', default_encoding='utf-8')\n\
                  b = io.BytesIO(); c.write(outfile=b)\n\
                  print(json.dumps({'dict': c.dict(), 'text': b.getvalue().decode('utf-8')}))";
    let v: serde_json::Value =
        serde_json::from_str(python(script, &[path.to_str().unwrap()]).trim()).unwrap();
    let params = &v["dict"]["renewalparams"];
    for (k, val) in values {
        assert_eq!(params[k], val, "key {k}");
    }
    assert_eq!(params["list2"], serde_json::json!(["/a", "/b c"]));
    assert_eq!(params["list1"], serde_json::json!(["/only"]));
    assert_eq!(params["list0"], serde_json::json!([]));
    assert_eq!(params["webroot_map"]["a.example"], "/w,1");
    assert_eq!(v["dict"]["renew_before_expiry"], "20 days");
    // configobj re-writes our file unchanged.
    assert_eq!(v["text"], text);
}

#[test]
fn accounts_interoperate_with_certbot() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = dirs_in(tmp.path());
    let store = Store::new(dirs.clone());
    let accounts = store.accounts();
    let now = time::OffsetDateTime::now_utc();
    let rsa = Account::new(
        PrivateKey::generate(KeySpec::Rsa(2048)).unwrap(),
        "https://127.0.0.1:14000/my-account/1",
        now,
    );
    let ec = Account::new(
        PrivateKey::generate(KeySpec::EcdsaP256).unwrap(),
        "https://127.0.0.1:14000/my-account/2",
        now,
    );
    let ec384 = Account::new(
        PrivateKey::generate(KeySpec::EcdsaP384).unwrap(),
        "https://127.0.0.1:14000/my-account/3",
        now,
    );
    for a in [&rsa, &ec, &ec384] {
        accounts.save(SERVER, a).unwrap();
    }
    // certbot loads each one and computes the same id from the key.
    let script = format!(
        "{}st = account.AccountFileStorage(config)\n\
         out = {{}}\n\
         for i in sys.argv[1:]:\n    a = st.load(i)\n    out[i] = [a.id, a.regr.uri, type(a.key).__name__]\n\
         out['all'] = sorted(a.id for a in st.find_all())\n\
         print(json.dumps(out))\n",
        py_config_prelude(&dirs, "certificates", SERVER, &[])
    );
    let v: serde_json::Value =
        serde_json::from_str(python(&script, &[&rsa.id, &ec.id, &ec384.id]).trim()).unwrap();
    assert_eq!(v[&rsa.id], serde_json::json!([rsa.id, rsa.uri(), "JWKRSA"]));
    assert_eq!(v[&ec.id], serde_json::json!([ec.id, ec.uri(), "JWKEC"]));
    assert_eq!(v[&ec384.id], serde_json::json!([ec384.id, ec384.uri(), "JWKEC"]));
    assert_eq!(v["all"].as_array().unwrap().len(), 3);

    // And we load an account certbot saved (RSA, as certbot makes them).
    let script = format!(
        "{}import types, josepy as jose\n\
         from cryptography.hazmat.primitives.asymmetric import rsa\n\
         from cryptography.hazmat.primitives import serialization\n\
         from acme import messages\n\
         key = jose.JWKRSA(key=rsa.generate_private_key(65537, 2048))\n\
         acc = account.Account(messages.RegistrationResource(body={{}}, uri='https://127.0.0.1:14000/my-account/9'), key)\n\
         account.AccountFileStorage(config).save(acc, types.SimpleNamespace(directory=types.SimpleNamespace()))\n\
         pub = key.key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)\n\
         print(json.dumps({{'id': acc.id, 'pub': pub.decode()}}))\n",
        py_config_prelude(&dirs, "certificates", SERVER, &[])
    );
    let v: serde_json::Value = serde_json::from_str(python(&script, &[]).trim()).unwrap();
    let id = v["id"].as_str().unwrap();
    let loaded = accounts.load(SERVER, id).unwrap();
    assert_eq!(loaded.id, id);
    assert_eq!(loaded.key.spec(), KeySpec::Rsa(2048));
    assert_eq!(
        certfleet_store::jwk::public_key_pem(&loaded.key),
        v["pub"].as_str().unwrap()
    );
    assert_eq!(loaded.uri(), Some("https://127.0.0.1:14000/my-account/9"));
    assert_eq!(accounts.list(SERVER).unwrap().len(), 4);
    // Files we write match certbot's modes.
    use std::os::unix::fs::PermissionsExt;
    let dir = accounts.dir_for_server(SERVER).unwrap().join(&rsa.id);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("private_key.json")), 0o400);
    accounts.delete(SERVER, id).unwrap();
    assert_eq!(accounts.list(SERVER).unwrap().len(), 3);
}

#[test]
fn lock_excludes_certbot_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = dirs_in(tmp.path());
    let store = Store::new(dirs.clone());
    // We hold it: certbot refuses to run.
    let guard = store.lock().unwrap();
    let (ok, out) = certbot_certificates(&dirs);
    assert!(
        !ok && out.contains("Another instance of Certbot is already running"),
        "{out}"
    );
    drop(guard);
    let (ok, out) = certbot_certificates(&dirs);
    assert!(ok, "{out}");

    // certbot's lock code holds it: we refuse.
    let mut child = Command::new(PYTHON)
        .arg("-c")
        .arg(
            "import sys\nfrom certbot._internal import lock\nl = lock.lock_dir(sys.argv[1])\n\
             print('locked', flush=True)\nsys.stdin.readline()\nl.release()\n",
        )
        .arg(&dirs.config_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let err = store.lock().unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains(".certbot.lock"), "{err}");
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert!(child.wait().unwrap().success());
    store.lock().unwrap();
}

#[test]
fn cli_ini_matches_configargparse() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cli.ini");
    let text = "# certbot cli.ini\nmax-log-backups = 0\nauthenticator = webroot\nwebroot-path = /var/www/html  # note\n\
                key-type: ecdsa\nrsa-key-size 4096\nagree-tos\n; another comment\n[ignored]\n\
                email = \"admin@example.com\"\nempty =\nserver='https://127.0.0.1:14000/dir'\n\
                deploy-hook = systemctl reload nginx\nmax-log-backups = 3\n";
    std::fs::write(&path, text).unwrap();
    let ours = CliIni::load(&path).unwrap();
    let script = "import sys, json, configargparse\n\
                  items = configargparse.DefaultConfigFileParser().parse(open(sys.argv[1]))\n\
                  print(json.dumps(list(items.items())))";
    let theirs: Vec<(String, String)> =
        serde_json::from_str(python(script, &[path.to_str().unwrap()]).trim()).unwrap();
    assert_eq!(ours.entries, theirs);
}

#[test]
fn symlink_targets_are_relative_like_certbot() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(dirs_in(tmp.path()));
    store
        .save_version(
            "a.example",
            &cert_files(&["a.example"], 30),
            &webroot_conf(SERVER),
        )
        .unwrap();
    let l = store.load_lineage("a.example").unwrap();
    for k in Kind::ALL {
        let raw = std::fs::read_link(l.live_path(k)).unwrap();
        assert_eq!(
            raw,
            Path::new(&format!("../../archive/a.example/{}1.pem", k.as_str()))
        );
    }
}
