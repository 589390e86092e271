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
        _ => {
            // Ready: configuration loaded (always, once serving) and the store answers.
            match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
                Ok(Ok(())) => text(StatusCode::OK, "ready\n", "text/plain"),
                _ => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store unreachable\n",
                    "text/plain",
                ),
            }
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
