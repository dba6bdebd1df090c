//! Polling cadence: the CA's Retry-After wins; otherwise start fast and back off to a cap.
//! A local CA validates in milliseconds, so a fixed multi-second sleep would dominate issuance
//! time; a public CA is polled at most every `max` so we never hammer it.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(10), Duration::from_secs(2))
    }
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { next: first, max }
    }

    /// How long to wait before the next poll, given the server's Retry-After if any.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let ours = self.next;
        self.next = (self.next * 2).min(self.max);
        // Honour the CA, but cap what a misbehaving server can make us sleep per poll.
        retry_after
            .map(|ra| ra.min(Duration::from_secs(60)))
            .unwrap_or(ours)
    }
}

/// The longest Retry-After delay taken as given (about 136 years); callers add the delay to
/// the current time, which a larger one would overflow.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(u32::MAX as u64);

/// Parse a Retry-After header value: delay-seconds (capped at [`MAX_RETRY_AFTER`]) or an
/// HTTP-date.
#[doc(hidden)]
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let when = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let delta = when - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(delta).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_cap_and_honours_retry_after() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(35));
        assert_eq!(b.next_delay(None), Duration::from_millis(10));
        assert_eq!(b.next_delay(None), Duration::from_millis(20));
        assert_eq!(b.next_delay(None), Duration::from_millis(35));
        assert_eq!(b.next_delay(Some(Duration::from_secs(3))), Duration::from_secs(3));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
