//! Account verbs: `register`, `update_account`, `unregister`, `show_account`.

use std::process::ExitCode as ProcessExit;

use certfleet_acme::Account;
use certfleet_core::SystemClock;
use certfleet_engine::account::{open, record, register_new, saved};
use certfleet_store::accounts::Account as AccountRecord;

use crate::account;
use crate::args::GlobalArgs;
use crate::error::{CliError, Result};
use crate::progress::Progress;

async fn current(g: &GlobalArgs) -> Result<(certfleet_store::Store, AccountRecord, Account)> {
    let store = account::store(g);
    let client = account::connect(g).await?;
    let server = client.directory_url().to_string();
    let rec = saved(&account::options(g), &store, &server)?.ok_or_else(|| {
        CliError::usage(format!(
            "no account for {server} under {}: create one with `certfleet register -m you@example.com --agree-tos`",
            g.config_dir.display()
        ))
    })?;
    let acct = open(&client, &rec)?;
    Ok((store, rec, acct))
}

pub async fn register(g: &GlobalArgs) -> Result<ProcessExit> {
    let store = account::store(g);
    let client = account::connect(g).await?;
    let server = client.directory_url().to_string();
    let _lock = account::lock(g, &store)?;
    let opts = account::options(g);
    if let Some(rec) = saved(&opts, &store, &server)? {
        return Err(CliError::usage(format!(
            "there is already an account for {server} (id {}); use update_account to change its email",
            rec.id
        )));
    }
    let progress = Progress::new(g.quiet);
    let (acct, body) = register_new(&opts, &client, &progress).await?;
    let rec = record(&acct, body, &SystemClock);
    store.accounts().save(&server, &rec).map_err(CliError::store)?;
    progress.finish();
    if !g.quiet {
        outln!("Account registered: {} (id {})", acct.url(), rec.id);
    }
    Ok(ProcessExit::SUCCESS)
}

pub async fn update(g: &GlobalArgs) -> Result<ProcessExit> {
    let email = g
        .email
        .clone()
        .ok_or_else(|| CliError::usage("update_account needs the new address: -m you@example.com"))?;
    let (store, mut rec, acct) = current(g).await?;
    let contact: Vec<String> = email.split(',').map(|s| s.trim().to_string()).collect();
    let info = acct.update_contact(&contact).await.map_err(CliError::acme)?;
    rec.regr.body = serde_json::to_value(&info).unwrap_or_default();
    store
        .accounts()
        .save(acct.client().directory_url(), &rec)
        .map_err(CliError::store)?;
    if !g.quiet {
        outln!("Your e-mail address was updated to {}.", contact.join(", "));
    }
    Ok(ProcessExit::SUCCESS)
}

pub async fn unregister(g: &GlobalArgs) -> Result<ProcessExit> {
    let (store, rec, acct) = current(g).await?;
    // No default yes: on a terminal the user answers; without one, -n is the confirmation.
    let confirmed = if g.non_interactive {
        true
    } else if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        super::revoke::confirm(
            g,
            &format!("Deactivate account {} at the CA for good?", acct.url()),
            false,
        )
    } else {
        return Err(CliError::usage(
            "unregister deactivates the account at the CA for good; pass --non-interactive to confirm",
        ));
    };
    if !confirmed {
        outln!("Account kept.");
        return Ok(ProcessExit::SUCCESS);
    }
    acct.deactivate().await.map_err(CliError::acme)?;
    store
        .accounts()
        .delete(acct.client().directory_url(), &rec.id)
        .map_err(CliError::store)?;
    if !g.quiet {
        outln!("Account deactivated: {}", acct.url());
    }
    Ok(ProcessExit::SUCCESS)
}

pub async fn show(g: &GlobalArgs) -> Result<ProcessExit> {
    let (_store, rec, acct) = current(g).await?;
    let info = acct.info().await.map_err(CliError::acme)?;
    outln!("Account details for server {}:", acct.client().directory_url());
    outln!("  Account URL: {}", acct.url());
    outln!("  Account ID:  {}", rec.id);
    outln!("  Status:      {}", info.status);
    let emails: Vec<&str> = info
        .contact
        .iter()
        .map(|c| c.strip_prefix("mailto:").unwrap_or(c))
        .collect();
    outln!(
        "  Email contact: {}",
        if emails.is_empty() {
            "none".to_string()
        } else {
            emails.join(", ")
        }
    );
    Ok(ProcessExit::SUCCESS)
}
