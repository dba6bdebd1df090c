//! Verification after STARTTLS: SMTP against a real SMTP server (Debian's python3-aiosmtpd,
//! reloading its certificate on SIGHUP as Postfix does on `postfix reload`), IMAP and POP3
//! against minimal in-test servers that speak just the upgrade.

#[path = "agentkit/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use certfleet_core::PrivateKey;
use certfleet_fleet::proto::{Delivery, InstallState};
use certfleet_testkit::free_port;
use common::{TestCa, agent, new_key, toml_array};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as TokioBufReader};

const PYTHON: &str = "/usr/bin/python3";

const SMTP_SERVER: &str = r#"
import signal, ssl, sys, time
from aiosmtpd.controller import Controller
cert, key, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
class Handler:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True)
controller.start()
signal.signal(signal.SIGHUP, lambda *a: ctx.load_cert_chain(cert, key))
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

struct Smtp(Child);

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn aiosmtpd_available() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn start_smtp(fullchain: &Path, key: &Path, port: u16) -> Smtp {
    let mut child = Command::new(PYTHON)
        .arg("-c")
        .arg(SMTP_SERVER)
        .arg(fullchain)
        .arg(key)
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    Smtp(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_starttls_verify_against_aiosmtpd() {
    if !aiosmtpd_available() {
        println!("SKIPPED: {PYTHON} has no aiosmtpd (apt-get install python3-aiosmtpd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (fullchain, keyfile) = (d.join("mail.pem"), d.join("mail.key"));
    let ca = TestCa::new();
    let key = new_key();
    let first = ca.deliver("mail", &["mail.example.test"], &key);
    std::fs::write(&fullchain, &first.fullchain_pem).unwrap();
    std::fs::write(&keyfile, key.to_pem()).unwrap();
    for (f, mode) in [(&fullchain, 0o644), (&keyfile, 0o600)] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let port = free_port();
    let smtp = start_smtp(&fullchain, &keyfile, port);

    let toml = format!(
        "state_dir = \"{0}/state\"\n[[install]]\ncertificate = \"mail\"\nfullchain = \"{1}\"\nkey = \"{2}\"\n\
         reload_command = {3}\nverify = \"127.0.0.1:{port}\"\nstarttls = \"smtp\"\nverify_timeout = \"5s\"\n",
        d.display(),
        fullchain.display(),
        keyfile.display(),
        toml_array(&["kill".into(), "-HUP".into(), smtp.0.id().to_string()]),
    );
    let agent = agent(d, &toml);

    // Files and server already have it: verified by one STARTTLS handshake, no reload.
    let o = agent.install(&first, Some(&key)).await.remove(0);
    assert_eq!(o.state, InstallState::Verified, "{o:?}");
    assert!(!o.files_written && !o.reloaded, "{o:?}");

    // A renewal: written, SIGHUP, seen after STARTTLS.
    let second = ca.deliver("mail", &["mail.example.test"], &key);
    let o = agent.install(&second, Some(&key)).await.remove(0);
    assert_eq!(o.state, InstallState::Verified, "{o:?}");
    assert!(o.files_written && o.reloaded);
    assert_eq!(o.served_serial.as_deref(), Some(second.serial.as_str()));
    drop(smtp);
}

/// A server that answers the plain-text upgrade of `proto` and then TLS with `delivery`.
async fn fake_starttls_server(proto: &'static str, delivery: &Delivery, key: &PrivateKey) -> u16 {
    let certs = certfleet_core::cert::pem_certificates(&delivery.fullchain_pem)
        .unwrap()
        .into_iter()
        .map(rustls::pki_types::CertificateDer::from)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.pkcs8_der().to_vec().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let (greeting, expect, answer) = match proto {
                    "imap" => (
                        "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n",
                        "a1 STARTTLS",
                        "a1 OK Begin TLS now\r\n",
                    ),
                    _ => ("+OK POP3 ready\r\n", "STLS", "+OK Begin TLS\r\n"),
                };
                sock.write_all(greeting.as_bytes()).await.unwrap();
                let mut line = String::new();
                let mut r = TokioBufReader::new(&mut sock);
                r.read_line(&mut line).await.unwrap();
                assert_eq!(line.trim_end(), expect);
                sock.write_all(answer.as_bytes()).await.unwrap();
                let _ = acceptor.accept(sock).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn imap_and_pop3_starttls_verify() {
    let ca = TestCa::new();
    let key = new_key();
    let dl = ca.deliver("mail", &["imap.example.test"], &key);
    let stale = ca.deliver("mail", &["imap.example.test"], &key);
    for proto in ["imap", "pop3"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let good = fake_starttls_server(proto, &dl, &key).await;
        let bad = fake_starttls_server(proto, &stale, &key).await;
        for (port, want) in [(bad, InstallState::RolledBack), (good, InstallState::Verified)] {
            let toml = format!(
                "state_dir = \"{0}/state\"\n[[install]]\ncertificate = \"mail\"\ncert = \"{0}/c.pem\"\n\
                 verify = \"127.0.0.1:{port}\"\nstarttls = \"{proto}\"\nverify_timeout = \"600ms\"\n",
                d.display()
            );
            let agent = agent(d, &toml);
            let o = agent.install(&dl, Some(&key)).await.remove(0);
            assert_eq!(o.state, want, "{proto}: {o:?}");
            if want == InstallState::RolledBack {
                assert_eq!(o.served_serial.as_deref(), Some(stale.serial.as_str()), "{proto}");
                assert!(
                    !d.join("c.pem").exists(),
                    "a file that did not exist is removed again"
                );
            }
        }
    }
}
