//! The admin listener: `/metrics`, `/healthz`, `/readyz`. These need no token
//! (SPEC section 4); the token-protected `/admin/*` API comes later.

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
async fn readiness(state: &State) -> Response<Body> {
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
        return text(StatusCode::SERVICE_UNAVAILABLE, body, "text/plain");
    }
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => text(StatusCode::OK, "ready\n", "text/plain"),
        _ => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "store unreachable\n",
            "text/plain",
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
