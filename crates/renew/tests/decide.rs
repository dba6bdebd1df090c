//! The renewal policy, driven by a fixed clock.

use certfleet_core::FixedClock;
use certfleet_renew::{AriWindow, CertFacts, Decision, LineageState, RenewalInput, decide, next_wakeup};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2025-03-01 00:00 UTC);

fn cert(lifetime: Duration) -> CertFacts {
    CertFacts {
        not_before: T0,
        not_after: T0 + lifetime,
        serial: vec![0x04, 0x2a, 0x99, 0x13],
        conf_mismatch: None,
        live_broken: None,
    }
}

fn at(input: &RenewalInput<'_>, now: OffsetDateTime) -> Decision {
    decide(input, &FixedClock::new(now)).unwrap()
}

fn due_at(d: &Decision) -> OffsetDateTime {
    match d {
        Decision::NotYet { due_at, .. } => *due_at,
        other => panic!("expected NotYet, got {other:?}"),
    }
}

fn reason(d: &Decision) -> &str {
    match d {
        Decision::RenewNow { reason } | Decision::NotYet { reason, .. } | Decision::Disabled { reason } => {
            reason
        }
        Decision::InBackoff { last_error, .. } => last_error,
    }
}

/// Checks the default rule: due at `nominal` minus a jitter of at most `max_jitter`.
fn check_default_rule(lifetime: Duration, nominal: Duration, max_jitter: Duration, label: &str) {
    let c = cert(lifetime);
    let input = RenewalInput::new(&c);
    let d = at(&input, T0 + nominal - max_jitter - Duration::seconds(1));
    let due = due_at(&d);
    assert!(
        due <= T0 + nominal && due >= T0 + nominal - max_jitter,
        "{lifetime}: due {due}"
    );
    assert!(reason(&d).contains(label), "{d}");
    // Stable between runs.
    assert_eq!(due_at(&at(&input, T0)), due);
    let just_before = at(&input, due - Duration::milliseconds(1));
    assert!(matches!(just_before, Decision::NotYet { .. }), "{just_before:?}");
    let now = at(&input, due);
    assert!(now.is_renew_now(), "{now:?}");
    assert!(reason(&now).contains(label), "{now}");
    assert!(at(&input, T0 + nominal).is_renew_now());
}

#[test]
fn ninety_day_cert_renews_with_a_third_left() {
    check_default_rule(
        Duration::days(90),
        Duration::days(60),
        Duration::hours(12),
        "one third",
    );
}

#[test]
fn forty_five_day_cert_renews_with_a_third_left() {
    check_default_rule(
        Duration::days(45),
        Duration::days(30),
        Duration::hours(12),
        "one third",
    );
}

#[test]
fn hundred_sixty_hour_cert_renews_at_half() {
    // 160 h / 50 = 3.2 h of jitter at most.
    check_default_rule(
        Duration::hours(160),
        Duration::hours(80),
        Duration::minutes(192),
        "half",
    );
}

#[test]
fn ninety_second_cert_renews_at_half() {
    check_default_rule(
        Duration::seconds(90),
        Duration::seconds(45),
        Duration::milliseconds(1800),
        "half",
    );
}

#[test]
fn jitter_is_bounded_and_spreads_a_fleet() {
    let mut dues = std::collections::BTreeSet::new();
    for i in 0u32..500 {
        let mut c = cert(Duration::days(90));
        c.serial = i.to_be_bytes().to_vec();
        let due = due_at(&at(&RenewalInput::new(&c), T0));
        assert!(due <= T0 + Duration::days(60) && due >= T0 + Duration::days(60) - Duration::hours(12));
        dues.insert(due);
    }
    assert!(
        dues.len() > 490,
        "jitter should differ per serial: {} distinct",
        dues.len()
    );
}

#[test]
fn expired_or_mismatched_is_due_now() {
    let c = cert(Duration::days(90));
    let d = at(&RenewalInput::new(&c), T0 + Duration::days(91));
    assert!(d.is_renew_now() && reason(&d).contains("expired"), "{d}");

    let c = cert(Duration::days(90)).with_mismatch("names changed: added www.example.com");
    let d = at(&RenewalInput::new(&c), T0 + Duration::days(1));
    assert!(d.is_renew_now(), "{d}");
    assert!(reason(&d).contains("added www.example.com"), "{d}");
}

fn window(start: OffsetDateTime, end: OffsetDateTime) -> AriWindow {
    AriWindow {
        start,
        end,
        explanation_url: None,
        retry_after: None,
    }
}

#[test]
fn ari_window_in_the_past_is_due_now() {
    let c = cert(Duration::days(90));
    let mut w = window(T0 + Duration::days(2), T0 + Duration::days(3));
    w.explanation_url = Some("https://ca.example/incident/42".into());
    let input = RenewalInput {
        ari: Some(&w),
        ..RenewalInput::new(&c)
    };
    let d = at(&input, T0 + Duration::days(5));
    assert!(d.is_renew_now(), "{d}");
    assert!(reason(&d).contains("already ended"), "{d}");
    assert!(reason(&d).contains("https://ca.example/incident/42"), "{d}");
}

#[test]
fn ari_window_in_the_future_waits_for_a_random_instant_inside_it() {
    let c = cert(Duration::days(90));
    let mut w = window(T0 + Duration::days(55), T0 + Duration::days(57));
    w.explanation_url = Some("https://ca.example/why".into());
    let input = RenewalInput {
        ari: Some(&w),
        ..RenewalInput::new(&c)
    };
    let d = at(&input, T0 + Duration::days(10));
    let due = due_at(&d);
    assert!(due >= w.start && due <= w.end, "{due}");
    assert_eq!(due, w.chosen_instant(&c.serial));
    assert!(
        reason(&d).contains("ARI") && reason(&d).contains("https://ca.example/why"),
        "{d}"
    );
    // ARI comes first: even past the one-third point, an unreached window means wait.
    assert!(!at(&input, T0 + Duration::days(54)).is_renew_now());
    let late = RenewalInput {
        ari: Some(&w),
        ..RenewalInput::new(&c)
    };
    let w_late = window(T0 + Duration::days(70), T0 + Duration::days(72));
    let late = RenewalInput {
        ari: Some(&w_late),
        ..late
    };
    assert!(matches!(
        at(&late, T0 + Duration::days(65)),
        Decision::NotYet { .. }
    ));
}

#[test]
fn ari_window_containing_now_renews_once_the_chosen_instant_passes() {
    let c = cert(Duration::days(90));
    let w = window(T0 + Duration::days(40), T0 + Duration::days(42));
    let chosen = w.chosen_instant(&c.serial);
    assert!(chosen > w.start && chosen < w.end);
    let input = RenewalInput {
        ari: Some(&w),
        ..RenewalInput::new(&c)
    };
    assert_eq!(due_at(&at(&input, chosen - Duration::seconds(1))), chosen);
    let d = at(&input, chosen);
    assert!(d.is_renew_now() && reason(&d).contains("has passed"), "{d}");

    // A twice-daily timer whose next run would overshoot the chosen instant renews now.
    let now = w.start.max(chosen - Duration::hours(6));
    let timer = RenewalInput {
        next_run: Some(now + Duration::hours(12)),
        ..input
    };
    let d = at(&timer, now);
    assert!(
        d.is_renew_now() && reason(&d).contains("next scheduled run"),
        "{d}"
    );
}

#[test]
fn ari_chosen_instant_is_deterministic_and_uniform() {
    let w = window(T0, T0 + Duration::hours(100));
    let mut sum = 0.0;
    for i in 0u32..2000 {
        let s = i.to_be_bytes();
        let a = w.chosen_instant(&s);
        assert_eq!(a, w.chosen_instant(&s));
        assert!(a >= w.start && a < w.end);
        sum += (a - w.start).as_seconds_f64() / 3600.0;
    }
    let mean = sum / 2000.0;
    assert!(
        (mean - 50.0).abs() < 4.0,
        "mean offset {mean} h should be near the middle"
    );
    // A moved window draws a new instant.
    let w2 = window(T0 + Duration::hours(1), T0 + Duration::hours(101));
    assert_ne!(
        w.chosen_instant(&[1]) + Duration::hours(1),
        w2.chosen_instant(&[1])
    );
}

#[test]
fn invalid_ari_window_is_ignored() {
    let c = cert(Duration::days(90));
    let w = window(T0 + Duration::days(5), T0 + Duration::days(5));
    let input = RenewalInput {
        ari: Some(&w),
        ..RenewalInput::new(&c)
    };
    let d = at(&input, T0 + Duration::days(10));
    assert!(
        reason(&d).contains("one third") && reason(&d).contains("invalid ARI window"),
        "{d}"
    );
}

#[test]
fn renew_before_expiry_overrides_the_default() {
    let c = cert(Duration::days(90));
    let input = RenewalInput {
        renew_before_expiry: Some("30 days"),
        ..RenewalInput::new(&c)
    };
    let d = at(&input, T0 + Duration::days(10));
    assert_eq!(
        due_at(&d),
        T0 + Duration::days(60),
        "no jitter on an explicit setting"
    );
    assert!(reason(&d).contains("renew_before_expiry = 30 days"), "{d}");
    assert!(at(&input, T0 + Duration::days(60)).is_renew_now());

    let input = RenewalInput {
        renew_before_expiry: Some("2 weeks"),
        ..RenewalInput::new(&c)
    };
    assert_eq!(due_at(&at(&input, T0)), T0 + Duration::days(76));
    let input = RenewalInput {
        renew_before_expiry: Some("12"),
        ..RenewalInput::new(&c)
    };
    assert_eq!(due_at(&at(&input, T0)), T0 + Duration::days(78));

    let short = cert(Duration::hours(160));
    let input = RenewalInput {
        renew_before_expiry: Some("12 hours"),
        ..RenewalInput::new(&short)
    };
    assert_eq!(due_at(&at(&input, T0)), T0 + Duration::hours(148));

    // Longer than the lifetime: due immediately (as certbot would).
    let input = RenewalInput {
        renew_before_expiry: Some("30 days"),
        ..RenewalInput::new(&short)
    };
    assert!(at(&input, T0).is_renew_now());

    // ARI still comes first.
    let w = window(T0 + Duration::days(80), T0 + Duration::days(81));
    let input = RenewalInput {
        ari: Some(&w),
        renew_before_expiry: Some("30 days"),
        ..RenewalInput::new(&c)
    };
    assert!(!at(&input, T0 + Duration::days(70)).is_renew_now());
}

#[test]
fn bad_renew_before_expiry_is_an_error_with_the_value() {
    let c = cert(Duration::days(90));
    let input = RenewalInput {
        renew_before_expiry: Some("30 dayz"),
        ..RenewalInput::new(&c)
    };
    let e = decide(&input, &FixedClock::new(T0)).unwrap_err();
    assert_eq!(e.value, "30 dayz");
    assert!(
        e.to_string().contains("\"30 dayz\"") && e.to_string().contains("dayz"),
        "{e}"
    );
}

#[test]
fn backoff_holds_a_due_lineage_back() {
    let c = cert(Duration::days(90));
    let now = T0 + Duration::days(61);
    let mut s = LineageState::new("example.com");
    s.record_failure(now, "http-01 for example.com: connection refused", None);
    s.record_failure(now, "http-01 for example.com: connection refused", None);
    let input = RenewalInput {
        state: Some(&s),
        ..RenewalInput::new(&c)
    };
    match at(&input, now + Duration::minutes(5)) {
        Decision::InBackoff { retry_at, last_error } => {
            assert_eq!(retry_at, now + Duration::minutes(10));
            assert!(
                last_error.contains("connection refused") && last_error.contains("2 consecutive"),
                "{last_error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(at(&input, now + Duration::minutes(10)).is_renew_now());

    // Not due at all: backoff is irrelevant, the answer is NotYet.
    let mut early = LineageState::new("example.com");
    early.record_failure(T0, "boom", None);
    let input = RenewalInput {
        state: Some(&early),
        ..RenewalInput::new(&c)
    };
    assert!(matches!(
        at(&input, T0 + Duration::seconds(1)),
        Decision::NotYet { .. }
    ));

    // Success resets.
    s.record_success(now + Duration::minutes(10));
    let input = RenewalInput {
        state: Some(&s),
        ..RenewalInput::new(&c)
    };
    assert!(at(&input, now + Duration::minutes(11)).is_renew_now());
}

#[test]
fn backoff_applies_to_ari_and_expired_too() {
    let c = cert(Duration::days(90));
    let w = window(T0 + Duration::days(1), T0 + Duration::days(2));
    let now = T0 + Duration::days(3);
    let mut s = LineageState::new("a");
    s.record_failure(now, "badNonce storm", None);
    let input = RenewalInput {
        ari: Some(&w),
        state: Some(&s),
        ..RenewalInput::new(&c)
    };
    assert!(matches!(at(&input, now), Decision::InBackoff { .. }));
    let input = RenewalInput {
        state: Some(&s),
        ..RenewalInput::new(&c)
    };
    let d = at(&input, T0 + Duration::days(100));
    assert!(d.is_renew_now(), "backoff long over: {d}");
}

#[test]
fn force_ignores_own_backoff_but_not_the_ca_rate_limit() {
    let c = cert(Duration::days(90));
    let mut s = LineageState::new("a");
    s.record_failure(T0, "timeout", None);
    let input = RenewalInput {
        state: Some(&s),
        force: true,
        ..RenewalInput::new(&c)
    };
    let d = at(&input, T0);
    assert!(d.is_renew_now() && reason(&d).contains("forced"), "{d}");

    s.record_failure(
        T0,
        "urn:ietf:params:acme:error:rateLimited: too many certificates",
        Some(T0 + Duration::hours(3)),
    );
    let input = RenewalInput {
        state: Some(&s),
        force: true,
        ..RenewalInput::new(&c)
    };
    match at(&input, T0 + Duration::hours(1)) {
        Decision::InBackoff { retry_at, last_error } => {
            assert_eq!(retry_at, T0 + Duration::hours(3));
            assert!(last_error.contains("rateLimited"), "{last_error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(at(&input, T0 + Duration::hours(3)).is_renew_now());
}

#[test]
fn next_wakeup_is_the_earliest_of_decisions_and_ari_polls() {
    let now = T0;
    let a = Decision::NotYet {
        due_at: now + Duration::hours(5),
        reason: String::new(),
    };
    let b = Decision::InBackoff {
        retry_at: now + Duration::hours(2),
        last_error: String::new(),
    };
    let c = Decision::NotYet {
        due_at: now + Duration::days(30),
        reason: String::new(),
    };
    assert_eq!(
        next_wakeup(now, [(&a, None), (&b, None), (&c, None)]),
        Some(now + Duration::hours(2))
    );

    let mut s = LineageState::new("c");
    let mut w = window(now + Duration::days(29), now + Duration::days(31));
    w.retry_after = Some(now + Duration::minutes(30));
    s.record_ari(now, &[1], w);
    assert_eq!(
        next_wakeup(now, [(&a, None), (&c, Some(&s))]),
        Some(now + Duration::minutes(30))
    );

    let r = Decision::RenewNow {
        reason: String::new(),
    };
    assert_eq!(next_wakeup(now, [(&a, None), (&r, None)]), Some(now));
    assert_eq!(next_wakeup(now, std::iter::empty()), None);
    // A due time already past wakes now, not in the past.
    let past = Decision::NotYet {
        due_at: now - Duration::hours(1),
        reason: String::new(),
    };
    assert_eq!(next_wakeup(now, [(&past, None)]), Some(now));
}

#[test]
fn decisions_read_well() {
    let c = cert(Duration::days(90));
    let d = at(&RenewalInput::new(&c), T0);
    let text = d.to_string();
    assert!(text.starts_with("not due until 2025-04-"), "{text}");
    assert!(text.contains("expires 2025-05-30T00:00:00Z"), "{text}");
}

#[test]
fn names_mismatch_describes_the_difference() {
    use certfleet_renew::names_mismatch;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names_mismatch(&s(&["a.test", "B.test"]), &s(&["b.test", "a.test."])),
        None
    );
    assert_eq!(
        names_mismatch(
            &s(&["a.test", "old.test"]),
            &s(&["a.test", "new.test", "*.a.test"])
        )
        .unwrap(),
        "names to add: *.a.test, new.test; names to remove: old.test"
    );
    let c = cert(Duration::days(90))
        .with_mismatch(names_mismatch(&s(&["a.test"]), &s(&["a.test", "www.a.test"])).unwrap());
    let d = at(&RenewalInput::new(&c), T0);
    assert!(
        d.is_renew_now() && reason(&d).contains("names to add: www.a.test"),
        "{d}"
    );
}

#[test]
fn ari_window_from_an_acme_answer() {
    let w = AriWindow::new(
        T0,
        T0 + Duration::days(1),
        Some("https://ca.example/x".into()),
        T0 - Duration::hours(1),
        Some(std::time::Duration::from_secs(21600)),
    );
    assert_eq!(w.retry_after, Some(T0 + Duration::hours(5)));
    assert!(w.is_valid());
}

/// certbot's `autorenew = False`: never due by itself, whatever the dates say; forcing renews.
#[test]
fn autorenew_off_waits_for_force() {
    let c = cert(Duration::days(90));
    let off = RenewalInput {
        autorenew: false,
        ..RenewalInput::new(&c)
    };
    let d = at(&off, T0 + Duration::days(91));
    assert!(matches!(d, Decision::Disabled { .. }), "{d}");
    assert!(reason(&d).contains("autorenew = False"), "{d}");
    assert_eq!(d.wake_at(T0), None, "a daemon never wakes for it");
    let forced = RenewalInput { force: true, ..off };
    assert!(at(&forced, T0 + Duration::days(1)).is_renew_now());
}
