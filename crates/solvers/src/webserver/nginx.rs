//! certbot's `nginx` authenticator (and the reload its installer does), with its renewal-conf
//! settings `nginx_server_root` (default `/etc/nginx`), `nginx_ctl` (default `nginx`) and
//! `http01_port`.
//!
//! For a round of challenges certfleet writes, under its work dir, `challenge.conf`:
//!
//! ```nginx
//! rewrite ^(/\.well-known/acme-challenge/.*)$ $1 break;
//! location = /.well-known/acme-challenge/TOKEN { default_type text/plain; return 200 "KEYAUTH"; }
//! ```
//!
//! and inserts one line, `include ".../challenge.conf";`, right after the `{` of each server
//! block that answers the name on the http-01 port (the block nginx itself would pick: exact
//! `server_name`, else a wildcard one, else the default server of that address). The
//! `rewrite ... break` comes first in the block, so the block's own server-level `return`s
//! and `if`s (certbot's `return 301 https://...` redirect, `return 404`) do not run for the
//! challenge path; `location =` wins over every other location. certbot does the same in
//! the block (a location and the same rewrite), but writes them into the user's file.
//! A name no block serves on that port gets a server block of its own, in `servers.conf`,
//! included at the top of `http {}`.
//!
//! The configuration reader: a maintained crate was looked for first. `nginx-config` (the
//! typed-AST one) rejects every directive it does not know, so any third-party module or
//! newer directive breaks it, and it keeps no byte offsets; `nginx-lint-parser` is a
//! linter's young CST. What is needed here is small: directives, blocks, `include` (with
//! globs), `server`, `server_name`, `listen`, and the byte offset of each `{`. So a short
//! tokenizer of nginx's syntax (words, quotes, escapes, `${var}`, comments, `{ } ;`) follows.

use std::path::{Path, PathBuf};

use super::{
    Plan, Probe, Server, ServerInfo, WebServerSolver, glob, name_rank, probe_addr, quoted, read_config,
};
use crate::{ChallengeTask, SolverError};

/// certbot's `nginx_*` renewal settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxOptions {
    /// Directory of `nginx.conf`.
    pub server_root: PathBuf,
    /// The nginx binary.
    pub ctl: String,
    /// Port the CA's http-01 requests reach nginx on.
    pub http01_port: u16,
}

impl Default for NginxOptions {
    fn default() -> Self {
        NginxOptions {
            server_root: PathBuf::from("/etc/nginx"),
            ctl: "nginx".into(),
            http01_port: 80,
        }
    }
}

impl NginxOptions {
    pub fn conf_file(&self) -> PathBuf {
        self.server_root.join("nginx.conf")
    }

    /// `nginx -c CONF -t`, as certbot runs it.
    pub fn test_command(&self) -> Vec<String> {
        vec![
            self.ctl.clone(),
            "-c".into(),
            self.conf_file().display().to_string(),
            "-t".into(),
        ]
    }

    /// `nginx -c CONF -s reload`, as certbot runs it.
    pub fn reload_command(&self) -> Vec<String> {
        vec![
            self.ctl.clone(),
            "-c".into(),
            self.conf_file().display().to_string(),
            "-s".into(),
            "reload".into(),
        ]
    }
}

impl WebServerSolver {
    /// The `nginx` authenticator; its files live under `work_dir`.
    pub fn nginx(opts: NginxOptions, work_dir: &Path) -> Self {
        let info = ServerInfo {
            kind: "nginx",
            root: opts.server_root.clone(),
            test: opts.test_command(),
            reload: opts.reload_command(),
        };
        Self::new(Box::new(Nginx(opts)), info, work_dir)
    }
}

struct Nginx(NginxOptions);

/// One directive; `block` is the byte offset just after its `{` and its children.
#[derive(Debug, Clone)]
struct Directive {
    name: String,
    args: Vec<String>,
    file: usize,
    block: Option<(usize, Vec<Directive>)>,
}

/// A parsed configuration: the top-level directives (includes spliced in) and the files.
#[derive(Debug)]
struct Config {
    files: Vec<PathBuf>,
    top: Vec<Directive>,
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    /// `{`, with the offset after it.
    Open(usize),
    Close,
    Semi,
}

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let line = |at: usize| src[..at].matches('\n').count() + 1;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' => {
                out.push((Tok::Open(i + 1), i));
                i += 1;
            }
            b'}' => {
                out.push((Tok::Close, i));
                i += 1;
            }
            b';' => {
                out.push((Tok::Semi, i));
                i += 1;
            }
            b'"' | b'\'' => {
                let start = i;
                i += 1;
                let mut w = Vec::new();
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    w.push(b[i]);
                    i += 1;
                }
                if i >= b.len() {
                    return Err(format!("unterminated quote from line {}", line(start)));
                }
                i += 1;
                out.push((Tok::Word(String::from_utf8_lossy(&w).into_owned()), start));
            }
            _ => {
                let start = i;
                let mut w = Vec::new();
                while i < b.len() && !b" \t\r\n;{}".contains(&b[i]) {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        w.push(b[i]);
                        i += 1;
                    } else if b[i] == b'$' && b.get(i + 1) == Some(&b'{') {
                        while i < b.len() && b[i] != b'}' {
                            w.push(b[i]);
                            i += 1;
                        }
                    }
                    if i < b.len() {
                        w.push(b[i]);
                        i += 1;
                    }
                }
                out.push((Tok::Word(String::from_utf8_lossy(&w).into_owned()), start));
            }
        }
    }
    Ok(out)
}

/// Directives of one file (includes not yet followed).
fn parse_file(src: &str, file: usize) -> Result<Vec<Directive>, String> {
    let toks = tokenize(src)?;
    let mut pos = 0;
    let out = parse_block(&toks, &mut pos, file, src)?;
    if pos < toks.len() {
        return Err(format!("unexpected \"}}\" at line {}", line_of(src, toks[pos].1)));
    }
    Ok(out)
}

fn line_of(src: &str, at: usize) -> usize {
    src[..at.min(src.len())].matches('\n').count() + 1
}

fn parse_block(
    toks: &[(Tok, usize)],
    pos: &mut usize,
    file: usize,
    src: &str,
) -> Result<Vec<Directive>, String> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut start = 0;
    while *pos < toks.len() {
        let (tok, at) = &toks[*pos];
        *pos += 1;
        match tok {
            Tok::Word(w) => {
                if words.is_empty() {
                    start = *at;
                }
                words.push(w.clone());
            }
            Tok::Semi | Tok::Open(_) if words.is_empty() => {
                return Err(format!(
                    "unexpected \"{}\" at line {}",
                    &src[*at..*at + 1],
                    line_of(src, *at)
                ));
            }
            Tok::Semi => {
                let name = words.remove(0);
                out.push(Directive {
                    name,
                    args: std::mem::take(&mut words),
                    file,
                    block: None,
                });
            }
            Tok::Open(after) => {
                let children = parse_block(toks, pos, file, src)?;
                if !matches!(toks.get(*pos - 1), Some((Tok::Close, _))) {
                    return Err(format!("unclosed block from line {}", line_of(src, start)));
                }
                let name = words.remove(0);
                out.push(Directive {
                    name,
                    args: std::mem::take(&mut words),
                    file,
                    block: Some((*after, children)),
                });
            }
            Tok::Close => {
                if !words.is_empty() {
                    return Err(format!("missing \";\" before line {}", line_of(src, *at)));
                }
                return Ok(out);
            }
        }
    }
    if !words.is_empty() {
        return Err(format!("missing \";\" at the end (line {})", line_of(src, start)));
    }
    Ok(out)
}

impl Config {
    fn load(conf: &Path, root: &Path) -> Result<Config, SolverError> {
        let mut c = Config {
            files: Vec::new(),
            top: Vec::new(),
        };
        c.top = c.read(conf, root, 0)?;
        Ok(c)
    }

    fn read(&mut self, path: &Path, root: &Path, depth: usize) -> Result<Vec<Directive>, SolverError> {
        let src = read_config("nginx", path, depth)?;
        let idx = self.files.len();
        self.files.push(path.to_path_buf());
        let parsed = parse_file(&src, idx)
            .map_err(|e| SolverError::Setup(format!("cannot read {}: {e}", path.display())))?;
        self.splice(parsed, root, depth)
    }

    fn splice(
        &mut self,
        list: Vec<Directive>,
        root: &Path,
        depth: usize,
    ) -> Result<Vec<Directive>, SolverError> {
        let mut out = Vec::new();
        for mut d in list {
            if d.name == "include" && d.block.is_none() && d.args.len() == 1 {
                let pat = Path::new(&d.args[0]);
                let pat = if pat.is_absolute() {
                    pat.to_path_buf()
                } else {
                    root.join(pat)
                };
                for f in glob::expand(&pat) {
                    out.extend(self.read(&f, root, depth + 1)?);
                }
                continue;
            }
            if let Some((open, children)) = d.block.take() {
                d.block = Some((open, self.splice(children, root, depth)?));
            }
            out.push(d);
        }
        Ok(out)
    }
}

/// One `listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listen {
    host: Option<String>,
    port: u16,
    ssl: bool,
    default: bool,
}

fn parse_listen(args: &[String]) -> Option<Listen> {
    let first = args.first()?;
    if first.starts_with("unix:") || args.iter().any(|a| a == "quic") {
        return None;
    }
    let (host, port) = if let Some(rest) = first.strip_prefix('[') {
        let (h, p) = rest.split_once(']')?;
        (
            Some(format!("[{h}]")),
            p.strip_prefix(':').map(|p| p.parse().ok()).unwrap_or(Some(80))?,
        )
    } else if let Some((h, p)) = first.rsplit_once(':') {
        (Some(h.to_string()), p.parse().ok()?)
    } else if first.chars().all(|c| c.is_ascii_digit()) {
        (None, first.parse().ok()?)
    } else {
        (Some(first.clone()), 80)
    };
    Some(Listen {
        host,
        port,
        ssl: args.iter().any(|a| a == "ssl"),
        default: args.iter().any(|a| a == "default_server" || a == "default"),
    })
}

/// A server block of `http {}`.
#[derive(Debug)]
struct ServerBlock {
    file: usize,
    open: usize,
    names: Vec<String>,
    listens: Vec<Listen>,
}

fn servers(cfg: &Config) -> (Vec<ServerBlock>, Option<(usize, usize)>) {
    let mut out = Vec::new();
    let mut http = None;
    for d in &cfg.top {
        let (Some((open, children)), "http") = (&d.block, d.name.as_str()) else {
            continue;
        };
        http.get_or_insert((d.file, *open));
        for s in children.iter().filter(|s| s.name == "server") {
            let Some((sopen, body)) = &s.block else { continue };
            let ssl_on = body
                .iter()
                .any(|x| x.name == "ssl" && x.args.first().is_some_and(|a| a == "on"));
            let mut listens: Vec<Listen> = body
                .iter()
                .filter(|x| x.name == "listen")
                .filter_map(|x| parse_listen(&x.args))
                .collect();
            if !body.iter().any(|x| x.name == "listen") {
                listens.push(Listen {
                    host: None,
                    port: 80,
                    ssl: false,
                    default: false,
                });
            }
            for l in &mut listens {
                l.ssl |= ssl_on;
            }
            out.push(ServerBlock {
                file: s.file,
                open: *sopen,
                names: body
                    .iter()
                    .filter(|x| x.name == "server_name")
                    .flat_map(|x| x.args.iter().cloned())
                    .collect(),
                listens,
            });
        }
    }
    (out, http)
}

/// The blocks nginx would pick for `host` on `port` (plain http): best `server_name` match
/// among the blocks listening there, else the default server of each listen address.
fn blocks_for<'a>(all: &'a [ServerBlock], host: &str, port: u16) -> Vec<(&'a ServerBlock, &'a Listen)> {
    let on_port: Vec<(&ServerBlock, &Listen)> = all
        .iter()
        .filter_map(|s| {
            s.listens
                .iter()
                .find(|l| l.port == port && !l.ssl)
                .map(|l| (s, l))
        })
        .collect();
    let best = on_port
        .iter()
        .filter_map(|(s, _)| s.names.iter().filter_map(|n| name_rank(n, host)).min())
        .min();
    if let Some(best) = best {
        return on_port
            .into_iter()
            .filter(|(s, _)| s.names.iter().filter_map(|n| name_rank(n, host)).min() == Some(best))
            .collect();
    }
    // The default server of each address: marked default_server, else the first one.
    let mut out: Vec<(&ServerBlock, &Listen)> = Vec::new();
    let mut hosts: Vec<&Option<String>> = on_port.iter().map(|(_, l)| &l.host).collect();
    hosts.dedup();
    for h in hosts {
        if out.iter().any(|(_, l)| &l.host == h) {
            continue;
        }
        let same: Vec<&(&ServerBlock, &Listen)> = on_port.iter().filter(|(_, l)| &l.host == h).collect();
        let pick = same.iter().find(|(_, l)| l.default).or(same.first());
        if let Some(p) = pick {
            out.push(**p);
        }
    }
    out
}

/// What nginx does with `http://HOST:PORT/PATH`, read from its configuration: the server block
/// it picks, the location that matches, and where the answer comes from. For `doctor`'s
/// explanations of a 403 or a 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `FILE:LINE` of the server block.
    pub server: String,
    pub server_names: Vec<String>,
    /// The matching location (`location ^~ /.well-known/`) and its `FILE:LINE`.
    pub location: Option<(String, String)>,
    /// The effective `root`, or `alias` (then `alias` is true); None: nginx's default.
    pub root: Option<String>,
    pub alias: bool,
    /// `deny all` applies to the path.
    pub denied: bool,
    /// A `return` applies to the path (its arguments).
    pub returns: Option<String>,
}

/// The [`Route`] of `path` for `host` on `port` (plain http); None when no server block
/// listens there.
pub fn route(opts: &NginxOptions, host: &str, port: u16, path: &str) -> Result<Option<Route>, SolverError> {
    let cfg = Config::load(&opts.conf_file(), &opts.server_root)?;
    let (all, _) = servers(&cfg);
    let Some((block, _)) = blocks_for(&all, host, port).into_iter().next() else {
        return Ok(None);
    };
    let mut http_root = None;
    let mut body = None;
    for d in &cfg.top {
        let (Some((_, children)), "http") = (&d.block, d.name.as_str()) else {
            continue;
        };
        http_root = http_root.or_else(|| arg_of(children, "root"));
        body = body.or_else(|| {
            children.iter().find_map(|s| match &s.block {
                Some((open, b)) if s.name == "server" && s.file == block.file && *open == block.open => {
                    Some(b)
                }
                _ => None,
            })
        });
    }
    let Some(body) = body else { return Ok(None) };
    let at = |file: usize, open: usize| {
        let path = &cfg.files[file];
        let line = std::fs::read_to_string(path)
            .map(|src| line_of(&src, open))
            .unwrap_or(0);
        format!("{}:{line}", path.display())
    };
    let location = pick_location(body, path);
    let in_loc = |name: &str| location.and_then(|l| l.block.as_ref().and_then(|(_, c)| arg_of(c, name)));
    let (root, alias) = match (in_loc("alias"), in_loc("root")) {
        (Some(a), _) => (Some(a), true),
        (None, Some(r)) => (Some(r), false),
        (None, None) => (arg_of(body, "root").or(http_root), false),
    };
    let access = |list: &[Directive]| list.iter().any(|d| d.name == "allow" || d.name == "deny");
    let loc_children: &[Directive] = location.and_then(|l| l.block.as_ref()).map_or(&[], |(_, c)| c);
    let deny_all = |list: &[Directive]| {
        list.iter()
            .any(|d| d.name == "deny" && d.args.first().is_some_and(|a| a == "all"))
    };
    let denied = if access(loc_children) {
        deny_all(loc_children)
    } else {
        deny_all(body)
    };
    // A server-level `return` runs before any location is chosen.
    let returns = body
        .iter()
        .chain(loc_children)
        .find(|d| d.name == "return")
        .map(|d| d.args.join(" "));
    Ok(Some(Route {
        server: at(block.file, block.open),
        server_names: block.names.clone(),
        location: location.map(|l| {
            (
                format!("location {}", l.args.join(" ")),
                at(l.file, l.block.as_ref().map_or(0, |(o, _)| *o)),
            )
        }),
        root,
        alias,
        denied,
        returns,
    }))
}

fn arg_of(list: &[Directive], name: &str) -> Option<String> {
    list.iter()
        .find(|d| d.name == name && d.block.is_none())
        .and_then(|d| d.args.first().cloned())
}

/// nginx's choice among a server's locations: an exact match, else the longest prefix if it
/// is `^~`, else the first regular expression that matches, else the longest prefix.
fn pick_location<'a>(body: &'a [Directive], path: &str) -> Option<&'a Directive> {
    let mut prefix: Option<(&Directive, usize, bool)> = None;
    let mut regexes = Vec::new();
    for d in body.iter().filter(|d| d.name == "location" && d.block.is_some()) {
        let (modifier, pattern) = match d.args.as_slice() {
            [m, p] => (m.as_str(), p.as_str()),
            [p] => ("", p.as_str()),
            _ => continue,
        };
        match modifier {
            "=" if path == pattern => return Some(d),
            "" | "^~" if path.starts_with(pattern) && prefix.is_none_or(|(_, n, _)| pattern.len() > n) => {
                prefix = Some((d, pattern.len(), modifier == "^~"));
            }
            "~" | "~*" => regexes.push((d, pattern, modifier == "~*")),
            _ => {}
        }
    }
    if let Some((d, _, true)) = prefix {
        return Some(d);
    }
    let regex = regexes.into_iter().find(|(_, p, ci)| {
        regex::RegexBuilder::new(p)
            .case_insensitive(*ci)
            .build()
            .is_ok_and(|r| r.is_match(path))
    });
    regex.map(|(d, _, _)| d).or(prefix.map(|(d, _, _)| d))
}

impl Server for Nginx {
    fn plan(&self, tasks: &[ChallengeTask], own_dir: &Path) -> Result<Plan, SolverError> {
        let cfg = Config::load(&self.0.conf_file(), &self.0.server_root)?;
        let (all, http) = servers(&cfg);
        let port = self.0.http01_port;
        let challenge = own_dir.join("challenge.conf");
        let include = format!("\ninclude {};\n", quoted(&challenge));
        let mut plan = Plan::default();
        let mut homeless: Vec<String> = Vec::new();
        for t in tasks {
            let host = t.identifier.value();
            let blocks = blocks_for(&all, &host, port);
            let listen_host = blocks.first().and_then(|(_, l)| l.host.clone());
            if blocks.is_empty() {
                homeless.push(host.clone());
            }
            for (b, _) in &blocks {
                plan.insert(&cfg.files[b.file], b.open, include.clone());
            }
            plan.probes.push(Probe {
                addr: probe_addr(listen_host.as_deref(), port),
                host,
                token: t.token.clone(),
                expect: t.key_authorization.clone(),
            });
        }
        let mut text = String::from(
            "# certfleet: temporary http-01 challenge responses, removed with the include lines after validation\n\
             rewrite ^(/\\.well-known/acme-challenge/.*)$ $1 break;\n",
        );
        for t in tasks {
            text.push_str(&format!(
                "location = /.well-known/acme-challenge/{} {{\n    default_type text/plain;\n    return 200 \"{}\";\n}}\n",
                t.token, t.key_authorization
            ));
        }
        plan.own.push((challenge.clone(), text));
        if !homeless.is_empty() {
            let Some((file, open)) = http else {
                return Err(SolverError::Setup(format!(
                    "{} has no http {{}} block to answer http-01 for {} in",
                    self.0.conf_file().display(),
                    homeless.join(", ")
                )));
            };
            tracing::info!(
                "nginx: no server block serves {} on port {port}; adding a temporary one",
                homeless.join(", ")
            );
            // nginx picks the blocks by address first: listen where the others on this port
            // listen (each address), else on every address.
            let mut listens: Vec<String> = Vec::new();
            for l in all
                .iter()
                .flat_map(|b| &b.listens)
                .filter(|l| l.port == port && !l.ssl)
            {
                let text = match &l.host {
                    Some(h) => format!("listen {h}:{port};"),
                    None => format!("listen {port};"),
                };
                if !listens.contains(&text) {
                    listens.push(text);
                }
            }
            if listens.is_empty() {
                listens.push(format!("listen {port};"));
            }
            let servers = own_dir.join("servers.conf");
            plan.own.push((
                servers.clone(),
                format!(
                    "# certfleet: temporary server block for http-01, removed after validation\n\
                     server {{\n    {}\n    server_name {};\n    root {};\n    include {};\n}}\n",
                    listens.join("\n    "),
                    homeless.join(" "),
                    quoted(&own_dir.join("nonexistent")),
                    quoted(&challenge)
                ),
            ));
            plan.insert(
                &cfg.files[file],
                open,
                format!("\ninclude {};\n", quoted(&servers)),
            );
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certfleet_core::Identifier;

    fn task(name: &str, token: &str) -> ChallengeTask {
        ChallengeTask {
            identifier: Identifier::dns(name).unwrap(),
            token: token.into(),
            key_authorization: format!("{token}.thumb"),
        }
    }

    #[test]
    fn tokens() {
        let t = tokenize("a 'b c' \"d\\\"e\" ${x}y; # c\nf{g;}").unwrap();
        let words: Vec<&Tok> = t.iter().map(|(t, _)| t).collect();
        assert_eq!(
            words,
            vec![
                &Tok::Word("a".into()),
                &Tok::Word("b c".into()),
                &Tok::Word("d\"e".into()),
                &Tok::Word("${x}y".into()),
                &Tok::Semi,
                &Tok::Word("f".into()),
                &Tok::Open(28),
                &Tok::Word("g".into()),
                &Tok::Semi,
                &Tok::Close,
            ]
        );
        assert!(parse_file("server { listen 80 }", 0).is_err());
        assert!(parse_file("server { listen 80;", 0).is_err());
    }

    #[test]
    fn listens() {
        let l = |s: &str| parse_listen(&s.split(' ').map(String::from).collect::<Vec<_>>()).unwrap();
        assert_eq!(l("80").port, 80);
        assert_eq!(l("127.0.0.1:8080").host.as_deref(), Some("127.0.0.1"));
        assert_eq!(l("[::]:80").host.as_deref(), Some("[::]"));
        assert!(l("443 ssl http2").ssl);
        assert!(l("*:80 default_server").default);
        assert_eq!(l("localhost").port, 80);
    }

    /// The plan inserts one include after the `{` of the block serving each name (through
    /// an include glob), a new server block for a name nobody serves, and nothing else.
    #[test]
    fn plans_the_least_edit() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir(root.join("sites")).unwrap();
        std::fs::write(
            root.join("nginx.conf"),
            "events {}\nhttp {\n    include sites/*.conf;\n}\n",
        )
        .unwrap();
        std::fs::write(
            root.join("sites/a.conf"),
            "server {\n    listen 127.0.0.1:8080;\n    server_name a.example.test www.a.example.test;\n    \
             if ($scheme != \"https\") { return 301 https://$host$request_uri; }\n}\n\
             server { listen 8443 ssl; server_name a.example.test; }\n\
             server { listen 8080 default_server; server_name _; }\n",
        )
        .unwrap();
        let n = Nginx(NginxOptions {
            server_root: root.to_path_buf(),
            ctl: "nginx".into(),
            http01_port: 8080,
        });
        let own = root.join("own");
        let plan = n
            .plan(
                &[task("a.example.test", "T1"), task("b.example.test", "T2")],
                &own,
            )
            .unwrap();
        let site = &plan.edits[&root.join("sites/a.conf")];
        // a.example.test: its own block only (offset after the first `{`); b: the default.
        let text = std::fs::read_to_string(root.join("sites/a.conf")).unwrap();
        let offsets: Vec<usize> = site.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets[0], text.find('{').unwrap() + 1);
        assert_eq!(site.len(), 2, "{site:?}");
        assert!(!plan.edits.contains_key(&root.join("nginx.conf")));
        assert_eq!(plan.probes[0].addr.to_string(), "127.0.0.1:8080");
        let challenge = &plan.own[0].1;
        assert!(
            challenge.contains("location = /.well-known/acme-challenge/T1 {"),
            "{challenge}"
        );
        assert!(challenge.contains("return 200 \"T2.thumb\";"), "{challenge}");
        assert!(challenge.contains("rewrite ^(/\\.well-known/acme-challenge/.*)$ $1 break;"));

        // Nobody on port 9090: a temporary server block, included at the top of http {}.
        let n = Nginx(NginxOptions {
            http01_port: 9090,
            ..n.0
        });
        let plan = n.plan(&[task("c.example.test", "T3")], &own).unwrap();
        let top = &plan.edits[&root.join("nginx.conf")];
        let conf = std::fs::read_to_string(root.join("nginx.conf")).unwrap();
        assert_eq!(top[0].0, conf.find("http {").unwrap() + 6);
        assert!(plan.own[1].1.contains("listen 9090;"), "{}", plan.own[1].1);
        assert!(plan.own[1].1.contains("server_name c.example.test;"));
    }
}
