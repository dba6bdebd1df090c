//! Problem documents (RFC 8555 section 6.7, RFC 7807) turned into typed errors.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Subproblem {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub detail: String,
    pub identifier: Option<crate::types::IdentifierJson>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Problem {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub detail: String,
    pub status: Option<u16>,
    #[serde(default)]
    pub subproblems: Vec<Subproblem>,
    pub identifier: Option<crate::types::IdentifierJson>,
    pub instance: Option<String>,
}

/// The ACME error types a caller may act on; the rest are `Other` with their URN kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    BadNonce,
    RateLimited,
    Unauthorized,
    Connection,
    Dns,
    Caa,
    Tls,
    IncorrectResponse,
    RejectedIdentifier,
    Malformed,
    AccountDoesNotExist,
    ExternalAccountRequired,
    UserActionRequired,
    BadCsr,
    OrderNotReady,
    AlreadyRevoked,
    BadRevocationReason,
    InvalidProfile,
    AlreadyReplaced,
    ServerInternal,
    Other,
}

impl Problem {
    pub fn kind(&self) -> ProblemKind {
        let short = self.kind.rsplit(':').next().unwrap_or("");
        match short {
            "badNonce" => ProblemKind::BadNonce,
            "rateLimited" => ProblemKind::RateLimited,
            "unauthorized" => ProblemKind::Unauthorized,
            "connection" => ProblemKind::Connection,
            "dns" => ProblemKind::Dns,
            "caa" => ProblemKind::Caa,
            "tls" => ProblemKind::Tls,
            "incorrectResponse" => ProblemKind::IncorrectResponse,
            "rejectedIdentifier" => ProblemKind::RejectedIdentifier,
            "malformed" => ProblemKind::Malformed,
            "accountDoesNotExist" => ProblemKind::AccountDoesNotExist,
            "externalAccountRequired" => ProblemKind::ExternalAccountRequired,
            "userActionRequired" => ProblemKind::UserActionRequired,
            "badCSR" => ProblemKind::BadCsr,
            "orderNotReady" => ProblemKind::OrderNotReady,
            "alreadyRevoked" => ProblemKind::AlreadyRevoked,
            "badRevocationReason" => ProblemKind::BadRevocationReason,
            "invalidProfile" => ProblemKind::InvalidProfile,
            "alreadyReplaced" => ProblemKind::AlreadyReplaced,
            "serverInternal" => ProblemKind::ServerInternal,
            _ => ProblemKind::Other,
        }
    }

    /// The short type name (`rateLimited`), for messages.
    pub fn short_type(&self) -> &str {
        self.kind.rsplit(':').next().unwrap_or(&self.kind)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.short_type())?;
        if let Some(id) = &self.identifier {
            write!(f, " for {}", id.value)?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        for sub in &self.subproblems {
            write!(f, "\n  - ")?;
            if let Some(id) = &sub.identifier {
                write!(f, "{}: ", id.value)?;
            }
            write!(
                f,
                "{} ({})",
                sub.detail,
                sub.kind.rsplit(':').next().unwrap_or("")
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("the CA refused the request: {problem}")]
    Problem {
        problem: Box<Problem>,
        /// From the response's Retry-After, e.g. with `rateLimited`.
        retry_after: Option<Duration>,
    },
    #[error("cannot reach the ACME server at {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("unexpected response from {url}: {what}")]
    Protocol { url: String, what: String },
    #[error("{what} did not finish within {waited:?} (last status: {status})")]
    Timeout {
        what: String,
        waited: Duration,
        status: String,
    },
    #[error("authorization for {identifier} failed: {problem}")]
    AuthorizationFailed {
        identifier: String,
        challenge: String,
        problem: Box<Problem>,
    },
    #[error("the order became invalid: {0}")]
    OrderInvalid(String),
    #[error("key error: {0}")]
    Key(String),
}

impl AcmeError {
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            AcmeError::Problem { problem, .. } | AcmeError::AuthorizationFailed { problem, .. } => {
                Some(problem)
            }
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AcmeError::Problem { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn is_rate_limited(&self) -> bool {
        self.problem()
            .is_some_and(|p| p.kind() == ProblemKind::RateLimited)
    }
}
