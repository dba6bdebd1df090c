//! Errors at the edge: one message that says what failed and what to do, and an exit code
//! scripts can tell apart (documented in README and `certfleet --help`).

use std::fmt;

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
}

#[derive(Debug)]
pub struct CliError {
    pub code: ExitCode,
    pub message: String,
    /// How long the CA asked us to wait (`Retry-After` on an error, e.g. `rateLimited`);
    /// `renew` keeps it as a floor for the lineage's next attempt.
    pub retry_after: Option<std::time::Duration>,
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
            retry_after: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Usage, message)
    }

    pub fn store(e: impl fmt::Display) -> Self {
        Self::new(ExitCode::Store, e.to_string())
    }

    pub fn solver(e: certfleet_solvers::SolverError) -> Self {
        let code = match e {
            certfleet_solvers::SolverError::Setup(_) => ExitCode::Usage,
            certfleet_solvers::SolverError::Io { .. } => ExitCode::Usage,
            certfleet_solvers::SolverError::Other(_) => ExitCode::Failure,
        };
        Self::new(code, e.to_string())
    }

    pub fn acme(e: certfleet_acme::AcmeError) -> Self {
        use certfleet_acme::AcmeError as A;
        let mut msg = e.to_string();
        let code = match &e {
            A::AuthorizationFailed { .. } => ExitCode::Validation,
            A::Http { .. } => {
                msg.push_str("\n  hint: check --server, the network, and --ca-bundle for a private CA");
                ExitCode::Ca
            }
            _ => ExitCode::Ca,
        };
        if e.is_rate_limited()
            && let Some(ra) = e.retry_after()
        {
            msg.push_str(&format!(
                "\n  hint: the CA asks to wait {}s before retrying",
                ra.as_secs()
            ));
        }
        if let Some(p) = e.problem() {
            match p.kind() {
                certfleet_acme::ProblemKind::ExternalAccountRequired => {
                    msg.push_str(
                        "\n  hint: this CA needs External Account Binding: pass --eab-kid and --eab-hmac-key",
                    );
                }
                certfleet_acme::ProblemKind::InvalidProfile => {
                    msg.push_str("\n  hint: list the CA's profiles in its directory (meta.profiles)");
                }
                _ => {}
            }
        }
        let retry_after = e.retry_after();
        Self {
            retry_after,
            ..Self::new(code, msg)
        }
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
