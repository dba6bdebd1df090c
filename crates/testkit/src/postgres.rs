//! PostgreSQL for tests: a fresh, uniquely named database per test on either the server in
//! `DATABASE_URL` or, when that is unset, a throwaway cluster (`initdb` + `pg_ctl` from Debian's
//! `postgresql` package) on a free loopback port, shared by every test of one test binary.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let db = certfleet_testkit::PgDatabase::create()?; // dropped (WITH FORCE) with `db`
//! let url = db.url(); // postgres://certfleet@127.0.0.1:PORT/certfleet_test_...
//! # let _ = url; Ok(()) }
//! ```
//!
//! The shared cluster lives in a `static`, which Rust never drops, so a watchdog shell started
//! with it stops the cluster and removes its directory once the test process has exited, even
//! when that process was killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::{is_root, retry_on_port_clash, tail};

/// The superuser `initdb` creates; tests connect as it over TCP without a password (trust).
pub const PG_USER: &str = "certfleet";

/// A PostgreSQL cluster of its own in a temp dir, stopped (`pg_ctl -m immediate stop`) and
/// removed on drop.
pub struct PgCluster {
    dir: TempDir,
    bindir: PathBuf,
    port: u16,
    stopped: bool,
}

impl PgCluster {
    /// `initdb` + `pg_ctl start` on a free loopback port (as the `postgres` user when running as
    /// root, since PostgreSQL refuses to run as root). Durability is off (`fsync=off`): the
    /// cluster is thrown away.
    pub fn start() -> Result<PgCluster> {
        let bindir = server_bindir()?;
        let dir = tempfile::Builder::new().prefix("certfleet-pg-").tempdir()?;
        if is_root() {
            let user = nix::unistd::User::from_name("postgres")?.ok_or_else(|| {
                anyhow!("there is no `postgres` user to run PostgreSQL as: apt-get install postgresql")
            })?;
            std::os::unix::fs::chown(dir.path(), Some(user.uid.as_raw()), Some(user.gid.as_raw()))?;
        }
        let data = dir.path().join("data");
        let out = pg_command(&bindir, "initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                PG_USER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut cluster = PgCluster {
            dir,
            bindir,
            port: 0,
            stopped: true,
        };
        retry_on_port_clash(false, || cluster.try_start())?;
        cluster.stopped = false;
        Ok(cluster)
    }

    fn try_start(&mut self) -> Result<()> {
        self.port = free_port();
        let d = self.dir.path();
        let log = d.join("log");
        let opts = format!(
            "-k {} -h 127.0.0.1 -p {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            d.display(),
            self.port
        );
        let status = pg_command(&self.bindir, "pg_ctl")
            .arg("-D")
            .arg(d.join("data"))
            .args(["-o", &opts, "-l"])
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running pg_ctl start")?;
        if !status.success() {
            bail!("PostgreSQL did not start ({status}); log:\n{}", tail(&log));
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://certfleet@127.0.0.1:PORT/postgres`: the maintenance database.
    pub fn url(&self) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The cluster's server log (for failure messages).
    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("log"))
    }

    /// Stops the cluster and removes its directory once this process has exited (however it
    /// exits). For a cluster kept in a `static`, which is never dropped.
    fn stop_after_exit(&self) -> Result<()> {
        let pg_ctl = self.bindir.join("pg_ctl");
        let runuser = if is_root() { "runuser -u postgres -- " } else { "" };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {runuser}'{ctl}' -D '{dir}/data' -m immediate stop; rm -rf '{dir}'",
            pid = std::process::id(),
            ctl = pg_ctl.display(),
            dir = self.dir.path().display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the cluster's watchdog")?;
        Ok(())
    }

    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let _ = pg_command(&self.bindir, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The server the tests of this process create their databases on: `DATABASE_URL` when set,
/// else a cluster started at the first call and shared by every later one.
pub fn server_url() -> Result<String> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.trim().is_empty()
    {
        return Ok(url);
    }
    static SHARED: OnceLock<std::result::Result<PgCluster, String>> = OnceLock::new();
    let cluster = SHARED.get_or_init(|| {
        let cluster = PgCluster::start().map_err(|e| format!("{e:#}"))?;
        cluster.stop_after_exit().map_err(|e| format!("{e:#}"))?;
        Ok(cluster)
    });
    match cluster {
        Ok(c) => Ok(c.url()),
        Err(e) => bail!("starting the shared PostgreSQL test cluster: {e}"),
    }
}

/// A fresh database, uniquely named, on [`server_url`]'s server; dropped (with its connections:
/// `WITH (FORCE)`) on drop.
pub struct PgDatabase {
    server: String,
    name: String,
    url: String,
}

impl PgDatabase {
    pub fn create() -> Result<PgDatabase> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let server = server_url()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "certfleet_test_{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut url =
            url::Url::parse(&server).with_context(|| format!("DATABASE_URL {server:?} is not a URL"))?;
        url.set_path(&format!("/{name}"));
        psql(&server, &format!("CREATE DATABASE {name}"))?;
        Ok(PgDatabase {
            server,
            name,
            url: url.to_string(),
        })
    }

    /// `postgres://.../NAME`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Err(e) = psql(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("certfleet-testkit: dropping test database {}: {e:#}", self.name);
        }
    }
}

/// Runs one SQL command with `psql` (the server's bindir first, then `PATH`).
fn psql(url: &str, sql: &str) -> Result<()> {
    let psql = server_bindir()
        .map(|b| b.join("psql"))
        .ok()
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("psql"));
    let out = Command::new(&psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} (apt-get install postgresql-client)", psql.display()))?;
    if !out.status.success() {
        bail!(
            "psql `{sql}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A PostgreSQL server program, run as `postgres` when we are root.
fn pg_command(bindir: &Path, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bindir.join(program));
        c
    } else {
        Command::new(bindir.join(program))
    }
}

/// Where `initdb` and `pg_ctl` are: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian does not put them on `PATH`).
fn server_bindir() -> Result<PathBuf> {
    static BINDIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINDIR
        .get_or_init(|| {
            let has_server = |d: &Path| d.join("initdb").exists() && d.join("pg_ctl").exists();
            let from_pg_config = Command::new("pg_config")
                .arg("--bindir")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
                .filter(|d| has_server(d));
            from_pg_config.or_else(|| {
                let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| {
                        let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                        Some((version, e.path().join("bin")))
                    })
                    .filter(|(_, d)| has_server(d))
                    .collect();
                dirs.sort();
                dirs.pop().map(|(_, d)| d)
            })
        })
        .clone()
        .ok_or_else(|| {
            anyhow!(
                "PostgreSQL's server programs (initdb, pg_ctl) are not installed: apt-get install postgresql, \
                 or set DATABASE_URL to a server where the tests may create databases"
            )
        })
}
