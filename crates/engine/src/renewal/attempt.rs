//! One renewal of one lineage: rebuild its authenticator and key settings from its renewal
//! conf, issue (with ARI's `replaces` when the CA has ARI), save the new version.

use std::time::Duration;

use certfleet_acme::Account;
use certfleet_core::{CertInfo, Identifier};
use certfleet_store::CertFiles;

use super::jobs::Shared;
use super::load::Loaded;
use super::sweep::sweep_temp_files;
use crate::EngineError;
use crate::authenticator::{AuthSpec, SolverContext};
use crate::issue::{self, IssueRequest, KeySource};
use crate::lineage::{lineage_key, wanted_key_spec};

/// How long each wait on the CA may take during a renewal.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Issue and save one renewal: the new version and its certificate; `None` for a dry run.
pub(super) async fn attempt(
    shared: &Shared,
    l: &Loaded,
    acct: &Account,
) -> Result<Option<(u32, CertInfo)>, EngineError> {
    let lin = &l.lineage;
    let ids: Vec<Identifier> = crate::lineage::identifiers(&l.names)
        .map_err(|e| EngineError::config(format!("{}: {e}", lin.name)))?;
    let auth = AuthSpec::from_conf(&lin.conf, &ids)?;
    if lin.conf.must_staple() {
        tracing::warn!(
            "{}: must_staple = True in its renewal conf, but Let's Encrypt no longer issues OCSP Must-Staple \
             certificates (it stopped in 2025 and refuses such orders); certfleet renews without the extension",
            lin.name
        );
    }
    if l.key_broken && lin.conf.reuse_key() {
        tracing::warn!(
            "{}: reuse_key is set, but the live key is broken: renewing with a new key",
            lin.name
        );
    }
    let key = if lin.conf.reuse_key() && !shared.new_key && !l.key_broken {
        KeySource::Reuse(lineage_key(lin)?)
    } else {
        KeySource::Generate(wanted_key_spec(lin, &l.info)?)
    };
    let has_ari = acct.client().directory().renewal_info.is_some();
    // Never in a dry run: `replaces` tells the CA the old certificate is done with.
    let replaces = match (&l.info.authority_key_id, has_ari && !shared.dry_run) {
        (Some(aki), true) => Some(certfleet_acme::cert_id(aki, &l.info.serial)),
        _ => None,
    };
    if let Some(id) = &replaces {
        tracing::info!("{}: new order replaces={id} (ARI)", lin.name);
    }
    let solver = auth
        .solver(&SolverContext {
            work_dir: shared.store.dirs().work_dir.clone(),
        })
        .await?;
    solver.preflight(&ids).await?;
    let req = IssueRequest {
        identifiers: ids.clone(),
        key,
        preferred_profile: lin.conf.param_str("preferred_profile").map(str::to_string),
        required_profile: lin.conf.param_str("required_profile").map(str::to_string),
        preferred_chain: lin.conf.preferred_chain().map(str::to_string),
        replaces: replaces.clone(),
        timeout: TIMEOUT,
    };
    let events = shared.events.as_ref();
    let issuance = issue::issue_replacing(acct, solver.as_ref(), req, events);
    let issued = if shared.interrupt {
        issue::interruptible(solver.as_ref(), issuance).await?
    } else {
        issuance.await?
    };
    if shared.dry_run {
        return Ok(None);
    }
    let key_pem = issued.key.as_ref().expect("lineages always have a key").to_pem();
    let files = CertFiles::new(issued.cert_pem.clone(), issued.chain_pem.clone(), key_pem);
    let store = shared.store.clone();
    let name = lin.name.clone();
    let mut conf = lin.conf.clone();
    // What this renewal used, as certbot records it.
    if shared.server_override {
        conf.set_param("server", l.server.clone());
    }
    conf.set_param(
        "account",
        certfleet_store::jwk::account_id(acct.key().private_key()),
    );
    let saved = tokio::task::spawn_blocking(move || store.save_version(&name, &files, &conf))
        .await
        .map_err(|source| EngineError::SaveTask {
            name: lin.name.clone(),
            source,
        })??;
    if let Some(why) = &saved.conf_not_updated {
        tracing::warn!(
            "{}: version {} is live, but its renewal conf was not rewritten ({why}); the old conf \
             still renews it, without this run's settings: free space and run `certfleet renew` again",
            lin.name,
            saved.version
        );
    }
    // Orphans of a run that was killed mid-write (we hold the store lock, so nobody else is
    // writing here now).
    sweep_temp_files(&lin.archive_dir);
    sweep_temp_files(&shared.store.live_dir(&lin.name));
    for dir in [shared.store.live_dir(&lin.name).parent(), lin.conf_path.parent()]
        .into_iter()
        .flatten()
    {
        sweep_temp_files(dir);
    }
    if let Some(s) = &shared.states {
        sweep_temp_files(s.dir());
    }
    Ok(Some((saved.version, issued.info)))
}
