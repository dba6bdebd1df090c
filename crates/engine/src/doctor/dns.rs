//! DNS: each name's addresses (the same at every authoritative server), CAA against the CA
//! the lineage uses, and for dns-01 lineages the `_acme-challenge` delegation plus a test TXT
//! record added and removed with the lineage's own credentials.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use certfleet_core::Identifier;
use certfleet_solvers::ChallengeTask;
use certfleet_solvers::Solver;
use certfleet_solvers::dns::ProviderConfig;
use certfleet_solvers::dns::lookup::{CaaRecord, Resolver};
use tokio::sync::Mutex;

use super::{Check, Ctx, Kind, Target, random_token};
use crate::authenticator::AuthSpec;

/// The CAA identities of the CAs people use, so the common case needs no request to the CA.
const KNOWN_CAS: &[(&str, &str)] = &[
    ("acme-v02.api.letsencrypt.org", "letsencrypt.org"),
    ("acme-staging-v02.api.letsencrypt.org", "letsencrypt.org"),
    ("acme.zerossl.com", "sectigo.com"),
    ("dv.acme-v02.api.pki.goog", "pki.goog"),
    ("dv.acme-v02.test-api.pki.goog", "pki.goog"),
    ("api.buypass.com", "buypass.com"),
    ("api.test4.buypass.no", "buypass.com"),
    ("acme.ssl.com", "ssl.com"),
    ("acme.sectigo.com", "sectigo.com"),
];

/// The CAA identities of each ACME server: the table above, else its directory's
/// `meta.caaIdentities` (fetched once per server, only when a CAA record makes it matter).
pub(crate) struct CaaIdentities {
    ca_bundle: Option<PathBuf>,
    timeout: Duration,
    cache: Mutex<BTreeMap<String, Vec<String>>>,
}

impl CaaIdentities {
    pub fn new(ca_bundle: Option<PathBuf>, timeout: Duration) -> Self {
        Self {
            ca_bundle,
            timeout,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// Empty when the CA does not say.
    async fn of(&self, server: &str) -> Vec<String> {
        let host = url::Url::parse(server)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        if let Some((_, id)) = KNOWN_CAS.iter().find(|(h, _)| Some(*h) == host.as_deref()) {
            return vec![id.to_string()];
        }
        // Held across the fetch: concurrent checks of one server wait for one request.
        let mut cache = self.cache.lock().await;
        if let Some(ids) = cache.get(server) {
            return ids.clone();
        }
        let opts = certfleet_acme::ClientOptions {
            ca_bundle: self.ca_bundle.clone(),
            timeout: Some(self.timeout),
        };
        let ids = match certfleet_acme::AcmeClient::connect(server, &opts).await {
            Ok(c) => c.directory().meta.caa_identities.clone(),
            Err(e) => {
                tracing::debug!("reading the directory of {server} for its CAA identities: {e}");
                vec![]
            }
        };
        cache.insert(server.to_string(), ids.clone());
        ids
    }
}

/// The A/AAAA and CAA checks of `t.names[ni]`.
pub(super) async fn names(ctx: &Ctx, t: &Target, ni: usize) -> Vec<Check> {
    let id = &t.names[ni];
    let subject = id.value();
    let r = match ctx.resolver() {
        Ok(r) => r,
        Err((detail, fix)) => {
            return vec![
                Check::fail(Kind::Dns, &subject, &detail, &fix),
                Check::fail(Kind::Caa, &subject, detail, fix),
            ];
        }
    };
    if let Identifier::Ip(_) = id {
        return vec![];
    }
    let dns01 = matches!(t.auth, Some(AuthSpec::Dns(_)));
    let (a, caa) = futures::join!(addresses(r, id, dns01), caa(ctx, r, id, &t.server));
    vec![a, caa]
}

async fn addresses(r: &Resolver, id: &Identifier, dns01: bool) -> Check {
    let subject = id.value();
    if id.is_wildcard() {
        return Check::ok(
            Kind::Dns,
            subject,
            "wildcard: validated through dns-01, no address needed",
        );
    }
    let name = id.base_name();
    let ips = match r.ips(&name).await {
        Ok(v) => v,
        Err(e) => {
            return Check::fail(
                Kind::Dns,
                subject,
                e.to_string(),
                "check the name's DNS servers answer (or pass --dns-resolver IP:PORT)",
            );
        }
    };
    if ips.is_empty() {
        if dns01 {
            return Check::ok(
                Kind::Dns,
                subject,
                format!("no A/AAAA record (none needed for dns-01; resolver {})", r.addr()),
            );
        }
        return Check::fail(
            Kind::Dns,
            subject,
            format!("{name} has no A or AAAA record (resolver {})", r.addr()),
            format!("add an A (and/or AAAA) record for {name} pointing at this server's public address"),
        );
    }
    let listed = list(&ips);
    // Every authoritative server must give the same answer: the CA asks any of them.
    let (servers, diff) = disagreement(r, &name, &ips).await;
    if let Some(diff) = diff {
        return Check::warn(
            Kind::Dns,
            subject,
            format!("A/AAAA {listed} from the resolver, but {diff}"),
            "update the lagging name server (zone serial, NOTIFY/AXFR to the secondaries) so every \
             authoritative server answers the same addresses",
        );
    }
    let same = match servers {
        0 => String::new(),
        1 => ", the same at its authoritative server".to_string(),
        n => format!(", the same at all {n} authoritative servers"),
    };
    Check::ok(Kind::Dns, subject, format!("A/AAAA {listed}{same}"))
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// How many authoritative servers were asked, and the first whose A/AAAA answer differs from
/// `seen`, said in words. Failing to find the zone or its servers is not this check's business
/// (none asked).
async fn disagreement(r: &Resolver, name: &str, seen: &[IpAddr]) -> (usize, Option<String>) {
    let Ok(zone) = r.find_zone(name).await else {
        return (0, None);
    };
    let Ok(servers) = r.name_servers(&zone).await else {
        return (0, None);
    };
    let mut want = seen.to_vec();
    want.sort();
    let answers = futures::future::join_all(servers.iter().map(|ns| async move {
        let mut got = Resolver::new(ns.addr).ips(name).await;
        if let Ok(v) = &mut got {
            v.sort();
        }
        (ns, got)
    }))
    .await;
    let diff = answers.into_iter().find_map(|(ns, got)| match got {
        Ok(v) if v == want => None,
        Ok(v) if v.is_empty() => Some(format!(
            "name server {} ({}) has no address for it",
            ns.host, ns.addr
        )),
        Ok(v) => Some(format!(
            "name server {} ({}) answers {}",
            ns.host,
            ns.addr,
            list(&v)
        )),
        Err(e) => Some(format!("name server {} does not answer: {e}", ns.host)),
    });
    (servers.len(), diff)
}

/// RFC 8659: the CAA records that govern `id` are those at the closest name (itself, then
/// each parent) that has any; a wildcard is governed by `issuewild` when that tag is present.
async fn caa(ctx: &Ctx, r: &Resolver, id: &Identifier, server: &str) -> Check {
    let subject = id.value();
    let base = id.base_name();
    let mut at = base.clone();
    let records = loop {
        match r.caa(&at).await {
            Ok(v) if !v.is_empty() => break Some(v),
            Ok(_) => {}
            Err(e) => {
                return Check::fail(
                    Kind::Caa,
                    subject,
                    format!("CAA lookup of {at}: {e}"),
                    "a DNS server that fails CAA queries makes the CA refuse to issue; fix the server \
                     (it must answer NOERROR for CAA, even with no records)",
                );
            }
        }
        match at.split_once('.') {
            Some((_, parent)) if parent.contains('.') => at = parent.to_string(),
            _ => break None,
        }
    };
    let Some(records) = records else {
        return Check::ok(Kind::Caa, subject, "no CAA records: every CA may issue");
    };
    let wild = id.is_wildcard() && records.iter().any(|c| c.tag == "issuewild");
    let tag = if wild { "issuewild" } else { "issue" };
    let relevant: Vec<&CaaRecord> = records.iter().filter(|c| c.tag == tag).collect();
    let critical_unknown = records
        .iter()
        .find(|c| c.critical && !matches!(c.tag.as_str(), "issue" | "issuewild" | "iodef"));
    let shown: Vec<String> = records
        .iter()
        .map(|c| format!("{} \"{}\"", c.tag, c.value))
        .collect();
    let shown = format!("CAA at {at}: {}", shown.join(", "));
    if let Some(c) = critical_unknown {
        return Check::fail(
            Kind::Caa,
            subject,
            format!(
                "{shown}; the critical tag {:?} is unknown to CAs, so none may issue",
                c.tag
            ),
            format!("remove the critical flag (128) from the {} record at {at}", c.tag),
        );
    }
    if relevant.is_empty() {
        return Check::ok(
            Kind::Caa,
            subject,
            format!("{shown} (no {tag} property: every CA may issue)"),
        );
    }
    let allowed: Vec<String> = relevant
        .iter()
        .map(|c| {
            c.value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|d| !d.is_empty())
        .collect();
    let ids = ctx.ca_ids.of(server).await;
    if ids.is_empty() {
        return Check::warn(
            Kind::Caa,
            subject,
            format!(
                "{shown}; the CA at {server} publishes no CAA identity, so whether it may issue is unknown"
            ),
            format!(
                "make sure the CA's CAA domain is among: {}",
                if allowed.is_empty() {
                    "(none: `;` forbids every CA)".into()
                } else {
                    allowed.join(", ")
                }
            ),
        );
    }
    if allowed.iter().any(|a| ids.contains(a)) {
        return Check::ok(Kind::Caa, subject, format!("{shown}: allows {}", ids.join(", ")));
    }
    Check::fail(
        Kind::Caa,
        subject,
        format!(
            "{shown}: the CA at {server} ({}) may not issue {}",
            ids.join(", "),
            if wild { "wildcards for it" } else { "for it" }
        ),
        format!(
            "add the record `{at}. CAA 0 {tag} \"{}\"` (keep the others you need)",
            ids[0]
        ),
    )
}

/// dns-01: where `_acme-challenge.NAME` leads (CNAME delegation, zone), then one test TXT
/// per name put in place and removed with the lineage's provider and credentials, and seen at
/// every authoritative server in between: what a renewal does, minus the CA.
pub(super) async fn dns01(ctx: &Ctx, t: &Target) -> Vec<Check> {
    let Some(AuthSpec::Dns(auth)) = &t.auth else {
        return vec![];
    };
    let names: Vec<&Identifier> = t
        .names
        .iter()
        .filter(|i| matches!(i, Identifier::Dns(_)))
        .collect();
    if auth.provider == ProviderConfig::Manual {
        return names
            .iter()
            .map(|id| {
                Check::warn(
                    Kind::Dns01,
                    id.value(),
                    "manual dns-01 without hooks: every renewal needs someone to create the TXT record",
                    "automate it: --dns-rfc2136 (or another --dns-<provider>), or --manual-auth-hook CMD",
                )
            })
            .collect();
    }
    // Where each name's record goes, reported even when the update below fails.
    let resolver = auth.resolver.map(Resolver::new).or_else(|| ctx.resolver.clone());
    let mut delegation: Vec<Result<String, String>> = Vec::new();
    for id in &names {
        let name = format!("_acme-challenge.{}", id.base_name());
        delegation.push(match &resolver {
            None => Err("no DNS resolver (pass --dns-resolver IP:PORT)".into()),
            Some(r) => match r.follow_cname(&name).await {
                Err(e) => Err(e.to_string()),
                Ok(end) => match r.find_zone(&end).await {
                    Err(e) => Err(e.to_string()),
                    Ok(zone) if end == name => Ok(format!("{name} is in zone {zone}")),
                    Ok(zone) => Ok(format!("{name} is delegated by CNAME to {end} (zone {zone})")),
                },
            },
        });
    }
    // The test record: the renewal's own solver, with a short propagation wait.
    let mut probe = auth.clone();
    probe.propagation_seconds = None;
    probe.propagation_timeout = Some(ctx.opts.timeout.as_secs().max(1));
    if probe.resolver.is_none() {
        probe.resolver = ctx.opts.resolver;
    }
    let tasks: Vec<ChallengeTask> = names
        .iter()
        .map(|id| ChallengeTask {
            identifier: (*id).clone(),
            token: random_token(),
            key_authorization: format!("certfleet-doctor.{}", random_token()),
        })
        .collect();
    let update = match probe.solver(&ctx.opts.store.dirs().work_dir) {
        Err(e) => Err(e.message()),
        Ok(solver) => {
            let presented = solver.present(&tasks).await;
            let cleaned = solver.cleanup(&tasks).await;
            match (presented, cleaned) {
                (Err(e), _) => Err(e.to_string()),
                (Ok(()), Err(e)) => Err(format!("the test record was added but not removed: {e}")),
                (Ok(()), Ok(())) => Ok(()),
            }
        }
    };
    names
        .iter()
        .zip(delegation)
        .map(|(id, d)| {
            let subject = id.value();
            match (d, &update) {
                (Err(e), _) => Check::fail(
                    Kind::Dns01,
                    subject,
                    format!("_acme-challenge.{}: {e}", id.base_name()),
                    "the name must resolve to a zone your credentials can update: add the zone, or a CNAME \
                     from _acme-challenge.NAME to a name in one",
                ),
                (Ok(d), Err(e)) => Check::fail(
                    Kind::Dns01,
                    subject,
                    format!("{d}; adding and removing a test TXT record failed: {e}"),
                    "check the credentials file (key name, secret, algorithm, server) and that the DNS \
                     server's update policy allows TXT records at that name",
                ),
                (Ok(d), Ok(())) => Check::ok(
                    Kind::Dns01,
                    subject,
                    format!(
                        "{d}; a test TXT record was added, seen at every authoritative server, and removed"
                    ),
                ),
            }
        })
        .collect()
}
