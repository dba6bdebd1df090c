//! certfleet's ACME client (RFC 8555, with RFC 8738 IP identifiers, RFC 9773 renewal info,
//! EAB and ACME profiles). Protocol only: no files, no retries beyond what the protocol asks
//! for (badNonce, Retry-After), no CLI. Callers decide policy.
//!
//! Written here rather than taking instant-acme because we need RSA account keys (certbot's
//! accounts are RSA), alternate-chain downloads and ARI, and want one place that owns
//! the protocol's corner cases.

mod ari;
mod client;
mod directory;
mod error;
mod jws;
mod order;
mod poll;
mod types;

pub use ari::{RenewalInfo, cert_id};
#[doc(hidden)]
pub use client::parse_links;
pub use client::{AcmeClient, ClientOptions};
pub use directory::{Directory, DirectoryMeta};
pub use error::{AcmeError, Problem, ProblemKind, Subproblem};
pub use jws::{AccountKey, Eab};
pub use order::{Account, ChainOption, NewAccount, NewOrder, RevocationReason, revoke_with_cert_key};
pub use poll::Backoff;
#[doc(hidden)]
pub use poll::parse_retry_after;
pub use types::{
    AccountInfo, AuthorizationInfo, AuthorizationStatus, ChallengeInfo, ChallengeStatus, IdentifierJson,
    OrderInfo, OrderStatus,
};
