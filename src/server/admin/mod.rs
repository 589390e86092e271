//! The admin listener: `/metrics`, `/healthz`, `/readyz`, which need no token
//! (SPEC section 4), and the token-protected `/admin/*` API ([`api`]).

mod access;
mod api;
mod json;

#[cfg(feature = "fuzzing")]
pub(crate) use api::fuzz;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use hyper::body::Incoming;

use super::exchange::full;
use super::{Body, State};

/// Paths served without an admin token.
const UNAUTHENTICATED: &[&str] = &["/metrics", "/healthz", "/readyz"];

pub async fn handle(state: Arc<State>, req: hyper::Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if path.starts_with("/admin/") {
        return api::handle(state, req).await;
    }
    if req.method() != Method::GET || !UNAUTHENTICATED.contains(&path) {
        return text(StatusCode::NOT_FOUND, "not found\n", "text/plain");
    }
    match path {
        "/metrics" => text(
            StatusCode::OK,
            state.metrics.encode(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/healthz" => text(StatusCode::OK, "ok\n", "text/plain"),
        _ => readiness(&state).await,
    }
}

/// Ready: configuration loaded (always, once serving), usage records are
/// being stored (not spooled), and the store answers. A store that answers
/// reads but refuses writes (a lock, a full disk, a read-only file) only
/// shows in the usage writer, hence both checks.
///
/// Providers without a credential are named in the body but do not make the
/// gateway unready: one missing secret must not take every replica out of
/// rotation, and the other providers still serve.
async fn readiness(state: &State) -> Response<Body> {
    let (status, mut body) = store_readiness(state).await;
    let without: Vec<String> = state
        .snapshot
        .load()
        .upstreams
        .unavailable()
        .map(|(id, _)| id.to_string())
        .collect();
    if !without.is_empty() {
        body.push_str(&format!(
            "providers without a credential: {}\n",
            without.join(", ")
        ));
    }
    text(status, body, "text/plain")
}

/// Readiness as far as the store and the usage writer go.
async fn store_readiness(state: &State) -> (StatusCode, String) {
    if let Some(s) = state.usage.spooling() {
        let since = time::OffsetDateTime::from_unix_timestamp(s.since_ms.div_euclid(1000))
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let body = format!(
            "degraded: usage spooling (store not writable: {}); since {since}; usage records waiting: {}\n",
            s.reason,
            state.metrics.usage_spool_depth.get(),
        );
        return (StatusCode::SERVICE_UNAVAILABLE, body);
    }
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".to_owned()),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "store unreachable\n".to_owned(),
        ),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
