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
    #[error("cannot reach the ACME server at {url}: {}", with_root_cause(.source))]
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

/// An error's message plus its innermost cause: reqwest says only "error sending request
/// for url (...)"; why (connection refused, certificate unknown, DNS) is at the bottom of
/// its source chain.
pub(crate) fn with_root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut root = None;
    let mut cur = e.source();
    while let Some(c) = cur {
        root = Some(c);
        cur = c.source();
    }
    if let Some(root) = root {
        let why = root.to_string();
        if !msg.contains(&why) {
            msg.push_str(": ");
            msg.push_str(&why);
        }
    }
    msg
}

#[cfg(test)]
mod root_cause_tests {
    use super::with_root_cause;

    #[derive(Debug, thiserror::Error)]
    #[error("error sending request for url (http://127.0.0.1:1/dir)")]
    struct Outer(#[source] Middle);
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn http_error_message_names_the_innermost_cause() {
        let e = Outer(Middle(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        let m = with_root_cause(&e);
        assert!(m.starts_with("error sending request"), "{m}");
        assert!(m.to_lowercase().contains("connection refused"), "{m}");
        // No cause: unchanged.
        let plain = std::io::Error::other("x");
        assert_eq!(with_root_cause(&plain), "x");
    }
}
