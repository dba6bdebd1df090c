//! The agent's install pipeline against a real nginx on loopback: install and verify by
//! handshake, switch to a new certificate, do nothing when nothing changed, and roll back when
//! the real `nginx -t` fails or the endpoint serves another certificate.

#[path = "agentkit/mod.rs"]
mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use certfleet_fleet::agent::Agent;
use certfleet_fleet::proto::InstallState;
use certfleet_testkit::{Nginx, free_port, self_signed_pem};
use common::{TestCa, agent, leaf_der, new_key, toml_array, world_dir};

const NAME: &str = "www.example.test";

struct Setup {
    dir: tempfile::TempDir,
    nginx: Nginx,
    fullchain: PathBuf,
    key: PathBuf,
}

impl Setup {
    /// nginx serving a placeholder from `DIR/tls/{fullchain,key}.pem`, plus `extra` inside
    /// `http { }`.
    fn start(extra: impl FnOnce(&Path) -> String) -> Setup {
        let dir = world_dir();
        let tls = dir.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        let (cert, key) = self_signed_pem(&["placeholder.example.test"]).unwrap();
        let fullchain = tls.join("fullchain.pem");
        let keyfile = tls.join("key.pem");
        std::fs::write(&fullchain, cert).unwrap();
        std::fs::write(&keyfile, key).unwrap();
        let nginx = Nginx::builder()
            .https(&fullchain, &keyfile)
            .extra_http_conf(extra(dir.path()))
            .start()
            .unwrap();
        Setup {
            dir,
            nginx,
            fullchain,
            key: keyfile,
        }
    }

    fn agent(&self, verify_port: u16, extra: &str) -> Agent {
        let toml = format!(
            r#"
state_dir = "{state}"

[[install]]
certificate = "www"
fullchain = "{fullchain}"
key = "{key}"
config_test_command = {test}
reload_command = {reload}
verify = "127.0.0.1:{verify_port}"
{extra}
"#,
            state = self.dir.path().join("state").display(),
            fullchain = self.fullchain.display(),
            key = self.key.display(),
            test = toml_array(&self.nginx.config_test_command()),
            reload = toml_array(&self.nginx.reload_command()),
        );
        agent(self.dir.path(), &toml)
    }

    fn https_port(&self) -> u16 {
        self.nginx.https_port().unwrap()
    }

    fn files(&self) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(&self.fullchain).unwrap(),
            std::fs::read(&self.key).unwrap(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_verifies_switches_and_then_does_nothing() {
    let s = Setup::start(|_| String::new());
    let agent = s.agent(s.https_port(), "");
    let ca = TestCa::new();
    let placeholder = s.files();

    let key1 = new_key();
    let d1 = ca.deliver("www", &[NAME], &key1);
    let started = Instant::now();
    let out = agent.install(&d1, Some(&key1)).await;
    let first = started.elapsed();
    assert_eq!(out.len(), 1);
    let o = &out[0];
    assert_eq!(o.state, InstallState::Verified, "{o:?}");
    assert!(o.files_written && o.reloaded, "{o:?}");
    assert_eq!(o.installed_serial.as_deref(), Some(d1.serial.as_str()));
    assert_eq!(o.served_serial.as_deref(), Some(d1.serial.as_str()));
    assert_eq!(o.endpoint, Some(format!("127.0.0.1:{}", s.https_port())));
    s.nginx.wait_for_leaf(Some(NAME), &leaf_der(&d1)).unwrap();
    // Canonical PEM, key 0600, certificate 0644, previous files kept beside them.
    assert_eq!(std::fs::read_to_string(&s.fullchain).unwrap(), d1.fullchain_pem);
    assert_eq!(std::fs::read_to_string(&s.key).unwrap(), key1.to_pem());
    assert_eq!(std::fs::metadata(&s.key).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(std::fs::metadata(&s.fullchain).unwrap().mode() & 0o7777, 0o644);
    let prev = |p: &Path| std::fs::read(format!("{}.certfleet-prev", p.display())).unwrap();
    assert_eq!((prev(&s.fullchain), prev(&s.key)), placeholder);
    let report = o.report();
    assert_eq!(report.state, InstallState::Verified);
    assert!(report.error.is_none());

    // A renewal with a new key: nginx switches.
    let key2 = new_key();
    let d2 = ca.deliver("www", &[NAME], &key2);
    let started = Instant::now();
    let o = agent.install(&d2, Some(&key2)).await.remove(0);
    let second = started.elapsed();
    assert_eq!(o.state, InstallState::Verified, "{o:?}");
    s.nginx.wait_for_leaf(Some(NAME), &leaf_der(&d2)).unwrap();
    assert_eq!(std::fs::read_to_string(&s.key).unwrap(), key2.to_pem());

    // The same delivery again: no write, no reload.
    let inode = std::fs::metadata(&s.fullchain).unwrap().ino();
    let started = Instant::now();
    let o = agent.install(&d2, Some(&key2)).await.remove(0);
    let noop = started.elapsed();
    assert_eq!(o.state, InstallState::Verified, "{o:?}");
    assert!(!o.files_written && !o.reloaded, "{o:?}");
    assert_eq!(std::fs::metadata(&s.fullchain).unwrap().ino(), inode);
    assert!(
        std::fs::read_dir(s.dir.path().join("state/journal"))
            .unwrap()
            .next()
            .is_none(),
        "no journal left after success"
    );
    println!(
        "FIGURE install+test+reload+verify against nginx: first {first:?}, renewal {second:?}; \
         unchanged delivery (one handshake, no reload) {noop:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_nginx_config_test_restores_files_and_does_not_reload() {
    let s = Setup::start(|d| {
        let inc = d.join("extra.conf");
        std::fs::write(&inc, "").unwrap();
        format!("  include {};", inc.display())
    });
    let agent = s.agent(s.https_port(), "");
    let ca = TestCa::new();
    let key1 = new_key();
    let d1 = ca.deliver("www", &[NAME], &key1);
    let o = agent.install(&d1, Some(&key1)).await.remove(0);
    assert_eq!(o.state, InstallState::Verified, "{o:?}");
    let installed = s.files();

    // Someone breaks the server's configuration; the next certificate must not be half-applied.
    std::fs::write(s.dir.path().join("extra.conf"), "this_is_no_directive on;\n").unwrap();
    let d2 = ca.deliver("www", &[NAME], &key1);
    let o = agent.install(&d2, Some(&key1)).await.remove(0);
    assert_eq!(o.state, InstallState::ConfigTestFailed, "{o:?}");
    assert!(o.files_written && !o.reloaded, "{o:?}");
    let err = o.error.as_deref().unwrap();
    assert!(
        err.contains("unknown directive \"this_is_no_directive\""),
        "{err}"
    );
    assert!(
        err.contains("the previous files are back in place and nothing was reloaded"),
        "{err}"
    );
    assert_eq!(o.installed_serial.as_deref(), Some(d1.serial.as_str()));
    assert_eq!(s.files(), installed, "previous files restored byte for byte");
    s.nginx.wait_for_leaf(Some(NAME), &leaf_der(&d1)).unwrap();
    let left: Vec<_> = std::fs::read_dir(s.fullchain.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");

    // Fixed: the same delivery goes through.
    std::fs::write(s.dir.path().join("extra.conf"), "").unwrap();
    let o = agent.install(&d2, Some(&key1)).await.remove(0);
    assert_eq!(o.state, InstallState::Verified, "{o:?}");
    s.nginx.wait_for_leaf(Some(NAME), &leaf_der(&d2)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_serving_another_certificate_rolls_back() {
    // A second server block with its own certificate files: `verify` points there by mistake.
    let other_port = free_port();
    let s = Setup::start(|d| {
        let (cert, key) = self_signed_pem(&["other.example.test"]).unwrap();
        std::fs::write(d.join("other.pem"), cert).unwrap();
        std::fs::write(d.join("other.key"), key).unwrap();
        format!(
            "  server {{ listen 127.0.0.1:{other_port} ssl; ssl_certificate {0}/other.pem; \
             ssl_certificate_key {0}/other.key; }}",
            d.display()
        )
    });
    let agent = s.agent(other_port, "verify_timeout = \"1500ms\"");
    let other_leaf =
        certfleet_core::CertInfo::from_pem(&std::fs::read_to_string(s.dir.path().join("other.pem")).unwrap())
            .unwrap();
    let placeholder = s.files();
    let placeholder_leaf = s.nginx.served_leaf(Some(NAME)).unwrap();

    let ca = TestCa::new();
    let key = new_key();
    let d = ca.deliver("www", &[NAME], &key);
    let started = Instant::now();
    let o = agent.install(&d, Some(&key)).await.remove(0);
    let took = started.elapsed();
    assert_eq!(o.state, InstallState::RolledBack, "{o:?}");
    assert!(o.files_written && o.reloaded, "{o:?}");
    assert_eq!(o.served_serial.as_deref(), Some(other_leaf.serial_hex().as_str()));
    let err = o.error.as_deref().unwrap();
    assert!(
        err.contains(&format!(
            "served serial {} CN=rcgen self signed cert instead of the new certificate's serial {}",
            other_leaf.serial_hex(),
            d.serial
        )),
        "{err}"
    );
    assert!(
        err.contains("the previous files are back in place and the service was reloaded again"),
        "{err}"
    );
    assert_eq!(s.files(), placeholder);
    // The main server block was reloaded with the old files again.
    s.nginx.wait_for_leaf(Some(NAME), &placeholder_leaf).unwrap();
    println!("FIGURE mismatch detected and rolled back in {took:?} (verify_timeout 1.5 s)");
}
