//! Prometheus `/metrics` (OpenMetrics text, prometheus-client).
//!
//! Two kinds of series:
//! - what the database says (certificates by state, seconds to expiry, what hosts serve, when
//!   they last checked in): read at scrape time with [`FleetDb::fleet_stats`], so every node of
//!   a shared PostgreSQL answers the same and nothing is cached that could go stale;
//! - what happened in this process (renewals, failures by reason, issuance time, agent
//!   check-ins, install reports): counters and a histogram in [`Metrics`], kept in
//!   [`AppState`] and updated where it happens. They start at zero with the process, as
//!   Prometheus counters do.
//!
//! Labels are certificate and host names (checked, 1 to 64 plain characters), the CA's host and
//! fixed word sets: never a token, an error text or a URL path.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use certfleet_engine::EngineError;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::auth::{auth_failed, check_not_blocked};
use super::error::ApiFailure;
use super::state::AppState;
use crate::db::{FleetDb, FleetStats};
use crate::proto::{InstallState, UnixTime};

/// The path, on the API listener, outside the API prefix (where Prometheus looks by default).
pub const METRICS_PATH: &str = "/metrics";
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Issuance takes seconds (Pebble, Let's Encrypt) to minutes (dns-01 propagation).
const ISSUE_BUCKETS: [f64; 11] = [0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CaLabels {
    ca: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    ca: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    host: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstallLabels {
    host: String,
    state: &'static str,
}

type HistogramFamily = Family<CaLabels, Histogram, fn() -> Histogram>;

/// Why a renewal failed, as a small fixed set (the error text itself is in the event log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The CA said `rateLimited`.
    RateLimited,
    /// The CA could not validate a name, or the challenge could not be set up or offered.
    Validation,
    /// The CA refused the request or answered something unusable.
    CaError,
    /// The CA could not be reached.
    Network,
    Other,
}

impl FailureReason {
    pub fn of(e: &EngineError) -> Self {
        use certfleet_acme::AcmeError;
        if e.acme().is_some_and(AcmeError::is_rate_limited) {
            return FailureReason::RateLimited;
        }
        match e {
            EngineError::Validation { .. }
            | EngineError::ChallengeNotOffered { .. }
            | EngineError::Solver(_)
            | EngineError::Acme(AcmeError::AuthorizationFailed { .. }) => FailureReason::Validation,
            EngineError::Acme(AcmeError::Http { .. }) => FailureReason::Network,
            EngineError::Acme(_)
            | EngineError::ProfileRefused { .. }
            | EngineError::ProfileSwapped { .. }
            | EngineError::NoCertificateUrl
            | EngineError::UnreadableChain(_)
            | EngineError::UnreadableCertificate(_)
            | EngineError::CaIdentifier(_) => FailureReason::CaError,
            _ => FailureReason::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::RateLimited => "rate-limited",
            FailureReason::Validation => "validation",
            FailureReason::CaError => "ca-error",
            FailureReason::Network => "network",
            FailureReason::Other => "other",
        }
    }
}

/// The `ca` label: the ACME directory's host (and port, if any), never its path.
pub fn ca_label(directory_url: &str) -> String {
    match url::Url::parse(directory_url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => "unknown".into(),
        },
        Err(_) => "unknown".into(),
    }
}

/// This process's counters and histogram (clones share them).
#[derive(Debug, Clone)]
pub struct Metrics {
    renewals: Family<CaLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    issue_seconds: HistogramFamily,
    checkins: Family<HostLabels, Counter>,
    installs: Family<InstallLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            renewals: Family::default(),
            failures: Family::default(),
            issue_seconds: Family::new_with_constructor(|| Histogram::new(ISSUE_BUCKETS)),
            checkins: Family::default(),
            installs: Family::default(),
        }
    }
}

impl Metrics {
    /// A certificate was issued (first issuance or renewal) by `ca` in `seconds`.
    pub fn issued(&self, ca: &str, seconds: f64) {
        let l = CaLabels { ca: ca.to_string() };
        self.renewals.get_or_create(&l).inc();
        self.issue_seconds.get_or_create(&l).observe(seconds);
    }

    /// An issuance attempt at `ca` that failed took `seconds` (the histogram times every
    /// attempt: a CA that times out shows there).
    pub fn attempt_seconds(&self, ca: &str, seconds: f64) {
        self.issue_seconds
            .get_or_create(&CaLabels { ca: ca.to_string() })
            .observe(seconds);
    }

    /// A renewal (or first issuance) failed and was recorded with its backoff.
    pub fn failed(&self, ca: &str, reason: FailureReason) {
        self.failures
            .get_or_create(&FailureLabels {
                ca: ca.to_string(),
                reason: reason.as_str(),
            })
            .inc();
    }

    /// An agent's sync began (it lists its assignments).
    pub fn checkin(&self, host: &str) {
        self.checkins
            .get_or_create(&HostLabels { host: host.into() })
            .inc();
    }

    pub fn install_report(&self, host: &str, state: InstallState) {
        self.installs
            .get_or_create(&InstallLabels {
                host: host.into(),
                state: state.as_str(),
            })
            .inc();
    }

    /// The whole `/metrics` text at `now`: the database's gauges and this process's counters.
    pub async fn render(&self, db: &FleetDb, now: UnixTime) -> Result<String, crate::db::DbError> {
        let stats = db.fleet_stats(now).await?;
        let served = super::watch::ServedGauges::new(db.all_served_checks().await?, now);
        Ok(self.encode_with(stats, Some(Box::new(served)), now))
    }

    pub fn encode(&self, stats: FleetStats, now: UnixTime) -> String {
        self.encode_with(stats, None, now)
    }

    /// `extra`: the served-certificate watch's gauges.
    fn encode_with(&self, stats: FleetStats, extra: Option<Box<dyn Collector>>, now: UnixTime) -> String {
        let mut reg = Registry::with_prefix("certfleet");
        reg.register(
            "renewals",
            "Certificates issued (first issuance or renewal), by ACME CA",
            self.renewals.clone(),
        );
        reg.register(
            "renewal_failures",
            "Failed issuance attempts, by ACME CA and reason (rate-limited, validation, ca-error, network, other)",
            self.failures.clone(),
        );
        reg.register(
            "acme_issuance_duration_seconds",
            "Time of one issuance attempt at the CA (order to certificate), by ACME CA",
            self.issue_seconds.clone(),
        );
        reg.register(
            "agent_checkins",
            "Agent syncs (assignment lists fetched), by host",
            self.checkins.clone(),
        );
        reg.register(
            "install_reports",
            "Install reports received from agents, by host and state",
            self.installs.clone(),
        );
        reg.register_collector(Box::new(DbGauges { stats, now }));
        if let Some(c) = extra {
            reg.register_collector(c);
        }
        let mut out = String::with_capacity(256 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }
}

/// The database's gauges, encoded straight from the query results (no per-series map: a
/// fleet of 100,000 certificates makes 100,000 expiry series).
#[derive(Debug)]
struct DbGauges {
    stats: FleetStats,
    now: UnixTime,
}

impl Collector for DbGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let now = self.now;
        let mut e = encoder.encode_descriptor(
            "certificates",
            "Certificates by state (expiring: valid but within the last sixth of its lifetime; pending: never issued)",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in &s.by_state {
            ConstGauge::new(*n).encode(e.encode_family(&[("state", *state)])?)?;
        }

        let mut e = encoder.encode_descriptor(
            "certificate_expiry_seconds",
            "Seconds until the newest issued certificate expires (negative: expired), enabled certificates",
            None,
            MetricType::Gauge,
        )?;
        for (name, not_after) in &s.expiry {
            ConstGauge::new(not_after - now).encode(e.encode_family(&[("certificate", name.as_str())])?)?;
        }

        let mut e = encoder.encode_descriptor(
            "host_serves_current",
            "1 if the host serves (or, with no endpoint to verify, installed) the current certificate, else 0",
            None,
            MetricType::Gauge,
        )?;
        for r in &s.served {
            let labels = [("certificate", r.certificate.as_str()), ("host", r.host.as_str())];
            ConstGauge::new(i64::from(r.serves_current)).encode(e.encode_family(&labels)?)?;
        }

        let mut e = encoder.encode_descriptor(
            "host_certificate_expiry_seconds",
            "Seconds until the certificate a host serves expires (when it is the current or the previous one)",
            None,
            MetricType::Gauge,
        )?;
        for r in &s.served {
            if let Some(not_after) = r.served_not_after {
                let labels = [("certificate", r.certificate.as_str()), ("host", r.host.as_str())];
                ConstGauge::new(not_after - now).encode(e.encode_family(&labels)?)?;
            }
        }

        let mut e = encoder.encode_descriptor(
            "host_last_seen_timestamp_seconds",
            "When the host's agent last called the server (Unix time)",
            None,
            MetricType::Gauge,
        )?;
        for (host, at) in &s.last_seen {
            ConstGauge::new(*at).encode(e.encode_family(&[("host", host.as_str())])?)?;
        }
        Ok(())
    }
}

/// `SHA-256`s compared in constant time: neither the token's bytes nor its length leak.
fn token_matches(given: &str, want: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(want.as_bytes()));
    aws_lc_rs::constant_time::verify_slices_are_equal(&a, &b).is_ok()
}

/// `GET /metrics`: open, or with `--metrics-token FILE` only for `Authorization: Bearer` that
/// token (failures count towards the per-address limit, as admin tokens do).
pub async fn handler(State(s): State<AppState>, parts: Parts) -> Response {
    if let Some(want) = &s.metrics_token {
        if let Err(e) = check_not_blocked(&s, &parts) {
            return e.into_response();
        }
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| token_matches(g, want)) {
            let mut r = auth_failed(
                &s,
                &parts,
                "this needs the metrics token (Authorization: Bearer <contents of --metrics-token FILE>)",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    match s.metrics.render(&s.db, s.now()).await {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            tracing::error!("metrics: {e}");
            ApiFailure::from(e).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_label_is_the_directory_host() {
        assert_eq!(
            ca_label("https://acme-v02.api.letsencrypt.org/directory"),
            "acme-v02.api.letsencrypt.org"
        );
        assert_eq!(ca_label("https://localhost:14000/dir"), "localhost:14000");
        assert_eq!(ca_label("not a url"), "unknown");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("ab", "abc"));
        assert!(!token_matches("", "abc"));
    }

    #[test]
    fn reasons_come_from_the_engine_error() {
        assert_eq!(FailureReason::of(&EngineError::config("x")), FailureReason::Other);
        assert_eq!(
            FailureReason::of(&EngineError::NoCertificateUrl),
            FailureReason::CaError
        );
    }
}
