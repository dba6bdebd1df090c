//! ACME accounts in certbot's accounts/ tree: find the saved one for a server, register and
//! save a new one, open one a renewal conf names.

use std::path::PathBuf;

use certfleet_acme::{Account, AccountKey, AcmeClient, ClientOptions, Eab, NewAccount};
use certfleet_core::{Clock, KeySpec};
use certfleet_store::Store;
use certfleet_store::accounts::Account as AccountRecord;

use crate::EngineError;
use crate::events::{EventSink, step};

/// Let's Encrypt's production directory: the server when none is given.
pub const LE_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`--staging`, and dry runs without `--server`).
pub const LE_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// How to pick or create an account (certbot's account flags).
#[derive(Debug, Clone, Default)]
pub struct AccountOptions {
    /// The certbot config dir, for messages.
    pub config_dir: PathBuf,
    /// Use this account id when several exist for the server.
    pub account: Option<String>,
    /// Contact email(s), comma-separated.
    pub email: Option<String>,
    pub register_unsafely_without_email: bool,
    pub agree_tos: bool,
    pub eab_kid: Option<String>,
    pub eab_hmac_key: Option<String>,
}

/// Fetch the directory of `server`.
pub async fn connect(server: &str, ca_bundle: Option<PathBuf>) -> Result<AcmeClient, EngineError> {
    let opts = ClientOptions {
        ca_bundle,
        timeout: None,
    };
    Ok(AcmeClient::connect(server, &opts).await?)
}

/// The saved account for this server, if any (the one named by `opts.account` when several).
pub fn saved(
    opts: &AccountOptions,
    store: &Store,
    server: &str,
) -> Result<Option<AccountRecord>, EngineError> {
    let mut accounts = store.accounts().list(server)?;
    if let Some(id) = &opts.account {
        return match accounts.into_iter().find(|a| &a.id == id) {
            Some(a) => Ok(Some(a)),
            None => Err(EngineError::config(format!(
                "no account {id} for {server} under {}",
                opts.config_dir.display()
            ))),
        };
    }
    // certbot picks the oldest when several exist; so do we, for the same behaviour.
    accounts.sort_by(|a, b| a.meta.creation_dt.cmp(&b.meta.creation_dt));
    Ok(accounts.into_iter().next())
}

/// A saved account, ready to sign requests to `client`'s CA.
pub fn open(client: &AcmeClient, rec: &AccountRecord) -> Result<Account, EngineError> {
    let key = AccountKey::new(rec.key.clone()).map_err(|source| EngineError::AccountKey {
        id: rec.id.clone(),
        source,
    })?;
    let uri = rec
        .uri()
        .ok_or_else(|| EngineError::AccountUrl { id: rec.id.clone() })?;
    Ok(Account::from_parts(client, key, uri.to_string()))
}

/// The account a renewal conf names (`id`), or the oldest for the server.
pub fn for_renewal(store: &Store, client: &AcmeClient, id: Option<&str>) -> Result<Account, EngineError> {
    let server = client.directory_url();
    let mut list = store.accounts().list(server)?;
    list.sort_by(|a, b| a.meta.creation_dt.cmp(&b.meta.creation_dt));
    let rec = match id {
        Some(id) => list
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| EngineError::NoAccount {
                what: format!(
                    "account {id} (named in the renewal conf) is not in {} for {server}; restore it, or \
                 `certfleet reconfigure --cert-name NAME --server URL` after registering",
                    store.dirs().accounts_dir().display()
                ),
            })?,
        None => list.into_iter().next().ok_or_else(|| EngineError::NoAccount {
            what: format!(
                "no account for {server}: run `certfleet register --server {server} -m EMAIL --agree-tos`"
            ),
        })?,
    };
    open(client, &rec)
}

fn contacts(opts: &AccountOptions) -> Result<Vec<String>, EngineError> {
    match (&opts.email, opts.register_unsafely_without_email) {
        (Some(e), _) => Ok(e
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()),
        (None, true) => Ok(vec![]),
        (None, false) => Err(EngineError::config(
            "an account needs a contact email: pass -m you@example.com (or --register-unsafely-without-email)",
        )),
    }
}

fn eab(opts: &AccountOptions) -> Result<Option<Eab>, EngineError> {
    match (&opts.eab_kid, &opts.eab_hmac_key) {
        (Some(kid), Some(key)) => Eab::new(kid, key)
            .map(Some)
            .map_err(|e| EngineError::config(e.to_string())),
        _ => Ok(None),
    }
}

/// Use the saved account, or register a new one (saved unless `persist` is false, as in
/// a dry run, which must leave the tree untouched).
pub async fn obtain(
    opts: &AccountOptions,
    store: &Store,
    client: &AcmeClient,
    persist: bool,
    events: &dyn EventSink,
    clock: &dyn Clock,
) -> Result<Account, EngineError> {
    let server = client.directory_url().to_string();
    if let Some(rec) = saved(opts, store, &server)? {
        return open(client, &rec);
    }
    let (account, body) = register_new(opts, client, events).await?;
    if persist {
        let rec = record(&account, body, clock);
        store.accounts().save(&server, &rec)?;
        tracing::info!("saved account {} under {}", rec.id, opts.config_dir.display());
    }
    Ok(account)
}

/// Register a new account at `client`'s CA; returns it with the CA's account object.
pub async fn register_new(
    opts: &AccountOptions,
    client: &AcmeClient,
    events: &dyn EventSink,
) -> Result<(Account, serde_json::Value), EngineError> {
    let meta = &client.directory().meta;
    if meta.terms_of_service.is_some() && !opts.agree_tos {
        let tos = meta.terms_of_service.as_deref().unwrap_or_default();
        return Err(EngineError::config(format!(
            "the CA's terms of service must be accepted to create an account: read {tos} and pass --agree-tos"
        )));
    }
    let eab = eab(opts)?;
    if meta.external_account_required && eab.is_none() {
        return Err(EngineError::config(
            "this CA requires External Account Binding: pass --eab-kid and --eab-hmac-key from your CA account",
        ));
    }
    step(events, "creating an ACME account");
    let key = AccountKey::generate(KeySpec::EcdsaP256).map_err(EngineError::AccountKeyGeneration)?;
    let req = NewAccount {
        contact: contacts(opts)?,
        terms_of_service_agreed: true,
        only_return_existing: false,
        eab,
    };
    let (account, info, _) = Account::register(client, key, &req).await?;
    let body = serde_json::to_value(&info).unwrap_or_default();
    Ok((account, body))
}

/// The certbot-format record of an account we just registered.
pub fn record(account: &Account, body: serde_json::Value, clock: &dyn Clock) -> AccountRecord {
    let mut rec = AccountRecord::new(account.key().private_key().clone(), account.url(), clock.now());
    rec.regr.body = body;
    rec
}
