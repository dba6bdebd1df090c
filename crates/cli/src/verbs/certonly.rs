//! `certfleet certonly`: obtain a certificate for some names and save it as a lineage.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;
use std::time::Duration;

use certfleet_core::identifier::{check_count, parse_domain_args};
use certfleet_core::{Clock, Identifier, KeySpec, SystemClock};
use certfleet_engine::authenticator::SolverContext;
use certfleet_engine::deploy::{HookFlags, IssuanceHooks, RELOAD_CONF_KEY};
use certfleet_engine::issue::{self, IssueRequest, KeySource};
use certfleet_engine::lineage::lineage_key;
use certfleet_renew::{CertFacts, Decision, RenewalInput};
use certfleet_store::renewal_conf::RenewalConf;
use certfleet_store::{CertFiles, Kind, Lineage};

use crate::account;
use crate::args::{CertonlyArgs, GlobalArgs};
use crate::authenticator;
use crate::deploy;
use crate::error::{CliError, Result};
use crate::progress::Progress;

pub async fn run(g: &GlobalArgs, a: &CertonlyArgs, matches: &clap::ArgMatches) -> Result<ProcessExit> {
    let progress = Progress::new(g.quiet);
    let clock = SystemClock;
    let mut identifiers = parse_domain_args(&a.domains)
        .or_else(|e| {
            // IP-only certificates have no -d.
            if a.domains.is_empty() && (!a.ip_addresses.is_empty() || a.csr.is_some()) {
                Ok(vec![])
            } else {
                Err(e)
            }
        })
        .map_err(|e| CliError::usage(e.to_string()))?;
    if let Some(json) = &a.compat.webroot_map {
        // certbot: --webroot-map implies -d for each of its names.
        for (name, _) in crate::overrides::webroot_map(json)? {
            let id = Identifier::dns(&name).map_err(|e| CliError::usage(e.to_string()))?;
            if !identifiers.contains(&id) {
                identifiers.push(id);
            }
        }
    }
    for ip in &a.ip_addresses {
        let id = Identifier::Ip(*ip);
        if !identifiers.contains(&id) {
            identifiers.push(id);
        }
    }

    if let Some(csr_path) = &a.csr {
        return csr_flow(g, a, csr_path, identifiers, &progress).await;
    }
    check_count(identifiers.len()).map_err(|e| CliError::usage(e.to_string()))?;
    check_storable(a)?;

    // certbot's plugin settings and compatibility flags (-i, --apache-*, --must-staple, ...).
    let mut extra = certfleet_engine::overrides::ConfOverrides::default();
    crate::overrides::compat(&a.compat, &mut extra)?;
    if let Some(i) = a.compat.installer.as_ref().or(a.compat.configurator.as_ref()) {
        extra.set("installer", i.clone());
    }
    for (k, v) in a.plugins.conf_keys() {
        extra.set(k, v);
    }
    let key_spec = key_spec(a)?;
    let auth = authenticator::from_args(a, matches, &identifiers)?;
    let store = account::store(g);
    // Before the solver binds its port: a second certonly waiting for this one must not find
    // the standalone port taken.
    let lock = if a.dry_run {
        None
    } else {
        Some(account::lock(g, &store)?)
    };
    let solver = auth.solver(&store_for_solver(g)).await?;
    solver.preflight(&identifiers).await.map_err(CliError::solver)?;
    let names: Vec<String> = identifiers.iter().map(|i| i.value()).collect();

    // Which lineage: --cert-name, else one with exactly these names, else (--expand) one
    // whose names are a subset, else a new one.
    let existing = match &a.cert_name {
        Some(n) if store.conf_path(n).exists() => Some(store.load_lineage(n).map_err(CliError::store)?),
        Some(_) => None,
        None => {
            let found = store.find_by_domains(&names).map_err(CliError::store)?;
            match (found.identical, found.subset) {
                (Some(l), _) => Some(l),
                (None, Some(l)) if a.expand => Some(l),
                (None, Some(l)) => {
                    return Err(CliError::usage(format!(
                        "lineage {} holds a subset of these names; pass --expand to add names to it, or --cert-name NEW for a separate certificate",
                        l.name
                    )));
                }
                _ => None,
            }
        }
    };
    if let Some(lin) = &existing
        && !a.force_renewal
        && !a.dry_run
        && let Ok(info) = lin.cert_info()
        && sorted(lin.names().unwrap_or_default()) == sorted(names.clone())
        && !is_due(lin, &info, &clock)?
    {
        outln!(
            "Certificate not yet due for renewal; no action taken.\n  {} expires on {} ({} days left); use --force-renewal to renew now.",
            lin.name,
            info.not_after.date(),
            (info.not_after - clock.now()).whole_days()
        );
        return Ok(ProcessExit::SUCCESS);
    }

    let mut hooks = IssuanceHooks::new(
        deploy::hook_config(
            g,
            &HookFlags {
                pre_hook: a.pre_hook.clone(),
                post_hook: a.post_hook.clone(),
                deploy_hook: a.deploy_hook.clone(),
                dry_run: a.dry_run,
                ..Default::default()
            },
        ),
        a.deploy_reload.as_deref(),
        !a.no_hooks,
    )?;
    hooks.pre().await;
    let client = account::connect(g).await?;
    if let Some(p) = &a.required_profile {
        issue::check_required_profile(client.directory(), p)?;
    }
    let acct = certfleet_engine::account::obtain(
        &account::options(g),
        &store,
        &client,
        !a.dry_run,
        &progress,
        &clock,
    )
    .await?;

    let key = match (&existing, a.reuse_key && !a.compat.new_key) {
        (Some(lin), true) => match lineage_key(lin) {
            Ok(k) => KeySource::Reuse(k),
            Err(e) => return Err(CliError::store(format!("--reuse-key: {e}"))),
        },
        _ => KeySource::Generate(key_spec),
    };
    let issuance = issue::issue(
        &acct,
        solver.as_ref(),
        IssueRequest {
            identifiers: identifiers.clone(),
            key,
            preferred_profile: a.preferred_profile.clone(),
            required_profile: a.required_profile.clone(),
            preferred_chain: a.preferred_chain.clone(),
            replaces: None,
            timeout: Duration::from_secs(300),
        },
        &progress,
    );
    let issued = issue::interruptible(solver.as_ref(), issuance).await;
    let issued = match issued {
        Ok(i) => i,
        Err(e) => return Err(deploy::abort(hooks, e.into()).await),
    };
    progress.finish();

    if a.dry_run {
        if !g.quiet {
            outln!(
                "The dry run was successful: the CA validated {} (nothing was saved).",
                names.join(", ")
            );
        }
        deploy::finish(hooks).await?;
        return Ok(ProcessExit::SUCCESS);
    }

    let name = match &existing {
        Some(l) => l.name.clone(),
        None => {
            let lock = lock
                .as_ref()
                .ok_or_else(|| CliError::store("internal error: the store lock is not held"))?;
            store
                .new_lineage_name(&names, a.cert_name.as_deref(), lock)
                .map_err(CliError::store)?
        }
    };
    let mut conf = existing.as_ref().map(|l| l.conf.clone()).unwrap_or_default();
    record_renewal_params(&mut conf, g, a, &acct, key_spec);
    auth.record(&mut conf);
    extra.apply(&mut conf);
    match certfleet_engine::authenticator::http::installer_reload(&conf) {
        Ok(Some(r)) => hooks.add_reload(r),
        Ok(None) => {}
        Err(e) => return Err(e.into()),
    }
    let key_pem = issued.key.as_ref().expect("lineages always have a key").to_pem();
    let files = CertFiles::new(issued.cert_pem.clone(), issued.chain_pem.clone(), key_pem);
    store
        .save_version(&name, &files, &conf)
        .map_err(CliError::store)?;
    let lineage = store.load_lineage(&name).map_err(CliError::store)?;

    if !g.quiet {
        outln!("Successfully received certificate.");
        outln!(
            "Certificate is saved at: {}",
            lineage.live_path(Kind::Fullchain).display()
        );
        outln!(
            "Key is saved at:         {}",
            lineage.live_path(Kind::Privkey).display()
        );
        outln!("This certificate expires on {}.", issued.info.not_after.date());
    }
    // As certbot: deploy hooks on every issuance, not only on `renew`.
    let saved_names = lineage.names().unwrap_or_else(|_| names.clone());
    hooks.deployed(&store.live_dir(&name), &saved_names).await;
    deploy::finish(hooks).await?;
    Ok(ProcessExit::SUCCESS)
}

fn store_for_solver(g: &GlobalArgs) -> SolverContext {
    SolverContext {
        work_dir: g.work_dir.clone(),
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Whether the existing lineage is due, by the renewal policy `renew` applies (its conf's
/// `renew_before_expiry` and `autorenew`, else the lifetime rule); no ARI poll here.
fn is_due(lin: &Lineage, info: &certfleet_core::CertInfo, clock: &dyn Clock) -> Result<bool> {
    let facts = CertFacts::from_cert(info);
    let input = RenewalInput {
        renew_before_expiry: lin.conf.get("renew_before_expiry"),
        autorenew: lin.conf.autorenew(),
        ..RenewalInput::new(&facts)
    };
    let decision = certfleet_renew::decide(&input, clock)
        .map_err(|e| CliError::usage(format!("{}: {e}", lin.conf_path.display())))?;
    Ok(!matches!(
        decision,
        Decision::NotYet { .. } | Decision::Disabled { .. }
    ))
}

fn key_spec(a: &CertonlyArgs) -> Result<KeySpec> {
    let kt = a
        .key_type
        .as_deref()
        .unwrap_or(if a.rsa_key_size.is_some() && a.elliptic_curve.is_none() {
            "rsa"
        } else {
            "ecdsa"
        });
    KeySpec::from_certbot(kt, a.elliptic_curve.as_deref(), a.rsa_key_size)
        .map_err(|e| CliError::usage(e.to_string()))
}

fn record_renewal_params(
    conf: &mut RenewalConf,
    g: &GlobalArgs,
    a: &CertonlyArgs,
    acct: &certfleet_acme::Account,
    spec: KeySpec,
) {
    let account_id = certfleet_store::jwk::account_id(acct.key().private_key());
    conf.set_param("account", account_id);
    conf.set_param("server", g.server_url());
    conf.set_param("key_type", spec.key_type());
    match spec {
        KeySpec::Rsa(bits) => {
            conf.set_param("rsa_key_size", bits.to_string());
            conf.remove_param("elliptic_curve");
        }
        _ => {
            conf.set_param("elliptic_curve", spec.curve().unwrap_or("secp256r1"));
        }
    }
    for (_, key, val) in saved_strings(a) {
        if let Some(v) = val {
            conf.set_param(key, v.clone());
        }
    }
    if a.reuse_key {
        conf.set_param("reuse_key", "True");
    }
    if let Some(b) = g.ca_bundle() {
        conf.set_param("ca_bundle", b.display().to_string());
    }
}

/// The free-text flags saved in `[renewalparams]`: (flag, conf key, value).
fn saved_strings(a: &CertonlyArgs) -> [(&'static str, &'static str, &Option<String>); 7] {
    [
        ("--pre-hook", "pre_hook", &a.pre_hook),
        ("--post-hook", "post_hook", &a.post_hook),
        ("--deploy-hook", "renew_hook", &a.deploy_hook),
        ("--preferred-chain", "preferred_chain", &a.preferred_chain),
        ("--preferred-profile", "preferred_profile", &a.preferred_profile),
        ("--required-profile", "required_profile", &a.required_profile),
        ("--deploy-reload", RELOAD_CONF_KEY, &a.deploy_reload),
    ]
}

/// Refuse a flag value that certbot's renewal conf (configobj) cannot store before any CA
/// work, rather than after issuance (issue 11).
fn check_storable(a: &CertonlyArgs) -> Result<()> {
    for (flag, key, val) in saved_strings(a) {
        let Some(v) = val else { continue };
        let mut probe = RenewalConf::new();
        probe.set_param(key, v.as_str());
        if let Err(e) = probe.to_text() {
            let why = match e {
                certfleet_store::StoreError::ConfValue { msg, .. } => msg,
                other => other.to_string(),
            };
            return Err(CliError::usage(format!(
                "{flag} cannot be saved in the renewal conf as `{key}`: {why}"
            )));
        }
    }
    Ok(())
}

/// `--csr`: the key stays with the caller; write cert, chain and fullchain where asked
/// (certbot's defaults: ./0000_cert.pem, ./0000_chain.pem, ./0000_fullchain.pem).
async fn csr_flow(
    g: &GlobalArgs,
    a: &CertonlyArgs,
    csr_path: &PathBuf,
    mut identifiers: Vec<Identifier>,
    progress: &Progress,
) -> Result<ProcessExit> {
    let raw = std::fs::read(csr_path)
        .map_err(|e| CliError::usage(format!("cannot read CSR {}: {e}", csr_path.display())))?;
    let der = match pem_block(&raw, "CERTIFICATE REQUEST") {
        Some(d) => d,
        None => raw,
    };
    let csr_names = csr_names(&der).map_err(|e| CliError::usage(format!("{}: {e}", csr_path.display())))?;
    if identifiers.is_empty() {
        identifiers = csr_names.clone();
    } else {
        let mut want: Vec<String> = identifiers.iter().map(|i| i.value()).collect();
        let mut have: Vec<String> = csr_names.iter().map(|i| i.value()).collect();
        want.sort();
        have.sort();
        if want != have {
            return Err(CliError::usage(format!(
                "the names given with -d ({}) differ from the names in {} ({})",
                want.join(", "),
                csr_path.display(),
                have.join(", ")
            )));
        }
    }
    check_count(identifiers.len()).map_err(|e| CliError::usage(e.to_string()))?;
    let auth = authenticator::from_args(a, &clap::ArgMatches::default(), &identifiers)?;
    let solver = auth.solver(&store_for_solver(g)).await?;
    solver.preflight(&identifiers).await.map_err(CliError::solver)?;
    let store = account::store(g);
    let client = account::connect(g).await?;
    let acct = certfleet_engine::account::obtain(
        &account::options(g),
        &store,
        &client,
        !a.dry_run,
        progress,
        &SystemClock,
    )
    .await?;
    let issuance = issue::issue(
        &acct,
        solver.as_ref(),
        IssueRequest {
            identifiers,
            key: KeySource::Csr(der),
            preferred_profile: a.preferred_profile.clone(),
            required_profile: a.required_profile.clone(),
            preferred_chain: a.preferred_chain.clone(),
            replaces: None,
            timeout: Duration::from_secs(300),
        },
        progress,
    );
    let issued = issue::interruptible(solver.as_ref(), issuance).await?;
    progress.finish();
    if a.dry_run {
        outln!("The dry run was successful (nothing was saved).");
        return Ok(ProcessExit::SUCCESS);
    }
    let outputs = [
        (
            a.cert_path.clone().unwrap_or_else(|| "0000_cert.pem".into()),
            &issued.cert_pem,
        ),
        (
            a.chain_path.clone().unwrap_or_else(|| "0000_chain.pem".into()),
            &issued.chain_pem,
        ),
        (
            a.fullchain_path
                .clone()
                .unwrap_or_else(|| "0000_fullchain.pem".into()),
            &issued.fullchain_pem,
        ),
    ];
    for (path, pem) in outputs {
        certfleet_store::atomic::write_file(&path, pem.as_bytes(), 0o644).map_err(CliError::store)?;
        if !g.quiet {
            outln!("Saved {}", path.display());
        }
    }
    Ok(ProcessExit::SUCCESS)
}

fn pem_block(raw: &[u8], tag: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(raw).ok()?;
    let begin = format!("-----BEGIN {tag}-----");
    let start = text.find(&begin)? + begin.len();
    let end = text[start..].find("-----END")? + start;
    use base64::Engine;
    let b64: String = text[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn csr_names(der: &[u8]) -> std::result::Result<Vec<Identifier>, String> {
    use x509_parser::prelude::FromDer;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|e| format!("not a valid CSR ({e})"))?;
    let mut out = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
                for gn in &san.general_names {
                    match gn {
                        x509_parser::extensions::GeneralName::DNSName(d) => {
                            out.push(Identifier::dns(d).map_err(|e| e.to_string())?)
                        }
                        x509_parser::extensions::GeneralName::IPAddress(b)
                            if b.len() == 4 || b.len() == 16 =>
                        {
                            let ip = if b.len() == 4 {
                                IpAddr::from(<[u8; 4]>::try_from(*b).expect("len 4"))
                            } else {
                                IpAddr::from(<[u8; 16]>::try_from(*b).expect("len 16"))
                            };
                            out.push(Identifier::Ip(ip))
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    if out.is_empty()
        && let Some(cn) = csr
            .certification_request_info
            .subject
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
    {
        out.push(Identifier::dns(cn).map_err(|e| e.to_string())?);
    }
    if out.is_empty() {
        return Err("the CSR names no domains (no subjectAltName and no CN)".into());
    }
    Ok(out)
}
