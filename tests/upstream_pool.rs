//! Connections to providers: kept and reused across requests and streams,
//! HTTP/1.1 even when the provider offers HTTP/2, never reused with an
//! answer half read, and replaced when the provider closed one while idle.

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use std::time::Duration;

use common::{Behaviour, EU_TERMS, Gateway, GatewayBuilder, MockProvider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const EU_ONLY: &str = "[data]\nprocessing_in = [\"EEA\"]\n";
/// Upper bound for anything the tests wait on; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(15);

async fn gateway(mock: &MockProvider, extra: &str) -> Gateway {
    GatewayBuilder::new()
        .provider("eu", mock, r#""gpt-4o" = "gpt-4o""#, EU_TERMS)
        .provider_extra(extra)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await
}

async fn post(gw: &Gateway, body: &serde_json::Value) -> reqwest::Response {
    common::http()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.keys[0])
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn streamed() -> serde_json::Value {
    let mut v = common::chat("gpt-4o", "tell me a story");
    v["stream"] = true.into();
    v
}

fn stream_of(chunks: usize, delay: Duration) -> Behaviour {
    Behaviour::Stream {
        chunks,
        delay,
        prompt_tokens: 9,
        completion_tokens: 4,
    }
}

#[tokio::test]
async fn one_connection_carries_requests_streams_and_refusals_one_after_another() {
    let mock = MockProvider::start("eu").await;
    let gw = gateway(&mock, "").await;
    for _ in 0..5 {
        let resp = post(&gw, &common::chat("gpt-4o", "hi")).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    mock.set(stream_of(8, Duration::ZERO));
    for _ in 0..3 {
        let resp = post(&gw, &streamed()).await;
        assert_eq!(resp.status(), 200);
        let body = resp.text().await.unwrap();
        assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    }
    // A provider's own refusal is read whole and passed on; the connection
    // stays good.
    mock.set(Behaviour::Status(400));
    let resp = post(&gw, &common::chat("gpt-4o", "hi")).await;
    assert_eq!(resp.status(), 400);
    mock.set(Behaviour::Ok {
        prompt_tokens: 1,
        completion_tokens: 1,
    });
    let resp = post(&gw, &common::chat("gpt-4o", "hi")).await;
    assert_eq!(resp.status(), 200);

    assert_eq!(mock.count(), 10);
    assert_eq!(
        mock.connections(),
        1,
        "every request reused the first connection"
    );
    // Origin form on the request line, the base URL's authority in `Host`.
    for r in mock.received() {
        assert_eq!(r.target, "/v1/chat/completions");
        assert_eq!(r.header("host"), Some(mock.addr.to_string().as_str()));
    }
}

#[tokio::test]
async fn a_provider_offering_http2_is_spoken_to_over_http1_with_its_connections_kept() {
    let (mock, ca_pem) = MockProvider::start_tls("eu").await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let gw = gateway(
        &mock,
        &format!("ca_file = {:?}", ca_file.display().to_string()),
    )
    .await;
    for _ in 0..3 {
        let resp = post(&gw, &common::chat("gpt-4o", "hi")).await;
        assert_eq!(resp.status(), 200);
    }
    let versions: Vec<_> = mock.received().iter().map(|r| r.version).collect();
    assert_eq!(
        versions,
        [hyper::Version::HTTP_11; 3],
        "ALPN chose HTTP/1.1"
    );
    assert_eq!(mock.connections(), 1);
    let host = format!("localhost:{}", mock.addr.port());
    for r in mock.received() {
        assert_eq!(r.target, "/v1/chat/completions");
        assert_eq!(r.header("host"), Some(host.as_str()));
    }
}

#[tokio::test]
async fn a_stream_the_client_abandons_closes_its_connection_and_the_next_request_opens_one() {
    let mock = MockProvider::start("eu").await;
    let gw = gateway(&mock, "").await;
    mock.set(stream_of(2000, Duration::from_millis(20)));
    let mut resp = post(&gw, &streamed()).await;
    assert_eq!(resp.status(), 200);
    resp.chunk().await.unwrap().unwrap();
    drop(resp);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while mock.streams_aborted() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    mock.set(Behaviour::Ok {
        prompt_tokens: 1,
        completion_tokens: 1,
    });
    let resp = post(&gw, &common::chat("gpt-4o", "hi")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        mock.connections(),
        2,
        "the half-read connection was not reused"
    );
}

/// A provider that answers one request per connection, saying nothing of
/// closing (so the answer reads as keep-alive), then closes it. Sends on
/// `closed` once it has.
async fn closes_after_each_answer(closed: mpsc::UnboundedSender<()>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // The request's head and its (small) body.
                loop {
                    let n = stream.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if seen.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let body = r#"{"id":"c1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).await.unwrap();
                stream.shutdown().await.unwrap();
                drop(stream);
                let _ = closed.send(());
            });
        }
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn a_connection_the_provider_closed_while_idle_is_not_used() {
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    let base_url = closes_after_each_answer(closed_tx).await;
    let gw = GatewayBuilder::new()
        .provider_at("eu", &base_url, r#""gpt-4o" = "gpt-4o""#, EU_TERMS)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    for i in 0..3 {
        let resp = post(&gw, &common::chat("gpt-4o", "hi")).await;
        assert_eq!(
            resp.status(),
            200,
            "request {i}: {}",
            resp.text().await.unwrap()
        );
        tokio::time::timeout(PATIENCE, closed.recv())
            .await
            .unwrap()
            .unwrap();
        // Let the gateway's runtime see the close before the next request
        // (it arrives as a read event); what is tested is that it is then
        // not used.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = gw.logs();
    assert!(!logs.contains("upstream_error"), "{logs}");
}
