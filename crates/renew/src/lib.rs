//! Renewal that nobody has to watch: when a certificate is due ([`decide`]), what failures
//! taught us ([`state`], [`backoff`]), what runs around a renewal ([`hooks`], [`reload`]), and
//! how fast a batch talks to one CA ([`pacing`]).

pub mod backoff;
pub mod decide;
pub mod hooks;
pub mod interval;
pub mod pacing;
pub mod reload;
pub mod state;
mod ts;

pub use backoff::{backoff_delay, parse_retry_after};
pub use decide::{AriWindow, CertFacts, Decision, RenewalInput, decide, next_wakeup};
pub use hooks::{
    DEFAULT_HOOK_TIMEOUT, HookCommand, HookConfig, HookKind, HookResult, HookRunner, HookStatus,
    LineageHooks, run_hook,
};
pub use interval::{IntervalError, RenewBefore};
pub use pacing::{Pacer, PacerPermit};
pub use reload::{ReloadCommands, ReloadError, ReloadReport, Service, ServiceError, deploy_reload};
pub use state::{AriState, LineageState, LoadedStates, StateError, StateStore};
