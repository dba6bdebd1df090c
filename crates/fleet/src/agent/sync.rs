//! The agent's network half: enrollment, then syncs. A sync asks the server what is assigned to
//! this host, keeps a fresh CSR at the server for each agent-custody certificate (so the server
//! can renew while the host is offline), fetches what changed, hands it to [`Agent::install`]
//! and reports the outcome. The server is only ever asked; it never tells the agent where to
//! write or what to run.
//!
//! Enrollment leaves in the state dir (all 0600): `enrollment.json` (server URL, pinned
//! fingerprint, host name), `client-key.pem` (made here, never sent), `client-cert.pem` (from
//! the server's internal CA). `installed.json` remembers what each certificate's last sync
//! achieved, so an unchanged certificate is not fetched again every interval.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use certfleet_core::PrivateKey;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::install::{AGENT_VERSION, Agent, InstallOutcome};
use crate::client::{ClientError, FleetClient, ServerTrust};
use crate::pki;
use crate::proto::{Assignment, CsrUpload, Custody, EnrollRequest, InstallReport, InstallState};
use crate::token::{EnrollmentToken, TokenError};

pub const ENROLLMENT_FILE: &str = "enrollment.json";
pub const CLIENT_KEY_FILE: &str = "client-key.pem";
pub const CLIENT_CERT_FILE: &str = "client-cert.pem";
const INSTALLED_FILE: &str = "installed.json";

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{what} {}: {detail}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error(
        "this host is not enrolled ({} is missing): run `certfleet agent enroll --state-dir {} TOKEN` with the token `certfleet fleet host add NAME` printed",
        file.display(), dir.display()
    )]
    NotEnrolled { file: PathBuf, dir: PathBuf },
    #[error("{0}")]
    Key(String),
}

/// What enrollment stored, besides the client key and certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub url: String,
    pub fingerprint: String,
    pub host: String,
}

fn file_err(what: &'static str, path: &Path, e: impl std::fmt::Display) -> SyncError {
    SyncError::File {
        what,
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), SyncError> {
    certfleet_store::atomic::write_file(path, data, 0o600).map_err(|e| file_err("cannot write", path, e))
}

fn read(path: &Path) -> Result<String, SyncError> {
    std::fs::read_to_string(path).map_err(|e| file_err("cannot read", path, e))
}

/// `certfleet agent enroll`: make the client key here, trade the one-time token for a client
/// certificate, store everything under `state_dir`.
pub async fn enroll(state_dir: &Path, token: &str) -> Result<Enrollment, SyncError> {
    let token = EnrollmentToken::decode(token)?;
    certfleet_store::atomic::create_dir(state_dir, 0o700)
        .map_err(|e| file_err("cannot create", state_dir, e))?;
    let hostname = crate::local_hostname().unwrap_or_else(|| "agent".into());
    let (key_pem, csr_pem) =
        pki::new_client_key_and_csr(&hostname).map_err(|e| SyncError::Key(e.to_string()))?;
    let client = FleetClient::builder(&token.url, ServerTrust::Pin(token.fingerprint.clone())).build()?;
    let answer = client
        .enroll(&EnrollRequest {
            secret: token.secret.clone(),
            csr_pem,
            agent_version: AGENT_VERSION.to_string(),
        })
        .await?;
    let enrollment = Enrollment {
        url: token.url,
        fingerprint: token.fingerprint,
        host: answer.host,
    };
    write_private(&state_dir.join(CLIENT_KEY_FILE), key_pem.as_bytes())?;
    write_private(
        &state_dir.join(CLIENT_CERT_FILE),
        answer.client_cert_pem.as_bytes(),
    )?;
    let json = serde_json::to_vec_pretty(&enrollment).expect("plain data serializes");
    write_private(&state_dir.join(ENROLLMENT_FILE), &json)?;
    Ok(enrollment)
}

/// The enrolled host's API client (pinned server, client certificate). `url_override` is the
/// agent config's `server`, for a server reached under another name than at enrollment.
pub fn client(state_dir: &Path, url_override: Option<&str>) -> Result<(FleetClient, Enrollment), SyncError> {
    let file = state_dir.join(ENROLLMENT_FILE);
    if !file.exists() {
        return Err(SyncError::NotEnrolled {
            file,
            dir: state_dir.to_path_buf(),
        });
    }
    let enrollment: Enrollment =
        serde_json::from_str(&read(&file)?).map_err(|e| file_err("damaged enrollment file", &file, e))?;
    let cert = read(&state_dir.join(CLIENT_CERT_FILE))?;
    let key = read(&state_dir.join(CLIENT_KEY_FILE))?;
    let url = url_override.unwrap_or(&enrollment.url);
    let client = FleetClient::builder(url, ServerTrust::Pin(enrollment.fingerprint.clone()))
        .client_identity(cert, key)
        .build()?;
    Ok((client, enrollment))
}

/// What the last sync achieved per certificate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Installed {
    #[serde(flatten)]
    by_cert: BTreeMap<String, InstalledCert>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct InstalledCert {
    serial: String,
    state: InstallState,
}

impl Installed {
    fn load(dir: &Path) -> Self {
        std::fs::read_to_string(dir.join(INSTALLED_FILE))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    fn save(&self, dir: &Path) {
        let json = serde_json::to_vec_pretty(self).expect("plain data serializes");
        if let Err(e) = certfleet_store::atomic::write_file(&dir.join(INSTALLED_FILE), &json, 0o600) {
            tracing::warn!("remembering installed certificates: {e}");
        }
    }
}

/// One certificate's result in a sync.
#[derive(Debug, Clone)]
pub struct SyncItem {
    pub certificate: String,
    pub report: InstallReport,
    /// Assigned but with no `[[install]]` in this host's config: reported, but not a failure
    /// of this host.
    pub configured: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SyncSummary {
    pub items: Vec<SyncItem>,
}

impl SyncSummary {
    /// Everything assigned and configured is installed (and verified where an endpoint is
    /// configured): what `agent run --once` exits 0 for.
    pub fn all_good(&self) -> bool {
        self.items
            .iter()
            .filter(|i| i.configured)
            .all(|i| matches!(i.report.state, InstallState::Verified | InstallState::Installed))
    }
}

/// How long the per-sync check of an unchanged certificate may wait for one endpoint.
const STILL_SERVED_BUDGET: Duration = Duration::from_secs(5);

/// One full sync: CSRs up, certificates down, install, report.
pub async fn sync_once(agent: &Agent, client: &FleetClient) -> Result<SyncSummary, SyncError> {
    let dir = agent.config().state_dir.clone();
    let mut installed = Installed::load(&dir);
    let mut summary = SyncSummary::default();
    for a in client.assignments().await? {
        let configured = agent.config().rules_for(&a.certificate).next().is_some();
        if a.custody == Custody::Agent && configured {
            ensure_csr(agent, client, &a).await?;
        }
        let report = match &a.serial {
            _ if !configured => InstallOutcome::combined_report(&a.certificate, &[]),
            None => waiting(&a),
            Some(serial)
                if installed
                    .by_cert
                    .get(&a.certificate)
                    .is_some_and(|i| &i.serial == serial && i.state == InstallState::Verified)
                    && still_served(agent, &a, serial).await =>
            {
                // Unchanged since the last verified install: nothing to fetch or report.
                summary.items.push(SyncItem {
                    certificate: a.certificate.clone(),
                    report: InstallReport {
                        certificate: a.certificate.clone(),
                        state: InstallState::Verified,
                        installed_serial: Some(serial.clone()),
                        served_serial: Some(serial.clone()),
                        endpoint: None,
                        error: None,
                        agent_version: AGENT_VERSION.to_string(),
                    },
                    configured,
                });
                continue;
            }
            Some(_) => {
                let delivery = client.certificate(&a.certificate).await?;
                let outcomes = agent.install(&delivery, None).await;
                let report = InstallOutcome::combined_report(&a.certificate, &outcomes);
                if let Some(serial) = &report.installed_serial {
                    installed.by_cert.insert(
                        a.certificate.clone(),
                        InstalledCert {
                            serial: serial.clone(),
                            state: report.state,
                        },
                    );
                }
                report
            }
        };
        client.report(&report).await?;
        summary.items.push(SyncItem {
            certificate: a.certificate.clone(),
            report,
            configured,
        });
    }
    installed.save(&dir);
    Ok(summary)
}

/// The agent's own served-certificate watch. A certificate verified before is checked again at
/// every sync, one handshake per endpoint of its rules: a service that went back to older files
/// (a restore, a hand edit, a restart from another config) is noticed within one `interval`
/// and goes through the install path again, which reloads, verifies and reports.
async fn still_served(agent: &Agent, a: &Assignment, serial: &str) -> bool {
    let want = super::install::normal_serial(serial);
    for rule in agent.config().rules_for(&a.certificate) {
        let Some(spec) = &rule.verify else { continue };
        let sni = super::verify::server_name(spec, &a.identifiers);
        let quick = spec.timeout.min(STILL_SERVED_BUDGET);
        let leaf = tokio::time::timeout(
            quick,
            super::verify::fetch_leaf(&spec.endpoint, &sni, spec.starttls),
        )
        .await;
        let served = match leaf {
            Ok(Ok(der)) => certfleet_core::CertInfo::from_der(&der).ok(),
            _ => None,
        };
        if served.is_none_or(|i| super::install::normal_serial(&i.serial_hex()) != want) {
            tracing::warn!(
                "{}: {} no longer serves serial {serial}: installing again",
                a.certificate,
                spec.endpoint
            );
            return false;
        }
    }
    true
}

fn waiting(a: &Assignment) -> InstallReport {
    InstallReport {
        certificate: a.certificate.clone(),
        state: InstallState::Waiting,
        installed_serial: None,
        served_serial: None,
        endpoint: None,
        error: None,
        agent_version: AGENT_VERSION.to_string(),
    }
}

/// Keep one unused CSR at the server: the key of the next certificate, made here.
async fn ensure_csr(agent: &Agent, client: &FleetClient, a: &Assignment) -> Result<(), SyncError> {
    if !a.csr_keys.is_empty() {
        return Ok(());
    }
    let spec = crate::proto::key_spec(&a.key_type)
        .ok_or_else(|| SyncError::Key(format!("{}: unknown key type {:?}", a.certificate, a.key_type)))?;
    let ids = certfleet_core::identifier::parse_domain_args(&a.identifiers)
        .map_err(|e| SyncError::Key(format!("{}: {e}", a.certificate)))?;
    let key = tokio::task::spawn_blocking(move || PrivateKey::generate(spec))
        .await
        .map_err(|e| SyncError::Key(e.to_string()))?
        .map_err(|e| SyncError::Key(e.to_string()))?;
    let csr = key.csr_der(&ids).map_err(|e| SyncError::Key(e.to_string()))?;
    // Saved before the upload: a key the server may issue for must never be lost.
    agent
        .keys()
        .save(&key)
        .map_err(|e| file_err("cannot save the new key in", agent.keys().dir(), e))?;
    let csr_pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", csr));
    client
        .upload_csr(&CsrUpload {
            certificate: a.certificate.clone(),
            csr_pem,
        })
        .await?;
    tracing::info!("{}: uploaded the CSR of a new key", a.certificate);
    Ok(())
}
