//! One usage record per request (SPEC section 5): metadata only. Nothing in
//! here may come from a request or response body except token counts.

/// What happened to a request, as recorded for billing and audit.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub request_id: String,
    /// Unix time in milliseconds when the request arrived.
    pub time_ms: i64,
    pub tenant: String,
    pub project: Option<String>,
    pub key_id: String,
    /// `chat.completions`, `embeddings`, `messages`.
    pub endpoint: &'static str,
    /// The public model name the client asked for (as configured; `other` if unknown).
    pub model: String,
    /// The provider that served (or last failed); `None` when refused before routing.
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub policy_version: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    /// HTTP status returned to the client.
    pub status: u16,
    /// `ok`, `refused` (never reached a provider), `upstream_error`, `cancelled`.
    pub outcome: &'static str,
    pub attempts: u32,
    /// Providers tried, in order, comma-separated.
    pub providers_tried: String,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub overhead_ms: f64,
    pub streamed: bool,
    /// Wire protocol of the client and of the provider: `openai` | `anthropic`.
    pub client_api: &'static str,
    pub provider_api: Option<&'static str>,
}
