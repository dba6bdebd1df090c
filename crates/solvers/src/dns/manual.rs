//! Manual dns-01: print the exact records to create (certbot's wording), wait for Enter, and
//! let the solver's propagation check confirm the authoritative servers answer them.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::Mutex;

use super::{DnsError, DnsProvider, TxtRecord};

const NAME: &str = "manual";

type Input = Box<dyn AsyncBufRead + Send + Unpin>;
type Output = Box<dyn std::io::Write + Send>;

/// Talks to a person on a terminal (or, in tests, any reader/writer).
pub struct Manual {
    io: Mutex<(Input, Output)>,
}

impl std::fmt::Debug for Manual {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Manual")
    }
}

impl Manual {
    /// Prompt on stdout, read Enter from stdin.
    pub fn stdio() -> Self {
        Manual::with_io(
            Box::new(tokio::io::BufReader::new(tokio::io::stdin())),
            Box::new(std::io::stdout()),
        )
    }

    pub fn with_io(input: Input, output: Output) -> Self {
        Manual {
            io: Mutex::new((input, output)),
        }
    }
}

/// The instructions for a batch, as certbot words them (one block per record).
pub fn instructions(records: &[TxtRecord]) -> String {
    let mut s = String::new();
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            s.push_str(
                "\n(This must be set up in addition to the previous challenges; do not remove,\n\
                 replace, or undo the previous challenge tasks yet. Note that you might be\n\
                 asked to create multiple distinct TXT records with the same name. This is\n\
                 permitted by DNS standards.)\n\n",
            );
        }
        s.push_str(&format!(
            "Please deploy a DNS TXT record under the name:\n\n{}.\n\nwith the following value:\n\n{}\n",
            r.fqdn, r.value
        ));
        if r.fqdn != format!("_acme-challenge.{}", r.domain) {
            s.push_str(&format!(
                "\n(_acme-challenge.{} is a CNAME to this name.)\n",
                r.domain
            ));
        }
    }
    s
}

#[async_trait::async_trait]
impl DnsProvider for Manual {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn set_txt(&self, record: &TxtRecord) -> Result<Option<String>, DnsError> {
        self.set_all(std::slice::from_ref(record)).await.remove(0)
    }

    async fn remove_txt(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.remove_all(std::slice::from_ref(record)).await.remove(0)
    }

    async fn set_all(&self, records: &[TxtRecord]) -> Vec<Result<Option<String>, DnsError>> {
        let mut io = self.io.lock().await;
        let text = format!(
            "{}\nPress Enter to continue once the record(s) exist; certfleet then checks that every\n\
             authoritative DNS server answers them.\n",
            instructions(records)
        );
        let res = async {
            io.1.write_all(text.as_bytes())
                .and_then(|_| io.1.flush())
                .map_err(|e| DnsError::io("printing manual instructions", e))?;
            let mut line = String::new();
            let n =
                io.0.read_line(&mut line)
                    .await
                    .map_err(|e| DnsError::io("waiting for Enter", e))?;
            if n == 0 {
                return Err(DnsError::Config(
                    "manual dns-01 needs Enter pressed on a terminal; without one use --manual-auth-hook"
                        .into(),
                ));
            }
            Ok(())
        }
        .await;
        match res {
            Ok(()) => records.iter().map(|_| Ok(None)).collect(),
            Err(e) => {
                let msg = e.to_string();
                records
                    .iter()
                    .map(|_| Err(DnsError::Config(msg.clone())))
                    .collect()
            }
        }
    }

    async fn remove_all(&self, records: &[TxtRecord]) -> Vec<Result<(), DnsError>> {
        let mut io = self.io.lock().await;
        let mut text = String::from("The TXT record(s) can now be removed:\n");
        for r in records {
            text.push_str(&format!("  {}. TXT \"{}\"\n", r.fqdn, r.value));
        }
        let _ = io.1.write_all(text.as_bytes()).and_then(|_| io.1.flush());
        records.iter().map(|_| Ok(())).collect()
    }

    fn removes_stale(&self) -> bool {
        false
    }
}
