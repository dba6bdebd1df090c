//! Is a certificate due for renewal? A pure function of its facts, the CA's ARI window, the
//! lineage conf, the failure memory and an injected clock, so every rule is unit-tested
//! without waiting and a daemon can compute when to wake up next.

use certfleet_core::{CertInfo, Clock};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::interval::{IntervalError, RenewBefore};
use crate::state::LineageState;
use crate::ts;

/// What the policy needs to know about a lineage's current certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Serial as encoded in the certificate; seeds the deterministic random choices.
    pub serial: Vec<u8>,
    /// Why the certificate no longer matches the lineage's conf (key type changed, names
    /// added or removed...), if it does not. A mismatch makes the lineage due at once.
    pub conf_mismatch: Option<String>,
    /// What is wrong with the live files a service loads (key not the certificate's, empty
    /// fullchain...), if anything. Due at once too: a renewal writes a complete new set.
    pub live_broken: Option<String>,
}

impl CertFacts {
    pub fn from_cert(cert: &CertInfo) -> Self {
        Self {
            not_before: cert.not_before,
            not_after: cert.not_after,
            serial: cert.serial.clone(),
            conf_mismatch: None,
            live_broken: None,
        }
    }

    pub fn with_mismatch(mut self, why: impl Into<String>) -> Self {
        self.conf_mismatch = Some(why.into());
        self
    }

    pub fn with_live_broken(mut self, why: impl Into<String>) -> Self {
        self.live_broken = Some(why.into());
        self
    }
}

/// Why a certificate's names differ from the names the lineage conf wants, if they do
/// (compared case-insensitively, order ignored), ready for [`CertFacts::with_mismatch`].
pub fn names_mismatch(cert_names: &[String], wanted: &[String]) -> Option<String> {
    use std::collections::BTreeSet;
    let norm = |v: &[String]| {
        v.iter()
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
            .collect::<BTreeSet<_>>()
    };
    let (have, want) = (norm(cert_names), norm(wanted));
    let added: Vec<_> = want.difference(&have).map(String::as_str).collect();
    let removed: Vec<_> = have.difference(&want).map(String::as_str).collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("names to add: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("names to remove: {}", removed.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// An ARI (RFC 9773) `suggestedWindow`, with the poll time the CA's `Retry-After` asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AriWindow {
    #[serde(with = "ts")]
    pub start: OffsetDateTime,
    #[serde(with = "ts")]
    pub end: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation_url: Option<String>,
    /// When to ask the CA again (absolute time from its `Retry-After`), if it said.
    #[serde(default, with = "ts::option", skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<OffsetDateTime>,
}

impl AriWindow {
    /// From a renewalInfo answer fetched at `fetched_at`, whose `Retry-After` was `retry_in`.
    pub fn new(
        start: OffsetDateTime,
        end: OffsetDateTime,
        explanation_url: Option<String>,
        fetched_at: OffsetDateTime,
        retry_in: Option<std::time::Duration>,
    ) -> Self {
        let retry_after = retry_in
            .and_then(|d| Duration::try_from(d).ok())
            .and_then(|d| fetched_at.checked_add(d));
        Self {
            start,
            end,
            explanation_url,
            retry_after,
        }
    }

    /// RFC 9773: a window whose end is not after its start is invalid and must be ignored.
    pub fn is_valid(&self) -> bool {
        self.end > self.start
    }

    /// Same window (the poll time and explanation do not change where we renew).
    pub fn same_window(&self, other: &AriWindow) -> bool {
        self.start == other.start && self.end == other.end
    }

    /// The uniformly random instant in the window at which this certificate renews. It is a
    /// deterministic function of the serial and the window, so every run (and every machine)
    /// picks the same instant until the CA moves the window, when a new one is drawn.
    pub fn chosen_instant(&self, serial: &[u8]) -> OffsetDateTime {
        let mut seed = Vec::with_capacity(serial.len() + 32);
        seed.extend_from_slice(b"ari\0");
        seed.extend_from_slice(serial);
        seed.extend_from_slice(&self.start.unix_timestamp_nanos().to_be_bytes());
        seed.extend_from_slice(&self.end.unix_timestamp_nanos().to_be_bytes());
        self.start + scale(self.end - self.start, unit_fraction(&seed))
    }
}

/// Everything `decide` looks at.
#[derive(Debug, Clone, Copy)]
pub struct RenewalInput<'a> {
    pub cert: &'a CertFacts,
    /// The CA's current suggested window for this certificate, if the CA supports ARI.
    pub ari: Option<&'a AriWindow>,
    /// The lineage conf's `renew_before_expiry`, verbatim (certbot syntax).
    pub renew_before_expiry: Option<&'a str>,
    /// The lineage's failure memory, if any run has recorded one.
    pub state: Option<&'a LineageState>,
    /// `--force-renewal`: renew now unless the CA itself told us to wait.
    pub force: bool,
    /// certbot's `autorenew` of the lineage conf (default true): when false, only `force`
    /// renews it.
    pub autorenew: bool,
    /// When this process would next run anyway (e.g. the next tick of a twice-daily timer).
    /// RFC 9773 section 4.2: if the chosen ARI instant falls before it, renew now rather than
    /// overshoot a short window. `None` for a daemon that wakes exactly at `due_at`.
    pub next_run: Option<OffsetDateTime>,
}

impl<'a> RenewalInput<'a> {
    pub fn new(cert: &'a CertFacts) -> Self {
        Self {
            cert,
            ari: None,
            renew_before_expiry: None,
            state: None,
            force: false,
            autorenew: true,
            next_run: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Attempt renewal in this run.
    RenewNow { reason: String },
    /// Not due; look again at `due_at`.
    NotYet { due_at: OffsetDateTime, reason: String },
    /// Due, but recent failures (or the CA's rate limit) say wait until `retry_at`.
    InBackoff {
        retry_at: OffsetDateTime,
        last_error: String,
    },
    /// Never renewed without an explicit force (certbot's `autorenew = False`): no due time.
    Disabled { reason: String },
}

impl Decision {
    pub fn is_renew_now(&self) -> bool {
        matches!(self, Decision::RenewNow { .. })
    }

    /// When a scheduler should look at this lineage again (`now` if it is due now; never for a
    /// lineage that only a forced renewal renews).
    pub fn wake_at(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        match self {
            Decision::RenewNow { .. } => Some(now),
            Decision::NotYet { due_at, .. } => Some((*due_at).max(now)),
            Decision::InBackoff { retry_at, .. } => Some((*retry_at).max(now)),
            Decision::Disabled { .. } => None,
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::RenewNow { reason } => write!(f, "renewing now: {reason}"),
            Decision::NotYet { due_at, reason } => {
                write!(f, "not due until {}: {reason}", ts::format(*due_at))
            }
            Decision::InBackoff { retry_at, last_error } => {
                write!(
                    f,
                    "due, but waiting until {} after a failure: {last_error}",
                    ts::format(*retry_at)
                )
            }
            Decision::Disabled { reason } => write!(f, "not renewed automatically: {reason}"),
        }
    }
}

/// Certificates shorter-lived than this renew at half their lifetime instead of a third, so a
/// 6-day (160-hour) certificate still has three days of slack for a failed attempt or two.
pub const SHORT_LIVED: Duration = Duration::days(10);
/// Upper bound of the random head start in the default rule, spreading a fleet issued in one
/// batch without noticeably shortening any certificate's use.
pub const MAX_JITTER: Duration = Duration::hours(12);

/// Decide whether the lineage is due. Errors only for a bad `renew_before_expiry`.
pub fn decide(input: &RenewalInput<'_>, clock: &dyn Clock) -> Result<Decision, IntervalError> {
    // certbot's `autorenew = False`: nothing but an explicit force renews it.
    if !input.autorenew && !input.force {
        return Ok(Decision::Disabled {
            reason: "autorenew = False in its renewal conf (use --force-renewal)".into(),
        });
    }
    let now = clock.now();
    let renew_before = input.renew_before_expiry.map(RenewBefore::parse).transpose()?;
    let ca_wait = input.state.and_then(|s| s.ca_retry_after).filter(|t| *t > now);

    if input.force {
        if let Some(retry_at) = ca_wait {
            let last = input.state.and_then(|s| s.last_error.clone()).unwrap_or_default();
            return Ok(Decision::InBackoff {
                retry_at,
                last_error: format!(
                    "the CA asked us to wait (rate limit / Retry-After), even with --force-renewal: {last}"
                ),
            });
        }
        return Ok(Decision::RenewNow {
            reason: "renewal forced (--force-renewal)".into(),
        });
    }

    let due = due_rule(input, renew_before.as_ref(), now);
    match due {
        Due::Now(reason) => {
            if let Some(state) = input.state
                && let Some(retry_at) = state.backoff_until(now)
            {
                let n = state.consecutive_failures;
                let err = state.last_error.as_deref().unwrap_or("unknown error");
                return Ok(Decision::InBackoff {
                    retry_at,
                    last_error: format!(
                        "{n} consecutive failure{} (last: {err}); would renew because {reason}",
                        if n == 1 { "" } else { "s" }
                    ),
                });
            }
            Ok(Decision::RenewNow { reason })
        }
        Due::At(due_at, reason) => Ok(Decision::NotYet { due_at, reason }),
    }
}

enum Due {
    Now(String),
    At(OffsetDateTime, String),
}

fn due_rule(input: &RenewalInput<'_>, renew_before: Option<&RenewBefore>, now: OffsetDateTime) -> Due {
    let cert = input.cert;
    let t = ts::format;
    if now >= cert.not_after {
        return Due::Now(format!("the certificate expired at {}", t(cert.not_after)));
    }
    if let Some(why) = &cert.live_broken {
        return Due::Now(format!(
            "the live files are broken ({why}); renewing writes a complete new set"
        ));
    }
    if let Some(why) = &cert.conf_mismatch {
        return Due::Now(format!(
            "the certificate no longer matches the lineage configuration: {why}"
        ));
    }

    let mut note = String::new();
    if let Some(w) = input.ari {
        let explain = w
            .explanation_url
            .as_ref()
            .map(|u| format!(" (CA explanation: {u})"))
            .unwrap_or_default();
        if w.is_valid() {
            let window = format!("[{}, {}]", t(w.start), t(w.end));
            if w.end <= now {
                return Due::Now(format!(
                    "the CA's ARI renewal window {window} has already ended{explain}"
                ));
            }
            let chosen = w.chosen_instant(&cert.serial);
            if chosen <= now {
                return Due::Now(format!(
                    "the chosen time {} in the CA's ARI renewal window {window} has passed{explain}",
                    t(chosen)
                ));
            }
            if let Some(next) = input.next_run
                && chosen < next
            {
                return Due::Now(format!(
                    "the chosen time {} in the CA's ARI renewal window {window} comes before the next \
                     scheduled run at {}{explain}",
                    t(chosen),
                    t(next)
                ));
            }
            if chosen >= cert.not_after {
                // Due at expiry at the latest: a daemon must not sleep past it.
                return Due::At(
                    cert.not_after,
                    format!(
                        "the certificate expires at {}, before the chosen time {} in the CA's ARI \
                         renewal window {window}{explain}",
                        t(cert.not_after),
                        t(chosen)
                    ),
                );
            }
            return Due::At(
                chosen,
                format!("randomly chosen time in the CA's ARI renewal window {window}{explain}"),
            );
        }
        note = format!(
            " (ignored the CA's invalid ARI window [{}, {}]: end is not after start{explain})",
            t(w.start),
            t(w.end)
        );
    }

    let (due_at, why) = match (renew_before, input.renew_before_expiry) {
        (Some(rb), Some(text)) => (
            rb.before(cert.not_after),
            format!("renew_before_expiry = {}", text.trim()),
        ),
        _ => {
            let lifetime = cert.not_after - cert.not_before;
            let (left, label) = if lifetime < SHORT_LIVED {
                (lifetime / 2_i32, "half")
            } else {
                (lifetime / 3_i32, "one third")
            };
            let jitter = scale(
                (lifetime / 50_i32).min(MAX_JITTER),
                unit_fraction(&[b"jit\0", &cert.serial[..]].concat()),
            );
            (
                cert.not_after - left - jitter,
                format!("{label} of the certificate's lifetime left"),
            )
        }
    };
    if now >= due_at {
        Due::Now(format!(
            "{why} (due since {}, expires {}){note}",
            t(due_at),
            t(cert.not_after)
        ))
    } else {
        Due::At(due_at, format!("{why}, expires {}{note}", t(cert.not_after)))
    }
}

/// The earliest instant a daemon must wake for any lineage: a due or backoff time, or an ARI
/// poll the CA scheduled with Retry-After. Never earlier than `now`.
pub fn next_wakeup<'a>(
    now: OffsetDateTime,
    lineages: impl IntoIterator<Item = (&'a Decision, Option<&'a LineageState>)>,
) -> Option<OffsetDateTime> {
    lineages
        .into_iter()
        .flat_map(|(d, s)| [d.wake_at(now), s.and_then(|s| s.next_ari_poll())])
        .flatten()
        .map(|t| t.max(now))
        .min()
}

/// A deterministic number in [0, 1) from bytes: FNV-1a then the splitmix64 finalizer, written
/// out because std's hasher is not guaranteed stable across Rust releases.
fn unit_fraction(bytes: &[u8]) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn scale(d: Duration, fraction: f64) -> Duration {
    let nanos = d.whole_nanoseconds() as f64 * fraction;
    Duration::nanoseconds(nanos.clamp(i64::MIN as f64, i64::MAX as f64) as i64)
}
