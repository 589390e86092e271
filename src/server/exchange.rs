//! THE request path, top to bottom (`proxy`):
//!
//! authenticate → admit (rate limits) → read the body → parse the routing
//! fields and the request's own narrowing layer → decide (policy) → forward,
//! one attempt per eligible provider, failing over only before the first byte
//! and only when the failure allows it → respond, or relay a stream.
//!
//! Each stage returns what the next needs, or a `GatewayError`. The
//! `Exchange` is a guard: its `Drop` alone records the metrics, the log line
//! and the usage record, exactly once, however the exchange ends (answered,
//! refused, the client gone, a panic, shutdown). Nothing here logs or stores
//! a request or response body.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::bridge::{self, Bridge};
use super::{Body, Snapshot, State};
use crate::auth::{AuthError, Principal};
use crate::clock;
use crate::config::Api;
use crate::config::ServerLimits;
use crate::error::{ClientApi, ErrorKind, GatewayError};
use crate::metrics::Limit;
use crate::policy::{Decision, Layer, ProviderId, parse_require};
use crate::protocol::translate::{TranslateError, Wire};
use crate::protocol::{self, openai};
use crate::store::StoreError;
use crate::stream::body::{Ended, Failure, RelayBody, StreamEnd};
use crate::stream::sse::{Relay, Tokens};
use crate::upstream::byok::Held;
use crate::upstream::{AttemptError, Endpoint, Upstream, UpstreamResponse};
use crate::usage::{UsageRecord, shared_word};

/// The per-request context, filled in stage by stage; recorded when dropped.
struct Exchange {
    /// What the exchange's record is made of, filled in stage by stage.
    rec: Finished,
    /// Whether the request body was read whole.
    body_read: bool,
    /// The client's connection ended while its body was being read.
    client_gone: bool,
    /// Whether the latest attempt's request got onto a connection (set by
    /// the upstream pool): a client gone before that leaves a provider
    /// that was chosen but never sent anything, and it is not recorded as
    /// tried.
    attempt_connected: AtomicBool,
    /// How the exchange ended, as far as it is known. Until a stage says
    /// otherwise, the client went away (the request's future was dropped).
    end: End,
}

/// How an exchange ended: the one word its usage record and log line carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered from a provider.
    Ok,
    /// Refused by cordon before any provider was contacted.
    Refused,
    /// Every attempt failed, the provider's answer was an error, or its
    /// stream broke.
    UpstreamError,
    /// The client went away before the answer was complete.
    Cancelled,
    /// Still running when the shutdown drain deadline passed.
    CutByShutdown,
}

/// What the client finally received, with what the record needs to know.
struct End {
    status: StatusCode,
    tokens: Tokens,
    first_content_at: Option<Instant>,
    outcome: Outcome,
}

pub async fn handle(state: Arc<State>, req: hyper::Request<Incoming>) -> Response<Body> {
    let request_id = request_id(req.headers());
    let path = req.uri().path();
    let endpoint = match path.trim_end_matches('/') {
        "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
        "/v1/embeddings" => Some(Endpoint::Embeddings),
        "/v1/messages" => Some(Endpoint::Messages),
        "/v1/models" if req.method() == Method::GET => {
            return models(&state, req.headers(), &request_id).await;
        }
        _ => None,
    };
    let Some(endpoint) = endpoint else {
        let e = if path.starts_with("/v1/") {
            GatewayError::new(
                ErrorKind::NotFound,
                format!("no route for {} {path}", req.method()),
            )
        } else {
            GatewayError::new(ErrorKind::NotFound, "not found")
        };
        let mut resp = error_response(&e, ClientApi::OpenAi, &request_id, None, None);
        close_if_unread(&mut resp, &req);
        return resp;
    };
    let client_api = match endpoint {
        Endpoint::Messages => ClientApi::Anthropic,
        Endpoint::ChatCompletions | Endpoint::Embeddings => ClientApi::OpenAi,
    };
    if req.method() != Method::POST {
        let e = GatewayError::new(ErrorKind::MethodNotAllowed, "use POST");
        let mut resp = error_response(&e, client_api, &request_id, None, None);
        close_if_unread(&mut resp, &req);
        return resp;
    }
    // From here on the exchange is recorded exactly once, by its `Drop`,
    // however it ends: answered, refused, the client gone (this future
    // dropped), a panic, or shutdown.
    let mut ex = Exchange::new(state, request_id, endpoint, client_api);
    let unread = Unread::of(&req);
    // Boxed: hyper's server keeps the request's future allocated for the
    // whole life of the client connection (it reuses the allocation for the
    // next request), so every state of `proxy` inlined here would cost each
    // connection, streaming or idle, its size: about 4 KB. Boxed, it is
    // freed once the response head is ready.
    match Box::pin(proxy(&mut ex, endpoint, req)).await {
        Ok(Reply::Whole(resp)) => resp,
        Ok(Reply::Stream(s)) => s.into_response(ex),
        Err(e) => {
            let mut resp = error_response(
                &e,
                ex.rec.client_api,
                &ex.rec.request_id,
                ex.rec.provider.as_ref().map(ProviderId::as_str),
                ex.rec.policy_version.as_deref(),
            );
            if !ex.body_read && unread == Unread::Http1Body {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ex.end = if ex.client_gone {
                // Nobody will read this answer.
                End::plain(CLIENT_CLOSED, Outcome::Cancelled)
            } else if ex.rec.tried.is_empty() {
                End::plain(e.kind.status(), Outcome::Refused)
            } else {
                End::plain(e.kind.status(), Outcome::UpstreamError)
            };
            ex.rec.error = Some(e.kind);
            resp
        }
    }
}

/// Whether refusing a request before its body is read leaves bytes on an
/// HTTP/1.1 connection: hyper then closes it after the answer (it cannot
/// tell where the next request starts), and says so with `connection:
/// close`, or a client reusing it would see its next request dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unread {
    Http1Body,
    Nothing,
}

impl Unread {
    fn of<B: http_body::Body>(req: &hyper::Request<B>) -> Self {
        if req.version() < http::Version::HTTP_2 && !req.body().is_end_stream() {
            Unread::Http1Body
        } else {
            Unread::Nothing
        }
    }
}

fn close_if_unread<B: http_body::Body>(resp: &mut Response<Body>, req: &hyper::Request<B>) {
    if Unread::of(req) == Unread::Http1Body {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// What `proxy` produced for the client.
enum Reply {
    /// A whole answer; the exchange's `end` is already set.
    Whole(Response<Body>),
    /// A stream, still to be wired to the exchange, which it then owns.
    Stream(StreamReply),
}

/// The request's path, stage by stage; each stage returns what the next
/// needs, and an error before a response becomes the client's error.
async fn proxy(
    ex: &mut Exchange,
    endpoint: Endpoint,
    req: hyper::Request<Incoming>,
) -> Result<Reply, GatewayError> {
    let snap = ex.rec.state.snapshot.load_full();
    let principal = authenticate(ex, req.headers()).await?;
    admit(ex, &snap, &principal)?;
    let require = require_header(req.headers())?;
    let body = read(ex, &snap, req.into_body()).await?;
    let request = parse(ex, &snap, endpoint, &body, require)?;
    let candidates = decide(ex, &snap, &principal, &request)?;
    forward(ex, &snap, &principal, &request, &candidates).await
}

/// A request read and understood: its routing fields (borrowed from the
/// body) and its own narrowing layer.
struct Parsed<'a> {
    endpoint: Endpoint,
    body: &'a Bytes,
    fields: openai::Request<'a>,
    /// The model as the configuration names it (`None`: no provider serves it).
    served: Option<Arc<str>>,
    stream: bool,
    /// The `x-cordon-require` layer.
    extra: Option<Layer>,
}

/// The providers a request may go to, in the order to try them.
struct Candidates {
    order: Vec<usize>,
    failover: bool,
}

/// Stage 1: the key, checked against the in-memory cache; an id the cache
/// does not hold is looked up in the store (single-flight, bounded, at most
/// `auth::LOOKUP_TIMEOUT`: see `auth::lookup`).
async fn authenticate(ex: &mut Exchange, headers: &HeaderMap) -> Result<Principal, GatewayError> {
    let principal = principal(&ex.rec.state, headers, ex.rec.time_ms).await?;
    ex.rec.principal = Some(principal.clone());
    Ok(principal)
}

/// The caller's key, from the cache or, on a miss, the store.
async fn principal(
    state: &State,
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<Principal, GatewayError> {
    let store = &state.store;
    state
        .keys
        .authenticate_or_fetch(headers, now_ms, async |id| {
            let row = store.get_key(&id).await?;
            Ok::<_, StoreError>(row.map(super::key_state))
        })
        .await
        .map_err(auth_error)
}

/// Stage 2: rate limits, before the body is read, so a client that trickles
/// its body in is counted like any other.
fn admit(ex: &Exchange, snap: &Snapshot, principal: &Principal) -> Result<(), GatewayError> {
    let refuse = |l: crate::limits::Limited, whose: &str| {
        ex.rec
            .state
            .metrics
            .rate_limited
            .with_label_values(&[principal.tenant()])
            .inc();
        let mut e = GatewayError::new(
            ErrorKind::RateLimited,
            format!("rate limit reached for this {whose}"),
        );
        e.retry_after = Some(l.retry_after_secs);
        e
    };
    // The key's own limit first: a key over it does not use up its tenant's.
    principal.admit().map_err(|l| refuse(l, "key"))?;
    snap.limits
        .admit_now(principal.tenant(), ex.rec.time_ms)
        .map_err(|l| refuse(l, "tenant"))
}

/// Stage 3: the body, bounded in size and in time.
async fn read(ex: &mut Exchange, snap: &Snapshot, body: Incoming) -> Result<Bytes, GatewayError> {
    let server = &snap.config.server;
    let body = read_body(body, server.max_body_bytes, server.limits.body_read_timeout)
        .await
        .inspect_err(|e| match e.kind {
            ErrorKind::RequestTimeout => {
                ex.rec.state.metrics.limit_exceeded(Limit::BodyReadTimeout)
            }
            ErrorKind::RequestTooLarge => ex.rec.state.metrics.limit_exceeded(Limit::BodyBytes),
            // The only other failure: the connection ended mid-body.
            _ => ex.client_gone = true,
        })?;
    ex.body_read = true;
    Ok(body)
}

/// Stage 4: the routing fields only (nothing nested deeper than the limit
/// is parsed here or forwarded), and the request's own narrowing layer
/// (every `x-cordon-require` field).
fn parse<'a>(
    ex: &mut Exchange,
    snap: &Snapshot,
    endpoint: Endpoint,
    body: &'a Bytes,
    require: Option<String>,
) -> Result<Parsed<'a>, GatewayError> {
    let max_depth = snap.config.server.limits.max_json_depth;
    if protocol::json::deeper_than(body, max_depth) {
        ex.rec.state.metrics.limit_exceeded(Limit::JsonDepth);
        return Err(GatewayError::new(
            ErrorKind::InvalidRequest,
            format!("the request body nests arrays and objects deeper than {max_depth} levels"),
        ));
    }
    let fields = openai::Request::parse(body)
        .map_err(|e| GatewayError::new(ErrorKind::InvalidRequest, e.to_string()))?;
    let served = snap.config.table.served_model(&fields.model).cloned();
    ex.rec.model = served.clone();
    let stream = fields.stream && endpoint != Endpoint::Embeddings;
    ex.rec.streamed = stream;
    let extra = require
        .map(|h| parse_require(&h, &snap.config.table))
        .transpose()
        .map_err(|e| GatewayError::new(ErrorKind::InvalidRequest, e.to_string()))?;
    Ok(Parsed {
        endpoint,
        body,
        fields,
        served,
        stream,
        extra,
    })
}

/// Stage 5: the policy's decision, as the providers to try: healthy ones
/// first in policy order, ejected ones after them. None eligible: 403 with
/// each provider's first failing rule.
fn decide(
    ex: &mut Exchange,
    snap: &Snapshot,
    principal: &Principal,
    request: &Parsed<'_>,
) -> Result<Candidates, GatewayError> {
    let model: &str = &request.fields.model;
    let table = &snap.config.table;
    let routes = match table.decide(
        principal.tenant(),
        principal.project(),
        model,
        clock::today(),
        request.extra.as_ref(),
    ) {
        Decision::ModelNotServed => {
            // The name came from the body and no configuration knows it:
            // it is not echoed (SPEC invariant 2).
            return Err(GatewayError::new(
                ErrorKind::ModelNotFound,
                "the requested model does not exist",
            ));
        }
        Decision::ModelNotAllowed => {
            return Err(GatewayError::new(
                ErrorKind::ModelNotFound,
                format!("model `{model}` is not allowed by this key's policy"),
            ));
        }
        Decision::Route(_) if !principal.allows_model(model) => {
            return Err(GatewayError::new(
                ErrorKind::ModelNotFound,
                format!("model `{model}` is not in this key's scope"),
            ));
        }
        Decision::Route(r) => r,
        Decision::UnknownTenant | Decision::UnknownProject => {
            return Err(GatewayError::new(
                ErrorKind::PolicyDenied,
                "no policy is in force for this key's tenant or project",
            ));
        }
    };
    ex.rec.policy_version = Some(routes.version().shared());
    // A stable sort, so each group keeps the policy's order.
    let now = ex.rec.time_ms;
    let mut order: Vec<usize> = routes.eligible_indexed().map(|(i, _)| i).collect();
    if order.iter().any(|&i| snap.health.is_ejected(i, now)) {
        order.sort_by_key(|&i| snap.health.is_ejected(i, now));
    }
    if order.is_empty() {
        let reasons = routes.denial_reasons(principal.tenant(), principal.project());
        let rule = reasons.first().map_or("none", |(_, f)| f.rule.as_str());
        ex.rec
            .state
            .metrics
            .policy_denials
            .with_label_values(&[principal.tenant(), rule])
            .inc();
        let list: Vec<String> = reasons
            .iter()
            .map(|(id, f)| format!("{id}: {} ({})", f.rule, f.detail))
            .collect();
        return Err(GatewayError::new(
            ErrorKind::PolicyDenied,
            format!(
                "no provider serving `{model}` satisfies this key's policy: {}",
                list.join("; ")
            ),
        ));
    }
    let failover = table.tenant(principal.tenant()).is_none_or(|t| t.failover);
    Ok(Candidates { order, failover })
}

/// Stage 6: each candidate in turn, eligibility checked again at the moment
/// of sending, failing over only before the first byte reaches the client
/// and only when the failure allows it.
async fn forward(
    ex: &mut Exchange,
    snap: &Arc<Snapshot>,
    principal: &Principal,
    request: &Parsed<'_>,
    candidates: &Candidates,
) -> Result<Reply, GatewayError> {
    let limits = snap.config.server.limits;
    let mut last_error: Option<GatewayError> = None;
    for (n, &idx) in candidates.order.iter().enumerate() {
        if n > 0 && !candidates.failover {
            break;
        }
        // A reload or a date change since the decision must not send data
        // anywhere new.
        if !still_eligible(
            &ex.rec.state,
            snap,
            idx,
            principal,
            &request.fields.model,
            request.extra.as_ref(),
        ) {
            continue;
        }
        let Some(up) = snap.upstreams.get(idx) else {
            continue;
        };
        let failure = match attempt(ex, snap, idx, up, principal, request).await? {
            Ok(reply) => return Ok(reply),
            Err(failure) => failure,
        };
        if failure == AttemptError::AnswerTooLarge {
            ex.rec.state.metrics.limit_exceeded(Limit::AnswerBytes);
        }
        tracing::debug!(
            request_id = &*ex.rec.request_id,
            provider = up.id.as_str(),
            failure = ?failure,
            prompt_may_have_reached_it = failure.may_have_reached(),
            failover_allowed = failure.failover_allowed(),
            "attempt failed"
        );
        last_error = Some(attempt_error(failure, &up.id, up.timeout, &limits));
        if failure.counts_against_health() && snap.health.record_failure(idx, clock::now_ms()) {
            tracing::warn!(provider = %up.id, "provider ejected after repeated failures");
        }
        if !failure.failover_allowed() {
            // The provider answered: it has the prompt, and its answer is
            // final. No other provider is sent it.
            break;
        }
        if n + 1 < candidates.order.len() && candidates.failover {
            ex.rec
                .state
                .metrics
                .failovers
                .with_label_values(&[principal.tenant(), up.id.as_str()])
                .inc();
        }
    }
    let mut e = last_error.unwrap_or_else(|| {
        GatewayError::new(
            ErrorKind::PolicyDenied,
            "no provider is eligible at the moment of sending",
        )
    });
    // 504 only when the provider timed out and no failover was possible.
    if matches!(
        e.kind,
        ErrorKind::UpstreamTimeout | ErrorKind::UpstreamError
    ) && ex.rec.tried.len() > 1
    {
        e.kind = ErrorKind::UpstreamError;
        e.message = format!(
            "every eligible provider failed (tried {})",
            join(&ex.rec.tried, ", ")
        );
    }
    Err(e)
}

/// One attempt at provider `up`: the answer for the client, or why this
/// provider failed (`Ok(Err(…))`). A request that cannot be put in the
/// provider's protocol is the client's to fix (`Err`: 400, naming the field
/// only).
async fn attempt(
    ex: &mut Exchange,
    snap: &Snapshot,
    idx: usize,
    up: &Upstream,
    principal: &Principal,
    request: &Parsed<'_>,
) -> Result<Result<Reply, AttemptError>, GatewayError> {
    // The tenant's own credential for this provider (BYOK), if it stored one;
    // one that cannot be opened makes the provider unusable for the tenant,
    // never a fallback to the operator's credential.
    let own = match ex.rec.state.byok.get(principal.tenant(), up.id.as_str()) {
        None => None,
        Some(Held::Key(k)) => Some(k),
        Some(Held::Broken) => return Ok(Err(AttemptError::Unavailable)),
    };
    if (own.is_none() && up.unavailable.is_some())
        || (request.endpoint == Endpoint::Embeddings && up.api != Api::OpenAi)
    {
        // Never contacted (its credential is not set, or embeddings, which
        // have no Anthropic counterpart): not an attempt.
        return Ok(Err(AttemptError::Unavailable));
    }
    let model: &str = &request.fields.model;
    // A route exists only for a served model, so `served` is set.
    let upstream_model = match &request.served {
        Some(public) => up.upstream_model(public).clone(),
        None => Arc::from(model),
    };
    let bridge = Bridge::new(ex.rec.client_api, up.api);
    let (forward, up_endpoint) = bridge
        .request(
            &request.fields,
            request.body,
            request.endpoint,
            &upstream_model,
        )
        .map_err(translate_error)?;
    let forward = Bytes::from(forward);
    ex.rec.provider = Some(up.id.clone());
    ex.rec.provider_api = Some(up.api);
    ex.rec.tried.push(up.id.clone());
    ex.attempt_connected.store(false, Ordering::Relaxed);
    ex.rec.upstream_model = Some(upstream_model);
    let limits = snap.config.server.limits;
    let stream = request.stream;
    let sent_at = Instant::now();
    // One deadline (one timer) for the response head and, when not
    // streamed, the whole body: a stall is still a failure before the
    // first byte reaches the client.
    let answer = async {
        let resp = up
            .send(
                up_endpoint,
                forward,
                stream,
                &ex.rec.request_id,
                &ex.attempt_connected,
                own.as_deref(),
            )
            .await?;
        let status = resp.status();
        if is_retryable(status) {
            return Err(AttemptError::Status(status));
        }
        if stream && status.is_success() {
            // A stream must be one; anything else (an error object sent
            // with 200, a JSON answer) is read whole and judged below.
            if is_event_stream(resp.headers()) {
                return Ok(Answer::Stream(resp));
            }
            read_whole(resp, limits.max_answer_bytes).await?;
            return Err(AttemptError::BadAnswer);
        }
        read_whole(resp, limits.max_answer_bytes).await
    };
    let deadline = tokio::time::Instant::from_std(sent_at) + up.timeout;
    let answer = tokio::time::timeout_at(deadline, answer)
        .await
        .unwrap_or(Err(AttemptError::Timeout));
    if !matches!(answer, Ok(Answer::Stream(_))) {
        // A stream's time is added when it ends.
        ex.rec.upstream_time += sent_at.elapsed();
    }
    let reply = match answer {
        Ok(Answer::Stream(resp)) => {
            let relay = Relays {
                model,
                client_wants_usage: request.fields.client_wants_usage,
                idle_timeout: up.timeout,
                max_event: limits.max_event_bytes,
                max_stream: limits.max_stream,
            };
            Ok(Reply::Stream(relay_stream(
                ex, resp, sent_at, bridge, relay,
            )))
        }
        // A success, or the provider refusing the request itself (e.g.
        // 400): its answer is the client's; no other provider would differ.
        Ok(Answer::Whole {
            status,
            content_type,
            body,
        }) => respond_whole(ex, bridge, model, status, content_type, body).map(Reply::Whole),
        Err(e) => Err(e),
    };
    if reply.is_ok() {
        snap.health.record_success(idx);
    }
    Ok(reply)
}

/// The client's error for a failed attempt at provider `id`: who failed and
/// how, never what the provider said.
fn attempt_error(
    e: AttemptError,
    id: &ProviderId,
    timeout: Duration,
    limits: &ServerLimits,
) -> GatewayError {
    let (kind, message) = match e {
        AttemptError::Connect => (
            ErrorKind::UpstreamError,
            format!("could not reach provider `{id}`"),
        ),
        AttemptError::SentThenBroken => (
            ErrorKind::UpstreamError,
            format!("the connection to provider `{id}` broke before it answered"),
        ),
        AttemptError::Timeout => (
            ErrorKind::UpstreamTimeout,
            format!(
                "provider `{id}` did not answer within {} ms",
                timeout.as_millis()
            ),
        ),
        AttemptError::Status(status) => (
            ErrorKind::UpstreamError,
            format!("provider `{id}` answered {}", status.as_u16()),
        ),
        AttemptError::AnswerTooLarge => (
            ErrorKind::UpstreamError,
            format!(
                "provider `{id}` answered with more than {} bytes",
                limits.max_answer_bytes
            ),
        ),
        AttemptError::BadAnswer => (
            ErrorKind::UpstreamError,
            format!("provider `{id}` sent an answer that is not one of its protocol"),
        ),
        AttemptError::Unavailable => (
            ErrorKind::UpstreamError,
            format!(
                "provider `{id}` cannot be used for this request (its credential is not set, \
                 or it does not serve this endpoint)"
            ),
        ),
    };
    GatewayError::new(kind, message)
}

/// Whether a response head announces a server-sent event stream.
fn is_event_stream(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// Whether `idx` may still receive this request, under the configuration in
/// force now and today's date.
fn still_eligible(
    state: &State,
    decided_with: &Arc<Snapshot>,
    idx: usize,
    principal: &Principal,
    model: &str,
    extra: Option<&Layer>,
) -> bool {
    let now = state.snapshot.load();
    let Some(id) = decided_with
        .config
        .table
        .providers()
        .get(idx)
        .map(|p| &p.id)
    else {
        return false;
    };
    match now.config.table.decide(
        principal.tenant(),
        principal.project(),
        model,
        clock::today(),
        extra,
    ) {
        Decision::Route(r) => {
            let same_config = Arc::ptr_eq(&now, decided_with);
            r.eligible_indexed()
                .any(|(i, p)| &p.id == id && (!same_config || i == idx))
        }
        _ => false,
    }
}

/// What one attempt got back.
enum Answer {
    /// A whole, non-streamed body (a success or a non-retryable refusal).
    Whole {
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
    /// A successful stream, to relay as it arrives.
    Stream(UpstreamResponse),
}

/// Reads a non-streamed response whole (bounded in size); the caller bounds
/// the time.
async fn read_whole(resp: UpstreamResponse, max: usize) -> Result<Answer, AttemptError> {
    let (head, incoming) = resp.into_parts();
    let body = match Limited::new(incoming, max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(AttemptError::AnswerTooLarge);
        }
        // The answer began, then its connection broke.
        Err(_) => return Err(AttemptError::BadAnswer),
    };
    Ok(Answer::Whole {
        status: head.status,
        content_type: head.headers.get(header::CONTENT_TYPE).cloned(),
        body,
    })
}

/// Passes a whole response on in the client's protocol, with usage taken
/// from it. A success that cannot be translated is the provider's fault (502).
fn respond_whole(
    ex: &mut Exchange,
    bridge: Bridge,
    public_model: &str,
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
) -> Result<Response<Body>, AttemptError> {
    let bridge::Answer {
        status,
        content_type,
        body,
        tokens,
    } = bridge.answer(status, content_type, body, public_model)?;
    let mut builder = Response::builder().status(status);
    if let Some(h) = builder.headers_mut() {
        h.insert(header::CONTENT_TYPE, content_type);
        ex.common_headers(h);
    }
    let response = builder
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())));
    ex.end = End {
        status,
        tokens,
        first_content_at: None,
        outcome: if status.is_success() {
            Outcome::Ok
        } else {
            Outcome::UpstreamError
        },
    };
    Ok(response)
}

/// What choosing a stream relay needs to know about the request.
struct Relays<'a> {
    model: &'a str,
    client_wants_usage: bool,
    /// The provider's timeout, also the longest silence allowed mid-stream.
    idle_timeout: Duration,
    max_event: usize,
    max_stream: Duration,
}

/// A streamed answer whose head is ready: the exchange moves into its body
/// and is recorded when the stream ends, however it ends.
struct StreamReply {
    head: http::response::Builder,
    status: StatusCode,
    upstream: crate::upstream::UpstreamBody,
    relay: Box<dyn Relay>,
    /// The client's protocol, for a failed stream's last event.
    client: Wire,
    sent_at: Instant,
    idle_timeout: Duration,
    max_event: usize,
    max_stream: Duration,
}

/// A streamed response: relayed event by event in the client's protocol.
fn relay_stream(
    ex: &Exchange,
    resp: UpstreamResponse,
    sent_at: Instant,
    bridge: Bridge,
    relays: Relays<'_>,
) -> StreamReply {
    let status = resp.status();
    let mut head = Response::builder().status(status);
    if let Some(h) = head.headers_mut() {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        ex.common_headers(h);
    }
    let relay = bridge.relay(relays.model, relays.client_wants_usage);
    StreamReply {
        head,
        status,
        upstream: resp.into_body(),
        relay,
        client: bridge.client(),
        sent_at,
        idle_timeout: relays.idle_timeout,
        max_event: relays.max_event,
        max_stream: relays.max_stream,
    }
}

// === impl StreamReply ===

impl StreamReply {
    /// The response, whose body owns `ex` from now on.
    fn into_response(self, mut ex: Exchange) -> Response<Body> {
        let (status, sent_at) = (self.status, self.sent_at);
        let client = self.client;
        let on_end = move |end: Ended| {
            ex.rec.upstream_time += end.at.saturating_duration_since(sent_at);
            match end.failure {
                Some(Failure::EventTooLarge) => {
                    ex.rec.state.metrics.limit_exceeded(Limit::EventBytes)
                }
                Some(Failure::TooLong) => {
                    ex.rec.state.metrics.limit_exceeded(Limit::StreamDuration)
                }
                _ => {}
            }
            ex.end = End {
                status,
                tokens: end.tokens,
                first_content_at: end.first_content_at,
                outcome: match end.how {
                    StreamEnd::Complete => Outcome::Ok,
                    StreamEnd::Cancelled => Outcome::Cancelled,
                    StreamEnd::UpstreamFailed => Outcome::UpstreamError,
                },
            };
            // `ex` is dropped here, and so recorded.
        };
        let body = RelayBody::boxed(self.upstream, self.relay, client, on_end)
            .with_idle_timeout(self.idle_timeout)
            .with_max_event(self.max_event)
            .with_max_duration(self.max_stream);
        self.head
            .body(body.boxed_unsync())
            .unwrap_or_else(|_| Response::new(full(Bytes::new())))
    }
}

/// `GET /v1/models`: only the models this key may reach today.
async fn models(state: &State, headers: &HeaderMap, request_id: &str) -> Response<Body> {
    let principal = match principal(state, headers, clock::now_ms()).await {
        Ok(p) => p,
        Err(e) => return error_response(&e, ClientApi::OpenAi, request_id, None, None),
    };
    let snap = state.snapshot.load();
    let today = clock::today();
    let table = &snap.config.table;
    let data: Vec<serde_json::Value> = table
        .models()
        .into_iter()
        .filter(|m| principal.allows_model(m))
        .filter(
            |m| match table.decide(principal.tenant(), principal.project(), m, today, None) {
                Decision::Route(r) => r.eligible().next().is_some(),
                _ => false,
            },
        )
        .map(
            |m| serde_json::json!({"id": m, "object": "model", "created": 0, "owned_by": "cordon"}),
        )
        .collect();
    let body = serde_json::json!({"object": "list", "data": data}).to_string();
    let mut resp = Response::new(full(Bytes::from(body)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(X_REQUEST_ID.clone(), v);
    }
    resp
}

// === impl Exchange ===

impl Exchange {
    /// Starts an exchange: counted in flight until it is dropped.
    fn new(
        state: Arc<State>,
        request_id: Arc<str>,
        endpoint: Endpoint,
        client_api: ClientApi,
    ) -> Self {
        state.metrics.in_flight.inc();
        Exchange {
            rec: Finished::new(
                state,
                request_id,
                endpoint,
                client_api,
                Instant::now(),
                clock::now_ms(),
            ),
            body_read: false,
            client_gone: false,
            attempt_connected: AtomicBool::new(false),
            end: End::plain(CLIENT_CLOSED, Outcome::Cancelled),
        }
    }

    fn common_headers(&self, h: &mut HeaderMap) {
        set_common_headers(
            h,
            &self.rec.request_id,
            self.rec.provider.as_ref().map(ProviderId::as_str),
            self.rec.policy_version.as_deref(),
        );
    }
}

impl Drop for Exchange {
    /// Records metrics, a log line and the usage record, exactly once per
    /// exchange, after the answer has gone out: as its own task, which runs
    /// when the connection's task has written the response and yields, so
    /// the client never waits for the log write or the usage record (nginx's
    /// log phase comes after the response too). The task holds the state,
    /// and with it the usage sink, so a graceful shutdown waits for it
    /// before the usage writer drains. Outside a runtime, or once shutdown
    /// has begun cutting exchanges (when a spawned task might never run), it
    /// runs in place. Latency is taken here, not when the task runs.
    fn drop(&mut self) {
        self.rec.state.metrics.in_flight.dec();
        let total = self.rec.started.elapsed();
        let mut end =
            std::mem::replace(&mut self.end, End::plain(CLIENT_CLOSED, Outcome::Cancelled));
        if end.outcome == Outcome::Cancelled && !self.attempt_connected.load(Ordering::Relaxed) {
            // Gone while the last provider chosen was still being connected
            // to: it never received anything.
            if self.rec.tried.pop().is_some() {
                self.rec.provider = self.rec.tried.last().cloned();
                if self.rec.tried.is_empty() {
                    self.rec.upstream_model = None;
                    self.rec.provider_api = None;
                }
            }
        }
        if end.outcome == Outcome::Cancelled && self.rec.state.cutting.load(Ordering::Relaxed) {
            end.outcome = Outcome::CutByShutdown;
            self.rec.state.metrics.limit_exceeded(Limit::Drain);
        }
        let husk = Finished::new(
            self.rec.state.clone(),
            self.rec.request_id.clone(),
            self.rec.endpoint,
            self.rec.client_api,
            self.rec.started,
            self.rec.time_ms,
        );
        let done = std::mem::replace(&mut self.rec, husk);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if !self.rec.state.cutting.load(Ordering::Relaxed) => {
                drop(rt.spawn(async move { done.record(end, total) }));
            }
            _ => done.record(end, total),
        }
    }
}

/// The status a usage record carries when the client went away before an
/// answer was complete (nginx's "client closed request").
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(s) => s,
    Err(_) => StatusCode::BAD_REQUEST,
};

// === impl End ===

impl End {
    fn plain(status: StatusCode, outcome: Outcome) -> Self {
        End {
            status,
            tokens: Tokens::default(),
            first_content_at: None,
            outcome,
        }
    }
}

// === impl Outcome ===

impl Outcome {
    /// The word in usage records and log lines.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Cancelled => "cancelled",
            Outcome::CutByShutdown => "cut_by_shutdown",
        }
    }
}

/// What an exchange's usage record, log line and metrics are made of; taken
/// out of the exchange when it is dropped, and recorded.
struct Finished {
    state: Arc<State>,
    started: Instant,
    time_ms: i64,
    request_id: Arc<str>,
    endpoint: Endpoint,
    principal: Option<Principal>,
    /// The public model asked for, as the configuration names it; `None`
    /// until the body is read, or when no provider serves it (its label is
    /// then `other`).
    model: Option<Arc<str>>,
    provider: Option<ProviderId>,
    upstream_model: Option<Arc<str>>,
    policy_version: Option<Arc<str>>,
    tried: Vec<ProviderId>,
    upstream_time: Duration,
    streamed: bool,
    provider_api: Option<Api>,
    /// The protocol the client spoke.
    client_api: ClientApi,
    /// The refusal the client got, if any (for the log line).
    error: Option<ErrorKind>,
}

// === impl Finished ===

impl Finished {
    fn new(
        state: Arc<State>,
        request_id: Arc<str>,
        endpoint: Endpoint,
        client_api: ClientApi,
        started: Instant,
        time_ms: i64,
    ) -> Self {
        Finished {
            state,
            started,
            time_ms,
            request_id,
            endpoint,
            principal: None,
            model: None,
            provider: None,
            upstream_model: None,
            policy_version: None,
            tried: Vec::new(),
            upstream_time: Duration::ZERO,
            streamed: false,
            provider_api: None,
            client_api,
            error: None,
        }
    }

    fn record(self, o: End, total: Duration) {
        let state = &self.state;
        let Some(principal) = &self.principal else {
            // Unauthenticated: nobody to bill; metrics and the log only.
            tracing::info!(
                request_id = &*self.request_id,
                status = o.status.as_u16(),
                "refused unauthenticated request"
            );
            return;
        };
        let provider = self.provider.as_ref().map_or("none", ProviderId::as_str);
        let model_label = self.model.as_deref().unwrap_or("other");
        let status = o.status.as_str();
        let tenant = principal.tenant();
        let m = &state.metrics;
        m.requests
            .with_label_values(&[tenant, provider, model_label, status])
            .inc();
        m.request_duration
            .with_label_values(&[
                tenant,
                provider,
                model_label,
                if self.streamed { "true" } else { "false" },
            ])
            .observe(total.as_secs_f64());
        let overhead = total.saturating_sub(self.upstream_time);
        if !self.tried.is_empty() {
            m.upstream_duration
                .with_label_values(&[provider, model_label])
                .observe(self.upstream_time.as_secs_f64());
            m.gateway_overhead
                .with_label_values(&[provider])
                .observe(overhead.as_secs_f64());
        }
        let ttft = o
            .first_content_at
            .map(|t| t.saturating_duration_since(self.started));
        if let Some(t) = ttft {
            m.time_to_first_token
                .with_label_values(&[provider, model_label])
                .observe(t.as_secs_f64());
        }
        m.protocol_requests
            .with_label_values(&[
                client_api_name(self.client_api),
                self.provider_api.map_or("none", api_name),
            ])
            .inc();
        for (direction, n) in [
            ("prompt", o.tokens.prompt),
            ("completion", o.tokens.completion),
        ] {
            if let Some(n) = n.and_then(|n| u64::try_from(n).ok()) {
                m.tokens
                    .with_label_values(&[tenant, provider, model_label, direction])
                    .inc_by(n);
            }
        }
        // Provider-reported counts: saturate rather than overflow.
        let charged = o
            .tokens
            .prompt
            .unwrap_or(0)
            .saturating_add(o.tokens.completion.unwrap_or(0));
        if charged > 0 {
            state.snapshot.load().limits.charge_tokens(
                tenant,
                clock::now_ms(),
                charged.unsigned_abs(),
            );
        }
        tracing::info!(
            request_id = &*self.request_id,
            tenant,
            endpoint = endpoint_name(self.endpoint),
            model = model_label,
            provider,
            status = o.status.as_u16(),
            outcome = o.outcome.as_str(),
            attempts = self.tried.len(),
            latency_ms = total.as_secs_f64() * 1000.0,
            error = self.error.map(ErrorKind::code),
            failed = self.error.map(|e| e.side().as_str()),
            "request finished"
        );
        state.usage.record(UsageRecord {
            time_ms: self.time_ms,
            tenant: principal.tenant_shared().clone(),
            project: principal.project_shared().cloned(),
            key_id: principal.key_id().shared().clone(),
            endpoint: endpoint_name(self.endpoint),
            model: self.model.clone().unwrap_or_else(|| shared_word("other")),
            provider: self.provider.map(|id| id.shared().clone()),
            upstream_model: self.upstream_model,
            policy_version: self.policy_version,
            prompt_tokens: o.tokens.prompt,
            completion_tokens: o.tokens.completion,
            status: o.status.as_u16(),
            outcome: o.outcome.as_str(),
            attempts: u32::try_from(self.tried.len()).unwrap_or(u32::MAX),
            providers_tried: join(&self.tried, ","),
            request_id: self.request_id,
            latency_ms: total.as_secs_f64() * 1000.0,
            ttft_ms: ttft.map(|t| t.as_secs_f64() * 1000.0),
            overhead_ms: overhead.as_secs_f64() * 1000.0,
            streamed: self.streamed,
            client_api: client_api_name(self.client_api),
            provider_api: self.provider_api.map(api_name),
        });
    }
}

// === helpers ===

/// The ids joined by `sep`; a single id is shared, not copied.
fn join(ids: &[ProviderId], sep: &str) -> Arc<str> {
    match ids {
        [] => return shared_word(""),
        [one] => return one.shared().clone(),
        _ => {}
    }
    let mut out = String::with_capacity(ids.iter().map(|i| i.as_str().len() + sep.len()).sum());
    for (n, id) in ids.iter().enumerate() {
        if n > 0 {
            out.push_str(sep);
        }
        out.push_str(id.as_str());
    }
    out.into()
}

/// The endpoint's word in usage records and log lines.
fn endpoint_name(e: Endpoint) -> &'static str {
    match e {
        Endpoint::ChatCompletions => "chat.completions",
        Endpoint::Embeddings => "embeddings",
        Endpoint::Messages => "messages",
    }
}

fn api_name(api: Api) -> &'static str {
    match api {
        Api::OpenAi => "openai",
        Api::Anthropic => "anthropic",
    }
}

fn client_api_name(api: ClientApi) -> &'static str {
    match api {
        ClientApi::OpenAi => "openai",
        ClientApi::Anthropic => "anthropic",
    }
}

/// A request that cannot be translated for the chosen provider: the client's
/// fault (400, naming the field, never a value) unless the translation
/// itself failed on something the client could not cause (502).
fn translate_error(e: TranslateError) -> GatewayError {
    if e.is_client_error() {
        GatewayError::new(ErrorKind::InvalidRequest, e.to_string())
    } else {
        GatewayError::new(
            ErrorKind::UpstreamError,
            "the request could not be translated for the provider",
        )
    }
}

/// A refused key is a 401; a key that could not be checked (the store did
/// not answer a lookup in time) a 503 with `retry-after: 1`.
fn auth_error(e: AuthError) -> GatewayError {
    match e {
        AuthError::Unavailable => {
            let mut g = GatewayError::new(ErrorKind::Unavailable, e.to_string());
            g.retry_after = Some(1);
            g
        }
        _ => GatewayError::new(ErrorKind::InvalidApiKey, e.to_string()),
    }
}

fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The whole request body, at most `max` bytes, within `deadline`.
async fn read_body(body: Incoming, max: u64, deadline: Duration) -> Result<Bytes, GatewayError> {
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let Ok(read) = tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await else {
        return Err(GatewayError::new(
            ErrorKind::RequestTimeout,
            format!(
                "the request body did not arrive within {} ms",
                deadline.as_millis()
            ),
        ));
    };
    match read {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(GatewayError::new(
                ErrorKind::RequestTooLarge,
                format!("request body is larger than {max} bytes"),
            ))
        }
        // The client's connection ended (or broke) before the whole body.
        Err(_) => Err(GatewayError::new(
            ErrorKind::InvalidRequest,
            "the request body ended before its length",
        )),
    }
}

/// Every `x-cordon-require` field, joined: each narrows, and a client's own
/// narrowing is never dropped (a rule named in two fields is a 400, as in one).
fn require_header(h: &HeaderMap) -> Result<Option<String>, GatewayError> {
    let mut fields = h.get_all(&X_CORDON_REQUIRE).iter().peekable();
    if fields.peek().is_none() {
        return Ok(None);
    }
    let mut joined = String::new();
    for f in fields {
        let text = f.to_str().map_err(|_| {
            GatewayError::new(
                ErrorKind::InvalidRequest,
                "x-cordon-require: not valid text",
            )
        })?;
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
    }
    Ok(Some(joined))
}

/// The headers cordon reads or adds, parsed once: a name given as `&str` is
/// parsed again on every lookup or insert.
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_CORDON_PROVIDER: HeaderName = HeaderName::from_static("x-cordon-provider");
static X_CORDON_POLICY: HeaderName = HeaderName::from_static("x-cordon-policy");
static X_CORDON_REQUIRE: HeaderName = HeaderName::from_static("x-cordon-require");
static X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// `x-request-id`, and the provider and policy version once they are known,
/// on an answer or an error.
fn set_common_headers(
    h: &mut HeaderMap,
    request_id: &str,
    provider: Option<&str>,
    policy: Option<&str>,
) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(X_REQUEST_ID.clone(), v);
    }
    if let Some(v) = provider.and_then(|p| HeaderValue::from_str(p).ok()) {
        h.insert(X_CORDON_PROVIDER.clone(), v);
    }
    if let Some(v) = policy.and_then(|p| HeaderValue::from_str(p).ok()) {
        h.insert(X_CORDON_POLICY.clone(), v);
    }
}

/// The client's `x-request-id` when it is at most 128 characters of
/// `[A-Za-z0-9._:-]` (so it can forge nothing in a log line or a header),
/// else a new one.
fn request_id(headers: &HeaderMap) -> Arc<str> {
    if let Some(v) = headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok())
        && !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Arc::from(v);
    }
    let mut hex = [0u8; 24];
    // 12 bytes always fit 24 digits, which are ASCII.
    let _ = hex::encode_to_slice(rand::random::<[u8; 12]>(), &mut hex);
    std::str::from_utf8(&hex).map_or_else(|_| Arc::from("-"), Arc::from)
}

pub fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

pub fn error_response(
    e: &GatewayError,
    api: ClientApi,
    request_id: &str,
    provider: Option<&str>,
    policy: Option<&str>,
) -> Response<Body> {
    let mut resp = Response::new(full(e.body(api)));
    *resp.status_mut() = e.kind.status();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    set_common_headers(h, request_id, provider, policy);
    // The OpenAI and Anthropic SDKs read this to decide whether to retry.
    h.insert(
        X_SHOULD_RETRY.clone(),
        HeaderValue::from_static(if e.kind.retry_may_succeed() {
            "true"
        } else {
            "false"
        }),
    );
    if let Some(secs) = e.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}
