//! certbot's `apache` authenticator (and the reload its installer does), with its
//! renewal-conf settings `apache_server_root` (default `/etc/apache2`), `apache_ctl` (default
//! `apache2ctl`) and `http01_port`.
//!
//! As certbot does, each response is a file under the work dir, and each `<VirtualHost>` that
//! answers a name gets two `Include` lines: one right after its `<VirtualHost ...>` line
//! (`pre.conf`: a `RewriteRule ... [END]` to the response file when mod_rewrite is loaded, so
//! the vhost's own rewrites and redirects do not run for the challenge path; else an `Alias`)
//! and one right before `</VirtualHost>` (`post.conf`: `Require all granted` for the response
//! directory and the challenge location, after the vhost's own access rules). Unlike certbot,
//! certfleet never enables a module (`a2enmod rewrite`): without mod_rewrite it uses mod_alias,
//! which Debian enables by default. The vhosts: every one whose `ServerName`/`ServerAlias`
//! matches (plain and TLS, as certbot, so a redirect to https is answered too), plus the
//! unnamed ones on the http-01 port; when no vhost on that port has the name, every plain vhost
//! on that port (certbot's rule).
//!
//! The reader: no maintained crate parses Apache's configuration (`misc-conf` is an
//! undocumented 0.1 nom grammar), and what is needed is little: logical lines (with `\`
//! continuations), `<Section>`s, `Include`/`IncludeOptional` with globs, `VirtualHost`,
//! `ServerName`, `ServerAlias`, `SSLEngine`, `LoadModule`, and the byte offsets of each
//! `<VirtualHost>` line's end and `</VirtualHost>` line's start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{
    Plan, Probe, Server, ServerInfo, WebServerSolver, glob, name_rank, probe_addr, quoted, read_config,
};
use crate::{ChallengeTask, SolverError};

/// certbot's `apache_*` renewal settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApacheOptions {
    /// The configuration root (`apache2.conf` or `httpd.conf` in it).
    pub server_root: PathBuf,
    /// The control script (`apache2ctl`, `apachectl`).
    pub ctl: String,
    /// Port the CA's http-01 requests reach Apache on.
    pub http01_port: u16,
}

impl Default for ApacheOptions {
    fn default() -> Self {
        ApacheOptions {
            server_root: PathBuf::from("/etc/apache2"),
            ctl: "apache2ctl".into(),
            http01_port: 80,
        }
    }
}

impl ApacheOptions {
    /// `apache2ctl configtest`, as certbot runs it.
    pub fn test_command(&self) -> Vec<String> {
        vec![self.ctl.clone(), "configtest".into()]
    }

    /// `apache2ctl graceful`, as certbot runs it.
    pub fn reload_command(&self) -> Vec<String> {
        vec![self.ctl.clone(), "graceful".into()]
    }

    fn main_file(&self) -> Result<PathBuf, SolverError> {
        ["apache2.conf", "httpd.conf", "conf/httpd.conf"]
            .iter()
            .map(|f| self.server_root.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                SolverError::Setup(format!(
                    "no apache2.conf or httpd.conf in {} (set apache_server_root / --apache-server-root)",
                    self.server_root.display()
                ))
            })
    }
}

impl WebServerSolver {
    /// The `apache` authenticator; its files live under `work_dir`.
    pub fn apache(opts: ApacheOptions, work_dir: &Path) -> Self {
        let info = ServerInfo {
            kind: "apache",
            root: opts.server_root.clone(),
            test: opts.test_command(),
            reload: opts.reload_command(),
        };
        Self::new(Box::new(Apache(opts)), info, work_dir)
    }
}

struct Apache(ApacheOptions);

/// One `<VirtualHost>`.
#[derive(Debug)]
struct VHost {
    file: PathBuf,
    /// Offset just after the `<VirtualHost ...>` line.
    after_open: usize,
    /// Offset of the start of the `</VirtualHost>` line.
    before_close: usize,
    addrs: Vec<(Option<String>, Option<u16>)>,
    names: Vec<String>,
    named: bool,
    ssl: bool,
}

#[derive(Debug, Default)]
struct Config {
    vhosts: Vec<VHost>,
    modules: BTreeSet<String>,
}

/// Quote-aware split of a directive's arguments.
fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (_, '\\') if matches!(chars.peek(), Some('"') | Some('\'') | Some('\\')) => {
                cur.push(chars.next().expect("peeked"));
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `${VAR}` from the environment (Debian's envvars); unknown ones stay as written.
fn expand_vars(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        match rest[i + 2..].find('}') {
            Some(j) => {
                let name = &rest[i + 2..i + 2 + j];
                match std::env::var(name) {
                    Ok(v) => out.push_str(&v),
                    Err(_) => out.push_str(&rest[i..i + 3 + j]),
                }
                rest = &rest[i + 3 + j..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A vhost being read: its open line's end and what it holds so far.
struct Open {
    after_open: usize,
    addrs: Vec<(Option<String>, Option<u16>)>,
    names: Vec<String>,
    named: bool,
    ssl: bool,
}

fn parse_addr(a: &str) -> (Option<String>, Option<u16>) {
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (format!("[{h}]"), p.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (a.to_string(), None),
        }
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()),
            None => (a.to_string(), None),
        }
    };
    let host = match host.as_str() {
        "*" | "_default_" => None,
        _ => Some(host),
    };
    (host, port)
}

impl Config {
    fn load(opts: &ApacheOptions) -> Result<Config, SolverError> {
        let mut c = Config::default();
        let mut root = opts.server_root.clone();
        c.read(&opts.main_file()?, &mut root, 0)?;
        Ok(c)
    }

    fn read(&mut self, path: &Path, root: &mut PathBuf, depth: usize) -> Result<(), SolverError> {
        let src = read_config("Apache", path, depth)?;
        let mut open: Option<Open> = None;
        let mut offset = 0;
        let mut logical = String::new();
        let mut start = 0;
        for raw in src.split_inclusive('\n') {
            let line_start = offset;
            offset += raw.len();
            let text = raw.trim_end_matches(['\n', '\r']);
            if logical.is_empty() {
                start = line_start;
            }
            if let Some(cont) = text.strip_suffix('\\') {
                logical.push_str(cont);
                logical.push(' ');
                continue;
            }
            logical.push_str(text);
            let line = std::mem::take(&mut logical);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(close) = line.strip_prefix("</") {
                let name = close.trim_end_matches('>').trim();
                if name.eq_ignore_ascii_case("VirtualHost")
                    && let Some(o) = open.take()
                {
                    self.vhosts.push(VHost {
                        file: path.to_path_buf(),
                        after_open: o.after_open,
                        before_close: start,
                        addrs: o.addrs,
                        names: o.names,
                        named: o.named,
                        ssl: o.ssl,
                    });
                }
                continue;
            }
            if let Some(sec) = line.strip_prefix('<') {
                let sec = sec.trim_end_matches('>');
                let mut parts = split_args(sec);
                if parts.is_empty() {
                    continue;
                }
                let name = parts.remove(0);
                if name.eq_ignore_ascii_case("VirtualHost") {
                    open = Some(Open {
                        after_open: offset,
                        addrs: parts.iter().map(|a| parse_addr(a)).collect(),
                        names: Vec::new(),
                        named: false,
                        ssl: false,
                    });
                }
                continue;
            }
            let mut parts = split_args(line);
            let name = parts.remove(0).to_ascii_lowercase();
            match (name.as_str(), &mut open) {
                ("servername", Some(o)) => {
                    if let Some(n) = parts.first() {
                        // `ServerName https://host:443` and `host:80` both name `host`.
                        let n = n.split("://").last().unwrap_or(n);
                        let n = n.rsplit_once(':').map_or(n, |(h, _)| h);
                        o.names.push(n.to_string());
                        o.named = true;
                    }
                }
                ("serveralias", Some(o)) => o.names.extend(parts),
                ("sslengine", Some(o)) => {
                    o.ssl |= parts.first().is_some_and(|a| a.eq_ignore_ascii_case("on"))
                }
                ("serverroot", None) => {
                    if let Some(r) = parts.first() {
                        *root = PathBuf::from(expand_vars(r));
                    }
                }
                ("loadmodule", _) => {
                    if let Some(m) = parts.first() {
                        self.modules.insert(m.clone());
                    }
                }
                ("include" | "includeoptional", _) => {
                    let optional = name == "includeoptional";
                    for arg in &parts {
                        let pat = PathBuf::from(expand_vars(arg));
                        let pat = if pat.is_absolute() { pat } else { root.join(pat) };
                        let files = if pat.is_dir() {
                            glob::expand(&pat.join("*"))
                        } else {
                            glob::expand(&pat)
                        };
                        for f in files {
                            if f.is_dir() {
                                continue;
                            }
                            if !f.exists() && optional {
                                continue;
                            }
                            let mut r = root.clone();
                            self.read(&f, &mut r, depth + 1)?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl VHost {
    fn on_port(&self, port: u16) -> Option<&Option<String>> {
        self.addrs
            .iter()
            .find(|(_, p)| p.is_none_or(|p| p == port))
            .map(|(h, _)| h)
    }

    fn serves(&self, host: &str) -> bool {
        self.names.iter().any(|n| name_rank(n, host).is_some())
    }
}

impl Server for Apache {
    fn plan(&self, tasks: &[ChallengeTask], own_dir: &Path) -> Result<Plan, SolverError> {
        let cfg = Config::load(&self.0)?;
        let port = self.0.http01_port;
        let responses = own_dir.join("challenges");
        let pre = own_dir.join("pre.conf");
        let post = own_dir.join("post.conf");
        let rewrite = cfg.modules.contains("rewrite_module");
        if !rewrite && !cfg.modules.contains("alias_module") {
            return Err(SolverError::Setup(
                "Apache loads neither mod_rewrite nor mod_alias, so certfleet cannot map the challenge path \
                 to its response files: enable one (a2enmod alias)"
                    .into(),
            ));
        }
        let plain_on_port = |v: &&VHost| !v.ssl && v.on_port(port).is_some();
        let mut plan = Plan::default();
        for t in tasks {
            let host = t.identifier.value();
            let mut chosen: Vec<&VHost> = cfg.vhosts.iter().filter(|v| v.serves(&host)).collect();
            if chosen.iter().any(plain_on_port) {
                chosen.extend(cfg.vhosts.iter().filter(|v| !v.named).filter(plain_on_port));
            } else {
                chosen.extend(cfg.vhosts.iter().filter(plain_on_port));
            }
            let Some(first_plain) = chosen.iter().find(|v| plain_on_port(v)) else {
                return Err(SolverError::Setup(format!(
                    "no Apache <VirtualHost> listens on port {port} (where the CA's http-01 request for {host} \
                     arrives); add one for {host}, or set http01_port / --http-01-port"
                )));
            };
            let listen = first_plain.on_port(port).cloned().flatten();
            for v in chosen {
                plan.insert(&v.file, v.after_open, format!("Include {}\n", quoted(&pre)));
                plan.insert(&v.file, v.before_close, format!("Include {}\n", quoted(&post)));
            }
            plan.probes.push(Probe {
                addr: probe_addr(listen.as_deref(), port),
                host,
                token: t.token.clone(),
                expect: t.key_authorization.clone(),
            });
            plan.own
                .push((responses.join(&t.token), t.key_authorization.clone()));
        }
        let map = if rewrite {
            format!(
                "RewriteEngine on\nRewriteRule ^/\\.well-known/acme-challenge/([A-Za-z0-9_-]+)$ {} [END]\n",
                quoted(&responses.join("$1"))
            )
        } else {
            format!(
                "Alias /.well-known/acme-challenge/ {}\n",
                quoted(&responses.join(""))
            )
        };
        plan.own.push((
            pre,
            format!("# certfleet: temporary http-01 challenge mapping, removed after validation\n{map}"),
        ));
        plan.own.push((
            post,
            format!(
                "# certfleet: temporary http-01 access rules, removed after validation\n\
                 <Directory {}>\n    Require all granted\n</Directory>\n\
                 <Location /.well-known/acme-challenge>\n    Require all granted\n</Location>\n",
                quoted(&responses)
            ),
        ));
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certfleet_core::Identifier;

    #[test]
    fn args_and_addresses() {
        assert_eq!(split_args("a \"b c\" d"), vec!["a", "b c", "d"]);
        assert_eq!(parse_addr("*:80"), (None, Some(80)));
        assert_eq!(
            parse_addr("127.0.0.1:8080"),
            (Some("127.0.0.1".into()), Some(8080))
        );
        assert_eq!(parse_addr("_default_"), (None, None));
        assert_eq!(parse_addr("[::1]:80"), (Some("[::1]".into()), Some(80)));
    }

    #[test]
    fn plans_includes_in_the_matching_vhosts() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir(root.join("sites")).unwrap();
        std::fs::write(
            root.join("apache2.conf"),
            "LoadModule alias_module /x/mod_alias.so\nIncludeOptional sites/*.conf\nIncludeOptional nothing/*.conf\n",
        )
        .unwrap();
        let site = "<VirtualHost 127.0.0.1:8081>\n  ServerName a.example.test\n  \
                    Redirect / https://a.example.test/\n</VirtualHost>\n\
                    <VirtualHost *:8443>\n  ServerName a.example.test\n  SSLEngine on\n</VirtualHost>\n\
                    <VirtualHost *:8081>\n  ServerName \\\n    other.example.test\n</VirtualHost>\n";
        std::fs::write(root.join("sites/a.conf"), site).unwrap();
        let a = Apache(ApacheOptions {
            server_root: root.to_path_buf(),
            ctl: "apache2ctl".into(),
            http01_port: 8081,
        });
        let own = root.join("own");
        let t = ChallengeTask {
            identifier: Identifier::dns("a.example.test").unwrap(),
            token: "TOK".into(),
            key_authorization: "TOK.th".into(),
        };
        let plan = a.plan(std::slice::from_ref(&t), &own).unwrap();
        let edits = &plan.edits[&root.join("sites/a.conf")];
        // Both a.example.test vhosts (plain and TLS), not the other one.
        assert_eq!(edits.len(), 4, "{edits:?}");
        let first_line_end = site.find('\n').unwrap() + 1;
        assert_eq!(edits[0].0, first_line_end);
        assert_eq!(edits[1].0, site.find("</VirtualHost>").unwrap());
        assert_eq!(plan.probes[0].addr.to_string(), "127.0.0.1:8081");
        let pre = plan.own.iter().find(|(p, _)| p.ends_with("pre.conf")).unwrap();
        assert!(pre.1.contains("Alias /.well-known/acme-challenge/"), "{}", pre.1);

        // Nobody has the name: every plain vhost on the port, with mod_rewrite when loaded.
        std::fs::write(
            root.join("apache2.conf"),
            "LoadModule rewrite_module /x/mod_rewrite.so\nInclude sites\n",
        )
        .unwrap();
        let t2 = ChallengeTask {
            identifier: Identifier::dns("b.example.test").unwrap(),
            ..t
        };
        let plan = a.plan(&[t2], &own).unwrap();
        assert_eq!(plan.edits[&root.join("sites/a.conf")].len(), 4);
        let pre = plan.own.iter().find(|(p, _)| p.ends_with("pre.conf")).unwrap();
        assert!(
            pre.1.contains("RewriteRule ^/\\.well-known/acme-challenge/"),
            "{}",
            pre.1
        );
    }
}
