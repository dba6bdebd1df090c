//! Helpers shared by the integration tests: real certificates and the real certbot.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use certfleet_store::{CertFiles, Dirs, RenewalConf};
use time::{Duration, OffsetDateTime};

/// certbot's Python modules live in the system interpreter (a pyenv `python3` on PATH may not
/// have them).
pub const PYTHON: &str = "/usr/bin/python3";

/// A self-signed ECDSA certificate for `names` (CN = first name), valid for `days` days.
pub fn cert_files(names: &[&str], days: i64) -> CertFiles {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(days);
    let cert = params.self_signed(&key).unwrap();
    CertFiles::new(cert.pem(), cert.pem(), key.serialize_pem())
}

pub fn webroot_conf(server: &str) -> RenewalConf {
    let mut c = RenewalConf::new();
    c.set_param("account", "0123456789abcdef0123456789abcdef");
    c.set_param("authenticator", "webroot");
    c.set_param("server", server);
    c.set_param("key_type", "ecdsa");
    c.set_param(
        "webroot_path",
        certfleet_store::Value::List(vec!["/var/www/html".into()]),
    );
    c.set_webroot_map(&[("a.example".into(), "/var/www/html".into())]);
    c
}

/// `certbot certificates` on these directories: (success, stdout + stderr).
pub fn certbot_certificates(dirs: &Dirs) -> (bool, String) {
    let out = Command::new("certbot")
        .arg("certificates")
        .arg("--config-dir")
        .arg(&dirs.config_dir)
        .arg("--work-dir")
        .arg(&dirs.work_dir)
        .arg("--logs-dir")
        .arg(&dirs.logs_dir)
        .output()
        .expect("run certbot (Debian package certbot)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Run a Python snippet in the system interpreter with certbot importable.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// certbot's NamespaceConfig for these directories, as a Python prelude.
pub fn py_config_prelude(dirs: &Dirs, verb: &str, server: &str, extra: &[&str]) -> String {
    let mut args = vec![
        verb.to_string(),
        "--config-dir".into(),
        dirs.config_dir.display().to_string(),
        "--work-dir".into(),
        dirs.work_dir.display().to_string(),
        "--logs-dir".into(),
        dirs.logs_dir.display().to_string(),
        "--server".into(),
        server.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    format!(
        "import sys, json\n\
         from certbot import configuration\n\
         from certbot._internal import cli, storage, account\n\
         from certbot._internal.plugins import disco\n\
         args = cli.prepare_and_parse_args(disco.PluginsRegistry.find_all(), {})\n\
         config = configuration.NamespaceConfig(args)\n",
        serde_json::to_string(&args).unwrap()
    )
}

pub fn dirs_in(root: &Path) -> Dirs {
    Dirs::under(root)
}
