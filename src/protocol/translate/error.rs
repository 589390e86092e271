//! Provider error answers and mid-stream error events: scrubbed of the
//! provider's words, in the client's protocol.

use super::*;

// ===== provider errors =====

/// Which protocol a provider speaks (and so its error bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
}

/// The error types and codes OpenAI and Anthropic document. A provider's
/// error type reaches the client only when it is one of these: anything else
/// is free text the provider chose (it may quote the request or the
/// credential cordon sent) and becomes `unknown`.
pub(crate) const ERROR_TYPES: &[&str] = &[
    "api_error",
    "authentication_error",
    "billing_error",
    "context_length_exceeded",
    "insufficient_quota",
    "invalid_api_key",
    "invalid_request_error",
    "model_not_found",
    "not_found_error",
    "overloaded_error",
    "permission_error",
    "rate_limit_error",
    "rate_limit_exceeded",
    "request_too_large",
    "server_error",
    "timeout_error",
];

/// A provider's error type, echoed only when it is a documented one.
pub(super) fn error_type(t: Option<&str>) -> &'static str {
    t.and_then(|t| ERROR_TYPES.iter().find(|k| **k == t))
        .copied()
        .unwrap_or("unknown")
}

/// An OpenAI provider's error answer: its status and error type (its `code`
/// when that is a documented one, else its `type`); the message is not read.
fn openai_error_kind(body: &[u8]) -> &'static str {
    #[derive(Deserialize, Default)]
    struct Body {
        #[serde(default)]
        error: Option<Detail>,
    }
    #[derive(Deserialize, Default)]
    struct Detail {
        #[serde(rename = "type", default)]
        kind: Option<String>,
        #[serde(default)]
        code: Option<Value>,
    }
    let e: Body = serde_json::from_slice(body).unwrap_or_default();
    let d = e.error.unwrap_or_default();
    match error_type(d.code.as_ref().and_then(Value::as_str)) {
        "unknown" => error_type(d.kind.as_deref()),
        code => code,
    }
}

/// An Anthropic provider's error type; the message is not read.
fn anthropic_error_kind(body: &[u8]) -> &'static str {
    let e: anthropic::ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    error_type(e.error.kind.as_deref())
}

/// A provider's error answer (`from`'s protocol) as the client may see it,
/// in the client's protocol (`to`): cordon's own words, the provider's
/// status (mapped) and its error type; never the provider's free text, which
/// may quote the request or echo the credential cordon sent (OpenAI's 401
/// does: "Incorrect API key provided: sk-…"). A provider refusing cordon's
/// credential (401, 403) is cordon's fault, not the client's: 502.
pub fn scrub_provider_error(
    from: Wire,
    to: Wire,
    status: StatusCode,
    body: &[u8],
) -> (StatusCode, Bytes) {
    match (from, to) {
        (Wire::Anthropic, Wire::OpenAi) => anthropic_error_to_openai(status, body),
        (Wire::OpenAi, Wire::Anthropic) => openai_error_to_anthropic(status, body),
        (Wire::OpenAi, Wire::OpenAi) => {
            let kind = openai_error_kind(body);
            let mapped = mapped_status(status);
            (mapped, openai_error_body(mapped, status, kind, "OpenAI"))
        }
        (Wire::Anthropic, Wire::Anthropic) => {
            let kind = anthropic_error_kind(body);
            let (mapped, ty) = match (status.as_u16(), kind) {
                (529, _) | (_, "overloaded_error") => (overloaded(), "overloaded_error"),
                _ => {
                    let s = mapped_status(status);
                    (s, anthropic_type(s))
                }
            };
            (mapped, anthropic_error_body(ty, status, kind, "Anthropic"))
        }
    }
}

/// An OpenAI error body for the client's `status`, naming what the provider
/// answered (`provider_status`, `kind`).
fn openai_error_body(
    status: StatusCode,
    provider_status: StatusCode,
    kind: &str,
    protocol: &str,
) -> Bytes {
    let message = format!(
        "the provider ({protocol} protocol) answered {} {kind}",
        status_text(provider_status)
    );
    let body = json!({"error": {
        "type": openai_type(status),
        "code": kind,
        "message": message,
        "param": null,
    }});
    Bytes::from(to_vec(&body))
}

/// An Anthropic error body of type `ty`, naming what the provider answered
/// (`provider_status`, `kind`).
fn anthropic_error_body(
    ty: &str,
    provider_status: StatusCode,
    kind: &str,
    protocol: &str,
) -> Bytes {
    let message = format!(
        "the provider ({protocol} protocol) answered {} {kind}",
        status_text(provider_status)
    );
    let body = json!({"type": "error", "error": {"type": ty, "message": message}});
    Bytes::from(to_vec(&body))
}

/// Anthropic's 529 `overloaded_error`.
fn overloaded() -> StatusCode {
    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// An Anthropic provider's error answer in OpenAI's shape, with the status an
/// OpenAI client expects. The provider's message is not kept (it may quote
/// the request): the new one names the provider's status and error type.
pub fn anthropic_error_to_openai(status: StatusCode, body: &[u8]) -> (StatusCode, Bytes) {
    let kind = anthropic_error_kind(body);
    let mapped = match (status.as_u16(), kind) {
        (529, _) | (_, "overloaded_error") => StatusCode::SERVICE_UNAVAILABLE,
        _ => mapped_status(status),
    };
    (mapped, openai_error_body(mapped, status, kind, "Anthropic"))
}

/// An OpenAI provider's error answer in Anthropic's shape (see
/// [`anthropic_error_to_openai`]); a 503 becomes Anthropic's 529
/// `overloaded_error`.
pub fn openai_error_to_anthropic(status: StatusCode, body: &[u8]) -> (StatusCode, Bytes) {
    let kind = openai_error_kind(body);
    let mapped = mapped_status(status);
    let (mapped, ty) = match mapped.as_u16() {
        503 => (overloaded(), "overloaded_error"),
        _ => (mapped, anthropic_type(mapped)),
    };
    (mapped, anthropic_error_body(ty, status, kind, "OpenAI"))
}

/// Maps a provider error answer of protocol `from` into the other protocol.
pub fn map_provider_error(from: Wire, status: StatusCode, body: &[u8]) -> (StatusCode, Bytes) {
    let to = match from {
        Wire::Anthropic => Wire::OpenAi,
        Wire::OpenAi => Wire::Anthropic,
    };
    scrub_provider_error(from, to, status, body)
}

/// Statuses kept across protocols, except that the provider refusing
/// cordon's own credentials (401, 403) is a gateway fault (502), not the
/// client's, and anything that is not an error becomes a 502.
fn mapped_status(status: StatusCode) -> StatusCode {
    match status.as_u16() {
        401 | 403 => StatusCode::BAD_GATEWAY,
        529 => StatusCode::SERVICE_UNAVAILABLE,
        400..=599 => status,
        _ => StatusCode::BAD_GATEWAY,
    }
}

fn status_text(s: StatusCode) -> String {
    s.as_u16().to_string()
}

fn openai_type(s: StatusCode) -> &'static str {
    match s.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

fn anthropic_type(s: StatusCode) -> &'static str {
    match s.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}
