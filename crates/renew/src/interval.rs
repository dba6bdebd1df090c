//! certbot's `renew_before_expiry` syntax: "30 days", "2 weeks", "12 hours", "1 month 2 days",
//! or a bare number meaning days (certbot appends " days" to a bare integer).
//!
//! certbot hands the text to `parsedatetime`; we accept the unit words people actually write and
//! reject everything else with the exact value, rather than silently guessing like parsedatetime.

use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid renew_before_expiry value {value:?}: {reason}; write it like \"30 days\", \"2 weeks\", \
     \"12 hours\" or \"1 month 2 days\""
)]
pub struct IntervalError {
    /// The text exactly as it was given.
    pub value: String,
    pub reason: String,
}

/// A parsed interval. Months (and years, as 12 months) stay calendar months, as with certbot,
/// so "1 month" before 31 March is 28 or 29 February.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewBefore {
    pub months: i64,
    pub fixed: Duration,
}

impl RenewBefore {
    pub fn parse(value: &str) -> Result<Self, IntervalError> {
        let err = |reason: String| IntervalError {
            value: value.to_string(),
            reason,
        };
        let text = value.trim();
        if text.is_empty() {
            return Err(err("it is empty".into()));
        }
        if text.chars().all(|c| c.is_ascii_digit()) {
            let days: i64 = text.parse().map_err(|_| err("number too large".into()))?;
            return Ok(Self {
                months: 0,
                fixed: checked_mul(Duration::DAY, days).ok_or_else(|| err("number too large".into()))?,
            });
        }
        // Split into (number, unit) pairs; "30 days", "30days", "1 week, 2 days" and
        // "3 days and 12 hours" are all accepted.
        let mut months = 0i64;
        let mut fixed = Duration::ZERO;
        let mut rest = text;
        let mut pairs = 0;
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
            if let Some(r) = rest.strip_prefix("and ") {
                rest = r.trim_start();
            }
            if rest.is_empty() {
                break;
            }
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                let word: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                return Err(err(format!("expected a number before {word:?}")));
            }
            let n: i64 = rest[..digits]
                .parse()
                .map_err(|_| err("number too large".into()))?;
            rest = rest[digits..].trim_start();
            let unit_len = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let unit = rest[..unit_len].to_ascii_lowercase();
            rest = &rest[unit_len..];
            if unit.is_empty() {
                return Err(err(format!(
                    "the number {n} has no unit (seconds, minutes, hours, days, weeks, months, years)"
                )));
            }
            let too_large = || err("number too large".into());
            match unit.as_str() {
                "s" | "sec" | "secs" | "second" | "seconds" => {
                    fixed += checked_mul(Duration::SECOND, n).ok_or_else(too_large)?
                }
                "m" | "min" | "mins" | "minute" | "minutes" => {
                    fixed += checked_mul(Duration::MINUTE, n).ok_or_else(too_large)?
                }
                "h" | "hr" | "hrs" | "hour" | "hours" => {
                    fixed += checked_mul(Duration::HOUR, n).ok_or_else(too_large)?
                }
                "d" | "day" | "days" => fixed += checked_mul(Duration::DAY, n).ok_or_else(too_large)?,
                "w" | "wk" | "wks" | "week" | "weeks" => {
                    fixed += checked_mul(Duration::WEEK, n).ok_or_else(too_large)?
                }
                "mo" | "mon" | "mons" | "month" | "months" => {
                    months = months.checked_add(n).ok_or_else(too_large)?
                }
                "y" | "yr" | "yrs" | "year" | "years" => {
                    months = n
                        .checked_mul(12)
                        .and_then(|m| months.checked_add(m))
                        .ok_or_else(too_large)?
                }
                other => return Err(err(format!("unknown time unit {other:?}"))),
            }
            pairs += 1;
        }
        if pairs == 0 {
            return Err(err("no interval found".into()));
        }
        if months > 1200 || fixed > Duration::days(36_500) {
            return Err(err("longer than 100 years".into()));
        }
        Ok(Self { months, fixed })
    }

    /// `t` minus this interval (calendar months first, then the fixed part).
    pub fn before(&self, t: OffsetDateTime) -> OffsetDateTime {
        sub_months(t, self.months) - self.fixed
    }
}

impl std::str::FromStr for RenewBefore {
    type Err = IntervalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn checked_mul(unit: Duration, n: i64) -> Option<Duration> {
    unit.checked_mul(i32::try_from(n).ok()?)
}

/// Calendar subtraction that clamps the day (31 March - 1 month = 28/29 February).
fn sub_months(t: OffsetDateTime, months: i64) -> OffsetDateTime {
    if months == 0 {
        return t;
    }
    let total = t.year() as i64 * 12 + (t.month() as i64 - 1) - months;
    let year = total.div_euclid(12) as i32;
    let month = time::Month::try_from((total.rem_euclid(12) + 1) as u8).expect("1..=12");
    let last = time::util::days_in_month(month, year);
    let day = t.day().min(last);
    let date = time::Date::from_calendar_date(year, month, day).expect("valid clamped date");
    t.replace_date(date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn parses_certbot_forms() {
        let d = |s| RenewBefore::parse(s).unwrap();
        assert_eq!(
            d("30 days"),
            RenewBefore {
                months: 0,
                fixed: Duration::days(30)
            }
        );
        assert_eq!(
            d("30"),
            RenewBefore {
                months: 0,
                fixed: Duration::days(30)
            }
        );
        assert_eq!(
            d(" 7 "),
            RenewBefore {
                months: 0,
                fixed: Duration::days(7)
            }
        );
        assert_eq!(
            d("2 weeks"),
            RenewBefore {
                months: 0,
                fixed: Duration::weeks(2)
            }
        );
        assert_eq!(
            d("12 hours"),
            RenewBefore {
                months: 0,
                fixed: Duration::hours(12)
            }
        );
        assert_eq!(
            d("1 day"),
            RenewBefore {
                months: 0,
                fixed: Duration::days(1)
            }
        );
        assert_eq!(
            d("10d"),
            RenewBefore {
                months: 0,
                fixed: Duration::days(10)
            }
        );
        assert_eq!(
            d("3 days 12 hours"),
            RenewBefore {
                months: 0,
                fixed: Duration::hours(84)
            }
        );
        assert_eq!(
            d("3 days and 12 Hours"),
            RenewBefore {
                months: 0,
                fixed: Duration::hours(84)
            }
        );
        assert_eq!(
            d("6 months 1 week"),
            RenewBefore {
                months: 6,
                fixed: Duration::weeks(1)
            }
        );
        assert_eq!(
            d("1 year"),
            RenewBefore {
                months: 12,
                fixed: Duration::ZERO
            }
        );
        assert_eq!(
            d("90 seconds"),
            RenewBefore {
                months: 0,
                fixed: Duration::seconds(90)
            }
        );
        assert_eq!(
            d("45 minutes"),
            RenewBefore {
                months: 0,
                fixed: Duration::minutes(45)
            }
        );
    }

    #[test]
    fn errors_name_the_exact_value() {
        for bad in [
            "",
            "thirty days",
            "30 fortnights",
            "-5 days",
            "30 days x",
            "1.5 days",
            "5 5",
        ] {
            let e = RenewBefore::parse(bad).unwrap_err();
            assert_eq!(e.value, bad);
            let msg = e.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(msg.contains("30 days"), "message should show an example: {msg}");
        }
        assert!(
            RenewBefore::parse("30 fortnights")
                .unwrap_err()
                .reason
                .contains("fortnights")
        );
        assert!(RenewBefore::parse("99999999999999999999").is_err());
        assert!(RenewBefore::parse("200 years").is_err());
    }

    #[test]
    fn months_are_calendar_months() {
        let i = RenewBefore::parse("1 month").unwrap();
        assert_eq!(
            i.before(datetime!(2024-03-31 10:00 UTC)),
            datetime!(2024-02-29 10:00 UTC)
        );
        assert_eq!(
            i.before(datetime!(2024-01-15 10:00 UTC)),
            datetime!(2023-12-15 10:00 UTC)
        );
        let j = RenewBefore::parse("1 month 1 day").unwrap();
        assert_eq!(
            j.before(datetime!(2024-03-31 10:00 UTC)),
            datetime!(2024-02-28 10:00 UTC)
        );
    }
}
