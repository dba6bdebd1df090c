//! Issue 11: `certonly --deploy-hook "sh -c 'echo \"x\" >> f'"` wrote a renewal conf our own
//! reader then refused ("text after a triple-quoted value"), while certbot's configobj read it.
//! These tests hold the reader and the writer to configobj itself (Debian's python3-configobj,
//! the one certbot uses), many cases per Python process:
//! - every value we write reads back identically in certfleet and in configobj;
//! - a value we refuse to write is one configobj's own writer cannot round-trip either, and
//!   the refusal names the key;
//! - on arbitrary conf text, certfleet accepts exactly what configobj accepts, with the same
//!   values.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use certfleet_store::renewal_conf::Section;
use certfleet_store::{RenewalConf, StoreError, Value};
use proptest::prelude::*;
use serde_json::json;

/// Reads each file named in the JSON list on stdin as certbot does; prints, per file, the
/// flattened `[path, value]` pairs in file order, or null when configobj refuses the file.
/// With `roundtrip`, reads a JSON list of strings instead and prints whether configobj's own
/// writer stores each one so that its reader gets it back.
const PY: &str = r#"
import sys, json, os, tempfile, configobj

def flat(section, path, out):
    for k in section.scalars:
        out.append(['/'.join(path + [k]), section[k]])
    for s in section.sections:
        flat(section[s], path + [s], out)
    return out

def load(p):
    try:
        return flat(configobj.ConfigObj(p, encoding='utf-8', default_encoding='utf-8'), [], [])
    except (configobj.ConfigObjError, SyntaxError):
        return None

if sys.argv[1] == 'read':
    print(json.dumps([load(p) for p in json.load(sys.stdin)]))
else:
    d = tempfile.mkdtemp()
    p = os.path.join(d, 'x.conf')
    res = []
    for v in json.load(sys.stdin):
        c = configobj.ConfigObj(encoding='utf-8')
        c['k'] = v
        try:
            lines = c.write()
        except configobj.ConfigObjError:
            res.append(False)
            continue
        with open(p, 'wb') as f:
            f.write(b'\n'.join(l if isinstance(l, bytes) else l.encode('utf-8') for l in lines))
        back = load(p)
        res.append(back is not None and back == [['k', v]])
    print(json.dumps(res))
"#;

fn python(mode: &str, input: &serde_json::Value) -> serde_json::Value {
    let mut child = Command::new(common::PYTHON)
        .args(["-c", PY, mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run /usr/bin/python3 (python3-configobj)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Str(s) => json!(s),
        Value::List(l) => json!(l),
    }
}

/// Our reading of a file, in the Python script's shape.
fn flat_ours(path: &Path) -> serde_json::Value {
    fn walk(s: &Section, prefix: &str, out: &mut Vec<serde_json::Value>) {
        for (k, v) in s.iter() {
            out.push(json!([format!("{prefix}{k}"), to_json(v)]));
        }
        for name in s.section_names() {
            if let Some(sub) = s.section(name) {
                walk(sub, &format!("{prefix}{name}/"), out);
            }
        }
    }
    match RenewalConf::load(path) {
        Ok(c) => {
            let mut out = Vec::new();
            walk(c.root(), "", &mut out);
            json!(out)
        }
        Err(StoreError::ConfParse { .. }) => serde_json::Value::Null,
        Err(e) => panic!("{e}"),
    }
}

/// Characters and runs that matter to configobj's regexes, plus anything else.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "'", "\"", "'''", "\"\"\"", "#", ",", " ", "  ", "\t", "\n", "\r", "\r\n", "=", "[",
            "]", "\x0c", "\x0b", "\x1c", "\u{a0}", "\u{3000}", "\u{85}", "\u{2028}", "é", "😀",
            "\u{feff}", "\\",
        ])
        .prop_map(str::to_string),
        2 => "[a-z0-9/._-]{1,5}",
        1 => any::<char>().prop_map(String::from),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..max).prop_map(|v| v.concat())
}

/// The deploy hook from issue 11 and its relatives: written, read back by both.
#[test]
fn deploy_hook_with_both_quote_kinds_reads_back_in_certfleet_and_configobj() {
    let hooks = [
        "sh -c 'echo \"x\" >> f'",
        "sh -c \"echo 'x' >> f\"",
        "echo 'a''' \"b\"",
        "printf '%s\\n' \"it's\" >> '/var/log/x'",
    ];
    check_values(&hooks.map(str::to_string));
}

/// Writes `values` one key each; returns how many were refused.
fn check_values(values: &[String]) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    let mut written = RenewalConf::new();
    let mut refused = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let key = format!("renew_hook_{i}");
        let mut alone = RenewalConf::new();
        alone.set_param(&key, v.as_str());
        match alone.to_text() {
            Ok(_) => written.set_param(&key, v.as_str()),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("{key:?}")) && msg.contains("cannot store"),
                    "the refusal names the key and says why: {msg}"
                );
                refused.push(v.clone());
            }
        }
    }
    // A single list value too: certbot's webroot_path.
    written.set_param(
        "webroot_path",
        Value::List(vec!["/var/www/a b".into(), "/srv".into()]),
    );
    let path: PathBuf = tmp.path().join("x.conf");
    std::fs::write(&path, written.to_text().unwrap()).unwrap();

    let ours = flat_ours(&path);
    let expected: Vec<serde_json::Value> = written
        .params()
        .unwrap()
        .iter()
        .map(|(k, v)| json!([format!("renewalparams/{k}"), to_json(v)]))
        .collect();
    assert_eq!(ours, json!(expected), "certfleet reads back what it wrote");
    let theirs = python("read", &json!([path]));
    assert_eq!(theirs[0], json!(expected), "configobj reads back what we wrote");

    if !refused.is_empty() {
        let r = python("roundtrip", &json!(refused));
        for (v, ok) in refused.iter().zip(r.as_array().unwrap()) {
            assert_eq!(
                ok,
                &json!(false),
                "we refused {v:?}, but configobj's own writer stores it"
            );
        }
    }
    refused.len()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn any_value_we_write_reads_back_identically_in_certfleet_and_configobj(
        values in prop::collection::vec(text(12), 1..48)
    ) {
        check_values(&values);
    }

    #[test]
    fn reader_accepts_exactly_what_configobj_accepts(
        files in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![
                    3 => ("[a-c]{1,2}", prop::sample::select(vec![" = ", "=", " =  ", "\t= "]), text(8))
                        .prop_map(|(k, eq, v)| format!("{k}{eq}{v}")),
                    1 => ("[a-c]{1,2}", text(3)).prop_map(|(k, v)| format!("[{k}]{v}")),
                    1 => ("[a-c]{1,2}", text(3)).prop_map(|(k, v)| format!("  [[{k}]]{v}")),
                    1 => text(6),
                ],
                0..6,
            ).prop_map(|lines| lines.join("\n")),
            1..24,
        )
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = files
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let p = tmp.path().join(format!("{i}.conf"));
                std::fs::write(&p, t).unwrap();
                p
            })
            .collect();
        let theirs = python("read", &json!(paths));
        for (i, p) in paths.iter().enumerate() {
            prop_assert_eq!(flat_ours(p), theirs[i].clone(), "file {:?}", files[i]);
        }
    }
}

/// What configobj cannot store at all is refused up front, naming the key.
#[test]
fn unrepresentable_values_are_refused_with_the_key_named() {
    let bad = [
        "a ''' # b \"\"\" # c", // every quoting ends early at a triple quote + #
        "line one\r\nline two", // configobj strips the \r at a line end
        "x'''\ny\"\"\"\nz",     // multi-line with both triple quotes inside
    ];
    let n = check_values(&bad.map(str::to_string));
    assert_eq!(n, bad.len());
}
