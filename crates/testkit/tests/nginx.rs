//! Self-tests: a real nginx serves the webroot, can 403 the challenge path, and swaps its
//! certificate on reload.

use std::time::Duration;

use certfleet_testkit::{Nginx, pem_certs, self_signed_pem};

fn get(url: &str) -> (u16, String) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let resp = client.get(url).send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

#[test]
fn serves_challenge_file_from_webroot() {
    let nginx = Nginx::start().unwrap();
    let dir = nginx.webroot().join(".well-known/acme-challenge");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tok123"), "tok123.thumbprint").unwrap();
    let (status, body) = get(&nginx.http_url("/.well-known/acme-challenge/tok123"));
    assert_eq!((status, body.as_str()), (200, "tok123.thumbprint"));
    assert_eq!(get(&nginx.http_url("/.well-known/acme-challenge/missing")).0, 404);
}

#[test]
fn challenge_path_can_be_forbidden() {
    let mut nginx = Nginx::builder().challenge_forbidden(true).start().unwrap();
    let dir = nginx.webroot().join(".well-known/acme-challenge");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("t"), "x").unwrap();
    assert_eq!(get(&nginx.http_url("/.well-known/acme-challenge/t")).0, 403);
    nginx.set_challenge_forbidden(false).unwrap();
    // The reload takes effect within milliseconds; poll rather than sleep a fixed time.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while get(&nginx.http_url("/.well-known/acme-challenge/t")).0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "still forbidden after reload"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn https_serves_new_certificate_after_reload() {
    let scratch = tempfile::tempdir().unwrap();
    let (fullchain, key) = (
        scratch.path().join("fullchain.pem"),
        scratch.path().join("privkey.pem"),
    );
    let (cert1, key1) = self_signed_pem(&["one.example.test"]).unwrap();
    std::fs::write(&fullchain, &cert1).unwrap();
    std::fs::write(&key, &key1).unwrap();
    let nginx = Nginx::builder().https(&fullchain, &key).start().unwrap();
    let served = nginx.served_leaf(Some("one.example.test")).unwrap();
    assert_eq!(served, pem_certs(cert1.as_bytes()).unwrap()[0]);

    let (cert2, key2) = self_signed_pem(&["one.example.test"]).unwrap();
    std::fs::write(&fullchain, &cert2).unwrap();
    std::fs::write(&key, &key2).unwrap();
    nginx.reload().unwrap();
    let want = pem_certs(cert2.as_bytes()).unwrap().remove(0);
    nginx.wait_for_leaf(None, &want).unwrap();
    assert_eq!(nginx.served_leaf(None).unwrap(), want);
}

#[test]
fn https_can_be_enabled_later() {
    let mut nginx = Nginx::start().unwrap();
    assert!(nginx.https_port().is_none());
    let (cert, key) = self_signed_pem(&["localhost"]).unwrap();
    let (c, k) = (nginx.dir().join("c.pem"), nginx.dir().join("k.pem"));
    std::fs::write(&c, &cert).unwrap();
    std::fs::write(&k, &key).unwrap();
    nginx.enable_https(&c, &k).unwrap();
    assert_eq!(
        nginx.served_leaf(None).unwrap(),
        pem_certs(cert.as_bytes()).unwrap()[0]
    );
}

#[test]
fn bad_config_error_includes_nginx_log() {
    let scratch = tempfile::tempdir().unwrap();
    let missing = scratch.path().join("nope.pem");
    let err = match Nginx::builder().https(&missing, &missing).start() {
        Ok(_) => panic!("nginx started without its certificate"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("nope.pem"), "{err}");
}

#[test]
fn port_in_use_is_reported_with_nginx_log() {
    let port = certfleet_testkit::free_port();
    let _taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let err = match Nginx::builder().http_port(port).start() {
        Ok(_) => panic!("nginx started on a taken port"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.to_lowercase().contains("address already in use"), "{err}");
}
