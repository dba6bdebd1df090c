//! Finding, creating and saving the ACME account for a server, in certbot's accounts/ tree.

use certfleet_acme::{Account, AccountKey, AcmeClient, ClientOptions, Eab, NewAccount};
use certfleet_core::KeySpec;
use certfleet_store::Store;
use certfleet_store::accounts::Account as AccountRecord;

use crate::args::GlobalArgs;
use crate::error::{CliError, ExitCode, Result};
use crate::progress::Progress;

pub fn store(g: &GlobalArgs) -> Store {
    Store::new(certfleet_store::Dirs::new(
        &g.config_dir,
        &g.work_dir,
        &g.logs_dir,
    ))
}

pub async fn connect(g: &GlobalArgs) -> Result<AcmeClient> {
    let url = g.server_url();
    AcmeClient::connect(
        &url,
        &ClientOptions {
            ca_bundle: g.ca_bundle(),
            timeout: None,
        },
    )
    .await
    .map_err(CliError::acme)
}

/// The saved account for this server, if any (the one named by --account when several).
pub fn saved(g: &GlobalArgs, store: &Store, server: &str) -> Result<Option<AccountRecord>> {
    let mut accounts = store.accounts().list(server).map_err(CliError::store)?;
    if let Some(id) = &g.account {
        return match accounts.into_iter().find(|a| &a.id == id) {
            Some(a) => Ok(Some(a)),
            None => Err(CliError::usage(format!(
                "no account {id} for {server} under {}",
                g.config_dir.display()
            ))),
        };
    }
    // certbot picks the oldest when several exist; so do we, for the same behaviour.
    accounts.sort_by(|a, b| a.meta.creation_dt.cmp(&b.meta.creation_dt));
    Ok(accounts.into_iter().next())
}

fn contacts(g: &GlobalArgs) -> Result<Vec<String>> {
    match (&g.email, g.register_unsafely_without_email) {
        (Some(e), _) => Ok(e
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()),
        (None, true) => Ok(vec![]),
        (None, false) => Err(CliError::usage(
            "an account needs a contact email: pass -m you@example.com (or --register-unsafely-without-email)",
        )),
    }
}

fn eab(g: &GlobalArgs) -> Result<Option<Eab>> {
    match (&g.eab_kid, &g.eab_hmac_key) {
        (Some(kid), Some(key)) => Eab::new(kid, key)
            .map(Some)
            .map_err(|e| CliError::usage(e.to_string())),
        _ => Ok(None),
    }
}

/// Use the saved account, or register a new one (saved unless `persist` is false, as in
/// --dry-run, which must leave the tree untouched).
pub async fn obtain(
    g: &GlobalArgs,
    store: &Store,
    client: &AcmeClient,
    persist: bool,
    progress: &Progress,
) -> Result<Account> {
    let server = client.directory_url().to_string();
    if let Some(rec) = saved(g, store, &server)? {
        let key = AccountKey::new(rec.key.clone())
            .map_err(|e| CliError::store(format!("account {}: {e}", rec.id)))?;
        let uri = rec
            .uri()
            .ok_or_else(|| CliError::store(format!("account {} has no URL in regr.json", rec.id)))?;
        return Ok(Account::from_parts(client, key, uri.to_string()));
    }
    let (account, body) = register_new(g, client, progress).await?;
    if persist {
        let rec = record(&account, body);
        store.accounts().save(&server, &rec).map_err(CliError::store)?;
        tracing::info!("saved account {} under {}", rec.id, g.config_dir.display());
    }
    Ok(account)
}

pub async fn register_new(
    g: &GlobalArgs,
    client: &AcmeClient,
    progress: &Progress,
) -> Result<(Account, serde_json::Value)> {
    let meta = &client.directory().meta;
    if meta.terms_of_service.is_some() && !g.agree_tos {
        let tos = meta.terms_of_service.as_deref().unwrap_or_default();
        return Err(CliError::usage(format!(
            "the CA's terms of service must be accepted to create an account: read {tos} and pass --agree-tos"
        )));
    }
    let eab = eab(g)?;
    if meta.external_account_required && eab.is_none() {
        return Err(CliError::usage(
            "this CA requires External Account Binding: pass --eab-kid and --eab-hmac-key from your CA account",
        ));
    }
    progress.step("creating an ACME account");
    let key = AccountKey::generate(KeySpec::EcdsaP256)
        .map_err(|e| CliError::new(ExitCode::Failure, e.to_string()))?;
    let req = NewAccount {
        contact: contacts(g)?,
        terms_of_service_agreed: true,
        only_return_existing: false,
        eab,
    };
    let (account, info, _) = Account::register(client, key, &req)
        .await
        .map_err(CliError::acme)?;
    let body = serde_json::to_value(&info).unwrap_or_default();
    Ok((account, body))
}

/// The certbot-format record of an account we just registered.
pub fn record(account: &Account, body: serde_json::Value) -> AccountRecord {
    let mut rec = AccountRecord::new(
        account.key().private_key().clone(),
        account.url(),
        time::OffsetDateTime::now_utc(),
    );
    rec.regr.body = body;
    rec
}
