//! What the agent writes, without a server to reload: every format byte for byte (PKCS#12
//! through the real `openssl pkcs12`), owner/group/mode whatever the umask, and the key checks
//! that refuse a delivery before anything is written.

#[path = "agentkit/mod.rs"]
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use certfleet_core::PrivateKey;
use certfleet_core::cert::{der_to_pem, pem_certificates};
use certfleet_fleet::proto::InstallState;
use common::{TestCa, agent, leaf_der, new_key, toml_array};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn openssl_p12(p12: &Path, pass: &Path, args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .arg("pkcs12")
        .arg("-in")
        .arg(p12)
        .arg("-passin")
        .arg(format!("file:{}", pass.display()))
        .args(args)
        .output()
        .expect("openssl runs")
}

/// The only test of this binary that touches the (process-wide) umask.
#[tokio::test]
async fn every_format_byte_exact_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pass = d.join("p12.pass");
    std::fs::write(&pass, "s3cret pass\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let files = [
        "cert",
        "chain",
        "fullchain",
        "key",
        "combined",
        "cert_and_ca",
        "pkcs12",
    ];
    let mut toml = format!(
        "state_dir = \"{}/state\"\n[[install]]\ncertificate = \"mail\"\n",
        d.display()
    );
    for f in files {
        toml.push_str(&format!("{f} = \"{}/out/{f}\"\n", d.display()));
    }
    toml.push_str(&format!("pkcs12_password_file = \"{}\"\n", pass.display()));
    std::fs::create_dir(d.join("out")).unwrap();
    let agent = agent(d, &toml);
    let out = |f: &str| d.join("out").join(f);

    let ca = TestCa::new();
    for umask in [0o000, 0o077] {
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
        let key = new_key();
        let dl = ca.deliver("mail", &["mail.example.test", "smtp.example.test"], &key);
        let o = agent.install(&dl, Some(&key)).await.remove(0);
        nix::sys::stat::umask(old);
        assert_eq!(o.state, InstallState::Installed, "{o:?}");
        assert!(o.files_written && !o.reloaded && o.endpoint.is_none());

        let cert = der_to_pem(&leaf_der(&dl));
        assert_eq!(read(&out("cert")), cert);
        assert_eq!(read(&out("chain")), dl.chain_pem);
        assert_eq!(read(&out("fullchain")), format!("{cert}{}", dl.chain_pem));
        assert_eq!(read(&out("key")), key.to_pem());
        assert!(read(&out("key")).starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(
            read(&out("combined")),
            format!("{cert}{}{}", dl.chain_pem, key.to_pem())
        );
        assert_eq!(read(&out("cert_and_ca")), format!("{cert}{}", dl.chain_pem));
        for f in ["cert", "chain", "fullchain", "cert_and_ca"] {
            assert_eq!(mode(&out(f)), 0o644, "{f} under umask {umask:03o}");
        }
        for f in ["key", "combined", "pkcs12"] {
            assert_eq!(mode(&out(f)), 0o600, "{f} under umask {umask:03o}");
        }

        // The real openssl reads the PKCS#12 with the password: leaf, intermediate, key.
        let info = openssl_p12(&out("pkcs12"), &pass, &["-info", "-nodes"]);
        assert!(info.status.success(), "{}", String::from_utf8_lossy(&info.stderr));
        let certs = openssl_p12(&out("pkcs12"), &pass, &["-nokeys"]);
        let text = String::from_utf8(certs.stdout).unwrap();
        let mut ders = pem_certificates(&text).unwrap();
        ders.sort();
        let mut want = pem_certificates(&dl.fullchain_pem).unwrap();
        want.sort();
        assert_eq!(ders, want);
        let keys = openssl_p12(&out("pkcs12"), &pass, &["-nocerts", "-nodes"]);
        let p12_key = PrivateKey::from_pem(&String::from_utf8(keys.stdout).unwrap()).unwrap();
        assert_eq!(p12_key.public_key_spki_der(), key.public_key_spki_der());
        let wrong = Command::new("openssl")
            .args(["pkcs12", "-info", "-nodes", "-passin", "pass:wrong", "-in"])
            .arg(out("pkcs12"))
            .output()
            .unwrap();
        assert!(!wrong.status.success(), "a wrong password must not open it");

        // Unchanged: nothing is rewritten, the PKCS#12 compared by content (its salts differ).
        let o = agent.install(&dl, Some(&key)).await.remove(0);
        assert_eq!(o.state, InstallState::Installed);
        assert!(!o.files_written, "{o:?}");
    }
}

#[tokio::test]
async fn owner_group_and_mode_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let toml = |mode: &str| {
        format!(
            "state_dir = \"{0}/state\"\n[[install]]\ncertificate = \"ldap\"\ncert_and_ca = \"{0}/ldap.pem\"\n\
             key = \"{0}/ldap.key\"\nowner = \"nobody\"\ngroup = \"nogroup\"\nmode = \"{mode}\"\n",
            d.display()
        )
    };
    let ca = TestCa::new();
    let key = new_key();
    let dl = ca.deliver("ldap", &["ldap.example.test"], &key);
    {
        let agent = agent(d, &toml("0640"));
        let o = agent.install(&dl, Some(&key)).await.remove(0);
        assert_eq!(o.state, InstallState::Installed, "{o:?}");
        for f in ["ldap.pem", "ldap.key"] {
            let m = std::fs::metadata(d.join(f)).unwrap();
            assert_eq!(
                (m.uid(), m.gid(), m.mode() & 0o7777),
                (65534, 65534, 0o640),
                "{f}"
            );
        }
        let o = agent.install(&dl, Some(&key)).await.remove(0);
        assert!(!o.files_written);
    }
    // Another mode in the config: the same certificate is written again with it.
    let agent = agent(d, &toml("0600"));
    let o = agent.install(&dl, Some(&key)).await.remove(0);
    assert!(o.files_written, "{o:?}");
    assert_eq!(mode(&d.join("ldap.key")), 0o600);
    assert_eq!(std::fs::metadata(d.join("ldap.key")).unwrap().uid(), 65534);
}

#[tokio::test]
async fn keys_are_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let marker = d.join("reloaded");
    let toml = format!(
        "state_dir = \"{0}/state\"\n[[install]]\ncertificate = \"www\"\nfullchain = \"{0}/www.pem\"\n\
         key = \"{0}/www.key\"\nreload_command = {1}\n",
        d.display(),
        toml_array(&["touch".to_string(), marker.display().to_string()])
    );
    let agent = agent(d, &toml);
    let ca = TestCa::new();

    // Agent custody: the host's own key, found by the delivery's SPKI SHA-256.
    let key = new_key();
    let sha = agent.keys().save(&key).unwrap();
    let dl = ca.deliver("www", &["www.example.test"], &key);
    assert_eq!(dl.key_sha256, sha);
    let o = agent.install(&dl, None).await.remove(0);
    assert_eq!(o.state, InstallState::Installed, "{o:?}");
    assert!(o.reloaded && marker.exists());
    std::fs::remove_file(&marker).unwrap();
    let installed = (read(&d.join("www.pem")), read(&d.join("www.key")));
    assert_eq!(installed.1, key.to_pem());

    let refused = |o: &certfleet_fleet::agent::InstallOutcome, what: &str| {
        assert_eq!(o.state, InstallState::Failed, "{o:?}");
        let e = o.error.as_deref().unwrap();
        assert!(e.contains(what), "{e}");
        assert!(e.ends_with("nothing was written"), "{e}");
        assert!(!o.files_written && !o.reloaded);
        assert!(!e.contains("PRIVATE KEY"), "no key material in messages: {e}");
    };
    // A certificate for a key this host does not hold.
    let stranger = new_key();
    let other = ca.deliver("www", &["www.example.test"], &stranger);
    refused(
        &agent.install(&other, None).await[0],
        "was issued for a key this host does not hold",
    );
    // The caller hands the wrong key.
    refused(
        &agent.install(&other, Some(&key)).await[0],
        "this host's key (SPKI SHA-256",
    );
    // The server announces another key than the certificate's.
    let mut lying = ca.deliver("www", &["www.example.test"], &key);
    lying.key_sha256 = agent.keys().save(&stranger).unwrap();
    refused(&agent.install(&lying, None).await[0], "not the announced");
    // Chain and full chain disagree.
    let mut broken = ca.deliver("www", &["www.example.test"], &key);
    broken.fullchain_pem = broken.cert_pem.clone();
    refused(
        &agent.install(&broken, None).await[0],
        "fullchain_pem is not cert_pem followed by chain_pem",
    );
    // A path-like SHA from the server never reaches the file system.
    let mut evil = ca.deliver("www", &["www.example.test"], &key);
    evil.key_sha256 = "../../../etc/shadow".into();
    refused(&agent.install(&evil, None).await[0], "is not a SHA-256");
    // Server custody: the delivery carries a key that is not the certificate's.
    let mut server = ca.deliver("www", &["www.example.test"], &key);
    server.key_pem = Some(stranger.to_pem());
    refused(
        &agent.install(&server, None).await[0],
        "the server's key (SPKI SHA-256",
    );

    assert_eq!((read(&d.join("www.pem")), read(&d.join("www.key"))), installed);
    assert!(!marker.exists(), "no reload for a refused delivery");

    // Server custody done right: the delivered key is installed.
    let shared = new_key();
    let mut server = ca.deliver("www", &["www.example.test"], &shared);
    server.key_pem = Some(shared.to_pem());
    let o = agent.install(&server, None).await.remove(0);
    assert_eq!(o.state, InstallState::Installed, "{o:?}");
    assert_eq!(read(&d.join("www.key")), shared.to_pem());
    // A certificate no rule names.
    let none = agent
        .install(&ca.deliver("ftp", &["ftp.example.test"], &key), None)
        .await;
    assert!(none.is_empty());
    let report = certfleet_fleet::agent::InstallOutcome::combined_report("ftp", &none);
    assert_eq!(report.state, InstallState::NotConfigured);
}

#[tokio::test]
async fn failing_commands_put_the_previous_files_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new();
    let key = new_key();
    let first = ca.deliver("www", &["www.example.test"], &key);
    let second = ca.deliver("www", &["www.example.test"], &key);
    let sh = |script: &str| toml_array(&["sh".into(), "-c".into(), script.into()]);
    let config = |test: &str, reload: &str| {
        format!(
            "state_dir = \"{0}/state\"\n[[install]]\ncertificate = \"www\"\ncombined = \"{0}/www.pem\"\n\
             config_test_command = {test}\nreload_command = {reload}\ncommand_timeout = \"2s\"\n",
            d.display()
        )
    };
    {
        let agent = agent(d, &config(&sh("true"), &sh("true")));
        assert_eq!(
            agent.install(&first, Some(&key)).await[0].state,
            InstallState::Installed
        );
    }
    let installed = read(&d.join("www.pem"));
    let cases = [
        (
            config(&sh("echo 'line 7: bad' >&2; exit 1"), &sh("true")),
            InstallState::ConfigTestFailed,
            "config test `sh -c echo 'line 7: bad' >&2; exit 1` exited with status 1: line 7: bad; \
             the previous files are back in place and nothing was reloaded",
        ),
        (
            config(&sh("true"), &sh("echo no such unit >&2; exit 3")),
            InstallState::Failed,
            "exited with status 3: no such unit; the previous files are back in place and reloaded again",
        ),
        (
            config(&sh("sleep 10"), &sh("true")),
            InstallState::ConfigTestFailed,
            "ran longer than",
        ),
    ];
    for (toml, state, message) in cases {
        let agent = agent(d, &toml);
        let o = agent.install(&second, Some(&key)).await.remove(0);
        assert_eq!(o.state, state, "{o:?}");
        assert!(o.error.as_deref().unwrap().contains(message), "{o:?}");
        assert_eq!(o.installed_serial.as_deref(), Some(first.serial.as_str()));
        assert_eq!(read(&d.join("www.pem")), installed);
    }
}
