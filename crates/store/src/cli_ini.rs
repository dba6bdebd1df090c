//! certbot's `cli.ini`, read with the rules of configargparse's `DefaultConfigFileParser`
//! (what certbot 2.1 uses): `key = value`, `key: value`, `key value`, a bare `flag`
//! (meaning `true`), comments starting with `#` or `;`, `[section]` and `---` lines ignored,
//! an inline comment after whitespace (`key = v  # note`). A key given twice keeps its first
//! position and its last value (Python's OrderedDict).

use std::path::{Path, PathBuf};

use crate::error::StoreError;

/// Where certbot looks, in order (later files override earlier ones).
pub fn default_paths() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/etc/letsencrypt/cli.ini")];
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => v.push(PathBuf::from(x).join("letsencrypt/cli.ini")),
        _ => {
            if let Some(home) = std::env::var_os("HOME") {
                v.push(PathBuf::from(home).join(".config/letsencrypt/cli.ini"));
            }
        }
    }
    v
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CliIni {
    /// (key, value) in file order; list values such as `[a, b]` are kept as written.
    pub entries: Vec<(String, String)>,
}

impl CliIni {
    pub fn load(path: &Path) -> Result<Self, StoreError> {
        let text = std::fs::read_to_string(path).map_err(|e| StoreError::io("read", path, e))?;
        Self::parse(&text, path)
    }

    /// Read every default file that exists, later ones overriding earlier ones.
    pub fn load_default() -> Result<Self, StoreError> {
        let mut out = CliIni::default();
        for p in default_paths() {
            if p.is_file() {
                for (k, v) in Self::load(&p)?.entries {
                    out.insert(k, v);
                }
            }
        }
        Ok(out)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, StoreError> {
        let mut out = CliIni::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with(['#', ';', '[']) || line.starts_with("---") {
                continue;
            }
            let (k, v) = parse_line(line).ok_or_else(|| StoreError::CliIni {
                path: path.to_path_buf(),
                line: i + 1,
                msg: format!("unexpected line {line:?}"),
            })?;
            out.insert(k, v);
        }
        Ok(out)
    }

    fn insert(&mut self, k: String, v: String) {
        match self.entries.iter_mut().find(|(key, _)| *key == k) {
            Some(e) => e.1 = v,
            None => self.entries.push((k, v)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Tail of the regex: `\s*(?:\s[;#]\s*(.*?)\s*)?$` on an already-stripped line.
fn tail_ok(s: &str) -> bool {
    if s.trim().is_empty() {
        return true;
    }
    s.starts_with(char::is_whitespace) && s.trim_start().starts_with([';', '#'])
}

fn ws_len(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

/// `^(key[^:=;#\s]+)\s*(?:([:=\s])\s*(['"]?)(value.+?)?\3)?` + tail, trying alternatives
/// in the order Python's backtracking `re` does.
fn parse_line(line: &str) -> Option<(String, String)> {
    let key_end = line
        .find(|c: char| c.is_whitespace() || matches!(c, ':' | '=' | ';' | '#'))
        .unwrap_or(line.len());
    if key_end == 0 {
        return None;
    }
    let key = &line[..key_end];
    let rest = &line[key_end..];
    let finish = |equal: Option<char>, value: Option<&str>| {
        let v = match (value, equal) {
            (Some(v), _) => v.to_string(),
            (None, Some(e)) if e != ' ' => String::new(),
            (None, _) => "true".to_string(),
        };
        Some((key.to_string(), v))
    };
    let ws0 = ws_len(rest);
    // Char boundaries inside the leading whitespace, longest first (`\s*` is greedy).
    let mut ws_choices: Vec<usize> = rest[..ws0].char_indices().map(|(i, _)| i).collect();
    ws_choices.push(ws0);
    ws_choices.reverse();
    for &p in &ws_choices {
        let after = &rest[p..];
        // The optional group, tried first.
        if let Some(eq) = after
            .chars()
            .next()
            .filter(|c| c.is_whitespace() || *c == ':' || *c == '=')
        {
            let after_eq = &after[eq.len_utf8()..];
            let ws1 = ws_len(after_eq);
            let mut ws1_choices: Vec<usize> = after_eq[..ws1].char_indices().map(|(i, _)| i).collect();
            ws1_choices.push(ws1);
            ws1_choices.reverse();
            for &q0 in &ws1_choices {
                let body = &after_eq[q0..];
                let quote = body.chars().next().filter(|c| *c == '"' || *c == '\'');
                let mut quotes: Vec<Option<char>> = Vec::new();
                if let Some(q) = quote {
                    quotes.push(Some(q));
                }
                quotes.push(None);
                for q in quotes {
                    let inner = match q {
                        Some(q) => &body[q.len_utf8()..],
                        None => body,
                    };
                    let close = q.map(|c| c.len_utf8()).unwrap_or(0);
                    // `(.+?)?`: value of increasing length, then no value.
                    let mut ends: Vec<usize> = inner.char_indices().skip(1).map(|(i, _)| i).collect();
                    ends.push(inner.len());
                    if inner.is_empty() {
                        ends.clear();
                    }
                    for e in ends.into_iter().map(Some).chain(std::iter::once(None)) {
                        let v_end = e.unwrap_or(0);
                        let after_v = &inner[v_end..];
                        let after_close = match q {
                            Some(qc) if after_v.starts_with(qc) => &after_v[close..],
                            Some(_) => continue,
                            None => after_v,
                        };
                        if tail_ok(after_close) {
                            return finish(Some(eq), e.map(|e| &inner[..e]));
                        }
                    }
                }
            }
        }
        if tail_ok(after) {
            return finish(None, None);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<(String, String)> {
        CliIni::parse(text, Path::new("cli.ini")).unwrap().entries
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn certbot_style_file() {
        let text = "# Because we are using logrotate for greater flexibility, disable the\n\
                    max-log-backups = 0\n\
                    \n\
                    ; comment\n\
                    [section]\n\
                    authenticator = webroot\n\
                    webroot-path = /var/www/html   # inline note\n\
                    key-type: ecdsa\n\
                    rsa-key-size 4096\n\
                    agree-tos\n\
                    email = \"admin@example.com\"\n\
                    empty =\n\
                    domains = [a.example, b.example]\n\
                    max-log-backups = 5\n";
        assert_eq!(
            parse(text),
            kv(&[
                ("max-log-backups", "5"),
                ("authenticator", "webroot"),
                ("webroot-path", "/var/www/html"),
                ("key-type", "ecdsa"),
                ("rsa-key-size", "4096"),
                ("agree-tos", "true"),
                ("email", "admin@example.com"),
                ("empty", ""),
                ("domains", "[a.example, b.example]"),
            ])
        );
    }

    #[test]
    fn errors_name_line() {
        let e = CliIni::parse("ok = 1\n=broken\n", Path::new("/etc/letsencrypt/cli.ini")).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("/etc/letsencrypt/cli.ini") && s.contains("line 2"),
            "{s}"
        );
    }
}
