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
