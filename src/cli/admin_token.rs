//! `cordon admin-token create|list|revoke`: tokens for the admin API, in the
//! store named by the gateway file's `[store] url`.
//!
//! As with client keys, the raw token is printed once, by `create`, and only
//! the SHA-256 of its secret is stored; `list` shows no hash. `create` and
//! `revoke` append an audit entry (actor `cli`).

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use super::keys::{
    Revoked, audit_failure, expiry, format_ms, known_tenant, name_is_valid, with_store, write_table,
};
use crate::audit::{ACTOR_CLI, NewAuditEntry, Outcome};
use crate::auth::key::KeyId;
use crate::auth::token::{NewToken, Role};
use crate::clock;
use crate::store::{AdminTokenRow, StoreError};

pub struct CreateArgs {
    pub role: Role,
    /// Required for tenant-scoped roles, refused for the others.
    pub tenant: Option<String>,
    pub name: Option<String>,
    /// Lifetime in milliseconds (`--expires-in`).
    pub expires_in_ms: Option<i64>,
}

/// How many fresh ids to try when one is already taken (1 in 36^8).
const ID_ATTEMPTS: usize = 3;

pub fn create(
    config: &Path,
    args: &CreateArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitCode> {
    let Some(cfg) = super::load_or_report(config, err)? else {
        return Ok(ExitCode::FAILURE);
    };
    match (&args.tenant, args.role.is_tenant_scoped()) {
        (None, true) => {
            writeln!(
                err,
                "error: a {} token is bound to one tenant: pass --tenant",
                args.role
            )?;
            return Ok(ExitCode::FAILURE);
        }
        (Some(_), false) => {
            writeln!(
                err,
                "error: a {} token covers every tenant: --tenant is not allowed",
                args.role
            )?;
            return Ok(ExitCode::FAILURE);
        }
        (Some(t), true) if !known_tenant(&cfg, t, err)? => return Ok(ExitCode::FAILURE),
        _ => {}
    }
    if !name_is_valid(args.name.as_deref(), err)? {
        return Ok(ExitCode::FAILURE);
    }
    let now = clock::now_ms();
    let Some(expires_ms) = expiry(now, args.expires_in_ms, err)? else {
        return Ok(ExitCode::FAILURE);
    };

    let created = with_store(&cfg, async |store| {
        let mut last = StoreError::DuplicateToken;
        for _ in 0..ID_ATTEMPTS {
            let token = NewToken::generate();
            let row = AdminTokenRow {
                id: token.id.clone(),
                role: args.role,
                tenant: args.tenant.clone(),
                name: args.name.clone(),
                hash: token.hash,
                created_ms: now,
                expires_ms,
                revoked_ms: None,
                last_used_ms: None,
            };
            match store.insert_admin_token(&row).await {
                Ok(()) => {
                    let entry =
                        NewAuditEntry::new(now, ACTOR_CLI, "admin_token.create", Outcome::Success)
                            .tenant(args.tenant.as_deref())
                            .target(token.id.as_str())
                            .detail("role", args.role.as_str());
                    let audited = store.append_audit(&entry).await.map(drop);
                    return Ok((token, audited));
                }
                Err(e @ StoreError::DuplicateToken) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    })?;
    let (token, audited) = match created {
        Ok(t) => t,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    // The only place the raw token is ever written anywhere.
    writeln!(out, "id: {}", token.id)?;
    writeln!(out, "token: {}", token.raw.expose())?;
    let bound = match &args.tenant {
        Some(t) => format!(" for tenant {t}"),
        None => String::new(),
    };
    let expiry = expires_ms.map_or_else(String::new, |t| format!(", expires {}", format_ms(t)));
    writeln!(
        err,
        "created {} token {}{bound}{expiry}. Copy it now: it cannot be shown again.",
        args.role, token.id
    )?;
    audit_failure(audited, err)
}

pub fn list(config: &Path, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<ExitCode> {
    let Some(cfg) = super::load_or_report(config, err)? else {
        return Ok(ExitCode::FAILURE);
    };
    let tokens = match with_store(&cfg, async |store| store.list_admin_tokens().await)? {
        Ok(t) => t,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    if tokens.is_empty() {
        writeln!(out, "no admin tokens")?;
        return Ok(ExitCode::SUCCESS);
    }
    let header = [
        "ID",
        "ROLE",
        "TENANT",
        "NAME",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "REVOKED",
    ]
    .map(str::to_owned);
    // Deliberately no hash column.
    let rows: Vec<[String; 8]> = tokens
        .iter()
        .map(|t| {
            [
                t.id.to_string(),
                t.role.to_string(),
                t.tenant.clone().unwrap_or_else(|| "-".to_owned()),
                t.name.clone().unwrap_or_else(|| "-".to_owned()),
                format_ms(t.created_ms),
                t.last_used_ms.map_or_else(|| "never".to_owned(), format_ms),
                t.expires_ms.map_or_else(|| "never".to_owned(), format_ms),
                t.revoked_ms.map_or_else(|| "-".to_owned(), format_ms),
            ]
        })
        .collect();
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
            "error: `{id}` is not a token id (8 lower-case letters or digits, as in `admin-token list`)"
        )?;
        return Ok(ExitCode::FAILURE);
    };
    let now = clock::now_ms();
    let result = with_store(&cfg, async |store| {
        let (revoked, tenant) = if store.revoke_admin_token(&id, now).await? {
            let tenant = store.get_admin_token(&id).await?.and_then(|t| t.tenant);
            (Revoked::Now, tenant)
        } else {
            match store.get_admin_token(&id).await? {
                Some(t) => (Revoked::Already(t.revoked_ms.unwrap_or(now)), t.tenant),
                None => (Revoked::Unknown, None),
            }
        };
        let entry = revoked.audit_entry(now, "admin_token.revoke", tenant.as_deref(), &id);
        let audited = store.append_audit(&entry).await.map(drop);
        Ok((revoked, audited))
    })?;
    let audited = match result {
        Ok((Revoked::Now, audited)) => {
            writeln!(out, "revoked admin token {id}")?;
            audited
        }
        Ok((Revoked::Already(at), audited)) => {
            writeln!(
                out,
                "admin token {id} was already revoked at {}",
                format_ms(at)
            )?;
            audited
        }
        Ok((Revoked::Unknown, audited)) => {
            writeln!(err, "error: no admin token with id {id}")?;
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
