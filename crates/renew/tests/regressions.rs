//! Inputs the property tests and fuzzing found wrong, kept as ordinary tests.

use certfleet_core::FixedClock;
use certfleet_renew::{AriWindow, CertFacts, Decision, RenewalInput, decide};
use time::macros::datetime;

/// A renewalInfo answer with an absurd Retry-After: keeping its window panicked on overflow.
#[test]
fn ari_window_with_huge_retry_after_does_not_overflow() {
    let now = datetime!(2025-06-01 12:00 UTC);
    let huge = std::time::Duration::from_secs(1_531_115_311_531);
    let w = AriWindow::new(now, now + time::Duration::days(1), None, now, Some(huge));
    assert_eq!(w.retry_after, None, "a poll time past year 9999 is no poll time");
    let w = AriWindow::new(
        now,
        now + time::Duration::days(1),
        None,
        now,
        Some(std::time::Duration::from_secs(60)),
    );
    assert_eq!(w.retry_after, Some(now + time::Duration::minutes(1)));
}

/// An ARI window reaching past the certificate's expiry: `NotYet` used to name the chosen
/// instant after expiry, so a daemon sleeping until then woke up with an expired certificate.
#[test]
fn ari_time_after_expiry_is_due_at_expiry() {
    let cert = CertFacts {
        not_before: datetime!(2025-10-05 0:23:44 UTC),
        not_after: datetime!(2025-10-17 8:57:33 UTC),
        serial: vec![],
        conf_mismatch: None,
        live_broken: None,
    };
    let window = AriWindow {
        start: datetime!(2025-10-03 3:28:26 UTC),
        end: datetime!(2025-10-24 2:29:35 UTC),
        explanation_url: None,
        retry_after: None,
    };
    assert!(
        window.chosen_instant(&cert.serial) > cert.not_after,
        "the case needs a late choice"
    );
    let input = RenewalInput {
        ari: Some(&window),
        ..RenewalInput::new(&cert)
    };
    let now = datetime!(2025-03-01 0:00 UTC);
    match decide(&input, &FixedClock::new(now)).unwrap() {
        Decision::NotYet { due_at, reason } => {
            assert_eq!(due_at, cert.not_after, "{reason}");
            assert!(reason.contains("expires"), "{reason}");
        }
        other => panic!("expected NotYet, got {other:?}"),
    }
}
