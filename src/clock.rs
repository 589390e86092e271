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
