//! Issuing a client key, the same way from the CLI and the admin API: the
//! request is checked against the configuration, a fresh key is generated
//! and only its hash is stored. The raw key is returned once, to be shown.

use crate::auth::key::NewKey;
use crate::policy::Table;
use crate::store::{KeyRow, KeyScope, Store, StoreError};

/// How many fresh ids to try when one is already taken (1 in 36^8).
const ID_ATTEMPTS: usize = 3;
pub(crate) const MAX_NAME_CHARS: usize = 200;
/// Most model globs on one key.
const MAX_MODEL_GLOBS: usize = 64;

/// What a new key is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyRequest {
    pub tenant: String,
    pub name: Option<String>,
    pub project: Option<String>,
    /// Lifetime in milliseconds.
    pub expires_in_ms: Option<i64>,
    /// Globs over public model names; `None`: whatever the policy allows.
    pub models: Option<Vec<String>>,
    /// Requests per minute for this key alone.
    pub rpm: Option<u32>,
}

/// Why a key was not issued. Each names the request field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IssueError {
    #[error("unknown tenant `{0}`: no policy file defines it")]
    UnknownTenant(String),
    #[error("tenant `{tenant}` has no project `{project}` (known: {known})")]
    UnknownProject {
        tenant: String,
        project: String,
        known: String,
    },
    #[error("the name must be at most {MAX_NAME_CHARS} characters, without control characters")]
    Name,
    #[error("the expiry is too far in the future")]
    Expiry,
    #[error("{0}")]
    Models(String),
    #[error("rpm must be at least 1")]
    Rpm,
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl IssueError {
    /// The request field the error is about (`None`: the store failed).
    pub(crate) fn field(&self) -> Option<&'static str> {
        match self {
            IssueError::UnknownTenant(_) => Some("tenant"),
            IssueError::UnknownProject { .. } => Some("project"),
            IssueError::Name => Some("name"),
            IssueError::Expiry => Some("expires_in"),
            IssueError::Models(_) => Some("models"),
            IssueError::Rpm => Some("rpm"),
            IssueError::Store(_) => None,
        }
    }
}

/// Checks `req` against the configuration, without touching the store.
pub(crate) fn check(table: &Table, req: &KeyRequest) -> Result<(), IssueError> {
    let policy = table
        .tenant(&req.tenant)
        .ok_or_else(|| IssueError::UnknownTenant(req.tenant.clone()))?;
    if let Some(project) = &req.project
        && !policy.projects.contains_key(project)
    {
        let known: Vec<&str> = policy.projects.keys().map(String::as_str).collect();
        return Err(IssueError::UnknownProject {
            tenant: req.tenant.clone(),
            project: project.clone(),
            known: if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            },
        });
    }
    if let Some(name) = &req.name
        && (name.chars().any(char::is_control) || name.chars().count() > MAX_NAME_CHARS)
    {
        return Err(IssueError::Name);
    }
    if let Some(models) = &req.models {
        if models.is_empty() || models.len() > MAX_MODEL_GLOBS {
            return Err(IssueError::Models(format!(
                "models must list 1 to {MAX_MODEL_GLOBS} globs"
            )));
        }
        for m in models {
            if m.chars().any(char::is_control) || m.len() > 200 {
                return Err(IssueError::Models(
                    "a model glob must be at most 200 characters, without control characters"
                        .to_owned(),
                ));
            }
            glob::Pattern::new(m)
                .map_err(|e| IssueError::Models(format!("`{m}` is not a valid glob: {}", e.msg)))?;
        }
    }
    if req.rpm == Some(0) {
        return Err(IssueError::Rpm);
    }
    Ok(())
}

/// Checks `req`, then stores a new key for it; the raw key is in the result
/// and nowhere else.
pub(crate) async fn issue(
    store: &Store,
    table: &Table,
    req: &KeyRequest,
    now_ms: i64,
) -> Result<(NewKey, KeyRow), IssueError> {
    check(table, req)?;
    let expires_ms = match req.expires_in_ms.map(|d| now_ms.checked_add(d)) {
        None => None,
        Some(Some(t)) => Some(t),
        Some(None) => return Err(IssueError::Expiry),
    };
    let mut last = StoreError::DuplicateKey;
    for _ in 0..ID_ATTEMPTS {
        let key = NewKey::generate();
        let row = KeyRow {
            id: key.id.clone(),
            tenant: req.tenant.clone(),
            project: req.project.clone(),
            name: req.name.clone(),
            hash: key.hash,
            created_ms: now_ms,
            expires_ms,
            revoked_ms: None,
            last_used_ms: None,
            scope: KeyScope {
                models: req.models.clone(),
                rpm: req.rpm,
            },
        };
        match store.insert_key(&row).await {
            Ok(()) => return Ok((key, row)),
            Err(e @ StoreError::DuplicateKey) => last = e,
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.into())
}
