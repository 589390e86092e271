//! `cordon keys create|list|revoke`: client keys in the store named by the
//! gateway file's `[store] url`.
//!
//! The raw key is printed once, by `create`, and never stored: the store keeps
//! the SHA-256 of its secret. `list` shows no hash and no secret. `create` and
//! `revoke` each append an audit entry (actor `cli`), never with the raw key.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::audit::{ACTOR_CLI, NewAuditEntry, Outcome};
use crate::auth::issue::{self, IssueError, KeyRequest};
use crate::auth::key::KeyId;
use crate::clock;
use crate::config::Config;
use crate::store::{self, Store, StoreError};

pub struct CreateArgs {
    pub tenant: String,
    pub name: Option<String>,
    pub project: Option<String>,
    /// Lifetime in milliseconds (`--expires-in`).
    pub expires_in_ms: Option<i64>,
    /// Model globs the key is limited to (`--model`, repeatable; empty: no limit).
    pub models: Vec<String>,
    /// Requests per minute for this key alone (`--rpm`).
    pub rpm: Option<u32>,
}

/// An [`IssueError`] in the words of the command line (its flags).
fn cli_message(e: &IssueError) -> String {
    match e {
        IssueError::Name => format!(
            "--name must be at most {} characters, without control characters",
            issue::MAX_NAME_CHARS
        ),
        IssueError::Expiry => "--expires-in is too far in the future".to_owned(),
        IssueError::Models(m) => format!("--model: {m}"),
        IssueError::Rpm => "--rpm must be at least 1".to_owned(),
        other => other.to_string(),
    }
}

pub fn create(
    config: &Path,
    args: &CreateArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitCode> {
    let Some(cfg) = super::load_or_report(config, err)? else {
        return Ok(ExitCode::FAILURE);
    };
    if !known_tenant(&cfg, &args.tenant, err)? {
        return Ok(ExitCode::FAILURE);
    }
    let req = KeyRequest {
        tenant: args.tenant.clone(),
        name: args.name.clone(),
        project: args.project.clone(),
        expires_in_ms: args.expires_in_ms,
        models: (!args.models.is_empty()).then(|| args.models.clone()),
        rpm: args.rpm,
    };
    if let Err(e) = issue::check(&cfg.table, &req) {
        writeln!(err, "error: {}", cli_message(&e))?;
        return Ok(ExitCode::FAILURE);
    }
    let now = clock::now_ms();
    let created = with_store(&cfg, async |store| {
        let (key, row) = match issue::issue(store, &cfg.table, &req, now).await {
            Ok(k) => k,
            Err(IssueError::Store(e)) => return Err(e),
            // Checked above; only the expiry's overflow is left.
            Err(e) => return Ok(Err(e)),
        };
        let mut entry = NewAuditEntry::new(now, ACTOR_CLI, "key.create", Outcome::Success)
            .tenant(Some(&args.tenant))
            .target(key.id.as_str());
        if let Some(p) = &args.project {
            entry = entry.detail("project", p.as_str());
        }
        let audited = store.append_audit(&entry).await.map(drop);
        Ok(Ok((key, row.expires_ms, audited)))
    })?;
    let (key, expires_ms, audited) = match created {
        Ok(Ok(k)) => k,
        Ok(Err(e)) => {
            writeln!(err, "error: {}", cli_message(&e))?;
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    // The only place the raw key is ever written anywhere.
    writeln!(out, "id: {}", key.id)?;
    writeln!(out, "key: {}", key.raw.expose())?;
    let bound = match &args.project {
        Some(p) => format!("tenant {} project {p}", args.tenant),
        None => format!("tenant {}", args.tenant),
    };
    let expiry = expires_ms.map_or_else(String::new, |t| format!(", expires {}", format_ms(t)));
    writeln!(
        err,
        "created key {} for {bound}{expiry}. Copy it now: it cannot be shown again.",
        key.id
    )?;
    audit_failure(audited, err)
}

pub fn list(
    config: &Path,
    tenant: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitCode> {
    let Some(cfg) = super::load_or_report(config, err)? else {
        return Ok(ExitCode::FAILURE);
    };
    if !cfg.table.tenants().iter().any(|t| t.tenant == tenant) {
        // Still listed: keys of a tenant whose policy was removed may need revoking.
        writeln!(err, "note: tenant `{tenant}` is not in the configuration")?;
    }
    let keys = match with_store(&cfg, async |store| store.list_keys(tenant).await)? {
        Ok(k) => k,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    if keys.is_empty() {
        writeln!(out, "no keys for tenant {tenant}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let header = [
        "ID",
        "NAME",
        "PROJECT",
        "MODELS",
        "RPM",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "REVOKED",
    ];
    // Deliberately no hash column: a hash is not for display.
    let rows: Vec<[String; 9]> = keys
        .iter()
        .map(|k| {
            [
                k.id.to_string(),
                k.name.clone().unwrap_or_else(|| "-".to_owned()),
                k.project.clone().unwrap_or_else(|| "-".to_owned()),
                k.scope
                    .models
                    .as_ref()
                    .map_or_else(|| "any".to_owned(), |m| m.join(",")),
                k.scope
                    .rpm
                    .map_or_else(|| "-".to_owned(), |r| r.to_string()),
                format_ms(k.created_ms),
                k.last_used_ms.map_or_else(|| "never".to_owned(), format_ms),
                k.expires_ms.map_or_else(|| "never".to_owned(), format_ms),
                k.revoked_ms.map_or_else(|| "-".to_owned(), format_ms),
            ]
        })
        .collect();
    let header = header.map(str::to_owned);
    write_table(&header, &rows, out)?;
    Ok(ExitCode::SUCCESS)
}

pub fn revoke(
    config: &Path,
    id: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitCode> {
    let Some(cfg) = super::load_or_report(config, err)? else {
        return Ok(ExitCode::FAILURE);
    };
    let Ok(id) = KeyId::parse(id) else {
        writeln!(
            err,
            "error: `{id}` is not a key id (8 lower-case letters or digits, as in `keys list`)"
        )?;
        return Ok(ExitCode::FAILURE);
    };
    let now = clock::now_ms();
    let result = with_store(&cfg, async |store| {
        let (revoked, tenant) = if store.revoke_key(&id, now).await? {
            let tenant = store.get_key(&id).await?.map(|k| k.tenant);
            (Revoked::Now, tenant)
        } else {
            match store.get_key(&id).await? {
                Some(k) => (
                    Revoked::Already(k.revoked_ms.unwrap_or(now)),
                    Some(k.tenant),
                ),
                None => (Revoked::Unknown, None),
            }
        };
        let audited = store
            .append_audit(&revoked.audit_entry(now, "key.revoke", tenant.as_deref(), &id))
            .await
            .map(drop);
        Ok((revoked, audited))
    })?;
    let audited = match result {
        Ok((Revoked::Now, audited)) => {
            writeln!(
                out,
                "revoked key {id}; every gateway refuses it within seconds"
            )?;
            audited
        }
        Ok((Revoked::Already(at), audited)) => {
            writeln!(out, "key {id} was already revoked at {}", format_ms(at))?;
            audited
        }
        Ok((Revoked::Unknown, audited)) => {
            writeln!(err, "error: no key with id {id}")?;
            audit_failure(audited, err)?;
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    audit_failure(audited, err)
}

/// What a revocation found.
pub(super) enum Revoked {
    Now,
    /// Already revoked, at this time.
    Already(i64),
    Unknown,
}

impl Revoked {
    /// The audit entry recording this revocation attempt of `id`.
    pub(super) fn audit_entry(
        &self,
        now: i64,
        action: &str,
        tenant: Option<&str>,
        id: &KeyId,
    ) -> NewAuditEntry {
        let (outcome, reason) = match self {
            Revoked::Now => (Outcome::Success, None),
            Revoked::Already(_) => (Outcome::Failure, Some("already revoked")),
            Revoked::Unknown => (Outcome::Failure, Some("unknown id")),
        };
        let entry = NewAuditEntry::new(now, ACTOR_CLI, action, outcome)
            .tenant(tenant)
            .target(id.as_str());
        match reason {
            Some(r) => entry.detail("reason", r),
            None => entry,
        }
    }
}

/// Reports an audit entry that could not be written after the action it
/// records was done (and its result printed): the command then fails.
pub(super) fn audit_failure(
    audited: Result<(), StoreError>,
    err: &mut dyn Write,
) -> io::Result<ExitCode> {
    match audited {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            writeln!(
                err,
                "error: done, but its audit entry could not be written: {e}"
            )?;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Whether `--name` is acceptable; says why not on `err`.
pub(super) fn name_is_valid(name: Option<&str>, err: &mut dyn Write) -> io::Result<bool> {
    match name {
        Some(name)
            if name.chars().any(char::is_control)
                || name.chars().count() > issue::MAX_NAME_CHARS =>
        {
            writeln!(
                err,
                "error: --name must be at most {} characters, without control characters",
                issue::MAX_NAME_CHARS
            )?;
            Ok(false)
        }
        _ => Ok(true),
    }
}

/// The expiry time `expires_in_ms` after `now`: `Some(None)` for none,
/// `None` (said on `err`) when it overflows.
pub(super) fn expiry(
    now: i64,
    expires_in_ms: Option<i64>,
    err: &mut dyn Write,
) -> io::Result<Option<Option<i64>>> {
    match expires_in_ms.map(|d| now.checked_add(d)) {
        None => Ok(Some(None)),
        Some(Some(t)) => Ok(Some(Some(t))),
        Some(None) => {
            writeln!(err, "error: --expires-in is too far in the future")?;
            Ok(None)
        }
    }
}

/// Looks up `tenant` in the configuration; says which tenants exist on `err`
/// when it is not there.
pub(super) fn known_tenant(cfg: &Config, tenant: &str, err: &mut dyn Write) -> io::Result<bool> {
    let tenants = cfg.table.tenants();
    if tenants.iter().any(|t| t.tenant == tenant) {
        return Ok(true);
    }
    let known: Vec<&str> = tenants.iter().map(|t| t.tenant.as_str()).collect();
    writeln!(
        err,
        "error: unknown tenant `{tenant}`: no policy file defines it (known: {})",
        list_or_none(&known)
    )?;
    Ok(false)
}

/// Runs `f` against the store named by the configuration, on a
/// single-threaded runtime, and closes the store afterwards.
///
/// A relative SQLite path in `[store] url` is relative to the directory of the
/// gateway file (like `policies_dir`), not to the working directory, so
/// `cordon keys …` and `cordon serve` open the same database wherever they are
/// started from.
pub(super) fn with_store<T>(
    cfg: &Config,
    f: impl AsyncFnOnce(&Store) -> Result<T, StoreError>,
) -> io::Result<Result<T, StoreError>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(async {
        let base = cfg.file.parent().unwrap_or(Path::new(""));
        let url = store::resolve_url(cfg.store_url.expose(), base)?;
        let store = Store::connect(&url).await?;
        let result = f(&store).await;
        store.close().await;
        result
    }))
}

pub use crate::clock::parse_duration_ms;

/// Unix milliseconds → `YYYY-MM-DD HH:MM UTC`.
pub(super) fn format_ms(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Left-aligned columns, two spaces apart.
pub(super) fn write_table<const N: usize>(
    header: &[String; N],
    rows: &[[String; N]],
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    Ok(())
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration_ms("45s"), Ok(45_000));
        assert_eq!(parse_duration_ms("30m"), Ok(30 * 60_000));
        assert_eq!(parse_duration_ms("12h"), Ok(12 * 3_600_000));
        assert_eq!(parse_duration_ms("90d"), Ok(90 * 86_400_000));
        assert_eq!(parse_duration_ms("2w"), Ok(14 * 86_400_000));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in [
            "", "d", "90", "90x", "9 d", "-1d", "1.5h", "90dd", "0d", "1D",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration_ms("99999999999999999w").is_err(), "overflow");
        assert!(
            parse_duration_ms("90x")
                .unwrap_err()
                .contains("like 30m, 12h, 90d")
        );
    }

    #[test]
    fn times_print_in_utc() {
        assert_eq!(format_ms(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_ms(1_767_225_600_000), "2026-01-01 00:00 UTC");
    }

    #[test]
    fn tables_align_columns() {
        let mut out = Vec::new();
        let header = ["ID".to_owned(), "NAME".to_owned()];
        let rows = [["abcd1234".to_owned(), "-".to_owned()]];
        write_table(&header, &rows, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID        NAME\nabcd1234  -\n"
        );
    }
}
