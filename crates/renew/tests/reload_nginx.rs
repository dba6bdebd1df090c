//! `deploy_reload` against a real nginx on a loopback port: a valid configuration is reloaded,
//! a broken one is not (the old one keeps serving) and the test output is shown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use certfleet_renew::{ReloadCommands, ReloadError, Service, deploy_reload};

struct Nginx {
    child: Child,
    conf: PathBuf,
    err_log: PathBuf,
    port: u16,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("nginx")
            .arg("-e")
            .arg(&self.err_log)
            .arg("-c")
            .arg(&self.conf)
            .args(["-s", "stop"])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn conf_text(dir: &Path, port: u16, body: &str, extra: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n  server {{\n    listen 127.0.0.1:{port};\n    {extra}\n    \
         location / {{ return 200 \"{body}\\n\"; }}\n  }}\n}}\n"
    )
}

fn start_nginx() -> Nginx {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let port = free_port();
    let conf = dir.join("nginx.conf");
    let err_log = dir.join("startup-error.log");
    std::fs::write(&conf, conf_text(&dir, port, "v1", "")).unwrap();
    let child = Command::new("nginx")
        .arg("-e")
        .arg(&err_log)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .spawn()
        .expect("nginx is installed");
    let n = Nginx {
        child,
        conf,
        err_log,
        port,
        dir,
        _tmp: tmp,
    };
    wait_for_body(&n, "v1", Duration::from_secs(10));
    n
}

fn get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.split("\r\n\r\n").nth(1)?.trim().to_string())
}

fn wait_for_body(n: &Nginx, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        last = get(n.port);
        if last.as_deref() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(n.dir.join("error.log")).unwrap_or_default();
    panic!(
        "nginx on port {} never served {want:?} (last {last:?}); error.log:\n{log}",
        n.port
    );
}

fn commands(n: &Nginx) -> ReloadCommands {
    let s = |p: &Path| p.display().to_string();
    ReloadCommands {
        service: "nginx".into(),
        config_test: Some(vec![
            "nginx".into(),
            "-e".into(),
            s(&n.err_log),
            "-t".into(),
            "-c".into(),
            s(&n.conf),
        ]),
        reload: vec![
            "nginx".into(),
            "-e".into(),
            s(&n.err_log),
            "-s".into(),
            "reload".into(),
            "-c".into(),
            s(&n.conf),
        ],
    }
}

#[tokio::test]
async fn valid_config_is_tested_then_reloaded_broken_one_is_not() {
    let n = start_nginx();
    let cmds = commands(&n);

    // Valid change: test passes, reload happens, new config served.
    std::fs::write(&n.conf, conf_text(&n.dir, n.port, "v2", "")).unwrap();
    let report = deploy_reload(&cmds, Duration::from_secs(30))
        .await
        .expect("valid config reloads");
    let test = report.test.expect("nginx has a config test");
    assert!(
        test.success() && test.stderr_tail.contains("test is successful"),
        "{test:?}"
    );
    assert!(report.reload.success(), "{}", report.reload);
    wait_for_body(&n, "v2", Duration::from_secs(5));

    // Broken change: not reloaded, error names the problem, old config keeps serving.
    std::fs::write(
        &n.conf,
        conf_text(&n.dir, n.port, "v3", "ssl_certificate_bogus_directive on;"),
    )
    .unwrap();
    let err = deploy_reload(&cmds, Duration::from_secs(30))
        .await
        .expect_err("broken config must not reload");
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, ReloadError::ConfigBroken { .. }), "{err:?}");
    assert!(msg.contains("NOT reloaded"), "{msg}");
    assert!(
        msg.contains("ssl_certificate_bogus_directive"),
        "test output shown: {msg}"
    );
    assert!(msg.contains("nginx -e"), "names the command: {msg}");
    // Give a (wrong) reload time to take effect, then check the old config still serves.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(n.port).as_deref(), Some("v2"));

    // Fixed again: reloads.
    std::fs::write(&n.conf, conf_text(&n.dir, n.port, "v4", "")).unwrap();
    deploy_reload(&cmds, Duration::from_secs(30)).await.unwrap();
    wait_for_body(&n, "v4", Duration::from_secs(5));
}

#[tokio::test]
async fn failed_reload_is_reported() {
    let cmds = ReloadCommands {
        service: "demo".into(),
        config_test: Some(vec!["true".into()]),
        reload: vec![
            "sh".into(),
            "-c".into(),
            "echo 'Unit demo.service not loaded.' >&2; exit 5".into(),
        ],
    };
    let err = deploy_reload(&cmds, Duration::from_secs(10)).await.unwrap_err();
    assert!(matches!(err, ReloadError::ReloadFailed { .. }));
    assert!(
        err.to_string().contains("not loaded") && err.to_string().contains("exit status 5"),
        "{err}"
    );
}

#[test]
fn services_map_to_test_and_systemctl_commands() {
    let c = ReloadCommands::for_service(&Service::from_str("nginx").unwrap());
    assert_eq!(c.config_test, Some(vec!["nginx".to_string(), "-t".into()]));
    assert_eq!(c.reload, ["systemctl", "reload", "nginx"]);
    let c = ReloadCommands::for_service(&Service::from_str("apache2").unwrap());
    assert_eq!(c.config_test.unwrap(), ["apache2ctl", "configtest"]);
    assert_eq!(c.reload, ["systemctl", "reload", "apache2"]);
    let c = ReloadCommands::for_service(&Service::from_str("haproxy").unwrap());
    assert_eq!(
        c.config_test.unwrap(),
        ["haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"]
    );
    let c = ReloadCommands::for_service(&Service::from_str("postfix").unwrap());
    assert_eq!(c.config_test.unwrap(), ["postfix", "check"]);
    let c = ReloadCommands::for_service(&Service::from_str("dovecot").unwrap());
    assert_eq!(c.config_test.unwrap(), ["doveconf", "-n"]);
    let c = ReloadCommands::for_service(&Service::from_str("my-app@1.service").unwrap());
    assert_eq!(c.config_test, None);
    assert_eq!(c.reload, ["systemctl", "reload", "my-app@1.service"]);
    for bad in ["", "-x", "a b", "x;rm -rf /", "$(id)"] {
        let e = Service::from_str(bad).unwrap_err();
        assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
    }
}
