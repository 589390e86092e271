//! `cordon usage`: a tenant's request and token totals from the store, in
//! total or grouped by provider, model, key, project or UTC day, over a period,
//! as a table (with a total row), JSON or CSV.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use super::keys::{format_ms, parse_duration_ms, with_store, write_table};
use crate::clock;
use crate::store::{GroupBy, UsageQuery, UsageTotal};

/// A bound of the period: a time ago, or a day (its UTC midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Ago(i64),
    At(i64),
}

impl When {
    fn resolve(self, now_ms: i64) -> i64 {
        match self {
            When::Ago(d) => now_ms.saturating_sub(d),
            When::At(t) => t,
        }
    }
}

/// `--since` / `--until`: `1h`, `7d` (ago) or `YYYY-MM-DD` (that day's start, UTC).
pub fn parse_when(s: &str) -> Result<When, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(day) = time::Date::parse(s, &format) {
        let ms = day.midnight().assume_utc().unix_timestamp() * 1_000;
        return Ok(When::At(ms));
    }
    parse_duration_ms(s)
        .map(When::Ago)
        .map_err(|_| format!("`{s}` is neither a duration like 1h or 7d nor a date YYYY-MM-DD"))
}

/// `--by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Provider,
    Model,
    Key,
    Project,
    Day,
}

impl By {
    fn group_by(self) -> GroupBy {
        match self {
            By::Provider => GroupBy::Provider,
            By::Model => GroupBy::Model,
            By::Key => GroupBy::Key,
            By::Project => GroupBy::Project,
            By::Day => GroupBy::Day,
        }
    }
}

/// `--format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns and a total row.
    #[default]
    Table,
    /// An array of objects, one per group (one in all without `--by`).
    Json,
    /// A header row, then one row per group (one in all without `--by`).
    Csv,
}

pub struct Args {
    pub tenant: String,
    /// `None`: since the first record.
    pub since: Option<When>,
    /// `None`: up to the last record. Exclusive.
    pub until: Option<When>,
    pub by: Option<By>,
    pub format: Format,
}

const COLUMNS: [&str; 4] = ["requests", "prompt_tokens", "completion_tokens", "refused"];

pub fn run(
    config: &Path,
    args: &Args,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitCode> {
    let now = clock::now_ms();
    let since_ms = args.since.map_or(i64::MIN, |s| s.resolve(now));
    let until_ms = args.until.map_or(i64::MAX, |u| u.resolve(now));
    if since_ms >= until_ms {
        writeln!(
            err,
            "error: the period is empty: --since must be before --until"
        )?;
        return Ok(ExitCode::FAILURE);
    }
    let Some(cfg) = super::load_or_report(config, err)? else {
        return Ok(ExitCode::FAILURE);
    };
    let query = UsageQuery {
        tenant: Some(args.tenant.clone()),
        since_ms,
        until_ms,
        group_by: args.by.map_or(GroupBy::None, By::group_by),
    };
    let totals = match with_store(&cfg, async |store| store.usage_totals(&query).await)? {
        Ok(t) => t,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    match args.format {
        Format::Table => table(args, since_ms, until_ms, &totals, out)?,
        Format::Json => json(args.by, &totals, out)?,
        Format::Csv => csv(args.by, &totals, out)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn table(
    args: &Args,
    since_ms: i64,
    until_ms: i64,
    totals: &[UsageTotal],
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut period = if since_ms == i64::MIN {
        "all time".to_owned()
    } else {
        format!("since {}", format_ms(since_ms))
    };
    if until_ms != i64::MAX {
        period.push_str(&format!(", until {}", format_ms(until_ms)));
    }
    writeln!(out, "usage of tenant {}, {period}", args.tenant)?;
    if totals.is_empty() {
        return writeln!(out, "no requests");
    }
    let first = args
        .by
        .map_or(String::new(), |b| b.group_by().name().to_uppercase());
    let header = [
        first,
        "REQUESTS".to_owned(),
        "PROMPT TOKENS".to_owned(),
        "COMPLETION TOKENS".to_owned(),
        "REFUSED".to_owned(),
    ];
    let mut rows: Vec<[String; 5]> = Vec::new();
    if args.by.is_some() {
        rows.extend(totals.iter().map(|t| row(&t.group, t)));
    }
    rows.push(row("total", &sum(totals)));
    write_table(&header, &rows, out)
}

/// One object per group, the group under the grouping's name; without
/// `--by`, one object with the totals (none when there are no requests).
fn json(by: Option<By>, totals: &[UsageTotal], out: &mut dyn Write) -> io::Result<()> {
    let items: Vec<serde_json::Value> = totals_to_report(by, totals)
        .iter()
        .map(|(group, t)| {
            let mut o = serde_json::Map::new();
            if let (Some(b), Some(g)) = (by, group) {
                o.insert(b.group_by().name().to_owned(), g.as_str().into());
            }
            for (name, v) in COLUMNS.iter().zip(numbers(t)) {
                o.insert((*name).to_owned(), v.into());
            }
            serde_json::Value::Object(o)
        })
        .collect();
    let text = serde_json::to_string_pretty(&items).map_err(io::Error::other)?;
    writeln!(out, "{text}")
}

/// A header row, then one row per group (RFC 4180 quoting).
fn csv(by: Option<By>, totals: &[UsageTotal], out: &mut dyn Write) -> io::Result<()> {
    let mut header: Vec<&str> = by.map(|b| b.group_by().name()).into_iter().collect();
    header.extend(COLUMNS);
    writeln!(out, "{}", header.join(","))?;
    for (group, t) in totals_to_report(by, totals) {
        let mut cells: Vec<String> = group.map(|g| csv_cell(&g)).into_iter().collect();
        cells.extend(numbers(&t).map(|n| n.to_string()));
        writeln!(out, "{}", cells.join(","))?;
    }
    Ok(())
}

/// The rows of the machine formats: each group, or (without `--by`) the
/// one total, if there were requests.
fn totals_to_report(by: Option<By>, totals: &[UsageTotal]) -> Vec<(Option<String>, UsageTotal)> {
    match by {
        Some(_) => totals
            .iter()
            .map(|t| (Some(t.group.clone()), t.clone()))
            .collect(),
        None if totals.is_empty() => Vec::new(),
        None => vec![(None, sum(totals))],
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn numbers(t: &UsageTotal) -> [i64; 4] {
    [t.requests, t.prompt_tokens, t.completion_tokens, t.refused]
}

fn sum(totals: &[UsageTotal]) -> UsageTotal {
    totals.iter().fold(
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
    )
}

fn row(group: &str, t: &UsageTotal) -> [String; 5] {
    let [a, b, c, d] = numbers(t).map(|n| n.to_string());
    [group.to_owned(), a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_a_duration_ago_or_a_utc_day() {
        assert_eq!(parse_when("1h"), Ok(When::Ago(3_600_000)));
        assert_eq!(parse_when("7d"), Ok(When::Ago(7 * 86_400_000)));
        assert_eq!(parse_when("2026-01-01"), Ok(When::At(1_767_225_600_000)));
        assert_eq!(When::Ago(1_000).resolve(5_000), 4_000);
        assert_eq!(When::At(7).resolve(5_000), 7);
        for bad in ["yesterday", "2026-13-01", "2026-1-1", "1y"] {
            assert!(parse_when(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_cells_are_quoted_only_when_needed() {
        assert_eq!(csv_cell("gpt-4o"), "gpt-4o");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    fn t(group: &str, requests: i64) -> UsageTotal {
        UsageTotal {
            group: group.to_owned(),
            requests,
            prompt_tokens: requests * 10,
            completion_tokens: requests,
            refused: 0,
        }
    }

    #[test]
    fn machine_formats_have_one_row_per_group_or_one_in_all() {
        let totals = [t("(none)", 1), t("a,b", 2)];
        let mut out = Vec::new();
        csv(Some(By::Project), &totals, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "project,requests,prompt_tokens,completion_tokens,refused\n\
             (none),1,10,1,0\n\"a,b\",2,20,2,0\n"
        );
        let mut out = Vec::new();
        json(None, &totals, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"requests": 3, "prompt_tokens": 30, "completion_tokens": 3, "refused": 0}])
        );
        let mut out = Vec::new();
        json(None, &[], &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().trim(), "[]");
    }
}
