//! What is on this host: the lineage's files (the checks `certificates` makes), key modes,
//! days left, the renewal conf, the account, the failure memory; and whether a timer or the
//! daemon renews at all.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use certfleet_core::Identifier;
use certfleet_store::{Kind as FileKind, Lineage};
use time::OffsetDateTime;

use super::{Check, Ctx, Kind, Target};
use crate::authenticator::AuthSpec;
use crate::lineage::lineage_problem;
use crate::renewal::lineage_state;

/// Every lineage-level check.
pub(super) fn lineage(ctx: &Ctx, t: &Target) -> Vec<Check> {
    let Some(lin) = &t.lineage else {
        return vec![];
    };
    let name = lin.name.as_str();
    let now = ctx.opts.now;
    let mut out = Vec::new();
    match lin.cert_info() {
        Err(e) => out.push(Check::fail(Kind::Lineage, name, e.to_string(), reissue_fix(lin))),
        Ok(info) => {
            out.push(match lineage_problem(lin, &info) {
                Some(p) => Check::fail(Kind::Lineage, name, p, reissue_fix(lin)),
                None => Check::ok(
                    Kind::Lineage,
                    name,
                    format!(
                        "live/{name}/ links complete (version {}), private key matches the certificate",
                        lin.version().unwrap_or_default()
                    ),
                ),
            });
            out.push(expiry(lin, &info, now));
        }
    }
    out.push(modes(lin));
    out.push(renewal_conf(lin, t));
    out.push(account(ctx, lin));
    out.push(renewal_state(ctx, lin, now));
    out
}

fn reissue_fix(lin: &Lineage) -> String {
    format!(
        "run `certfleet update_symlinks --cert-name {0}` if archive/{0}/ holds a complete version, \
         else issue again with `certfleet certonly --cert-name {0} --force-renewal ...`",
        lin.name
    )
}

fn expiry(lin: &Lineage, info: &certfleet_core::CertInfo, now: OffsetDateTime) -> Check {
    let left = info.not_after - now;
    let when = info
        .not_after
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let name = lin.name.as_str();
    if left.is_negative() {
        return Check::fail(
            Kind::Expiry,
            name,
            format!("the certificate expired on {when}"),
            format!("renew it now: `certfleet renew --cert-name {name} --force-renewal`"),
        );
    }
    let detail = format!("expires {when} ({} days left)", left.whole_days());
    // Past two thirds of its life a certificate is overdue under every rule `renew` uses.
    if left < info.lifetime() / 3_i32 && !lin.conf.autorenew() {
        Check::warn(
            Kind::Expiry,
            name,
            format!("{detail}; autorenew is off in its renewal conf"),
            format!(
                "renew it by hand (`certfleet renew --cert-name {name} --force-renewal`) or set autorenew = True"
            ),
        )
    } else if left < info.lifetime() / 6_i32 {
        Check::warn(
            Kind::Expiry,
            name,
            format!("{detail}: it should have been renewed by now"),
            format!(
                "see renewal-state and scheduler below; `certfleet renew --cert-name {name}` renews it now"
            ),
        )
    } else {
        Check::ok(Kind::Expiry, name, detail)
    }
}

/// Private keys must not be readable by everyone (certbot makes them 0600; a group such as
/// ssl-cert may read them).
fn modes(lin: &Lineage) -> Check {
    let name = lin.name.as_str();
    let mut open = Vec::new();
    for path in [lin.current_target(FileKind::Privkey)]
        .into_iter()
        .flatten()
        .chain(archive_keys(&lin.archive_dir))
    {
        if let Ok(md) = std::fs::metadata(&path)
            && md.permissions().mode() & 0o004 != 0
            && !open.contains(&path)
        {
            open.push(path);
        }
    }
    if open.is_empty() {
        return Check::ok(Kind::Modes, name, "private keys are not readable by other users");
    }
    let list: Vec<String> = open.iter().map(|p| p.display().to_string()).collect();
    Check::fail(
        Kind::Modes,
        name,
        format!("private keys readable by every user: {}", list.join(", ")),
        format!("chmod 600 {}", list.join(" ")),
    )
}

fn archive_keys(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut v: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| FileKind::Privkey.parse_version(n).is_some())
        })
        .collect();
    v.sort();
    v
}

/// The conf names an authenticator certfleet can run, with everything it needs for every name.
fn renewal_conf(lin: &Lineage, t: &Target) -> Check {
    let name = lin.name.as_str();
    let conf = lin.conf_path.display();
    let Some(auth) = &t.auth else {
        let why = match AuthSpec::from_conf(&lin.conf, &t.names) {
            Err(e) => e.to_string(),
            Ok(_) => "it names no authenticator".into(),
        };
        return Check::fail(
            Kind::RenewalConf,
            name,
            format!("{conf}: {why}"),
            format!(
                "set how to renew: `certfleet reconfigure --cert-name {name} --webroot -w /var/www/html` \
                 (or --standalone, --nginx, --dns-rfc2136 ...)"
            ),
        );
    };
    if lin.conf.server().is_none_or(str::is_empty) {
        return Check::fail(
            Kind::RenewalConf,
            name,
            format!("{conf} names no server"),
            format!("`certfleet reconfigure --cert-name {name} --server URL`"),
        );
    }
    if let AuthSpec::Webroot(map) = auth {
        let missing: Vec<String> = t
            .names
            .iter()
            .map(Identifier::value)
            .filter(|n| !map.contains_key(n))
            .collect();
        if !missing.is_empty() {
            return Check::fail(
                Kind::RenewalConf,
                name,
                format!("{conf} has no webroot for {}", missing.join(", ")),
                format!(
                    "`certfleet reconfigure --cert-name {name} --webroot -w DOCUMENT_ROOT` (the root serving http://{}/)",
                    missing[0]
                ),
            );
        }
        let mut gone: Vec<String> = map
            .values()
            .filter(|r| !r.is_dir())
            .map(|r| r.display().to_string())
            .collect();
        gone.dedup();
        if !gone.is_empty() {
            return Check::fail(
                Kind::RenewalConf,
                name,
                format!("webroot {} in {conf} is not a directory", gone.join(", ")),
                format!(
                    "create it, or point the lineage at the site's real document root: \
                     `certfleet reconfigure --cert-name {name} --webroot -w DOCUMENT_ROOT`"
                ),
            );
        }
    }
    Check::ok(
        Kind::RenewalConf,
        name,
        format!(
            "{conf}: authenticator {}, server {}",
            lin.conf.authenticator().unwrap_or_default(),
            lin.conf.server().unwrap_or_default()
        ),
    )
}

fn account(ctx: &Ctx, lin: &Lineage) -> Check {
    let name = lin.name.as_str();
    let Some(server) = lin.conf.server() else {
        return Check::fail(
            Kind::Account,
            name,
            "no server in the renewal conf, so no account either",
            format!("`certfleet reconfigure --cert-name {name} --server URL`"),
        );
    };
    let store = &ctx.opts.store;
    let dir = store.dirs().accounts_dir();
    let list = match store.accounts().list(server) {
        Ok(l) => l,
        Err(e) => {
            return Check::fail(
                Kind::Account,
                name,
                e.to_string(),
                format!("make {} readable by this user", dir.display()),
            );
        }
    };
    let found = match lin.conf.account() {
        Some(id) => list.iter().find(|a| a.id == id),
        None => list.first(),
    };
    match found {
        Some(a) => Check::ok(Kind::Account, name, format!("account {} at {server}", a.id)),
        None => Check::fail(
            Kind::Account,
            name,
            format!(
                "account {} for {server} is not in {}: renewal will fail",
                lin.conf.account().unwrap_or("(any)"),
                dir.display()
            ),
            format!(
                "restore it from a backup of {}, or register (`certfleet register --server {server} -m EMAIL \
                 --agree-tos`) and renew with `certfleet renew --cert-name {name} --server {server}`",
                dir.display()
            ),
        ),
    }
}

fn renewal_state(ctx: &Ctx, lin: &Lineage, now: OffsetDateTime) -> Check {
    let name = lin.name.as_str();
    let Some(state) = lineage_state(&ctx.opts.store, name).filter(|s| s.consecutive_failures > 0) else {
        return Check::ok(Kind::RenewalState, name, "no renewal failures on record");
    };
    let last = state.last_error.as_deref().unwrap_or("unknown error");
    let next = match state.backoff_until(now) {
        Some(t) => format!(
            "in backoff until {}",
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        ),
        None => "retried at the next `renew`".into(),
    };
    let expires_first = state
        .backoff_until(now)
        .zip(lin.not_after().ok())
        .is_some_and(|(until, exp)| exp <= until);
    let detail = format!(
        "{} failed renewal{} (last: {last}); {next}",
        state.consecutive_failures,
        if state.consecutive_failures == 1 { "" } else { "s" }
    );
    let fix = format!(
        "fix the cause (the checks below name it), then `certfleet renew --cert-name {name} --force-renewal` \
         (a CA's Retry-After is still honoured)"
    );
    if expires_first {
        Check::fail(
            Kind::RenewalState,
            name,
            format!("{detail}; the certificate expires before then"),
            fix,
        )
    } else {
        Check::warn(Kind::RenewalState, name, detail, fix)
    }
}

/// Something renews (our timer or daemon, or certbot's), and a whole pass ran lately.
pub(super) fn scheduler(ctx: &Ctx) -> Vec<Check> {
    let subject = "this host";
    let unit_dir = &ctx.opts.unit_dir;
    let ours = ["certfleet-renew.timer", "certfleet.service"]
        .iter()
        .map(|u| unit_dir.join(u))
        .find(|p| p.is_file());
    // certbot's own timer renews certbot's default tree only.
    let certbot_tree = ctx.opts.store.dirs().config_dir == Path::new("/etc/letsencrypt");
    let certbot = [
        "/etc/systemd/system/certbot.timer",
        "/lib/systemd/system/certbot.timer",
        "/usr/lib/systemd/system/certbot.timer",
        "/etc/cron.d/certbot",
    ]
    .iter()
    .map(Path::new)
    .find(|p| certbot_tree && p.is_file());
    let installed = match (&ours, certbot) {
        (Some(p), _) => format!("{} installed", p.display()),
        (None, Some(p)) => format!("{} installed (certbot renews this tree)", p.display()),
        (None, None) => {
            return vec![Check::warn(
                Kind::Scheduler,
                subject,
                format!(
                    "no certfleet-renew.timer or certfleet.service in {}, no certbot timer or cron job: \
                     nothing renews automatically",
                    unit_dir.display()
                ),
                "`certfleet install-timer && systemctl daemon-reload && systemctl enable --now certfleet-renew.timer`",
            )];
        }
    };
    let Some(ours) = ours else {
        return vec![Check::ok(Kind::Scheduler, subject, installed)];
    };
    let now = ctx.opts.now;
    let config_dir = &ctx.opts.store.dirs().config_dir;
    if let Some(pid) = daemon_pid(config_dir) {
        return vec![Check::ok(
            Kind::Scheduler,
            subject,
            format!(
                "{installed}; the daemon (`certfleet run`, pid {pid}) is running for {}",
                config_dir.display()
            ),
        )];
    }
    if ours.ends_with("certfleet.service") {
        return vec![Check::warn(
            Kind::Scheduler,
            subject,
            format!(
                "{installed}, but no `certfleet run` is running for {}",
                config_dir.display()
            ),
            "`systemctl enable --now certfleet.service`; see `journalctl -u certfleet` for why it stopped",
        )];
    }
    // systemd keeps the last trigger of a Persistent= timer as this file's mtime.
    let stamp = Path::new(TIMER_STAMPS).join("stamp-certfleet-renew.timer");
    let fired = std::fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .ok()
        .map(OffsetDateTime::from);
    match fired {
        Some(t) if now - t < time::Duration::days(2) => vec![Check::ok(
            Kind::Scheduler,
            subject,
            format!("{installed}; it last fired {} hours ago", (now - t).whole_hours()),
        )],
        last => vec![Check::warn(
            Kind::Scheduler,
            subject,
            match last {
                Some(t) => format!(
                    "{installed}, but it last fired {} days ago",
                    (now - t).whole_days()
                ),
                None => format!(
                    "{installed}, but it has never fired ({} is missing)",
                    stamp.display()
                ),
            },
            "`systemctl daemon-reload && systemctl enable --now certfleet-renew.timer`; see \
             `systemctl list-timers certfleet-renew.timer` and `journalctl -u certfleet-renew`",
        )],
    }
}

/// Where systemd records when each persistent timer last fired.
const TIMER_STAMPS: &str = "/var/lib/systemd/timers";

/// A running `certfleet run` whose tree is `config_dir` (its `--config-dir`, else certbot's
/// default), found in /proc.
fn daemon_pid(config_dir: &Path) -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        if pid == me {
            return None;
        }
        let raw = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let exe = Path::new(args.first()?).file_name()?.to_str()?;
        if exe != "certfleet" || !args.iter().any(|a| a == "run") {
            return None;
        }
        let dir = args
            .iter()
            .position(|a| a == "--config-dir")
            .and_then(|i| args.get(i + 1))
            .map_or_else(|| "/etc/letsencrypt".to_string(), Clone::clone);
        let dir = std::path::absolute(Path::new(&dir)).ok()?;
        (dir == config_dir).then_some(pid)
    })
}
