//! Self-tests: acme2certifier runs in its own network namespace with ARI and profiles, and a
//! real client (certbot) inside that namespace gets a certificate whose chain verifies.

use std::time::SystemTime;

use certfleet_testkit::{Acme2Certifier, Certbot};

#[test]
fn directory_has_renewal_info_and_profiles() {
    let a2c = Acme2Certifier::start().unwrap();
    let (status, body) = a2c.get(&a2c.directory_url()).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let dir: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        dir["renewalInfo"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1"),
        "{dir}"
    );
    assert!(dir["meta"]["profiles"]["shortlived"].is_string(), "{dir}");
    assert!(dir["newOrder"].as_str().unwrap().starts_with("https://"), "{dir}");
}

#[test]
fn certbot_in_namespace_gets_certificate() {
    let a2c = Acme2Certifier::start().unwrap();
    let certbot = Certbot::for_acme2certifier(&a2c).unwrap();
    let out = certbot.certonly_standalone(&["a2c.example.test"], 80, &[]);
    let out = match out {
        Ok(o) => o,
        Err(e) => panic!("{e:#}\n--- acme2certifier log ---\n{}", a2c.log()),
    };
    assert!(out.status.success());
    let fullchain = std::fs::read(certbot.live_dir("a2c.example.test").join("fullchain.pem")).unwrap();
    assert_eq!(
        a2c.verify_chain(&fullchain, &["a2c.example.test"], SystemTime::now())
            .unwrap(),
        0
    );

    // ARI (RFC 9773): renewalInfo/<base64url(AKI keyIdentifier)>.<base64url(serial)>.
    let leaf = certfleet_testkit::pem_certs(&fullchain).unwrap().remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.clone(),
            _ => None,
        })
        .expect("issued certificate has an AKI");
    let b64 = |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    let cert_id = format!("{}.{}", b64(aki.0), b64(cert.tbs_certificate.raw_serial()));
    let (_, body) = a2c.get(&a2c.directory_url()).unwrap();
    let dir: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let url = format!(
        "{}/{cert_id}",
        dir["renewalInfo"].as_str().unwrap().trim_end_matches('/')
    );
    let (status, body) = a2c.get(&url).unwrap();
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    assert!(info["suggestedWindow"]["start"].is_string(), "{info}");
}

#[test]
fn two_instances_in_parallel() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Acme2Certifier::start().unwrap());
        let b = s.spawn(|| Acme2Certifier::start().unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.netns_path(), b.netns_path());
    assert_ne!(a.roots(), b.roots());
    for x in [&a, &b] {
        assert_eq!(x.get(&x.directory_url()).unwrap().0, 200);
    }
}
