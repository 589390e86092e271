//! Fault injection against the real `cordon serve`: clients that vanish at
//! each stage, providers that echo secrets, stall, lie or never stop. Each
//! test asserts what the client saw, that exactly one usage record with the
//! right outcome was written, that `cordon_in_flight_requests` is back to 0,
//! and that no credential reached the client, a log line or a file.

#![expect(clippy::unwrap_used, reason = "test code")]

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
    gw.metric("cordon_in_flight_requests").await.unwrap() as i64
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
    assert!(text.contains("more than 67108864 bytes"), "{text}");
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

// === clients that misbehave ===

/// Reads what the server sends on `conn` until it closes it or `PATIENCE`
/// passes; the text of the answer.
async fn read_answer(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    let _ = tokio::time::timeout(PATIENCE, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

/// The head of a POST whose body (`len` bytes) is still to come.
fn slow_head(gw: &Gateway, id: &str, len: usize) -> Vec<u8> {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\
         x-request-id: {id}\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n",
        gw.addr, gw.keys[0]
    )
    .into_bytes()
}

/// Row 2: a body that trickles in is answered 408 at the body read deadline
/// (and the connection closed), and slow bodies count against the tenant's
/// request limit like any other request.
#[tokio::test]
async fn a_slow_body_is_a_408_at_the_deadline_and_counts_against_limits() {
    let mock = MockProvider::start("eu").await;
    let gw = GatewayBuilder::new()
        .provider("eu", &mock, r#""gpt-4o" = "up-model""#, EU_TERMS)
        .server_extra("body_read_timeout_ms = 300")
        .tenant("acme", "[limits]\nrequests_per_minute = 3\n")
        .key("acme", None)
        .start()
        .await;
    let mut conns = Vec::new();
    for i in 0..5 {
        let mut c = TcpStream::connect(gw.addr).await.unwrap();
        c.write_all(&slow_head(&gw, &format!("slow-{i}"), 100))
            .await
            .unwrap();
        c.write_all(b"{\"mod").await.unwrap();
        conns.push(c);
        // One at a time, so the limit admits the first three.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut statuses = Vec::new();
    for c in &mut conns {
        let answer = read_answer(c).await;
        let status = answer.get(9..12).unwrap_or_default().to_owned();
        if status == "408" {
            assert!(
                answer.to_ascii_lowercase().contains("connection: close"),
                "{answer}"
            );
            assert!(answer.contains("request_timeout"), "{answer}");
            assert!(answer.contains("x-should-retry: true"), "{answer}");
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses, ["408", "408", "408", "429", "429"]);
    assert_eq!(mock.count(), 0);
    assert_eq!(
        gw.metric("cordon_limits_exceeded_total{limit=\"body_read_timeout\"}")
            .await,
        Some(3.0)
    );
    in_flight_settles_to_zero(&gw).await;
    stop_and_read(gw).await;
}

/// Row 8: JSON nested deeper than the limit (64 by default), even in a field
/// cordon does not read, is refused with a 400 and never forwarded.
#[tokio::test]
async fn json_nested_past_the_limit_is_a_400_and_never_forwarded() {
    let mock = MockProvider::start("eu").await;
    let gw = one_provider(&mock, "").await;
    let mut body =
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"x":"#.to_vec();
    body.extend(std::iter::repeat_n(b'[', 100_000));
    body.extend(std::iter::repeat_n(b']', 100_000));
    body.push(b'}');
    let resp = common::http()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.keys[0])
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let text = resp.text().await.unwrap();
    assert!(text.contains("deeper than 64"), "{text}");
    // 64 levels pass.
    let mut ok = chat("gpt-4o", "hi");
    let mut nested = serde_json::json!(1);
    for _ in 0..63 {
        nested = serde_json::json!([nested]);
    }
    ok["metadata_x"] = nested;
    let resp = common::http()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.keys[0])
        .header("content-type", "application/json")
        .body(ok.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(mock.count(), 1, "only the second was forwarded");
    stop_and_read(gw).await;
}

/// Row 1: two `x-cordon-require` fields both narrow: the client's own
/// narrowing is never dropped (here the second one excludes the only
/// provider).
#[tokio::test]
async fn every_x_cordon_require_field_is_applied() {
    let mock = MockProvider::start("eu").await;
    let gw = one_provider(&mock, "").await;
    let send = |fields: &'static [&'static str]| {
        let mut req = common::http()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&gw.keys[0])
            .header("content-type", "application/json");
        for f in fields {
            req = req.header("x-cordon-require", *f);
        }
        req.body(chat("gpt-4o", "hi").to_string()).send()
    };
    let one = send(&["processing_in=FR"]).await.unwrap();
    assert_eq!(one.status(), 200);
    let two = send(&["processing_in=FR", "exclude_providers=eu"])
        .await
        .unwrap();
    assert_eq!(two.status(), 403, "the second field was dropped");
    let same_rule_twice = send(&["processing_in=FR", "processing_in=DE"])
        .await
        .unwrap();
    assert_eq!(same_rule_twice.status(), 400);
    assert_eq!(mock.count(), 1);
    stop_and_read(gw).await;
}

/// Row 9: a client-chosen request id that could forge log fields (quotes,
/// spaces) is replaced, never echoed or logged; a plain one is kept.
#[tokio::test]
async fn a_request_id_that_could_forge_log_fields_is_replaced() {
    let mock = MockProvider::start("eu").await;
    let gw = one_provider(&mock, "").await;
    let forged = r#"abc" tenant="victim"#;
    let resp = common::http()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.keys[0])
        .header("x-request-id", forged)
        .header("content-type", "application/json")
        .body(chat("gpt-4o", "hi").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, forged);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let (status, _) = send_chat(&gw, "plain-id_1.2:3", false).await;
    assert_eq!(status, 200);
    in_flight_settles_to_zero(&gw).await;
    let (rows, log, _dir) = stop_and_read(gw).await;
    assert!(!log.contains("victim"), "the forged id reached the log");
    assert!(log.contains("request_id=\"plain-id_1.2:3\""), "{log}");
    assert!(rows.iter().all(|r| !r.request_id.contains("victim")));
}

/// Row 10: headers over the limit (32 KiB by default) are refused with 431.
#[tokio::test]
async fn headers_over_the_limit_are_a_431() {
    let mock = MockProvider::start("eu").await;
    let gw = one_provider(&mock, "").await;
    let big = "a".repeat(64 * 1024);
    let resp = common::http()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.keys[0])
        .header("x-padding", &big)
        .header("content-type", "application/json")
        .body(chat("gpt-4o", "hi").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let refused = h2
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.keys[0])
        .header("x-padding", &big)
        .header("content-type", "application/json")
        .body(chat("gpt-4o", "hi").to_string())
        .send()
        .await;
    match refused {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    let (status, _) = send_chat(&gw, "small-headers", false).await;
    assert_eq!(status, 200, "normal headers still pass");
    assert_eq!(mock.count(), 1);
    stop_and_read(gw).await;
}

/// An HTTP/1.1 request refused before its body is read (a bad key) is
/// answered with `connection: close`, so a client does not send its next
/// request on a connection the server is about to close.
#[tokio::test]
async fn a_refusal_before_the_body_is_read_closes_the_connection() {
    let mock = MockProvider::start("eu").await;
    let gw = one_provider(&mock, "").await;
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    let body = vec![b' '; 256 * 1024];
    c.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer nope\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let _ = c.write_all(&body[..1024]).await;
    let answer = read_answer(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    stop_and_read(gw).await;
}

/// Row 12 and the shutdown test: SIGTERM during 50 live streams and 5 slow
/// bodies. The drain deadline holds (here 1 s, where the streams would run
/// for minutes), the process exits 0, and every exchange is recorded once:
/// the streams as `cut_by_shutdown` with their provider, the slow bodies as
/// `cut_by_shutdown` without one.
#[tokio::test]
async fn sigterm_cuts_what_outlives_the_drain_deadline_and_records_it() {
    let mock = MockProvider::start("eu").await;
    mock.set(Behaviour::Stream {
        chunks: 10_000,
        delay: Duration::from_millis(50),
        prompt_tokens: 3,
        completion_tokens: 10_000,
    });
    let gw = GatewayBuilder::new()
        .provider("eu", &mock, r#""gpt-4o" = "up-model""#, EU_TERMS)
        .server_extra("drain_timeout_ms = 1000\nbody_read_timeout_ms = 600000")
        .tenant("acme", "")
        .key("acme", None)
        .start()
        .await;
    let mut streams = Vec::new();
    for i in 0..50 {
        let mut c = TcpStream::connect(gw.addr).await.unwrap();
        let mut body = chat("gpt-4o", "hello");
        body["stream"] = true.into();
        c.write_all(&raw_request(
            &gw,
            "/v1/chat/completions",
            &format!("live-{i:02}"),
            &body.to_string(),
        ))
        .await
        .unwrap();
        streams.push(c);
    }
    let mut slow = Vec::new();
    for i in 0..5 {
        let mut c = TcpStream::connect(gw.addr).await.unwrap();
        c.write_all(&slow_head(&gw, &format!("slow-{i}"), 100))
            .await
            .unwrap();
        c.write_all(b"{").await.unwrap();
        slow.push(c);
    }
    // Every stream is live: its first bytes have arrived.
    for c in &mut streams {
        let mut buf = [0u8; 1024];
        assert!(c.read(&mut buf).await.unwrap() > 0);
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while in_flight(&gw).await < 55 {
        assert!(tokio::time::Instant::now() < deadline, "not all in flight");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let db = gw.db.clone();
    let (status, dir) = gw.terminate(PATIENCE).await;
    let status = status.expect("cordon did not exit within the drain deadline and patience");
    assert!(status.success(), "{status}");
    let rows = usage_rows(&db).await;
    assert_eq!(rows.len(), 55, "{rows:#?}");
    let cut_streams = rows
        .iter()
        .filter(|r| r.outcome == "cut_by_shutdown" && r.provider.as_deref() == Some("eu"))
        .count();
    let cut_bodies = rows
        .iter()
        .filter(|r| r.outcome == "cut_by_shutdown" && r.request_id.starts_with("slow-"))
        .count();
    assert_eq!(cut_streams, 50, "{rows:#?}");
    assert_eq!(cut_bodies, 5, "{rows:#?}");
    drop(dir);
}

/// Row 3: a client that reads to `finish_reason` and leaves before the
/// usage chunk does not make the request free: cordon reads the rest of the
/// provider's stream (bounded) and the record carries the tokens.
#[tokio::test]
async fn a_client_leaving_at_finish_reason_still_yields_the_tokens() {
    let mock = MockProvider::start("eu").await;
    let finish = serde_json::json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    let usage = serde_json::json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 8, "total_tokens": 29}});
    mock.set(Behaviour::RawStream {
        events: vec![
            content_event("Hello"),
            bytes::Bytes::from(format!("data: {finish}\n\n")),
        ],
        end: RawEnd::After(
            Duration::from_millis(300),
            vec![
                bytes::Bytes::from(format!("data: {usage}\n\n")),
                bytes::Bytes::from_static(b"data: [DONE]\n\n"),
            ],
        ),
    });
    let gw = one_provider(&mock, "").await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let mut body = chat("gpt-4o", "hello");
    body["stream"] = true.into();
    conn.write_all(&raw_request(
        &gw,
        "/v1/chat/completions",
        "leaves-at-finish",
        &body.to_string(),
    ))
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !contains_bytes(&got, b"\"finish_reason\":\"stop\"") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    drop(conn);
    in_flight_settles_to_zero(&gw).await;
    let (rows, _log, _dir) = stop_and_read(gw).await;
    one_record_each(&rows, &["leaves-at-finish".to_owned()], "cancelled");
    assert_eq!(rows[0].prompt_tokens, Some(21), "{:?}", rows[0]);
    assert_eq!(rows[0].completion_tokens, Some(8), "{:?}", rows[0]);
}

/// A client that leaves in the middle of sending its body is recorded once,
/// as `cancelled`, and never reaches a provider.
#[tokio::test]
async fn client_gone_mid_body_is_recorded_once_as_cancelled() {
    let mock = MockProvider::start("eu").await;
    let gw = one_provider(&mock, "").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let id = format!("gone-mid-body-{i:02}");
        let mut c = TcpStream::connect(gw.addr).await.unwrap();
        c.write_all(&slow_head(&gw, &id, 1000)).await.unwrap();
        c.write_all(b"{\"model\":\"gpt-4o\",").await.unwrap();
        // The exchange is in flight (reading the body), then the client leaves.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while in_flight(&gw).await < 1 {
            assert!(tokio::time::Instant::now() < deadline, "never in flight");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(c);
        in_flight_settles_to_zero(&gw).await;
        ids.push(id);
    }
    assert_eq!(mock.count(), 0);
    let (rows, _log, _dir) = stop_and_read(gw).await;
    one_record_each(&rows, &ids, "cancelled");
    assert!(rows.iter().all(|r| r.provider.is_none()), "{rows:#?}");
}

/// A client that leaves while cordon is still connecting to the provider
/// (here a TLS handshake the provider never answers): the provider never
/// received anything, so the record does not name it as tried.
#[tokio::test]
async fn client_gone_while_connecting_does_not_name_the_provider() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
            let _ = accepted_tx.send(());
        }
    });
    let gw = GatewayBuilder::new()
        .provider_at(
            "silent",
            &format!("https://localhost:{port}/v1"),
            r#""gpt-4o" = "up-model""#,
            EU_TERMS,
        )
        .tenant("acme", "")
        .key("acme", None)
        .start()
        .await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(&raw_request(
        &gw,
        "/v1/chat/completions",
        "gone-while-connecting",
        &chat("gpt-4o", "hi").to_string(),
    ))
    .await
    .unwrap();
    // cordon has opened its connection to the provider and is in the
    // handshake, which never completes.
    tokio::time::timeout(PATIENCE, accepted.recv())
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    in_flight_settles_to_zero(&gw).await;
    let (rows, _log, _dir) = stop_and_read(gw).await;
    one_record_each(&rows, &["gone-while-connecting".to_owned()], "cancelled");
    assert_eq!(rows[0].provider, None, "{:?}", rows[0]);
    assert_eq!(rows[0].providers_tried, "", "{:?}", rows[0]);
}
