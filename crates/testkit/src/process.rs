//! A child process owned by a test: logs go to a file, readiness is polled, and it is stopped on
//! drop so a failing test never leaks servers.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a part may take to open its port. Generous because CI machines are small and busy;
/// the poll returns as soon as the port answers.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

pub(crate) struct Proc {
    name: String,
    child: Child,
    /// Files whose tails explain a failure: the stdout/stderr capture plus e.g. nginx's error log.
    logs: Vec<PathBuf>,
    /// Send SIGTERM first and wait (nginx's master must stop its workers); otherwise SIGKILL.
    graceful: bool,
    stopped: bool,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout+stderr appended to `log`.
    pub(crate) fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Proc> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        // Its own process group, so stopping it also stops what it started (nginx's workers).
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        let child = cmd.spawn().with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            logs: vec![log.to_owned()],
            graceful: false,
            stopped: false,
        })
    }

    pub(crate) fn with_extra_log(mut self, log: &Path) -> Self {
        self.logs.push(log.to_owned());
        self
    }

    pub(crate) fn graceful(mut self) -> Self {
        self.graceful = true;
        self
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls until something accepts TCP connections on `addr`; fails early, with the logs, if the
    /// process exits first.
    pub(crate) fn wait_for_port(&mut self, addr: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited before listening on {addr} ({status}); log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {addr} within {:?}; log:\n{}",
                    self.name,
                    READY_TIMEOUT,
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Polls until `path` exists (e.g. a pid file written only after the sockets are bound); fails
    /// early, with the logs, if the process exits first.
    pub(crate) fn wait_for_file(&mut self, path: &Path) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited before creating {} ({status}); log:\n{}",
                    self.name,
                    path.display(),
                    self.log_tail()
                );
            }
            if path.exists() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not create {} within {:?}; log:\n{}",
                    self.name,
                    path.display(),
                    READY_TIMEOUT,
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The last few KiB of each log file, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        self.logs.iter().map(|p| tail(p)).collect::<Vec<_>>().join("\n")
    }

    pub(crate) fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if self.graceful {
            // No unsafe libc::kill in this workspace: the kill(1) utility does the same.
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    self.kill_group();
                    return;
                }
                std::thread::sleep(POLL);
            }
        }
        self.kill_group();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL to the whole process group: a child the leader left behind (an nginx worker of a
    /// master killed on a busy machine) would otherwise keep serving on the test's port.
    fn kill_group(&self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The end of a log file (or a note that it is missing), labelled with its path.
pub(crate) fn tail(path: &Path) -> String {
    const MAX: usize = 6000;
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(MAX);
            format!(
                "--- {} ---\n{}",
                path.display(),
                String::from_utf8_lossy(&bytes[start..])
            )
        }
        Err(e) => format!("--- {} (unreadable: {e}) ---", path.display()),
    }
}

/// True when this process runs as root (servers that refuse root are run as another user).
pub(crate) fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// True when startup failed because a picked port was taken in the meantime (by another test
/// process): worth one more try with fresh ports.
pub(crate) fn is_port_clash(err: &anyhow::Error) -> bool {
    format!("{err:#}")
        .to_lowercase()
        .contains("address already in use")
}

/// Runs `start` up to three times while it fails with a port clash (once if `ports_fixed`: the
/// caller chose the ports, so trying again cannot help).
pub(crate) fn retry_on_port_clash<T>(ports_fixed: bool, mut start: impl FnMut() -> Result<T>) -> Result<T> {
    let attempts = if ports_fixed { 1 } else { 3 };
    let mut attempt = 0;
    loop {
        attempt += 1;
        match start() {
            Err(e) if attempt < attempts && is_port_clash(&e) => continue,
            other => return other,
        }
    }
}
