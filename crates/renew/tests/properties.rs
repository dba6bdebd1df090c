//! Properties of the renewal policy over generated certificates, ARI windows, confs, failure
//! histories and clocks: the decision is monotone in time, nothing is scheduled in the past,
//! and the backoff schedule is non-decreasing, bounded, and floored by the CA's Retry-After.

use certfleet_core::FixedClock;
use certfleet_renew::backoff::{SCHEDULE, backoff_delay, next_attempt};
use certfleet_renew::{
    AriWindow, CertFacts, Decision, LineageState, RenewalInput, decide, next_wakeup, parse_retry_after,
};
use proptest::prelude::*;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2025-03-01 00:00 UTC);

fn secs(s: i64) -> Duration {
    Duration::seconds(s)
}

/// An instant within about a year of `T0`.
fn instant() -> impl Strategy<Value = OffsetDateTime> {
    (-400 * 86_400i64..400 * 86_400).prop_map(|s| T0 + secs(s))
}

/// Everything `decide` reads, generated.
#[derive(Debug, Clone)]
struct Case {
    cert: CertFacts,
    ari: Option<AriWindow>,
    renew_before: Option<&'static str>,
    state: Option<LineageState>,
    force: bool,
    autorenew: bool,
    next_run: Option<OffsetDateTime>,
}

impl Case {
    fn at(&self, now: OffsetDateTime) -> Decision {
        let input = RenewalInput {
            cert: &self.cert,
            ari: self.ari.as_ref(),
            renew_before_expiry: self.renew_before,
            state: self.state.as_ref(),
            force: self.force,
            autorenew: self.autorenew,
            next_run: self.next_run,
        };
        decide(&input, &FixedClock::new(now)).expect("only valid renew_before_expiry values are generated")
    }
}

fn cert() -> impl Strategy<Value = CertFacts> {
    (
        instant(),
        3600i64..400 * 86_400,
        prop::collection::vec(any::<u8>(), 0..20),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(not_before, lifetime, serial, mismatch)| CertFacts {
            not_before,
            not_after: not_before + secs(lifetime),
            serial,
            conf_mismatch: mismatch.then(|| "names to add: b.example.com".to_string()),
            live_broken: None,
        })
}

/// A window that may be empty or reversed (invalid: ignored by `decide`).
fn ari() -> impl Strategy<Value = Option<AriWindow>> {
    prop::option::weighted(
        0.5,
        (instant(), -86_400i64..30 * 86_400, prop::option::of(instant())).prop_map(|(start, len, retry)| {
            AriWindow {
                start,
                end: start + secs(len),
                explanation_url: None,
                retry_after: retry,
            }
        }),
    )
}

/// A failure history: failures at increasing times, some with a Retry-After, maybe a success.
fn state() -> impl Strategy<Value = Option<LineageState>> {
    let event = (
        0i64..3 * 86_400,
        prop::option::of(-3600i64..7 * 86_400),
        prop::bool::weighted(0.1),
    );
    prop::option::weighted(
        0.7,
        (instant(), prop::collection::vec(event, 0..8)).prop_map(|(mut t, events)| {
            let mut s = LineageState::new("example.com");
            for (gap, retry_after, success) in events {
                t += secs(gap);
                if success {
                    s.record_success(t);
                } else {
                    s.record_failure(t, "connection refused", retry_after.map(|r| t + secs(r)));
                }
            }
            s
        }),
    )
}

fn case() -> impl Strategy<Value = Case> {
    let renew_before = prop::option::of(prop::sample::select(vec![
        "30 days",
        "7",
        "12 hours",
        "2 weeks",
        "1 month 2 days",
        "1 year",
        "90 days",
    ]));
    (
        cert(),
        ari(),
        renew_before,
        state(),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.9),
        prop::option::of(instant()),
    )
        .prop_map(
            |(cert, ari, renew_before, state, force, autorenew, next_run)| Case {
                cert,
                ari,
                renew_before,
                state,
                force,
                autorenew,
                next_run,
            },
        )
}

fn is_due(d: &Decision) -> bool {
    !matches!(d, Decision::NotYet { .. } | Decision::Disabled { .. })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Once due at `t`, due at every later instant with the same inputs; once renewing now,
    /// renewing now later too (a backoff or a CA wait that is over stays over).
    #[test]
    fn decision_is_monotone_in_time(c in case(), t in instant(), later in 0i64..500 * 86_400) {
        let t2 = t + secs(later);
        let (d1, d2) = (c.at(t), c.at(t2));
        if is_due(&d1) {
            prop_assert!(is_due(&d2), "due at {t} ({d1}) but not at {t2} ({d2})");
        }
        if d1.is_renew_now() {
            prop_assert!(d2.is_renew_now(), "renewing at {t} ({d1}) but not at {t2} ({d2})");
        }
    }

    /// A `NotYet` names the instant at which the same inputs are due.
    #[test]
    fn due_at_is_when_it_becomes_due(c in case(), t in instant()) {
        if let Decision::NotYet { due_at, .. } = c.at(t) {
            prop_assert!(due_at > t);
            let then = c.at(due_at);
            prop_assert!(is_due(&then), "not due at its own due_at {due_at}: {then}");
            // ... and not a second earlier (the due time is the first one).
            let before = c.at(due_at - Duration::SECOND);
            prop_assert!(!is_due(&before) || due_at - Duration::SECOND <= t, "due before {due_at}: {before}");
        }
    }

    /// Nothing is scheduled in the past: due, retry and wake-up times are after `now`.
    #[test]
    fn never_schedules_in_the_past(c in case(), t in instant()) {
        let d = c.at(t);
        match &d {
            Decision::NotYet { due_at, .. } => prop_assert!(*due_at > t),
            Decision::InBackoff { retry_at, .. } => prop_assert!(*retry_at > t),
            Decision::RenewNow { .. } | Decision::Disabled { .. } => {}
        }
        prop_assert!(d.wake_at(t).is_none_or(|w| w >= t));
        let wake = next_wakeup(t, [(&d, c.state.as_ref())]);
        prop_assert!(wake.is_none_or(|w| w >= t));
        prop_assert!(wake.is_some() || !c.autorenew);
        if let Some(s) = &c.state
            && let Some(until) = s.backoff_until(t)
        {
            prop_assert!(until > t);
        }
    }

    /// certbot's `autorenew = False`: nothing but an explicit force renews, whatever the time.
    #[test]
    fn autorenew_off_is_never_due_unless_forced(c in case(), t in instant()) {
        let c = Case { autorenew: false, force: false, ..c };
        prop_assert!(!is_due(&c.at(t)), "{}", c.at(t));
    }

    /// The schedule: nothing without failures, then non-decreasing in consecutive failures,
    /// never shorter than its first step nor longer than its last.
    #[test]
    fn backoff_is_non_decreasing_and_bounded(n in any::<u32>()) {
        let (first, last) = (SCHEDULE[0], SCHEDULE[SCHEDULE.len() - 1]);
        prop_assert!(backoff_delay(n) <= backoff_delay(n.saturating_add(1)));
        prop_assert!(backoff_delay(n) <= last);
        if n == 0 {
            prop_assert_eq!(backoff_delay(n), Duration::ZERO);
        } else {
            prop_assert!(backoff_delay(n) >= first);
        }
    }

    /// The CA's Retry-After is a floor: the next attempt is never before it, nor before our
    /// own schedule, and is the later of the two.
    #[test]
    fn retry_after_is_a_floor(now in instant(), n in 1u32..50, ca in prop::option::of(instant())) {
        let next = next_attempt(now, n, ca);
        prop_assert!(next > now);
        prop_assert!(next >= now + backoff_delay(n));
        if let Some(ca) = ca {
            prop_assert!(next >= ca);
        }
        prop_assert_eq!(next, ca.map_or(now + backoff_delay(n), |ca| ca.max(now + backoff_delay(n))));
    }

    /// Recording failures: each backs off into the future, at least until the CA's time, and
    /// without Retry-After each wait is at least as long as the one before.
    #[test]
    fn consecutive_failures_back_off_longer(
        start in instant(),
        events in prop::collection::vec((0i64..86_400, prop::option::of(-3600i64..86_400)), 1..10),
    ) {
        let mut s = LineageState::new("example.com");
        let mut t = start;
        let mut last_own_wait = Duration::ZERO;
        for (gap, retry_after) in events {
            t += secs(gap);
            let ca = retry_after.map(|r| t + secs(r));
            s.record_failure(t, "timeout", ca);
            let until = s.backoff_until(t).expect("a failure backs off");
            prop_assert!(until > t);
            if let Some(ca) = ca {
                prop_assert!(until >= ca);
            }
            let own_wait = backoff_delay(s.consecutive_failures);
            prop_assert!(own_wait >= last_own_wait);
            prop_assert!(until - t >= own_wait);
            last_own_wait = own_wait;
        }
    }

    /// `Retry-After` in either form gives the instant it means.
    #[test]
    fn retry_after_header_forms(now in instant(), delay in any::<u32>(), at in instant()) {
        prop_assert_eq!(parse_retry_after(&delay.to_string(), now), Some(now + secs(i64::from(delay))));
        let date = at
            .format(&time::format_description::well_known::Rfc2822)
            .expect("formats")
            .replace("+0000", "GMT");
        prop_assert_eq!(parse_retry_after(&date, now), Some(at));
    }
}
