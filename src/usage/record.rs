//! One usage record per request (SPEC section 5): metadata only. Nothing in
//! here may come from a request or response body except token counts.
//!
//! Its text fields are shared (`Arc<str>`): they are the exchange's own
//! values (tenant, key, provider, model names from the configuration), and
//! the store binds them as they are, without a copy per column.

use std::sync::Arc;

/// What happened to a request, as recorded for billing and audit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UsageRecord {
    pub request_id: Arc<str>,
    /// Unix time in milliseconds when the request arrived.
    pub time_ms: i64,
    pub tenant: Arc<str>,
    pub project: Option<Arc<str>>,
    pub key_id: Arc<str>,
    /// `chat.completions`, `embeddings`, `messages`.
    pub endpoint: &'static str,
    /// The public model name the client asked for (as configured; `other` if unknown).
    pub model: Arc<str>,
    /// The provider that served (or last failed); `None` when refused before routing.
    pub provider: Option<Arc<str>>,
    pub upstream_model: Option<Arc<str>>,
    pub policy_version: Option<Arc<str>>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    /// HTTP status returned to the client.
    pub status: u16,
    /// `ok`, `refused` (never reached a provider), `upstream_error`, `cancelled`.
    pub outcome: &'static str,
    pub attempts: u32,
    /// Providers tried, in order, comma-separated.
    pub providers_tried: Arc<str>,
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

/// The words a record holds besides the vocabularies: the model label of an
/// unknown model, and no provider tried.
const OTHER_WORDS: &[&str] = &["other", "", "unknown"];

/// A word of a closed vocabulary (`endpoint`, `outcome`, the APIs, `other`),
/// as a shared string made once: binding it costs no allocation. Any other
/// text is copied.
pub fn shared_word(word: &'static str) -> Arc<str> {
    static WORDS: std::sync::LazyLock<Vec<(&'static str, Arc<str>)>> =
        std::sync::LazyLock::new(|| {
            [ENDPOINTS, OUTCOMES, APIS, OTHER_WORDS]
                .concat()
                .into_iter()
                .map(|w| (w, Arc::from(w)))
                .collect()
        });
    WORDS
        .iter()
        .find(|(w, _)| *w == word)
        .map_or_else(|| Arc::from(word), |(_, a)| a.clone())
}

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
            request_id: o.request_id.into(),
            time_ms: o.time_ms,
            tenant: o.tenant.into(),
            project: o.project.map(Into::into),
            key_id: o.key_id.into(),
            endpoint: known(&o.endpoint, ENDPOINTS),
            model: o.model.into(),
            provider: o.provider.map(Into::into),
            upstream_model: o.upstream_model.map(Into::into),
            policy_version: o.policy_version.map(Into::into),
            prompt_tokens: o.prompt_tokens,
            completion_tokens: o.completion_tokens,
            status: o.status,
            outcome: known(&o.outcome, OUTCOMES),
            attempts: o.attempts,
            providers_tried: o.providers_tried.into(),
            latency_ms: o.latency_ms,
            ttft_ms: o.ttft_ms,
            overhead_ms: o.overhead_ms,
            streamed: o.streamed,
            client_api: known(&o.client_api, APIS),
            provider_api: o.provider_api.as_deref().map(|a| known(a, APIS)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_words_are_made_once_and_other_text_is_copied() {
        for w in [ENDPOINTS, OUTCOMES, APIS, OTHER_WORDS].concat() {
            let a = shared_word(w);
            assert_eq!(&*a, w);
            assert!(Arc::ptr_eq(&a, &shared_word(w)), "{w} made twice");
        }
        let a = shared_word("not-a-word");
        assert_eq!(&*a, "not-a-word");
        assert!(!Arc::ptr_eq(&a, &shared_word("not-a-word")));
    }

    #[test]
    fn a_record_reads_back_from_its_json() {
        let r = UsageRecord {
            request_id: "req-1".into(),
            time_ms: 7,
            tenant: "t \"q\" é".into(),
            project: Some("p".into()),
            key_id: "abcd1234".into(),
            endpoint: "messages",
            model: "m".into(),
            provider: Some("eu".into()),
            upstream_model: None,
            policy_version: Some("0123456789ab".into()),
            prompt_tokens: Some(1),
            completion_tokens: None,
            status: 200,
            outcome: "cancelled",
            attempts: 1,
            providers_tried: "eu".into(),
            latency_ms: 1.5,
            ttft_ms: None,
            overhead_ms: 0.25,
            streamed: true,
            client_api: "anthropic",
            provider_api: Some("openai"),
        };
        let json = serde_json::to_string(&r).unwrap();
        let back: UsageRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
