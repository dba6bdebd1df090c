//! `certfleet import`: check a certbot host before switching it to certfleet. certfleet renews
//! certbot's tree in place, so nothing is copied: for every lineage this reads its renewal conf
//! the way `certfleet renew` will and says, item by item, what carries over (authenticator,
//! installer, hooks, credentials files, renewal settings) and what does not, with what to do;
//! then the commands that turn certbot's timer off and certfleet's on.
//!
//! Read-only and offline: no file is written, nothing is sent to a CA. Exit 0 when every
//! lineage carries over, [`ExitCode::NeedsAttention`] (13) when one would not renew (or not
//! reach its server) under certfleet, so `certfleet import && ...` only switches a host that
//! is ready.

use std::path::{Path, PathBuf};
use std::process::ExitCode as ProcessExit;

use serde::Serialize;

use certfleet_core::Identifier;
use certfleet_engine::authenticator::{AuthSpec, DnsAuth};
use certfleet_engine::deploy::RELOAD_CONF_KEY;
use certfleet_engine::lineage::{key_mismatch, wanted_key_spec};
use certfleet_solvers::dns::ProviderConfig;
use certfleet_store::{Kind, Lineage, RenewalConf, Store};

use crate::account;
use crate::args::{GlobalArgs, ImportArgs};
use crate::error::{CliError, ExitCode, Result};

/// How one item of a lineage fares under certfleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// certfleet does the same as certbot.
    Ok,
    /// Carries over, but look at it (e.g. a hook command that is not found).
    Warning,
    /// Does not carry over: certfleet would not renew the lineage, or not reach its server.
    Blocked,
}

#[derive(Debug, Serialize)]
pub struct Item {
    /// `files`, `authenticator`, `credentials`, `installer`, `hooks`, `account`, `key`, `renewal`.
    pub topic: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do, when not [`Status::Ok`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LineageCheck {
    pub name: String,
    pub domains: Vec<String>,
    /// No item is [`Status::Blocked`].
    pub carries_over: bool,
    pub items: Vec<Item>,
}

/// certbot's scheduled renewals found on this host.
#[derive(Debug, Serialize)]
pub struct Schedule {
    pub kind: &'static str,
    pub path: String,
    /// The command that turns it off.
    pub disable: String,
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub config_dir: String,
    pub lineages: Vec<LineageCheck>,
    pub all_carry_over: bool,
    /// Directory hooks under renewal-hooks/ (certfleet runs them as certbot does).
    pub directory_hooks: Vec<String>,
    pub certbot_schedules: Vec<Schedule>,
    /// The commands to switch, in order.
    pub commands: Vec<String>,
}

pub fn run(g: &GlobalArgs, a: &ImportArgs) -> Result<ProcessExit> {
    let (store, names) = selected_lineages(g, a)?;
    let lineages: Vec<LineageCheck> = names.iter().map(|n| check_lineage(&store, n)).collect();
    let all_carry_over = lineages.iter().all(|l| l.carries_over);
    let certbot_schedules = certbot_schedules(Path::new("/"));
    let commands = switch_commands(g, &certbot_schedules, Path::new("/"));
    let report = Report {
        config_dir: g.config_dir.display().to_string(),
        lineages,
        all_carry_over,
        directory_hooks: directory_hooks(&store),
        certbot_schedules,
        commands,
    };
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report).expect("json"));
    } else {
        print_report(&report);
    }
    Ok(if all_carry_over {
        ProcessExit::SUCCESS
    } else {
        ProcessExit::from(ExitCode::NeedsAttention as u8)
    })
}

/// The store and the lineages `--cert-name` selects (all by default); a name with no lineage
/// is a usage error.
pub(crate) fn selected_lineages(g: &GlobalArgs, a: &ImportArgs) -> Result<(Store, Vec<String>)> {
    let store = account::store(g);
    if !g.config_dir.is_dir() {
        return Err(CliError::usage(format!(
            "{} is not a directory: give certbot's config dir with --config-dir (default /etc/letsencrypt)",
            g.config_dir.display()
        )));
    }
    let mut names = store.list_lineages().map_err(CliError::store)?;
    for n in &a.cert_name {
        if !names.contains(n) {
            return Err(CliError::usage(format!(
                "no lineage {n:?}: there is no {}",
                store.conf_path(n).display()
            )));
        }
    }
    if !a.cert_name.is_empty() {
        names.retain(|n| a.cert_name.contains(n));
    }
    Ok((store, names))
}

/// Re-issuing once with an authenticator certfleet has rewrites the conf (certbot's way).
fn reissue_hint(name: &str, domains: &[String]) -> String {
    let d: String = domains.iter().map(|d| format!(" -d {d}")).collect();
    format!(
        "re-issue it once with an authenticator certfleet has, which rewrites its renewal conf: \
         `certfleet certonly --cert-name {name}{d} --force-renewal --webroot -w DOCROOT` (or --standalone, \
         --nginx, --apache, {}); until then keep certbot renewing it",
        certfleet_engine::authenticator::dns::dns_choices()
    )
}

fn item(topic: &'static str, status: Status, detail: impl Into<String>, action: Option<String>) -> Item {
    Item {
        topic,
        status,
        detail: detail.into(),
        action,
    }
}

fn check_lineage(store: &Store, name: &str) -> LineageCheck {
    let mut items = Vec::new();
    let lin = match store.load_lineage(name) {
        Ok(l) => l,
        Err(e) => {
            items.push(item(
                "files",
                Status::Blocked,
                e.to_string(),
                Some("fix or delete the renewal conf; `certbot certificates` shows the same problem".into()),
            ));
            return done(name, vec![], items);
        }
    };
    let info = match lin.check().and_then(|()| lin.cert_info()) {
        Ok(info) => info,
        Err(e) => {
            items.push(item(
                "files",
                Status::Blocked,
                e.to_string(),
                Some(format!(
                    "repair the live/ links with `certfleet update_symlinks --cert-name {name}`, or delete the lineage"
                )),
            ));
            return done(name, vec![], items);
        }
    };
    let domains = certfleet_store::lineage::certbot_names(&info);
    items.push(files_item(&lin, &info));
    let ids: std::result::Result<Vec<Identifier>, _> = domains
        .iter()
        .map(|n| {
            if n.parse::<std::net::IpAddr>().is_ok() {
                Identifier::ip(n)
            } else {
                Identifier::dns(n)
            }
        })
        .collect();
    match ids {
        Ok(ids) => authenticator_items(&lin.conf, name, &domains, &ids, &mut items),
        Err(e) => items.push(item(
            "authenticator",
            Status::Blocked,
            format!("a name in the certificate is not usable: {e}"),
            Some(reissue_hint(name, &domains)),
        )),
    }
    items.push(installer_item(&lin.conf, name));
    hook_items(&lin.conf, &mut items);
    items.push(account_item(store, &lin.conf));
    items.push(key_item(&lin, &info, name));
    items.push(renewal_item(&lin.conf, name));
    done(name, domains, items)
}

fn done(name: &str, domains: Vec<String>, items: Vec<Item>) -> LineageCheck {
    LineageCheck {
        name: name.to_string(),
        carries_over: items.iter().all(|i| i.status != Status::Blocked),
        domains,
        items,
    }
}

fn files_item(lin: &Lineage, info: &certfleet_core::CertInfo) -> Item {
    let live = lin
        .live_path(Kind::Cert)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let expiry = super::renew::fmt_time(info.not_after);
    let version = lin
        .version()
        .map(|v| format!(", version {v}"))
        .unwrap_or_default();
    if info.is_expired_at(time::OffsetDateTime::now_utc()) {
        item(
            "files",
            Status::Warning,
            format!("{live}{version}, expired {expiry}"),
            Some("`certfleet renew` renews it at its first run".into()),
        )
    } else {
        item(
            "files",
            Status::Ok,
            format!("{live}{version}, expires {expiry}; renewed in place, paths unchanged"),
            None,
        )
    }
}

fn authenticator_items(
    conf: &RenewalConf,
    name: &str,
    domains: &[String],
    ids: &[Identifier],
    items: &mut Vec<Item>,
) {
    let spec = match AuthSpec::from_conf(conf, ids) {
        Ok(s) => s,
        Err(e) => {
            let known_plugin = conf.authenticator().is_some_and(|a| {
                ["webroot", "standalone", "nginx", "apache", "manual"].contains(&a)
                    || certfleet_solvers::dns::registry::by_authenticator(a).is_some()
            });
            let detail = match conf.authenticator() {
                Some(a) if !known_plugin => format!("{a:?} is a certbot plugin certfleet does not have"),
                _ => e.message(),
            };
            items.push(item(
                "authenticator",
                Status::Blocked,
                detail,
                Some(reissue_hint(name, domains)),
            ));
            return;
        }
    };
    let detail = match &spec {
        AuthSpec::Webroot(map) => {
            let mut roots: Vec<String> = map.values().map(|p| p.display().to_string()).collect();
            roots.sort();
            roots.dedup();
            format!("webroot ({})", roots.join(", "))
        }
        AuthSpec::Standalone { address, port } => format!(
            "standalone (built-in http-01 server on {}:{port})",
            or_all(address)
        ),
        AuthSpec::TlsAlpn { address, port } => {
            format!("tls-alpn-01 (built-in TLS server on {}:{port})", or_all(address))
        }
        AuthSpec::Nginx(o) => format!(
            "nginx (http-01 through the running nginx: server root {}, {}, port {}); its configuration is not edited",
            o.server_root.display(),
            o.ctl,
            o.http01_port
        ),
        AuthSpec::Apache(o) => format!(
            "apache (http-01 through the running Apache: server root {}, {}, port {}); its configuration is not edited",
            o.server_root.display(),
            o.ctl,
            o.http01_port
        ),
        AuthSpec::ManualHttp { auth_hook, .. } => {
            format!("manual http-01 through the auth hook {auth_hook:?}")
        }
        AuthSpec::Dns(d) => dns_detail(d),
    };
    let mut status = Status::Ok;
    let mut action = None;
    // Hooks of the manual plugin must run unattended.
    let hooks: Vec<&str> = match &spec {
        AuthSpec::ManualHttp {
            auth_hook,
            cleanup_hook,
        } => std::iter::once(auth_hook.as_str())
            .chain(cleanup_hook.as_deref())
            .collect(),
        AuthSpec::Dns(DnsAuth {
            provider:
                ProviderConfig::Hooks {
                    auth_hook,
                    cleanup_hook,
                },
            ..
        }) => std::iter::once(auth_hook.as_str())
            .chain(cleanup_hook.as_deref())
            .collect(),
        _ => vec![],
    };
    if let Some(missing) = hooks.iter().find(|h| !command_found(h)) {
        status = Status::Blocked;
        action = Some(format!(
            "the manual hook {missing:?} is not an executable command here; fix the path (certbot could not run it either)"
        ));
    }
    if matches!(
        spec,
        AuthSpec::Dns(DnsAuth {
            provider: ProviderConfig::Manual,
            ..
        })
    ) {
        status = Status::Blocked;
        action = Some(
            "manual dns-01 without --manual-auth-hook needs a person at every renewal (certbot's timer cannot \
             renew it either): give it an auth hook or a DNS provider by re-issuing once with certfleet certonly"
                .into(),
        );
    }
    items.push(item("authenticator", status, detail, action));
    if let AuthSpec::Dns(d) = &spec
        && let Some((reg, path)) = d.provider.registered()
    {
        // What the renewal will do first: read the file (mode and keys checked).
        items.push(match (reg.build)(path) {
            Ok(_) => item(
                "credentials",
                Status::Ok,
                format!("{} (read as {} does)", path.display(), reg.authenticator),
                None,
            ),
            Err(e) => item(
                "credentials",
                Status::Blocked,
                format!("{}: {e}", path.display()),
                Some(format!(
                    "fix {} (mode 0600, the keys `--help` lists under --{})",
                    path.display(),
                    reg.credentials_flag
                )),
            ),
        });
    }
}

fn or_all(address: &str) -> &str {
    if address.is_empty() { "*" } else { address }
}

fn dns_detail(d: &DnsAuth) -> String {
    match &d.provider {
        ProviderConfig::Hooks { auth_hook, .. } => {
            format!("manual dns-01 through the auth hook {auth_hook:?}")
        }
        ProviderConfig::Manual => "manual dns-01 by hand (no auth hook)".into(),
        other => match other.registered() {
            Some((reg, _)) => format!("{} (dns-01)", reg.authenticator),
            None => "dns-01".into(),
        },
    }
}

fn installer_item(conf: &RenewalConf, name: &str) -> Item {
    let installer = conf.installer();
    match certfleet_engine::authenticator::http::installer_reload(conf) {
        Ok(Some(cmds)) => item(
            "installer",
            Status::Ok,
            format!(
                "{}: after a renewal certfleet tests the configuration and reloads ({})",
                installer.unwrap_or_default(),
                cmds.reload.join(" ")
            ),
            None,
        ),
        Err(e) => item("installer", Status::Blocked, e.message(), None),
        Ok(None) => match installer {
            None => item(
                "installer",
                Status::Ok,
                match conf.param_str(RELOAD_CONF_KEY) {
                    Some(s) => format!("none; certfleet reloads {s} after a renewal (deploy_reload)"),
                    None => "none (certonly): whatever reads live/ picks up the new files as before".into(),
                },
                None,
            ),
            Some(other) => {
                // Someone else's installer plugin: the certificate renews, but nothing tells the
                // server, unless the lineage reloads it another way.
                let other_way = conf
                    .param_str(RELOAD_CONF_KEY)
                    .map(|s| format!("deploy_reload = {s}"))
                    .or_else(|| conf.renew_hook().map(|h| format!("the deploy hook {h:?}")));
                let detail = format!("{other:?} is a certbot installer plugin certfleet does not have");
                let fix = format!(
                    "`certfleet reconfigure --cert-name {name} --deploy-reload SERVICE` (nginx, apache2, haproxy, \
                     postfix, dovecot or any systemd unit), or a deploy hook that installs the files"
                );
                match other_way {
                    Some(way) => item(
                        "installer",
                        Status::Warning,
                        format!("{detail}; {way} reloads the server instead"),
                        Some(format!("check that {way} does everything {other} did")),
                    ),
                    None => item(
                        "installer",
                        Status::Blocked,
                        format!("{detail}: renewed certificates would not reach the server"),
                        Some(fix),
                    ),
                }
            }
        },
    }
}

fn hook_items(conf: &RenewalConf, items: &mut Vec<Item>) {
    for (label, hook) in [
        ("pre_hook", conf.pre_hook()),
        ("post_hook", conf.post_hook()),
        ("deploy hook (renew_hook)", conf.renew_hook()),
    ] {
        let Some(cmd) = hook.filter(|h| !h.is_empty()) else {
            continue;
        };
        items.push(if command_found(cmd) {
            item(
                "hooks",
                Status::Ok,
                format!("{label} {cmd:?}: run by `sh -c` with certbot's variables (RENEWED_LINEAGE, RENEWED_DOMAINS)"),
                None,
            )
        } else {
            item(
                "hooks",
                Status::Warning,
                format!("{label} {cmd:?}: its command is not found here"),
                Some("fix the command (certbot fails to run it too); a failing hook makes renew exit 12".into()),
            )
        });
    }
}

fn account_item(store: &Store, conf: &RenewalConf) -> Item {
    let server = conf.server().unwrap_or(certfleet_engine::account::LE_PRODUCTION);
    let id = conf.account();
    let accounts = store.accounts().list(server).unwrap_or_default();
    let found = match id {
        Some(id) => accounts.iter().any(|a| a.id == id),
        None => !accounts.is_empty(),
    };
    let who = id
        .map(|i| format!("account {i}"))
        .unwrap_or_else(|| "an account".into());
    if found {
        item(
            "account",
            Status::Ok,
            format!("{who} at {server}, used as saved"),
            None,
        )
    } else {
        item(
            "account",
            Status::Blocked,
            format!(
                "{who} at {server} is not under {}",
                store.dirs().accounts_dir().display()
            ),
            Some(format!(
                "restore accounts/ from a backup, or `certfleet register --server {server} -m EMAIL --agree-tos`"
            )),
        )
    }
}

fn key_item(lin: &Lineage, info: &certfleet_core::CertInfo, name: &str) -> Item {
    let spec = match wanted_key_spec(lin, info) {
        Ok(s) => s,
        Err(e) => {
            return item(
                "key",
                Status::Blocked,
                e.message(),
                Some(format!(
                    "`certfleet reconfigure --cert-name {name} --key-type ecdsa` (or rsa)"
                )),
            );
        }
    };
    let reuse = if lin.conf.reuse_key() {
        "the same key is kept (reuse_key)"
    } else {
        "a new key at each renewal"
    };
    match key_mismatch(lin, info) {
        Some(why) => item(
            "key",
            Status::Warning,
            format!("{spec}; {why}"),
            Some("the next renewal makes a new key and fixes it".into()),
        ),
        None => item("key", Status::Ok, format!("{spec}, {reuse}"), None),
    }
}

fn renewal_item(conf: &RenewalConf, name: &str) -> Item {
    // Without the key certfleet goes by the certificate's lifetime (and ARI), not certbot's
    // fixed 30 days (see certfleet renew --help).
    let mut parts = vec![match conf.get("renew_before_expiry") {
        Some(r) => format!("renew_before_expiry {r}"),
        None => "renewed in the CA's ARI window, else with a third of its lifetime left".to_string(),
    }];
    if let Some(c) = conf.preferred_chain() {
        parts.push(format!("preferred_chain {c:?}"));
    }
    if let Some(p) = conf.param_str("http01_port") {
        parts.push(format!("http01_port {p}"));
    }
    if !conf.autorenew() {
        return item(
            "renewal",
            Status::Warning,
            "autorenew = False: neither certbot nor certfleet renews it on schedule",
            Some(format!(
                "`certfleet renew --cert-name {name} --force-renewal` when you want it renewed"
            )),
        );
    }
    if conf.must_staple() {
        return item(
            "renewal",
            Status::Warning,
            format!("{}; must_staple is not carried over", parts.join(", ")),
            Some(
                "Let's Encrypt no longer issues OCSP Must-Staple certificates; certfleet renews without it"
                    .into(),
            ),
        );
    }
    item("renewal", Status::Ok, parts.join(", "), None)
}

/// Executables in renewal-hooks/{pre,deploy,post}/.
fn directory_hooks(store: &Store) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for sub in ["pre", "deploy", "post"] {
        let dir = store.dirs().renewal_hooks_dir().join(sub);
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|p| p.display().to_string()));
    }
    out
}

/// Whether the first word of a shell command names an executable (as certbot checks hooks).
fn command_found(cmd: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(first) = cmd.split_whitespace().next() else {
        return false;
    };
    let first = first.trim_matches(|c| c == '"' || c == '\'');
    let exec =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if first.contains('/') {
        return exec(Path::new(first));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|d| exec(&d.join(first)))
}

/// certbot's timers and cron jobs under `root` (`/`; a test can point elsewhere).
fn certbot_schedules(root: &Path) -> Vec<Schedule> {
    let mut out = Vec::new();
    for unit in ["certbot.timer", "snap.certbot.renew.timer"] {
        let found = [
            "etc/systemd/system",
            "lib/systemd/system",
            "usr/lib/systemd/system",
        ]
        .iter()
        .map(|d| root.join(d).join(unit))
        .find(|p| p.exists());
        if let Some(p) = found {
            out.push(Schedule {
                kind: "systemd-timer",
                path: p.display().to_string(),
                disable: format!("systemctl disable --now {unit}"),
                note: None,
            });
        }
    }
    let cron = root.join("etc/cron.d/certbot");
    if cron.exists() {
        out.push(Schedule {
            kind: "cron",
            path: cron.display().to_string(),
            // Debian's cron skips files in cron.d whose names have a dot; dpkg leaves the
            // moved conffile alone on upgrades.
            disable: format!("mv {} {}.disabled", cron.display(), cron.display()),
            note: Some(
                "Debian's job does nothing while systemd runs (it tests /run/systemd/system), but would on a host without it"
                    .into(),
            ),
        });
    }
    for tab in [
        root.join("etc/crontab"),
        root.join("var/spool/cron/crontabs/root"),
    ] {
        let Ok(text) = std::fs::read_to_string(&tab) else {
            continue;
        };
        if text
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("certbot"))
        {
            out.push(Schedule {
                kind: "crontab",
                path: tab.display().to_string(),
                disable: format!("edit {} and remove the certbot line", tab.display()),
                note: None,
            });
        }
    }
    out
}

/// In order: rehearse, certbot off, certfleet on, check.
fn switch_commands(g: &GlobalArgs, schedules: &[Schedule], root: &Path) -> Vec<String> {
    let dirs = super::timer::dir_flags(g);
    let mut out = vec![format!("certfleet renew --dry-run{dirs}")];
    out.extend(schedules.iter().map(|s| s.disable.clone()));
    // The .deb installs the units (not enabled); they use the default directories.
    let packaged = ["lib/systemd/system", "usr/lib/systemd/system"]
        .iter()
        .any(|d| root.join(d).join("certfleet-renew.timer").exists());
    if !packaged || !dirs.is_empty() {
        out.push(format!("certfleet install-timer{dirs}"));
        out.push("systemctl daemon-reload".into());
    }
    out.push("systemctl enable --now certfleet-renew.timer".into());
    out.push("systemctl list-timers certfleet-renew.timer".into());
    out
}

fn print_report(r: &Report) {
    if r.lineages.is_empty() {
        outln!("No lineages under {}: nothing to carry over.", r.config_dir);
    }
    for l in &r.lineages {
        let verdict = if l.carries_over {
            "carries over"
        } else {
            "does NOT carry over"
        };
        outln!("{} ({}): {verdict}", l.name, l.domains.join(", "));
        for i in &l.items {
            let mark = match i.status {
                Status::Ok => "ok  ",
                Status::Warning => "warn",
                Status::Blocked => "NO  ",
            };
            outln!("  {mark} {:<13} {}", i.topic, i.detail);
            if let Some(a) = &i.action {
                outln!("       {:<13} -> {a}", "");
            }
        }
        outln!("");
    }
    if !r.directory_hooks.is_empty() {
        outln!("Directory hooks (certfleet runs them as certbot does):");
        for h in &r.directory_hooks {
            outln!("  {h}");
        }
        outln!("");
    }
    let blocked: Vec<&str> = r
        .lineages
        .iter()
        .filter(|l| !l.carries_over)
        .map(|l| l.name.as_str())
        .collect();
    if blocked.is_empty() {
        outln!("Every lineage carries over. To switch this host:");
    } else {
        outln!(
            "Not ready: {} would not renew under certfleet (fix them as shown, then run import again). \
             Once it exits 0, switch this host:",
            blocked.join(", ")
        );
    }
    for s in &r.certbot_schedules {
        if let Some(n) = &s.note {
            outln!("  # {}: {n}", s.path);
        }
    }
    if r.certbot_schedules.is_empty() {
        outln!("  # no certbot timer or cron job found on this host");
    }
    for c in &r.commands {
        outln!("  {c}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_debian_timer_and_cron() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("lib/systemd/system")).unwrap();
        std::fs::create_dir_all(root.path().join("etc/cron.d")).unwrap();
        std::fs::write(root.path().join("lib/systemd/system/certbot.timer"), "").unwrap();
        std::fs::write(
            root.path().join("etc/cron.d/certbot"),
            "0 */12 * * * root certbot -q renew\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("etc/crontab"),
            "# certbot renew\n17 * * * * root run-parts\n",
        )
        .unwrap();
        let s = certbot_schedules(root.path());
        let disables: Vec<&str> = s.iter().map(|s| s.disable.as_str()).collect();
        assert_eq!(disables.len(), 2, "{disables:?}");
        assert_eq!(disables[0], "systemctl disable --now certbot.timer");
        assert!(disables[1].starts_with("mv ") && disables[1].ends_with("/etc/cron.d/certbot.disabled"));
        // A commented crontab line is not a schedule.
        assert!(!s.iter().any(|s| s.kind == "crontab"));
    }

    #[test]
    fn packaged_units_need_no_install_timer() {
        use clap::Parser;
        let g = crate::args::Cli::parse_from(["certfleet", "import"]).global;
        let root = tempfile::tempdir().unwrap();
        let cmds = switch_commands(&g, &[], root.path());
        assert!(cmds.contains(&"certfleet install-timer".to_string()), "{cmds:?}");
        std::fs::create_dir_all(root.path().join("lib/systemd/system")).unwrap();
        std::fs::write(root.path().join("lib/systemd/system/certfleet-renew.timer"), "").unwrap();
        let cmds = switch_commands(&g, &[], root.path());
        assert!(!cmds.iter().any(|c| c.contains("install-timer")), "{cmds:?}");
        assert_eq!(
            cmds.last().unwrap(),
            "systemctl list-timers certfleet-renew.timer"
        );
        // A non-default tree: the packaged units do not point at it.
        let g = crate::args::Cli::parse_from(["certfleet", "import", "--config-dir", "/srv/le"]).global;
        let cmds = switch_commands(&g, &[], root.path());
        assert!(
            cmds.contains(&"certfleet install-timer --config-dir /srv/le".to_string()),
            "{cmds:?}"
        );
    }

    fn conf(params: &str) -> RenewalConf {
        RenewalConf::parse(
            &format!("version = 2.1.0\n[renewalparams]\n{params}"),
            Path::new("x.conf"),
        )
        .unwrap()
    }

    #[test]
    fn installers() {
        let ok = installer_item(&conf("authenticator = nginx\ninstaller = nginx\n"), "x");
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        // certbot writes the string None for no installer.
        assert_eq!(
            installer_item(&conf("installer = None\n"), "x").status,
            Status::Ok
        );
        let foreign = installer_item(&conf("authenticator = webroot\ninstaller = haproxy\n"), "x");
        assert_eq!(foreign.status, Status::Blocked, "{foreign:?}");
        assert!(foreign.action.unwrap().contains("--deploy-reload SERVICE"));
        // Another way to reach the server makes it a warning only.
        let hooked = installer_item(
            &conf("installer = haproxy\nrenew_hook = systemctl reload haproxy\n"),
            "x",
        );
        assert_eq!(hooked.status, Status::Warning, "{hooked:?}");
        let reload = installer_item(&conf("installer = haproxy\ndeploy_reload = haproxy\n"), "x");
        assert_eq!(reload.status, Status::Warning, "{reload:?}");
    }

    #[test]
    fn renewal_settings() {
        assert_eq!(
            renewal_item(&conf("must_staple = True\n"), "x").status,
            Status::Warning
        );
        assert_eq!(
            renewal_item(&conf("autorenew = False\n"), "x").status,
            Status::Warning
        );
        let r = renewal_item(&conf("preferred_chain = ISRG Root X1\n"), "x");
        assert_eq!(r.status, Status::Ok);
        assert!(
            r.detail.contains("preferred_chain \"ISRG Root X1\""),
            "{}",
            r.detail
        );
    }

    #[test]
    fn hook_commands() {
        assert!(command_found("sh -c 'true'"));
        assert!(command_found("/bin/sh"));
        assert!(!command_found("/nonexistent/reload-it --now"));
        assert!(!command_found("no-such-command-certfleet"));
        assert!(!command_found("  "));
    }
}
