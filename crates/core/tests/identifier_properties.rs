//! Properties of name normalisation, over generated names: normalising is idempotent (a
//! normalised name is its own normal form), and what comes out is a valid lowercase A-label name.

use certfleet_core::Identifier;
use certfleet_core::identifier::parse_domain_args;
use proptest::prelude::*;

/// Names as people type them: mixed case, a trailing dot, a wildcard, Unicode labels, and
/// the characters that make a name invalid.
fn typed_name() -> impl Strategy<Value = String> {
    let label = prop_oneof![
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?",
        "[a-zäöüßéçñøåæ0-9-]{1,10}",
        "(xn--)?[a-z0-9-]{1,12}",
        "[\\PC&&[^.]]{1,6}",
        "[a-z]{60,66}",
    ];
    (
        prop::option::of(prop_oneof![Just("*."), Just("*"), Just(" "), Just("-")]),
        prop::collection::vec(label, 1..5),
        prop::option::of(prop_oneof![Just("."), Just(".."), Just(" ")]),
    )
        .prop_map(|(prefix, labels, suffix)| {
            format!(
                "{}{}{}",
                prefix.unwrap_or(""),
                labels.join("."),
                suffix.unwrap_or("")
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn dns_normalisation_is_idempotent(name in typed_name()) {
        if let Ok(id) = Identifier::dns(&name) {
            let again = Identifier::dns(&id.value());
            prop_assert_eq!(again, Ok(id.clone()), "{:?} normalised to {:?}", name, id.value());
        }
    }

    #[test]
    fn normal_form_is_a_lowercase_a_label_name(name in typed_name()) {
        if let Ok(id) = Identifier::dns(&name) {
            let v = id.value();
            prop_assert!(v.len() <= 253, "{v}");
            prop_assert!(!v.ends_with('.') && !v.contains(".."), "{v}");
            let body = v.strip_prefix("*.").unwrap_or(&v);
            prop_assert!(
                body.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'),
                "{v}"
            );
            prop_assert!(body.split('.').all(|l| !l.is_empty() && l.len() <= 63), "{v}");
            prop_assert_eq!(id.is_wildcard(), v.starts_with("*."));
        }
    }

    #[test]
    fn any_string_normalises_idempotently_or_is_refused(name in any::<String>()) {
        if let Ok(id) = Identifier::dns(&name) {
            prop_assert_eq!(Identifier::dns(&id.value()), Ok(id));
        }
    }

    /// `-d` lists: the result is its own normal form, so reading it again changes nothing.
    #[test]
    fn domain_lists_are_idempotent(names in prop::collection::vec(typed_name(), 1..6)) {
        if let Ok(ids) = parse_domain_args(&names) {
            let values: Vec<String> = ids.iter().map(Identifier::value).collect();
            prop_assert_eq!(parse_domain_args(&values), Ok(ids));
        }
    }
}
