//! The host agent's local half: its config file ([`AgentConfig`]) and the install pipeline
//! ([`Agent::install`]). The network half (enroll, pull, report) hands it a
//! [`Delivery`](crate::proto::Delivery) and sends back the
//! [`InstallReport`](crate::proto::InstallReport) it gets.
//!
//! Per `[[install]]` rule of the delivered certificate:
//!
//! 1. **check** without writing anything: the certificate, chain and full chain agree, the
//!    serial is the announced one, it has not expired, and the key (the server's, or this
//!    host's own found by [`Delivery::key_sha256`](crate::proto::Delivery::key_sha256)) is the
//!    certificate's key;
//! 2. **nothing to do** when every file already holds this certificate (same bytes, mode and
//!    owner) and the endpoint serves it: [`InstallState::Verified`], no reload;
//! 3. **write** every file beside its target, keep the current ones as `FILE.certfleet-prev`,
//!    switch them in (see [`files`]);
//! 4. **config test** (`nginx -t`...): on failure the previous files go back, no reload,
//!    [`InstallState::ConfigTestFailed`] with the end of the test's output;
//! 5. **reload**, then **verify** by a TLS handshake that the endpoint serves the new leaf
//!    (retrying until `verify_timeout`); if it serves something else, the previous files go
//!    back, the service is reloaded again and the result is [`InstallState::RolledBack`]
//!    naming the served and the expected serial.
//!
//! [`InstallState`]: crate::proto::InstallState
//! [`InstallState::Verified`]: crate::proto::InstallState::Verified
//! [`InstallState::ConfigTestFailed`]: crate::proto::InstallState::ConfigTestFailed
//! [`InstallState::RolledBack`]: crate::proto::InstallState::RolledBack

mod command;
pub mod config;
pub mod files;
mod install;
pub mod keys;
pub mod sync;
pub mod verify;

pub use command::COMMAND_PATH;
pub use config::{
    AgentConfig, ConfigError, ConfigIssue, Endpoint, FileKind, InstallRule, StartTls, TargetFile, VerifySpec,
};
pub use install::{Agent, AgentError, InstallOutcome};
pub use keys::{AgentKeys, spki_sha256};
