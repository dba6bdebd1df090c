//! certbot-style credentials files (`key = value` ini, as the dns-* plugins read them) and a
//! [`Secret`] wrapper that keeps keys and tokens out of logs, errors and `Debug` output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::DnsError;

/// A secret string (TSIG secret, API token, API key). `Debug` prints `Secret(***)` and there is
/// no `Display`: the only way to the value is [`Secret::expose`], used where it goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A parsed credentials file.
#[derive(Debug)]
pub struct CredentialsFile {
    path: PathBuf,
    values: HashMap<String, (usize, Secret)>,
}

impl CredentialsFile {
    /// Read `path` after checking only its owner can read it (mode 0600 or 0400; certbot only
    /// warns, we refuse: these files hold DNS write access).
    pub fn load(path: &Path) -> Result<Self, DnsError> {
        check_permissions(path)?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| DnsError::io(format!("reading credentials file {}", path.display()), e))?;
        Self::parse(path, &text)
    }

    /// Parse the text of `path` (no permission check: see [`CredentialsFile::load`]).
    #[doc(hidden)]
    pub fn parse(path: &Path, text: &str) -> Result<Self, DnsError> {
        let mut values = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') || line.starts_with('[') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                // Do not echo the line: it may hold a secret.
                return Err(DnsError::Credentials {
                    path: path.to_path_buf(),
                    why: format!("line {}: expected `name = value`", i + 1),
                });
            };
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            values.insert(k.trim().to_string(), (i + 1, Secret::new(v)));
        }
        Ok(CredentialsFile {
            path: path.to_path_buf(),
            values,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A setting that may be absent (empty counts as absent, as in certbot).
    pub fn get(&self, key: &str) -> Option<&Secret> {
        self.values
            .get(key)
            .map(|(_, v)| v)
            .filter(|v| !v.expose().is_empty())
    }

    /// A required setting; the error names the file and the key to add.
    pub fn require(&self, key: &str, what: &str) -> Result<&Secret, DnsError> {
        self.get(key)
            .ok_or_else(|| self.error(format!("missing {key} ({what})")))
    }

    /// An error about this file.
    pub fn error(&self, why: impl Into<String>) -> DnsError {
        DnsError::Credentials {
            path: self.path.clone(),
            why: why.into(),
        }
    }

    /// The line a key was set on, for error messages.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.values.get(key).map(|(l, _)| *l)
    }
}

/// Refuse files any group or other user can access.
pub fn check_permissions(path: &Path) -> Result<(), DnsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| DnsError::io(format!("credentials file {}", path.display()), e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(DnsError::InsecureCredentials {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parses_certbot_ini_and_hides_secrets() {
        let f = CredentialsFile::parse(
            Path::new("/x.ini"),
            "# comment\ndns_rfc2136_server = 192.0.2.1\n dns_rfc2136_secret=\"abc==\"\nempty =\n",
        )
        .unwrap();
        assert_eq!(f.get("dns_rfc2136_server").unwrap().expose(), "192.0.2.1");
        assert_eq!(f.get("dns_rfc2136_secret").unwrap().expose(), "abc==");
        assert!(f.get("empty").is_none());
        assert!(!format!("{f:?}").contains("abc=="));
        let e = f.require("dns_rfc2136_name", "TSIG key name").unwrap_err();
        assert_eq!(
            e.to_string(),
            "credentials file /x.ini: missing dns_rfc2136_name (TSIG key name)"
        );
    }

    #[test]
    fn bad_line_is_reported_without_its_content() {
        let e = CredentialsFile::parse(Path::new("/x.ini"), "ok = 1\nsupersecretvalue\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "credentials file /x.ini: line 2: expected `name = value`"
        );
    }

    #[test]
    fn world_readable_file_is_refused_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cf.ini");
        std::fs::write(&p, "dns_cloudflare_api_token = t\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = CredentialsFile::load(&p).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "credentials file {0} is accessible by other users (mode 644); run: chmod 600 {0}",
                p.display()
            )
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(CredentialsFile::load(&p).is_ok());
    }
}
