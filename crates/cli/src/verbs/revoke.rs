//! `revoke` and `delete`: the end of a lineage.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;

use certfleet_acme::{AccountKey, RevocationReason, revoke_with_cert_key};
use certfleet_core::{CertInfo, PrivateKey};
use certfleet_store::Kind;

use crate::account;
use crate::args::{DeleteArgs, GlobalArgs, RevokeArgs};
use crate::error::{CliError, Result};
use crate::progress::Progress;

/// Ask a yes/no question on the terminal; `default` when there is no terminal or with -n.
pub(crate) fn confirm(g: &GlobalArgs, question: &str, default: bool) -> bool {
    if g.non_interactive || !std::io::stdin().is_terminal() {
        return default;
    }
    {
        use std::io::Write;
        // A closed stderr must not panic; the answer is read from stdin either way.
        let _ = write!(
            std::io::stderr(),
            "{question} [{}] ",
            if default { "Y/n" } else { "y/N" }
        );
    }
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return default;
    }
    match line.trim().to_ascii_lowercase().as_str() {
        "" => default,
        a => a.starts_with('y'),
    }
}

pub async fn revoke(g: &GlobalArgs, a: &RevokeArgs) -> Result<ProcessExit> {
    let store = account::store(g);
    let (cert_path, lineage_name): (PathBuf, Option<String>) = match (&a.cert_path, &a.cert_name) {
        (Some(p), _) => (p.clone(), lineage_of(&store, p)),
        (None, Some(n)) => {
            let lin = store.load_lineage(n).map_err(CliError::store)?;
            (lin.live_path(Kind::Cert).to_path_buf(), Some(n.clone()))
        }
        (None, None) => {
            return Err(CliError::usage(
                "say which certificate: --cert-name NAME or --cert-path FILE",
            ));
        }
    };
    let text = std::fs::read_to_string(&cert_path)
        .map_err(|e| CliError::usage(format!("cannot read certificate {}: {e}", cert_path.display())))?;
    let info =
        CertInfo::from_pem(&text).map_err(|e| CliError::usage(format!("{}: {e}", cert_path.display())))?;
    let reason = match &a.reason {
        Some(r) => Some(r.parse::<RevocationReason>().map_err(CliError::usage)?),
        None => None,
    };
    let progress = Progress::new(g.quiet);
    let client = account::connect(g).await?;
    progress.step(&format!("revoking the certificate for {}", info.names.join(", ")));
    match &a.key_path {
        // With the certificate's own key: works without (or with another) account.
        Some(kp) => {
            let pem = std::fs::read_to_string(kp)
                .map_err(|e| CliError::usage(format!("cannot read key {}: {e}", kp.display())))?;
            let key =
                PrivateKey::from_pem(&pem).map_err(|e| CliError::usage(format!("{}: {e}", kp.display())))?;
            if !info.matches_key(&key) {
                return Err(CliError::usage(format!(
                    "{} is not the key of {}",
                    kp.display(),
                    cert_path.display()
                )));
            }
            let key = AccountKey::new(key).map_err(|e| CliError::usage(e.to_string()))?;
            revoke_with_cert_key(&client, &key, &info.der, reason)
                .await
                .map_err(CliError::acme)?;
        }
        None => {
            let acct = certfleet_engine::account::obtain(
                &account::options(g),
                &store,
                &client,
                false,
                &progress,
                &certfleet_core::SystemClock,
            )
            .await?;
            acct.revoke(&info.der, reason).await.map_err(CliError::acme)?;
        }
    }
    progress.finish();
    if !g.quiet {
        outln!(
            "Revoked the certificate {} (serial {}).",
            cert_path.display(),
            info.serial_hex()
        );
    }
    if let Some(name) = lineage_name {
        let delete = match (a.delete_after_revoke, a.no_delete_after_revoke) {
            (true, _) => true,
            (_, true) => false,
            _ => confirm(
                g,
                &format!("Delete lineage {name} (live, archive and renewal conf)?"),
                true,
            ),
        };
        if delete {
            let _lock = account::lock(g, &store)?;
            store.delete_lineage(&name).map_err(CliError::store)?;
            if !g.quiet {
                outln!("Deleted lineage {name}.");
            }
        }
    }
    Ok(ProcessExit::SUCCESS)
}

/// The lineage whose live or archive directory holds this certificate file, if any.
fn lineage_of(store: &certfleet_store::Store, path: &std::path::Path) -> Option<String> {
    let abs = std::fs::canonicalize(path).ok()?;
    store.list_lineages().ok()?.into_iter().find(|n| {
        store.load_lineage(n).is_ok_and(|l| {
            std::fs::canonicalize(l.live_path(Kind::Cert)).is_ok_and(|c| c == abs)
                || abs.starts_with(&l.archive_dir)
                || abs.parent() == l.live_path(Kind::Cert).parent()
        })
    })
}

pub fn delete(g: &GlobalArgs, a: &DeleteArgs) -> Result<ProcessExit> {
    let store = account::store(g);
    let names = if a.cert_name.is_empty() {
        return Err(CliError::usage(
            "say which lineage to delete: --cert-name NAME (see `certfleet certificates`)",
        ));
    } else {
        a.cert_name.clone()
    };
    for n in &names {
        store.load_lineage(n).map_err(CliError::store)?;
    }
    if !g.non_interactive && !std::io::stdin().is_terminal() {
        return Err(CliError::usage(
            "delete asks for confirmation; pass --non-interactive to delete without asking",
        ));
    }
    if !confirm(
        g,
        &format!("Delete {} and its files for good?", names.join(", ")),
        false,
    ) && !g.non_interactive
    {
        outln!("Nothing deleted.");
        return Ok(ProcessExit::SUCCESS);
    }
    let _lock = account::lock(g, &store)?;
    for n in &names {
        store.delete_lineage(n).map_err(CliError::store)?;
        if !g.quiet {
            outln!("Deleted all files relating to certificate {n}.");
        }
    }
    Ok(ProcessExit::SUCCESS)
}
