//! The agent's config file: every mistake is refused with `FILE:LINE:COL: what; what to do`.

use std::path::Path;
use std::time::Duration;

use certfleet_fleet::agent::{AgentConfig, FileKind, StartTls};

const FILE: &str = "/etc/certfleet/agent.toml";

/// The whole error text for a bad config.
fn error(text: &str) -> String {
    match AgentConfig::parse(text, Path::new(FILE)) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts the error is at `line:col` and contains every fragment.
fn assert_error(text: &str, line: usize, col: usize, fragments: &[&str]) {
    let e = error(text);
    let prefix = format!("{FILE}:{line}:{col}: ");
    assert!(e.starts_with(&prefix), "expected {prefix}..., got:\n{e}");
    for f in fragments {
        assert!(e.contains(f), "missing {f:?} in:\n{e}");
    }
    // Every message says what to do after what is wrong.
    assert!(e.contains("; "), "{e}");
}

const RULE: &str = "[[install]]\ncertificate = \"www\"\n";

#[test]
fn unknown_top_level_key() {
    assert_error(
        "state_dir = \"/var/lib/a\"\nstate_dri = \"/x\"\n",
        2,
        1,
        &["unknown field `state_dri`", "remove it or correct its spelling"],
    );
}

#[test]
fn unknown_key_in_install() {
    assert_error(
        &format!("{RULE}fullchian = \"/etc/ssl/a.pem\"\n"),
        3,
        1,
        &["unknown field `fullchian`", "`fullchain`"],
    );
}

#[test]
fn missing_certificate_name() {
    assert_error(
        "interval = \"5m\"\n\n[[install]]\nfullchain = \"/etc/ssl/a.pem\"\n",
        3,
        1,
        &["missing field `certificate`", "add certificate = \"NAME\""],
    );
}

#[test]
fn relative_path() {
    assert_error(
        &format!("{RULE}fullchain = \"/etc/ssl/a.pem\"\nkey = \"ssl/a.key\"\n"),
        4,
        7,
        &["key `ssl/a.key` is a relative path", "write an absolute path"],
    );
    assert_error(
        "state_dir = \"var/lib/agent\"\n",
        1,
        13,
        &["state_dir `var/lib/agent` is a relative path"],
    );
    assert_error(
        &format!("{RULE}cert = \"/etc/ssl/../shadow\"\n"),
        3,
        8,
        &["contains `.` or `..`"],
    );
}

#[test]
fn world_readable_key_modes() {
    for mode in ["\"0777\"", "\"0644\"", "0o604"] {
        assert_error(
            &format!("{RULE}key = \"/etc/ssl/a.key\"\nmode = {mode}\n"),
            4,
            8,
            &[
                "lets every user of this host read the private key",
                "use \"0600\"",
            ],
        );
    }
    // Certificates alone may be 0644, but not executable, and modes are octal strings.
    AgentConfig::parse(
        &format!("{RULE}cert = \"/etc/ssl/a.pem\"\nmode = \"0644\"\n"),
        Path::new(FILE),
    )
    .unwrap();
    assert_error(
        &format!("{RULE}cert = \"/etc/ssl/a.pem\"\nmode = \"0755\"\n"),
        4,
        8,
        &["makes certificate files executable"],
    );
    assert_error(
        &format!("{RULE}cert = \"/etc/ssl/a.pem\"\nmode = 644\n"),
        4,
        8,
        &["mode 644 is a decimal number", "\"0640\""],
    );
}

#[test]
fn verify_is_host_port() {
    assert_error(
        &format!("{RULE}fullchain = \"/etc/ssl/a.pem\"\nverify = \"127.0.0.1\"\n"),
        4,
        10,
        &["verify `127.0.0.1` is not HOST:PORT", "it has no port"],
    );
    assert_error(
        &format!("{RULE}fullchain = \"/etc/ssl/a.pem\"\nverify = \"::1:443\"\n"),
        4,
        10,
        &["[::1]:443"],
    );
    assert_error(
        &format!("{RULE}fullchain = \"/etc/ssl/a.pem\"\nverify = \"localhost:https\"\n"),
        4,
        10,
        &["`https` is not a port"],
    );
}

#[test]
fn reload_given_twice() {
    assert_error(
        &format!(
            "{RULE}fullchain = \"/etc/ssl/a.pem\"\nreload = \"nginx\"\nreload_command = [\"/usr/sbin/nginx\", \"-s\", \"reload\"]\n"
        ),
        5,
        18,
        &["both `reload` and `reload_command` are set; keep one"],
    );
}

#[test]
fn reload_service_and_commands_are_checked() {
    assert_error(
        &format!("{RULE}fullchain = \"/etc/ssl/a.pem\"\nreload = \"nginx; rm -rf /\"\n"),
        4,
        10,
        &["invalid service", "reload_command"],
    );
    assert_error(
        &format!("{RULE}fullchain = \"/etc/ssl/a.pem\"\nreload_command = []\n"),
        4,
        18,
        &["reload_command is empty"],
    );
    assert_error(
        &format!("{RULE}fullchain = \"/etc/ssl/a.pem\"\nconfig_test_command = [\"bin/check\"]\n"),
        4,
        23,
        &["program `bin/check` is a relative path"],
    );
    assert_error(
        &format!("{RULE}fullchain = \"/etc/ssl/a.pem\"\nreload_command = \"systemctl reload nginx\"\n"),
        4,
        18,
        &["invalid type: string", "expected a sequence"],
    );
}

#[test]
fn verify_options_need_verify() {
    assert_error(
        &format!("{RULE}fullchain = \"/etc/ssl/a.pem\"\nsni = \"www.example.com\"\n"),
        4,
        7,
        &["`sni` only applies to the TLS check; add verify = \"HOST:PORT\""],
    );
    assert_error(
        &format!("{RULE}fullchain = \"/etc/ssl/a.pem\"\nverify = \"127.0.0.1:21\"\nstarttls = \"ftp\"\n"),
        5,
        12,
        &["starttls `ftp` is not supported", "\"smtp\""],
    );
}

#[test]
fn durations() {
    assert_error(
        "interval = \"5 parsecs\"\n",
        1,
        12,
        &["interval: `5 parsecs` has an unknown unit", "\"5m\""],
    );
    assert_error("interval = \"1s\"\n", 1, 12, &["out of range"]);
    assert_error(
        &format!(
            "{RULE}fullchain = \"/etc/ssl/a.pem\"\nverify = \"127.0.0.1:443\"\nverify_timeout = \"soon\"\n"
        ),
        5,
        18,
        &["verify_timeout: `soon` is not a duration"],
    );
}

#[test]
fn pkcs12_needs_a_private_password_file() {
    assert_error(
        &format!("{RULE}pkcs12 = \"/etc/ssl/a.p12\"\n"),
        3,
        10,
        &["pkcs12 needs a password; add pkcs12_password_file"],
    );
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_error(
        &format!(
            "{RULE}pkcs12 = \"/etc/ssl/a.p12\"\npkcs12_password_file = \"{}\"\n",
            pw.display()
        ),
        4,
        24,
        &["has mode 0644, readable by other users", "chmod 600"],
    );
}

#[test]
fn one_file_one_rule() {
    let e = error(&format!(
        "{RULE}fullchain = \"/etc/ssl/a.pem\"\n\n[[install]]\ncertificate = \"mail\"\ncert_and_ca = \"/etc/ssl/a.pem\"\n"
    ));
    assert!(
        e.starts_with(&format!(
            "{FILE}:7:15: /etc/ssl/a.pem is already written by `fullchain` on line 3"
        )),
        "{e}"
    );
    assert_error(RULE, 2, 15, &["this [[install]] writes no file"]);
}

#[test]
fn owners_must_exist() {
    assert_error(
        &format!("{RULE}fullchain = \"/etc/ssl/a.pem\"\nowner = \"no-such-user-xyz\"\n"),
        4,
        9,
        &[
            "owner `no-such-user-xyz` is not a user of this host",
            "numeric uid",
        ],
    );
    assert_error(
        &format!("{RULE}fullchain = \"/etc/ssl/a.pem\"\ngroup = \"no-such-group-xyz\"\n"),
        4,
        9,
        &["group `no-such-group-xyz` is not a group"],
    );
}

#[test]
fn toml_syntax_and_server_url() {
    assert_error(
        "state_dir = \"/var/lib/a\nx = 1\n",
        1,
        24,
        &["fix the TOML syntax here"],
    );
    assert_error(
        "server = \"http://fleet.example.com\"\n",
        1,
        10,
        &["not an https:// URL"],
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let e = error(&format!(
        "state_dir = \"state\"\n{RULE}key = \"k.pem\"\nverify = \"nowhere\"\n"
    ));
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert!(lines[0].starts_with(&format!("{FILE}:1:13: ")), "{e}");
    assert!(lines[1].starts_with(&format!("{FILE}:4:7: ")), "{e}");
    assert!(lines[2].starts_with(&format!("{FILE}:5:10: ")), "{e}");
}

#[test]
fn a_full_config() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("p12.pass");
    std::fs::write(&pw, "changeit\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        r#"
state_dir = "/var/lib/certfleet-agent"
server = "https://fleet.example.com:8443"
interval = "10m"

[[install]]
certificate = "www"
fullchain = "/etc/nginx/tls/www.pem"
key = "/etc/nginx/tls/www.key"
reload = "nginx"
verify = "127.0.0.1:443"
sni = "www.example.com"
verify_timeout = "3s"

[[install]]
certificate = "mail"
cert_and_ca = "/etc/postfix/tls/mail.pem"
key = "/etc/postfix/tls/mail.key"
pkcs12 = "/etc/postfix/tls/mail.p12"
pkcs12_password_file = "{}"
owner = "root"
group = 0
mode = 0o640
reload_command = ["/usr/sbin/postfix", "reload"]
config_test_command = ["postfix", "check"]
command_timeout = 30
verify = "[::1]:25"
starttls = "smtp"
"#,
        pw.display()
    );
    let c = AgentConfig::parse(&text, Path::new(FILE)).unwrap();
    assert_eq!(c.interval, Duration::from_secs(600));
    assert_eq!(
        c.server.as_ref().unwrap().as_str(),
        "https://fleet.example.com:8443/"
    );
    let www = &c.installs[0];
    assert_eq!(www.origin, format!("{FILE}:6"));
    assert_eq!(
        www.config_test.as_deref(),
        Some(&["nginx".to_string(), "-t".to_string()][..])
    );
    assert_eq!(www.reload.as_deref().unwrap(), ["systemctl", "reload", "nginx"]);
    let v = www.verify.as_ref().unwrap();
    assert_eq!(v.sni.as_deref(), Some("www.example.com"));
    assert_eq!(v.timeout, Duration::from_secs(3));
    assert_eq!(
        www.files.iter().map(|f| (f.kind, f.mode)).collect::<Vec<_>>(),
        [(FileKind::Fullchain, 0o644), (FileKind::Key, 0o600)]
    );
    let mail = &c.installs[1];
    assert_eq!((mail.owner, mail.group), (Some(0), Some(0)));
    assert!(mail.files.iter().all(|f| f.mode == 0o640));
    assert_eq!(mail.config_test.as_deref().unwrap(), ["postfix", "check"]);
    assert_eq!(mail.command_timeout, Duration::from_secs(30));
    let v = mail.verify.as_ref().unwrap();
    assert_eq!(v.endpoint.to_string(), "[::1]:25");
    assert_eq!(v.starttls, Some(StartTls::Smtp));
    assert_eq!(v.timeout, Duration::from_secs(10));
    assert_eq!(c.rules_for("mail").count(), 1);
    assert_eq!(c.rules_for("nope").count(), 0);
}
