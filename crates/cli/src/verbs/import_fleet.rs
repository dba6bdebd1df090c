//! `certfleet import --fleet URL`: hand a certbot host's lineages to a fleet server.
//!
//! For every selected lineage whose live set is whole (certificate, chain and a key that
//! belongs to it), this host is enrolled (once), the certificate is added to the fleet with
//! agent custody and its current leaf and chain are uploaded, so the server renews it when it
//! is due, not at once. The private key never leaves the host: it goes into the agent's key
//! store, where the agent finds it by the certificate's public key. The agent's config gets an
//! install rule writing to the lineage's `live/` paths, which the services already read, and
//! reloading the way the lineage did (its installer or deploy hook). Last, the lineage's
//! renewal conf is renamed so neither certbot nor `certfleet renew` renews it beside the fleet.
//!
//! Safe to run again: what was done is recognised (host enrolled, certificate added and
//! imported, rule present) and not done twice. A failure before the renewal conf is renamed
//! leaves the lineage renewing as before.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode as ProcessExit;

use serde::Serialize;

use certfleet_core::{CertInfo, PrivateKey};
use certfleet_engine::deploy::RELOAD_CONF_KEY;
use certfleet_fleet::agent::AgentConfig;
use certfleet_fleet::agent::keys::AgentKeys;
use certfleet_fleet::agent::sync::{self, SyncError};
use certfleet_fleet::client::{ClientError, FleetClient};
use certfleet_fleet::proto::{ChallengeSettings, Custody, ImportCertificate, NewCertificate};
use certfleet_store::{Kind, Lineage, Store};

use super::agent::sync_error;
use super::fleet::{api_error, challenge, connect};
use super::import::selected_lineages;
use crate::args::{GlobalArgs, ImportArgs};
use crate::error::{CliError, ExitCode, Result};
use crate::fleet_args::FleetConnArgs;

/// What an imported lineage's renewal conf is renamed to: certbot and certfleet read only
/// `renewal/*.conf`, and the name says where the lineage went.
pub const IMPORTED_SUFFIX: &str = ".imported-to-fleet";

/// A lineage whose live set can go to the fleet as it is.
struct Ready {
    name: String,
    lin: Lineage,
    info: CertInfo,
    key: PrivateKey,
    cert_pem: String,
    chain_pem: String,
    identifiers: Vec<String>,
    key_type: &'static str,
}

#[derive(Debug, Serialize)]
struct Imported {
    name: String,
    identifiers: Vec<String>,
    serial: String,
    /// The install rule was added now (false: the agent config had one already).
    rule_added: bool,
    /// How the agent reloads the service after installing, if it does.
    reload: Option<String>,
    /// A deploy hook the agent does not run, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    hook_left_out: Option<String>,
    renewal_conf_now: String,
}

#[derive(Debug, Serialize)]
struct Skipped {
    name: String,
    why: String,
}

#[derive(Debug, Serialize)]
struct Report {
    server: String,
    host: String,
    agent_config: String,
    imported: Vec<Imported>,
    skipped: Vec<Skipped>,
    next_steps: Vec<String>,
}

pub async fn run(g: &GlobalArgs, a: &ImportArgs) -> Result<ProcessExit> {
    let url = a.fleet.clone().expect("called with --fleet");
    let (store, names) = selected_lineages(g, a)?;
    let how = challenge(&a.dns)?;
    let _lock = crate::account::lock(g, &store)?;

    let mut ready = Vec::new();
    let mut skipped = Vec::new();
    for name in names {
        match ready_lineage(&store, &name) {
            Ok(r) => ready.push(r),
            Err(why) => skipped.push(Skipped { name, why }),
        }
    }
    if ready.is_empty() {
        for s in &skipped {
            eprintln!("{}: {}", s.name, s.why);
        }
        return Err(CliError::new(
            ExitCode::NeedsAttention,
            format!("no lineage under {} can be imported", g.config_dir.display()),
        ));
    }
    let mut agent_conf = AgentConf::read(&a.agent_config, &a.agent_state_dir)?;

    let client = connect(&FleetConnArgs {
        url: Some(url.clone()),
        token_file: a.token_file.clone(),
        fingerprint: a.fingerprint.clone(),
        data_dir: None,
    })?;
    let host = match &a.host {
        Some(h) => h.clone(),
        None => certfleet_fleet::local_hostname().ok_or_else(|| {
            CliError::usage(
                "this machine has no usable host name: give the fleet's name for it with --host NAME",
            )
        })?,
    };
    let host = enroll_once(&client, &a.agent_state_dir, &host).await?;
    let keys = AgentKeys::new(&a.agent_state_dir);

    let mut imported = Vec::new();
    for r in ready {
        match import_one(&client, &keys, &host, &how, &r).await {
            Ok(()) => {
                let rule = agent_conf.add_rule(&r);
                imported.push((r, rule));
            }
            Err(why) => skipped.push(Skipped { name: r.name, why }),
        }
    }
    // The rules are in place before any lineage stops renewing here.
    agent_conf.write()?;
    let mut done = Vec::new();
    for (r, (rule_added, reload, hook_left_out)) in imported {
        let conf = store.conf_path(&r.name);
        let moved = PathBuf::from(format!("{}{IMPORTED_SUFFIX}", conf.display()));
        if let Err(e) = std::fs::rename(&conf, &moved) {
            skipped.push(Skipped {
                name: r.name.clone(),
                why: format!(
                    "imported, but {} could not be renamed ({e}): rename it to {} by hand, or certbot renews it beside the fleet",
                    conf.display(),
                    moved.display()
                ),
            });
            continue;
        }
        done.push(Imported {
            serial: r.info.serial_hex(),
            name: r.name,
            identifiers: r.identifiers,
            rule_added,
            reload,
            hook_left_out,
            renewal_conf_now: moved.display().to_string(),
        });
    }
    let report = Report {
        server: url,
        next_steps: next_steps(g, &how, &a.agent_config, &done),
        host,
        agent_config: a.agent_config.display().to_string(),
        imported: done,
        skipped,
    };
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report).expect("json"));
    } else {
        print_report(&report);
    }
    Ok(if report.skipped.is_empty() {
        ProcessExit::SUCCESS
    } else {
        ProcessExit::from(ExitCode::NeedsAttention as u8)
    })
}

/// The lineage's live set, if it is whole: what the fleet gets is what the services serve now.
fn ready_lineage(store: &Store, name: &str) -> std::result::Result<Ready, String> {
    let lin = store.load_lineage(name).map_err(|e| e.to_string())?;
    let info = lin.cert_info().map_err(|e| e.to_string())?;
    if let Some(p) = certfleet_engine::lineage::lineage_problem(&lin, &info) {
        return Err(format!(
            "{p}; repair it first (`certfleet renew --cert-name {name}` or `certfleet update_symlinks`)"
        ));
    }
    let read = |k: Kind| {
        let path = lin.live_path(k);
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let (cert_pem, chain_pem, key_pem) = (read(Kind::Cert)?, read(Kind::Chain)?, read(Kind::Privkey)?);
    let key = PrivateKey::from_pem(&key_pem)
        .map_err(|e| format!("{}: {e}", lin.live_path(Kind::Privkey).display()))?;
    let spec = certfleet_engine::lineage::cert_key_spec(&info);
    let key_type = spec
        .and_then(certfleet_fleet::proto::key_type_name)
        .ok_or_else(|| {
            format!(
                "its key type ({}) is not one the fleet issues (ECDSA P-256/P-384, RSA 2048/3072/4096): \
                 re-issue it with `certfleet certonly --cert-name {name} --key-type ecdsa --force-renewal` first",
                spec.map(|s| format!("{s:?}")).unwrap_or_else(|| "unknown".into())
            )
        })?;
    Ok(Ready {
        name: name.to_string(),
        identifiers: certfleet_store::lineage::certbot_names(&info),
        lin,
        info,
        key,
        cert_pem,
        chain_pem,
        key_type,
    })
}

/// This machine's fleet host name: the one it is already enrolled as, or `host`, added and
/// enrolled now (the client key is made here and stays in `state_dir`).
async fn enroll_once(client: &FleetClient, state_dir: &Path, host: &str) -> Result<String> {
    match sync::client(state_dir, None) {
        Ok((_, e)) if e.host == host => return Ok(e.host),
        Ok((_, e)) => {
            return Err(CliError::usage(format!(
                "this machine is already enrolled as host {:?} (in {}): pass --host {} or another --agent-state-dir",
                e.host,
                state_dir.display(),
                e.host
            )));
        }
        Err(SyncError::NotEnrolled { .. }) => {}
        Err(e) => return Err(sync_error(e)),
    }
    let enrollment = client.add_host(host).await.map_err(|e| match e {
        ClientError::Api { status: 409, .. } => CliError::usage(format!(
            "the fleet already has a host {host:?}, but this machine is not enrolled as it under {}: if it is this \
             machine, remove it with `certfleet fleet host remove {host}` and run the import again; else pass --host \
             with another name",
            state_dir.display()
        )),
        e => api_error(e),
    })?;
    let e = sync::enroll(state_dir, &enrollment.enrollment_token)
        .await
        .map_err(sync_error)?;
    Ok(e.host)
}

/// Adds the fleet certificate (or finds the one a previous run added), puts the key where the
/// agent looks for it, and uploads leaf and chain.
async fn import_one(
    client: &FleetClient,
    keys: &AgentKeys,
    host: &str,
    how: &ChallengeSettings,
    r: &Ready,
) -> std::result::Result<(), String> {
    let want = NewCertificate {
        name: r.name.clone(),
        identifiers: r.identifiers.clone(),
        hosts: vec![host.to_string()],
        custody: Custody::Agent,
        key_type: r.key_type.to_string(),
        challenge: how.clone(),
        profile: None,
        comment: Some(format!("certbot lineage {} of {host}, imported", r.name)),
    };
    match client.add_certificate(&want).await {
        Ok(_) => {}
        Err(ClientError::Api { status: 409, .. }) => {
            let have = client
                .show_certificate(&r.name)
                .await
                .map_err(|e| e.to_string())?
                .certificate;
            let set = |v: &[String]| v.iter().map(|n| n.to_ascii_lowercase()).collect::<BTreeSet<_>>();
            if set(&have.identifiers) != set(&r.identifiers)
                || have.hosts != [host]
                || have.custody != Custody::Agent
            {
                return Err(format!(
                    "the fleet already has a certificate {:?} (for {}, hosts {}): rename one of them \
                     (`certfleet reconfigure`/`certfleet fleet cert ...`) and import again",
                    r.name,
                    have.identifiers.join(", "),
                    have.hosts.join(", ")
                ));
            }
        }
        Err(e) => return Err(e.to_string()),
    }
    keys.save(&r.key)
        .map_err(|e| format!("cannot store the key in {}: {e}", keys.dir().display()))?;
    client
        .import_certificate(
            &r.name,
            &ImportCertificate {
                cert_pem: r.cert_pem.clone(),
                chain_pem: r.chain_pem.clone(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The agent's config file as it will be written: the existing text (checked) plus new rules.
struct AgentConf {
    path: PathBuf,
    text: String,
    /// Certificates that already have a rule.
    covered: BTreeSet<String>,
    changed: bool,
}

impl AgentConf {
    fn read(path: &Path, state_dir: &Path) -> Result<AgentConf> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let state = toml_str(&state_dir.display().to_string());
                return Ok(AgentConf {
                    path: path.to_path_buf(),
                    text: format!(
                        "# certfleet agent configuration: where this host's certificates go and what runs after.\n\
                         # The fleet server only says which certificates; this file alone says where and how.\n\
                         state_dir = {state}\n"
                    ),
                    covered: BTreeSet::new(),
                    changed: true,
                });
            }
            Err(e) => return Err(CliError::usage(format!("cannot read {}: {e}", path.display()))),
        };
        let conf = AgentConfig::parse(&text, path)
            .map_err(|e| CliError::usage(format!("{e}\nfix the agent config first; nothing was imported")))?;
        if conf.state_dir != state_dir {
            return Err(CliError::usage(format!(
                "{} keeps the agent's state in {}, not in {}: pass --agent-state-dir {}",
                path.display(),
                conf.state_dir.display(),
                state_dir.display(),
                conf.state_dir.display()
            )));
        }
        Ok(AgentConf {
            path: path.to_path_buf(),
            covered: conf.installs.iter().map(|r| r.certificate.clone()).collect(),
            text,
            changed: false,
        })
    }

    /// Adds the install rule of `r` unless one exists: (added, reload, deploy hook left out).
    fn add_rule(&mut self, r: &Ready) -> (bool, Option<String>, Option<String>) {
        let (reload, hook_left_out) = reload_of(r);
        if self.covered.contains(&r.name) {
            return (false, None, None);
        }
        let p = |k: Kind| toml_str(&r.lin.live_path(k).display().to_string());
        let mut rule = format!(
            "\n# certbot lineage {} (imported by `certfleet import --fleet`): the same files the services read.\n\
             [[install]]\ncertificate = {}\ncert = {}\nchain = {}\nfullchain = {}\nkey = {}\n",
            r.name,
            toml_str(&r.name),
            p(Kind::Cert),
            p(Kind::Chain),
            p(Kind::Fullchain),
            p(Kind::Privkey),
        );
        match &reload {
            Some(Reload::Service(s)) => rule.push_str(&format!("reload = {}\n", toml_str(s))),
            Some(Reload::Hook(h)) => rule.push_str(&format!(
                "# certbot's deploy hook, run without certbot's variables:\nreload_command = [\"/bin/sh\", \"-c\", {}]\n",
                toml_str(h)
            )),
            None => {}
        }
        if let Some(h) = &hook_left_out {
            for line in h.lines() {
                rule.push_str(&format!("# {line}\n"));
            }
        }
        self.text.push_str(&rule);
        self.covered.insert(r.name.clone());
        self.changed = true;
        (true, reload.map(|r| r.describe()), hook_left_out)
    }

    /// Checks the new text as the agent will read it, then writes it atomically.
    fn write(&self) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        AgentConfig::parse(&self.text, &self.path).map_err(|e| {
            CliError::new(
                ExitCode::Failure,
                format!(
                    "the agent config this import would write does not read back (nothing was changed): {e}"
                ),
            )
        })?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            certfleet_store::atomic::create_dir(dir, 0o755).map_err(CliError::store)?;
        }
        certfleet_store::atomic::write_file(&self.path, self.text.as_bytes(), 0o644).map_err(CliError::store)
    }
}

/// How the agent should make the service pick up a new certificate, from the lineage's conf.
enum Reload {
    Service(String),
    Hook(String),
}

impl Reload {
    fn describe(&self) -> String {
        match self {
            Reload::Service(s) => format!("reload {s}"),
            Reload::Hook(h) => format!("sh -c {h:?}"),
        }
    }
}

/// certfleet's `reload` key, else the installer, else a deploy hook that does not need
/// certbot's variables (the agent does not set them); a hook it cannot carry is reported.
fn reload_of(r: &Ready) -> (Option<Reload>, Option<String>) {
    let conf = &r.lin.conf;
    let service = conf
        .param_str(RELOAD_CONF_KEY)
        .map(str::to_string)
        .or_else(|| match conf.installer() {
            Some("nginx") => Some("nginx".into()),
            Some("apache") => Some("apache2".into()),
            _ => None,
        });
    let hook = conf
        .renew_hook()
        .filter(|h| !h.trim().is_empty())
        .map(str::to_string);
    match (service, hook) {
        (Some(s), None) => (Some(Reload::Service(s)), None),
        (Some(s), Some(h)) => (
            Some(Reload::Service(s)),
            Some(format!(
                "certbot also ran the deploy hook {h:?}; add it as reload_command if the reload is not enough"
            )),
        ),
        (None, Some(h)) if h.contains("RENEWED_") => (
            None,
            Some(format!(
                "certbot's deploy hook {h:?} reads certbot's RENEWED_* variables, which the agent does not set: \
                 write its effect as reload_command = [...] by hand"
            )),
        ),
        (None, Some(h)) => (Some(Reload::Hook(h)), None),
        (None, None) => (None, None),
    }
}

/// A TOML basic string (JSON's string escapes are a subset of TOML's).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn next_steps(
    g: &GlobalArgs,
    how: &ChallengeSettings,
    agent_config: &Path,
    done: &[Imported],
) -> Vec<String> {
    if done.is_empty() {
        return vec![];
    }
    let mut steps = vec![format!(
        "start the agent: `systemctl enable --now certfleet-agent.service` (or `certfleet agent run --config {}`); \
         its first sync finds the certificate in place and uploads the CSR of the next key, made here",
        agent_config.display()
    )];
    if matches!(how, ChallengeSettings::Http01) {
        let names: BTreeSet<&str> = done
            .iter()
            .flat_map(|d| d.identifiers.iter().map(String::as_str))
            .collect();
        steps.push(format!(
            "renewals answer http-01 from the fleet server: make http://NAME/.well-known/acme-challenge/ reach its \
             --http-01-listen address (e.g. nginx `location /.well-known/acme-challenge/ {{ proxy_pass http://SERVER; }}`) \
             for {}",
            names.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    steps.push(format!(
        "the imported lineages no longer renew from {}; certbot's timer can stay for the others, or go \
         (`certfleet import` without --fleet prints the commands)",
        g.config_dir.display()
    ));
    steps
}

fn print_report(r: &Report) {
    outln!(
        "fleet {} · host {} · agent config {}",
        r.server,
        r.host,
        r.agent_config
    );
    for i in &r.imported {
        outln!(
            "imported  {:<24} serial {} ({}); reload: {}; renewal conf now {}",
            i.name,
            i.serial,
            i.identifiers.join(", "),
            i.reload.as_deref().unwrap_or("none"),
            i.renewal_conf_now
        );
        if !i.rule_added {
            outln!(
                "          the agent config already had a rule for {}: left as it is",
                i.name
            );
        }
        if let Some(h) = &i.hook_left_out {
            outln!("          note: {h}");
        }
    }
    for s in &r.skipped {
        outln!("skipped   {:<24} {}", s.name, s.why);
    }
    if !r.next_steps.is_empty() {
        outln!("\nNext:");
        for (n, s) in r.next_steps.iter().enumerate() {
            outln!("  {}. {s}", n + 1);
        }
    }
}
