//! How long to wait after consecutive failures: 1 min, 10 min, 100 min, then daily. Short
//! first steps recover from a blip (a reloading web server) within the same timer run; the
//! daily cap keeps a broken lineage from hammering the CA (Let's Encrypt's failed-validation
//! limit is per hour) while still retrying long before a 1/3-lifetime margin runs out.

use time::{Duration, OffsetDateTime};

pub const SCHEDULE: [Duration; 4] = [
    Duration::minutes(1),
    Duration::minutes(10),
    Duration::minutes(100),
    Duration::days(1),
];

/// Delay after the `consecutive_failures`-th failure in a row (0 means no failure: no delay).
pub fn backoff_delay(consecutive_failures: u32) -> Duration {
    match consecutive_failures {
        0 => Duration::ZERO,
        n => SCHEDULE[(n as usize - 1).min(SCHEDULE.len() - 1)],
    }
}

/// The next allowed attempt: the schedule, but never before what the CA demanded.
pub fn next_attempt(
    now: OffsetDateTime,
    consecutive_failures: u32,
    ca_retry_after: Option<OffsetDateTime>,
) -> OffsetDateTime {
    let own = now + backoff_delay(consecutive_failures);
    match ca_retry_after {
        Some(ca) if ca > own => ca,
        _ => own,
    }
}

/// An HTTP `Retry-After` value (delay-seconds or HTTP-date) as an absolute time.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u32>() {
        return Some(now + Duration::seconds(i64::from(secs)));
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn schedule_steps_then_daily() {
        assert_eq!(backoff_delay(0), Duration::ZERO);
        assert_eq!(backoff_delay(1), Duration::minutes(1));
        assert_eq!(backoff_delay(2), Duration::minutes(10));
        assert_eq!(backoff_delay(3), Duration::minutes(100));
        assert_eq!(backoff_delay(4), Duration::days(1));
        assert_eq!(backoff_delay(40), Duration::days(1));
        assert_eq!(backoff_delay(u32::MAX), Duration::days(1));
    }

    #[test]
    fn ca_retry_after_is_a_floor() {
        let now = datetime!(2025-01-01 00:00 UTC);
        assert_eq!(next_attempt(now, 1, None), now + Duration::minutes(1));
        assert_eq!(
            next_attempt(now, 1, Some(now + Duration::hours(3))),
            now + Duration::hours(3)
        );
        // An earlier CA time does not shorten our own backoff.
        assert_eq!(
            next_attempt(now, 4, Some(now + Duration::hours(3))),
            now + Duration::days(1)
        );
    }

    #[test]
    fn retry_after_header_forms() {
        let now = datetime!(2025-01-01 00:00 UTC);
        assert_eq!(parse_retry_after("120", now), Some(now + Duration::minutes(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(datetime!(2015-10-21 07:28 UTC))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
