//! `certfleet reconfigure` (change how a lineage renews, without issuing) and
//! `certfleet update_symlinks` (point live/ at the newest complete archive version).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;

use certfleet_core::KeySpec;
use certfleet_store::Kind;

use crate::account;
use crate::args::{GlobalArgs, ReconfigureArgs, UpdateSymlinksArgs};
use crate::error::{CliError, Result};
use certfleet_engine::authenticator::AuthSpec;
use certfleet_engine::deploy;

pub fn reconfigure(g: &GlobalArgs, a: &ReconfigureArgs) -> Result<ProcessExit> {
    let store = account::store(g);
    let _lock = account::lock(g, &store)?;
    let lin = store.load_lineage(&a.cert_name).map_err(CliError::store)?;
    let mut conf = lin.conf.clone();
    let mut changes: Vec<String> = Vec::new();
    let names = lin.names().map_err(CliError::store)?;

    // Authenticator.
    if a.webroot || a.webroot_path.is_some() {
        let root = a
            .webroot_path
            .clone()
            .ok_or_else(|| CliError::usage("--webroot needs a document root: -w /var/www/html"))?;
        let root = std::path::absolute(&root).unwrap_or(root);
        if !root.is_dir() {
            return Err(CliError::usage(format!(
                "webroot {} is not a directory; create it or give the document root your web server serves",
                root.display()
            )));
        }
        let map: BTreeMap<String, PathBuf> = names
            .iter()
            .map(|n| (n.trim_start_matches("*.").to_string(), root.clone()))
            .collect();
        AuthSpec::Webroot(map).record(&mut conf);
        changes.push(format!("authenticator = webroot, webroot {}", root.display()));
    } else if a.standalone || a.http01_port.is_some() || a.http01_address.is_some() {
        let was_standalone = conf.authenticator() == Some("standalone");
        if !a.standalone && !was_standalone {
            return Err(CliError::usage(
                "--http-01-port/--http-01-address apply to --standalone; add --standalone",
            ));
        }
        let address = a
            .http01_address
            .clone()
            .or_else(|| conf.param_str("http01_address").map(str::to_string))
            .unwrap_or_default();
        if !address.is_empty() && address.parse::<std::net::IpAddr>().is_err() {
            return Err(CliError::usage(format!(
                "--http-01-address {address:?} is not an IP address"
            )));
        }
        let port = match a.http01_port {
            Some(0) => return Err(CliError::usage("--http-01-port 0 is not a port")),
            Some(p) => p,
            None => conf
                .param_str("http01_port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(80),
        };
        AuthSpec::Standalone {
            address: address.clone(),
            port,
        }
        .record(&mut conf);
        conf.remove_param("webroot_path");
        // `[[webroot_map]]` belongs to the webroot authenticator only.
        conf.params_mut().remove_section("webroot_map");
        changes.push(format!("authenticator = standalone on {address}:{port}"));
    }

    // Key.
    if a.key_type.is_some() || a.elliptic_curve.is_some() || a.rsa_key_size.is_some() {
        let kt = a
            .key_type
            .clone()
            .or_else(|| {
                if a.rsa_key_size.is_some() && a.elliptic_curve.is_none() {
                    Some("rsa".into())
                } else if a.elliptic_curve.is_some() {
                    Some("ecdsa".into())
                } else {
                    conf.key_type().map(str::to_string)
                }
            })
            .unwrap_or_else(|| "ecdsa".into());
        let spec = KeySpec::from_certbot(&kt, a.elliptic_curve.as_deref(), a.rsa_key_size)
            .map_err(|e| CliError::usage(e.to_string()))?;
        conf.set_param("key_type", spec.key_type());
        match spec {
            KeySpec::Rsa(bits) => {
                conf.set_param("rsa_key_size", bits.to_string());
                conf.remove_param("elliptic_curve");
            }
            _ => conf.set_param("elliptic_curve", spec.curve().unwrap_or("secp256r1")),
        }
        changes.push(format!(
            "key = {spec} (the certificate renews with it at the next `renew`)"
        ));
    }
    if a.reuse_key {
        conf.set_param_bool("reuse_key", true);
        changes.push("reuse_key = True".into());
    } else if a.no_reuse_key {
        conf.set_param_bool("reuse_key", false);
        changes.push("reuse_key = False".into());
    }

    // Hooks and the rest: an empty value removes the setting.
    for (key, val, label) in [
        ("pre_hook", &a.pre_hook, "pre-hook"),
        ("post_hook", &a.post_hook, "post-hook"),
        ("renew_hook", &a.deploy_hook, "deploy-hook"),
        ("preferred_chain", &a.preferred_chain, "preferred chain"),
        (deploy::RELOAD_CONF_KEY, &a.deploy_reload, "deploy-reload"),
    ] {
        let Some(v) = val else { continue };
        if v.trim().is_empty() {
            conf.remove_param(key);
            changes.push(format!("{label} removed"));
        } else {
            if key == deploy::RELOAD_CONF_KEY {
                deploy::reload_commands(v)?;
            }
            conf.set_param(key, v.clone());
            changes.push(format!("{label} = {v}"));
        }
    }

    // Server: the account must exist there.
    // (An unchanged --server, as a cli.ini may always pass, is no change.)
    if (g.server.is_some() || g.staging) && conf.server() != Some(g.server_url().as_str()) {
        // --server was checked when the arguments were parsed (args::parse_server_url).
        let server = g.server_url();
        let acct = certfleet_engine::account::saved(&account::options(g), &store, &server)?.ok_or_else(|| {
            CliError::usage(format!(
                "no account for {server} in {}: run `certfleet register --server {server} -m EMAIL --agree-tos` first",
                store.dirs().accounts_dir().display()
            ))
        })?;
        conf.set_param("server", server.clone());
        conf.set_param("account", acct.id.clone());
        changes.push(format!("server = {server} (account {})", acct.id));
    } else if let Some(id) = &g.account {
        // Never a default CA for an existing lineage (loading refuses a conf without one).
        let server = conf
            .server()
            .ok_or_else(|| {
                CliError::store(format!(
                    "{}: no `server =` in [renewalparams]",
                    lin.conf_path.display()
                ))
            })?
            .to_string();
        if !store
            .accounts()
            .list(&server)
            .map_err(CliError::store)?
            .iter()
            .any(|x| &x.id == id)
        {
            return Err(CliError::usage(format!("no account {id} for {server}")));
        }
        conf.set_param("account", id.clone());
        changes.push(format!("account = {id}"));
    }

    if changes.is_empty() {
        return Err(CliError::usage(
            "nothing to change: give --webroot -w DIR, --standalone, --key-type, --pre-hook, --post-hook, \
             --deploy-hook, --deploy-reload, --preferred-chain, --server or --account",
        ));
    }
    // A conf certfleet can no longer renew is refused before it is written.
    let ids: Vec<certfleet_core::Identifier> = names
        .iter()
        .filter_map(|n| certfleet_core::Identifier::dns(n).ok())
        .collect();
    AuthSpec::from_conf(&conf, &ids)?;
    write_conf(&lin.conf_path, &conf)?;
    if !g.quiet {
        outln!("Updated {}:", lin.conf_path.display());
        for c in &changes {
            outln!("  {c}");
        }
        outln!("No certificate was issued; the changes apply from the next renewal.");
    }
    Ok(ProcessExit::SUCCESS)
}

/// Atomically, keeping the file's mode.
fn write_conf(path: &std::path::Path, conf: &certfleet_store::RenewalConf) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let text = conf.to_text().map_err(CliError::store)?;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    certfleet_store::atomic::write_file(path, text.as_bytes(), mode).map_err(CliError::store)
}

pub fn update_symlinks(g: &GlobalArgs, a: &UpdateSymlinksArgs) -> Result<ProcessExit> {
    let store = account::store(g);
    let _lock = account::lock(g, &store)?;
    let names = if a.cert_name.is_empty() {
        store.list_lineages().map_err(CliError::store)?
    } else {
        a.cert_name.clone()
    };
    let mut failed = false;
    for n in &names {
        match store.update_symlinks(n) {
            Ok(v) => {
                if !g.quiet {
                    let lin = store.load_lineage(n).map_err(CliError::store)?;
                    outln!(
                        "{n}: live links point at version {v} ({})",
                        lin.live_path(Kind::Cert).display()
                    );
                }
            }
            Err(e) => {
                failed = true;
                errln!("certfleet: {n}: {e}");
            }
        }
    }
    if failed {
        return Err(CliError::store("some lineages could not be updated (see above)"));
    }
    Ok(ProcessExit::SUCCESS)
}
