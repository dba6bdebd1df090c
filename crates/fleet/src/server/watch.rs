//! The served-certificate watch: on a schedule, the server connects to every endpoint that
//! should serve a certificate of the fleet and judges what it presents, the way a client would
//! see it. Endpoints come from the agents' install reports (the `verify` endpoint each host
//! checks after installing) and from the admin (the certificate's page in the dashboard).
//!
//! Findings (`served_checks`), one per certificate and endpoint:
//! - `ok`: the newest issued certificate, with a chain to a trusted root;
//! - `incomplete-chain`: the right leaf without its intermediates (a service configured with
//!   `cert.pem` instead of `fullchain.pem`: browsers with the intermediate cached work, others
//!   fail);
//! - `untrusted`: a chain that leads to no root this server trusts, or that clients reject;
//! - `stale`: the previous certificate (the service was not reloaded after the renewal);
//! - `mismatch`: some other certificate;
//! - `expired`: the right certificate, expired;
//! - `unreachable`: no TLS handshake.
//!
//! The handshake is the agent's ([`crate::agent::verify::fetch_chain`]: any chain accepted, the
//! handshake signature still checked) and the chain is judged by the doctor's
//! [`certfleet_engine::doctor::Trust`] (this host's roots plus `--watch-roots`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use certfleet_core::{CertInfo, Clock};
use certfleet_engine::doctor::Trust;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::agent::config::{Endpoint, VerifySpec};
use crate::agent::verify::{fetch_chain, server_name};
use crate::db::{DbError, FleetDb, ServedCheck, WatchTarget};

/// `--watch-interval` default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// One endpoint's connect + handshake.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Endpoints checked at once: enough for 1,000 in a few seconds, few enough not to look like a
/// scan to the services.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// Every state a finding can have, in the dashboard's order (worst last).
pub const SERVED_STATES: [&str; 7] = [
    "ok",
    "incomplete-chain",
    "untrusted",
    "stale",
    "mismatch",
    "expired",
    "unreachable",
];

#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub interval: Duration,
    pub timeout: Duration,
    pub concurrency: usize,
    /// Extra trusted roots (DER), e.g. a private CA's (`--watch-roots FILE`).
    pub extra_roots: Vec<Vec<u8>>,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            extra_roots: Vec::new(),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Default)]
pub struct Round {
    pub checked: usize,
    /// `(state, count)` of this round's findings.
    pub by_state: Vec<(&'static str, usize)>,
    pub elapsed: Duration,
}

/// The watch, with its trust store loaded once.
pub struct Watch {
    db: FleetDb,
    clock: Arc<dyn Clock>,
    cfg: WatchConfig,
    trust: Arc<Trust>,
}

impl Watch {
    pub fn new(db: FleetDb, clock: Arc<dyn Clock>, cfg: WatchConfig) -> Self {
        let trust = Arc::new(Trust::new(&cfg.extra_roots));
        Self {
            db,
            clock,
            cfg,
            trust,
        }
    }

    /// Checks every endpoint once and stores the findings.
    pub async fn round(&self) -> Result<Round, DbError> {
        let started = Instant::now();
        let targets = self.db.watch_targets().await?;
        let now = self.clock.now();
        let limit = Arc::new(Semaphore::new(self.cfg.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for t in targets {
            let limit = limit.clone();
            let trust = self.trust.clone();
            let timeout = self.cfg.timeout;
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let id = t.certificate_id;
                (id, check(&t, &trust, timeout, now).await)
            });
        }
        let mut checks = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(c) => checks.push(c),
                Err(e) => tracing::error!("served-certificate watch: a check failed to run: {e}"),
            }
        }
        self.db.put_served_checks(&checks).await?;
        let by_state = SERVED_STATES
            .iter()
            .map(|s| (*s, checks.iter().filter(|(_, c)| c.state == *s).count()))
            .collect();
        Ok(Round {
            checked: checks.len(),
            by_state,
            elapsed: started.elapsed(),
        })
    }

    /// Rounds every interval until `stop` turns true; the first one right away.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            match self.round().await {
                Ok(r) => {
                    let bad: Vec<String> = r
                        .by_state
                        .iter()
                        .filter(|(s, n)| *s != "ok" && *n > 0)
                        .map(|(s, n)| format!("{n} {s}"))
                        .collect();
                    if bad.is_empty() {
                        tracing::debug!(
                            "served-certificate watch: {} endpoint(s) ok in {:?}",
                            r.checked,
                            r.elapsed
                        );
                    } else {
                        tracing::warn!(
                            "served-certificate watch: {} endpoint(s) checked in {:?}: {} (see the dashboard)",
                            r.checked,
                            r.elapsed,
                            bad.join(", ")
                        );
                    }
                }
                Err(e) => tracing::error!("served-certificate watch: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.interval) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }
}

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn first_der(pem_text: &str) -> Option<Vec<u8>> {
    certfleet_core::cert::pem_certificates(pem_text)
        .ok()
        .and_then(|v| v.into_iter().next())
}

fn day(t: time::OffsetDateTime) -> String {
    t.date().to_string()
}

/// Connects to one endpoint and judges what it serves at `now`.
pub async fn check(
    t: &WatchTarget,
    trust: &Trust,
    timeout: Duration,
    now: time::OffsetDateTime,
) -> ServedCheck {
    let mut out = ServedCheck {
        certificate: t.certificate.clone(),
        endpoint: t.endpoint.clone(),
        source: t.source.clone(),
        state: "unreachable".into(),
        detail: String::new(),
        leaf_sha256: None,
        served_serial: None,
        served_not_after: None,
        chain_len: 0,
        checked_at: now.unix_timestamp(),
    };
    let endpoint: Endpoint = match t.endpoint.parse() {
        Ok(e) => e,
        Err(e) => {
            out.detail = format!("{:?} is not HOST:PORT ({e})", t.endpoint);
            return out;
        }
    };
    let spec = VerifySpec {
        endpoint,
        sni: t.sni.clone(),
        starttls: None,
        timeout,
    };
    let sni = server_name(&spec, &t.identifiers);
    let chain = match tokio::time::timeout(timeout, fetch_chain(&spec.endpoint, &sni, None)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            out.detail = format!("{e}: is the service running and reachable from the certfleet server?");
            return out;
        }
        Err(_) => {
            out.detail = format!(
                "no TLS handshake with {} within {timeout:?}: a firewall, or not a TLS port?",
                spec.endpoint
            );
            return out;
        }
    };
    out.chain_len = i64::try_from(chain.len()).unwrap_or(i64::MAX);
    out.leaf_sha256 = Some(sha256_hex(&chain[0]));
    let leaf = match CertInfo::from_der(&chain[0]) {
        Ok(l) => l,
        Err(e) => {
            out.state = "mismatch".into();
            out.detail = format!("{} sent a certificate that cannot be read: {e}", spec.endpoint);
            return out;
        }
    };
    out.served_serial = Some(leaf.serial_hex());
    out.served_not_after = Some(leaf.not_after.unix_timestamp());
    let about = format!(
        "serial {}, issuer {}, expires {}",
        leaf.serial_hex(),
        leaf.issuer_cn.as_deref().unwrap_or("?"),
        day(leaf.not_after)
    );
    let current = first_der(&t.cert_pem);
    let previous = t.prev_cert_pem.as_deref().and_then(first_der);
    let reload = "reload the service (the agent does on its next sync if its `reload` command is set)";
    if current.as_deref() != Some(chain[0].as_slice()) {
        if previous.as_deref() == Some(chain[0].as_slice()) {
            out.state = "stale".into();
            out.detail = format!(
                "serves the previous certificate ({about}), not the newest: the service was not reloaded after the renewal; {reload}"
            );
        } else {
            out.state = "mismatch".into();
            out.detail = format!(
                "serves another certificate ({about}; names {}), not {}'s newest: check which certificate the service is configured with",
                leaf.names.join(", "),
                t.certificate
            );
        }
        return out;
    }
    if leaf.not_after <= now {
        out.state = "expired".into();
        out.detail = format!("serves the newest certificate, but it expired ({about}): renew it now");
        return out;
    }
    if chain.len() == 1 && leaf.issuer_cn != leaf.subject_cn {
        out.state = "incomplete-chain".into();
        out.detail = format!(
            "serves the certificate without the intermediate that signed it ({}): clients that do not have it \
             cached cannot build a chain. The service uses cert.pem instead of fullchain.pem: point it at \
             fullchain.pem, then {reload}",
            leaf.issuer_cn.as_deref().unwrap_or("?")
        );
        return out;
    }
    let name = match &sni {
        rustls::pki_types::ServerName::DnsName(d) => d.as_ref().to_string(),
        rustls::pki_types::ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => spec.endpoint.host.clone(),
    };
    let ders: Vec<CertificateDer<'_>> = chain.iter().map(|d| CertificateDer::from(d.as_slice())).collect();
    match trust.verify(&ders, &name, now) {
        Ok(true) => {
            out.state = "ok".into();
            out.detail = format!(
                "serves the newest certificate ({about}) with {} intermediate(s); chain trusted",
                chain.len() - 1
            );
        }
        Ok(false) => {
            out.state = "untrusted".into();
            out.detail = format!(
                "serves the newest certificate ({about}), but its chain leads to no root this server trusts: \
                 intermediates missing or wrong, or a private/staging CA (give its root with --watch-roots FILE)"
            );
        }
        Err(e) => {
            out.state = "untrusted".into();
            out.detail = format!("serves the newest certificate ({about}), but clients reject it: {e}");
        }
    }
    out
}

/// The watch's series for `/metrics`: `certfleet_served_endpoints{state}` (every state, zero
/// or not) and `certfleet_served_expiry_seconds{certificate,endpoint}` (of what each endpoint
/// actually serves).
#[derive(Debug)]
pub struct ServedGauges {
    checks: Vec<ServedCheck>,
    now: i64,
}

impl ServedGauges {
    pub fn new(checks: Vec<ServedCheck>, now: i64) -> Self {
        Self { checks, now }
    }
}

impl prometheus_client::collector::Collector for ServedGauges {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::gauge::ConstGauge;
        let mut e = encoder.encode_descriptor(
            "served_endpoints",
            "Endpoints checked by the served-certificate watch, by finding (ok, incomplete-chain, untrusted, stale, mismatch, expired, unreachable)",
            None,
            MetricType::Gauge,
        )?;
        for state in SERVED_STATES {
            let n = self.checks.iter().filter(|c| c.state == state).count();
            ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                .encode(e.encode_family(&[("state", state)])?)?;
        }
        let mut e = encoder.encode_descriptor(
            "served_expiry_seconds",
            "Seconds until the certificate an endpoint actually serves expires (negative: expired)",
            None,
            MetricType::Gauge,
        )?;
        for c in &self.checks {
            if let Some(na) = c.served_not_after {
                ConstGauge::new(na - self.now).encode(e.encode_family(&[
                    ("certificate", c.certificate.as_str()),
                    ("endpoint", c.endpoint.as_str()),
                ])?)?;
            }
        }
        Ok(())
    }
}
