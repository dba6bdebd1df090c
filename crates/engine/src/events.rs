//! Progress as events: the engine says what it is doing, the caller decides how to show it
//! (a spinner or plain lines in the CLI, a log or a dashboard in the server).

use time::OffsetDateTime;

use crate::EngineError;

/// Something worth telling whoever runs the engine.
#[derive(Debug)]
pub enum Event<'a> {
    /// A step of an issuance or an account registration ("ordering a certificate for ...").
    Step(&'a str),
    /// A renewal pass starts renewing a due lineage.
    Renewing { name: &'a str, reason: &'a str },
    /// A renewal pass saved a new version of a lineage.
    Renewed {
        name: &'a str,
        version: u32,
        not_after: OffsetDateTime,
    },
    /// A renewal pass failed to renew a lineage (its failure is remembered for backoff).
    RenewalFailed { name: &'a str, error: &'a EngineError },
}

/// Receives [`Event`]s; shared by concurrent renewals, so it must be thread-safe.
pub trait EventSink: Send + Sync {
    fn event(&self, e: &Event<'_>);
}

/// Drops every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn event(&self, _: &Event<'_>) {}
}

/// Report a step, and log it at debug level whatever the sink does with it.
pub(crate) fn step(events: &dyn EventSink, msg: &str) {
    tracing::debug!("{msg}");
    events.event(&Event::Step(msg));
}
