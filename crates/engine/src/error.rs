//! [`EngineError`]: everything issuance and renewal can fail with, keeping the underlying
//! error as its source. Callers decide what it means for them (the CLI maps each variant to
//! an exit code and adds hints, in one place; the fleet server records it).

use std::path::PathBuf;
use std::time::Duration;

use certfleet_acme::{AcmeError, ProblemKind};
use certfleet_core::ChallengeType;
use certfleet_core::cert::CertParseError;
use certfleet_core::identifier::IdentifierError;
use certfleet_core::keys::KeyError;
use certfleet_renew::StateError;
use certfleet_solvers::SolverError;
use certfleet_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The CA refused a request, was unreachable, or answered something unusable.
    #[error(transparent)]
    Acme(#[from] AcmeError),
    /// The challenge solver could not be set up or could not present its responses.
    #[error(transparent)]
    Solver(#[from] SolverError),
    /// The certbot tree (lineages, accounts, lock).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The renewal state store (failure memory, ARI windows).
    #[error(transparent)]
    State(#[from] StateError),
    /// The CA tried to validate a name and failed; `hints` say what to check.
    #[error(
        "the CA could not validate {identifier} with {challenge}: {}",
        problem_detail(source)
    )]
    Validation {
        identifier: String,
        challenge: ChallengeType,
        hints: Vec<String>,
        #[source]
        source: AcmeError,
    },
    /// The CA does not offer the solver's challenge type for a name.
    #[error(
        "the CA does not offer {challenge} for {identifier} (it offers: {}); choose another authenticator",
        offered.join(", ")
    )]
    ChallengeNotOffered {
        identifier: String,
        challenge: ChallengeType,
        offered: Vec<String>,
    },
    /// `invalidProfile` for a profile the caller asked for; `offered` describes the directory's.
    #[error("the CA refused the order with profile {profile:?}: {}", problem_text(source))]
    ProfileRefused {
        profile: String,
        offered: String,
        #[source]
        source: AcmeError,
    },
    /// A required profile was answered with an order of another profile.
    #[error(
        "--required-profile {asked}: the CA created the order with profile {got:?} instead; nothing was issued"
    )]
    ProfileSwapped { asked: String, got: String },
    /// The order is valid but names no certificate.
    #[error("the CA marked the order valid but gave no certificate URL")]
    NoCertificateUrl,
    /// The downloaded chain does not parse.
    #[error("the CA sent an unreadable certificate chain: {0}")]
    UnreadableChain(#[source] CertParseError),
    /// The leaf certificate does not parse.
    #[error(transparent)]
    UnreadableCertificate(CertParseError),
    /// An authorization names an identifier we cannot read back.
    #[error(transparent)]
    CaIdentifier(IdentifierError),
    /// Bad settings: flags, renewal-conf values, names, hook or reload settings.
    #[error("{what}")]
    Config { what: String },
    /// Generating a key or a CSR failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The key generation task died.
    #[error("key generation: {0}")]
    KeyTask(#[source] tokio::task::JoinError),
    /// A lineage's private key file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A lineage's private key file does not parse.
    #[error("{}: {source}", path.display())]
    BadKey {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    /// Generating a new account key failed.
    #[error(transparent)]
    AccountKeyGeneration(AcmeError),
    /// A saved account's key is unusable.
    #[error("account {id}: {source}")]
    AccountKey {
        id: String,
        #[source]
        source: AcmeError,
    },
    /// A saved account has no URL in its regr.json.
    #[error("account {id} has no URL in regr.json")]
    AccountUrl { id: String },
    /// A renewal conf names an account (or a server) we have no account for.
    #[error("{what}")]
    NoAccount { what: String },
    /// The task saving a new version died.
    #[error("saving {name}: {source}")]
    SaveTask {
        name: String,
        #[source]
        source: tokio::task::JoinError,
    },
    /// Hooks or reloads failed after the certificate was handled.
    #[error("{} hook(s) failed (see above); the certificate itself was handled as reported", failures.len())]
    Hook { failures: Vec<String> },
    /// A signal handler could not be installed.
    #[error("cannot install a SIGTERM handler: {0}")]
    Signal(#[source] std::io::Error),
    /// Ctrl-C or SIGTERM during an issuance: challenge responses were removed.
    #[error("{why}: challenge responses removed, nothing saved")]
    Interrupted { why: &'static str },
}

impl EngineError {
    pub fn config(what: impl Into<String>) -> Self {
        EngineError::Config { what: what.into() }
    }

    /// The ACME error underneath, if the CA was involved.
    pub fn acme(&self) -> Option<&AcmeError> {
        match self {
            EngineError::Acme(e)
            | EngineError::Validation { source: e, .. }
            | EngineError::ProfileRefused { source: e, .. } => Some(e),
            _ => None,
        }
    }

    /// How long the CA asked us to wait (`Retry-After` on a refused request, e.g.
    /// `rateLimited`); a renewal keeps it as a floor for the next attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EngineError::Acme(e) => e.retry_after(),
            _ => None,
        }
    }

    /// The CA refused `replaces` because the certificate was already replaced (RFC 9773),
    /// e.g. by an earlier run that crashed after its order.
    pub fn is_already_replaced(&self) -> bool {
        self.acme()
            .and_then(AcmeError::problem)
            .is_some_and(|p| p.kind() == ProblemKind::AlreadyReplaced)
    }

    /// What to check or do about this error, most useful first.
    pub fn hints(&self) -> Vec<String> {
        match self {
            EngineError::Acme(e) => acme_hints(e),
            EngineError::Validation { hints, .. } => hints.clone(),
            EngineError::ProfileRefused { profile, offered, .. } => vec![format!(
                "the CA's directory lists profiles ({offered}), but it does not accept {profile:?} for this order \
                 (account or CA policy); choose another with --preferred-profile/--required-profile, \
                 or drop the flag to get the CA's default profile"
            )],
            EngineError::ProfileSwapped { asked, .. } => vec![format!(
                "ask the CA operator which profiles this account may use, \
                 or use --preferred-profile {asked} to accept the CA's choice"
            )],
            _ => Vec::new(),
        }
    }

    /// The error and its hints, one `  hint: ` line each: what a person should read.
    pub fn message(&self) -> String {
        let mut msg = self.to_string();
        for h in self.hints() {
            msg.push_str("\n  hint: ");
            msg.push_str(&h);
        }
        msg
    }
}

fn acme_hints(e: &AcmeError) -> Vec<String> {
    let mut hints = Vec::new();
    if let AcmeError::Http { .. } = e {
        hints.push("check --server, the network, and --ca-bundle for a private CA".to_string());
    }
    if e.is_rate_limited()
        && let Some(ra) = e.retry_after()
    {
        hints.push(format!("the CA asks to wait {}s before retrying", ra.as_secs()));
    }
    match e.problem().map(|p| p.kind()) {
        Some(ProblemKind::ExternalAccountRequired) => hints
            .push("this CA needs External Account Binding: pass --eab-kid and --eab-hmac-key".to_string()),
        Some(ProblemKind::InvalidProfile) => {
            hints.push("list the CA's profiles in its directory (meta.profiles)".to_string())
        }
        _ => {}
    }
    hints
}

fn problem_detail(e: &AcmeError) -> &str {
    e.problem().map(|p| p.detail.as_str()).unwrap_or_default()
}

fn problem_text(e: &AcmeError) -> String {
    e.problem()
        .map(ToString::to_string)
        .unwrap_or_else(|| e.to_string())
}
