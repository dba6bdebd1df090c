//! http-01 without the CA: a test file put in place by the lineage's own solver (written into
//! its webroot, served by the built-in server, or configured into nginx/Apache), fetched from
//! every address of the name as the CA fetches it ([`super::fetch`]), then removed. A failure
//! says which hop answered what, and what that means for this authenticator.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use certfleet_core::Identifier;
use certfleet_solvers::ChallengeTask;
use certfleet_solvers::http01::CHALLENGE_PATH;
use certfleet_solvers::webserver::nginx::{self, NginxOptions, Route};

use super::fetch::{self, End, Trail, Unreachable};
use super::{Check, Ctx, Kind, Target, Task, random_token};
use crate::authenticator::{AuthSpec, SolverContext};

/// One solver serves several lineages: the built-in server binds its port once, and a web
/// server is reconfigured and reloaded once for all its names.
struct Batch {
    spec: AuthSpec,
    members: Vec<(usize, Arc<Target>)>,
}

/// The http-01 tasks for every target that proves control over http.
pub(super) fn tasks(ctx: &Arc<Ctx>, targets: &[Arc<Target>]) -> Vec<Task> {
    let mut batches: Vec<Batch> = Vec::new();
    let mut out = Vec::new();
    for (gi, t) in targets.iter().enumerate() {
        let spec = match &t.auth {
            Some(s @ (AuthSpec::Webroot(_) | AuthSpec::ManualHttp { .. })) => {
                batches.push(Batch {
                    spec: s.clone(),
                    members: vec![(gi, t.clone())],
                });
                continue;
            }
            Some(s @ (AuthSpec::Standalone { .. } | AuthSpec::Nginx(_) | AuthSpec::Apache(_))) => s,
            Some(AuthSpec::Dns(_) | AuthSpec::TlsAlpn { .. }) => continue,
            None if t.lineage.is_none() => {
                let checks = t
                    .names
                    .iter()
                    .map(|n| {
                        (
                            gi,
                            Check::warn(
                                Kind::Http01,
                                n.value(),
                                "not checked: no lineage yet and no authenticator given",
                                "add the flags certonly will get: --webroot -w DIR, --standalone, --nginx, \
                                 --apache or --dns-<provider>",
                            ),
                        )
                    })
                    .collect();
                out.push(Task {
                    job: Box::pin(async move { checks }),
                    on_timeout: vec![],
                    budget: None,
                });
                continue;
            }
            // The renewal-conf check says why there is no authenticator.
            None => continue,
        };
        match batches.iter_mut().find(|b| &b.spec == spec) {
            Some(b) => b.members.push((gi, t.clone())),
            None => batches.push(Batch {
                spec: spec.clone(),
                members: vec![(gi, t.clone())],
            }),
        }
    }
    for b in batches {
        let on_timeout = b
            .members
            .iter()
            .flat_map(|(gi, t)| t.names.iter().map(move |n| (*gi, Kind::Http01, n.value())))
            .collect();
        let c = ctx.clone();
        out.push(Task {
            job: Box::pin(async move { batch(&c, b).await }),
            on_timeout,
            // Putting the file in place, fetching, removing: each bounded by the timeout.
            budget: Some(ctx.opts.timeout * 3),
        });
    }
    out
}

/// How the test file is served, for explanations.
enum How {
    /// Written under this document root.
    Webroot(PathBuf),
    /// certfleet's built-in server, listening on this port.
    Standalone(u16),
    /// Configured into a running nginx or Apache.
    Server(&'static str),
    /// Through the user's manual hooks.
    Hooks,
}

async fn batch(ctx: &Ctx, b: Batch) -> Vec<(usize, Check)> {
    let timeout = ctx.opts.timeout;
    let mut tasks: Vec<(usize, ChallengeTask)> = Vec::new();
    let mut out = Vec::new();
    for (gi, t) in &b.members {
        for id in &t.names {
            if id.is_wildcard() {
                out.push((
                    *gi,
                    Check::fail(
                        Kind::Http01,
                        id.value(),
                        "a wildcard cannot be validated over http-01",
                        "use dns-01 for it: --dns-rfc2136 (or another --dns-<provider>) or --manual with hooks",
                    ),
                ));
                continue;
            }
            let token = random_token();
            tasks.push((
                *gi,
                ChallengeTask {
                    identifier: id.clone(),
                    key_authorization: format!("{token}.certfleet-doctor"),
                    token,
                },
            ));
        }
    }
    if tasks.is_empty() {
        return out;
    }
    let all: Vec<ChallengeTask> = tasks.iter().map(|(_, t)| t.clone()).collect();
    let fail_all = |detail: String, fix: String, warn: bool| -> Vec<(usize, Check)> {
        tasks
            .iter()
            .map(|(gi, t)| {
                let subject = t.identifier.value();
                let c = if warn {
                    Check::warn(Kind::Http01, subject, detail.clone(), fix.clone())
                } else {
                    Check::fail(Kind::Http01, subject, detail.clone(), fix.clone())
                };
                (*gi, c)
            })
            .collect()
    };
    let solver_ctx = SolverContext {
        work_dir: ctx.opts.store.dirs().work_dir.clone(),
    };
    let solver = match b.spec.solver(&solver_ctx).await {
        Ok(s) => s,
        Err(e) => {
            let (fix, warn) = setup_fix(&b);
            out.extend(fail_all(
                format!("cannot serve a test file: {}", e.message()),
                fix,
                warn,
            ));
            return out;
        }
    };
    match tokio::time::timeout(timeout, solver.present(&all)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = tokio::time::timeout(timeout, solver.cleanup(&all)).await;
            out.extend(fail_all(
                format!("putting a test file in place failed: {e}"),
                "fix what the message names (the same step fails in a renewal)".into(),
                false,
            ));
            return out;
        }
        Err(_) => {
            let _ = tokio::time::timeout(timeout, solver.cleanup(&all)).await;
            out.extend(fail_all(
                format!(
                    "putting a test file in place took more than {} s",
                    timeout.as_secs_f32()
                ),
                "check the web server reloads (its error log), or the hooks finish".into(),
                false,
            ));
            return out;
        }
    }
    // The nginx whose configuration explains a failure: the authenticator's, else the host's.
    let nginx = match &b.spec {
        AuthSpec::Nginx(o) => Some(o.clone()),
        _ => ctx.opts.nginx_server_root.clone().map(|r| NginxOptions {
            server_root: r,
            ..NginxOptions::default()
        }),
    };
    let nginx = nginx.as_ref();
    let checks = futures::future::join_all(tasks.iter().map(|(gi, t)| {
        let how = how(&b.spec, &t.identifier);
        let member = b.members.iter().find(|(g, _)| g == gi).map(|(_, t)| t.clone());
        async move {
            let lineage = member
                .as_ref()
                .and_then(|m| m.lineage.as_ref())
                .map(|l| l.name.clone());
            (*gi, check_name(ctx, t, &how, lineage.as_deref(), nginx).await)
        }
    }))
    .await;
    out.extend(checks);
    if let Ok(Err(e)) = tokio::time::timeout(timeout, solver.cleanup(&all)).await {
        tracing::warn!("removing doctor's test challenge: {e}");
    }
    out
}

fn how(spec: &AuthSpec, id: &Identifier) -> How {
    match spec {
        AuthSpec::Webroot(map) => map
            .get(&id.value())
            .map_or(How::Hooks, |r| How::Webroot(r.clone())),
        AuthSpec::Standalone { port, .. } => How::Standalone(*port),
        AuthSpec::Nginx(_) => How::Server("nginx"),
        AuthSpec::Apache(_) => How::Server("apache"),
        _ => How::Hooks,
    }
}

/// The fix when the solver cannot even start (standalone's port taken), and whether a
/// pre-hook makes that expected (WARN instead of FAIL).
fn setup_fix(b: &Batch) -> (String, bool) {
    let hooked = b
        .members
        .iter()
        .filter_map(|(_, t)| t.lineage.as_ref())
        .find_map(|l| l.conf.pre_hook().filter(|h| !h.is_empty()).map(str::to_string));
    match (&b.spec, hooked) {
        (AuthSpec::Standalone { port, .. }, Some(hook)) => (
            format!(
                "expected if the pre-hook `{hook}` frees port {port} before each renewal; otherwise switch to \
                 --webroot (`certfleet reconfigure --cert-name NAME --webroot -w DOCUMENT_ROOT`)"
            ),
            true,
        ),
        (AuthSpec::Standalone { port, .. }, None) => (
            format!(
                "renewal fails the same way: free port {port} (stop what listens there, or stop it in a hook: \
                 `certfleet reconfigure --cert-name NAME --pre-hook 'systemctl stop nginx' --post-hook \
                 'systemctl start nginx'`), or let the running web server answer: `certfleet reconfigure \
                 --cert-name NAME --webroot -w DOCUMENT_ROOT`"
            ),
            false,
        ),
        _ => (
            "fix what the message names (renewal runs the same step)".into(),
            false,
        ),
    }
}

/// Fetch the test file for one name from each of its addresses.
async fn check_name(
    ctx: &Ctx,
    t: &ChallengeTask,
    how: &How,
    lineage: Option<&str>,
    nginx: Option<&NginxOptions>,
) -> Check {
    let name = t.identifier.value();
    let r = match ctx.resolver() {
        Ok(r) => r,
        Err((d, f)) => return Check::fail(Kind::Http01, name, d, f),
    };
    let ips: Vec<IpAddr> = match &t.identifier {
        Identifier::Ip(ip) => vec![*ip],
        Identifier::Dns(_) => match r.ips(&name).await {
            Ok(v) => v,
            Err(e) => {
                return Check::fail(
                    Kind::Http01,
                    name,
                    format!("cannot resolve the name: {e}"),
                    "see the dns check",
                );
            }
        },
    };
    if ips.is_empty() {
        return Check::fail(
            Kind::Http01,
            &name,
            format!("{name} has no A or AAAA record: the CA has nowhere to connect"),
            format!("add an A (and/or AAAA) record for {name} pointing at this server"),
        );
    }
    let url = match url::Url::parse(&format!("http://{name}/{CHALLENGE_PATH}/{}", t.token)) {
        Ok(u) => u,
        Err(e) => return Check::fail(Kind::Http01, name, e.to_string(), "check the name"),
    };
    let trails = futures::future::join_all(ips.iter().map(|ip| fetch::follow(ctx, url.clone(), *ip))).await;
    let good = |tr: &Trail| matches!(&tr.end, End::Answered { status: 200, body } if body.trim() == t.key_authorization);
    let bad: Vec<(&IpAddr, &Trail)> = ips.iter().zip(&trails).filter(|(_, tr)| !good(tr)).collect();
    let via = |tr: &Trail| {
        if tr.redirected() {
            format!(" (redirects followed: {})", tr.path())
        } else {
            String::new()
        }
    };
    let Some((ip, trail)) = bad.first() else {
        let addrs: Vec<String> = ips.iter().map(ToString::to_string).collect();
        return Check::ok(
            Kind::Http01,
            name,
            format!(
                "{url} served the test file over {}{}",
                addrs.join(" and "),
                via(&trails[0])
            ),
        );
    };
    let path = format!("/{CHALLENGE_PATH}/{}", t.token);
    let route = nginx.and_then(|o| match nginx::route(o, &name, ctx.opts.http_port, &path) {
        Ok(r) => r.map(|r| (o.conf_file(), r)),
        Err(e) => {
            tracing::debug!("reading nginx's configuration to explain {name}: {e}");
            None
        }
    });
    let (detail, fix) = explain(t, how, trail, **ip, lineage, route.as_ref());
    // The CA tries IPv6 first and falls back to IPv4 only when the connection fails.
    let v4_works = ips.iter().zip(&trails).any(|(i, tr)| i.is_ipv4() && good(tr));
    if ip.is_ipv6() && v4_works && matches!(trail.end, End::Unreachable { .. }) {
        return Check::warn(
            Kind::Http01,
            name,
            format!("over IPv6: {detail}; IPv4 works, and the CA falls back to it (slowly)"),
            format!("{fix}; or remove the AAAA record if this host has no working IPv6"),
        );
    }
    Check::fail(Kind::Http01, name, detail, fix)
}

/// What a failed trail means, and what to do, for this way of serving the file.
fn explain(
    t: &ChallengeTask,
    how: &How,
    trail: &Trail,
    ip: IpAddr,
    lineage: Option<&str>,
    route: Option<&(PathBuf, Route)>,
) -> (String, String) {
    let (detail, fix) = explain_answer(t, how, trail, ip, lineage);
    // Only an answer came from a web server; an unreachable address says nothing about nginx.
    let Some((conf, r)) = route.filter(|_| !matches!(trail.end, End::Unreachable { .. })) else {
        return (detail, fix);
    };
    // What nginx's own configuration says about this request, and the fix it points at.
    let mut seen = format!(
        "nginx ({}) answers it with the server block at {} (server_name {})",
        conf.display(),
        r.server,
        if r.server_names.is_empty() {
            "none".into()
        } else {
            r.server_names.join(" ")
        }
    );
    if let Some((loc, at)) = &r.location {
        seen.push_str(&format!(", {loc} at {at}"));
    }
    let served = match (&r.returns, r.denied, &r.root) {
        (Some(ret), _, _) => format!("`return {ret}`"),
        (None, true, _) => "`deny all`".to_string(),
        (None, false, Some(root)) if r.alias => format!("alias {root}"),
        (None, false, Some(root)) => format!("root {root}"),
        (None, false, None) => "nginx's default root".to_string(),
    };
    seen.push_str(&format!(": {served}"));
    let detail = format!("{detail}; {seen}");
    let webroot = match how {
        How::Webroot(w) => Some(w.display().to_string()),
        _ => None,
    };
    let fix = match (&trail.end, webroot) {
        (End::Answered { status: 403, .. }, Some(w)) if r.denied => format!(
            "{} denies it: add `location ^~ /.well-known/acme-challenge/ {{ allow all; root {w}; }}` to the server \
             block at {} (a longer ^~ prefix wins over it), then reload nginx",
            r.location
                .as_ref()
                .map_or("the server block".to_string(), |(l, at)| format!("`{l}` at {at}")),
            r.server
        ),
        (
            End::Answered {
                status: 404 | 200, ..
            },
            Some(w),
        ) if !r.alias
            && r.root
                .as_deref()
                .is_some_and(|root| Path::new(root) != Path::new(&w)) =>
        {
            let root = r.root.clone().unwrap_or_default();
            format!(
                "nginx serves {} from {root}, not {w}: {}, or add `location ^~ /.well-known/acme-challenge/ {{ root \
                 {w}; }}` to the server block at {}",
                t.identifier,
                use_root(lineage, &root),
                r.server
            )
        }
        _ => fix,
    };
    (detail, fix)
}

fn explain_answer(
    t: &ChallengeTask,
    how: &How,
    trail: &Trail,
    ip: IpAddr,
    lineage: Option<&str>,
) -> (String, String) {
    let name = t.identifier.value();
    let first = &trail.urls[0];
    let cert_name = lineage.unwrap_or("NAME");
    let at = format!("{first} (address {ip})");
    let exempt = "exempt the challenge path from it: in nginx put `location ^~ /.well-known/acme-challenge/ { root \
                  DOCUMENT_ROOT; }` in the port 80 server block, before the `return`/`rewrite`";
    let wrong_root = |status: &str| -> (String, String) {
        match how {
            How::Webroot(root) => (
                format!(
                    "{at} answered {status}: the test file was written to {}, but the server answering for {name} \
                     does not serve {} there (another virtual host's root, or a location/alias for \
                     /.well-known/acme-challenge/ pointing elsewhere){}",
                    root.join(CHALLENGE_PATH).join(&t.token).display(),
                    root.display(),
                    redirected_note(trail)
                ),
                format!(
                    "make the webroot the document root of the site answering http://{name}/ \
                     ({}), or serve this \
                     one for the challenge path: `location ^~ /.well-known/acme-challenge/ {{ root {}; }}` (nginx), \
                     `Alias /.well-known/acme-challenge/ {}/.well-known/acme-challenge/` (Apache)",
                    use_root(lineage, "DOCUMENT_ROOT"),
                    root.display(),
                    root.display()
                ),
            ),
            How::Standalone(port) => (
                format!(
                    "{at} answered {status}: another server answers port 80 for {name}, not certfleet's built-in \
                     one (listening on port {port})"
                ),
                format!(
                    "forward port 80 of {ip} to port {port} of this host, or let the web server that answers \
                     serve the file: `certfleet reconfigure --cert-name {cert_name} --webroot -w DOCUMENT_ROOT`"
                ),
            ),
            How::Server(kind) => (
                format!(
                    "{at} answered {status}: the {kind} server block certfleet configured is not the one that \
                     answers {name} on port 80{}",
                    redirected_note(trail)
                ),
                format!("check that port 80 of {ip} reaches this {kind} (and not a proxy or another server)"),
            ),
            How::Hooks => (
                format!("{at} answered {status}: the manual hook did not publish the file where {name} serves it"),
                "make the auth hook write $CERTBOT_VALIDATION to the site's /.well-known/acme-challenge/$CERTBOT_TOKEN".into(),
            ),
        }
    };
    match &trail.end {
        End::Answered { status: 200, body } => {
            let got: String = body.trim().chars().take(60).collect();
            let (d, f) = wrong_root("200 with other content");
            (format!("{d}; it sent {got:?}"), f)
        }
        End::Answered { status: 404, .. } => wrong_root("404 Not Found"),
        End::Answered { status: 403, .. } => {
            let unreadable = match how {
                How::Webroot(root) => unreadable(&root.join(CHALLENGE_PATH)),
                _ => None,
            };
            let rules = "find what denies it: an access rule (nginx `deny all;` in a location matching \
                 /.well-known/, a `location ~ /\\.` rule hiding dot-directories; Apache `Require all denied`), a \
                 firewall or WAF, or a proxy in front; then allow the path, e.g. nginx `location ^~ \
                 /.well-known/acme-challenge/ { allow all; root DOCUMENT_ROOT; }` ahead of the other rules";
            let detail = format!(
                "{at} answered 403 Forbidden{}: the web server refuses the path{}",
                redirected_note(trail),
                match &unreadable {
                    Some(p) => format!(
                        "; note {} is not readable by other users, which alone causes this if the web server \
                         runs as another user",
                        p.display()
                    ),
                    None => String::new(),
                }
            );
            let fix = match unreadable {
                Some(p) => format!("`chmod a+rX {}` if the web server runs as another user; else {rules}", p.display()),
                None => rules.to_string(),
            };
            (detail, fix)
        }
        End::Answered { status, .. } if *status >= 500 => (
            format!("{at} answered {status}{}: a proxy or application in front fails", redirected_note(trail)),
            "check the server's error log; a reverse proxy must serve /.well-known/acme-challenge/ itself or pass \
             it to a server that has the file"
                .into(),
        ),
        End::Answered { status, .. } => (
            format!("{at} answered {status}{}", redirected_note(trail)),
            "the CA needs 200 with the file's content".into(),
        ),
        End::Unreachable { url, addr, why } if trail.redirected() => (
            format!("{at} redirects to {url}, which does not answer at {addr}: {why} (path: {})", trail.path()),
            format!("make {url} reachable on port {}, or {exempt}", addr.port()),
        ),
        End::Unreachable { addr, why, .. } => {
            let detail = format!("{at}: {why} at {addr}");
            let fix = match (why, how) {
                (Unreachable::TimedOut, _) => format!(
                    "open TCP port 80 to the internet (the CA validates from several places) and check that {ip} \
                     is this server"
                ),
                (_, How::Standalone(port)) => format!(
                    "{ip} port 80 does not reach certfleet's built-in server (port {port}): check the A/AAAA \
                     records and any port forward"
                ),
                _ => format!("start the web server for {name} on port 80 of {ip}, or open/forward port 80 to it"),
            };
            (detail, fix)
        }
        End::BadRedirect { to, why } => (
            format!("{at} redirects to {to}, which the CA will not follow: {why} (path: {})", trail.path()),
            format!("redirect only to http://NAME/ or https://NAME/ on the standard ports, or {exempt}"),
        ),
        End::Loop => (
            format!("{at}: redirect loop: {}", trail.path()),
            format!("the redirect leads back to itself; {exempt}"),
        ),
        End::TooManyRedirects => (
            format!("{at}: more than 10 redirects: {}", trail.path()),
            format!("the CA stops after 10; {exempt}"),
        ),
    }
}

/// How to point the lineage (or the first certonly) at `root`.
fn use_root(lineage: Option<&str>, root: &str) -> String {
    match lineage {
        Some(l) => format!("`certfleet reconfigure --cert-name {l} --webroot -w {root}`"),
        None => format!("give certonly `-w {root}` for it"),
    }
}

fn redirected_note(trail: &Trail) -> String {
    if trail.redirected() {
        format!(" (after redirects: {})", trail.path())
    } else {
        String::new()
    }
}

/// The first directory on the way to `dir` that other users cannot enter, if any.
fn unreadable(dir: &Path) -> Option<PathBuf> {
    let mut cur = dir.to_path_buf();
    let mut found = None;
    loop {
        if let Ok(md) = std::fs::metadata(&cur)
            && md.is_dir()
            && md.permissions().mode() & 0o005 != 0o005
        {
            found = Some(cur.clone());
        }
        if !cur.pop() || cur.as_os_str().is_empty() {
            break;
        }
    }
    found
}
