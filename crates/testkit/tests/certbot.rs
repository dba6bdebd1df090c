//! End to end with a real client: certbot 2.1 gets a certificate from Pebble (proving the Pebble
//! setup), and `verify_chain` accepts it only for its names and lifetime.

use std::time::{Duration, SystemTime};

use certfleet_testkit::{Certbot, Pebble, pem_certs};

#[test]
fn certbot_issues_from_pebble_and_chain_verifies() {
    let pebble = Pebble::builder()
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .start()
        .unwrap();
    let certbot = Certbot::for_pebble(&pebble).unwrap();
    let names = ["a.example.test", "b.example.test"];
    certbot
        .certonly_standalone(&names, pebble.http_port(), &["--key-type", "ecdsa"])
        .unwrap();

    let fullchain = std::fs::read(certbot.live_dir("a.example.test").join("fullchain.pem")).unwrap();
    let now = SystemTime::now();
    assert_eq!(pebble.verify_chain(&fullchain, &names, now).unwrap(), 0);

    let wrong_name = pebble
        .verify_chain(&fullchain, &["c.example.test"], now)
        .unwrap_err();
    assert!(
        format!("{wrong_name:#}").contains("c.example.test"),
        "{wrong_name:#}"
    );
    let later = now + Duration::from_secs(20 * 365 * 24 * 3600);
    let expired = pebble.verify_chain(&fullchain, &names, later).unwrap_err();
    assert!(format!("{expired:#}").contains("Expired"), "{expired:#}");
    // The leaf alone (no intermediate) must not verify: the validator builds a real path.
    let leaf_only = pem::encode(&pem::Pem::new(
        "CERTIFICATE",
        pem_certs(&fullchain).unwrap().remove(0),
    ));
    assert!(pebble.verify_chain(leaf_only.as_bytes(), &names, now).is_err());

    let leaf = pem_certs(&fullchain).unwrap().remove(0);
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let serial = parsed.tbs_certificate.raw_serial_as_string().replace(':', "");
    let status = pebble.cert_status(&serial).unwrap();
    assert_eq!(status["Status"], "Valid", "{status}");
}

#[test]
fn certbot_failure_reports_its_output() {
    let pebble = Pebble::start().unwrap();
    let certbot = Certbot::for_pebble(&pebble).unwrap();
    // Nobody answers http-01 on this port, so validation fails.
    let err = certbot
        .certonly_standalone(&["x.example.test"], 1, &[])
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("certbot certonly") && msg.contains("letsencrypt.log"),
        "{msg}"
    );
}

#[test]
fn certbot_webroot_through_nginx_then_nginx_serves_it() {
    let mut nginx = certfleet_testkit::Nginx::start().unwrap();
    let pebble = Pebble::builder()
        .http_port(nginx.http_port())
        .validity_seconds(3600)
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .start()
        .unwrap();
    let certbot = Certbot::for_pebble(&pebble).unwrap();
    let root = nginx.webroot().display().to_string();
    certbot
        .run_ok(&[
            "certonly",
            "--webroot",
            "-w",
            &root,
            "-d",
            "web.example.test",
            "--agree-tos",
            "--register-unsafely-without-email",
        ])
        .unwrap();
    let live = certbot.live_dir("web.example.test");
    let fullchain = std::fs::read(live.join("fullchain.pem")).unwrap();
    assert_eq!(
        pebble
            .verify_chain(&fullchain, &["web.example.test"], SystemTime::now())
            .unwrap(),
        0
    );
    let leaf_der = pem_certs(&fullchain).unwrap().remove(0);
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
    let lifetime = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert!(
        (3590..=3610).contains(&lifetime),
        "validity_seconds not applied: {lifetime}s"
    );

    nginx
        .enable_https(live.join("fullchain.pem"), live.join("privkey.pem"))
        .unwrap();
    let served = nginx.served_leaf(Some("web.example.test")).unwrap();
    assert_eq!(served, leaf_der);
}
