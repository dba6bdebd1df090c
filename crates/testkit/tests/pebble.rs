//! Self-tests: real Pebbles start, answer, expose their roots, and run side by side.

use certfleet_testkit::Pebble;

fn directory(pebble: &Pebble) -> serde_json::Value {
    let pem = std::fs::read(pebble.ca_bundle_path()).unwrap();
    let client = reqwest::blocking::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
        .build()
        .unwrap();
    client
        .get(pebble.directory_url())
        .send()
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn pebble_serves_directory_over_trusted_https() {
    let pebble = Pebble::start().unwrap();
    let dir = directory(&pebble);
    for key in ["newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"] {
        assert!(
            dir[key].as_str().unwrap().starts_with("https://127.0.0.1:"),
            "{key}: {dir}"
        );
    }
    assert_eq!(dir["meta"]["externalAccountRequired"], false);
    assert_eq!(pebble.roots().unwrap().len(), 1);
    assert_eq!(pebble.intermediates().unwrap().len(), 1);
}

#[test]
fn alternate_roots_expose_three_roots() {
    let pebble = Pebble::builder()
        .env("PEBBLE_ALTERNATE_ROOTS", "2")
        .start()
        .unwrap();
    let roots = pebble.roots().unwrap();
    assert_eq!(roots.len(), 3);
    assert_ne!(roots[0], roots[1]);
    assert_ne!(roots[1], roots[2]);
    assert_eq!(pebble.intermediates().unwrap().len(), 3);
}

#[test]
fn eab_is_required_and_keys_exposed() {
    let pebble = Pebble::builder().eab(true).start().unwrap();
    assert_eq!(directory(&pebble)["meta"]["externalAccountRequired"], true);
    let keys = pebble.eab_keys();
    assert!(
        keys.iter().any(|(kid, mac)| kid == "kid-1" && mac.len() == 64),
        "{keys:?}"
    );
}

#[test]
fn four_pebbles_in_parallel() {
    let handles: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| Pebble::start().unwrap()))
        .collect();
    let pebbles: Vec<Pebble> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut urls: Vec<String> = pebbles.iter().map(|p| p.directory_url()).collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 4);
    let roots: Vec<Vec<u8>> = pebbles.iter().map(|p| p.roots().unwrap().remove(0)).collect();
    for p in &pebbles {
        directory(p);
    }
    // Each Pebble generates its own hierarchy.
    assert_ne!(roots[0], roots[1]);
}

#[test]
fn unknown_serial_has_no_status() {
    let pebble = Pebble::start().unwrap();
    assert!(pebble.cert_status("00ff").is_err());
}

#[test]
fn dropping_pebble_frees_its_port() {
    let pebble = Pebble::start().unwrap();
    let url = pebble.directory_url();
    let port: u16 = url
        .trim_start_matches("https://127.0.0.1:")
        .trim_end_matches("/dir")
        .parse()
        .unwrap();
    drop(pebble);
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port released after drop");
}
