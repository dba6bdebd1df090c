//! `certfleet doctor`: find what would make an issuance or a renewal fail, and say how to fix
//! it, without asking the CA for anything.
//!
//! Each check family has its file: [`local`] (the lineage on disk, its renewal conf, account,
//! failure memory, and whether anything renews at all), [`dns`] (addresses, CAA, dns-01
//! delegation and a test update), [`http`] (a test challenge file fetched the way the CA
//! fetches it, through [`fetch`]), [`tls`] (what is served on port 443). Every check yields
//! [`Check`]s: a status, what was seen, and for WARN/FAIL the exact fix.
//!
//! All checks run at once (one task each), each bounded by [`Options::timeout`], so a
//! dropped packet costs one timeout, not one per name.

mod dns;
mod fetch;
mod http;
mod local;
mod tls;
pub use tls::{AcceptAny, Trust};

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use certfleet_core::Identifier;
use certfleet_solvers::dns::lookup::Resolver;
use certfleet_store::{Lineage, Store};
use serde::Serialize;
use time::OffsetDateTime;

use crate::authenticator::AuthSpec;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// What was checked. The order here is the order of the report within a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// live/ links complete and of one version, private key readable and matching.
    Lineage,
    /// Private key file modes.
    Modes,
    /// Days left of the lineage's current certificate.
    Expiry,
    /// The renewal conf can be renewed from (authenticator complete, a webroot per name).
    RenewalConf,
    /// The ACME account the conf names exists.
    Account,
    /// Renewal failures and backoff.
    RenewalState,
    /// A/AAAA records, the same at every authoritative server.
    Dns,
    /// CAA allows the CA.
    Caa,
    /// A test file fetched as the CA fetches http-01.
    #[serde(rename = "http-01")]
    Http01,
    /// `_acme-challenge` delegation and a test TXT update.
    #[serde(rename = "dns-01")]
    Dns01,
    /// What is served on port 443.
    Tls,
    /// A timer or daemon renews, and ran recently.
    Scheduler,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Lineage => "lineage",
            Kind::Modes => "modes",
            Kind::Expiry => "expiry",
            Kind::RenewalConf => "renewal-conf",
            Kind::Account => "account",
            Kind::RenewalState => "renewal-state",
            Kind::Dns => "dns",
            Kind::Caa => "caa",
            Kind::Http01 => "http-01",
            Kind::Dns01 => "dns-01",
            Kind::Tls => "tls",
            Kind::Scheduler => "scheduler",
        }
    }
}

/// One result: `check` of `subject` (a lineage or a name) is `status`; `detail` says what was
/// seen, `fix` what to do (set for WARN and FAIL).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: Kind,
    pub subject: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(check: Kind, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(check, subject, Status::Ok, detail, None)
    }

    pub fn warn(
        check: Kind,
        subject: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(check, subject, Status::Warn, detail, Some(fix.into()))
    }

    pub fn fail(
        check: Kind,
        subject: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(check, subject, Status::Fail, detail, Some(fix.into()))
    }

    fn new(
        check: Kind,
        subject: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Check {
            check,
            subject: subject.into(),
            status,
            detail: detail.into(),
            fix,
        }
    }
}

/// What to check: a lineage, or names before their first `certonly`.
#[derive(Debug, Clone)]
pub struct Target {
    /// None for names with no lineage yet.
    pub lineage: Option<Lineage>,
    pub names: Vec<Identifier>,
    /// How control is proved: the lineage's conf, or certonly's flags. None when the conf
    /// cannot say (reported by the renewal-conf check) or no flags were given.
    pub auth: Option<AuthSpec>,
    /// The ACME directory URL (for CAA).
    pub server: String,
}

impl Target {
    /// A lineage as its renewal would see it: its certificate's names, the authenticator of
    /// its conf (None when the conf cannot say; the renewal-conf check reports why), its server.
    pub fn for_lineage(lin: Lineage, default_server: &str) -> Self {
        let names = lin
            .names()
            .ok()
            .and_then(|n| crate::lineage::identifiers(&n).ok())
            .unwrap_or_default();
        let auth = AuthSpec::from_conf(&lin.conf, &names).ok();
        let server = lin
            .conf
            .server()
            .filter(|s| !s.is_empty())
            .unwrap_or(default_server)
            .to_string();
        Target {
            lineage: Some(lin),
            names,
            auth,
            server,
        }
    }
}

/// Everything the checks need besides the targets.
#[derive(Debug, Clone)]
pub struct Options {
    pub store: Store,
    /// Where names are resolved (`--dns-resolver`, else the system's).
    pub resolver: Option<SocketAddr>,
    /// The port the CA's http-01 requests arrive on (80; `--http-01-port` for tests).
    pub http_port: u16,
    /// The TLS port to check (443; `--port`).
    pub tls_port: u16,
    /// Per check.
    pub timeout: Duration,
    /// Extra PEM roots to trust for served chains (private or test CAs).
    pub tls_roots: Vec<Vec<u8>>,
    /// Trust roots for the ACME server's own HTTPS (to read its directory's CAA identities).
    pub ca_bundle: Option<PathBuf>,
    /// Where systemd units are looked for.
    pub unit_dir: PathBuf,
    /// nginx's configuration directory, read to explain a refused or missing test file
    /// (`--nginx-server-root`, else /etc/nginx when it exists).
    pub nginx_server_root: Option<PathBuf>,
    pub now: OffsetDateTime,
}

/// The checks of one target, in report order.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// The lineage name, when there is one.
    pub lineage: Option<String>,
    pub names: Vec<String>,
    /// `webroot`, `standalone`, `dns-rfc2136`, ... (None: unknown).
    pub authenticator: Option<String>,
    pub checks: Vec<Check>,
}

/// The whole report: one group per target, then one for this host.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub groups: Vec<Group>,
    /// Checks of this host (scheduler).
    pub host: Vec<Check>,
}

impl Report {
    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.groups.iter().flat_map(|g| g.checks.iter()).chain(&self.host)
    }

    pub fn count(&self, status: Status) -> usize {
        self.checks().filter(|c| c.status == status).count()
    }

    pub fn failed(&self) -> bool {
        self.count(Status::Fail) > 0
    }
}

/// Shared by every check task.
pub(crate) struct Ctx {
    pub opts: Options,
    pub resolver: Option<Resolver>,
    pub ca_ids: dns::CaaIdentities,
    pub tls: tls::Trust,
}

impl Ctx {
    /// The resolver, or the reason there is none (as a FAIL's detail and fix).
    pub fn resolver(&self) -> Result<&Resolver, (String, String)> {
        self.resolver.as_ref().ok_or_else(|| {
            (
                "no DNS resolver: /etc/resolv.conf names no nameserver".to_string(),
                "pass --dns-resolver IP[:PORT]".to_string(),
            )
        })
    }
}

type Job = Pin<Box<dyn Future<Output = Vec<(usize, Check)>> + Send>>;

/// One task: its future and what to report for it if it does not finish in time.
struct Task {
    job: Job,
    on_timeout: Vec<(usize, Kind, String)>,
    /// Longer than [`Options::timeout`] for tasks made of several bounded steps.
    budget: Option<Duration>,
}

/// Run every check of every target, concurrently.
pub async fn run(targets: Vec<Target>, opts: Options) -> Report {
    let resolver = match opts.resolver {
        Some(a) => Some(Resolver::new(a)),
        None => Resolver::system().ok(),
    };
    let tls = tls::Trust::new(&opts.tls_roots);
    let ctx = Arc::new(Ctx {
        resolver,
        ca_ids: dns::CaaIdentities::new(opts.ca_bundle.clone(), opts.timeout),
        tls,
        opts,
    });
    let mut groups: Vec<Group> = targets
        .iter()
        .map(|t| Group {
            lineage: t.lineage.as_ref().map(|l| l.name.clone()),
            names: t.names.iter().map(Identifier::value).collect(),
            authenticator: t
                .lineage
                .as_ref()
                .and_then(|l| l.conf.authenticator().map(str::to_string))
                .or_else(|| t.auth.as_ref().map(authenticator_name)),
            checks: Vec::new(),
        })
        .collect();
    let targets: Vec<Arc<Target>> = targets.into_iter().map(Arc::new).collect();

    let mut tasks: Vec<Task> = Vec::new();
    for (gi, t) in targets.iter().enumerate() {
        if t.lineage.is_some() {
            tasks.push(task(&ctx, gi, t, vec![Kind::Lineage], local::lineage));
        }
        for (ni, _) in t.names.iter().enumerate() {
            let (c, tt) = (ctx.clone(), t.clone());
            let subject = t.names[ni].value();
            tasks.push(Task {
                job: Box::pin(async move { tag(gi, dns::names(&c, &tt, ni).await) }),
                on_timeout: vec![(gi, Kind::Dns, subject.clone()), (gi, Kind::Caa, subject.clone())],
                budget: None,
            });
            if t.lineage.is_some() {
                let (c, tt) = (ctx.clone(), t.clone());
                tasks.push(Task {
                    job: Box::pin(async move { tag(gi, tls::served(&c, &tt, ni).await) }),
                    on_timeout: vec![(gi, Kind::Tls, subject)],
                    budget: None,
                });
            }
        }
        if matches!(t.auth, Some(AuthSpec::Dns(_))) {
            let (c, tt) = (ctx.clone(), t.clone());
            tasks.push(Task {
                job: Box::pin(async move { tag(gi, dns::dns01(&c, &tt).await) }),
                on_timeout: names_of(gi, t, Kind::Dns01),
                // Lookups, the update, the propagation wait (bounded by the timeout), the removal.
                budget: Some(ctx.opts.timeout * 3),
            });
        }
    }
    tasks.extend(http::tasks(&ctx, &targets));
    let host_ctx = ctx.clone();
    tasks.push(Task {
        job: Box::pin(async move { tag(usize::MAX, local::scheduler(&host_ctx)) }),
        on_timeout: vec![(usize::MAX, Kind::Scheduler, "this host".into())],
        budget: None,
    });

    let timeout = ctx.opts.timeout;
    let mut set = tokio::task::JoinSet::new();
    for t in tasks {
        let Task {
            job,
            on_timeout,
            budget,
        } = t;
        let budget = budget.unwrap_or(timeout);
        set.spawn(async move {
            match tokio::time::timeout(budget, job).await {
                Ok(checks) => checks,
                Err(_) => on_timeout
                    .into_iter()
                    .map(|(gi, kind, subject)| (gi, timed_out(kind, subject, budget)))
                    .collect(),
            }
        });
    }
    let mut host = Vec::new();
    while let Some(done) = set.join_next().await {
        // A panicking check is a bug; report it as a failure rather than losing the report.
        let checks = done.unwrap_or_else(|e| {
            vec![(
                usize::MAX,
                Check::fail(
                    Kind::Scheduler,
                    "doctor",
                    format!("a check crashed: {e}"),
                    "report this bug",
                ),
            )]
        });
        for (gi, c) in checks {
            match groups.get_mut(gi) {
                Some(g) => g.checks.push(c),
                None => host.push(c),
            }
        }
    }
    for g in &mut groups {
        let rank = |c: &Check| {
            let subject = g.names.iter().position(|n| *n == c.subject).map_or(0, |i| i + 1);
            (subject, c.check)
        };
        let mut checks = std::mem::take(&mut g.checks);
        checks.sort_by_key(|c| rank(c));
        g.checks = checks;
    }
    Report { groups, host }
}

fn task(
    ctx: &Arc<Ctx>,
    gi: usize,
    t: &Arc<Target>,
    kinds: Vec<Kind>,
    f: fn(&Ctx, &Target) -> Vec<Check>,
) -> Task {
    let (c, tt) = (ctx.clone(), t.clone());
    let subject = t.lineage.as_ref().map(|l| l.name.clone()).unwrap_or_default();
    Task {
        // File reads: cheap, but off the async workers all the same.
        job: Box::pin(async move {
            let checks = tokio::task::spawn_blocking(move || f(&c, &tt))
                .await
                .unwrap_or_default();
            tag(gi, checks)
        }),
        on_timeout: kinds.into_iter().map(|k| (gi, k, subject.clone())).collect(),
        budget: None,
    }
}

fn tag(gi: usize, checks: Vec<Check>) -> Vec<(usize, Check)> {
    checks.into_iter().map(|c| (gi, c)).collect()
}

fn names_of(gi: usize, t: &Target, kind: Kind) -> Vec<(usize, Kind, String)> {
    t.names.iter().map(|n| (gi, kind, n.value())).collect()
}

fn timed_out(kind: Kind, subject: String, timeout: Duration) -> Check {
    let fix = match kind {
        Kind::Http01 => {
            "the CA gives up the same way: make sure TCP port 80 of every A/AAAA address reaches the web \
             server (firewall, security group, port forward)"
        }
        Kind::Tls => "make sure TCP port 443 reaches the server that should serve the certificate",
        Kind::Dns | Kind::Caa | Kind::Dns01 => {
            "check that the DNS servers answer (--dns-resolver IP:PORT to ask another one)"
        }
        _ => "run again with a longer --timeout",
    };
    Check::fail(
        kind,
        subject,
        format!("no result within {} s", timeout.as_secs_f32()),
        fix,
    )
}

/// certbot's name for an authenticator (what `authenticator =` says in the conf).
fn authenticator_name(a: &AuthSpec) -> String {
    match a {
        AuthSpec::Webroot(_) => "webroot".into(),
        AuthSpec::Standalone { .. } => "standalone".into(),
        AuthSpec::TlsAlpn { .. } => crate::authenticator::tls_alpn::AUTHENTICATOR.into(),
        AuthSpec::Dns(d) => match d.provider.registered() {
            Some((reg, _)) => reg.authenticator.to_string(),
            None => "manual".into(),
        },
        AuthSpec::Nginx(_) => "nginx".into(),
        AuthSpec::Apache(_) => "apache".into(),
        AuthSpec::ManualHttp { .. } => "manual".into(),
    }
}

/// A random token for test files and records: 16 bytes, hex.
pub(crate) fn random_token() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
