//! Errors at the edge: one message that says what failed and what to do, and an exit code
//! scripts can tell apart (documented in README and `certfleet --help`).

use std::fmt;

use certfleet_engine::EngineError;

/// Process exit codes. Stable: scripts and monitoring depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything worked (renew: renewed or nothing due).
    Success = 0,
    /// Unexpected failure.
    Failure = 1,
    /// Bad command line or bad input (names, files, flags).
    Usage = 2,
    /// The CA could not validate control of a name.
    Validation = 3,
    /// The CA refused a request, was unreachable or rate-limited us.
    Ca = 4,
    /// Local filesystem or store problem (permissions, lock held, corrupt files).
    Store = 5,
    /// renew: something failed, but every certificate is still valid.
    RenewFailedStillValid = 10,
    /// renew: a certificate is expired or will expire before the next retry.
    RenewExpiring = 11,
    /// A hook failed (the certificate itself was saved).
    Hook = 12,
    /// A check found something a human must fix: doctor (a check failed), import (a lineage
    /// would not carry over to certfleet as it is).
    NeedsAttention = 13,
}

#[derive(Debug)]
pub struct CliError {
    pub code: ExitCode,
    pub message: String,
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl CliError {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Usage, message)
    }

    pub fn store(e: impl fmt::Display) -> Self {
        Self::new(ExitCode::Store, e.to_string())
    }

    pub fn solver(e: certfleet_solvers::SolverError) -> Self {
        EngineError::Solver(e).into()
    }

    pub fn acme(e: certfleet_acme::AcmeError) -> Self {
        EngineError::Acme(e).into()
    }
}

/// The one place an engine error becomes an exit code; the message (with its hints) is the
/// engine's.
pub fn exit_code(e: &EngineError) -> ExitCode {
    use certfleet_acme::AcmeError as A;
    use certfleet_solvers::SolverError as S;
    match e {
        EngineError::Acme(A::AuthorizationFailed { .. })
        | EngineError::Validation { .. }
        | EngineError::ChallengeNotOffered { .. } => ExitCode::Validation,
        EngineError::Acme(_)
        | EngineError::ProfileRefused { .. }
        | EngineError::ProfileSwapped { .. }
        | EngineError::NoCertificateUrl
        | EngineError::UnreadableChain(_)
        | EngineError::UnreadableCertificate(_)
        | EngineError::CaIdentifier(_) => ExitCode::Ca,
        EngineError::Solver(S::Setup(_) | S::Io { .. }) | EngineError::Config { .. } => ExitCode::Usage,
        EngineError::Store(_)
        | EngineError::State(_)
        | EngineError::ReadKey { .. }
        | EngineError::BadKey { .. }
        | EngineError::AccountKey { .. }
        | EngineError::AccountUrl { .. }
        | EngineError::NoAccount { .. }
        | EngineError::SaveTask { .. } => ExitCode::Store,
        EngineError::Hook { .. } => ExitCode::Hook,
        EngineError::Solver(S::Other(_))
        | EngineError::Key(_)
        | EngineError::KeyTask(_)
        | EngineError::AccountKeyGeneration(_)
        | EngineError::Signal(_)
        | EngineError::Interrupted { .. } => ExitCode::Failure,
    }
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> Self {
        CliError {
            code: exit_code(&e),
            message: e.message(),
        }
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
