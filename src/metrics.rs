//! Prometheus metrics (SPEC section 5), on an owned registry so parallel test
//! servers never share state. Every label value comes from configuration or a
//! closed enum: an unknown model is `other`, never the client's string.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Latency buckets in seconds, from 100 µs to 2 min.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Every cordon_* family.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// tenant, provider, model, status (HTTP status code).
    pub requests: IntCounterVec,
    /// tenant, provider, model, streamed ("true"/"false").
    pub request_duration: HistogramVec,
    /// provider, model.
    pub upstream_duration: HistogramVec,
    /// provider.
    pub gateway_overhead: HistogramVec,
    /// provider, model.
    pub time_to_first_token: HistogramVec,
    /// tenant, provider, model, direction ("prompt" | "completion").
    pub tokens: IntCounterVec,
    /// client_api, provider_api ("openai" | "anthropic"; provider "none"
    /// when no provider was contacted).
    pub protocol_requests: IntCounterVec,
    /// tenant, rule.
    pub policy_denials: IntCounterVec,
    /// tenant, from (provider that failed).
    pub failovers: IntCounterVec,
    /// tenant.
    pub rate_limited: IntCounterVec,
    pub in_flight: IntGauge,
    /// result ("success" | "failure").
    pub config_reloads: IntCounterVec,
    pub usage_spool_depth: IntGauge,
    /// provider: Unix time of its earliest certification expiry or review date.
    pub attestation_expiry: GaugeVec,
    /// limit: which bound a client or provider ran into (see [`Limit`]).
    pub limits_exceeded: IntCounterVec,
    /// result: what a key-cache miss's store lookup found
    /// ([`crate::auth::Lookup`]: "found" | "unknown" | "limited" | "error").
    pub key_lookups: IntCounterVec,
}

/// A bound on what a client or a provider controls (`[server]` keys), as
/// the label of `cordon_limits_exceeded_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The request body did not arrive in time (408).
    BodyReadTimeout,
    /// The request body is larger than `max_body_bytes` (413).
    BodyBytes,
    /// The request body nests deeper than `max_json_depth` (400).
    JsonDepth,
    /// A provider's event outgrew `max_event_bytes`.
    EventBytes,
    /// A provider's answer outgrew `max_answer_bytes`.
    AnswerBytes,
    /// A stream ran past `max_stream_ms`.
    StreamDuration,
    /// An exchange was still running at the drain deadline.
    Drain,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::BodyReadTimeout => "body_read_timeout",
            Limit::BodyBytes => "body_bytes",
            Limit::JsonDepth => "json_depth",
            Limit::EventBytes => "event_bytes",
            Limit::AnswerBytes => "answer_bytes",
            Limit::StreamDuration => "stream_duration",
            Limit::Drain => "drain",
        }
    }
}

impl Metrics {
    /// Counts one request that ran into `limit`.
    pub fn limit_exceeded(&self, limit: Limit) {
        self.limits_exceeded
            .with_label_values(&[limit.as_str()])
            .inc();
    }

    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).ok();
            register(&registry, c)
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
            register(&registry, HistogramVec::new(opts, labels).ok())
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, GaugeVec::new(Opts::new(name, help), labels).ok())
        };
        let int_gauge =
            |name: &str, help: &str| register(&registry, IntGauge::new(name, help).ok());

        Self {
            requests: counter(
                "cordon_requests_total",
                "Client requests by tenant, provider, model and HTTP status.",
                &["tenant", "provider", "model", "status"],
            ),
            protocol_requests: counter(
                "cordon_protocol_requests_total",
                "Client requests by the protocol the client spoke and the provider's protocol.",
                &["client_api", "provider_api"],
            ),
            request_duration: histogram(
                "cordon_request_duration_seconds",
                "Time from request received to last byte sent.",
                &["tenant", "provider", "model", "streamed"],
            ),
            upstream_duration: histogram(
                "cordon_upstream_duration_seconds",
                "Time spent waiting on providers, all attempts included.",
                &["provider", "model"],
            ),
            gateway_overhead: histogram(
                "cordon_gateway_overhead_seconds",
                "Request duration minus upstream duration: what cordon itself adds.",
                &["provider"],
            ),
            time_to_first_token: histogram(
                "cordon_time_to_first_token_seconds",
                "Time from request received to the first streamed content sent.",
                &["provider", "model"],
            ),
            tokens: counter(
                "cordon_tokens_total",
                "Tokens as reported by providers, by direction.",
                &["tenant", "provider", "model", "direction"],
            ),
            policy_denials: counter(
                "cordon_policy_denials_total",
                "Requests refused because no provider was eligible, by the first rule failed.",
                &["tenant", "rule"],
            ),
            failovers: counter(
                "cordon_failovers_total",
                "Attempts abandoned for the next eligible provider.",
                &["tenant", "from"],
            ),
            rate_limited: counter(
                "cordon_rate_limited_total",
                "Requests refused by rate limits.",
                &["tenant"],
            ),
            in_flight: int_gauge("cordon_in_flight_requests", "Requests being served."),
            config_reloads: counter(
                "cordon_config_reloads_total",
                "Configuration reloads by result.",
                &["result"],
            ),
            usage_spool_depth: int_gauge(
                "cordon_usage_spool_depth",
                "Usage records waiting to be written to the store.",
            ),
            attestation_expiry: gauge_vec(
                "cordon_provider_attestation_expiry_timestamp_seconds",
                "Earliest certification expiry or review date of each provider (Unix time).",
                &["provider"],
            ),
            limits_exceeded: counter(
                "cordon_limits_exceeded_total",
                "Requests that ran into a bound on what a client or provider controls.",
                &["limit"],
            ),
            key_lookups: counter(
                "cordon_key_lookups_total",
                "Store lookups of key ids missing from the key cache, by result \
                 (limited: refused without a lookup, over the bound per second).",
                &["result"],
            ),
            registry,
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        // Encoding to a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a collector built from constant, valid options.
fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    c: Option<C>,
) -> C {
    match c {
        Some(c) => {
            let _ = registry.register(Box::new(c.clone()));
            c
        }
        None => unreachable_metric(),
    }
}

#[expect(
    clippy::panic,
    reason = "metric options are constants; invalid ones are a programming error caught by tests"
)]
fn unreachable_metric<C>() -> C {
    panic!("invalid metric definition")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exposed_once_used() {
        let m = Metrics::new();
        m.requests
            .with_label_values(&["acme", "azure-fr", "gpt-4o", "200"])
            .inc();
        m.in_flight.set(2);
        let text = m.encode();
        assert!(text.contains(r#"cordon_requests_total{model="gpt-4o",provider="azure-fr",status="200",tenant="acme"} 1"#), "{text}");
        assert!(text.contains("cordon_in_flight_requests 2"));
        assert!(text.contains("cordon_usage_spool_depth 0"));
    }
}
