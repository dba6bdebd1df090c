//! http-01 through the web server that already serves the names: certbot's `--nginx` and
//! `--apache` authenticators.
//!
//! A running server re-reads, on reload, the configuration file it was started with; nothing
//! passed to the reload command changes that (`nginx -c COPY -s reload` only finds the pid
//! file through COPY, the master re-reads its own path; `apachectl graceful` likewise). So
//! answering a challenge without a restart means the configuration the server reads must
//! say so for a few seconds. certbot edits the user's files for that and reverts them after;
//! certfleet does the least it can ([`nginx`], [`apache`] say exactly what):
//!
//! - every response lives in a file of certfleet's own, under the work dir;
//! - the user's files get one `include` line per server block that answers the name (nginx
//!   has no way to add a location to a server block from outside it, and a second server
//!   block for the same name and port is ignored as a "conflicting server name" or takes the
//!   whole site over), inserted on a line of its own; no other byte changes;
//! - the original bytes are journaled before the first write ([`journal`]) and written back
//!   in place after validation, on failure, on Ctrl-C/SIGTERM, on drop, and by the next run
//!   if this one was killed: afterwards every file is byte-identical;
//! - the configuration is tested before every reload; a failing test restores the files at
//!   once, so the running server never loads a configuration we broke;
//! - after the reload, each response is fetched from the server itself (with the name as
//!   Host) before the CA is asked to validate.
//!
//! Renewals of several lineages on one server take turns (one challenge configuration in
//! place at a time).

pub mod apache;
pub mod nginx;

mod glob;
mod journal;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certfleet_core::{ChallengeType, Identifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{ChallengeTask, Solver, SolverError};
use journal::Journal;

/// Where the server is asked for each response before the CA is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probe {
    pub addr: SocketAddr,
    pub host: String,
    pub token: String,
    pub expect: String,
}

/// The temporary configuration for one round of challenges.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Files of our own: path -> content.
    pub own: Vec<(PathBuf, String)>,
    /// The user's files: path -> (byte offset, inserted text).
    pub edits: BTreeMap<PathBuf, Vec<(usize, String)>>,
    pub probes: Vec<Probe>,
}

impl Plan {
    pub(crate) fn insert(&mut self, file: &Path, offset: usize, text: String) {
        let list = self.edits.entry(file.to_path_buf()).or_default();
        if !list.iter().any(|(o, t)| *o == offset && *t == text) {
            list.push((offset, text));
        }
    }
}

/// What differs between nginx and Apache: reading the configuration.
pub(crate) trait Server: Send + Sync {
    /// Read the configuration and plan the temporary one; `own_dir` holds our files.
    fn plan(&self, tasks: &[ChallengeTask], own_dir: &Path) -> Result<Plan, SolverError>;
}

/// Which server, and how to test and reload it.
#[derive(Debug, Clone)]
pub(crate) struct ServerInfo {
    /// `nginx` or `apache`, for messages.
    pub kind: &'static str,
    /// The server root (`nginx_server_root`, `apache_server_root`).
    pub root: PathBuf,
    pub test: Vec<String>,
    pub reload: Vec<String>,
}

/// One per server root in this process: renewals on one server take turns.
static TURNS: Mutex<BTreeMap<PathBuf, Arc<tokio::sync::Mutex<()>>>> = Mutex::new(BTreeMap::new());

struct Active {
    journal: Journal,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

/// The `nginx` / `apache` authenticator.
pub struct WebServerSolver {
    server: Box<dyn Server>,
    info: ServerInfo,
    own_dir: PathBuf,
    /// How long to wait for the server to answer after a reload.
    probe_timeout: Duration,
    active: tokio::sync::Mutex<Option<Active>>,
}

impl std::fmt::Debug for WebServerSolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WebServerSolver({} at {})",
            self.info.kind,
            &self.info.root.display()
        )
    }
}

impl WebServerSolver {
    fn new(server: Box<dyn Server>, info: ServerInfo, work_dir: &Path) -> Self {
        let root = info.root.display().to_string().replace('/', "_");
        let own_dir = work_dir
            .join("certfleet-http01")
            .join(format!("{}{root}", info.kind));
        WebServerSolver {
            server,
            info,
            own_dir,
            probe_timeout: Duration::from_secs(10),
            active: tokio::sync::Mutex::new(None),
        }
    }

    /// The directory holding certfleet's files for this server (journal, snippets).
    pub fn own_dir(&self) -> &Path {
        &self.own_dir
    }

    fn turn(&self) -> Arc<tokio::sync::Mutex<()>> {
        TURNS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(self.info.root.clone())
            .or_default()
            .clone()
    }

    async fn command(&self, cmd: &[String], what: &str) -> Result<(), String> {
        let out = tokio::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run `{}` to {what}: {e}", cmd.join(" ")))?;
        if out.status.success() {
            tracing::debug!("{}: `{}` ok", self.info.kind, cmd.join(" "));
            return Ok(());
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        Err(format!(
            "`{}` ({what}) failed ({}): {}",
            cmd.join(" "),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }

    /// Test, then reload.
    async fn test_and_reload(&self) -> Result<(), String> {
        self.command(&self.info.test, "test the configuration").await?;
        self.command(&self.info.reload, "reload").await
    }

    /// Undo a journal (ours or a killed run's) and reload if a file changed.
    async fn undo(&self, restored: journal::Restored) -> Result<(), SolverError> {
        let mut problems = restored.problems;
        if restored.changed
            && let Err(e) = self.test_and_reload().await
        {
            problems.push(format!(
                "reloading {} after restoring its files: {e}",
                self.info.kind
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SolverError::Other(problems.join("; ")))
        }
    }

    async fn recover(&self) -> Result<(), SolverError> {
        match Journal::recover(&self.own_dir)? {
            Some(r) => self.undo(r).await,
            None => Ok(()),
        }
    }

    /// Ask the server for each response until it answers, on fresh connections, without a
    /// miss for [`SETTLED`]: after a reload the old workers (nginx) or children (Apache) keep
    /// accepting connections for a moment with the old configuration, and the CA must not
    /// reach one of them. (certbot sleeps `nginx_sleep_seconds`, 1 s, instead.)
    async fn wait_served(&self, probes: &[Probe]) {
        let deadline = Instant::now() + self.probe_timeout;
        let mut good_since: Option<Instant> = None;
        loop {
            let mut miss = None;
            for p in probes {
                match fetch(p).await {
                    Ok(body) if body.trim() == p.expect => {}
                    Ok(body) => {
                        miss = Some((
                            p,
                            format!("answered {:?}", body.chars().take(80).collect::<String>()),
                        ))
                    }
                    Err(e) => miss = Some((p, e)),
                }
            }
            match (miss, good_since) {
                (None, Some(t)) if t.elapsed() >= SETTLED => return,
                (None, None) => good_since = Some(Instant::now()),
                (None, Some(_)) => {}
                (Some(_), _) if Instant::now() <= deadline => good_since = None,
                (Some((p, last)), _) => {
                    tracing::warn!(
                        "{} at {} does not answer http://{}/.well-known/acme-challenge/{} yet ({last}); asking the CA anyway",
                        self.info.kind,
                        p.addr,
                        p.host,
                        p.token
                    );
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// How long every response must have been answered before the CA is asked.
const SETTLED: Duration = Duration::from_millis(400);

/// GET the response with the name as Host; the body when the status is 200.
async fn fetch(p: &Probe) -> Result<String, String> {
    let once = async {
        let mut s = tokio::net::TcpStream::connect(p.addr)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        let req = format!(
            "GET /.well-known/acme-challenge/{} HTTP/1.0\r\nHost: {}\r\nUser-Agent: certfleet-self-check\r\nConnection: close\r\n\r\n",
            p.token, p.host
        );
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.take(64 * 1024)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).unwrap_or_default();
        if status == "200" {
            Ok(body.to_string())
        } else {
            Err(format!("status {status}"))
        }
    };
    tokio::time::timeout(Duration::from_secs(2), once)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

fn wildcard_refused(id: &Identifier, kind: &str) -> SolverError {
    SolverError::Setup(format!(
        "{id} is a wildcard: wildcards need dns-01, which --{kind} cannot answer; use --dns-rfc2136, \
         --dns-cloudflare or --manual --preferred-challenges dns"
    ))
}

#[async_trait::async_trait]
impl Solver for WebServerSolver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Http01
    }

    /// The configuration must read, name a server block for every name, and pass the
    /// server's own test before anything is changed.
    async fn preflight(&self, identifiers: &[Identifier]) -> Result<(), SolverError> {
        let kind = self.info.kind;
        if let Some(id) = identifiers.iter().find(|i| i.is_wildcard()) {
            return Err(wildcard_refused(id, kind));
        }
        {
            let turn = self.turn();
            let _t = turn.lock().await;
            self.recover().await?;
        }
        let probe: Vec<ChallengeTask> = identifiers
            .iter()
            .map(|id| ChallengeTask {
                identifier: id.clone(),
                token: "certfleet-preflight".into(),
                key_authorization: "x".into(),
            })
            .collect();
        self.server.plan(&probe, &self.own_dir)?;
        self.command(&self.info.test, "test the configuration")
            .await
            .map_err(|e| {
                SolverError::Setup(format!(
                    "the {kind} configuration fails its own test before certfleet changed anything; fix it first: {e}"
                ))
            })
    }

    async fn present(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError> {
        let kind = self.info.kind;
        let turn = self.turn().lock_owned().await;
        self.recover().await?;
        let plan = self.server.plan(tasks, &self.own_dir)?;
        let mut journal = Journal::new(&self.own_dir);
        let applied = (|| {
            for (path, text) in &plan.own {
                journal.write_own(path, text.as_bytes())?;
            }
            for (path, inserts) in &plan.edits {
                journal.edit(path, inserts)?;
            }
            Ok::<_, SolverError>(())
        })();
        if let Err(e) = applied {
            let _ = self.undo(journal.restore()).await;
            return Err(e);
        }
        // From here on an interruption (the future dropped at any await) leaves the journal
        // where cleanup_all and Drop find it.
        *self.active.lock().await = Some(Active { journal, _turn: turn });
        if let Err(e) = self.command(&self.info.test, "test the configuration").await {
            // Nothing was reloaded: putting the files back is all there is to undo.
            let r = match self.active.lock().await.take() {
                Some(a) => a.journal.restore(),
                None => journal::Restored::default(),
            };
            return Err(SolverError::Setup(format!(
                "{kind} rejects the configuration with certfleet's temporary challenge lines, so it was not \
                 reloaded and your files are restored{}: {e}",
                if r.problems.is_empty() {
                    String::new()
                } else {
                    format!(" (except: {})", r.problems.join("; "))
                }
            )));
        }
        if let Err(e) = self.command(&self.info.reload, "reload").await {
            let _ = self.cleanup_all().await;
            return Err(SolverError::Other(format!("reloading {kind}: {e}")));
        }
        self.wait_served(&plan.probes).await;
        Ok(())
    }

    async fn cleanup(&self, _tasks: &[ChallengeTask]) -> Result<(), SolverError> {
        self.cleanup_all().await
    }

    async fn cleanup_all(&self) -> Result<(), SolverError> {
        let active = self.active.lock().await.take();
        match active {
            Some(a) => self.undo(a.journal.restore()).await,
            None => Ok(()),
        }
    }
}

impl Drop for WebServerSolver {
    /// Last resort (a panic, a future dropped between present and cleanup): restore the
    /// files and reload synchronously.
    fn drop(&mut self) {
        let Some(a) = self.active.get_mut().take() else {
            return;
        };
        let r = a.journal.restore();
        if r.changed {
            for cmd in [&self.info.test, &self.info.reload] {
                let ok = std::process::Command::new(&cmd[0])
                    .args(&cmd[1..])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .is_ok_and(|o| o.status.success());
                if !ok {
                    break;
                }
            }
        }
    }
}

/// One configuration file's text, `depth` includes down (a cycle of includes stops at 32).
pub(crate) fn read_config(kind: &str, path: &Path, depth: usize) -> Result<String, SolverError> {
    if depth > 32 {
        return Err(SolverError::Setup(format!(
            "{kind} configuration: includes nested too deeply at {}",
            path.display()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| SolverError::Io {
        context: format!("reading the {kind} configuration {}", path.display()),
        source: e,
    })
}

/// A server name pattern (nginx `server_name`, Apache `ServerName`/`ServerAlias`) against a
/// host: 0 exact, 1 leading wildcard, 2 trailing wildcard; None no match (regular
/// expressions are not evaluated).
pub(crate) fn name_rank(pattern: &str, host: &str) -> Option<u8> {
    let p = pattern.trim_end_matches('.').to_ascii_lowercase();
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if p.starts_with('~') {
        return None;
    }
    if p == h {
        return Some(0);
    }
    if let Some(rest) = p.strip_prefix("*.") {
        return h.ends_with(&format!(".{rest}")).then_some(1);
    }
    if let Some(rest) = p.strip_prefix('.') {
        return (h == rest || h.ends_with(&format!(".{rest}"))).then_some(1);
    }
    if let Some(rest) = p.strip_suffix(".*") {
        return h
            .strip_prefix(&format!("{rest}."))
            .filter(|s| !s.is_empty())
            .map(|_| 2);
    }
    if p.contains(['*', '?']) {
        return glob::matches(&p, &h).then_some(1);
    }
    None
}

/// The address to ask for a response, from a listen address (`*`, a host name or none:
/// loopback).
pub(crate) fn probe_addr(host: Option<&str>, port: u16) -> SocketAddr {
    let ip = match host.map(|h| h.trim_start_matches('[').trim_end_matches(']')) {
        Some("::") => "::1".parse().expect("literal"),
        Some(h) => h.parse().unwrap_or_else(|_| [127, 0, 0, 1].into()),
        None => [127, 0, 0, 1].into(),
    };
    let ip = if ip == std::net::IpAddr::from([0, 0, 0, 0]) {
        [127, 0, 0, 1].into()
    } else {
        ip
    };
    SocketAddr::new(ip, port)
}

/// A path as a quoted configuration argument (both servers take `"..."` with `\"`).
pub(crate) fn quoted(p: &Path) -> String {
    format!(
        "\"{}\"",
        p.display().to_string().replace('\\', "\\\\").replace('"', "\\\"")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert_eq!(name_rank("a.example.test", "A.example.test."), Some(0));
        assert_eq!(name_rank("*.example.test", "a.example.test"), Some(1));
        assert_eq!(name_rank("*.example.test", "example.test"), None);
        assert_eq!(name_rank(".example.test", "example.test"), Some(1));
        assert_eq!(name_rank("www.example.*", "www.example.org"), Some(2));
        assert_eq!(name_rank("~^www\\d+", "www1"), None);
        assert_eq!(name_rank("_", "a.example.test"), None);
    }

    #[test]
    fn probe_addresses() {
        assert_eq!(probe_addr(None, 80).to_string(), "127.0.0.1:80");
        assert_eq!(probe_addr(Some("*"), 80).to_string(), "127.0.0.1:80");
        assert_eq!(probe_addr(Some("127.0.0.2"), 8080).to_string(), "127.0.0.2:8080");
        assert_eq!(probe_addr(Some("[::]"), 80).to_string(), "[::1]:80");
        assert_eq!(probe_addr(Some("localhost"), 80).to_string(), "127.0.0.1:80");
    }
}
