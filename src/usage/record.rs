//! One usage record per request (SPEC section 5): metadata only. Nothing in
//! here may come from a request or response body except token counts.

/// What happened to a request, as recorded for billing and audit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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

/// The same record with owned strings, as read back from the spool file.
#[derive(serde::Deserialize)]
struct Owned {
    request_id: String,
    time_ms: i64,
    tenant: String,
    project: Option<String>,
    key_id: String,
    endpoint: String,
    model: String,
    provider: Option<String>,
    upstream_model: Option<String>,
    policy_version: Option<String>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    status: u16,
    outcome: String,
    attempts: u32,
    providers_tried: String,
    latency_ms: f64,
    ttft_ms: Option<f64>,
    overhead_ms: f64,
    streamed: bool,
    client_api: String,
    provider_api: Option<String>,
}

/// The closed vocabularies of the `&'static str` fields.
const ENDPOINTS: &[&str] = &["chat.completions", "embeddings", "messages"];
const OUTCOMES: &[&str] = &["ok", "refused", "upstream_error", "cancelled"];
const APIS: &[&str] = &["openai", "anthropic"];

fn known(value: &str, vocabulary: &[&'static str]) -> &'static str {
    vocabulary
        .iter()
        .copied()
        .find(|v| *v == value)
        .unwrap_or("unknown")
}

impl<'de> serde::Deserialize<'de> for UsageRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let o = Owned::deserialize(d)?;
        Ok(UsageRecord {
            request_id: o.request_id,
            time_ms: o.time_ms,
            tenant: o.tenant,
            project: o.project,
            key_id: o.key_id,
            endpoint: known(&o.endpoint, ENDPOINTS),
            model: o.model,
            provider: o.provider,
            upstream_model: o.upstream_model,
            policy_version: o.policy_version,
            prompt_tokens: o.prompt_tokens,
            completion_tokens: o.completion_tokens,
            status: o.status,
            outcome: known(&o.outcome, OUTCOMES),
            attempts: o.attempts,
            providers_tried: o.providers_tried,
            latency_ms: o.latency_ms,
            ttft_ms: o.ttft_ms,
            overhead_ms: o.overhead_ms,
            streamed: o.streamed,
            client_api: known(&o.client_api, APIS),
            provider_api: o.provider_api.as_deref().map(|a| known(a, APIS)),
        })
    }
}
