//! A real nginx or Apache configured the way a user's would be: a server root directory with
//! the main configuration and a `sites/` directory of site files the test writes (what
//! `certbot --nginx` / `--apache` read and what certfleet's nginx/apache authenticators edit
//! temporarily), on free loopback ports. Runtime files (pid, logs, temp dirs) live outside
//! the server root, so [`snapshot`] of the root proves it byte-identical before and after.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::nginx::fetch_leaf;
use crate::process::{Proc, tail};
use crate::tls::write;

/// Every file under `dir` (recursively, symlinks not followed) with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&p, out),
                Ok(_) => {
                    out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
                }
                Err(_) => {}
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// A 0755 temp dir (server workers run as another user and must traverse it).
fn open_tempdir(prefix: &str) -> Result<TempDir> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Waits until `port` serves `expected` (DER) as its leaf for `sni`, stably for 250 ms (old
/// workers keep the old certificate for a while after a reload).
pub fn wait_for_leaf(port: u16, sni: &str, expected: &[u8]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut since: Option<Instant> = None;
    loop {
        let ok = fetch_leaf(loopback(port), sni).is_ok_and(|l| l == expected);
        match (ok, since) {
            (true, None) => since = Some(Instant::now()),
            (true, Some(s)) if s.elapsed() >= Duration::from_millis(250) => return Ok(()),
            (false, _) => since = None,
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("port {port} did not stably serve the expected certificate for {sni} within 15 s");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A running nginx or Apache with a user's server root; stopped, and its files removed, on drop.
pub struct Sites {
    proc: Option<Proc>,
    root: PathBuf,
    run: PathBuf,
    /// Reloads the server.
    reload: Vec<String>,
    _dir: TempDir,
}

impl Sites {
    /// nginx run from `ROOT/nginx.conf`, whose `http {}` includes `ROOT/sites/*.conf`: writes
    /// `sites` (file name, content) and starts it; waits for `wait_ports` on 127.0.0.1.
    pub fn nginx(sites: &[(&str, String)], wait_ports: &[u16]) -> Result<Sites> {
        let dir = open_tempdir("certfleet-nginx-sites-")?;
        let root = dir.path().join("conf");
        let run = dir.path().join("run");
        std::fs::create_dir_all(root.join("sites"))?;
        std::fs::create_dir_all(run.join("tmp"))?;
        let mut c = String::from("daemon off;\nmaster_process on;\nworker_processes 1;\nuser root root;\n");
        c += &format!(
            "pid {0}/nginx.pid;\nerror_log {0}/error.log info;\n",
            run.display()
        );
        c += "events { worker_connections 64; }\nhttp {\n";
        c += &format!(
            "    access_log {}/access.log;\n    default_type text/plain;\n",
            run.display()
        );
        for m in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            c += &format!("    {m}_temp_path {}/tmp/{m};\n", run.display());
        }
        c += &format!("    include {}/sites/*.conf;\n}}\n", root.display());
        write(&root.join("nginx.conf"), c.as_bytes())?;
        for (name, text) in sites {
            write(&root.join("sites").join(name), text.as_bytes())?;
        }
        let err = run.join("error.log");
        let mut cmd = Command::new("nginx");
        cmd.arg("-e").arg(&err).arg("-c").arg(root.join("nginx.conf"));
        let reload = vec![
            "nginx".to_string(),
            "-c".into(),
            root.join("nginx.conf").display().to_string(),
            "-s".into(),
            "reload".into(),
        ];
        Self::launch("nginx", cmd, dir, root, run, reload, "nginx.pid", wait_ports)
    }

    /// Apache run from `ROOT/apache2.conf` (Debian's layout: `envvars`, `sites/*.conf`), with a
    /// control script `ROOT/apache2ctl` (Debian's apache2ctl with `APACHE_CONFDIR=ROOT`) for
    /// certbot's and certfleet's `apache_ctl`; listening on `listen` ports of 127.0.0.1.
    pub fn apache(listen: &[u16], sites: &[(&str, String)]) -> Result<Sites> {
        let dir = open_tempdir("certfleet-apache-sites-")?;
        let root = dir.path().join("conf");
        let run = dir.path().join("run");
        std::fs::create_dir_all(root.join("sites"))?;
        std::fs::create_dir_all(&run)?;
        let r = root.display();
        let rn = run.display();
        let modules = "/usr/lib/apache2/modules";
        let mut c = format!(
            "ServerRoot \"{r}\"\nPidFile {rn}/apache2.pid\nDefaultRuntimeDir {rn}\nMutex file:{rn} default\n"
        );
        c += &format!("ErrorLog {rn}/error.log\nLogLevel warn\nServerName localhost\n");
        c += "User www-data\nGroup www-data\n";
        for m in [
            "mpm_event",
            "authz_core",
            "authz_host",
            "alias",
            "rewrite",
            "ssl",
            "socache_shmcb",
        ] {
            c += &format!("LoadModule {m}_module {modules}/mod_{m}.so\n");
        }
        c += &format!("SSLSessionCache shmcb:{rn}/ssl_scache(512000)\n");
        for p in listen {
            c += &format!("Listen 127.0.0.1:{p}\n");
        }
        c += "<Directory />\n    Require all denied\n</Directory>\n";
        c += &format!("IncludeOptional {r}/sites/*.conf\n");
        write(&root.join("apache2.conf"), c.as_bytes())?;
        let envvars = format!(
            "export APACHE_RUN_USER=www-data\nexport APACHE_RUN_GROUP=www-data\nexport APACHE_PID_FILE={rn}/apache2.pid\n\
             export APACHE_RUN_DIR={rn}\nexport APACHE_LOCK_DIR={rn}\nexport APACHE_LOG_DIR={rn}\nexport LANG=C\n"
        );
        write(&root.join("envvars"), envvars.as_bytes())?;
        let ctl = root.join("apache2ctl");
        write(
            &ctl,
            format!("#!/bin/sh\nAPACHE_CONFDIR='{r}' exec /usr/sbin/apache2ctl \"$@\"\n").as_bytes(),
        )?;
        std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o755))?;
        for (name, text) in sites {
            write(&root.join("sites").join(name), text.as_bytes())?;
        }
        let mut cmd = Command::new("apache2");
        cmd.arg("-d")
            .arg(&root)
            .arg("-f")
            .arg(root.join("apache2.conf"))
            .arg("-DFOREGROUND")
            .env("APACHE_CONFDIR", &root);
        let reload = vec![ctl.display().to_string(), "graceful".into()];
        Self::launch("apache2", cmd, dir, root, run, reload, "apache2.pid", listen)
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        name: &str,
        mut cmd: Command,
        dir: TempDir,
        root: PathBuf,
        run: PathBuf,
        reload: Vec<String>,
        pid: &str,
        ports: &[u16],
    ) -> Result<Sites> {
        let mut proc = Proc::spawn(name, &mut cmd, &run.join(format!("{name}.out")))
            .with_context(|| format!("starting {name} (Debian package nginx / apache2)"))?
            .with_extra_log(&run.join("error.log"))
            .graceful();
        proc.wait_for_file(&run.join(pid))?;
        for p in ports {
            proc.wait_for_port(loopback(*p))?;
        }
        Ok(Sites {
            proc: Some(proc),
            root,
            run,
            reload,
            _dir: dir,
        })
    }

    /// `nginx_server_root` / `apache_server_root`.
    pub fn server_root(&self) -> &Path {
        &self.root
    }

    /// `apache_ctl`: the control script of an Apache instance.
    pub fn ctl(&self) -> PathBuf {
        self.root.join("apache2ctl")
    }

    /// A directory outside the server root (document roots and such).
    pub fn scratch(&self) -> &Path {
        &self.run
    }

    /// `nginx -s reload` / `apache2ctl graceful` for this instance.
    pub fn reload(&self) -> Result<()> {
        let out = Command::new(&self.reload[0]).args(&self.reload[1..]).output()?;
        if !out.status.success() {
            bail!(
                "{} failed: {}{}\n{}",
                self.reload.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.error_log()
            );
        }
        Ok(())
    }

    pub fn error_log(&self) -> String {
        tail(&self.run.join("error.log"))
    }
}

impl Drop for Sites {
    fn drop(&mut self) {
        if let Some(p) = &mut self.proc {
            p.stop();
        }
    }
}
