//! Fleet mode end to end with the real binary: `certfleet serve` on SQLite renewing through
//! real Pebble (http-01 answered by the server's own responder), two enrolled hosts whose
//! `certfleet agent` installs into a real nginx and proves by a TLS handshake what it serves,
//! the admin CLI, and the authorization boundary between hosts.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use certfleet_core::CertInfo;
use certfleet_testkit::{Certbot, Nginx, Pebble, free_port, self_signed_pem};
use common::{mode, stderr, stdout, tail};

const BIN: &str = env!("CARGO_BIN_EXE_certfleet");

/// A running `certfleet serve` (killed on drop).
struct Server {
    child: Child,
    data: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Server {
    /// `serve` on `data` against `pebble`, answering http-01 on `http01_port` when given;
    /// `extra` arguments are appended (`--database-url ...`).
    fn start(pebble: &Pebble, data: &Path, http01_port: Option<u16>, extra: &[&str]) -> Server {
        let api = free_port();
        let mut args: Vec<String> = vec!["serve".into(), "--data-dir".into(), data.display().to_string()];
        args.extend(["--listen".into(), format!("127.0.0.1:{api}")]);
        if let Some(port) = http01_port {
            args.extend(["--http-01-listen".into(), format!("127.0.0.1:{port}")]);
        }
        args.extend([
            "--server".into(),
            pebble.directory_url(),
            "-m".into(),
            "fleet@example.test".into(),
        ]);
        args.push("--agree-tos".into());
        args.extend(extra.iter().map(|s| s.to_string()));
        let env = vec![
            (
                "CERTFLEET_CA_BUNDLE".to_string(),
                pebble.ca_bundle_path().display().to_string(),
            ),
            ("CERTFLEET_LOG".to_string(), "info".to_string()),
        ];
        Self::spawn(data.to_path_buf(), args, env, api)
    }

    fn spawn(data: PathBuf, args: Vec<String>, env: Vec<(String, String)>, api: u16) -> Server {
        let log = data.with_extension("log");
        let out = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(BIN)
            .args(&args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        let s = Server {
            child,
            data,
            log,
            args,
            env,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        // Listening, and api.url written (just after the bind).
        while std::net::TcpStream::connect(("127.0.0.1", api)).is_err() || !s.data.join("api.url").exists() {
            assert!(Instant::now() < deadline, "serve did not start:\n{}", s.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// `kill -9`, then the same command again on the same data dir and database.
    fn kill9_and_restart(mut self) -> Server {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let api: u16 = self.args[self.args.iter().position(|a| a == "--listen").unwrap() + 1]
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let (data, args, env) = (self.data.clone(), self.args.clone(), self.env.clone());
        drop(self);
        Self::spawn(data, args, env, api)
    }

    /// The serial of certificate `name` once it has one other than `old`.
    fn wait_serial(&self, name: &str, old: Option<&str>, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.show(name)["serial"].as_str()
                && Some(s) != old
            {
                return s.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "{name}: no new certificate:\n{}",
                tail(&self.log())
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `certfleet fleet --data-dir DATA ...`
    fn fleet(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("fleet")
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .output()
            .unwrap()
    }

    fn fleet_ok(&self, args: &[&str]) -> String {
        let out = self.fleet(args);
        assert!(
            out.status.success(),
            "fleet {args:?}: {}\n{}\nserver log:\n{}",
            stderr(&out),
            stdout(&out),
            tail(&self.log())
        );
        stdout(&out)
    }

    /// `GET /metrics` with curl (`-k`: the API's certificate is self-signed; loopback only):
    /// the status and the body.
    fn scrape(&self, token: Option<&str>) -> (u16, String) {
        let url = std::fs::read_to_string(self.data.join("api.url")).unwrap();
        let mut cmd = Command::new("curl");
        cmd.args(["-sk", "--max-time", "20", "-w", "\n%{http_code}"]);
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        let out = cmd.arg(format!("{}/metrics", url.trim())).output().unwrap();
        let text = stdout(&out);
        let (body, code) = text.trim_end().rsplit_once('\n').unwrap_or(("", text.trim()));
        (code.parse().unwrap_or(0), body.to_string())
    }

    fn show(&self, cert: &str) -> serde_json::Value {
        serde_json::from_str(&self.fleet_ok(&["cert", "show", cert, "--json"])).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A host: an nginx serving a placeholder certificate, and an agent config installing into it.
struct Host {
    dir: PathBuf,
    nginx: Nginx,
    config: PathBuf,
    https_port: u16,
}

impl Host {
    fn new(root: &Path, name: &str, certs: &[(&str, &str)]) -> Host {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        let mut installs = String::new();
        let mut servers = String::new();
        let mut first = None;
        for (i, (cert, sni)) in certs.iter().enumerate() {
            let (pem, key) = self_signed_pem(&["placeholder.example.test"]).unwrap();
            let fullchain = dir.join("tls").join(format!("{cert}.pem"));
            let keyfile = dir.join("tls").join(format!("{cert}.key"));
            std::fs::write(&fullchain, pem).unwrap();
            std::fs::write(&keyfile, key).unwrap();
            if i == 0 {
                first = Some((fullchain.clone(), keyfile.clone()));
            } else {
                servers.push_str(&format!(
                    "server {{ listen 127.0.0.1:HTTPS_PORT ssl; server_name {sni}; ssl_certificate {}; ssl_certificate_key {}; }}\n",
                    fullchain.display(),
                    keyfile.display()
                ));
            }
            installs.push_str(&format!(
                "[[install]]\ncertificate = \"{cert}\"\nfullchain = \"{}\"\nkey = \"{}\"\nconfig_test_command = CONFIG_TEST\nreload_command = RELOAD\nverify = \"127.0.0.1:HTTPS_PORT\"\nsni = \"{sni}\"\n\n",
                fullchain.display(),
                keyfile.display()
            ));
        }
        let (fullchain, keyfile) = first.unwrap();
        let https_port = free_port();
        let nginx = Nginx::builder()
            .https(&fullchain, &keyfile)
            .https_port(https_port)
            .extra_http_conf(servers.replace("HTTPS_PORT", &https_port.to_string()))
            .start()
            .unwrap();
        let arr = |v: Vec<String>| {
            format!(
                "[{}]",
                v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
            )
        };
        let toml = format!(
            "state_dir = \"{}\"\ninterval = \"1m\"\n\n{installs}",
            dir.join("state").display()
        )
        .replace("CONFIG_TEST", &arr(nginx.config_test_command()))
        .replace("RELOAD", &arr(nginx.reload_command()))
        .replace("HTTPS_PORT", &https_port.to_string());
        let config = dir.join("agent.toml");
        std::fs::write(&config, toml).unwrap();
        Host {
            dir,
            nginx,
            config,
            https_port,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn agent(&self, args: &[&str]) -> Output {
        Command::new(BIN).arg("agent").args(args).output().unwrap()
    }

    fn run_once(&self) -> Output {
        Command::new(BIN)
            .args(["agent", "run", "--once", "--config"])
            .arg(&self.config)
            .output()
            .unwrap()
    }

    /// `agent run --once` until it exits 0 (first syncs upload CSRs, then wait for the server).
    fn converge(&self, server: &Server) -> Output {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.run_once();
            if out.status.success() {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not converge: {}\nserver log:\n{}",
                stderr(&out),
                tail(&server.log())
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn served_serial(&self, sni: &str) -> String {
        CertInfo::from_der(&self.nginx.served_leaf(Some(sni)).unwrap())
            .unwrap()
            .serial_hex()
    }
}

fn world_readable_tempdir() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

#[test]
fn fleet_on_sqlite_issues_installs_verifies_and_keeps_hosts_apart() {
    let http01 = free_port();
    let pebble = Pebble::builder().http_port(http01).start().unwrap();
    let tmp = world_readable_tempdir();
    let metrics_token = tmp.path().join("metrics.token");
    std::fs::write(&metrics_token, "metrics-s3cret\n").unwrap();
    let server = Server::start(
        &pebble,
        &tmp.path().join("server"),
        Some(http01),
        &["--metrics-token", metrics_token.to_str().unwrap()],
    );
    let data = &server.data;

    // First start: fingerprint, admin token 0600, custody key 0600, SQLite database.
    let fp = std::fs::read_to_string(data.join("api.fingerprint")).unwrap();
    assert_eq!(fp.trim().len(), 64, "{fp}");
    assert_eq!(mode(&data.join("admin.token")), 0o600);
    assert_eq!(mode(&data.join("custody.key")), 0o600);
    assert!(data.join("fleet.db").exists());

    // Hosts: one line each, a one-time token.
    let token1 = server.fleet_ok(&["host", "add", "web1"]).trim().to_string();
    let token2 = server.fleet_ok(&["host", "add", "web2"]).trim().to_string();
    assert!(token1.starts_with("cfe1_") && !token1.contains('\n'), "{token1}");

    let web1 = Host::new(
        tmp.path(),
        "web1",
        &[("www", "www.example.test"), ("shared", "shared.example.test")],
    );
    let web2 = Host::new(tmp.path(), "web2", &[("shared", "shared.example.test")]);
    let enrolled = web1.agent(&["enroll", "--state-dir", web1.state().to_str().unwrap(), &token1]);
    assert!(enrolled.status.success(), "{}", stderr(&enrolled));
    assert!(
        stderr(&enrolled).contains("enrolled as host web1"),
        "{}",
        stderr(&enrolled)
    );
    assert_eq!(mode(&web1.state().join("client-key.pem")), 0o600);
    let e2 = web2.agent(&["enroll", "--state-dir", web2.state().to_str().unwrap(), &token2]);
    assert!(e2.status.success(), "{}", stderr(&e2));
    // Single use: the same token again is refused.
    let again = web2.agent(&[
        "enroll",
        "--state-dir",
        tmp.path().join("again").to_str().unwrap(),
        &token2,
    ]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("enrollment refused"),
        "{}",
        stderr(&again)
    );

    // An agent-custody certificate for web1, a server-custody one shared by both.
    server.fleet_ok(&["cert", "add", "www", "-d", "www.example.test", "--host", "web1"]);
    server.fleet_ok(&[
        "cert",
        "add",
        "shared",
        "-d",
        "shared.example.test",
        "--host",
        "web1",
        "--host",
        "web2",
        "--custody",
        "server",
    ]);
    // Agent custody cannot be shared: refused with the way out.
    let refused = server.fleet(&["assign", "www", "web2"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("agent custody"), "{}", stderr(&refused));

    let out = web1.converge(&server);
    assert!(stderr(&out).contains("www: verified"), "{}", stderr(&out));
    web2.converge(&server);

    // What each nginx serves is what the server issued.
    let www = server.show("www");
    let www_serial = www["serial"].as_str().unwrap().to_string();
    assert_eq!(web1.served_serial("www.example.test"), www_serial);
    let shared_serial = server.show("shared")["serial"].as_str().unwrap().to_string();
    assert_eq!(web1.served_serial("shared.example.test"), shared_serial);
    assert_eq!(web2.served_serial("shared.example.test"), shared_serial);
    let fullchain = std::fs::read(web1.dir.join("tls/www.pem")).unwrap();
    pebble
        .verify_chain(&fullchain, &["www.example.test"], std::time::SystemTime::now())
        .unwrap();
    assert_eq!(mode(&web1.dir.join("tls/www.key")), 0o600);

    // The key of www was made on web1 and never left it: the server has no key for it.
    let keys: Vec<_> = std::fs::read_dir(web1.state().join("keys")).unwrap().collect();
    assert!(
        keys.len() >= 2,
        "current key and the next one (CSR uploaded ahead)"
    );

    // cert show: each host's install state and the event history.
    let installs = www["installs"].as_array().unwrap();
    assert_eq!(installs.len(), 1);
    assert_eq!(installs[0]["host"], "web1");
    assert_eq!(installs[0]["state"], "verified");
    assert_eq!(installs[0]["served_serial"], www_serial.as_str());
    let kinds: Vec<&str> = www["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in ["added", "csr-uploaded", "issued", "fetched", "verified"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }

    // Authorization: web2 cannot fetch web1's certificate, with a clear message.
    let denied = web2.agent(&["fetch", "--state-dir", web2.state().to_str().unwrap(), "www"]);
    assert!(!denied.status.success());
    assert!(
        stderr(&denied).contains("not assigned to host web2"),
        "{}",
        stderr(&denied)
    );
    let fetched = web2.agent(&["fetch", "--state-dir", web2.state().to_str().unwrap(), "shared"]);
    assert!(fetched.status.success(), "{}", stderr(&fetched));
    assert!(stdout(&fetched).contains("not printed") && !stdout(&fetched).contains("PRIVATE KEY"));

    // Renew now: a new certificate, with the key web1 uploaded ahead of time.
    server.fleet_ok(&["cert", "renew", "www"]);
    // web1's agent is not running meanwhile: it catches up on its next sync.
    let renewed = server.wait_serial("www", Some(&www_serial), Duration::from_secs(30));
    web1.converge(&server);
    assert_eq!(web1.served_serial("www.example.test"), renewed);

    // /metrics: the token is needed; then the certificates' expiry, the issuances counted
    // (www twice, shared once) and what web1 serves.
    assert_eq!(server.scrape(None).0, 401);
    assert_eq!(server.scrape(Some("wrong")).0, 401);
    let (code, metrics) = server.scrape(Some("metrics-s3cret"));
    assert_eq!(code, 200, "{metrics}");
    let sample = |prefix: &str| -> Vec<f64> {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    };
    let www_left = sample("certfleet_certificate_expiry_seconds{certificate=\"www\"}");
    assert!(www_left.len() == 1 && www_left[0] > 0.0, "{metrics}");
    let issued: f64 = sample("certfleet_renewals_total{").iter().sum();
    assert_eq!(issued, 3.0, "{metrics}");
    assert_eq!(
        sample("certfleet_host_serves_current{certificate=\"www\",host=\"web1\"}"),
        [1.0],
        "{metrics}"
    );
    assert_eq!(
        sample("certfleet_certificates{state=\"valid\"}"),
        [2.0],
        "{metrics}"
    );
    assert!(
        sample("certfleet_agent_checkins_total{host=\"web1\"}")[0] >= 1.0,
        "{metrics}"
    );

    // The admin API refuses a wrong token (usage error: exit 2).
    let bad = tmp.path().join("bad.token");
    std::fs::write(&bad, "cfa1_not-the-token\n").unwrap();
    let url = std::fs::read_to_string(data.join("api.url")).unwrap();
    let no_token = Command::new(BIN)
        .args(["fleet", "--url", url.trim()])
        .args(["--fingerprint", fp.trim(), "--token-file"])
        .arg(&bad)
        .args(["host", "list"])
        .output()
        .unwrap();
    assert_eq!(no_token.status.code(), Some(2), "{}", stderr(&no_token));
    assert!(
        stderr(&no_token).contains("admin token is not valid"),
        "{}",
        stderr(&no_token)
    );

    // Failed authentication is logged and, after ten in a minute, refused outright.
    let mut last = no_token;
    for _ in 0..10 {
        last = Command::new(BIN)
            .args([
                "fleet",
                "--url",
                url.trim(),
                "--fingerprint",
                fp.trim(),
                "--token-file",
            ])
            .arg(&bad)
            .args(["host", "list"])
            .output()
            .unwrap();
    }
    assert!(!last.status.success());
    assert!(
        stderr(&last).contains("too many failed authentications"),
        "{}",
        stderr(&last)
    );
    assert!(
        server.log().contains("the admin token is not valid"),
        "{}",
        tail(&server.log())
    );

    // Plain HTTP is refused with the way out, and nothing of the API behind it.
    let authority = url
        .trim()
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut plain = std::net::TcpStream::connect(&authority).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    use std::io::{Read, Write};
    plain
        .write_all(b"GET /api/v1/hosts HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("speaks HTTPS"),
        "{answer}"
    );
    assert!(!answer.contains("web1"), "{answer}");

    // Nothing secret in the server's log.
    let log = server.log();
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    assert!(!log.contains(admin.trim()) && !log.contains("PRIVATE KEY") && !log.contains(&token2));
}

#[test]
fn fleet_on_postgres_renews_dns01_through_bind_and_survives_kill_9() {
    let bind = certfleet_testkit::bind::Bind::start(&["fleet.example.test"]).unwrap();
    let pebble = Pebble::builder().dns_server(bind.addr()).start().unwrap();
    let db = certfleet_testkit::PgDatabase::create().unwrap();
    let tmp = world_readable_tempdir();
    let ini = tmp.path().join("rfc2136.ini");
    bind.write_rfc2136_ini(&ini).unwrap();
    let server = Server::start(
        &pebble,
        &tmp.path().join("server"),
        None,
        &["--database-url", db.url()],
    );
    assert!(!server.data.join("fleet.db").exists(), "PostgreSQL, not SQLite");

    let token = server.fleet_ok(&["host", "add", "web1"]).trim().to_string();
    let web1 = Host::new(tmp.path(), "web1", &[("wild", "api.fleet.example.test")]);
    let enrolled = web1.agent(&["enroll", "--state-dir", web1.state().to_str().unwrap(), &token]);
    assert!(enrolled.status.success(), "{}", stderr(&enrolled));

    // A wildcard by dns-01 through BIND (RFC 2136), the key on the server (sealed at rest).
    server.fleet_ok(&[
        "cert",
        "add",
        "wild",
        "-d",
        "fleet.example.test",
        "-d",
        "*.fleet.example.test",
        "--host",
        "web1",
        "--custody",
        "server",
        "--dns-rfc2136",
        "--dns-rfc2136-credentials",
        ini.to_str().unwrap(),
        "--dns-rfc2136-propagation-seconds",
        "0",
    ]);
    let first = server.wait_serial("wild", None, Duration::from_secs(60));
    web1.converge(&server);
    assert_eq!(web1.served_serial("api.fleet.example.test"), first);
    assert!(
        bind.txt("_acme-challenge.fleet.example.test").is_empty(),
        "challenge records cleaned up"
    );

    // kill -9 in the middle of a renewal: the restarted server has everything (hosts, agent
    // credentials, the current certificate) and finishes the renewal.
    server.fleet_ok(&["cert", "renew", "wild"]);
    std::thread::sleep(Duration::from_millis(150));
    let server = server.kill9_and_restart();
    let shown = server.show("wild");
    assert!(shown["serial"].as_str().is_some(), "{shown}");
    let renewed = server.wait_serial("wild", Some(&first), Duration::from_secs(60));
    let out = web1.converge(&server);
    assert!(stderr(&out).contains("wild: verified"), "{}", stderr(&out));
    assert_eq!(web1.served_serial("api.fleet.example.test"), renewed);
    let fullchain = std::fs::read(web1.dir.join("tls/wild.pem")).unwrap();
    pebble
        .verify_chain(
            &fullchain,
            &["fleet.example.test", "api.fleet.example.test"],
            std::time::SystemTime::now(),
        )
        .unwrap();

    // A second server on the same data dir is refused with the reason.
    let second = Command::new(BIN)
        .args(&server.args)
        .envs(server.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("another certfleet serve is running"),
        "{}",
        stderr(&second)
    );
}

#[test]
fn endpoint_serving_another_certificate_is_rolled_back_and_reported() {
    let http01 = free_port();
    let pebble = Pebble::builder().http_port(http01).start().unwrap();
    let tmp = world_readable_tempdir();
    let server = Server::start(&pebble, &tmp.path().join("server"), Some(http01), &[]);
    let token = server.fleet_ok(&["host", "add", "web1"]).trim().to_string();
    let web1 = Host::new(tmp.path(), "web1", &[("www", "www.example.test")]);
    // The agent verifies against an endpoint that never serves what it installs (a second
    // nginx with its own certificate): a wrong `verify`, or a service that ignores the files.
    let other = Host::new(tmp.path(), "other", &[("x", "x.example.test")]);
    let config = std::fs::read_to_string(&web1.config).unwrap();
    let mine = format!("verify = \"127.0.0.1:{}\"", web1.https_port);
    assert!(config.contains(&mine));
    std::fs::write(
        &web1.config,
        config.replace(&mine, &format!("verify = \"127.0.0.1:{}\"", other.https_port)),
    )
    .unwrap();
    let placeholder = std::fs::read(web1.dir.join("tls/www.pem")).unwrap();
    let placeholder_serial = web1.served_serial("www.example.test");

    let enrolled = web1.agent(&["enroll", "--state-dir", web1.state().to_str().unwrap(), &token]);
    assert!(enrolled.status.success(), "{}", stderr(&enrolled));
    server.fleet_ok(&["cert", "add", "www", "-d", "www.example.test", "--host", "web1"]);

    let deadline = Instant::now() + Duration::from_secs(60);
    let (out, install) = loop {
        let out = web1.run_once();
        let show = server.show("www");
        let install = show["installs"][0].clone();
        if install["state"] == "rolled-back" {
            break (out, install);
        }
        assert!(Instant::now() < deadline, "no rollback: {show}\n{}", stderr(&out));
        std::thread::sleep(Duration::from_millis(300));
    };
    // Non-zero exit, the previous files back in place, nginx still on them, the reason reported.
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("www: rolled-back"), "{}", stderr(&out));
    assert_eq!(std::fs::read(web1.dir.join("tls/www.pem")).unwrap(), placeholder);
    assert_eq!(web1.served_serial("www.example.test"), placeholder_serial);
    let error = install["error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "{install}");
    let kinds: Vec<String> = server.show("www")["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.iter().any(|k| k == "rolled-back"), "{kinds:?}");
}

/// `certfleet import --fleet` on a lineage the real certbot made: the fleet takes over the
/// same certificate (no renewal at once), its key goes only into the agent's key store, the
/// agent installs into the same `live/` paths and runs the lineage's deploy hook, certbot no
/// longer renews the lineage, and the next certificate comes from the fleet for a key made on
/// the host.
#[test]
fn certbot_lineage_imported_into_the_fleet_keeps_its_paths_and_its_key_on_the_host() {
    let http01 = free_port();
    let pebble = Pebble::builder().http_port(http01).start().unwrap();
    let tmp = world_readable_tempdir();
    let le = tmp.path().join("le");
    let cb = Certbot::with_dirs(&le, tmp.path().join("work"), tmp.path().join("logs"))
        .server(pebble.directory_url())
        .ca_bundle(pebble.ca_bundle_path());
    let marks = tmp.path().join("deployed");
    let hook = format!("touch {}", marks.display());
    cb.certonly_standalone(&["imp.example.test"], http01, &["--deploy-hook", &hook])
        .unwrap();
    let live = le.join("live/imp.example.test");
    let serial = |p: &Path| {
        CertInfo::from_pem(&std::fs::read_to_string(p).unwrap())
            .unwrap()
            .serial_hex()
    };
    let serial0 = serial(&live.join("cert.pem"));
    let key0 = std::fs::read_to_string(live.join("privkey.pem")).unwrap();
    std::fs::remove_file(&marks).unwrap();

    let server = Server::start(&pebble, &tmp.path().join("server"), Some(http01), &[]);
    let url = std::fs::read_to_string(server.data.join("api.url")).unwrap();
    let fp = std::fs::read_to_string(server.data.join("api.fingerprint")).unwrap();
    let state = tmp.path().join("agent-state");
    let agent_conf = tmp.path().join("etc/agent.toml");
    let import = |extra: &[&str]| {
        Command::new(BIN)
            .arg("import")
            .args(["--config-dir", le.to_str().unwrap()])
            .args(["--work-dir", tmp.path().join("work").to_str().unwrap()])
            .args(["--logs-dir", tmp.path().join("logs").to_str().unwrap()])
            .args([
                "--fleet",
                url.trim(),
                "--fingerprint",
                fp.trim(),
                "--host",
                "web1",
            ])
            .args(["--token-file", server.data.join("admin.token").to_str().unwrap()])
            .args(["--agent-state-dir", state.to_str().unwrap()])
            .args(["--agent-config", agent_conf.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = import(&[]);
    assert!(
        out.status.success(),
        "{}\n{}\nserver log:\n{}",
        stdout(&out),
        stderr(&out),
        tail(&server.log())
    );
    assert!(
        stdout(&out).contains("imported  imp.example.test"),
        "{}",
        stdout(&out)
    );

    // The fleet has the very certificate, scheduled, not renewed at once; no key went there.
    let shown = server.show("imp.example.test");
    assert_eq!(shown["serial"].as_str(), Some(serial0.as_str()), "{shown}");
    assert_eq!(shown["custody"], "agent", "{shown}");
    assert_eq!(shown["hosts"], serde_json::json!(["web1"]), "{shown}");
    let detail = server.fleet_ok(&["cert", "show", "imp.example.test"]);
    assert!(detail.contains("imported"), "{detail}");
    // The key is in the agent's store (0600), found by the certificate's public key.
    let stored: Vec<PathBuf> = std::fs::read_dir(state.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(mode(&stored[0]), 0o600);
    let spki = |pem: &str| {
        certfleet_core::PrivateKey::from_pem(pem)
            .unwrap()
            .public_key_spki_der()
    };
    assert_eq!(spki(&std::fs::read_to_string(&stored[0]).unwrap()), spki(&key0));
    // certbot no longer renews it; the agent config says where it goes and what runs.
    assert!(!le.join("renewal/imp.example.test.conf").exists());
    assert!(
        le.join("renewal/imp.example.test.conf.imported-to-fleet")
            .exists()
    );
    let listed = cb.run_ok(&["certificates"]).unwrap();
    assert!(!listed.stdout.contains("imp.example.test"), "{}", listed.stdout);
    let conf_text = std::fs::read_to_string(&agent_conf).unwrap();
    assert!(
        conf_text.contains(&format!("{:?}", live.join("fullchain.pem").display().to_string())),
        "{conf_text}"
    );
    assert!(conf_text.contains("reload_command"), "{conf_text}");

    // A second run finds nothing left to import and says so; nothing changes.
    let again = import(&[]);
    assert_eq!(
        again.status.code(),
        Some(13),
        "{}\n{}",
        stdout(&again),
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&agent_conf).unwrap(), conf_text);

    // The agent finds the same certificate already where the services read it.
    let agent = || {
        Command::new(BIN)
            .args(["agent", "run", "--once", "--config"])
            .arg(&agent_conf)
            .output()
            .unwrap()
    };
    let out = agent();
    assert!(out.status.success(), "{}\n{}", stderr(&out), tail(&server.log()));
    assert_eq!(serial(&live.join("fullchain.pem")), serial0);

    // The next certificate comes from the fleet, for a key made here.
    server.fleet_ok(&["cert", "renew", "imp.example.test"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while serial(&live.join("cert.pem")) == serial0 {
        assert!(Instant::now() < deadline, "not renewed:\n{}", tail(&server.log()));
        let _ = agent();
        std::thread::sleep(Duration::from_millis(300));
    }
    let key1 = std::fs::read_to_string(live.join("privkey.pem")).unwrap();
    assert_ne!(spki(&key1), spki(&key0), "a new key");
    assert_eq!(mode(&live.join("privkey.pem")), 0o600);
    let info = CertInfo::from_pem(&std::fs::read_to_string(live.join("fullchain.pem")).unwrap()).unwrap();
    assert_eq!(info.spki_der, spki(&key1));
    assert_eq!(info.names, ["imp.example.test"]);
    assert!(marks.exists(), "certbot's deploy hook ran as the agent's reload");
}

/// Alerts end to end: `serve` renews through real Pebble while its http-01 responder listens
/// where Pebble does not look, so every attempt fails with the CA's reason; aiosmtpd on
/// loopback receives the failure mail exactly once across many watch passes and renewals,
/// then, once the server answers http-01 where Pebble looks, the "resolved" mail.
/// `fleet notify test` reports each channel and fails when one does.
#[test]
fn alerts_mail_a_failing_renewal_once_then_its_resolution() {
    use certfleet_testkit::SmtpReceiver;
    if !SmtpReceiver::available() {
        println!("SKIPPED: /usr/bin/python3 has no aiosmtpd (apt-get install python3-aiosmtpd)");
        return;
    }
    let smtp = SmtpReceiver::start().unwrap();
    let http01 = free_port();
    let pebble = Pebble::builder().http_port(http01).start().unwrap();
    let tmp = world_readable_tempdir();
    let out = tmp.path().join("command.out");
    let cmd = tmp.path().join("notify.sh");
    std::fs::write(
        &cmd,
        format!("#!/bin/sh\n{{ cat; echo; }} >> '{}'\n", out.display()),
    )
    .unwrap();
    std::fs::set_permissions(&cmd, std::fs::Permissions::from_mode(0o755)).unwrap();
    let smtp_url = smtp.url();
    let mut alert_flags: Vec<String> = [
        "--smtp-url",
        &smtp_url,
        "--smtp-from",
        "fleet@example.test",
        "--notify-email",
        "ops@example.test",
        "--notify-command",
        cmd.to_str().unwrap(),
        "--notify-interval",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let data = tmp.path().join("server");
    // The responder listens on a port Pebble does not validate against.
    let server = Server::start(&pebble, &data, Some(free_port()), &str_args(&alert_flags));

    // Every channel works: exit 0, one line per channel, the test message arrives.
    let out_test = server.fleet(&["notify", "test"]);
    assert!(
        out_test.status.success(),
        "{}\n{}",
        stderr(&out_test),
        tail(&server.log())
    );
    let text = stdout(&out_test);
    assert!(
        text.contains("ok      email to ops@example.test via smtp://127.0.0.1"),
        "{text}"
    );
    assert!(
        text.contains(&format!("ok      command {}", cmd.display())),
        "{text}"
    );
    smtp.wait_for(Duration::from_secs(20), |m| {
        m.subject == "certfleet: test message"
    })
    .unwrap();
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&out).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["kind"], "test");

    server.fleet_ok(&[
        "cert",
        "add",
        "www",
        "-d",
        "www.example.test",
        "--custody",
        "server",
    ]);
    // The first issuance fails; a second attempt makes two in a row.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.show("www")["consecutive_failures"].as_u64() < Some(1) {
        assert!(Instant::now() < deadline, "no failure:\n{}", tail(&server.log()));
        std::thread::sleep(Duration::from_millis(200));
    }
    server.fleet_ok(&["cert", "renew", "www"]);
    let mail = smtp
        .wait_for(Duration::from_secs(60), |m| m.subject.contains("renewal failing"))
        .unwrap();
    let shown = server.show("www");
    let reason = shown["last_error"].as_str().unwrap().to_string();
    assert!(shown["consecutive_failures"].as_u64() >= Some(2));
    assert!(mail.subject.contains("www"), "{}", mail.subject);
    assert!(
        mail.body.contains(&reason),
        "the CA's reason {reason:?} in:\n{}",
        mail.body
    );
    assert_eq!(mail.to, ["ops@example.test"]);

    // More failures and many watch passes (one a second): no second mail.
    for _ in 0..2 {
        server.fleet_ok(&["cert", "renew", "www"]);
        std::thread::sleep(Duration::from_secs(3));
    }
    let failing = |m: &certfleet_testkit::Mail| m.subject.contains("renewal failing");
    assert_eq!(
        smtp.mails().iter().filter(|m| failing(m)).count(),
        1,
        "{:#?}",
        smtp.mails()
    );

    // Now the server answers http-01 where Pebble looks, and a webhook nobody listens to is
    // added: the renewal succeeds, "resolved" arrives once, and `notify test` fails on the
    // webhook only.
    drop(server);
    alert_flags.extend([
        "--notify-webhook".to_string(),
        format!("http://127.0.0.1:{}/hook", free_port()),
    ]);
    let server = Server::start(&pebble, &data, Some(http01), &str_args(&alert_flags));
    server.fleet_ok(&["cert", "renew", "www"]);
    server.wait_serial("www", None, Duration::from_secs(60));
    let resolved = smtp
        .wait_for(Duration::from_secs(30), |m| m.subject.contains("resolved"))
        .unwrap();
    assert!(
        resolved.subject.contains("certificate www"),
        "{}",
        resolved.subject
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        smtp.mails().iter().filter(|m| failing(m)).count(),
        2,
        "alert + resolved only"
    );

    let out_test = server.fleet(&["notify", "test"]);
    assert!(!out_test.status.success());
    let text = stdout(&out_test);
    assert!(text.contains("ok      email to"), "{text}");
    assert!(text.contains("FAILED  webhook http://127.0.0.1:"), "{text}");
    assert!(
        stderr(&out_test).contains("1 of 3 notification channel(s) failed"),
        "{}",
        stderr(&out_test)
    );
    // Nothing secret in the log, and delivery failures are there.
    assert!(
        server.log().contains("notification test through webhook"),
        "{}",
        tail(&server.log())
    );
}

/// `GET /api/openapi.json` without credentials: an OpenAPI 3 document that has every admin
/// route `certfleet fleet` uses, with the admin token as its security, and the error schema.
#[test]
fn openapi_document_lists_every_admin_route() {
    let pebble = Pebble::start().unwrap();
    let tmp = world_readable_tempdir();
    let server = Server::start(&pebble, &tmp.path().join("server"), None, &[]);
    let url = std::fs::read_to_string(server.data.join("api.url")).unwrap();
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "20", "-w", "\n%{http_code}"])
        .arg(format!("{}/api/openapi.json", url.trim()))
        .output()
        .unwrap();
    let text = stdout(&out);
    let (body, code) = text.trim_end().rsplit_once('\n').unwrap();
    assert_eq!(code, "200", "{body}");
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let admin = [
        ("post", "/api/v1/hosts"),
        ("get", "/api/v1/hosts"),
        ("delete", "/api/v1/hosts/{host}"),
        ("post", "/api/v1/certificates"),
        ("get", "/api/v1/certificates"),
        ("get", "/api/v1/certificates/{name}"),
        ("post", "/api/v1/certificates/{name}/renew"),
        ("post", "/api/v1/certificates/{name}/enable"),
        ("post", "/api/v1/certificates/{name}/disable"),
        ("post", "/api/v1/certificates/{name}/import"),
        ("put", "/api/v1/certificates/{name}/hosts/{host}"),
        ("delete", "/api/v1/certificates/{name}/hosts/{host}"),
        ("post", "/api/v1/notify/test"),
    ];
    for (method, path) in admin {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        assert_eq!(
            op["security"][0]["admin_token"],
            serde_json::json!([]),
            "{method} {path}"
        );
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path}: 401 undocumented"
        );
    }
    for path in [
        "/api/v1/enroll",
        "/api/v1/agent/assignments",
        "/api/v1/agent/report",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    for schema in [
        "ApiError",
        "NewCertificate",
        "CertificateView",
        "CertificateDetail",
        "NotifyTestReport",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    // The document is open; the API behind it is not.
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/api/v1/hosts", url.trim()))
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "401");
    // A JSON body sent as text/plain gets a JSON error that says what to send, every time
    // (over HTTP/2 an answer before the body was read used to reset the stream now and then).
    let token = std::fs::read_to_string(server.data.join("admin.token")).unwrap();
    for _ in 0..10 {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "20", "-w", "\n%{http_code}", "-X", "POST"])
            .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
            .args(["-H", "Content-Type: text/plain", "--data", "{\"name\":\"web9\"}"])
            .arg(format!("{}/api/v1/hosts", url.trim()))
            .output()
            .unwrap();
        let text = stdout(&out);
        let (body, code) = text.trim_end().rsplit_once('\n').unwrap();
        assert_eq!(code, "415", "{body}");
        let err: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(err["error"], "unsupported-media-type");
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .contains("Content-Type: application/json"),
            "{err}"
        );
    }
}

fn str_args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `certfleet fleet admin passwd` (from a file, and twice on stdin) sets the dashboard password
/// of a real `certfleet serve`; a browser-like client (curl) logs in with it over the API's TLS
/// listener; a mismatch or a weak password changes nothing.
#[test]
fn admin_passwd_sets_the_dashboard_password() {
    let dir = world_readable_tempdir();
    let data = dir.path().join("server");
    let api = free_port();
    // No certificate is added, so the (unreachable) CA is never asked.
    let args: Vec<String> = [
        "serve",
        "--data-dir",
        &data.display().to_string(),
        "--listen",
        &format!("127.0.0.1:{api}"),
        "--watch-interval",
        "1s",
        "--server",
        "https://127.0.0.1:9/dir",
        "-m",
        "fleet@example.test",
        "--agree-tos",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = Server::spawn(data.clone(), args, vec![], api);
    let base = format!("https://127.0.0.1:{api}");
    let passwd = |stdin: &str, extra: &[&str]| {
        let mut child = Command::new(BIN)
            .args([
                "fleet",
                "--data-dir",
                &data.display().to_string(),
                "admin",
                "passwd",
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    // curl through the login form: the status and the session cookie it set, if any.
    let login = |secret: &str| -> (String, Option<String>) {
        let jar = dir.path().join("jar");
        let _ = std::fs::remove_file(&jar);
        let form = Command::new("curl")
            .args(["-sk", "-c", &jar.display().to_string(), &format!("{base}/login")])
            .output()
            .unwrap();
        let html = stdout(&form);
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no CSRF field:\n{html}"))
            .to_string();
        let out = Command::new("curl")
            .args(["-sk", "-i", "-b", &jar.display().to_string()])
            .args(["--data-urlencode", &format!("secret={secret}")])
            .args(["--data-urlencode", &format!("csrf={csrf}")])
            .arg(format!("{base}/login"))
            .output()
            .unwrap();
        let head = stdout(&out);
        let status = head.lines().next().unwrap_or_default().to_string();
        let session = head
            .lines()
            .filter_map(|l| l.strip_prefix("set-cookie: __Host-certfleet-session="))
            .map(|l| l.split(';').next().unwrap_or_default().to_string())
            .find(|v| !v.is_empty());
        (status, session)
    };

    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, "tulip anchor violet 42\n").unwrap();
    let out = passwd("", &["--password-file", &pwfile.display().to_string()]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), tail(&server.log()));
    assert!(
        stderr(&out).contains("dashboard password set"),
        "{}",
        stderr(&out)
    );
    let (status, session) = login("tulip anchor violet 42");
    assert!(status.contains(" 303"), "{status}");
    assert!(session.is_some());
    let (status, session) = login("tulip anchor violet 43");
    assert!(status.contains(" 401"), "{status}");
    assert!(session.is_none());

    // Twice on stdin (a pipe: no prompt); they must match.
    let out = passwd("first passphrase here\nother passphrase here\n", &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("differ"), "{}", stderr(&out));
    let out = passwd("short\nshort\n", &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("at least 12"), "{}", stderr(&out));
    assert!(
        login("tulip anchor violet 42").1.is_some(),
        "a refused passwd changed the password"
    );
    let out = passwd("second passphrase!\nsecond passphrase!\n", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(login("second passphrase!").1.is_some());
    assert!(login("tulip anchor violet 42").1.is_none());
    // The admin token always works.
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    assert!(login(token.trim()).1.is_some());
}

/// The agent's own served-certificate watch: when the host's nginx goes back to older files (a
/// restore from backup), the next sync notices it by a handshake, although nothing changed at
/// the server, and puts it right: the files again, reload, verify.
#[test]
fn agent_notices_its_service_serving_an_old_certificate_and_puts_it_right() {
    let http01 = free_port();
    let pebble = Pebble::builder().http_port(http01).start().unwrap();
    let tmp = world_readable_tempdir();
    let server = Server::start(&pebble, &tmp.path().join("server"), Some(http01), &[]);
    let token = server.fleet_ok(&["host", "add", "web1"]).trim().to_string();
    let web1 = Host::new(tmp.path(), "web1", &[("www", "www.example.test")]);
    let enrolled = web1.agent(&["enroll", "--state-dir", web1.state().to_str().unwrap(), &token]);
    assert!(enrolled.status.success(), "{}", stderr(&enrolled));
    server.fleet_ok(&["cert", "add", "www", "-d", "www.example.test", "--host", "web1"]);
    web1.converge(&server);
    let serial = server.show("www")["serial"].as_str().unwrap().to_string();
    assert_eq!(web1.served_serial("www.example.test"), serial);

    // Someone restores the previous files and reloads nginx: the placeholder is served again.
    for f in ["www.pem", "www.key"] {
        let path = web1.dir.join("tls").join(f);
        std::fs::copy(format!("{}.certfleet-prev", path.display()), &path).unwrap();
    }
    web1.nginx.reload().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while web1.served_serial("www.example.test") == serial {
        assert!(
            Instant::now() < deadline,
            "nginx still serves the fleet's certificate"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = web1.run_once();
    assert!(out.status.success(), "{}\n{}", stderr(&out), tail(&server.log()));
    assert_eq!(web1.served_serial("www.example.test"), serial);
    let shown = server.show("www");
    assert_eq!(
        shown["serial"].as_str(),
        Some(serial.as_str()),
        "nothing new was issued"
    );
}
