//! Inputs fuzzing found wrong (`fuzz/regressions/`), kept as ordinary tests.

use std::time::Duration;

use time::OffsetDateTime;

/// `Retry-After: 1531115311531` (48,000 years): callers add the delay to the current time
/// (ARI poll, backoff), which panicked. The delay is now capped so that always fits.
#[test]
fn huge_retry_after_delay_is_capped() {
    for value in ["1531115311531", "18446744073709551615"] {
        let d = certfleet_acme::parse_retry_after(value).unwrap();
        assert!(d >= Duration::from_secs(100 * 365 * 86_400), "{value}: {d:?}");
        let d = time::Duration::try_from(d).unwrap();
        assert!(OffsetDateTime::now_utc().checked_add(d).is_some(), "{value}");
    }
    assert_eq!(
        certfleet_acme::parse_retry_after(" 120 "),
        Some(Duration::from_secs(120))
    );
}
