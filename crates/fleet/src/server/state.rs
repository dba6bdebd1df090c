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

    /// A state for tests and benches that drive [`super::api::app`] without `serve`: the given
    /// database, clock and internal CA, a fixed sealing key, http-01 answered, `/metrics` open.
    #[doc(hidden)]
    pub fn for_tests(db: FleetDb, clock: Arc<dyn Clock>, ca: InternalCa) -> AppState {
        AppState {
            db,
            clock,
            ca: Arc::new(ca),
            secretbox: Arc::new(SecretBox::new(&[7; crate::secretbox::KEY_LEN])),
            public_url: "https://127.0.0.1:8443".into(),
            fingerprint: "00".into(),
            limiter: Arc::default(),
            wake: Arc::default(),
            http01_enabled: true,
            metrics: Arc::default(),
            metrics_token: None,
        }
    }
}
