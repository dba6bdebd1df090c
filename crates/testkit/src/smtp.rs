//! A real SMTP receiver on loopback: Debian's python3-aiosmtpd, optionally offering STARTTLS
//! with a given certificate, that records every accepted message (envelope, subject and the
//! decoded text body) for the test to look at.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::free_port;

const PYTHON: &str = "/usr/bin/python3";

// Each accepted message is printed as one JSON line; the body is decoded (quoted-printable or
// base64 as the sender chose) and its lines end in \n, not SMTP's \r\n, so tests compare plain
// text.
const SERVER: &str = r#"
import email, email.policy, json, ssl, sys, time
from aiosmtpd.controller import Controller
port = int(sys.argv[1])
ctx = None
if len(sys.argv) > 3:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        print(json.dumps({
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(msg.get("Subject", "")),
            "body": body.get_content().replace("\r\n", "\n") if body is not None else "",
            "tls": session.ssl is not None,
        }), flush=True)
        return "250 OK"
kw = {}
if ctx is not None:
    kw = dict(tls_context=ctx, require_starttls=False)
controller = Controller(Handler(), hostname="127.0.0.1", port=port, **kw)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// One message the receiver accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    /// The text body, decoded.
    pub body: String,
    /// Whether the session was upgraded with STARTTLS.
    pub tls: bool,
}

/// A running aiosmtpd (killed on drop).
pub struct SmtpReceiver {
    child: Child,
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpReceiver {
    /// Whether python3-aiosmtpd is installed (`apt-get install python3-aiosmtpd`).
    pub fn available() -> bool {
        Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Plain SMTP on a free loopback port.
    pub fn start() -> Result<SmtpReceiver> {
        Self::spawn(None)
    }

    /// SMTP that offers STARTTLS with this certificate (PEM chain) and key.
    pub fn start_tls(cert: &Path, key: &Path) -> Result<SmtpReceiver> {
        Self::spawn(Some((cert, key)))
    }

    fn spawn(tls: Option<(&Path, &Path)>) -> Result<SmtpReceiver> {
        let port = free_port();
        let mut cmd = Command::new(PYTHON);
        cmd.arg("-c").arg(SERVER).arg(port.to_string());
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting aiosmtpd (apt-get install python3-aiosmtpd)")?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        match lines.next() {
            Some(Ok(l)) if l.trim() == "ready" => {}
            other => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("aiosmtpd did not start: {other:?}");
            }
        }
        let mails = Arc::new(Mutex::new(Vec::new()));
        let sink = mails.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(|l| l.ok()) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                let mail = Mail {
                    from: s("from"),
                    to: v["to"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
                        .unwrap_or_default(),
                    subject: s("subject"),
                    body: s("body"),
                    tls: v["tls"].as_bool().unwrap_or(false),
                };
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(mail);
            }
        });
        Ok(SmtpReceiver { child, port, mails })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, in order.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until a message matching `pred` has arrived; returns the first such.
    pub fn wait_for(&self, within: Duration, pred: impl Fn(&Mail) -> bool) -> Result<Mail> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(m) = self.mails().into_iter().find(|m| pred(m)) {
                return Ok(m);
            }
            if Instant::now() >= deadline {
                bail!(
                    "no matching mail within {within:?}; received: {:#?}",
                    self.mails()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
