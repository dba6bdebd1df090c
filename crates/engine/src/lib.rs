//! certfleet's engine: the issuance pipeline ([`issue`]) and the renewal pass ([`renewal`]),
//! shared by the `certfleet` CLI and the fleet server.
//!
//! The engine reports progress as [`events`], takes the time from an injected
//! [`certfleet_core::Clock`], fails with a typed [`EngineError`], and hands issued
//! certificates back to the caller, who decides where they are stored. It knows the certbot
//! tree (accounts, lineages, renewal confs) because renewing means reading it, but knows
//! nothing of command lines or terminals.

pub mod account;
pub mod authenticator;
pub mod ca_cache;
pub mod deploy;
pub mod doctor;
pub mod error;
pub mod events;
pub mod issue;
pub mod lineage;
pub mod overrides;
pub mod renewal;

pub use error::EngineError;
pub use events::{Event, EventSink, NoEvents};
