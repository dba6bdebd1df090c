//! dns-01: put `_acme-challenge` TXT records in place through a [`DnsProvider`], wait until
//! every authoritative server answers them, and remove exactly what was added.
//!
//! The pieces, one concept per module:
//! - [`provider`]: the [`DnsProvider`] trait and [`TxtRecord`]; one file per provider:
//!   [`rfc2136`] (dynamic update + TSIG), [`cloudflare`], [`exec`] (certbot's manual hooks),
//!   [`manual`] (print and wait for Enter);
//! - [`registry`]: every provider chosen by name, with certbot's names for its flags and
//!   renewal-conf keys;
//! - [`lookup`]: a tiny stub resolver (CNAME following, zone apex by SOA, NS addresses);
//! - [`propagation`]: poll each authoritative server until it answers the expected values;
//! - [`state`]: remember what was presented, so a crashed run's records are removed next time;
//! - [`credentials`]: certbot-style ini files (permission check) and [`Secret`];
//! - [`solver`]: [`Dns01Solver`], the [`crate::Solver`] tying it all together, and
//!   [`Dns01Config`], what the CLI fills in.
//!
//! Test affordance: lookups go to one configurable resolver (`--dns-resolver IP:PORT`). When
//! an authoritative server's address is a loopback address, it is queried at the resolver's
//! port instead of 53, so a single BIND on `127.0.0.1:<port>` can play resolver and every
//! authoritative server in tests.

pub mod cloudflare;
pub mod credentials;
pub mod exec;
pub mod lookup;
pub mod manual;
pub mod propagation;
pub mod provider;
pub mod registry;
pub mod rfc2136;
pub mod solver;
pub mod state;
mod wire;

pub use credentials::Secret;
pub use provider::{DnsProvider, TxtRecord};
pub use registry::{PROVIDERS, Registration};
pub use solver::{Dns01Config, Dns01Solver, ProviderConfig, txt_value};
pub use wire::TsigAlgorithm;
#[doc(hidden)]
pub use wire::parse_response;

use std::path::PathBuf;

/// Everything that can go wrong in dns-01. Messages name the domain, server or file involved
/// and, where there is one, the fix. Secrets never appear in them.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A credentials file is readable by others: refuse, and say how to fix it.
    #[error("credentials file {path} is accessible by other users (mode {mode:o}); run: chmod 600 {path}")]
    InsecureCredentials { path: PathBuf, mode: u32 },
    /// A credentials file is missing a setting, or a setting is invalid.
    #[error("credentials file {path}: {why}")]
    Credentials { path: PathBuf, why: String },
    /// A DNS query or update could not be exchanged (timeout, bad answer, ...).
    #[error("DNS server {server}: {why}")]
    Transport { server: String, why: String },
    /// A name could not be resolved (CNAME, SOA, NS, address).
    #[error("DNS lookup of {name} via {resolver}: {why}")]
    Lookup {
        name: String,
        resolver: String,
        why: String,
    },
    /// The provider refused or failed to change a record.
    #[error("{provider}: {why}")]
    Provider { provider: &'static str, why: String },
    /// Not every authoritative server answered the expected values in time.
    #[error("DNS propagation: {0}")]
    Propagation(String),
    /// Bad configuration or input (e.g. an IP identifier for dns-01).
    #[error("{0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl DnsError {
    pub(crate) fn provider(provider: &'static str, why: impl Into<String>) -> Self {
        DnsError::Provider {
            provider,
            why: why.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        DnsError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<DnsError> for crate::SolverError {
    fn from(e: DnsError) -> Self {
        match e {
            DnsError::Io { context, source } => crate::SolverError::Io { context, source },
            e @ (DnsError::InsecureCredentials { .. }
            | DnsError::Credentials { .. }
            | DnsError::Config(_)) => crate::SolverError::Setup(e.to_string()),
            e => crate::SolverError::Other(e.to_string()),
        }
    }
}

/// `name` lower-cased, without a trailing dot: the one spelling used inside this module.
pub(crate) fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
