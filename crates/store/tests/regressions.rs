//! Inputs fuzzing found wrong (`fuzz/regressions/`), kept as ordinary tests. Expected values
//! were checked against configobj 5.0.8 (what certbot reads renewal confs with).

use std::path::Path;

use certfleet_store::RenewalConf;

fn read(text: &str) -> RenewalConf {
    RenewalConf::parse(text, Path::new("t.conf")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A triple-quoted value ending with its own quote character: configobj's lazy regex reads
/// `'''bash -c 'echo "x"''''` as `bash -c 'echo "x"'`; the first `'''` is not the end.
#[test]
fn triple_quoted_value_may_end_with_a_quote() {
    let c = read("a = '''bash -c 'echo \"x\"''''\nb = '''two\nlines''''  # c\nc = '''x'''''\n");
    assert_eq!(c.get("a"), Some("bash -c 'echo \"x\"'"));
    assert_eq!(c.get("b"), Some("two\nlines'"));
    assert_eq!(c.get("c"), Some("x''"));
    // And what we write for such a hook (renewal_conf fuzz input) reads back.
    let mut w = RenewalConf::new();
    w.set_param("pre_hook", "o \"pre hook\"'");
    let text = w.to_text().unwrap();
    assert!(text.contains("pre_hook = '''o \"pre hook\"''''"), "{text}");
    assert_eq!(read(&text).param_str("pre_hook"), Some("o \"pre hook\"'"));
    assert!(RenewalConf::parse("a = '''x''' y\n", Path::new("t.conf")).is_err());
}

/// A value holding `'''` was written inside `'''` (as configobj does, which then cannot read it
/// back either) and came back cut short, the rest read as more keys.
#[test]
fn value_containing_a_triple_quote_round_trips() {
    for v in ["a''' \"b\"", "x\n'''\nchain = y", "a''' #b \"", "\"\"\" and '"] {
        let mut w = RenewalConf::new();
        w.set_param("renew_hook", v);
        let text = w.to_text().unwrap();
        assert_eq!(read(&text).param_str("renew_hook"), Some(v), "{text}");
    }
}

/// A key holding `=` was written bare (as configobj does) and read back as a shorter key whose
/// value swallowed the rest; a key named like a section made a file that does not read back.
#[test]
fn keys_with_equals_or_a_section_name() {
    let mut w = RenewalConf::new();
    w.set_webroot_map(&[
        ("vkey = /tmp/".into(), "/var/www".into()),
        ("a=\"b\"".into(), "x".into()),
    ]);
    let text = w.to_text().unwrap();
    let back = read(&text);
    assert_eq!(back.webroot_map(), w.webroot_map(), "{text}");
    w.set_webroot_map(&[("a'=\"b\"".into(), "x".into())]);
    assert!(w.to_text().is_err());

    let mut w = RenewalConf::new();
    w.set_param("k", "v");
    w.set("renewalparams", "v");
    let e = w.to_text().unwrap_err().to_string();
    assert!(e.contains("renewalparams"), "{e}");
}

/// Unicode white space around a value (here U+00A0) was written bare and stripped on reading,
/// by us and by configobj; it is quoted now.
#[test]
fn unicode_space_around_a_value_survives() {
    for v in ["\u{a0}x", "x\u{2003}", "\u{3000}"] {
        let mut w = RenewalConf::new();
        w.set_param("post_hook", v);
        w.set_param(
            "webroot_path",
            certfleet_store::Value::List(vec![v.into(), "b".into()]),
        );
        let text = w.to_text().unwrap();
        let back = read(&text);
        assert_eq!(back.param_str("post_hook"), Some(v), "{text}");
        assert_eq!(back.webroot_path(), vec![v.to_string(), "b".into()], "{text}");
    }
}

/// A list ending with a quoted empty item (`x, ""`) lost that item: only a trailing comma
/// leaves no last item.
#[test]
fn quoted_empty_last_list_item_is_kept() {
    let c =
        read("[renewalparams]\na = \"\", \"\"\nb = x, \"\"\nc = x, \nd = x,\ne = \nf = \"\"\ng = '', # c\n");
    let list = |k: &str| c.param(k).map(certfleet_store::Value::to_list);
    assert_eq!(list("a"), Some(vec![String::new(), String::new()]));
    assert_eq!(list("b"), Some(vec!["x".to_string(), String::new()]));
    assert_eq!(list("c"), Some(vec!["x".to_string()]));
    assert_eq!(list("d"), Some(vec!["x".to_string()]));
    assert_eq!(c.param("e"), Some(&certfleet_store::Value::Str(String::new())));
    assert_eq!(c.param("f"), Some(&certfleet_store::Value::Str(String::new())));
    assert_eq!(list("g"), Some(vec![String::new()]));
    let mut w = RenewalConf::new();
    w.set_param(
        "webroot_path",
        certfleet_store::Value::List(vec!["".into(), "".into()]),
    );
    assert_eq!(
        read(&w.to_text().unwrap()).param("webroot_path"),
        w.param("webroot_path")
    );
}

/// A key starting with U+FEFF written first in the file lost it: read back, it is the byte
/// order mark the reader skips.
#[test]
fn key_starting_with_a_byte_order_mark() {
    let mut w = RenewalConf::new();
    w.set("\u{feff}k", "v");
    let text = w.to_text().unwrap();
    assert_eq!(read(&text).get("\u{feff}k"), Some("v"), "{text:?}");
}

/// configobj's list regex backtracks over every way to split quoted items; so did our reader,
/// taking exponential time on a line like `k = "a", "a", ... ,,` (configobj itself takes
/// minutes at 20 items). It stays linear-ish now, with the same answers.
#[test]
fn list_backtracking_is_not_exponential() {
    let start = std::time::Instant::now();
    for tail in [",,", "x\"y\"z, ,"] {
        let text = format!("k = {}{tail}\n", "\"a\", ".repeat(60));
        assert!(RenewalConf::parse(&text, Path::new("t.conf")).is_err());
    }
    let text = format!("k = {}\"a\" # c\n", "\"a\", ".repeat(200));
    assert_eq!(read(&text).root().get("k").map(|v| v.to_list().len()), Some(201));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
