//! Step 2 of a pass: the network a decision needs, and no more. Which CAs have ARI (once a
//! day per CA, see [`CaCache`]), and the ARI windows of the lineages whose poll time has come.

use std::collections::HashMap;
use std::path::PathBuf;

use certfleet_acme::{Account, AcmeClient};
use certfleet_renew::{AriWindow, StateStore};
use futures::StreamExt;
use time::OffsetDateTime;

use super::load::Loaded;
use super::{PassOptions, PassReport};
use crate::EngineError;
use crate::ca_cache::CaCache;

/// Concurrent ARI polls per pass.
const ARI_POLL_CONCURRENCY: usize = 16;

/// One ACME client per (server, CA bundle), connected on first use.
#[derive(Default)]
pub(super) struct Clients {
    map: HashMap<(String, Option<PathBuf>), AcmeClient>,
}

impl Clients {
    pub async fn get(&mut self, server: &str, bundle: &Option<PathBuf>) -> Result<AcmeClient, EngineError> {
        let key = (server.to_string(), bundle.clone());
        if let Some(c) = self.map.get(&key) {
            return Ok(c.clone());
        }
        let c = crate::account::connect(server, bundle.clone()).await?;
        self.map.insert(key, c.clone());
        Ok(c)
    }
}

/// Read the directory of every server (with its CA bundle) whose ARI support the cache does
/// not know.
pub(super) async fn learn_directories<'a>(
    servers: impl Iterator<Item = (&'a String, &'a Option<PathBuf>)>,
    clients: &mut Clients,
    cache: &mut CaCache,
    now: OffsetDateTime,
    report: &mut PassReport,
) {
    // Sorted and deduplicated by reference: thousands of lineages share a few servers.
    let servers: std::collections::BTreeSet<_> = servers.collect();
    for (server, bundle) in servers {
        if cache.has_ari(server, now).is_none() {
            match clients.get(server, bundle).await {
                Ok(c) => cache.record(server, c.directory().renewal_info.is_some(), now),
                Err(e) => report
                    .warnings
                    .push(format!("cannot read the directory of {server}: {}", e.message())),
            }
        }
    }
}

/// Fetch the ARI window of every unexpired lineage of an ARI-capable CA whose poll is due,
/// and remember it in the lineage's state.
pub(super) async fn poll_due_windows(
    ok: &mut [Loaded],
    cache: &CaCache,
    clients: &mut Clients,
    states: Option<&StateStore>,
    opts: &PassOptions,
    report: &mut PassReport,
) {
    let now = opts.clock.now();
    let polls: Vec<usize> = ok
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            cache.has_ari(&l.server, now).unwrap_or(false)
                && l.info.authority_key_id.is_some()
                && l.state.ari_poll_due(now, &l.info.serial)
                && now < l.info.not_after
        })
        .map(|(i, _)| i)
        .collect();
    if polls.is_empty() {
        return;
    }
    let mut jobs = Vec::new();
    for &i in &polls {
        let l = &ok[i];
        let client = match clients.get(&l.server, &l.ca_bundle).await {
            Ok(c) => c,
            Err(e) => {
                report
                    .warnings
                    .push(format!("ARI for {}: {}", l.lineage.name, e.message()));
                continue;
            }
        };
        let id = certfleet_acme::cert_id(
            l.info.authority_key_id.as_deref().unwrap_or_default(),
            &l.info.serial,
        );
        jobs.push(async move { (i, Account::renewal_info(&client, &id).await) });
    }
    let results: Vec<_> = futures::stream::iter(jobs)
        .buffer_unordered(ARI_POLL_CONCURRENCY)
        .collect()
        .await;
    for (i, r) in results {
        let l = &mut ok[i];
        let now = opts.clock.now();
        match r {
            Ok(Some(ri)) => {
                let w = AriWindow::new(
                    ri.window_start,
                    ri.window_end,
                    ri.explanation_url,
                    now,
                    ri.retry_after,
                );
                tracing::info!("ARI for {}: window {} .. {}", l.lineage.name, w.start, w.end);
                l.state.record_ari(now, &l.info.serial, w);
                if !opts.dry_run
                    && let Some(s) = states
                    && let Err(e) = s.save(&l.state)
                {
                    report.warnings.push(e.to_string());
                }
            }
            Ok(None) => {}
            Err(e) => report.warnings.push(format!(
                "could not fetch the CA's renewal window for {} ({e}); using the lifetime rule",
                l.lineage.name
            )),
        }
    }
}
