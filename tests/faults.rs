//! Fault injection against the real `cordon serve`: clients that vanish at
//! each stage, providers that echo secrets, stall, lie or never stop. Each
//! test asserts what the client saw, that exactly one usage record with the
//! right outcome was written, that `cordon_in_flight_requests` is back to 0,
//! and that no credential reached the client, a log line or a file.

#![expect(clippy::unwrap_used, reason = "test code")]
#![expect(clippy::panic, reason = "test code")]

mod common;

use std::time::Duration;

use common::mock::RawEnd;
use common::records::{UsageRow, contains_bytes, files_containing, usage_rows};
use common::{Behaviour, EU_TERMS, Gateway, GatewayBuilder, MockProvider, chat};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for anything the tests wait on; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(20);

/// The operator's credential for the mock providers.
const PROVIDER_KEY: &str = "sk-proj-operator-0123456789abcdefSECRET";

/// One OpenAI provider `eu` (the mock) serving `gpt-4o` to tenant `acme`,
/// with the operator's credential in `PROVIDER_KEY`.
async fn one_provider(mock: &MockProvider, extra: &str) -> Gateway {
    let b = if mock.is_anthropic() {
        GatewayBuilder::new().anthropic_provider("eu", mock, r#""gpt-4o" = "up-model""#, EU_TERMS)
    } else {
        GatewayBuilder::new().provider("eu", mock, r#""gpt-4o" = "up-model""#, EU_TERMS)
    };
    b.provider_extra(&format!(
        "auth = {{ env = \"PROVIDER_KEY\" }}\ntimeout_ms = 5000\n{extra}"
    ))
    .env("PROVIDER_KEY", PROVIDER_KEY)
    .tenant("acme", "")
    .key("acme", None)
    .start()
    .await
}

/// Two OpenAI providers serving `gpt-4o` to tenant `acme`: `a` first, then
/// `b`, failover on.
async fn two_providers(a: &MockProvider, b: &MockProvider) -> Gateway {
    GatewayBuilder::new()
        .provider("a", a, r#""gpt-4o" = "up-model""#, EU_TERMS)
        .provider_extra("timeout_ms = 5000")
        .provider("b", b, r#""gpt-4o" = "up-model""#, EU_TERMS)
        .tenant("acme", "[routing]\nfailover = true\n")
        .key("acme", None)
        .start()
        .await
}

/// Sends a chat request (streamed or not) with request id `id`; returns the
/// status and body.
async fn send_chat(gw: &Gateway, id: &str, stream: bool) -> (u16, String) {
    let mut body = chat("gpt-4o", "hello");
    body["stream"] = stream.into();
    let resp = common::http()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.keys[0])
        .header("x-request-id", id)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .map(|v| v["error"]["code"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// `cordon_in_flight_requests` as `/metrics` reports it.
async fn in_flight(gw: &Gateway) -> i64 {
    let text = common::http()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("cordon_in_flight_requests "))
        .map(|v| v.trim().parse::<f64>().unwrap() as i64)
        .unwrap_or_else(|| panic!("no in-flight gauge:\n{text}"))
}

/// Waits (at most `PATIENCE`) for the in-flight gauge to read 0.
async fn in_flight_settles_to_zero(gw: &Gateway) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let n = in_flight(gw).await;
        if n == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cordon_in_flight_requests stuck at {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (at most `PATIENCE`) until the mock has received `n` requests.
async fn provider_reached(mock: &MockProvider, n: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while mock.count() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the provider received {} of {n} requests",
            mock.count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stops the gateway (usage flushed) and returns its records, its log and
/// every file it left, checked for the provider's credential on the way.
async fn stop_and_read(gw: Gateway) -> (Vec<UsageRow>, String, tempfile::TempDir) {
    let db = gw.db.clone();
    let log_path = gw.log.clone();
    let dir = gw.stop().await;
    let rows = usage_rows(&db).await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    let leaked = files_containing(dir.path(), PROVIDER_KEY.as_bytes());
    assert!(leaked.is_empty(), "the credential is in {leaked:?}");
    (rows, log, dir)
}

/// A raw HTTP/1.1 request for `body` with the tenant's key.
fn raw_request(gw: &Gateway, path: &str, request_id: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\nx-request-id: {request_id}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        gw.addr,
        gw.keys[0],
        body.len()
    )
    .into_bytes()
}

/// Every record of `rows` belongs to `ids`, once each, with `outcome`.
fn one_record_each(rows: &[UsageRow], ids: &[String], outcome: &str) {
    for id in ids {
        let mine: Vec<&UsageRow> = rows.iter().filter(|r| &r.request_id == id).collect();
        assert_eq!(mine.len(), 1, "request {id}: {} records", mine.len());
        assert_eq!(mine[0].outcome, outcome, "request {id}: {:?}", mine[0]);
    }
    assert_eq!(rows.len(), ids.len(), "records: {rows:#?}");
}

// === clients that vanish ===

#[tokio::test]
async fn http1_client_gone_before_the_answer_starts_is_recorded_once_as_cancelled() {
    let mock = MockProvider::start("eu").await;
    mock.set(Behaviour::Hang);
    let gw = one_provider(&mock, "").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let stream = i % 2 == 1;
        let id = format!("gone-h1-{i:02}");
        let mut body = chat("gpt-4o", "hello");
        body["stream"] = stream.into();
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        conn.write_all(&raw_request(
            &gw,
            "/v1/chat/completions",
            &id,
            &body.to_string(),
        ))
        .await
        .unwrap();
        provider_reached(&mock, i + 1).await;
        // The client leaves while the provider is still working.
        drop(conn);
        ids.push(id);
    }
    in_flight_settles_to_zero(&gw).await;
    let (rows, log, _dir) = stop_and_read(gw).await;
    one_record_each(&rows, &ids, "cancelled");
    for r in &rows {
        assert_eq!(r.provider.as_deref(), Some("eu"), "{r:?}");
        assert_eq!(r.status, 499, "{r:?}");
    }
    for id in &ids {
        let lines = log
            .lines()
            .filter(|l| l.contains("request finished") && l.contains(id.as_str()))
            .count();
        assert_eq!(lines, 1, "log lines for {id}");
    }
}

#[tokio::test]
async fn http2_reset_before_the_answer_starts_is_recorded_once_as_cancelled() {
    let mock = MockProvider::start("eu").await;
    mock.set(Behaviour::Hang);
    let gw = one_provider(&mock, "").await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        let id = format!("reset-h2-{i:02}");
        let req = client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&gw.keys[0])
            .header("x-request-id", &id)
            .header("content-type", "application/json")
            .body(chat("gpt-4o", "hello").to_string())
            .send();
        let task = tokio::spawn(req);
        provider_reached(&mock, i + 1).await;
        // Dropping the request's future resets its HTTP/2 stream; the
        // connection itself stays open.
        task.abort();
        let _ = task.await;
        ids.push(id);
    }
    in_flight_settles_to_zero(&gw).await;
    let (rows, _log, _dir) = stop_and_read(gw).await;
    one_record_each(&rows, &ids, "cancelled");
}

#[tokio::test]
async fn client_gone_mid_stream_is_recorded_once_as_cancelled() {
    let mock = MockProvider::start("eu").await;
    mock.set(Behaviour::Stream {
        chunks: 200,
        delay: Duration::from_millis(20),
        prompt_tokens: 3,
        completion_tokens: 200,
    });
    let gw = one_provider(&mock, "").await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let mut body = chat("gpt-4o", "hello");
    body["stream"] = true.into();
    conn.write_all(&raw_request(
        &gw,
        "/v1/chat/completions",
        "gone-mid-stream",
        &body.to_string(),
    ))
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !contains_bytes(&got, b"eu-1 ") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    drop(conn);
    in_flight_settles_to_zero(&gw).await;
    let (rows, _log, _dir) = stop_and_read(gw).await;
    one_record_each(&rows, &["gone-mid-stream".to_owned()], "cancelled");
}

// === providers that echo secrets ===

/// A provider whose 401 quotes the credential it received: neither the
/// client (in either protocol, passthrough or translated) nor the log sees
/// it, and the client gets cordon's 502, not a 401 it would blame on its
/// own key.
#[tokio::test]
async fn a_provider_echoing_its_credential_never_reaches_the_client() {
    for anthropic in [false, true] {
        let mock = if anthropic {
            MockProvider::start_anthropic("eu").await
        } else {
            MockProvider::start("eu").await
        };
        mock.set(Behaviour::EchoCredential(401));
        let gw = one_provider(&mock, "").await;
        let mut ids = Vec::new();
        for (path, body) in [
            ("/v1/chat/completions", chat("gpt-4o", "hi")),
            (
                "/v1/messages",
                serde_json::json!({"model": "gpt-4o", "max_tokens": 10,
                    "messages": [{"role": "user", "content": "hi"}]}),
            ),
        ] {
            let id = format!("echo-{anthropic}-{}", ids.len());
            let resp = common::http()
                .post(gw.url(path))
                .bearer_auth(&gw.keys[0])
                .header("x-request-id", &id)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 502, "{path}");
            let text = resp.text().await.unwrap();
            assert!(
                !text.contains("sk-proj") && !text.contains("SECRET"),
                "{path}: {text}"
            );
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains("401"), "names the status: {message}");
            ids.push(id);
        }
        let received = mock.received();
        assert_eq!(received.len(), 2);
        assert!(
            received
                .iter()
                .all(|r| r.headers.iter().any(|(_, v)| v.contains(PROVIDER_KEY))),
            "the mock did receive the credential"
        );
        let (rows, log, _dir) = stop_and_read(gw).await;
        one_record_each(&rows, &ids, "upstream_error");
        assert!(!log.contains(PROVIDER_KEY));
    }
}

// === providers that lie ===

/// Row 5: a provider's 200 whose body is an error object, not its protocol
/// at all, or (for a stream) not a stream: 502, recorded as
/// `upstream_error`, and no other provider is sent the prompt (the first
/// one has it already).
#[tokio::test]
async fn a_provider_200_that_is_not_an_answer_is_a_502_not_a_success() {
    let (a, b) = (
        MockProvider::start("a").await,
        MockProvider::start("b").await,
    );
    let gw = two_providers(&a, &b).await;
    let cases: [(&str, &str, bool); 4] = [
        (
            "application/json",
            r#"{"error":{"message":"quota exceeded","type":"insufficient_quota"}}"#,
            false,
        ),
        ("text/html", "<html>502 Bad Gateway</html>", false),
        ("application/json", r#"{"object":"chat.completion"}"#, false),
        (
            "application/json",
            r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
            true,
        ),
    ];
    let mut ids = Vec::new();
    for (n, (content_type, body, stream)) in cases.into_iter().enumerate() {
        a.set(Behaviour::Raw {
            status: 200,
            content_type,
            body: bytes::Bytes::from(body),
        });
        let id = format!("lie-{n}");
        let (status, text) = send_chat(&gw, &id, stream).await;
        assert_eq!(status, 502, "{body}: {text}");
        assert_eq!(error_code(&text), "upstream_error", "{text}");
        assert!(!text.contains("quota") && !text.contains("html"), "{text}");
        ids.push(id);
    }
    assert_eq!(a.count(), 4);
    assert_eq!(b.count(), 0, "the prompt went to a second provider");
    in_flight_settles_to_zero(&gw).await;
    let (rows, _log, _dir) = stop_and_read(gw).await;
    one_record_each(&rows, &ids, "upstream_error");
}

/// Row 6: an answer over cordon's limit (64 MiB) is the provider's failure,
/// 502, and it does not fail over: the provider has the prompt already.
#[tokio::test]
async fn an_answer_too_large_is_a_502_without_failover() {
    let (a, b) = (
        MockProvider::start("a").await,
        MockProvider::start("b").await,
    );
    let gw = two_providers(&a, &b).await;
    let mut huge = Vec::with_capacity(80 << 20);
    huge.extend_from_slice(br#"{"choices":[{"message":{"content":""#);
    huge.resize((80 << 20) - 10, b'x');
    huge.extend_from_slice(br#""}}]}"#);
    a.set(Behaviour::Raw {
        status: 200,
        content_type: "application/json",
        body: bytes::Bytes::from(huge),
    });
    let (status, text) = send_chat(&gw, "too-large", false).await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("more than 64 MiB"), "{text}");
    assert_eq!(a.count(), 1);
    assert_eq!(b.count(), 0, "the prompt went to a second provider");
    in_flight_settles_to_zero(&gw).await;
    let (rows, _log, _dir) = stop_and_read(gw).await;
    one_record_each(&rows, &["too-large".to_owned()], "upstream_error");
}

/// An OpenAI content chunk saying `text`.
fn content_event(text: &str) -> bytes::Bytes {
    let v = serde_json::json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
    bytes::Bytes::from(format!("data: {v}\n\n"))
}

/// Reads a whole streamed answer (the stream must end, not hang or reset).
async fn stream_text(gw: &Gateway, id: &str) -> String {
    let (status, text) = send_chat(gw, id, true).await;
    assert_eq!(status, 200, "{text}");
    text
}

/// Row 7: a provider stream cut mid-way ends, for the client, with an error
/// event of its protocol, then the end of the stream (an SDK raises it),
/// and is recorded as `upstream_error`.
#[tokio::test]
async fn a_provider_stream_cut_midway_ends_with_an_error_event() {
    let mock = MockProvider::start("eu").await;
    mock.set(Behaviour::RawStream {
        events: vec![content_event("Hel"), content_event("lo")],
        end: RawEnd::Cut,
    });
    let gw = one_provider(&mock, "").await;
    let text = stream_text(&gw, "cut").await;
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 3, "{text}");
    let last: serde_json::Value =
        serde_json::from_str(events[2].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error", "{text}");
    assert!(!text.contains("[DONE]"), "not told as complete: {text}");
    in_flight_settles_to_zero(&gw).await;
    let (rows, _log, _dir) = stop_and_read(gw).await;
    one_record_each(&rows, &["cut".to_owned()], "upstream_error");
}

/// Row 4: an event that never ends is cut at the per-event cap (1 MiB by
/// default): the stream ends with an error event, cordon's memory stays
/// bounded, and the provider's connection is closed.
#[tokio::test]
async fn an_unterminated_provider_event_is_cut_at_the_cap() {
    let mock = MockProvider::start("eu").await;
    mock.set(Behaviour::RawStream {
        events: vec![
            content_event("Hel"),
            bytes::Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\""),
        ],
        end: RawEnd::Endless(bytes::Bytes::from(vec![b'x'; 64 * 1024])),
    });
    let gw = one_provider(&mock, "").await;
    let text = stream_text(&gw, "endless").await;
    assert!(text.len() < 4096, "the unterminated event was relayed");
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(
        last.starts_with("data: {\"error\"") && last.contains("too large"),
        "{text}"
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while mock.streams_aborted() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the provider is still being read"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = mock.sent_streams()[0].len();
    assert!(sent < 8 << 20, "read {sent} bytes of one event");
    in_flight_settles_to_zero(&gw).await;
    let (rows, _log, _dir) = stop_and_read(gw).await;
    one_record_each(&rows, &["endless".to_owned()], "upstream_error");
}

/// A provider's own mid-stream error event, passed through, keeps its type
/// but never its words (which may echo the credential).
#[tokio::test]
async fn a_provider_error_event_mid_stream_is_scrubbed() {
    for anthropic in [false, true] {
        let (mock, event) = if anthropic {
            (
                MockProvider::start_anthropic("eu").await,
                format!(
                    "event: error\ndata: {}\n\n",
                    serde_json::json!({"type": "error", "error": {"type": "overloaded_error",
                        "message": format!("key {PROVIDER_KEY} overloaded")}})
                ),
            )
        } else {
            (
                MockProvider::start("eu").await,
                format!(
                    "data: {}\n\n",
                    serde_json::json!({"error": {"type": "server_error",
                        "message": format!("key {PROVIDER_KEY} failed")}})
                ),
            )
        };
        mock.set(Behaviour::RawStream {
            events: vec![bytes::Bytes::from(event)],
            end: RawEnd::Finish,
        });
        let gw = one_provider(&mock, "").await;
        let (path, body) = if anthropic {
            (
                "/v1/messages",
                serde_json::json!({"model": "gpt-4o", "max_tokens": 10, "stream": true,
                    "messages": [{"role": "user", "content": "hi"}]}),
            )
        } else {
            let mut b = chat("gpt-4o", "hi");
            b["stream"] = true.into();
            ("/v1/chat/completions", b)
        };
        let text = common::http()
            .post(gw.url(path))
            .bearer_auth(&gw.keys[0])
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!text.contains("sk-proj"), "{text}");
        let kind = if anthropic {
            "overloaded_error"
        } else {
            "server_error"
        };
        assert!(text.contains(kind), "the type is kept: {text}");
        stop_and_read(gw).await;
    }
}
