//! The wildcards of nginx's `include` and Apache's `Include`/`IncludeOptional` (`*`, `?`,
//! `[...]` in any path component; matches sorted, hidden files only for a pattern starting
//! with a dot), which is all both servers do (they use glob(3) / apr_match_glob).

use std::path::{Component, Path, PathBuf};

/// The files `pattern` names, in the order the server reads them. A pattern without
/// wildcards names itself (whether or not it exists: the caller decides).
pub(crate) fn expand(pattern: &Path) -> Vec<PathBuf> {
    if !pattern.to_string_lossy().contains(['*', '?', '[']) {
        return vec![pattern.to_path_buf()];
    }
    let mut found = vec![PathBuf::new()];
    for comp in pattern.components() {
        let part = match comp {
            Component::Normal(p) => p.to_string_lossy().into_owned(),
            other => {
                for f in &mut found {
                    f.push(other.as_os_str());
                }
                continue;
            }
        };
        if !part.contains(['*', '?', '[']) {
            for f in &mut found {
                f.push(&part);
            }
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let Ok(rd) = std::fs::read_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) else {
                continue;
            };
            let mut names: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| (!n.starts_with('.') || part.starts_with('.')) && matches(&part, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    found
}

/// fnmatch(3) without flags: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`, `\x`.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().skip(2).position(|&c| c == ']').map(|i| i + 2) else {
                    return n.first() == Some(&'[') && go(&p[1..], &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let mut set = &p[1..end];
                let negate = matches!(set.first(), Some('!') | Some('^'));
                if negate {
                    set = &set[1..];
                }
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[end + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch() {
        assert!(matches("*.conf", "a.conf"));
        assert!(!matches("*.conf", "a.conf.bak"));
        assert!(matches("site-?", "site-1"));
        assert!(matches("[0-9]*", "000-default.conf"));
        assert!(!matches("[!0-9]*", "000-default.conf"));
        assert!(matches("*", "x"));
    }

    #[test]
    fn expands_sorted_and_skips_hidden() {
        let d = tempfile::tempdir().unwrap();
        for n in ["b.conf", "a.conf", ".hidden.conf", "c.txt"] {
            std::fs::write(d.path().join(n), "").unwrap();
        }
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/x.conf"), "").unwrap();
        let got = expand(&d.path().join("*.conf"));
        assert_eq!(got, vec![d.path().join("a.conf"), d.path().join("b.conf")]);
        assert_eq!(
            expand(&d.path().join("s*/*.conf")),
            vec![d.path().join("sub/x.conf")]
        );
        assert_eq!(expand(&d.path().join("none")), vec![d.path().join("none")]);
    }
}
