//! `renew --server URL` for a lineage whose account lives at another CA: register an account
//! at URL, as certbot does, with the lineage's contact (the addresses of the account its conf
//! names) unless `-m` gives others. The CA's terms still need `--agree-tos`, as with certbot.

use certfleet_acme::{Account, AcmeClient};
use certfleet_core::SystemClock;
use certfleet_store::{Lineage, Store};

use super::PassOptions;
use crate::EngineError;
use crate::account::{self, AccountOptions};

/// Register at `client`'s CA for `lineage`; saved unless this is a dry run. `missing` says
/// why no saved account could be used.
pub(super) async fn at_new_server(
    store: &Store,
    client: &AcmeClient,
    lineage: &Lineage,
    opts: &PassOptions,
    missing: &str,
) -> Result<Account, EngineError> {
    let mut reg: AccountOptions = opts.registration.clone();
    if reg.email.is_none() {
        let contact = lineage_contact(store, lineage);
        if contact.is_empty() {
            reg.register_unsafely_without_email |= lineage.conf.account().is_some();
        } else {
            reg.email = Some(contact.join(","));
        }
    }
    let server = client.directory_url().to_string();
    tracing::info!(
        "{}: no account at {server} ({missing}); registering one with contact {}",
        lineage.name,
        reg.email.as_deref().unwrap_or("(none)")
    );
    let (acct, body) = account::register_new(&reg, client, &crate::NoEvents)
        .await
        .map_err(|e| EngineError::NoAccount {
            what: format!("{missing}; registering one there failed: {}", e.message()),
        })?;
    if !opts.dry_run {
        let rec = account::record(&acct, body, &SystemClock);
        store.accounts().save(&server, &rec)?;
        tracing::info!("saved account {} for {server}", rec.id);
    }
    Ok(acct)
}

/// The `mailto:` addresses of the account the lineage's conf names, at its own server.
fn lineage_contact(store: &Store, lineage: &Lineage) -> Vec<String> {
    let (Some(server), Some(id)) = (lineage.conf.server(), lineage.conf.account()) else {
        return vec![];
    };
    let Ok(list) = store.accounts().list(server) else {
        return vec![];
    };
    list.iter()
        .find(|a| a.id == id)
        .and_then(|a| a.regr.body.get("contact").and_then(|c| c.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.as_str())
        .map(|c| c.strip_prefix("mailto:").unwrap_or(c).to_string())
        .collect()
}
