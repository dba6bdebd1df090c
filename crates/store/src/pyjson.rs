//! JSON text in the exact layout of Python's `json.dumps` defaults (`", "` and `": "`
//! separators, non-ASCII escaped), which is what certbot's account files look like. Any JSON
//! would load; matching byte for byte keeps diffs against certbot-written files empty.

/// A JSON string literal with `ensure_ascii`.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An object from (key, already-encoded value) pairs, in the given order.
pub fn object(fields: &[(&str, String)]) -> String {
    let inner: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}: {v}", string(k)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// Any JSON value (object members in the map's order).
pub fn value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "null".into(),
        serde_json::Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => string(s),
        serde_json::Value::Array(a) => {
            format!("[{}]", a.iter().map(value).collect::<Vec<_>>().join(", "))
        }
        serde_json::Value::Object(m) => {
            let fields: Vec<(&str, String)> = m.iter().map(|(k, v)| (k.as_str(), value(v))).collect();
            object(&fields)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn python_layout() {
        let v = serde_json::json!({"body": {}, "uri": "https://x/acct/1", "l": [1, "é"]});
        assert_eq!(
            super::value(&v),
            r#"{"body": {}, "l": [1, "\u00e9"], "uri": "https://x/acct/1"}"#
        );
    }
}
