//! The install pipeline: check, write, config test, reload, verify, roll back (see the module
//! documentation of [`crate::agent`]).

use std::fs::{DirBuilder, File};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use certfleet_core::cert::pem_certificates;
use certfleet_core::{CertInfo, PrivateKey};
use certfleet_renew::HookKind;
use nix::fcntl::{Flock, FlockArg};
use rustls::pki_types::ServerName;

use super::command::{self, describe_failure};
use super::config::{AgentConfig, InstallRule, VerifySpec, read_password};
use super::files::{self, Material, Rendered, Switched};
use super::keys::{AgentKeys, is_sha256_hex, spki_sha256};
use super::verify::{self, Served};
use crate::proto::{Delivery, InstallReport, InstallState};

/// How long an unchanged delivery may take to show up at the endpoint before the agent
/// reloads the service anyway.
const ALREADY_SERVED_BUDGET: Duration = Duration::from_secs(1);

/// The agent's version, sent in every report.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The agent's local state could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "state_dir {}: {source}; create it (mode 0700) or point state_dir at a directory the agent may write",
        .path.display()
    )]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error(
        "another certfleet agent is using state_dir {} (it holds {}); stop it, or give this one its own state_dir",
        .dir.display(), .lock.display()
    )]
    Locked { dir: PathBuf, lock: PathBuf },
}

/// What happened to one `[[install]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOutcome {
    pub certificate: String,
    /// `FILE:LINE` of the rule.
    pub rule: String,
    pub state: InstallState,
    /// Serial (hex) of the certificate in the rule's files afterwards.
    pub installed_serial: Option<String>,
    /// Serial the endpoint served at the verification.
    pub served_serial: Option<String>,
    pub endpoint: Option<String>,
    /// What failed and what to do; `None` on success.
    pub error: Option<String>,
    /// Whether the files were (re)written, even if later restored.
    pub files_written: bool,
    /// Whether the reload command ran successfully at least once.
    pub reloaded: bool,
    pub elapsed: Duration,
}

impl InstallOutcome {
    fn new(rule: &InstallRule) -> Self {
        Self {
            certificate: rule.certificate.clone(),
            rule: rule.origin.clone(),
            state: InstallState::Failed,
            installed_serial: None,
            served_serial: None,
            endpoint: rule.verify.as_ref().map(|v| v.endpoint.to_string()),
            error: None,
            files_written: false,
            reloaded: false,
            elapsed: Duration::ZERO,
        }
    }

    fn fail(mut self, state: InstallState, error: String) -> Self {
        self.state = state;
        self.error = Some(error);
        self
    }

    /// The report for the server, for this rule alone.
    pub fn report(&self) -> InstallReport {
        InstallReport {
            certificate: self.certificate.clone(),
            state: self.state,
            installed_serial: self.installed_serial.clone(),
            served_serial: self.served_serial.clone(),
            endpoint: self.endpoint.clone(),
            error: self.error.clone(),
            agent_version: AGENT_VERSION.to_string(),
        }
    }

    /// One report for a certificate installed by several rules: the worst state wins, errors
    /// are joined with the rule that had them.
    pub fn combined_report(certificate: &str, outcomes: &[InstallOutcome]) -> InstallReport {
        let rank = |s: InstallState| match s {
            InstallState::Verified => 0,
            InstallState::Installed => 1,
            InstallState::Waiting => 2,
            InstallState::NotConfigured => 3,
            InstallState::ConfigTestFailed => 4,
            InstallState::RolledBack => 5,
            InstallState::Failed => 6,
        };
        let Some(worst) = outcomes.iter().max_by_key(|o| rank(o.state)) else {
            return InstallReport {
                certificate: certificate.to_string(),
                state: InstallState::NotConfigured,
                installed_serial: None,
                served_serial: None,
                endpoint: None,
                error: Some(format!(
                    "this host's agent config has no [[install]] with certificate = \"{certificate}\"; \
                     add one, or unassign the certificate from this host"
                )),
                agent_version: AGENT_VERSION.to_string(),
            };
        };
        let errors: Vec<String> = outcomes
            .iter()
            .filter_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.rule)))
            .collect();
        InstallReport {
            error: (!errors.is_empty()).then(|| errors.join("\n")),
            ..worst.report()
        }
    }
}

/// The agent's local state and its install pipeline. One per state_dir (a lock file ensures
/// it); installs run one at a time.
pub struct Agent {
    config: AgentConfig,
    keys: AgentKeys,
    journal_dir: PathBuf,
    recovered: Vec<String>,
    busy: tokio::sync::Mutex<()>,
    _lock: Flock<File>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("state_dir", &self.config.state_dir)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Creates `state_dir` (0700), takes its lock, and undoes any install a crash left half
    /// done (see [`Agent::recovered`]).
    pub fn new(config: AgentConfig) -> Result<Self, AgentError> {
        let dir = config.state_dir.clone();
        let io = |source| AgentError::StateDir {
            path: dir.clone(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        let lock_path = dir.join("agent.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| AgentError::Locked {
            dir: dir.clone(),
            lock: lock_path.clone(),
        })?;
        let journal_dir = dir.join("journal");
        let recovered = files::recover(&journal_dir).map_err(io)?;
        Ok(Self {
            keys: AgentKeys::new(&dir),
            config,
            journal_dir,
            recovered,
            busy: tokio::sync::Mutex::new(()),
            _lock: lock,
        })
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// This host's own keys (agent custody).
    pub fn keys(&self) -> &AgentKeys {
        &self.keys
    }

    /// Certificates whose half-switched files were restored at start (a crash mid-install).
    pub fn recovered(&self) -> &[String] {
        &self.recovered
    }

    /// Installs `delivery` by every rule for its certificate. The key is the delivery's own
    /// (server custody), else `own_key`, else this host's key with the delivery's
    /// `key_sha256` from [`Agent::keys`]. One outcome per rule, none when the config has no rule
    /// for the certificate ([`InstallOutcome::combined_report`] reports that as
    /// [`InstallState::NotConfigured`]).
    pub async fn install(&self, delivery: &Delivery, own_key: Option<&PrivateKey>) -> Vec<InstallOutcome> {
        let mut out = Vec::new();
        for rule in self.config.rules_for(&delivery.certificate) {
            out.push(self.install_rule(rule, delivery, own_key).await);
        }
        out
    }

    /// Installs `delivery` by one rule.
    pub async fn install_rule(
        &self,
        rule: &InstallRule,
        delivery: &Delivery,
        own_key: Option<&PrivateKey>,
    ) -> InstallOutcome {
        let _one_at_a_time = self.busy.lock().await;
        let started = Instant::now();
        let mut out = self.run_pipeline(rule, delivery, own_key).await;
        out.elapsed = started.elapsed();
        match &out.error {
            None => tracing::info!(
                certificate = %out.certificate, rule = %out.rule, state = ?out.state,
                serial = ?out.installed_serial, elapsed = ?out.elapsed, "installed"
            ),
            Some(e) => tracing::warn!(
                certificate = %out.certificate, rule = %out.rule, state = ?out.state, "{e}"
            ),
        }
        out
    }

    async fn run_pipeline(
        &self,
        rule: &InstallRule,
        delivery: &Delivery,
        own_key: Option<&PrivateKey>,
    ) -> InstallOutcome {
        let mut out = InstallOutcome::new(rule);
        let material = match self.material(delivery, own_key) {
            Ok(m) => m,
            Err(e) => {
                return out.fail(InstallState::Failed, format!("{e}; nothing was written"));
            }
        };
        let serial = material.leaf.serial_hex();
        let password = match &rule.pkcs12_password_file {
            Some(p) => match read_password(p) {
                Ok(pw) => Some(pw),
                Err(e) => {
                    return out.fail(
                        InstallState::Failed,
                        format!(
                            "reading pkcs12_password_file {}: {e}; nothing was written",
                            p.display()
                        ),
                    );
                }
            },
            None => None,
        };
        let p12 = password.as_deref().map(|pw| (pw, delivery.certificate.as_str()));
        let rendered = match rule
            .files
            .iter()
            .map(|t| {
                material
                    .render(t.kind, p12)
                    .map(|bytes| Rendered { target: t, bytes })
            })
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(r) => r,
            Err(e) => return out.fail(InstallState::Failed, format!("{e}; nothing was written")),
        };
        let verify_with = rule
            .verify
            .as_ref()
            .map(|spec| (spec, verify::server_name(spec, &material.leaf.names)));

        if files::all_current(&rendered, &material, password.as_deref(), rule.owner, rule.group) {
            out.installed_serial = Some(serial.clone());
            return self.already_installed(out, rule, verify_with, &material).await;
        }

        let previous = files::installed_leaf(&rule.files).map(|c| c.serial_hex());
        let switched = match files::switch(
            &self.journal_dir,
            &rule.certificate,
            &serial,
            &rendered,
            rule.owner,
            rule.group,
        ) {
            Ok(s) => s,
            Err(e) => {
                out.installed_serial = previous;
                return out.fail(InstallState::Failed, e);
            }
        };
        out.files_written = true;
        out.installed_serial = Some(serial.clone());

        if let Some(test) = &rule.config_test {
            let r = command::run(HookKind::ConfigTest, test, rule.command_timeout).await;
            if !r.success() {
                let (state, note) = undo_note(switched, "nothing was reloaded");
                out.installed_serial = previous;
                return out.fail(
                    state.unwrap_or(InstallState::ConfigTestFailed),
                    format!(
                        "{}; {note}: fix the service's configuration, the next pull installs the new \
                         certificate again",
                        describe_failure(&r)
                    ),
                );
            }
        }
        if let Some(reload) = &rule.reload {
            let r = command::run(HookKind::Reload, reload, rule.command_timeout).await;
            if !r.success() {
                let (state, note) = undo_note(switched, "reloaded again");
                out.installed_serial = previous;
                let again = self.reload_after_undo(rule).await;
                return out.fail(
                    state.unwrap_or(InstallState::Failed),
                    format!("{}; {note}{again}", describe_failure(&r)),
                );
            }
            out.reloaded = true;
        }
        let Some((spec, sni)) = verify_with else {
            switched.commit();
            out.state = InstallState::Installed;
            return out;
        };
        let served = verify::wait_for_leaf(spec, &sni, &material.leaf.der, spec.timeout).await;
        if let Served::Expected = served {
            switched.commit();
            out.state = InstallState::Verified;
            out.served_serial = Some(serial);
            return out;
        }
        // The service does not serve what we installed: put everything back.
        let what = self.describe_served(&mut out, spec, &sni, &serial, &served);
        let then = if rule.reload.is_some() {
            "the service was reloaded again"
        } else {
            "no reload is configured"
        };
        let (state, note) = undo_note(switched, then);
        out.installed_serial = previous;
        let again = if rule.reload.is_some() {
            self.reload_after_undo(rule).await
        } else {
            String::new()
        };
        out.fail(
            state.unwrap_or(InstallState::RolledBack),
            format!(
                "{what}; {note}{again}: check that `verify` of the rule at {} names the server that \
                 uses these files and that its configuration points at them",
                rule.origin
            ),
        )
    }

    /// Files already hold the certificate: verify without touching anything; if the endpoint
    /// serves something else (a reload that never happened), test, reload and verify again.
    async fn already_installed(
        &self,
        mut out: InstallOutcome,
        rule: &InstallRule,
        verify_with: Option<(&VerifySpec, ServerName<'static>)>,
        material: &Material,
    ) -> InstallOutcome {
        let Some((spec, sni)) = verify_with else {
            out.state = InstallState::Installed;
            return out;
        };
        let leaf = &material.leaf.der;
        // Briefly, not the whole verify_timeout: right after a reload an old worker may still
        // answer with the previous certificate.
        let quick = spec.timeout.min(ALREADY_SERVED_BUDGET);
        if let Served::Expected = verify::wait_for_leaf(spec, &sni, leaf, quick).await {
            out.state = InstallState::Verified;
            out.served_serial = out.installed_serial.clone();
            return out;
        }
        for (kind, argv) in [
            (HookKind::ConfigTest, &rule.config_test),
            (HookKind::Reload, &rule.reload),
        ] {
            let Some(argv) = argv else { continue };
            let r = command::run(kind, argv, rule.command_timeout).await;
            if !r.success() {
                let state = if kind == HookKind::ConfigTest {
                    InstallState::ConfigTestFailed
                } else {
                    InstallState::Failed
                };
                return out.fail(
                    state,
                    format!(
                        "the files already hold this certificate but the endpoint does not serve it, \
                         and {}",
                        describe_failure(&r)
                    ),
                );
            }
            out.reloaded |= kind == HookKind::Reload;
        }
        let serial = out.installed_serial.clone().unwrap_or_default();
        let served = verify::wait_for_leaf(spec, &sni, leaf, spec.timeout).await;
        if let Served::Expected = served {
            out.state = InstallState::Verified;
            out.served_serial = Some(serial);
            return out;
        }
        let what = self.describe_served(&mut out, spec, &sni, &serial, &served);
        out.fail(
            InstallState::Failed,
            format!(
                "the files already hold this certificate, but {what}: check that `verify` of the rule \
                 at {} names the server that uses these files",
                rule.origin
            ),
        )
    }

    /// Sets `served_serial` and says what the endpoint did.
    fn describe_served(
        &self,
        out: &mut InstallOutcome,
        spec: &VerifySpec,
        sni: &ServerName<'static>,
        expected: &str,
        served: &Served,
    ) -> String {
        let sni = match sni {
            ServerName::DnsName(d) => format!(" (SNI {})", d.as_ref()),
            _ => String::new(),
        };
        match served {
            Served::Expected => String::new(),
            Served::Other(der) => {
                let info = CertInfo::from_der(der).ok();
                let serial = info
                    .as_ref()
                    .map(|c| c.serial_hex())
                    .unwrap_or_else(|| "?".into());
                let cn = info
                    .and_then(|c| c.subject_cn)
                    .map(|cn| format!(" CN={cn}"))
                    .unwrap_or_default();
                out.served_serial = Some(serial.clone());
                format!(
                    "{}{sni} served serial {serial}{cn} instead of the new certificate's serial {expected} \
                     for {:?}",
                    spec.endpoint, spec.timeout
                )
            }
            Served::Unreachable(e) => format!(
                "no TLS handshake with {}{sni} succeeded within {:?} ({e})",
                spec.endpoint, spec.timeout
            ),
        }
    }

    /// After putting the old files back: reload so the service serves them again.
    async fn reload_after_undo(&self, rule: &InstallRule) -> String {
        let Some(reload) = &rule.reload else {
            return String::new();
        };
        let r = command::run(HookKind::Reload, reload, rule.command_timeout).await;
        if r.success() {
            String::new()
        } else {
            format!(
                "; reloading with the previous files failed too ({}): the service needs attention",
                describe_failure(&r)
            )
        }
    }

    /// Checks a delivery without writing anything and finds its key.
    fn material(&self, d: &Delivery, own_key: Option<&PrivateKey>) -> Result<Material, String> {
        let bad = |what: String| format!("the server's delivery of {} is unusable: {what}", d.certificate);
        if !is_sha256_hex(&d.key_sha256) {
            return Err(bad(format!("key_sha256 {:?} is not a SHA-256", d.key_sha256)));
        }
        let leaf = CertInfo::from_pem(&d.cert_pem).map_err(|e| bad(format!("cert_pem: {e}")))?;
        let chain = if d.chain_pem.trim().is_empty() {
            Vec::new()
        } else {
            pem_certificates(&d.chain_pem).map_err(|e| bad(format!("chain_pem: {e}")))?
        };
        let full = pem_certificates(&d.fullchain_pem).map_err(|e| bad(format!("fullchain_pem: {e}")))?;
        if full.first() != Some(&leaf.der) || full[1..] != chain[..] {
            return Err(bad("fullchain_pem is not cert_pem followed by chain_pem".into()));
        }
        if normal_serial(&d.serial) != normal_serial(&leaf.serial_hex()) {
            return Err(bad(format!(
                "it announces serial {} but the certificate has serial {}",
                d.serial,
                leaf.serial_hex()
            )));
        }
        if time::OffsetDateTime::now_utc() >= leaf.not_after {
            return Err(bad(format!(
                "the certificate (serial {}) expired at {}",
                leaf.serial_hex(),
                leaf.not_after
            )));
        }
        let cert_sha = spki_sha256(&leaf.spki_der);
        if !cert_sha.eq_ignore_ascii_case(&d.key_sha256) {
            return Err(bad(format!(
                "the certificate's public key has SHA-256 {cert_sha}, not the announced {}",
                d.key_sha256
            )));
        }
        let (key, whose) = match &d.key_pem {
            Some(pem) => (
                PrivateKey::from_pem(pem).map_err(|e| bad(format!("its private key is unreadable: {e}")))?,
                "the server's key",
            ),
            None => match own_key {
                Some(k) => (k.clone(), "this host's key"),
                None => {
                    let found = self.keys.find(&d.key_sha256).map_err(|e| {
                        format!("reading this host's keys in {}: {e}", self.keys.dir().display())
                    })?;
                    let key = found.ok_or_else(|| {
                        format!(
                            "{} was issued for a key this host does not hold (SPKI SHA-256 {}, looked in {}); \
                             the agent must upload a new CSR for it",
                            d.certificate,
                            d.key_sha256,
                            self.keys.dir().display()
                        )
                    })?;
                    (key, "this host's key")
                }
            },
        };
        if !leaf.matches_key(&key) {
            return Err(format!(
                "{whose} (SPKI SHA-256 {}) does not match the certificate of {} (SPKI SHA-256 {cert_sha})",
                spki_sha256(&key.public_key_spki_der()),
                d.certificate
            ));
        }
        Ok(Material { leaf, chain, key })
    }
}

/// Serial hex without separators, case or leading zeros.
pub(crate) fn normal_serial(s: &str) -> String {
    let s: String = s
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    s.trim_start_matches('0').to_string()
}

/// Undoes a switch; `(None, "the previous files are back in place and <then>")` or, when even
/// that failed, `(Some(Failed), ...)`.
fn undo_note(switched: Switched, then: &str) -> (Option<InstallState>, String) {
    match switched.undo() {
        Ok(()) => (None, format!("the previous files are back in place and {then}")),
        Err(e) => (
            Some(InstallState::Failed),
            format!(
                "PUTTING THE PREVIOUS FILES BACK FAILED ({e}); restore them from *.certfleet-prev by hand"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_loosely() {
        assert_eq!(normal_serial("00:AB:01"), normal_serial("ab01"));
        assert_ne!(normal_serial("ab01"), normal_serial("ab02"));
    }

    #[test]
    fn combined_report_takes_the_worst_state() {
        let ok = InstallOutcome {
            certificate: "www".into(),
            rule: "a.toml:3".into(),
            state: InstallState::Verified,
            installed_serial: Some("01".into()),
            served_serial: Some("01".into()),
            endpoint: None,
            error: None,
            files_written: true,
            reloaded: true,
            elapsed: Duration::ZERO,
        };
        let bad = InstallOutcome {
            rule: "a.toml:9".into(),
            state: InstallState::RolledBack,
            error: Some("served serial 02".into()),
            ..ok.clone()
        };
        let r = InstallOutcome::combined_report("www", &[ok.clone(), bad]);
        assert_eq!(r.state, InstallState::RolledBack);
        assert_eq!(r.error.as_deref(), Some("a.toml:9: served serial 02"));
        assert_eq!(
            InstallOutcome::combined_report("www", &[ok]).state,
            InstallState::Verified
        );
        let none = InstallOutcome::combined_report("www", &[]);
        assert_eq!(none.state, InstallState::NotConfigured);
    }
}
