//! `cordon usage`: a tenant's request and token totals from the store, in
//! total or by model or provider.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use super::keys::{format_ms, parse_duration_ms, with_store, write_table};
use crate::clock;
use crate::store::{GroupBy, UsageQuery, UsageTotal};

/// The start of the period: a time ago, or a day (UTC midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Ago(i64),
    At(i64),
}

impl Since {
    fn resolve(self, now_ms: i64) -> i64 {
        match self {
            Since::Ago(d) => now_ms.saturating_sub(d),
            Since::At(t) => t,
        }
    }
}

/// `--since`: `1h`, `7d` (ago) or `YYYY-MM-DD` (from that day's start, UTC).
pub fn parse_since(s: &str) -> Result<Since, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(day) = time::Date::parse(s, &format) {
        let ms = day.midnight().assume_utc().unix_timestamp() * 1_000;
        return Ok(Since::At(ms));
    }
    parse_duration_ms(s)
        .map(Since::Ago)
        .map_err(|_| format!("`{s}` is neither a duration like 1h or 7d nor a date YYYY-MM-DD"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Model,
    Provider,
}

pub struct Args {
    pub tenant: String,
    /// `None`: since the first record.
    pub since: Option<Since>,
    pub by: Option<By>,
}

pub fn run(
    config: &Path,
    args: &Args,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitCode> {
    let Some(cfg) = super::load_or_report(config, err)? else {
        return Ok(ExitCode::FAILURE);
    };
    let now = clock::now_ms();
    let since_ms = args.since.map_or(i64::MIN, |s| s.resolve(now));
    let query = UsageQuery {
        tenant: Some(args.tenant.clone()),
        since_ms,
        until_ms: i64::MAX,
        group_by: match args.by {
            Some(By::Model) => GroupBy::Model,
            Some(By::Provider) => GroupBy::Provider,
            None => GroupBy::None,
        },
    };
    let totals = match with_store(&cfg, async |store| store.usage_totals(&query).await)? {
        Ok(t) => t,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let period = if since_ms == i64::MIN {
        "all time".to_owned()
    } else {
        format!("since {}", format_ms(since_ms))
    };
    writeln!(out, "usage of tenant {}, {period}", args.tenant)?;
    if totals.is_empty() {
        writeln!(out, "no requests")?;
        return Ok(ExitCode::SUCCESS);
    }
    let first = match args.by {
        Some(By::Model) => "MODEL",
        Some(By::Provider) => "PROVIDER",
        None => "",
    };
    let header = [
        first,
        "REQUESTS",
        "PROMPT TOKENS",
        "COMPLETION TOKENS",
        "REFUSED",
    ]
    .map(str::to_owned);
    let mut rows: Vec<[String; 5]> = Vec::new();
    if args.by.is_some() {
        rows.extend(totals.iter().map(|t| row(&t.group, t)));
    }
    let sum = totals.iter().fold(
        UsageTotal {
            group: String::new(),
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            refused: 0,
        },
        |acc, t| UsageTotal {
            requests: acc.requests + t.requests,
            prompt_tokens: acc.prompt_tokens + t.prompt_tokens,
            completion_tokens: acc.completion_tokens + t.completion_tokens,
            refused: acc.refused + t.refused,
            ..acc
        },
    );
    rows.push(row("total", &sum));
    write_table(&header, &rows, out)?;
    Ok(ExitCode::SUCCESS)
}

fn row(group: &str, t: &UsageTotal) -> [String; 5] {
    [
        group.to_owned(),
        t.requests.to_string(),
        t.prompt_tokens.to_string(),
        t.completion_tokens.to_string(),
        t.refused.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_duration_ago_or_a_utc_day() {
        assert_eq!(parse_since("1h"), Ok(Since::Ago(3_600_000)));
        assert_eq!(parse_since("7d"), Ok(Since::Ago(7 * 86_400_000)));
        assert_eq!(parse_since("2026-01-01"), Ok(Since::At(1_767_225_600_000)));
        assert_eq!(Since::Ago(1_000).resolve(5_000), 4_000);
        assert_eq!(Since::At(7).resolve(5_000), 7);
        for bad in ["yesterday", "2026-13-01", "2026-1-1", "1y"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
