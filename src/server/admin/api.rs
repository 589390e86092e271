//! The token-protected admin API, `/admin/*` on `admin_listen` (SPEC section
//! 4; every endpoint with its request, response, role and errors in
//! `docs/admin-api.md`).
//!
//! Each request goes: authenticate the admin token (`401`) → route (`404`,
//! `405`) → read the body (at most [`MAX_BODY`], `413`) → [`Caller::may`]
//! (`404` for another tenant, `403` for the role) → validate (`400` naming
//! the field, `404` for an unknown tenant, key or provider) → act → audit.
//! Actions that change something, and explain, are appended to the audit
//! log, including refusals after authentication (outcome `denied` or
//! `failure`); a request that did nothing is never audited as a success.

use std::sync::Arc;

use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::access::{Action, Caller, Denied};
use super::json::{ApiError, Fields, printable, respond};
use crate::audit::{NewAuditEntry, Outcome};
use crate::auth::issue::{self, KeyRequest};
use crate::auth::key::KeyId;
use crate::auth::token::PresentedToken;
use crate::clock;
use crate::server::reload;
use crate::server::{Body, State};
use crate::store::{GroupBy, UsageQuery};
use crate::upstream::byok::{ByokError, Held};

/// The largest admin request body.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// Most audit entries one `GET /admin/audit` returns.
const MAX_AUDIT_LIMIT: u32 = 10_000;

/// One admin endpoint, with what its path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Explain,
    Keys { tenant: String },
    Key { id: String },
    Credentials { tenant: String },
    Credential { tenant: String, provider: String },
    Usage,
    Audit,
    Reload,
}

pub(crate) async fn handle(
    state: Arc<State>,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Body> {
    match serve(&state, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    state: &Arc<State>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Body>, ApiError> {
    let caller = authenticate(state, req.headers()).await?;
    let (parts, body) = req.into_parts();
    let route = Route::parse(parts.uri.path())?;
    let action = route.action(&parts.method)?;
    let deadline = state.snapshot.load().config.server.limits.body_read_timeout;
    let body = read_body(body, deadline).await?;
    let query = parts.uri.query().unwrap_or("");
    let run = Run {
        state,
        caller: &caller,
        action,
    };
    match route {
        Route::Explain => run.explain(&body).await,
        Route::Keys { tenant } if action == Action::ListKeys => run.list_keys(&tenant).await,
        Route::Keys { tenant } => run.create_key(&tenant, &body).await,
        Route::Key { id } => run.revoke_key(&id).await,
        Route::Credentials { tenant } => run.list_credentials(&tenant).await,
        Route::Credential { tenant, provider } => run.credential(&tenant, &provider, &body).await,
        Route::Usage => run.usage(query).await,
        Route::Audit => run.read_audit(query).await,
        Route::Reload => run.reload().await,
    }
}

// === routing ===

impl Route {
    fn parse(path: &str) -> Result<Route, ApiError> {
        let segments: Vec<&str> = path
            .strip_prefix("/admin/")
            .unwrap_or("")
            .split('/')
            .collect();
        let s = |x: &str| x.to_owned();
        Ok(match segments.as_slice() {
            ["explain"] => Route::Explain,
            ["usage"] => Route::Usage,
            ["audit"] => Route::Audit,
            ["reload"] => Route::Reload,
            ["keys", id] if !id.is_empty() => Route::Key { id: s(id) },
            ["tenants", t, "keys"] if !t.is_empty() => Route::Keys { tenant: s(t) },
            ["tenants", t, "credentials"] if !t.is_empty() => Route::Credentials { tenant: s(t) },
            ["tenants", t, "credentials", p] if !t.is_empty() && !p.is_empty() => {
                Route::Credential {
                    tenant: s(t),
                    provider: s(p),
                }
            }
            _ => {
                return Err(ApiError::not_found(
                    "no such admin endpoint (see docs/admin-api.md)",
                    None,
                ));
            }
        })
    }

    /// What `method` on this route does; `405` when it does nothing here.
    fn action(&self, method: &Method) -> Result<Action, ApiError> {
        let action = match (self, method.as_str()) {
            (Route::Explain, "POST") => Action::Explain,
            (Route::Keys { .. }, "GET") => Action::ListKeys,
            (Route::Keys { .. }, "POST") => Action::CreateKey,
            (Route::Key { .. }, "DELETE") => Action::RevokeKey,
            (Route::Credentials { .. }, "GET") => Action::ListCredentials,
            (Route::Credential { .. }, "PUT") => Action::SetCredential,
            (Route::Credential { .. }, "DELETE") => Action::DeleteCredential,
            (Route::Usage, "GET") => Action::ReadUsage,
            (Route::Audit, "GET") => Action::ReadAudit,
            (Route::Reload, "POST") => Action::Reload,
            _ => {
                return Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{method} is not allowed on this endpoint"),
                ));
            }
        };
        Ok(action)
    }
}

// === authentication and the body ===

async fn authenticate(state: &State, headers: &http::HeaderMap) -> Result<Caller, ApiError> {
    let raw = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(ApiError::unauthorized)?;
    let (id, hash) = PresentedToken::split(raw).map_err(|_| ApiError::unauthorized())?;
    let id = KeyId::parse(id).map_err(|_| ApiError::unauthorized())?;
    let row = state
        .store
        .get_admin_token(&id)
        .await
        .map_err(|e| ApiError::store(&e))?
        .ok_or_else(ApiError::unauthorized)?;
    let now = clock::now_ms();
    if !row.hash.ct_eq(&hash)
        || row.revoked_ms.is_some()
        || row.expires_ms.is_some_and(|e| e <= now)
    {
        return Err(ApiError::unauthorized());
    }
    if let Err(e) = state.store.touch_admin_token(&row.id, now).await {
        tracing::debug!(error = %e, "could not record an admin token's last use");
    }
    Ok(Caller {
        token_id: row.id.to_string(),
        role: row.role,
        tenant: row.tenant,
    })
}

/// The body, at most [`MAX_BODY`] bytes and within `deadline` (the client
/// listener's `body_read_timeout_ms`): a client that stalls mid-body does not
/// hold a task and a connection forever.
async fn read_body(
    body: Incoming,
    deadline: std::time::Duration,
) -> Result<bytes::Bytes, ApiError> {
    let Ok(read) = tokio::time::timeout(deadline, Limited::new(body, MAX_BODY).collect()).await
    else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} ms",
                deadline.as_millis()
            ),
        ));
    };
    match read {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("admin request bodies are limited to {MAX_BODY} bytes"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request body could not be read",
        )),
    }
}

/// `?a=b&c=d`, each name at most once, only `known` names.
fn query_params(
    query: &str,
    known: &[&'static str],
) -> Result<Vec<(&'static str, String)>, ApiError> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let Some(&k) = known.iter().find(|k| **k == name) else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!(
                    "unknown query parameter `{}`; known: {}",
                    printable(&name),
                    known.join(", ")
                ),
            ));
        };
        if out.iter().any(|(n, _)| *n == k) {
            return Err(ApiError::field(k, format!("`{k}` is given twice")));
        }
        out.push((k, value.into_owned()));
    }
    Ok(out)
}

fn param<'a>(params: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

fn instant(
    params: &[(&'static str, String)],
    name: &'static str,
    now: i64,
) -> Result<Option<i64>, ApiError> {
    param(params, name)
        .map(|v| clock::parse_instant(v, now).map_err(|e| ApiError::field(name, e)))
        .transpose()
}

// === the endpoints ===

/// One authenticated request.
struct Run<'a> {
    state: &'a Arc<State>,
    caller: &'a Caller,
    action: Action,
}

impl Run<'_> {
    /// [`Caller::may`], auditing a refusal of an audited action.
    async fn may(&self, tenant: Option<&str>, target: Option<&str>) -> Result<(), ApiError> {
        match self.caller.may(self.action, tenant) {
            Ok(()) => Ok(()),
            Err(denied) => {
                // Another tenant's resource is audited without naming it, so
                // the audit log of that tenant does not learn of the probe.
                let (tenant, target) = match denied {
                    Denied::NotFound => (self.caller.tenant.as_deref(), None),
                    Denied::Forbidden => (tenant, target),
                };
                self.audit(tenant, target, Outcome::Denied, None).await;
                Err(match denied {
                    Denied::NotFound => not_found_tenant(tenant.unwrap_or_default()),
                    Denied::Forbidden => ApiError::forbidden(),
                })
            }
        }
    }

    /// Appends this action to the audit log (for the actions that are
    /// audited). A store failure here is logged, not returned: the action
    /// has already happened.
    async fn audit(
        &self,
        tenant: Option<&str>,
        target: Option<&str>,
        outcome: Outcome,
        detail: Option<Value>,
    ) {
        let Some(action) = self.action.audit_name() else {
            return;
        };
        let entry = NewAuditEntry {
            time_ms: clock::now_ms(),
            actor: self.caller.actor(),
            action: action.to_owned(),
            tenant: tenant.map(str::to_owned),
            target: target.map(str::to_owned),
            outcome,
            detail: match detail {
                Some(Value::Object(map)) => Some(map),
                _ => None,
            },
        };
        if let Err(e) = self.state.store.append_audit(&entry).await {
            tracing::error!(error = %e, action, "could not append to the audit log");
        }
    }

    /// `404` unless the running configuration has a policy for `tenant`.
    fn known_tenant(&self, tenant: &str) -> Result<(), ApiError> {
        if self
            .state
            .snapshot
            .load()
            .config
            .table
            .tenant(tenant)
            .is_some()
        {
            Ok(())
        } else {
            Err(not_found_tenant(tenant))
        }
    }

    async fn explain(&self, body: &[u8]) -> Result<hyper::Response<Body>, ApiError> {
        let f = Fields::parse(body, &["tenant", "model", "project", "at"])?;
        let tenant = f.string("tenant")?;
        self.may(Some(tenant), None).await?;
        let model = f.string("model")?;
        let project = f.opt_string("project")?;
        let day = match f.opt_string("at")? {
            None => clock::today(),
            Some(at) => {
                let format = time::macros::format_description!("[year]-[month]-[day]");
                time::Date::parse(at, &format)
                    .map_err(|_| ApiError::field("at", "`at` must be a day, YYYY-MM-DD"))?
            }
        };
        let snapshot = self.state.snapshot.load();
        // The same verdicts as `cordon explain`: a provider this replica
        // cannot send anything to fails the rule `credential`.
        let ex = snapshot
            .config
            .table
            .explain_with(tenant, project, model, day, None, &|id| match self
                .state
                .byok
                .get(tenant, id.as_str())
            {
                Some(Held::Key(_)) => None,
                Some(Held::Broken) => Some(
                    "the tenant's own credential for it cannot be opened on this gateway"
                        .to_owned(),
                ),
                None => snapshot
                    .upstreams
                    .unavailable()
                    .find(|(p, _)| *p == id)
                    .map(|(_, why)| why.to_owned()),
            })
            .map_err(|e| match e {
                crate::policy::ExplainError::UnknownTenant(t) => not_found_tenant(&t),
                e @ crate::policy::ExplainError::UnknownProject { .. } => {
                    ApiError::not_found(e.to_string(), Some("project"))
                }
            })?;
        // A model no provider serves came from the request: not repeated.
        let target = snapshot
            .config
            .table
            .served_model(model)
            .map_or("other", |m| &**m);
        self.audit(Some(tenant), Some(target), Outcome::Success, None)
            .await;
        Ok(respond(StatusCode::OK, &ex.to_json()))
    }

    async fn list_keys(&self, tenant: &str) -> Result<hyper::Response<Body>, ApiError> {
        self.may(Some(tenant), None).await?;
        self.known_tenant(tenant)?;
        let keys = self
            .state
            .store
            .list_keys(tenant)
            .await
            .map_err(|e| ApiError::store(&e))?;
        let keys: Vec<Value> = keys.iter().map(key_json).collect();
        Ok(respond(
            StatusCode::OK,
            &json!({ "tenant": tenant, "keys": keys }),
        ))
    }

    async fn create_key(
        &self,
        tenant: &str,
        body: &[u8],
    ) -> Result<hyper::Response<Body>, ApiError> {
        self.may(Some(tenant), None).await?;
        self.known_tenant(tenant)?;
        let f = Fields::parse(body, &["name", "project", "expires_in", "models", "rpm"])?;
        let expires_in_ms = f
            .opt_string("expires_in")?
            .map(|d| clock::parse_duration_ms(d).map_err(|e| ApiError::field("expires_in", e)))
            .transpose()?;
        let rpm = f
            .opt_u64("rpm")?
            .map(|r| u32::try_from(r).map_err(|_| ApiError::field("rpm", "`rpm` is too large")))
            .transpose()?;
        let req = KeyRequest {
            tenant: tenant.to_owned(),
            name: f.opt_string("name")?.map(str::to_owned),
            project: f.opt_string("project")?.map(str::to_owned),
            expires_in_ms,
            models: f.opt_strings("models")?,
            rpm,
        };
        let table = self.state.snapshot.load().config.table.clone();
        let (key, row) = match issue::issue(&self.state.store, &table, &req, clock::now_ms()).await
        {
            Ok(k) => k,
            Err(issue::IssueError::Store(e)) => {
                self.audit(Some(tenant), None, Outcome::Failure, None).await;
                return Err(ApiError::store(&e));
            }
            Err(e) => {
                return Err(match e.field() {
                    Some("project") => ApiError::not_found(e.to_string(), Some("project")),
                    Some(field) => ApiError::field(field, e.to_string()),
                    None => {
                        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
                    }
                });
            }
        };
        // Usable on this replica at once; the others find it on first use.
        self.state
            .keys
            .apply(vec![crate::server::key_state(row.clone())]);
        self.audit(
            Some(tenant),
            Some(row.id.as_str()),
            Outcome::Success,
            Some(
                json!({ "project": row.project, "models": row.scope.models, "rpm": row.scope.rpm,
                         "expires": row.expires_ms.map(clock::rfc3339) }),
            ),
        )
        .await;
        let mut out = key_json(&row);
        // The only place the raw key is ever sent.
        out["key"] = Value::from(key.raw.expose().as_str());
        Ok(respond(StatusCode::CREATED, &out))
    }

    async fn revoke_key(&self, id: &str) -> Result<hyper::Response<Body>, ApiError> {
        let not_found = || ApiError::not_found(format!("no key `{}`", printable(id)), Some("id"));
        let id = KeyId::parse(id).map_err(|_| not_found())?;
        let row = self
            .state
            .store
            .get_key(&id)
            .await
            .map_err(|e| ApiError::store(&e))?
            .ok_or_else(not_found)?;
        match self.caller.may(self.action, Some(&row.tenant)) {
            Ok(()) => {}
            Err(Denied::NotFound) => return Err(not_found()),
            Err(Denied::Forbidden) => {
                self.audit(Some(&row.tenant), Some(id.as_str()), Outcome::Denied, None)
                    .await;
                return Err(ApiError::forbidden());
            }
        }
        let now = clock::now_ms();
        let revoked_now = match self.state.store.revoke_key(&id, now).await {
            Ok(r) => r,
            Err(e) => {
                self.audit(Some(&row.tenant), Some(id.as_str()), Outcome::Failure, None)
                    .await;
                return Err(ApiError::store(&e));
            }
        };
        let revoked_ms = if revoked_now {
            now
        } else {
            row.revoked_ms.unwrap_or(now)
        };
        let mut revoked = row.clone();
        revoked.revoked_ms = Some(revoked_ms);
        self.state
            .keys
            .apply(vec![crate::server::key_state(revoked)]);
        if revoked_now {
            self.audit(Some(&row.tenant), Some(id.as_str()), Outcome::Success, None)
                .await;
        }
        Ok(respond(
            StatusCode::OK,
            &json!({ "id": id.as_str(), "revoked": clock::rfc3339(revoked_ms),
                     "already_revoked": !revoked_now }),
        ))
    }

    async fn list_credentials(&self, tenant: &str) -> Result<hyper::Response<Body>, ApiError> {
        self.may(Some(tenant), None).await?;
        self.known_tenant(tenant)?;
        let rows = self
            .state
            .store
            .all_credentials()
            .await
            .map_err(|e| ApiError::store(&e))?;
        let list: Vec<Value> = rows
            .iter()
            .filter(|r| r.tenant == tenant)
            .map(|r| json!({ "provider": r.provider, "updated": clock::rfc3339(r.updated_ms) }))
            .collect();
        Ok(respond(
            StatusCode::OK,
            &json!({ "tenant": tenant, "credentials": list }),
        ))
    }

    async fn credential(
        &self,
        tenant: &str,
        provider: &str,
        body: &[u8],
    ) -> Result<hyper::Response<Body>, ApiError> {
        self.may(Some(tenant), Some(provider)).await?;
        self.known_tenant(tenant)?;
        if self
            .state
            .snapshot
            .load()
            .config
            .table
            .provider(provider)
            .is_none()
        {
            return Err(ApiError::not_found(
                format!("no provider `{}` in the configuration", printable(provider)),
                Some("provider"),
            ));
        }
        let result = if self.action == Action::SetCredential {
            let f = Fields::parse(body, &["key"])?;
            let key = f.string("key")?;
            if !crate::upstream::byok::sendable(key) {
                return Err(ApiError::field(
                    "key",
                    "`key` must be printable ASCII without surrounding whitespace \
                     (a provider credential is sent in a header)",
                ));
            }
            self.state
                .byok
                .put(&self.state.store, tenant, provider, key, clock::now_ms())
                .await
                .map(|()| true)
        } else {
            self.state
                .byok
                .delete(&self.state.store, tenant, provider, clock::now_ms())
                .await
        };
        let stored = self.action == Action::SetCredential;
        match result {
            Ok(true) => {
                self.audit(Some(tenant), Some(provider), Outcome::Success, None)
                    .await;
                Ok(respond(
                    StatusCode::OK,
                    &json!({ "tenant": tenant, "provider": provider, "stored": stored }),
                ))
            }
            // Deleting what was never stored changed nothing: not audited.
            Ok(false) => Err(ApiError::not_found(
                format!("tenant `{tenant}` has no credential for `{provider}`"),
                Some("provider"),
            )),
            Err(e) => {
                if !matches!(e, ByokError::NotConfigured | ByokError::Credential(_)) {
                    self.audit(Some(tenant), Some(provider), Outcome::Failure, None)
                        .await;
                }
                Err(e.into())
            }
        }
    }

    async fn usage(&self, query: &str) -> Result<hyper::Response<Body>, ApiError> {
        let params = query_params(query, &["tenant", "since", "until", "group_by"])?;
        let asked = param(&params, "tenant");
        self.may(asked, None).await?;
        if let Some(t) = asked {
            self.known_tenant(t)?;
        }
        let now = clock::now_ms();
        let group_by = match param(&params, "group_by") {
            None => GroupBy::None,
            Some(g) => GroupBy::from_name(g).ok_or_else(|| {
                ApiError::field(
                    "group_by",
                    "`group_by` must be one of provider, model, key, project, day",
                )
            })?,
        };
        let q = UsageQuery {
            tenant: self.caller.tenant_filter(asked).map(str::to_owned),
            since_ms: instant(&params, "since", now)?.unwrap_or(i64::MIN),
            until_ms: instant(&params, "until", now)?.unwrap_or(i64::MAX),
            group_by,
        };
        let totals = self
            .state
            .store
            .usage_totals(&q)
            .await
            .map_err(|e| ApiError::store(&e))?;
        let groups: Vec<Value> = totals
            .iter()
            .map(|t| json!({ "group": t.group, "requests": t.requests, "refused": t.refused,
                             "prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens }))
            .collect();
        Ok(respond(
            StatusCode::OK,
            &json!({
                "tenant": q.tenant, "group_by": group_by.name(),
                "since": (q.since_ms != i64::MIN).then(|| clock::rfc3339(q.since_ms)),
                "until": (q.until_ms != i64::MAX).then(|| clock::rfc3339(q.until_ms)),
                "groups": groups,
            }),
        ))
    }

    async fn read_audit(&self, query: &str) -> Result<hyper::Response<Body>, ApiError> {
        let params = query_params(query, &["tenant", "since", "limit"])?;
        let asked = param(&params, "tenant");
        self.may(asked, None).await?;
        let now = clock::now_ms();
        let since = instant(&params, "since", now)?.unwrap_or(i64::MIN);
        let limit = match param(&params, "limit") {
            None => 1_000,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=MAX_AUDIT_LIMIT).contains(l))
                .ok_or_else(|| {
                    ApiError::field("limit", format!("`limit` must be 1 to {MAX_AUDIT_LIMIT}"))
                })?,
        };
        let tenant = self.caller.tenant_filter(asked);
        let entries = self
            .state
            .store
            .audit_entries(since, tenant, limit)
            .await
            .map_err(|e| ApiError::store(&e))?;
        let list: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "seq": e.seq, "time": clock::rfc3339(e.time_ms), "actor": e.actor,
                    "action": e.action, "tenant": e.tenant, "target": e.target,
                    "outcome": e.outcome.as_str(),
                    "detail": e.detail.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
                    "prev_hash": e.prev_hash.to_hex(), "hash": e.hash.to_hex(),
                })
            })
            .collect();
        Ok(respond(StatusCode::OK, &json!({ "entries": list })))
    }

    async fn reload(&self) -> Result<hyper::Response<Body>, ApiError> {
        self.may(None, None).await?;
        let state = self.state.clone();
        let path = state.config_path.clone();
        let result = tokio::task::spawn_blocking(move || reload::reload(&state, &path))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the reload did not finish",
                )
            })?;
        reload::audit(self.state, &self.caller.actor(), &result).await;
        match result {
            Ok(done) => Ok(respond(
                StatusCode::OK,
                &json!({ "reloaded": true, "files": reload::files_json(&done) }),
            )),
            Err(errors) => {
                let list: Vec<Value> = errors
                    .iter()
                    .map(|e| {
                        json!({ "file": e.file.display().to_string(), "line": e.line,
                                "key": e.key, "message": e.message })
                    })
                    .collect();
                Ok(respond(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &json!({ "error": {
                        "code": "invalid_configuration",
                        "message": format!(
                            "the configuration was rejected ({} error{}); the previous one stays in force",
                            errors.len(),
                            if errors.len() == 1 { "" } else { "s" }
                        ),
                        "errors": list,
                    }}),
                ))
            }
        }
    }
}

fn not_found_tenant(tenant: &str) -> ApiError {
    ApiError::not_found(format!("no tenant `{}`", printable(tenant)), Some("tenant"))
}

fn key_json(k: &crate::store::KeyRow) -> Value {
    json!({
        "id": k.id.as_str(),
        "tenant": k.tenant,
        "name": k.name,
        "project": k.project,
        "created": clock::rfc3339(k.created_ms),
        "last_used": k.last_used_ms.map(clock::rfc3339),
        "expires": k.expires_ms.map(clock::rfc3339),
        "revoked": k.revoked_ms.map(clock::rfc3339),
        "models": k.scope.models,
        "rpm": k.scope.rpm,
    })
}

impl From<crate::upstream::byok::ByokError> for ApiError {
    fn from(e: crate::upstream::byok::ByokError) -> Self {
        use crate::upstream::byok::ByokError;
        match e {
            ByokError::NotConfigured => {
                ApiError::new(StatusCode::CONFLICT, "byok_not_configured", e.to_string())
            }
            ByokError::Credential(c) => ApiError::field("key", c.to_string()),
            ByokError::Store(s) => ApiError::store(&s),
        }
    }
}

/// What the `admin_request` fuzz target checks (see `crate::fuzz_logic`):
/// the path, the query and the body of an admin request, each from the
/// fuzzer's bytes (lines 1 and 2, then the rest).
///
/// - Routing never panics; what it names (tenant, provider, key id) is one
///   whole segment of the path.
/// - A query is refused with a 400, or every parameter is a known one,
///   given once.
/// - A body is refused with a 400 naming no field, or each field accessor
///   answers a value or a 400 naming exactly that field.
/// - No message holds a control character (they are written into logs and
///   JSON a client may print).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    let clean = |e: &ApiError| {
        assert!(!e.message.chars().any(char::is_control), "{e:?}");
    };

    let path = format!("/admin/{path}");
    match Route::parse(&path) {
        Ok(route) => {
            let segments: Vec<&str> = path.split('/').collect();
            let named = match &route {
                Route::Keys { tenant } | Route::Credentials { tenant } => vec![tenant],
                Route::Key { id } => vec![id],
                Route::Credential { tenant, provider } => vec![tenant, provider],
                _ => vec![],
            };
            for n in named {
                assert!(segments.contains(&n.as_str()), "{n} from {path}");
            }
            for m in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
                if let Ok(method) = Method::from_bytes(m.as_bytes())
                    && let Err(e) = route.action(&method)
                {
                    assert_eq!(e.status, StatusCode::METHOD_NOT_ALLOWED);
                    clean(&e);
                }
            }
        }
        Err(e) => {
            assert_eq!(e.status, StatusCode::NOT_FOUND);
            clean(&e);
        }
    }

    const KNOWN: [&str; 4] = ["tenant", "since", "until", "group_by"];
    match query_params(&query, &KNOWN) {
        Ok(params) => {
            for (i, (name, value)) in params.iter().enumerate() {
                assert!(KNOWN.contains(name));
                assert!(params[..i].iter().all(|(n, _)| n != name), "{name} twice");
                if *name == "since" || *name == "until" {
                    let _ = clock::parse_instant(value, 0);
                    let _ = instant(&params, name, i64::MAX);
                    let _ = instant(&params, name, i64::MIN);
                }
            }
        }
        Err(e) => {
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            clean(&e);
        }
    }

    const FIELDS: [&str; 5] = ["name", "project", "expires_in", "models", "rpm"];
    match Fields::parse(body, &FIELDS) {
        Ok(f) => {
            for name in FIELDS {
                let results = [
                    f.string(name).err(),
                    f.opt_string(name).err(),
                    f.opt_u64(name).err(),
                    f.opt_strings(name).err(),
                ];
                for e in results.into_iter().flatten() {
                    assert_eq!((e.status, e.field), (StatusCode::BAD_REQUEST, Some(name)));
                    clean(&e);
                }
            }
        }
        Err(e) => {
            assert_eq!((e.status, e.field), (StatusCode::BAD_REQUEST, None));
            clean(&e);
        }
    }
}
