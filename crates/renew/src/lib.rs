//! Renewal that nobody has to watch: when a certificate is due ([`decide`]), what failures
//! taught us ([`state`], [`backoff`]), what runs around a renewal ([`hooks`], [`reload`]), and
//! how fast a batch talks to one CA ([`pacing`]).
//!
//! A renew run, per lineage: load its [`LineageState`] from a [`StateStore`]; if the CA has
//! ARI and [`LineageState::ari_poll_due`], fetch renewalInfo and [`LineageState::record_ari`];
//! [`decide`]; for [`Decision::RenewNow`], [`HookRunner::before_attempt`], renew under a
//! [`Pacer`] permit, then [`LineageState::record_success`] + [`HookRunner::renewed`], or
//! [`LineageState::record_failure`] + [`HookRunner::failed`]; save the state. At the end,
//! [`HookRunner::finish`] runs the post hooks, and a daemon sleeps until [`next_wakeup`].
//!
//! ```
//! use certfleet_core::FixedClock;
//! use certfleet_renew::{CertFacts, Decision, LineageState, RenewalInput, decide};
//! use time::{Duration, macros::datetime};
//!
//! let issued = datetime!(2025-01-01 0:00 UTC);
//! let cert = CertFacts { not_before: issued, not_after: issued + Duration::days(90),
//!                        serial: vec![1, 2, 3], conf_mismatch: None,
//!                        live_broken: None };
//! let mut state = LineageState::new("example.com");
//! let now = issued + Duration::days(61);
//! state.record_failure(now, "http-01 for example.com: connection refused", None);
//! let input = RenewalInput { state: Some(&state), ..RenewalInput::new(&cert) };
//! let d = decide(&input, &FixedClock::new(now)).unwrap();
//! assert!(matches!(d, Decision::InBackoff { .. }));
//! ```

pub mod backoff;
pub mod decide;
pub mod hooks;
pub mod interval;
pub mod pacing;
pub mod reload;
pub mod state;
mod ts;

pub use backoff::{backoff_delay, parse_retry_after};
pub use decide::{AriWindow, CertFacts, Decision, RenewalInput, decide, names_mismatch, next_wakeup};
pub use hooks::{
    DEFAULT_HOOK_TIMEOUT, HookCommand, HookConfig, HookKind, HookResult, HookRunner, HookStatus,
    LineageHooks, run_hook,
};
pub use interval::{IntervalError, RenewBefore};
pub use pacing::{Pacer, PacerPermit};
pub use reload::{ReloadCommands, ReloadError, ReloadReport, Service, ServiceError, deploy_reload};
pub use state::{AriState, LineageState, LoadedStates, StateError, StateStore};
