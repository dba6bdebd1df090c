//! Inputs the property tests and fuzzing found wrong, kept as ordinary tests.

use certfleet_core::FixedClock;
use certfleet_renew::{AriWindow, CertFacts, Decision, RenewalInput, decide};
use time::macros::datetime;

/// An ARI window reaching past the certificate's expiry: `NotYet` used to name the chosen
/// instant after expiry, so a daemon sleeping until then woke up with an expired certificate.
#[test]
fn ari_time_after_expiry_is_due_at_expiry() {
    let cert = CertFacts {
        not_before: datetime!(2025-10-05 0:23:44 UTC),
        not_after: datetime!(2025-10-17 8:57:33 UTC),
        serial: vec![],
        conf_mismatch: None,
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
