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
from aiosmtpd.smtp import AuthResult
port, mode = int(sys.argv[1]), sys.argv[2]
ctx = None
if mode != "plain":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
creds = (sys.argv[5].encode(), sys.argv[6].encode()) if len(sys.argv) > 6 else None
def authenticator(server, session, envelope, mechanism, auth_data):
    ok = creds is not None and (auth_data.login, auth_data.password) == creds
    # handled=False: aiosmtpd then answers 535 itself (True would leave the client waiting).
    return AuthResult(success=ok, handled=False, auth_data=auth_data)
class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        print(json.dumps({
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(msg.get("Subject", "")),
            "body": body.get_content().replace("\r\n", "\n") if body is not None else "",
            # session.ssl is set by STARTTLS only; on the implicit-TLS port every session is TLS.
            "tls": session.ssl is not None or mode == "tls",
            "login": session.auth_data.login.decode() if session.authenticated and session.auth_data else None,
        }), flush=True)
        return "250 OK"
kw = {}
if mode == "starttls":
    kw = dict(tls_context=ctx, require_starttls=False)
elif mode == "tls":
    kw = dict(ssl_context=ctx)
if creds is not None:
    # AUTH only after STARTTLS (or on the implicit-TLS port), as real relays do.
    kw.update(authenticator=authenticator, auth_required=True, auth_require_tls=(mode == "starttls"))
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
    /// Whether the session ran over TLS (STARTTLS or implicit).
    pub tls: bool,
    /// The user the client authenticated as (AUTH), if any.
    pub login: Option<String>,
}

/// How the receiver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpMode {
    /// No TLS offered.
    Plain,
    /// STARTTLS offered (not required).
    StartTls,
    /// TLS from the first byte (what `smtps://` expects).
    ImplicitTls,
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
        Self::spawn(SmtpMode::Plain, None, None)
    }

    /// SMTP that offers STARTTLS with this certificate (PEM chain) and key.
    pub fn start_tls(cert: &Path, key: &Path) -> Result<SmtpReceiver> {
        Self::spawn(SmtpMode::StartTls, Some((cert, key)), None)
    }

    /// TLS (`mode` StartTls or ImplicitTls) with this certificate, and AUTH required with
    /// this user and password.
    pub fn start_auth(
        mode: SmtpMode,
        cert: &Path,
        key: &Path,
        user: &str,
        password: &str,
    ) -> Result<SmtpReceiver> {
        Self::spawn(mode, Some((cert, key)), Some((user, password)))
    }

    fn spawn(
        mode: SmtpMode,
        tls: Option<(&Path, &Path)>,
        auth: Option<(&str, &str)>,
    ) -> Result<SmtpReceiver> {
        let port = free_port();
        let mut cmd = Command::new(PYTHON);
        let mode_arg = match mode {
            SmtpMode::Plain => "plain",
            SmtpMode::StartTls => "starttls",
            SmtpMode::ImplicitTls => "tls",
        };
        cmd.arg("-c").arg(SERVER).arg(port.to_string()).arg(mode_arg);
        match tls {
            Some((cert, key)) => {
                cmd.arg(cert).arg(key);
            }
            None if mode != SmtpMode::Plain => bail!("SMTP over TLS needs a certificate and key"),
            None => {
                cmd.arg("-").arg("-");
            }
        }
        if let Some((user, password)) = auth {
            cmd.arg(user).arg(password);
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
                    login: v["login"].as_str().map(String::from),
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
