//! IP address identifiers (RFC 8738) and tls-alpn-01 (RFC 8737) through the real binary against
//! Pebble.

mod common;

use certfleet_testkit::Pebble;
use common::{Env, stderr, stdout};

/// `--ip-address 127.0.0.1` alone: Pebble validates http-01 at that address and the lineage
/// (named after the address) holds a certificate with an IP SAN.
#[test]
fn ip_address_certificate_over_http01() {
    let env = Env::new(Pebble::start().unwrap());
    let out = env.certonly_standalone(&[], &["--ip-address", "127.0.0.1"]);
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        stdout(&out),
        stderr(&out),
        common::tail(&env.pebble.log())
    );
    assert_eq!(env.verify_lineage("127.0.0.1", &["127.0.0.1"]), 0);

    // Mixed with a DNS name (a superset of the first lineage, so it needs its own name).
    let out = env.certonly_standalone(
        &["mixed.example.test"],
        &["--ip-address", "127.0.0.1", "--cert-name", "mixed"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        env.verify_lineage("mixed", &["mixed.example.test", "127.0.0.1"]),
        0
    );
    let list = env.run_ok(&["certificates", "--json"]);
    let text = stdout(&list);
    assert!(
        text.contains("127.0.0.1") && text.contains("mixed.example.test"),
        "{text}"
    );
}

/// `--tls-alpn-01`: Pebble's VA connects to the built-in TLS server (its `tlsPort`) for a name
/// and an IP; the renewal conf records certfleet's authenticator with its port and address.
#[test]
fn tls_alpn_01_certificate_and_renewal_conf() {
    let port = certfleet_testkit::free_port();
    let env = Env::new(Pebble::builder().tls_port(port).start().unwrap());
    let port_arg = port.to_string();
    let out = env.run(&[
        "certonly",
        "--tls-alpn-01",
        "--tls-alpn-01-address",
        "127.0.0.1",
        "--tls-alpn-01-port",
        &port_arg,
        "-d",
        "alpn.example.test",
        "--ip-address",
        "127.0.0.1",
        "--agree-tos",
        "--register-unsafely-without-email",
        "-n",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        stdout(&out),
        stderr(&out),
        common::tail(&env.pebble.log())
    );
    assert_eq!(
        env.verify_lineage("alpn.example.test", &["alpn.example.test", "127.0.0.1"]),
        0
    );
    let conf = std::fs::read_to_string(env.config_dir().join("renewal/alpn.example.test.conf")).unwrap();
    assert!(conf.contains("authenticator = certfleet-tls-alpn-01"), "{conf}");
    assert!(conf.contains(&format!("tls_alpn_01_port = {port}")), "{conf}");
    assert!(conf.contains("tls_alpn_01_address = 127.0.0.1"), "{conf}");
}

/// A taken port is refused before the CA is asked for anything, and nothing is written.
#[test]
fn tls_alpn_01_port_taken() {
    let env = Env::new(Pebble::start().unwrap());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = env.run(&[
        "certonly",
        "--tls-alpn-01",
        "--tls-alpn-01-address",
        "127.0.0.1",
        "--tls-alpn-01-port",
        &port,
        "-d",
        "busy.example.test",
        "--agree-tos",
        "--register-unsafely-without-email",
        "-n",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("already in use") && err.contains(&port), "{err}");
    assert!(!env.config_dir().join("live").exists());
    assert!(!env.config_dir().join("accounts").exists());
}

/// The CA cannot reach the TLS server (here: it connects to another port): exit 3, what the CA
/// saw, and what to check.
#[test]
fn tls_alpn_01_unreachable_gets_hints() {
    let env = Env::new(Pebble::start().unwrap());
    let ours = certfleet_testkit::free_port().to_string();
    let out = env.run(&[
        "certonly",
        "--tls-alpn-01",
        "--tls-alpn-01-address",
        "127.0.0.1",
        "--tls-alpn-01-port",
        &ours,
        "-d",
        "nowhere.example.test",
        "--agree-tos",
        "--register-unsafely-without-email",
        "-n",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("nowhere.example.test") && err.contains("tls-alpn-01"),
        "{err}"
    );
    assert!(
        err.contains("hint:") && err.contains("--tls-alpn-01-port"),
        "{err}"
    );
    assert!(!env.config_dir().join("live").exists());
}
