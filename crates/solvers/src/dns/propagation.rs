//! Wait until every authoritative server of a zone answers the expected TXT values, instead
//! of sleeping a fixed time: poll fast (50 ms, doubling, capped at 2 s), give up at a deadline
//! and then say which server still answers what.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::lookup::{NameServer, Resolver, authoritative_txt};
use super::{DnsError, TxtRecord};

/// How long and how often to check.
#[derive(Debug, Clone)]
pub struct PropagationPolicy {
    /// Give up after this long (default 120 s).
    pub timeout: Duration,
    /// Never return before this long (certbot's `--dns-*-propagation-seconds`; default 0).
    pub min_wait: Duration,
    /// First poll interval (default 50 ms); doubles up to `max_interval`.
    pub initial_interval: Duration,
    /// Poll interval cap (default 2 s).
    pub max_interval: Duration,
}

impl Default for PropagationPolicy {
    fn default() -> Self {
        PropagationPolicy {
            timeout: Duration::from_secs(120),
            min_wait: Duration::ZERO,
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_secs(2),
        }
    }
}

/// Wait until, for every record's name, every authoritative server of its zone answers all
/// values expected there (wildcard + apex share a name: both must be visible).
pub async fn wait_for(
    resolver: &Resolver,
    records: &[TxtRecord],
    policy: &PropagationPolicy,
) -> Result<(), DnsError> {
    let started = Instant::now();
    let deadline = started + policy.timeout;
    // name -> (zone, values)
    let mut by_name: BTreeMap<&str, (Option<&str>, Vec<&str>)> = BTreeMap::new();
    for r in records {
        let e = by_name.entry(&r.fqdn).or_insert((r.zone.as_deref(), Vec::new()));
        if !e.1.contains(&r.value.as_str()) {
            e.1.push(&r.value);
        }
    }
    let checks = by_name
        .iter()
        .map(|(name, (zone, values))| check_name(resolver, name, *zone, values, policy, deadline));
    let failures: Vec<String> = futures::future::join_all(checks)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if !failures.is_empty() {
        return Err(DnsError::Propagation(format!(
            "not visible after {} s: {} (raise --dns-propagation-timeout if the provider is slow)",
            policy.timeout.as_secs(),
            failures.join("; ")
        )));
    }
    let min_end = started + policy.min_wait;
    if Instant::now() < min_end {
        tokio::time::sleep_until(min_end).await;
    }
    Ok(())
}

async fn check_name(
    resolver: &Resolver,
    name: &str,
    zone: Option<&str>,
    values: &[&str],
    policy: &PropagationPolicy,
    deadline: Instant,
) -> Result<(), String> {
    let zone = match zone {
        Some(z) => z.to_string(),
        None => resolver.find_zone(name).await.map_err(|e| e.to_string())?,
    };
    let servers = resolver.name_servers(&zone).await.map_err(|e| e.to_string())?;
    let polls = servers
        .iter()
        .map(|s| poll_server(s, name, values, policy, deadline));
    let failures: Vec<String> = futures::future::join_all(polls)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

async fn poll_server(
    server: &NameServer,
    name: &str,
    values: &[&str],
    policy: &PropagationPolicy,
    deadline: Instant,
) -> Result<(), String> {
    let mut interval = policy.initial_interval;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match authoritative_txt(
            server.addr,
            name,
            left.clamp(Duration::from_millis(300), Duration::from_secs(3)),
        )
        .await
        {
            Ok((_, got)) if values.iter().all(|v| got.iter().any(|g| g == v)) => return Ok(()),
            Ok((rcode, got)) if got.is_empty() => format!("no TXT ({})", rcode_name(rcode)),
            Ok((_, got)) => format!("{got:?}"),
            Err(e) => e.to_string(),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "{} ({}) answers {last} for {name}, expected {values:?}",
                server.host, server.addr
            ));
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval * 2).min(policy.max_interval);
    }
}

/// The mnemonics dig prints.
fn rcode_name(rc: hickory_proto::op::ResponseCode) -> String {
    use hickory_proto::op::ResponseCode;
    match rc {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => other.to_string(),
    }
}
