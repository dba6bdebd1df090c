//! The alert watch: every pass (default once a minute) it asks the database what needs a human,
//! compares with the causes already open in `notifications`, and tells the operator through the
//! [`Notifier`] about what is new, once a day about what lasts, and once when a cause clears.
//! Routine success sends nothing.
//!
//! Causes, per subject:
//! - `renewal-failing` (certificate; urgent): two or more failed attempts in a row;
//! - `expired` (certificate; urgent): the current certificate's notAfter has passed;
//! - `expiring` (certificate): less than a sixth of its lifetime left and not renewed;
//! - `install-failed` (certificate on a host; urgent): the host's last report was a failed
//!   install, a failed config test, a failed verification or a rollback;
//! - `host-silent` (host): no check-in for longer than `--host-silent-after`.
//!
//! With `--notify-digest-at HH:MM` the non-urgent causes wait for one message a day at that
//! time (UTC); urgent ones are always sent at once.
//!
//! The watch runs beside the renewal loop and hands messages to [`Notifier::deliver`], which
//! sends in the background: neither a slow relay nor the watch itself holds up a renewal.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::{Extension, Json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::auth::Admin;
use super::error::ApiFailure;
use super::state::AppState;
use crate::db::{DbError, FleetDb, OpenNotification};
use crate::notify::{AlertItem, Message, Notifier};
use crate::proto::{NotifyTestReport, UnixTime};

/// An open cause is told again after this long (one message per subject and cause a day).
pub const REMIND_AFTER: i64 = 24 * 3600;
/// Default pass interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DIGEST_DAY_SETTING: &str = "notify-digest-day";

/// The watch's settings (from [`crate::notify::NotifyConfig`]).
#[derive(Debug, Clone)]
pub struct WatchSettings {
    pub host_silent_after: Duration,
    pub digest_at: Option<(u8, u8)>,
    pub interval: Duration,
    /// The server's API URL, named in every message.
    pub server_url: String,
    /// The CA a certificate without its own ACME server uses (named in failure messages).
    pub default_ca: String,
}

/// A cause that holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cause {
    subject: String,
    cause: &'static str,
    urgent: bool,
    certificate: Option<String>,
    host: Option<String>,
    detail: String,
}

pub struct AlertWatch {
    pub db: FleetDb,
    pub clock: Arc<dyn certfleet_core::Clock>,
    pub notifier: Arc<Notifier>,
    pub settings: WatchSettings,
}

impl AlertWatch {
    /// Passes until `stop` fires. A failed pass is logged and tried again at the next one.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        if self.notifier.is_empty() {
            return;
        }
        loop {
            if *stop.borrow() {
                return;
            }
            if let Err(e) = self.pass().await {
                tracing::error!("alert watch: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.interval) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One look: open, remind, resolve, and the digest when its time has come. Returns the
    /// messages handed to the notifier (for tests).
    pub async fn pass(&self) -> Result<Vec<Message>, DbError> {
        let now = self.clock.now().unix_timestamp();
        let causes = self.causes(now).await?;
        let open: HashMap<(String, String), OpenNotification> = self
            .db
            .open_notifications()
            .await?
            .into_iter()
            .map(|o| ((o.subject.clone(), o.cause.clone()), o))
            .collect();
        let mut out = Vec::new();
        let mut holding = HashSet::new();
        for c in &causes {
            let key = (c.subject.clone(), c.cause.to_string());
            holding.insert(key.clone());
            let immediate = c.urgent || self.settings.digest_at.is_none();
            match open.get(&key) {
                None => {
                    let row = OpenNotification {
                        subject: c.subject.clone(),
                        cause: c.cause.to_string(),
                        detail: c.detail.clone(),
                        urgent: c.urgent,
                        opened_at: now,
                        last_sent_at: immediate.then_some(now),
                    };
                    if self.db.open_notification(&row).await? && immediate {
                        out.push(self.alert_message("alert", c, now, now));
                    }
                }
                Some(o) => {
                    let due = o.last_sent_at.is_none_or(|t| now - t >= REMIND_AFTER);
                    if due
                        && immediate
                        && self
                            .db
                            .mark_notification_sent(&o.subject, &o.cause, &c.detail, o.last_sent_at, now)
                            .await?
                    {
                        let kind = if o.last_sent_at.is_some() {
                            "reminder"
                        } else {
                            "alert"
                        };
                        out.push(self.alert_message(kind, c, o.opened_at, now));
                    }
                }
            }
        }
        for (key, o) in &open {
            if holding.contains(key) {
                continue;
            }
            // Only the node whose DELETE removed the row says so; a cause still waiting for
            // the digest was never told, so its clearing is not either; and a certificate the
            // admin disabled or removed (or a removed host) did not get better, it left the watch.
            if self.db.close_notification(&o.subject, &o.cause).await?
                && o.last_sent_at.is_some()
                && self.still_watched(&o.subject).await?
            {
                out.push(self.resolved_message(o, now));
            }
        }
        if let Some(digest) = self.digest(now).await? {
            out.push(digest);
        }
        for m in &out {
            self.notifier.deliver(m.clone());
        }
        Ok(out)
    }

    /// Whether the subject's certificate is still there and enabled, and its host still there.
    async fn still_watched(&self, subject: &str) -> Result<bool, DbError> {
        let (cert, host) = split_subject(subject);
        if let Some(c) = cert
            && !self.db.find_certificate(&c).await?.is_some_and(|c| c.enabled)
        {
            return Ok(false);
        }
        if let Some(h) = host {
            match self.db.host(&h).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    async fn causes(&self, now: UnixTime) -> Result<Vec<Cause>, DbError> {
        let mut out = Vec::new();
        for f in self.db.failing_certificates(2).await? {
            let ca = f.acme_server.as_deref().unwrap_or(&self.settings.default_ca);
            out.push(Cause {
                subject: format!("certificate:{}", f.name),
                cause: "renewal-failing",
                urgent: true,
                certificate: Some(f.name.clone()),
                host: None,
                detail: format!(
                    "Renewing certificate {} failed {} times in a row at {ca}. Last error: {}",
                    f.name,
                    f.consecutive_failures,
                    f.last_error.as_deref().unwrap_or("(none recorded)")
                ),
            });
        }
        for v in self.db.expiring_certificates(now).await? {
            let (cause, urgent, detail) = if v.not_after <= now {
                (
                    "expired",
                    true,
                    format!(
                        "Certificate {} expired at {}; clients refuse it now.",
                        v.name,
                        fmt_time(v.not_after)
                    ),
                )
            } else {
                (
                    "expiring",
                    false,
                    format!(
                        "Certificate {} expires at {} ({} left, less than a sixth of its lifetime) and has not been renewed. Next attempt: {}.",
                        v.name,
                        fmt_time(v.not_after),
                        fmt_span(v.not_after - now),
                        v.next_attempt_reason.as_deref().unwrap_or("not scheduled")
                    ),
                )
            };
            out.push(Cause {
                subject: format!("certificate:{}", v.name),
                cause,
                urgent,
                certificate: Some(v.name.clone()),
                host: None,
                detail,
            });
        }
        for i in self.db.failed_installs().await? {
            let what = match i.state.as_str() {
                "rolled-back" => "served another certificate after the reload, so the agent rolled back",
                "config-test-failed" => "failed the service's config test (old files kept, no reload)",
                _ => "failed to install or verify",
            };
            out.push(Cause {
                subject: format!("install:{}@{}", i.certificate, i.host),
                cause: "install-failed",
                urgent: true,
                certificate: Some(i.certificate.clone()),
                host: Some(i.host.clone()),
                detail: format!(
                    "Certificate {} on host {} {what} (reported {}){}",
                    i.certificate,
                    i.host,
                    fmt_time(i.reported_at),
                    i.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                ),
            });
        }
        let silent = self.settings.host_silent_after.as_secs() as i64;
        for h in self.db.silent_hosts(now - silent).await? {
            out.push(Cause {
                subject: format!("host:{}", h.name),
                cause: "host-silent",
                urgent: false,
                certificate: None,
                host: Some(h.name.clone()),
                detail: format!(
                    "Host {} has not checked in since {} ({} ago); is its agent running?",
                    h.name,
                    fmt_time(h.last_seen),
                    fmt_span(now - h.last_seen)
                ),
            });
        }
        Ok(out)
    }

    /// The daily digest, when `--notify-digest-at` has come today and no node sent today's:
    /// every open non-urgent cause not told in the last day.
    async fn digest(&self, now: UnixTime) -> Result<Option<Message>, DbError> {
        let Some((h, m)) = self.settings.digest_at else {
            return Ok(None);
        };
        let t = OffsetDateTime::from_unix_timestamp(now).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        if (t.hour(), t.minute()) < (h, m) {
            return Ok(None);
        }
        let today = t.date().to_string();
        let last = self.db.setting(DIGEST_DAY_SETTING).await?;
        if last.as_deref() == Some(today.as_str())
            || !self
                .db
                .swap_setting(DIGEST_DAY_SETTING, last.as_deref(), &today, now)
                .await?
        {
            return Ok(None);
        }
        let mut items = Vec::new();
        for o in self.db.open_notifications().await? {
            // A cause told less than a day ago (at its opening, before the digest was set up,
            // or in yesterday's digest sent a little later) waits for tomorrow's.
            if o.urgent || o.last_sent_at.is_some_and(|t| now - t < REMIND_AFTER - 3600) {
                continue;
            }
            if self
                .db
                .mark_notification_sent(&o.subject, &o.cause, &o.detail, o.last_sent_at, now)
                .await?
            {
                items.push(item_of(&o));
            }
        }
        if items.is_empty() {
            return Ok(None);
        }
        let text = items
            .iter()
            .map(|i| format!("- {} (since {})", i.detail, fmt_time(i.since)))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(Some(Message {
            kind: "digest".into(),
            subject: format!("certfleet: daily digest, {} open item(s)", items.len()),
            text: format!(
                "Open items on {}:\n\n{text}\n\nUrgent problems are sent at once, not here.\n",
                self.settings.server_url
            ),
            server: self.settings.server_url.clone(),
            sent_at: now,
            alerts: items,
        }))
    }

    fn alert_message(&self, kind: &str, c: &Cause, since: UnixTime, now: UnixTime) -> Message {
        let what = cause_title(c.cause);
        let about = subject_title(&c.subject);
        let prefix = if kind == "reminder" { "still: " } else { "" };
        Message {
            kind: kind.to_string(),
            subject: format!("certfleet: {prefix}{about}: {what}"),
            text: format!(
                "{}\n\nSince: {}\nServer: {}\n{}\nYou get this once a day while it lasts, and a \"resolved\" message when it clears.\n",
                c.detail,
                fmt_time(since),
                self.settings.server_url,
                hint(c)
            ),
            server: self.settings.server_url.clone(),
            sent_at: now,
            alerts: vec![AlertItem {
                cause: c.cause.to_string(),
                certificate: c.certificate.clone(),
                host: c.host.clone(),
                detail: c.detail.clone(),
                since,
                urgent: c.urgent,
            }],
        }
    }

    fn resolved_message(&self, o: &OpenNotification, now: UnixTime) -> Message {
        let what = cause_title(&o.cause);
        let about = subject_title(&o.subject);
        Message {
            kind: "resolved".into(),
            subject: format!("certfleet: resolved: {about}: {what}"),
            text: format!(
                "Resolved: {about} is no longer {what} (open since {}).\n\nWas: {}\nServer: {}\n",
                fmt_time(o.opened_at),
                o.detail,
                self.settings.server_url
            ),
            server: self.settings.server_url.clone(),
            sent_at: now,
            alerts: vec![item_of(o)],
        }
    }
}

fn item_of(o: &OpenNotification) -> AlertItem {
    let (certificate, host) = split_subject(&o.subject);
    AlertItem {
        cause: o.cause.clone(),
        certificate,
        host,
        detail: o.detail.clone(),
        since: o.opened_at,
        urgent: o.urgent,
    }
}

fn split_subject(subject: &str) -> (Option<String>, Option<String>) {
    if let Some(name) = subject.strip_prefix("certificate:") {
        (Some(name.to_string()), None)
    } else if let Some(name) = subject.strip_prefix("host:") {
        (None, Some(name.to_string()))
    } else if let Some((c, h)) = subject.strip_prefix("install:").and_then(|s| s.split_once('@')) {
        (Some(c.to_string()), Some(h.to_string()))
    } else {
        (None, None)
    }
}

fn subject_title(subject: &str) -> String {
    match split_subject(subject) {
        (Some(c), None) => format!("certificate {c}"),
        (None, Some(h)) => format!("host {h}"),
        (Some(c), Some(h)) => format!("certificate {c} on host {h}"),
        (None, None) => subject.to_string(),
    }
}

fn cause_title(cause: &str) -> &'static str {
    match cause {
        "renewal-failing" => "renewal failing",
        "expired" => "expired",
        "expiring" => "expiring soon",
        "install-failed" => "install failed",
        "host-silent" => "silent",
        _ => "alert",
    }
}

fn hint(c: &Cause) -> String {
    match (c.cause, &c.certificate, &c.host) {
        ("host-silent", _, Some(h)) => {
            format!(
                "Check `systemctl status certfleet-agent` on {h}; `certfleet fleet host list` shows its last check-in.\n"
            )
        }
        (_, Some(cert), _) => format!(
            "Details: `certfleet fleet cert show {cert}`; retry with `certfleet fleet cert renew {cert}`.\n"
        ),
        _ => String::new(),
    }
}

fn fmt_time(t: UnixTime) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

fn fmt_span(secs: i64) -> String {
    let s = secs.max(0);
    if s >= 2 * 86400 {
        format!("{} days", s / 86400)
    } else if s >= 3600 {
        format!("{} h", s / 3600)
    } else {
        format!("{} min", s / 60)
    }
}

/// `POST /api/v1/notify/test`: a test message through each channel, and how each went.
#[utoipa::path(post, path = "/api/v1/notify/test", tag = "notify", security(("admin_token" = [])),
    responses(
        (status = 200, description = "How each channel took the test message (an empty list: no channel configured)", body = NotifyTestReport),
        (status = 401, description = "No or a wrong admin token", body = crate::proto::ApiError),
        (status = 429, description = "Too many failed authentications from this address", body = crate::proto::ApiError),
    ))]
pub async fn notify_test(
    State(s): State<AppState>,
    _: Admin,
    notifier: Option<Extension<Arc<Notifier>>>,
) -> Result<Json<NotifyTestReport>, ApiFailure> {
    let Some(Extension(notifier)) = notifier else {
        return Ok(Json(NotifyTestReport { channels: vec![] }));
    };
    let now = s.now();
    let msg = Message {
        kind: "test".into(),
        subject: "certfleet: test message".into(),
        text: format!(
            "This is a test message from certfleet serve at {} (`certfleet fleet notify test`). \
             If you read it, this channel works.\n",
            s.public_url
        ),
        server: s.public_url.clone(),
        sent_at: now,
        alerts: vec![],
    };
    Ok(Json(NotifyTestReport {
        channels: notifier.test(&msg).await,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip() {
        assert_eq!(split_subject("certificate:www"), (Some("www".into()), None));
        assert_eq!(split_subject("host:web1"), (None, Some("web1".into())));
        assert_eq!(
            split_subject("install:www@web1"),
            (Some("www".into()), Some("web1".into()))
        );
        assert_eq!(subject_title("install:www@web1"), "certificate www on host web1");
    }
}
