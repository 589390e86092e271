//! The one place that reads wall-clock time. The policy engine takes the day
//! as an argument; everything else asks here.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::policy::Date;

/// Milliseconds since the Unix epoch.
#[expect(clippy::disallowed_methods, reason = "the single wall-clock read")]
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Today's date in UTC.
pub fn today() -> Date {
    time::OffsetDateTime::from_unix_timestamp(now_ms() / 1000)
        .map_or(time::OffsetDateTime::UNIX_EPOCH.date(), |t| t.date())
}

/// `ms` as RFC 3339 in UTC (`2026-12-05T10:00:00.123Z`), as the admin API
/// writes times.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// A point in time as an operator writes it: RFC 3339
/// (`2026-12-01T08:00:00Z`), a day (`2026-12-01`, its start in UTC), or a
/// duration before `now_ms` (`30m`, `12h`, `7d`, `2w`).
pub fn parse_instant(s: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| format!("`{s}` is out of range"));
    }
    let day = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &day) {
        return Ok(d.midnight().assume_utc().unix_timestamp() * 1_000);
    }
    parse_duration_ms(s)
        .map(|d| now_ms.saturating_sub(d))
        .map_err(|_| {
            format!(
                "`{s}` is neither a time (RFC 3339), a day (YYYY-MM-DD) nor a duration ago (7d)"
            )
        })
}

/// `30s`, `30m`, `12h`, `90d`, `2w` in milliseconds; positive.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let bad = || format!("`{s}` is not a duration like 30m, 12h, 90d or 2w");
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = s.split_at(unit_at);
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let unit_ms: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(format!("`{s}`: the duration must be positive"));
    }
    n.checked_mul(unit_ms)
        .ok_or_else(|| format!("`{s}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_in_three_spellings() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_instant("7d", now), Ok(now - 7 * 86_400_000));
        assert_eq!(parse_instant("2026-12-01", now), Ok(1_796_083_200_000));
        assert_eq!(
            parse_instant("2026-12-01T00:00:01Z", now),
            Ok(1_796_083_201_000)
        );
        assert!(parse_instant("yesterday", now).is_err());
        assert!(parse_duration_ms("0d").is_err());
        assert!(parse_duration_ms("99999999999999999w").is_err());
        assert_eq!(rfc3339(1_796_083_201_000), "2026-12-01T00:00:01Z");
    }
}
