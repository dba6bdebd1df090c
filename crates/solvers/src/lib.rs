//! Challenge solvers: make the CA's validation succeed for a batch of identifiers.
//!
//! A solver gets every challenge of an order at once so it can present all records/files
//! first, check they are really reachable (e.g. DNS propagation at every authoritative
//! server), and only then let the caller tell the CA to validate. `cleanup` must be safe to
//! call after a partial `present` and must only remove what this run put in place.

pub mod dns;

pub mod http01;
pub mod http01_manual;
mod listener;
mod manual_hooks;
pub mod tlsalpn01;
pub mod webserver;

use certfleet_core::{ChallengeType, Identifier};

/// One challenge to satisfy.
#[derive(Debug, Clone)]
pub struct ChallengeTask {
    /// The identifier being validated (for a wildcard, the `*.` name as ordered).
    pub identifier: Identifier,
    /// The challenge token (http-01 file name; informational for dns-01).
    pub token: String,
    /// `token.thumbprint`, RFC 8555 section 8.1.
    pub key_authorization: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SolverError {
    /// A problem the user must fix; the message names the domain/file/port and what to do.
    #[error("{0}")]
    Setup(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

#[async_trait::async_trait]
pub trait Solver: Send + Sync {
    fn challenge_type(&self) -> ChallengeType;

    /// Check the solver can work at all (ports free, directories writable, credentials
    /// readable) before an order is placed at the CA, so bad setup costs no CA request.
    async fn preflight(&self, identifiers: &[Identifier]) -> Result<(), SolverError> {
        let _ = identifiers;
        Ok(())
    }

    /// Put every challenge response in place and return once each is verifiably visible.
    async fn present(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError>;

    /// Remove what `present` put in place. Called after success, failure and interruption.
    async fn cleanup(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError>;

    /// Remove everything `present` put in place that no `cleanup` has removed yet: for a run
    /// interrupted (Ctrl-C, SIGTERM) while its tasks were out of reach. Default: nothing.
    async fn cleanup_all(&self) -> Result<(), SolverError> {
        Ok(())
    }
}
