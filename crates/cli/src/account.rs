//! The certbot tree and the ACME server the global flags name.

use certfleet_acme::AcmeClient;
use certfleet_engine::account::AccountOptions;
use std::time::Duration;

use certfleet_store::{Store, StoreLock};

use crate::args::GlobalArgs;
use crate::error::{CliError, Result};

/// How long a run waits for another certbot or certfleet run to release the tree.
pub const LOCK_WAIT: Duration = Duration::from_secs(600);

/// Take the store lock: waiting up to [`LOCK_WAIT`] (and saying for whom), or with `-n`
/// failing at once, as certbot does.
pub fn lock(g: &GlobalArgs, store: &Store) -> Result<StoreLock> {
    let wait = if g.non_interactive {
        Duration::ZERO
    } else {
        LOCK_WAIT
    };
    store
        .lock_waiting(wait, |holder| {
            errln!(
                "certfleet: waiting for {holder} to finish (it holds the lock on {}); up to {} minutes, -n fails at once",
                g.config_dir.display(),
                LOCK_WAIT.as_secs() / 60
            )
        })
        .map_err(CliError::store)
}

pub fn store(g: &GlobalArgs) -> Store {
    Store::new(certfleet_store::Dirs::new(
        &g.config_dir,
        &g.work_dir,
        &g.logs_dir,
    ))
}

pub async fn connect(g: &GlobalArgs) -> Result<AcmeClient> {
    Ok(certfleet_engine::account::connect(&g.server_url(), g.ca_bundle()).await?)
}

/// The account flags, for the engine.
pub fn options(g: &GlobalArgs) -> AccountOptions {
    AccountOptions {
        config_dir: g.config_dir.clone(),
        account: g.account.clone(),
        email: g.email.clone(),
        register_unsafely_without_email: g.register_unsafely_without_email,
        agree_tos: g.agree_tos,
        eab_kid: g.eab_kid.clone(),
        eab_hmac_key: g.eab_hmac_key.clone(),
    }
}
