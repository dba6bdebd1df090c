//! certbot-compatible hooks.
//!
//! As certbot does for `renew`: executables in `<config_dir>/renewal-hooks/{pre,post,deploy}`
//! run in alphabetical order before the command-line (or renewal-conf) hook; an identical
//! command runs once; pre and post hooks run once per run and only if some renewal was
//! attempted; deploy hooks run once per renewed lineage with `RENEWED_LINEAGE` (the live dir)
//! and `RENEWED_DOMAINS`; post hooks also get `FAILED_DOMAINS`. Beyond certbot, every hook has
//! a timeout that kills its whole process group, and a failure is a [`HookResult`] to report,
//! never a panic or an abort of the run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// certbot runs hooks without a timeout; a hung hook would stall every later renewal.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// After SIGTERM to a timed-out hook's process group, how long before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// How much of a hook's stdout/stderr is kept for the report.
pub const TAIL_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookKind {
    Pre,
    Post,
    Deploy,
    ConfigTest,
    Reload,
}

impl HookKind {
    /// certbot's user-facing name ("pre-hook", ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            HookKind::Pre => "pre-hook",
            HookKind::Post => "post-hook",
            HookKind::Deploy => "deploy-hook",
            HookKind::ConfigTest => "config test",
            HookKind::Reload => "reload",
        }
    }

    /// Sub-directory of `renewal-hooks/`.
    pub fn dir_name(&self) -> Option<&'static str> {
        match self {
            HookKind::Pre => Some("pre"),
            HookKind::Post => Some("post"),
            HookKind::Deploy => Some("deploy"),
            _ => None,
        }
    }
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HookCommand {
    /// A command line given by the user, run with `sh -c`.
    Shell(String),
    /// An executable from a hooks directory, run directly (so spaces in its path are fine).
    Exec(PathBuf),
    /// A program and its arguments, no shell (built-in reload commands).
    Argv(Vec<String>),
}

impl HookCommand {
    /// The dedup key and display form; certbot compares a directory hook's path with the
    /// command-line hook's text, so `--pre-hook /etc/letsencrypt/renewal-hooks/pre/x` runs once.
    pub fn text(&self) -> String {
        match self {
            HookCommand::Shell(s) => s.clone(),
            HookCommand::Exec(p) => p.display().to_string(),
            HookCommand::Argv(a) => a.join(" "),
        }
    }

    fn command(&self) -> Option<Command> {
        match self {
            HookCommand::Shell(s) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(s);
                Some(c)
            }
            HookCommand::Exec(p) => Some(Command::new(p)),
            HookCommand::Argv(a) => {
                let (prog, args) = a.split_first()?;
                let mut c = Command::new(prog);
                c.args(args);
                Some(c)
            }
        }
    }
}

impl std::fmt::Display for HookCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookStatus {
    Exited(i32),
    /// Killed by a signal it did not ask for (not our timeout).
    Signaled(i32),
    /// Ran past the timeout; its process group was killed.
    TimedOut,
    /// Could not be started (not found, not executable...).
    SpawnFailed(String),
}

/// The outcome of one hook run.
#[derive(Debug, Clone)]
pub struct HookResult {
    pub kind: HookKind,
    pub command: HookCommand,
    pub status: HookStatus,
    /// The last [`TAIL_BYTES`] of stdout / stderr (lossy UTF-8).
    pub stdout_tail: String,
    pub stderr_tail: String,
    pub duration: Duration,
}

impl HookResult {
    pub fn success(&self) -> bool {
        self.status == HookStatus::Exited(0)
    }

    /// stderr then stdout tail, trimmed: what to show a person when it failed.
    pub fn output(&self) -> String {
        let mut out = self.stderr_tail.trim().to_string();
        let so = self.stdout_tail.trim();
        if !so.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(so);
        }
        out
    }
}

impl std::fmt::Display for HookResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.duration.as_secs_f64();
        write!(f, "{} `{}` ", self.kind, self.command)?;
        match &self.status {
            HookStatus::Exited(0) => write!(f, "succeeded in {secs:.1}s")?,
            HookStatus::Exited(c) => write!(f, "failed with exit status {c} after {secs:.1}s")?,
            HookStatus::Signaled(s) => write!(f, "was killed by signal {s} after {secs:.1}s")?,
            HookStatus::TimedOut => write!(f, "timed out after {secs:.1}s and was killed")?,
            HookStatus::SpawnFailed(e) => write!(f, "could not be started: {e}")?,
        }
        let out = self.output();
        if !self.success() && !out.is_empty() {
            write!(f, ": {out}")?;
        }
        Ok(())
    }
}

/// Run one command with extra environment, bounded by `timeout`. Never panics; every problem
/// is in the result.
pub async fn run_hook(
    kind: HookKind,
    command: &HookCommand,
    env: &[(&str, String)],
    timeout: Duration,
) -> HookResult {
    let started = Instant::now();
    let result = |status, stdout_tail, stderr_tail| HookResult {
        kind,
        command: command.clone(),
        status,
        stdout_tail,
        stderr_tail,
        duration: started.elapsed(),
    };
    let Some(mut cmd) = command.command() else {
        return result(
            HookStatus::SpawnFailed("empty command".into()),
            String::new(),
            String::new(),
        );
    };
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills the shell and everything it started.
        .process_group(0)
        .kill_on_drop(true);
    tracing::info!(hook = kind.as_str(), command = %command, "running hook");
    // ETXTBSY: the executable was just written and another thread's fork still holds the
    // write descriptor for a moment (or a deploy tool is replacing the hook): retry briefly.
    let mut spawned = cmd.spawn();
    for wait_ms in [10, 50, 200, 500] {
        match &spawned {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => {
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                spawned = cmd.spawn();
            }
            _ => break,
        }
    }
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return result(
                HookStatus::SpawnFailed(e.to_string()),
                String::new(),
                String::new(),
            );
        }
    };
    let pgid = child.id().map(|id| nix::unistd::Pid::from_raw(id as i32));
    let out_buf = Arc::new(Mutex::new(Vec::new()));
    let err_buf = Arc::new(Mutex::new(Vec::new()));
    let readers = [
        child
            .stdout
            .take()
            .map(|r| tokio::spawn(read_tail(r, out_buf.clone()))),
        child
            .stderr
            .take()
            .map(|r| tokio::spawn(read_tail(r, err_buf.clone()))),
    ];

    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(st)) => exit_status(st),
        Ok(Err(e)) => HookStatus::SpawnFailed(format!("waiting for it failed: {e}")),
        Err(_) => {
            kill_group(pgid, nix::sys::signal::Signal::SIGTERM);
            if tokio::time::timeout(KILL_GRACE, child.wait()).await.is_err() {
                kill_group(pgid, nix::sys::signal::Signal::SIGKILL);
            }
            // Whatever else is left in the group (a `sleep` the shell started) goes too.
            kill_group(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait().await;
            HookStatus::TimedOut
        }
    };
    // A background process the hook left running may hold the pipes open: give the readers a
    // moment to reach EOF, then report what we have.
    for r in readers.into_iter().flatten() {
        let abort = r.abort_handle();
        if tokio::time::timeout(Duration::from_millis(500), r).await.is_err() {
            abort.abort();
        }
    }
    let tail = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
    let res = result(status, tail(&out_buf), tail(&err_buf));
    if res.success() {
        tracing::info!("{res}");
    } else {
        tracing::warn!("{res}");
    }
    res
}

async fn read_tail(mut r: impl tokio::io::AsyncRead + Unpin, buf: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = [0u8; 4096];
    while let Ok(n) = r.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let mut b = buf.lock().unwrap();
        b.extend_from_slice(&chunk[..n]);
        if b.len() > TAIL_BYTES {
            let cut = b.len() - TAIL_BYTES;
            b.drain(..cut);
        }
    }
}

fn exit_status(st: std::process::ExitStatus) -> HookStatus {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => HookStatus::Exited(c),
        (None, Some(s)) => HookStatus::Signaled(s),
        (None, None) => HookStatus::Exited(-1),
    }
}

fn kill_group(pgid: Option<nix::unistd::Pid>, sig: nix::sys::signal::Signal) {
    if let Some(p) = pgid {
        let _ = nix::sys::signal::killpg(p, sig);
    }
}

/// Hook settings for a renew run.
#[derive(Debug, Clone)]
pub struct HookConfig {
    /// `--pre-hook`, `--post-hook`, `--deploy-hook` from the command line.
    pub pre_hook: Option<String>,
    pub post_hook: Option<String>,
    pub deploy_hook: Option<String>,
    /// `<config_dir>/renewal-hooks`; `None` for certbot's `--no-directory-hooks`.
    pub hooks_dir: Option<PathBuf>,
    pub timeout: Duration,
    /// `--dry-run`: deploy hooks are skipped, as certbot does (pre/post hooks still run).
    pub dry_run: bool,
}

impl HookConfig {
    pub fn new(config_dir: &Path) -> Self {
        Self {
            pre_hook: None,
            post_hook: None,
            deploy_hook: None,
            hooks_dir: Some(config_dir.join("renewal-hooks")),
            timeout: DEFAULT_HOOK_TIMEOUT,
            dry_run: false,
        }
    }
}

/// The hooks a lineage's renewal conf saved (`pre_hook`, `post_hook`, `renew_hook`);
/// a command-line hook of the same kind takes precedence, as in certbot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineageHooks {
    pub pre_hook: Option<String>,
    pub post_hook: Option<String>,
    pub deploy_hook: Option<String>,
}

/// Runs a renew run's hooks and remembers what it ran. Call [`before_attempt`] before each
/// lineage renewal attempt, [`renewed`] or [`failed`] after it, and [`finish`] at the end.
///
/// [`before_attempt`]: HookRunner::before_attempt
/// [`renewed`]: HookRunner::renewed
/// [`failed`]: HookRunner::failed
/// [`finish`]: HookRunner::finish
#[derive(Debug)]
pub struct HookRunner {
    cfg: HookConfig,
    dir_hooks: [Option<Vec<PathBuf>>; 3],
    executed_pre: HashSet<String>,
    post_queue: Vec<HookCommand>,
    attempted: bool,
    finished: bool,
    renewed_domains: Vec<String>,
    failed_domains: Vec<String>,
    warnings: Vec<String>,
    results: Vec<HookResult>,
}

impl HookRunner {
    pub fn new(cfg: HookConfig) -> Self {
        Self {
            cfg,
            dir_hooks: [None, None, None],
            executed_pre: HashSet::new(),
            post_queue: Vec::new(),
            attempted: false,
            finished: false,
            renewed_domains: Vec::new(),
            failed_domains: Vec::new(),
            warnings: Vec::new(),
            results: Vec::new(),
        }
    }

    /// A renewal of a lineage is about to be attempted: run the pre hooks not yet run in this
    /// run (directory hooks first), and queue its post hooks for [`finish`](Self::finish).
    pub async fn before_attempt(&mut self, lineage: &LineageHooks) -> Vec<HookResult> {
        self.attempted = true;
        let mut pre = self.dir_hook_commands(HookKind::Pre);
        pre.extend(
            self.cfg
                .pre_hook
                .clone()
                .or_else(|| lineage.pre_hook.clone())
                .map(HookCommand::Shell),
        );
        let mut ran = Vec::new();
        for cmd in pre {
            if self.executed_pre.insert(cmd.text()) {
                ran.push(self.run(HookKind::Pre, &cmd, &[]).await);
            } else {
                tracing::debug!("pre-hook already run, skipping: {cmd}");
            }
        }
        let mut post = self.dir_hook_commands(HookKind::Post);
        post.extend(
            self.cfg
                .post_hook
                .clone()
                .or_else(|| lineage.post_hook.clone())
                .map(HookCommand::Shell),
        );
        for cmd in post {
            if !self.post_queue.iter().any(|c| c.text() == cmd.text()) {
                self.post_queue.push(cmd);
            }
        }
        ran
    }

    /// A lineage was renewed and installed: run the deploy hooks (directory hooks, then the
    /// command-line or renewal-conf one unless it is one of those) with `RENEWED_LINEAGE` and
    /// `RENEWED_DOMAINS`.
    pub async fn renewed(
        &mut self,
        live_dir: &Path,
        domains: &[String],
        lineage: &LineageHooks,
    ) -> Vec<HookResult> {
        self.attempted = true;
        self.renewed_domains.extend(domains.iter().cloned());
        let mut cmds = self.dir_hook_commands(HookKind::Deploy);
        let cli = self
            .cfg
            .deploy_hook
            .clone()
            .or_else(|| lineage.deploy_hook.clone())
            .map(HookCommand::Shell);
        if let Some(c) = cli {
            if cmds.iter().any(|d| d.text() == c.text()) {
                tracing::info!("skipping deploy-hook '{c}' as it was already run");
            } else {
                cmds.push(c);
            }
        }
        if self.cfg.dry_run {
            for c in cmds {
                tracing::info!("dry run: skipping deploy hook command: {c}");
            }
            return Vec::new();
        }
        let env = [
            ("RENEWED_LINEAGE", live_dir.display().to_string()),
            ("RENEWED_DOMAINS", domains.join(" ")),
        ];
        let mut ran = Vec::new();
        for c in cmds {
            ran.push(self.run(HookKind::Deploy, &c, &env).await);
        }
        ran
    }

    /// A lineage's renewal failed; its domains go into `FAILED_DOMAINS` for the post hooks.
    pub fn failed(&mut self, domains: &[String]) {
        self.attempted = true;
        self.failed_domains.extend(domains.iter().cloned());
    }

    /// Whether any renewal was attempted (so pre hooks ran and post hooks will).
    pub fn attempted(&self) -> bool {
        self.attempted
    }

    /// End of the run: the queued post hooks, in order, once each, only if some renewal was
    /// attempted, with `RENEWED_DOMAINS` and `FAILED_DOMAINS`. A second call does nothing.
    pub async fn finish(&mut self) -> Vec<HookResult> {
        if self.finished || !self.attempted {
            self.finished = true;
            return Vec::new();
        }
        self.finished = true;
        // Also the command-line and directory post hooks, in case no `before_attempt` queued them.
        let mut post = self.dir_hook_commands(HookKind::Post);
        post.extend(self.cfg.post_hook.clone().map(HookCommand::Shell));
        for cmd in post {
            if !self.post_queue.iter().any(|c| c.text() == cmd.text()) {
                self.post_queue.push(cmd);
            }
        }
        let env = [
            ("RENEWED_DOMAINS", self.renewed_domains.join(" ")),
            ("FAILED_DOMAINS", self.failed_domains.join(" ")),
        ];
        let mut ran = Vec::new();
        for c in std::mem::take(&mut self.post_queue) {
            ran.push(self.run(HookKind::Post, &c, &env).await);
        }
        ran
    }

    /// Every hook result of this run, in order.
    pub fn results(&self) -> &[HookResult] {
        &self.results
    }

    /// The hooks that failed, for the run's summary.
    pub fn failures(&self) -> impl Iterator<Item = &HookResult> {
        self.results.iter().filter(|r| !r.success())
    }

    /// Things the user should fix, e.g. non-executable files in a hooks directory.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    async fn run(&mut self, kind: HookKind, cmd: &HookCommand, env: &[(&str, String)]) -> HookResult {
        let r = run_hook(kind, cmd, env, self.cfg.timeout).await;
        self.results.push(r.clone());
        r
    }

    fn dir_hook_commands(&mut self, kind: HookKind) -> Vec<HookCommand> {
        let idx = match kind {
            HookKind::Pre => 0,
            HookKind::Post => 1,
            _ => 2,
        };
        if self.dir_hooks[idx].is_none() {
            let found = match (&self.cfg.hooks_dir, kind.dir_name()) {
                (Some(base), Some(sub)) => list_hooks(&base.join(sub), &mut self.warnings),
                _ => Vec::new(),
            };
            self.dir_hooks[idx] = Some(found);
        }
        self.dir_hooks[idx]
            .iter()
            .flatten()
            .cloned()
            .map(HookCommand::Exec)
            .collect()
    }
}

/// Executable files in `dir`, sorted by name. Like certbot, names ending in `~` (editor
/// backups) are ignored; unlike certbot, a non-executable file earns a warning, since it is
/// almost always a hook someone forgot to `chmod +x`.
pub fn list_hooks(dir: &Path, warnings: &mut Vec<String>) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            warnings.push(format!("cannot read hooks directory {}: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut hooks = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.to_string_lossy().ends_with('~') {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            warnings.push(format!(
                "skipping hook {}: it is a broken symlink",
                path.display()
            ));
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if meta.permissions().mode() & 0o111 == 0 {
            let w = format!(
                "skipping hook {}: it is not executable (run `chmod +x {}` if it should run)",
                path.display(),
                path.display()
            );
            tracing::warn!("{w}");
            warnings.push(w);
            continue;
        }
        hooks.push(path);
    }
    hooks.sort();
    hooks
}
