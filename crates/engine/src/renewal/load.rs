//! Step 1 of a pass: read every lineage (conf, links, certificate, failure memory) in a few
//! threads, without network. A lineage whose CA is known to have no ARI is decided here, so
//! a large tree with nothing due keeps only small reports in memory. So is one whose CA's ARI
//! support is not known yet (first run, or the directory cache is a day old), tentatively:
//! otherwise the first run would keep every lineage whole just to wait for one directory.

use std::path::PathBuf;

use certfleet_core::CertInfo;
use certfleet_renew::{CertFacts, Decision, LineageState, StateStore};
use certfleet_store::{Lineage, Store};

use super::{LineageReport, PassOptions, decide_one, waiting};
use crate::account::LE_PRODUCTION;
use crate::lineage::{key_mismatch, live_set_problem};

/// A lineage with everything a decision and a renewal need.
pub(super) struct Loaded {
    pub lineage: Lineage,
    pub info: CertInfo,
    pub names: Vec<String>,
    pub state: LineageState,
    pub facts: CertFacts,
    pub server: String,
    pub ca_bundle: Option<PathBuf>,
    /// The live key is unreadable or not the certificate's: the renewal makes a new one.
    pub key_broken: bool,
}

pub(super) enum Load {
    /// Needs the network (ARI, or due): everything kept.
    Full(Box<Loaded>),
    /// Decided without network and not due: only the report.
    Settled(LineageReport, Decision),
    /// The CA's ARI support is unknown; decided as for a CA without ARI, and not due that way.
    /// Settled as is if the directory says the CA has no ARI (or cannot be read), loaded again
    /// if it has ARI.
    Tentative(Tentative),
    Broken(String),
}

pub(super) struct Tentative {
    pub report: LineageReport,
    pub decision: Decision,
    pub server: String,
    pub ca_bundle: Option<PathBuf>,
}

/// Load `names`, in order; `has_ari` says whether a server has ARI, if known.
pub(super) fn load_all(
    store: &Store,
    states: Option<&StateStore>,
    names: &[String],
    opts: &PassOptions,
    has_ari: &(dyn Fn(&str) -> Option<bool> + Sync),
) -> Vec<Load> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
        .min(names.len().div_ceil(64).max(1));
    let one = |n: &String| settle(load_one(store, states, n, opts), opts, has_ari);
    if threads <= 1 {
        return names.iter().map(one).collect();
    }
    let chunk = names.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = names
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("loader thread"))
            .collect()
    })
}

fn settle(r: Result<Loaded, String>, opts: &PassOptions, has_ari: &dyn Fn(&str) -> Option<bool>) -> Load {
    let l = match r {
        Ok(l) => l,
        Err(e) => return Load::Broken(e),
    };
    let ari = has_ari(&l.server);
    if ari != Some(true)
        && let Ok(d) = decide_one(&l, opts)
        && let Some(outcome) = waiting(&d)
    {
        let report = LineageReport::new(&l, outcome);
        if ari == Some(false) {
            return Load::Settled(report, d);
        }
        return Load::Tentative(Tentative {
            report,
            decision: d,
            server: l.server,
            ca_bundle: l.ca_bundle,
        });
    }
    Load::Full(Box::new(l))
}

fn load_one(
    store: &Store,
    states: Option<&StateStore>,
    name: &str,
    opts: &PassOptions,
) -> Result<Loaded, String> {
    let mut lineage = store.load_lineage(name).map_err(|e| e.to_string())?;
    // Version agreement only (no syscalls); reading the certificate below proves its link,
    // and a renewal writes a fresh set anyway.
    if lineage.version().is_none() {
        return Err(format!(
            "{}: the live links are missing or point at different versions; run `certfleet update_symlinks`",
            lineage
                .live_path(certfleet_store::Kind::Cert)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ));
    }
    let info = lineage.cert_info().map_err(|e| e.to_string())?;
    let names = certfleet_store::lineage::certbot_names(&info);
    let state = match states {
        Some(s) => s.load(name).unwrap_or_else(|e| {
            tracing::warn!("{e}");
            LineageState::new(name)
        }),
        None => LineageState::new(name),
    };
    let mut facts = CertFacts::from_cert(&info);
    if let Some(why) = key_mismatch(&lineage, &info) {
        facts = facts.with_mismatch(why);
    }
    // A live set a service cannot load (as `certificates` shows it) is due now: the renewal
    // writes a complete new one. certbot would wait for expiry.
    let live = live_set_problem(&lineage, &info);
    if let Some(p) = &live {
        facts = facts.with_live_broken(p.why.clone());
    }
    // After the mismatch check: `renew --key-type rsa` changes the next key, as in certbot; it
    // does not make every lineage due.
    opts.overrides.apply(&mut lineage.conf);
    let server = opts
        .server_override
        .clone()
        .or_else(|| lineage.conf.server().map(str::to_string))
        .unwrap_or_else(|| LE_PRODUCTION.to_string());
    let ca_bundle = lineage
        .conf
        .param_str("ca_bundle")
        .map(PathBuf::from)
        .or_else(|| opts.ca_bundle.clone());
    Ok(Loaded {
        lineage,
        info,
        names,
        state,
        facts,
        server,
        ca_bundle,
        key_broken: live.is_some_and(|p| p.key),
    })
}
