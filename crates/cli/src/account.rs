//! The certbot tree and the ACME server the global flags name.

use certfleet_acme::AcmeClient;
use certfleet_engine::account::AccountOptions;
use certfleet_store::Store;

use crate::args::GlobalArgs;
use crate::error::Result;

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
