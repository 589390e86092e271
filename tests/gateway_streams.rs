//! Streamed chat completions end to end: the real `cordon serve` relaying a
//! mock provider's server-sent events.

#![expect(clippy::unwrap_used, reason = "test code")]
#![expect(clippy::panic, reason = "test code")]

mod common;

use std::time::Duration;

use common::records::usage_rows;
use common::{Behaviour, EU_TERMS, Gateway, GatewayBuilder, MockProvider};
use tokio::sync::mpsc::error::TryRecvError;

const EU_ONLY: &str = "[data]\nprocessing_in = [\"EEA\"]\n";
/// Upper bound for anything the tests wait on; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(15);

async fn start() -> (MockProvider, Gateway) {
    let mock = MockProvider::start("eu").await;
    let gw = GatewayBuilder::new()
        .provider("eu", &mock, r#""gpt-4o" = "gpt-4o-2024-08-06""#, EU_TERMS)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    (mock, gw)
}

fn stream_body(stream_options: Option<serde_json::Value>) -> serde_json::Value {
    let mut v = common::chat("gpt-4o", "tell me a story");
    v["stream"] = true.into();
    v["temperature"] = 0.5.into();
    if let Some(o) = stream_options {
        v["stream_options"] = o;
    }
    v
}

async fn post(gw: &Gateway, request_id: &str, body: &serde_json::Value) -> reqwest::Response {
    common::http()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.keys[0])
        .header("content-type", "application/json")
        .header("x-request-id", request_id)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// The complete events (each with its terminating blank line) in `bytes`.
fn events(bytes: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(bytes).unwrap();
    text.split_inclusive("\n\n")
        .filter(|e| e.ends_with("\n\n"))
        .map(str::to_owned)
        .collect()
}

/// The JSON payload of an event's `data:` line, unless it is `[DONE]`.
fn data(event: &str) -> Option<serde_json::Value> {
    let d = event.trim_end().strip_prefix("data: ")?;
    if d == "[DONE]" {
        return None;
    }
    Some(serde_json::from_str(d).unwrap())
}

/// An event carrying a content delta.
fn is_content(event: &str) -> bool {
    data(event).is_some_and(|v| v["choices"][0]["delta"]["content"].is_string())
}

/// The usage-only chunk: `usage` set and no choices.
fn is_usage_only(event: &str) -> bool {
    data(event).is_some_and(|v| {
        v["usage"].is_object() && v["choices"].as_array().is_some_and(Vec::is_empty)
    })
}

/// Reads the response until it holds a complete content event.
async fn read_until_first_content(resp: &mut reqwest::Response) -> Vec<u8> {
    let mut got = Vec::new();
    while !events(&got).iter().any(|e| is_content(e)) {
        match tokio::time::timeout(PATIENCE, resp.chunk()).await {
            Ok(Ok(Some(c))) => got.extend_from_slice(&c),
            Ok(Ok(None)) => panic!(
                "stream ended before any content event: {}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Err(e)) => panic!("stream failed: {e}"),
            Err(_) => panic!("no content event within {PATIENCE:?}"),
        }
    }
    got
}

async fn read_to_end(resp: &mut reqwest::Response, got: &mut Vec<u8>) {
    loop {
        match tokio::time::timeout(PATIENCE, resp.chunk()).await {
            Ok(Ok(Some(c))) => got.extend_from_slice(&c),
            Ok(Ok(None)) => return,
            Ok(Err(e)) => panic!("stream failed: {e}"),
            Err(_) => panic!("stream did not end within {PATIENCE:?}"),
        }
    }
}

/// Polls `cond` every 20 ms until it holds, at most `PATIENCE`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_first_chunk_reaches_the_client_before_the_provider_sends_its_last() {
    let (mock, gw) = start().await;
    mock.set(Behaviour::Stream {
        chunks: 6,
        delay: Duration::from_millis(200),
        prompt_tokens: 9,
        completion_tokens: 4,
    });
    let mut last = mock.on_last_chunk();

    let mut resp = post(&gw, "stream-first", &stream_body(None)).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut got = read_until_first_content(&mut resp).await;
    // The mock signals just before it writes its last content chunk: if it
    // has not, the client's first event cannot have waited for the end.
    assert_eq!(
        last.try_recv(),
        Err(TryRecvError::Empty),
        "the first event reached the client only once the provider was sending its last chunk: the stream is buffered"
    );

    read_to_end(&mut resp, &mut got).await;
    assert_eq!(
        last.try_recv(),
        Ok(()),
        "the mock signals its last chunk (else this test proves nothing)"
    );
    let ev = events(&got);
    assert_eq!(ev.iter().filter(|e| is_content(e)).count(), 6, "{ev:?}");
    assert_eq!(ev.last().map(String::as_str), Some("data: [DONE]\n\n"));
}

#[tokio::test]
async fn events_are_relayed_unchanged_and_the_usage_chunk_only_when_asked_for() {
    let (mock, gw) = start().await;
    mock.set(Behaviour::Stream {
        chunks: 3,
        delay: Duration::from_millis(5),
        prompt_tokens: 9,
        completion_tokens: 4,
    });
    let cases = [
        ("no-options", None, false),
        (
            "usage-false",
            Some(serde_json::json!({"include_usage": false, "x_other": 1})),
            false,
        ),
        (
            "usage-true",
            Some(serde_json::json!({"include_usage": true})),
            true,
        ),
    ];
    for (i, (id, options, client_wants_usage)) in cases.into_iter().enumerate() {
        let sent_options = options.clone();
        let resp = post(&gw, id, &stream_body(options)).await;
        assert_eq!(resp.status(), 200, "{id}");
        let got = resp.bytes().await.unwrap();

        // The provider's events, as it sent them.
        let sent = events(&mock.sent_streams()[i]);
        assert_eq!(
            sent.iter().filter(|e| is_usage_only(e)).count(),
            1,
            "{id}: the mock sends one usage chunk: {sent:?}"
        );
        let expected: String = sent
            .iter()
            .filter(|e| client_wants_usage || !is_usage_only(e))
            .map(String::as_str)
            .collect();
        assert_eq!(
            std::str::from_utf8(&got).unwrap(),
            expected,
            "{id}: the client must receive the provider's events byte for byte{}",
            if client_wants_usage {
                ", usage chunk included"
            } else {
                ", less the usage chunk it did not ask for"
            }
        );

        // Upstream, usage is always requested; everything else is as sent.
        let up = mock.received()[i].json();
        assert_eq!(up["stream"], true, "{id}");
        assert_eq!(up["stream_options"]["include_usage"], true, "{id}: {up}");
        assert_eq!(up["model"], "gpt-4o-2024-08-06", "{id}");
        assert_eq!(up["temperature"], 0.5, "{id}");
        assert_eq!(up["messages"][0]["content"], "tell me a story", "{id}");
        if let Some(o) = sent_options.as_ref().and_then(|o| o.get("x_other")) {
            assert_eq!(
                &up["stream_options"]["x_other"], o,
                "{id}: other options kept"
            );
        }
    }
    assert_eq!(mock.count(), 3);
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_stream_and_is_recorded_as_cancelled() {
    let (mock, gw) = start().await;
    // Long enough that it cannot end on its own while the test waits.
    mock.set(Behaviour::Stream {
        chunks: 2000,
        delay: Duration::from_millis(20),
        prompt_tokens: 9,
        completion_tokens: 4,
    });
    let mut resp = post(&gw, "stream-cancelled", &stream_body(None)).await;
    assert_eq!(resp.status(), 200);
    read_until_first_content(&mut resp).await;
    assert_eq!(mock.streams_aborted(), 0);
    drop(resp);

    eventually("the provider's stream to be cancelled", || {
        mock.streams_aborted() == 1
    })
    .await;
    let sent = String::from_utf8(mock.sent_streams()[0].clone()).unwrap();
    assert!(
        !sent.contains("[DONE]"),
        "the provider's stream ran to its end"
    );

    let dir = gw.stop().await;
    let rows = usage_rows(&dir.path().join("cordon.db")).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let r = &rows[0];
    assert_eq!(r.request_id, "stream-cancelled");
    assert_eq!(r.outcome, "cancelled", "{r:#?}");
    assert!(r.streamed, "{r:#?}");
    assert_eq!(r.provider.as_deref(), Some("eu"));
    assert_eq!(r.attempts, 1);
    assert!(
        r.ttft_ms.is_some(),
        "content was sent before the client left: {r:#?}"
    );
}

#[tokio::test]
async fn a_streamed_request_is_recorded_with_the_providers_tokens_and_a_time_to_first_token() {
    let (mock, gw) = start().await;
    mock.set(Behaviour::Stream {
        chunks: 4,
        delay: Duration::from_millis(20),
        prompt_tokens: 21,
        completion_tokens: 8,
    });
    let key_id = gw.key_ids[0].clone();
    let mut resp = post(&gw, "stream-ok", &stream_body(None)).await;
    assert_eq!(resp.status(), 200);
    let mut got = Vec::new();
    read_to_end(&mut resp, &mut got).await;
    assert!(
        !events(&got).iter().any(|e| is_usage_only(e)),
        "usage chunk not asked for"
    );

    // And a non-streamed one for contrast.
    mock.set(Behaviour::Ok {
        prompt_tokens: 3,
        completion_tokens: 2,
    });
    let resp = post(&gw, "plain", &common::chat("gpt-4o", "hi")).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();

    let dir = gw.stop().await;
    let rows = usage_rows(&dir.path().join("cordon.db")).await;
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let s = rows.iter().find(|r| r.request_id == "stream-ok").unwrap();
    assert_eq!(s.outcome, "ok", "{s:#?}");
    assert_eq!(s.status, 200);
    assert!(s.streamed);
    assert_eq!(s.prompt_tokens, Some(21), "{s:#?}");
    assert_eq!(s.completion_tokens, Some(8), "{s:#?}");
    assert_eq!(s.tenant, "acme");
    assert_eq!(s.key_id, key_id);
    assert_eq!(s.endpoint, "chat.completions");
    assert_eq!(s.model, "gpt-4o");
    assert_eq!(s.upstream_model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(s.provider.as_deref(), Some("eu"));
    assert_eq!(s.attempts, 1);
    let ttft = s
        .ttft_ms
        .expect("a streamed request has a time to first token");
    assert!(
        ttft > 0.0 && ttft <= s.latency_ms,
        "ttft {ttft} within latency {}",
        s.latency_ms
    );
    assert!(
        s.overhead_ms >= 0.0 && s.overhead_ms <= s.latency_ms,
        "{s:#?}"
    );

    let p = rows.iter().find(|r| r.request_id == "plain").unwrap();
    assert!(!p.streamed, "{p:#?}");
    assert_eq!(p.outcome, "ok");
    assert_eq!((p.prompt_tokens, p.completion_tokens), (Some(3), Some(2)));
}

/// A provider that goes silent mid-stream for longer than its timeout: the
/// stream is ended as failed (the client sees a broken body, not a clean
/// end), the provider's stream is dropped, and the record says so.
#[tokio::test]
async fn a_stream_silent_past_the_providers_timeout_is_ended_as_failed() {
    let mock = MockProvider::start("eu").await;
    let gw = GatewayBuilder::new()
        .provider("eu", &mock, r#""gpt-4o" = "gpt-4o-2024-08-06""#, EU_TERMS)
        .provider_extra("timeout_ms = 400")
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    // Headers at once, then one event every 5 s: silent for longer than 400 ms.
    mock.set(Behaviour::Stream {
        chunks: 3,
        delay: Duration::from_secs(5),
        prompt_tokens: 9,
        completion_tokens: 4,
    });
    let mut resp = post(&gw, "stream-stalled", &stream_body(None)).await;
    assert_eq!(resp.status(), 200);
    let mut got = Vec::new();
    let ended = loop {
        match tokio::time::timeout(PATIENCE, resp.chunk()).await {
            Err(_) => panic!("the stalled stream was never ended"),
            Ok(Ok(Some(c))) => got.extend_from_slice(&c),
            Ok(Ok(None)) => break "cleanly",
            Ok(Err(_)) => break "by a broken connection",
        }
    };
    let text = String::from_utf8_lossy(&got);
    assert_eq!(ended, "cleanly", "got {text:?}");
    let last = text.trim_end().rsplit("\n\n").next().unwrap_or_default();
    assert!(
        last.starts_with("data: {\"error\"") && last.contains("stalled"),
        "ended with an error event the SDK raises: {text:?}"
    );
    assert!(
        !events(&got).iter().any(|e| e.contains("[DONE]")),
        "the stream cannot have completed"
    );
    eventually("the provider's stream to be dropped", || {
        mock.streams_aborted() == 1
    })
    .await;

    let dir = gw.stop().await;
    let rows = usage_rows(&dir.path().join("cordon.db")).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].request_id, "stream-stalled");
    assert_eq!(rows[0].outcome, "upstream_error", "{:#?}", rows[0]);
    assert_eq!(rows[0].attempts, 1, "no failover once the stream started");
}
