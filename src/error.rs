//! The errors a client can receive, mapped to status, code and the body shape
//! of the protocol it spoke. A `GatewayError` never holds a request or
//! response body: messages name fields and providers, never content.

use bytes::Bytes;
use http::StatusCode;

/// Every refusal cordon answers with, as in SPEC section 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidRequest,
    InvalidApiKey,
    PolicyDenied,
    ModelNotFound,
    RequestTooLarge,
    /// The request body did not arrive within `body_read_timeout_ms`.
    RequestTimeout,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    /// cordon could not do its own part in time: the store did not answer a
    /// key lookup.
    Unavailable,
    NotFound,
    MethodNotAllowed,
}

/// Who a refusal is about: what must change for the request to succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The request itself (its body, key, size, pace).
    Client,
    /// cordon's rules: the policy or the tenant's limits.
    Policy,
    /// The provider (or every provider tried).
    Provider,
    /// cordon itself, or a service it depends on (the store).
    Gateway,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Policy => "policy",
            Side::Provider => "provider",
            Side::Gateway => "gateway",
        }
    }
}

/// The client's wire protocol, which decides the error body's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientApi {
    OpenAi,
    Anthropic,
}

/// A refusal to send back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

// === impl ErrorKind ===

impl ErrorKind {
    /// Who the refusal is about.
    pub fn side(self) -> Side {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::InvalidApiKey
            | ErrorKind::RequestTooLarge
            | ErrorKind::RequestTimeout
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed => Side::Client,
            ErrorKind::PolicyDenied | ErrorKind::ModelNotFound | ErrorKind::RateLimited => {
                Side::Policy
            }
            ErrorKind::UpstreamError | ErrorKind::UpstreamTimeout => Side::Provider,
            ErrorKind::Unavailable => Side::Gateway,
        }
    }

    /// Whether the same request may succeed if sent again unchanged (after
    /// `retry-after`, for 429).
    pub fn retry_may_succeed(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::RequestTimeout
                | ErrorKind::UpstreamError
                | ErrorKind::UpstreamTimeout
                | ErrorKind::Unavailable
        )
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::InvalidApiKey => StatusCode::UNAUTHORIZED,
            ErrorKind::PolicyDenied => StatusCode::FORBIDDEN,
            ErrorKind::ModelNotFound | ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::UpstreamError => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `code` of SPEC section 3; also the metrics label.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::InvalidApiKey => "invalid_api_key",
            ErrorKind::PolicyDenied => "policy_denied",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::UpstreamError => "upstream_error",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::Unavailable => "service_unavailable",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
        }
    }

    /// The OpenAI `error.type` the official SDKs expect for this status.
    fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::ModelNotFound
            | ErrorKind::RequestTooLarge
            | ErrorKind::RequestTimeout
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed => "invalid_request_error",
            ErrorKind::InvalidApiKey => "authentication_error",
            ErrorKind::PolicyDenied => "permission_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::UpstreamError | ErrorKind::UpstreamTimeout | ErrorKind::Unavailable => {
                "api_error"
            }
        }
    }

    /// The Anthropic `error.type` for this status.
    fn anthropic_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::MethodNotAllowed | ErrorKind::RequestTimeout => {
                "invalid_request_error"
            }
            ErrorKind::InvalidApiKey => "authentication_error",
            ErrorKind::PolicyDenied => "permission_error",
            ErrorKind::ModelNotFound | ErrorKind::NotFound => "not_found_error",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::UpstreamTimeout => "timeout_error",
            ErrorKind::UpstreamError | ErrorKind::Unavailable => "api_error",
        }
    }
}

// === impl GatewayError ===

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The JSON error body in the client's protocol.
    pub fn body(&self, api: ClientApi) -> Bytes {
        let v = match api {
            ClientApi::OpenAi => serde_json::json!({
                "error": {
                    "type": self.kind.openai_type(),
                    "code": self.kind.code(),
                    "message": self.message,
                    "param": null,
                }
            }),
            ClientApi::Anthropic => serde_json::json!({
                "type": "error",
                "error": {
                    "type": self.kind.anthropic_type(),
                    "code": self.kind.code(),
                    "message": self.message,
                }
            }),
        };
        Bytes::from(v.to_string())
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_says_who_it_is_about_and_whether_a_retry_may_help() {
        let kinds = [
            (ErrorKind::InvalidRequest, Side::Client, false),
            (ErrorKind::InvalidApiKey, Side::Client, false),
            (ErrorKind::RequestTooLarge, Side::Client, false),
            (ErrorKind::RequestTimeout, Side::Client, true),
            (ErrorKind::NotFound, Side::Client, false),
            (ErrorKind::MethodNotAllowed, Side::Client, false),
            (ErrorKind::PolicyDenied, Side::Policy, false),
            (ErrorKind::ModelNotFound, Side::Policy, false),
            (ErrorKind::RateLimited, Side::Policy, true),
            (ErrorKind::UpstreamError, Side::Provider, true),
            (ErrorKind::UpstreamTimeout, Side::Provider, true),
            (ErrorKind::Unavailable, Side::Gateway, true),
        ];
        for (kind, side, retry) in kinds {
            assert_eq!(kind.side(), side, "{kind:?}");
            assert_eq!(kind.retry_may_succeed(), retry, "{kind:?}");
            // Only a provider, or what cordon itself depends on, answers 5xx.
            assert_eq!(
                kind.status().is_server_error(),
                matches!(side, Side::Provider | Side::Gateway)
            );
        }
    }
}
