//! SPEC section 1 invariants 2, 3 and 5 and the section 5 records, checked on
//! the real `cordon serve` from the outside: what it leaves on disk (store,
//! logs at TRACE), what `/metrics` exposes, and the usage records it writes.

#![expect(clippy::unwrap_used, reason = "test code")]
#![expect(clippy::panic, reason = "test code")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::records::{contains_bytes, files_containing, key_hashes, usage_rows};
use common::{Behaviour, EU_TERMS, Gateway, GatewayBuilder, MockProvider, US_TERMS, chat};
use cordon::store::{GroupBy, UsageQuery, UsageTotal};
use sha2::{Digest, Sha256};

const EU_ONLY: &str = "[data]\nprocessing_in = [\"EEA\"]\n";
/// Upper bound for anything the tests wait on; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(15);

/// A string that appears nowhere unless a test put it there.
fn canary() -> String {
    format!("canary-{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// `eu` serves `gpt-4o` and `text-embedding-3-small` from France; `us`
/// serves `gpt-us` from the US, which tenant `acme` (EEA only) may not use.
struct Setup {
    eu: MockProvider,
    us: MockProvider,
    gw: Gateway,
}

async fn setup(eu_name: &str) -> Setup {
    let eu = MockProvider::start(eu_name).await;
    let us = MockProvider::start("us").await;
    let gw = GatewayBuilder::new()
        .provider(
            "eu",
            &eu,
            r#""gpt-4o" = "gpt-4o-2024-08-06", "text-embedding-3-small" = "text-embedding-3-small""#,
            EU_TERMS,
        )
        .provider("us", &us, r#""gpt-us" = "gpt-4o""#, US_TERMS)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    Setup { eu, us, gw }
}

/// Sends `body` as is; returns the status and the whole response body.
async fn send(
    gw: &Gateway,
    path: &str,
    request_id: &str,
    body: impl Into<String>,
) -> (u16, String) {
    let resp = common::http()
        .post(gw.url(path))
        .bearer_auth(&gw.keys[0])
        .header("content-type", "application/json")
        .header("x-request-id", request_id)
        .body(body.into())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

fn error_code(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

fn stream_chunks(prompt_tokens: u64, completion_tokens: u64) -> Behaviour {
    Behaviour::Stream {
        chunks: 3,
        delay: Duration::from_millis(5),
        prompt_tokens,
        completion_tokens,
    }
}

async fn scrape(gw: &Gateway) -> (String, prom::Exposition) {
    let resp = common::http()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = resp.text().await.unwrap();
    let parsed = prom::parse(&text).unwrap_or_else(|e| panic!("bad exposition: {e}\n{text}"));
    (text, parsed)
}

/// Scrapes until `ready` holds (at most `PATIENCE`), then returns that scrape.
async fn scrape_when(
    gw: &Gateway,
    what: &str,
    ready: impl Fn(&prom::Exposition) -> bool,
) -> (String, prom::Exposition) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (text, m) = scrape(gw).await;
        if ready(&m) {
            return (text, m);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// === the mixed workload of the metrics and usage tests ===

const PROMPT: u64 = 12;
const COMPLETION: u64 = 5;
const STREAM_PROMPT: u64 = 7;
const STREAM_COMPLETION: u64 = 3;
const EMBED_PROMPT: u64 = 11;

/// Nine requests from tenant `acme`: six reach `eu` (three chats, a stream,
/// an embedding, one the provider answers 400), three are refused (policy,
/// unknown model, malformed JSON).
async fn mixed_workload(s: &Setup) {
    let gw = &s.gw;
    s.eu.set(Behaviour::Ok {
        prompt_tokens: PROMPT,
        completion_tokens: COMPLETION,
    });
    for i in 1..=3 {
        let (st, body) = send(
            gw,
            "/v1/chat/completions",
            &format!("chat-{i}"),
            chat("gpt-4o", "hello").to_string(),
        )
        .await;
        assert_eq!(st, 200, "{body}");
    }

    s.eu.set(stream_chunks(STREAM_PROMPT, STREAM_COMPLETION));
    let mut body = chat("gpt-4o", "hello");
    body["stream"] = true.into();
    let (st, text) = send(gw, "/v1/chat/completions", "stream-1", body.to_string()).await;
    assert_eq!(st, 200, "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    s.eu.set(Behaviour::Ok {
        prompt_tokens: EMBED_PROMPT,
        completion_tokens: 0,
    });
    let body = serde_json::json!({"model": "text-embedding-3-small", "input": "hello"});
    let (st, text) = send(gw, "/v1/embeddings", "embed-1", body.to_string()).await;
    assert_eq!(st, 200, "{text}");

    let (st, text) = send(
        gw,
        "/v1/chat/completions",
        "denied-1",
        chat("gpt-us", "hello").to_string(),
    )
    .await;
    assert_eq!(
        (st, error_code(&text).as_str()),
        (403, "policy_denied"),
        "{text}"
    );

    let (st, text) = send(
        gw,
        "/v1/chat/completions",
        "unknown-1",
        chat("no-such-model-xyz", "hello").to_string(),
    )
    .await;
    assert_eq!(
        (st, error_code(&text).as_str()),
        (404, "model_not_found"),
        "{text}"
    );

    let (st, text) = send(
        gw,
        "/v1/chat/completions",
        "badjson-1",
        r#"{"model":"gpt-4o","messages":["#,
    )
    .await;
    assert_eq!(
        (st, error_code(&text).as_str()),
        (400, "invalid_request"),
        "{text}"
    );

    s.eu.set(Behaviour::EchoError(400));
    let (st, text) = send(
        gw,
        "/v1/chat/completions",
        "upstream400-1",
        chat("gpt-4o", "hello").to_string(),
    )
    .await;
    assert_eq!(
        st, 400,
        "the provider's own 400 is the client's answer: {text}"
    );

    assert_eq!(s.eu.count(), 6);
    assert_eq!(
        s.us.count(),
        0,
        "the US provider is not eligible and must receive nothing"
    );
}

// === invariant 2: prompts stay in memory ===

#[tokio::test]
async fn prompts_and_completions_never_reach_disk_logs_or_metrics() {
    let canary = canary();
    // The mock's name is in every completion it writes, so completions carry the canary too.
    let s = setup(&format!("{canary}-provider")).await;
    let gw = &s.gw;
    let prompt = format!("my secret is {canary}");
    let path = "/v1/chat/completions";

    // A chat with tool arguments; the completion comes back with the canary.
    s.eu.set(Behaviour::Ok {
        prompt_tokens: 3,
        completion_tokens: 2,
    });
    let mut body = chat("gpt-4o", &prompt);
    body["messages"].as_array_mut().unwrap().push(serde_json::json!({
        "role": "assistant",
        "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": format!("{{\"q\":\"{canary}\"}}")}}],
    }));
    let (st, text) = send(gw, path, "inv2-chat", body.to_string()).await;
    assert_eq!(st, 200, "{text}");
    assert!(
        text.contains(&canary),
        "the completion carries the canary (else it is not tested)"
    );

    // A stream, read to its end.
    s.eu.set(stream_chunks(3, 2));
    let mut body = chat("gpt-4o", &prompt);
    body["stream"] = true.into();
    let (st, text) = send(gw, path, "inv2-stream", body.to_string()).await;
    assert_eq!(st, 200, "{text}");
    assert!(
        text.contains(&canary) && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );

    // A stream the client abandons half way.
    s.eu.set(Behaviour::Stream {
        chunks: 2000,
        delay: Duration::from_millis(20),
        prompt_tokens: 3,
        completion_tokens: 2,
    });
    let mut resp = common::http()
        .post(gw.url(path))
        .bearer_auth(&gw.keys[0])
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let first = tokio::time::timeout(PATIENCE, resp.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(contains_bytes(&first, canary.as_bytes()));
    drop(resp);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while s.eu.streams_aborted() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "abandoned stream not cancelled upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Embeddings input.
    s.eu.set(Behaviour::Ok {
        prompt_tokens: 3,
        completion_tokens: 0,
    });
    let body = serde_json::json!({"model": "text-embedding-3-small", "input": [prompt.clone()]});
    let (st, text) = send(gw, "/v1/embeddings", "inv2-embed", body.to_string()).await;
    assert_eq!(st, 200, "{text}");

    // Refused by policy: cordon's own message must not quote the prompt.
    let (st, text) = send(gw, path, "inv2-denied", chat("gpt-us", &prompt).to_string()).await;
    assert_eq!(
        (st, error_code(&text).as_str()),
        (403, "policy_denied"),
        "{text}"
    );
    assert!(
        !text.contains(&canary),
        "403 message quotes the prompt: {text}"
    );

    // The provider refuses and quotes the prompt back: the client gets the
    // provider's status and error type in cordon's words, never its text.
    s.eu.set(Behaviour::EchoError(400));
    let (st, text) = send(
        gw,
        path,
        "inv2-upstream400",
        chat("gpt-4o", &prompt).to_string(),
    )
    .await;
    assert_eq!(st, 400, "{text}");
    assert!(
        !text.contains(&canary) && text.contains("invalid_request_error"),
        "the provider's error is scrubbed: {text}"
    );

    // The provider fails with the prompt in a 5xx body: cordon answers with
    // its own message, which must not quote it.
    s.eu.set(Behaviour::EchoError(500));
    let (st, text) = send(
        gw,
        path,
        "inv2-upstream500",
        chat("gpt-4o", &prompt).to_string(),
    )
    .await;
    assert_eq!(
        (st, error_code(&text).as_str()),
        (502, "upstream_error"),
        "{text}"
    );
    assert!(
        !text.contains(&canary),
        "502 message quotes the provider's body: {text}"
    );

    // Malformed JSON, and a well-formed body with a field of the wrong type.
    let bad = format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{canary}"}}]"#);
    let (st, text) = send(gw, path, "inv2-badjson", bad).await;
    assert_eq!(
        (st, error_code(&text).as_str()),
        (400, "invalid_request"),
        "{text}"
    );
    assert!(
        !text.contains(&canary),
        "400 message quotes the body: {text}"
    );
    let wrong = serde_json::json!({"model": "gpt-4o", "stream": canary.clone(), "messages": []});
    let (st, text) = send(gw, path, "inv2-wrongtype", wrong.to_string()).await;
    assert_eq!(
        (st, error_code(&text).as_str()),
        (400, "invalid_request"),
        "{text}"
    );
    assert!(
        !text.contains(&canary),
        "400 message quotes the body: {text}"
    );
    assert_eq!(s.us.count(), 0);

    let (metrics, _) = scrape(gw).await;
    assert!(
        !metrics.contains(&canary),
        "the canary is in /metrics:\n{metrics}"
    );

    let dir = s.gw.stop().await;
    let leaks = files_containing(dir.path(), canary.as_bytes());
    assert!(leaks.is_empty(), "the canary was written to {leaks:?}");

    // The search covered a TRACE log and a store that holds the records.
    let log = std::fs::read_to_string(dir.path().join("cordon.log")).unwrap();
    assert!(
        log.contains("TRACE"),
        "the log was not captured at TRACE level"
    );
    assert!(log.contains("request finished"), "{log}");
    let rows = usage_rows(&dir.path().join("cordon.db")).await;
    assert_eq!(rows.len(), 9, "one usage record per request: {rows:#?}");
}

#[tokio::test]
async fn an_unknown_model_name_is_labelled_and_recorded_as_other_never_as_sent() {
    let canary = canary();
    let s = setup("eu").await;
    let model = format!("gpt-{canary}");
    let (st, text) = send(
        &s.gw,
        "/v1/chat/completions",
        "unknown-chat",
        chat(&model, "hi").to_string(),
    )
    .await;
    assert_eq!(
        (st, error_code(&text).as_str()),
        (404, "model_not_found"),
        "{text}"
    );
    let body = serde_json::json!({"model": model, "input": "hi"});
    let (st, text) = send(&s.gw, "/v1/embeddings", "unknown-embed", body.to_string()).await;
    assert_eq!(
        (st, error_code(&text).as_str()),
        (404, "model_not_found"),
        "{text}"
    );

    let (text, m) = scrape_when(&s.gw, "two requests counted", |m| {
        m.sum("cordon_requests_total", &[]) >= 2.0
    })
    .await;
    assert!(
        !text.contains(&canary),
        "the client's model name is in /metrics:\n{text}"
    );
    assert_eq!(
        m.get(
            "cordon_requests_total",
            &[
                ("tenant", "acme"),
                ("provider", "none"),
                ("model", "other"),
                ("status", "404")
            ]
        ),
        Some(2.0),
        "{text}"
    );

    let dir = s.gw.stop().await;
    let rows = usage_rows(&dir.path().join("cordon.db")).await;
    assert_eq!(rows.len(), 2, "{rows:#?}");
    for r in &rows {
        assert_eq!(r.outcome, "refused", "{r:#?}");
        // src/usage/record.rs: "The public model name the client asked for
        // (as configured; `other` if unknown)".
        assert_eq!(
            r.model, "other",
            "a model name no configuration knows is stored as sent: {r:#?}"
        );
    }
    let leaks = files_containing(dir.path(), canary.as_bytes());
    assert!(
        leaks.is_empty(),
        "the client's model name was written to {leaks:?}"
    );
}

// === invariant 3: no raw secrets at rest ===

#[tokio::test]
async fn client_keys_are_kept_only_as_the_sha256_of_their_secret() {
    let s = setup("eu").await;
    let gw = &s.gw;
    let raw = gw.keys[0].clone();
    let id = gw.key_ids[0].clone();
    let secret = raw.strip_prefix(&format!("cdn_{id}_")).unwrap().to_owned();
    assert!(secret.len() >= 32);
    let hash = hex::encode(Sha256::digest(secret.as_bytes()));
    // A key with a real id and a wrong secret, and one that is not a key.
    let wrong_secret = format!("{}Zz", &secret[..secret.len() - 2]);
    let wrong = format!("cdn_{id}_{wrong_secret}");
    let junk = format!("cdn_{}", "Q".repeat(40));

    let client = common::http();
    let body = chat("gpt-4o", "hello").to_string();
    let url = gw.url("/v1/chat/completions");
    let r = client
        .post(&url)
        .bearer_auth(&raw)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(&url)
        .header("x-api-key", &raw)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for bad in [&wrong, &junk] {
        let r = client
            .post(&url)
            .bearer_auth(bad)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(bad.as_str()),
            "the 401 quotes the key: {text}"
        );
    }
    for r in s.eu.received() {
        for (k, v) in &r.headers {
            assert!(!v.contains(&secret), "client key forwarded upstream in {k}");
        }
    }
    let (metrics, _) = scrape(gw).await;
    assert!(!metrics.contains(&secret) && !metrics.contains(&wrong_secret));

    let dir = s.gw.stop().await;
    for (what, needle) in [
        ("the raw key", raw.as_str()),
        ("the key's secret", secret.as_str()),
        ("a presented wrong secret", wrong_secret.as_str()),
        ("a presented malformed key", junk.as_str()),
    ] {
        let leaks = files_containing(dir.path(), needle.as_bytes());
        assert!(leaks.is_empty(), "{what} was written to {leaks:?}");
    }
    let in_store: Vec<_> = files_containing(dir.path(), hash.as_bytes());
    assert!(
        in_store.iter().any(|p| p
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("cordon.db")),
        "the SHA-256 hex of the secret is in the store: {in_store:?}"
    );
    assert_eq!(key_hashes(&dir.path().join("cordon.db")).await, vec![hash]);
}

// === metrics (SPEC section 5) ===

#[tokio::test]
async fn metrics_count_requests_denials_tokens_and_latencies() {
    let s = setup("eu").await;
    let gw = &s.gw;
    for path in ["/healthz", "/readyz"] {
        let r = common::http().get(gw.admin_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    mixed_workload(&s).await;

    let (text, m) = scrape_when(gw, "nine requests counted and the spool empty", |m| {
        m.sum("cordon_requests_total", &[]) >= 9.0
            && m.get("cordon_usage_spool_depth", &[]) == Some(0.0)
    })
    .await;

    // Every request, under labels from the configuration only.
    let requests: BTreeMap<Vec<String>, f64> = m
        .series("cordon_requests_total")
        .map(|s| {
            let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            (
                vec![l("tenant"), l("provider"), l("model"), l("status")],
                s.value,
            )
        })
        .collect();
    let expected: BTreeMap<Vec<String>, f64> = [
        (["acme", "eu", "gpt-4o", "200"], 4.0),
        (["acme", "eu", "gpt-4o", "400"], 1.0),
        (["acme", "eu", "text-embedding-3-small", "200"], 1.0),
        (["acme", "none", "gpt-us", "403"], 1.0),
        (["acme", "none", "other", "404"], 1.0),
        (["acme", "none", "other", "400"], 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.iter().map(|s| (*s).to_owned()).collect(), v))
    .collect();
    assert_eq!(requests, expected, "{text}");
    assert!(
        !text.contains("no-such-model-xyz"),
        "a client's model name became a label:\n{text}"
    );
    for s in &m.samples {
        if let Some(model) = s.labels.get("model") {
            assert!(
                ["gpt-4o", "text-embedding-3-small", "gpt-us", "other"].contains(&model.as_str()),
                "unbounded model label: {s:?}"
            );
        }
    }

    let denials: Vec<_> = m.series("cordon_policy_denials_total").collect();
    assert_eq!(denials.len(), 1, "{text}");
    assert_eq!(
        m.get(
            "cordon_policy_denials_total",
            &[("tenant", "acme"), ("rule", "processing_in")]
        ),
        Some(1.0),
        "{text}"
    );

    let tokens = |model: &str, direction: &str| {
        m.get(
            "cordon_tokens_total",
            &[
                ("tenant", "acme"),
                ("provider", "eu"),
                ("model", model),
                ("direction", direction),
            ],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(
        tokens("gpt-4o", "prompt"),
        (3 * PROMPT + STREAM_PROMPT) as f64,
        "{text}"
    );
    assert_eq!(
        tokens("gpt-4o", "completion"),
        (3 * COMPLETION + STREAM_COMPLETION) as f64,
        "{text}"
    );
    assert_eq!(
        tokens("text-embedding-3-small", "prompt"),
        EMBED_PROMPT as f64,
        "{text}"
    );
    assert_eq!(
        tokens("text-embedding-3-small", "completion"),
        0.0,
        "{text}"
    );
    assert_eq!(
        m.sum("cordon_tokens_total", &[]),
        (3 * PROMPT + STREAM_PROMPT + 3 * COMPLETION + STREAM_COMPLETION + EMBED_PROMPT) as f64,
        "{text}"
    );

    // Histograms: one observation per request that reached the provider.
    let count = |name: &str, labels: &[(&str, &str)]| {
        m.get(&format!("{name}_count"), labels).unwrap_or(0.0)
    };
    assert_eq!(
        count("cordon_gateway_overhead_seconds", &[("provider", "eu")]),
        6.0,
        "{text}"
    );
    assert_eq!(
        count(
            "cordon_time_to_first_token_seconds",
            &[("provider", "eu"), ("model", "gpt-4o")]
        ),
        1.0,
        "{text}"
    );
    assert!(
        m.get(
            "cordon_time_to_first_token_seconds_sum",
            &[("provider", "eu"), ("model", "gpt-4o")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        m.sum(
            "cordon_upstream_duration_seconds_count",
            &[("provider", "eu")]
        ),
        6.0,
        "{text}"
    );
    assert_eq!(
        m.sum("cordon_request_duration_seconds_count", &[]),
        9.0,
        "{text}"
    );
    assert_eq!(
        m.sum(
            "cordon_request_duration_seconds_count",
            &[("streamed", "true")]
        ),
        1.0,
        "{text}"
    );

    assert_eq!(m.get("cordon_in_flight_requests", &[]), Some(0.0), "{text}");
    assert_eq!(m.get("cordon_usage_spool_depth", &[]), Some(0.0), "{text}");
    assert_eq!(m.sum("cordon_failovers_total", &[]), 0.0, "{text}");
    assert_eq!(m.sum("cordon_rate_limited_total", &[]), 0.0, "{text}");
}

// === invariant 5 and the usage record (SPEC section 5) ===

#[tokio::test]
async fn every_request_yields_one_usage_record_with_the_providers_token_counts() {
    let s = setup("eu").await;
    mixed_workload(&s).await;
    let key_id = s.gw.key_ids[0].clone();
    scrape_when(&s.gw, "the usage spool to drain", |m| {
        m.get("cordon_usage_spool_depth", &[]) == Some(0.0)
    })
    .await;

    let dir = s.gw.stop().await;
    let db = dir.path().join("cordon.db");
    let rows = usage_rows(&db).await;
    let by_id: BTreeMap<&str, &common::records::UsageRow> =
        rows.iter().map(|r| (r.request_id.as_str(), r)).collect();
    assert_eq!(rows.len(), 9, "one record per request: {rows:#?}");
    assert_eq!(by_id.len(), 9, "request ids are distinct: {rows:#?}");
    for r in &rows {
        assert_eq!(
            (r.tenant.as_str(), r.key_id.as_str()),
            ("acme", key_id.as_str()),
            "{r:#?}"
        );
    }

    let served = |id: &str| {
        let r = by_id
            .get(id)
            .copied()
            .unwrap_or_else(|| panic!("no record for {id}: {rows:#?}"));
        assert_eq!(r.provider.as_deref(), Some("eu"), "{r:#?}");
        assert_eq!(
            (r.attempts, r.providers_tried.as_str()),
            (1, "eu"),
            "{r:#?}"
        );
        r
    };
    for id in ["chat-1", "chat-2", "chat-3"] {
        let r = served(id);
        assert_eq!(
            (r.status, r.outcome.as_str(), r.streamed),
            (200, "ok", false),
            "{r:#?}"
        );
        assert_eq!(
            (r.endpoint.as_str(), r.model.as_str()),
            ("chat.completions", "gpt-4o")
        );
        assert_eq!(r.upstream_model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(
            (r.prompt_tokens, r.completion_tokens),
            (Some(PROMPT as i64), Some(COMPLETION as i64)),
            "{r:#?}"
        );
    }
    let r = served("stream-1");
    assert_eq!(
        (r.status, r.outcome.as_str(), r.streamed),
        (200, "ok", true),
        "{r:#?}"
    );
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens),
        (Some(STREAM_PROMPT as i64), Some(STREAM_COMPLETION as i64)),
        "{r:#?}"
    );
    assert!(
        r.ttft_ms.is_some_and(|t| t > 0.0 && t <= r.latency_ms),
        "{r:#?}"
    );
    let r = served("embed-1");
    assert_eq!((r.status, r.outcome.as_str()), (200, "ok"), "{r:#?}");
    assert_eq!(
        (r.endpoint.as_str(), r.model.as_str()),
        ("embeddings", "text-embedding-3-small")
    );
    assert_eq!(r.prompt_tokens, Some(EMBED_PROMPT as i64), "{r:#?}");
    let r = served("upstream400-1");
    assert_eq!(
        (r.status, r.outcome.as_str()),
        (400, "upstream_error"),
        "{r:#?}"
    );
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens),
        (None, None),
        "{r:#?}"
    );

    for (id, status) in [("denied-1", 403), ("unknown-1", 404), ("badjson-1", 400)] {
        let r = by_id
            .get(id)
            .unwrap_or_else(|| panic!("no record for refused {id}: {rows:#?}"));
        assert_eq!(
            (r.status, r.outcome.as_str()),
            (status, "refused"),
            "{r:#?}"
        );
        assert_eq!((r.provider.as_deref(), r.attempts), (None, 0), "{r:#?}");
        assert_eq!(
            (r.prompt_tokens, r.completion_tokens),
            (None, None),
            "{r:#?}"
        );
    }
    assert!(
        rows.iter()
            .all(|r| r.latency_ms >= 0.0 && r.overhead_ms >= 0.0),
        "{rows:#?}"
    );

    // The store's own totals agree.
    let store = cordon::store::Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let totals = |group_by| {
        let store = store.clone();
        async move {
            store
                .usage_totals(&UsageQuery {
                    tenant: Some("acme".to_owned()),
                    since_ms: 0,
                    until_ms: i64::MAX,
                    group_by,
                })
                .await
                .unwrap()
        }
    };
    let prompt = (3 * PROMPT + STREAM_PROMPT + EMBED_PROMPT) as i64;
    let completion = (3 * COMPLETION + STREAM_COMPLETION) as i64;
    assert_eq!(
        totals(GroupBy::None).await,
        vec![UsageTotal {
            group: cordon::store::ALL.to_owned(),
            requests: 9,
            prompt_tokens: prompt,
            completion_tokens: completion,
            refused: 3,
        }]
    );
    assert_eq!(
        totals(GroupBy::Provider).await,
        vec![
            UsageTotal {
                group: cordon::store::NO_PROVIDER.to_owned(),
                requests: 3,
                prompt_tokens: 0,
                completion_tokens: 0,
                refused: 3,
            },
            UsageTotal {
                group: "eu".to_owned(),
                requests: 6,
                prompt_tokens: prompt,
                completion_tokens: completion,
                refused: 0,
            },
        ]
    );
    store.close().await;
}

/// A strict reader of the Prometheus text exposition format (version 0.0.4):
/// every sample belongs to a family declared by a `# TYPE` line before it,
/// each family's lines are contiguous, no series appears twice, label values
/// use only the format's escapes, and histograms are consistent.
mod prom {
    use std::collections::{BTreeMap, BTreeSet};

    pub type Labels = BTreeMap<String, String>;

    #[derive(Debug, Clone, PartialEq)]
    pub struct Sample {
        pub name: String,
        pub labels: Labels,
        pub value: f64,
    }

    #[derive(Debug, Default)]
    pub struct Exposition {
        /// Family name → type.
        pub families: BTreeMap<String, String>,
        pub samples: Vec<Sample>,
    }

    impl Exposition {
        /// The samples named `name`.
        pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
            self.samples.iter().filter(move |s| s.name == name)
        }

        /// The value of the series with exactly these labels.
        pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let want: Labels = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            self.series(name)
                .find(|s| s.labels == want)
                .map(|s| s.value)
        }

        /// The sum over the series of `name` that have (at least) these labels.
        pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
            self.series(name)
                .filter(|s| {
                    labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                })
                .map(|s| s.value)
                .sum()
        }
    }

    pub fn parse(text: &str) -> Result<Exposition, String> {
        if !text.is_empty() && !text.ends_with('\n') {
            return Err("the exposition does not end with a newline".into());
        }
        let mut out = Exposition::default();
        let mut helped = BTreeSet::new();
        let mut with_samples = BTreeSet::new();
        let mut closed = BTreeSet::new();
        let mut current: Option<String> = None;
        let mut series = BTreeSet::new();
        let mut enter = |family: &str, current: &mut Option<String>| -> Result<(), String> {
            if current.as_deref() != Some(family) {
                if let Some(prev) = current.take() {
                    closed.insert(prev);
                }
                if closed.contains(family) {
                    return Err(format!("the lines of `{family}` are not contiguous"));
                }
                *current = Some(family.to_owned());
            }
            Ok(())
        };
        for (n, line) in text.lines().enumerate() {
            let at = |m: &str| format!("line {}: {m}: {line:?}", n + 1);
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('#') {
                let mut parts = rest.trim_start_matches(' ').splitn(3, ' ');
                let keyword = parts.next().unwrap_or_default();
                if keyword != "HELP" && keyword != "TYPE" {
                    continue; // a comment
                }
                let name = parts.next().ok_or_else(|| at("no metric name"))?;
                if !metric_name(name) {
                    return Err(at("invalid metric name"));
                }
                enter(name, &mut current).map_err(|e| at(&e))?;
                let arg = parts.next().unwrap_or_default();
                if keyword == "HELP" {
                    if !helped.insert(name.to_owned()) {
                        return Err(at("second HELP"));
                    }
                    unescape(arg, false).map_err(|e| at(&e))?;
                } else {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                        return Err(at("unknown type"));
                    }
                    if with_samples.contains(name) {
                        return Err(at("TYPE after the family's samples"));
                    }
                    if out
                        .families
                        .insert(name.to_owned(), arg.to_owned())
                        .is_some()
                    {
                        return Err(at("second TYPE"));
                    }
                }
                continue;
            }
            let sample = sample(line).map_err(|e| at(&e))?;
            let (family, kind) = family_of(&out.families, &sample.name)
                .ok_or_else(|| at("sample of no declared family"))?;
            enter(&family, &mut current).map_err(|e| at(&e))?;
            with_samples.insert(family.clone());
            match kind.as_str() {
                "histogram" => {
                    let bucket = sample.name.ends_with("_bucket");
                    if bucket != sample.labels.contains_key("le") {
                        return Err(at("`le` belongs on buckets only"));
                    }
                }
                "counter" if !(sample.value.is_finite() && sample.value >= 0.0) => {
                    return Err(at("a counter is finite and not negative"));
                }
                _ => {}
            }
            if !series.insert((sample.name.clone(), sample.labels.clone())) {
                return Err(at("duplicate series"));
            }
            out.samples.push(sample);
        }
        check_histograms(&out)?;
        Ok(out)
    }

    /// The declared family a sample name belongs to, with its type.
    fn family_of(families: &BTreeMap<String, String>, name: &str) -> Option<(String, String)> {
        if let Some(kind) = families.get(name)
            && kind != "histogram"
        {
            return Some((name.to_owned(), kind.clone()));
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && let Some(kind) = families.get(base)
                && (kind == "histogram" || (kind == "summary" && suffix != "_bucket"))
            {
                return Some((base.to_owned(), kind.clone()));
            }
        }
        None
    }

    /// A histogram bucket: its upper bound and its cumulative count.
    type Bucket = (f64, f64);

    /// Buckets cumulative, ending at `+Inf` equal to `_count`, with a `_sum`.
    fn check_histograms(out: &Exposition) -> Result<(), String> {
        for (family, kind) in &out.families {
            if kind != "histogram" {
                continue;
            }
            let mut groups: BTreeMap<Vec<(String, String)>, Vec<Bucket>> = BTreeMap::new();
            for s in out.series(&format!("{family}_bucket")) {
                let le = s.labels["le"].as_str();
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse::<f64>()
                        .map_err(|_| format!("{family}: bad le {le}"))?
                };
                let key: Vec<_> = s
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "le")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                groups.entry(key).or_default().push((le, s.value));
            }
            for (key, mut buckets) in groups {
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                if buckets
                    .windows(2)
                    .any(|w| w[1].1 < w[0].1 || w[1].0 == w[0].0)
                {
                    return Err(format!("{family}{key:?}: buckets are not cumulative"));
                }
                let labels: Vec<(&str, &str)> =
                    key.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let count = out.get(&format!("{family}_count"), &labels);
                let inf = buckets.last().filter(|b| b.0 == f64::INFINITY).map(|b| b.1);
                if inf.is_none() || inf != count {
                    return Err(format!(
                        "{family}{key:?}: +Inf bucket {inf:?} is not _count {count:?}"
                    ));
                }
                if out.get(&format!("{family}_sum"), &labels).is_none() {
                    return Err(format!("{family}{key:?}: no _sum"));
                }
            }
        }
        Ok(())
    }

    fn metric_name(s: &str) -> bool {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
    }

    fn label_name(s: &str) -> bool {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
    }

    /// `name{l="v",…} value [timestamp]`
    fn sample(line: &str) -> Result<Sample, String> {
        let end = line.find(['{', ' ']).ok_or("no value")?;
        let name = &line[..end];
        if !metric_name(name) {
            return Err("invalid metric name".into());
        }
        let mut rest = &line[end..];
        let mut labels = Labels::new();
        if let Some(mut r) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = r.strip_prefix('}') {
                    r = after;
                    break;
                }
                let eq = r.find('=').ok_or("label without `=`")?;
                let key = &r[..eq];
                if !label_name(key) {
                    return Err(format!("invalid label name {key:?}"));
                }
                let quoted = r[eq + 1..]
                    .strip_prefix('"')
                    .ok_or("label value not quoted")?;
                let (value, after) = quoted_value(quoted)?;
                if labels.insert(key.to_owned(), value).is_some() {
                    return Err(format!("label {key} twice"));
                }
                r = match after.strip_prefix(',') {
                    Some(a) => a,
                    None if after.starts_with('}') => after,
                    None => return Err("expected `,` or `}` after a label".into()),
                };
            }
            rest = r;
        }
        let rest = rest
            .strip_prefix(' ')
            .ok_or("expected one space before the value")?;
        let mut fields = rest.split(' ');
        let value = fields.next().ok_or("no value")?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v if v.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => {
                v.parse().map_err(|_| format!("bad value {v:?}"))?
            }
            v => return Err(format!("bad value {v:?}")),
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| format!("bad timestamp {ts:?}"))?;
        }
        if fields.next().is_some() {
            return Err("trailing fields".into());
        }
        Ok(Sample {
            name: name.to_owned(),
            labels,
            value,
        })
    }

    /// A label value up to its closing quote, unescaped; and what follows.
    fn quoted_value(s: &str) -> Result<(String, &str), String> {
        let mut out = String::new();
        let mut chars = s.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((out, &s[i + 1..])),
                '\\' => match chars.next() {
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, 'n')) => out.push('\n'),
                    other => return Err(format!("bad escape {other:?} in a label value")),
                },
                '\n' => return Err("raw newline in a label value".into()),
                c => out.push(c),
            }
        }
        Err("unterminated label value".into())
    }

    /// HELP text: `\\` and `\n` are its only escapes.
    fn unescape(s: &str, quotes: bool) -> Result<String, String> {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('"') if quotes => out.push('"'),
                other => return Err(format!("bad escape {other:?}")),
            }
        }
        Ok(out)
    }

    #[test]
    fn the_reader_is_strict() {
        let ok = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\",y=\"\"} 3\n\
                  # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n";
        let e = parse(ok).unwrap();
        assert_eq!(e.get("a_total", &[("x", "q\"\\\n"), ("y", "")]), Some(3.0));
        assert_eq!(e.get("h_count", &[]), Some(2.0));
        for bad in [
            "a 1\n",                                                    // no TYPE
            "# TYPE a gauge\na 1",                                      // no final newline
            "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",             // duplicate
            "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"2\"} 1\n", // not contiguous
            "# TYPE a gauge\na{x=1} 1\n",                               // unquoted
            "# TYPE a gauge\na{x=\"\\t\"} 1\n",                         // bad escape
            "# TYPE a gauge\na inf\n",                                  // not the format's infinity
            "# TYPE a counter\na -1\n",                                 // negative counter
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        ] {
            assert!(parse(bad).is_err(), "accepted: {bad:?}");
        }
    }
}
