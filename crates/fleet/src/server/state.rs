//! What every request handler and the renewal loop share.

use std::sync::Arc;

use certfleet_core::Clock;
use tokio::sync::Notify;

use super::auth::FailureLimiter;
use super::metrics::Metrics;
use crate::db::FleetDb;
use crate::pki::InternalCa;
use crate::secretbox::SecretBox;

#[derive(Clone)]
pub struct AppState {
    pub db: FleetDb,
    pub clock: Arc<dyn Clock>,
    /// Issues agents' client certificates at enrollment.
    pub ca: Arc<InternalCa>,
    /// Seals server-custody private keys at rest.
    pub secretbox: Arc<SecretBox>,
    /// The API's URL as agents reach it (goes into enrollment tokens).
    pub public_url: String,
    /// SHA-256 of the API certificate (goes into enrollment tokens).
    pub fingerprint: String,
    pub limiter: Arc<FailureLimiter>,
    /// Wakes the renewal loop when something became due now (added, renew requested, CSR).
    pub wake: Arc<Notify>,
    /// Whether this server answers http-01 (`--http-01-listen`); http-01 certificates are
    /// refused otherwise, with the flag to add.
    pub http01_enabled: bool,
    /// This process's counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// `--metrics-token FILE`'s contents: `/metrics` needs it as a bearer token. `None`: open.
    pub metrics_token: Option<Arc<str>>,
}

impl AppState {
    pub fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }
}
