//! Load benchmark: the same requests sent straight to a fast mock provider
//! and through `cordon serve` (release build) in front of it. Prints requests
//! per second and latency percentiles for both, non-stream and stream.
//!
//! Run: `cargo bench --bench load` (about 40 s). Knobs: `LOAD_SECS` (per
//! scenario, default 5), `LOAD_CONCURRENCY` (default 32). Everything runs on
//! 127.0.0.1; the load generator, the mock and cordon share this machine's
//! cores, so compare the two columns of one run, not runs across machines.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "benchmark harness"
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

/// A 1 KB chat request.
fn chat_body(model: &str, stream: bool) -> String {
    let filler = "lorem ipsum dolor sit amet ".repeat(36);
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": filler}],
    })
    .to_string()
}

const CHAT_RESPONSE: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-upstream","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":250,"completion_tokens":1,"total_tokens":251}}"#;

type MockBody = BoxBody<Bytes, Infallible>;

/// 20 Anthropic text deltas with usage, as an Anthropic-protocol provider streams them.
fn anthropic_stream() -> Response<MockBody> {
    let mut events: Vec<Result<Frame<Bytes>, Infallible>> = vec![Ok(Frame::data(Bytes::from_static(
        b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-upstream\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":250,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    )))];
    events.extend((0..20).map(|i| {
        Ok(Frame::data(Bytes::from(format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"t{i} \"}}}}\n\n"
        ))))
    }));
    events.push(Ok(Frame::data(Bytes::from_static(
        b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":20}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ))));
    let mut resp = Response::new(StreamBody::new(futures_util::stream::iter(events)).boxed());
    resp.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    resp
}

async fn mock(req: Request<hyper::body::Incoming>) -> Response<MockBody> {
    let anthropic = req.uri().path().ends_with("/messages");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let stream = body.windows(13).any(|w| w == b"\"stream\":true");
    if anthropic {
        anthropic_stream()
    } else if stream {
        let mut events: Vec<Result<Frame<Bytes>, Infallible>> = (0..20)
            .map(|i| {
                Ok(Frame::data(Bytes::from(format!(
                    "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i} \"}}}}]}}\n\n"
                ))))
            })
            .collect();
        events.push(Ok(Frame::data(Bytes::from_static(
            b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":250,\"completion_tokens\":20}}\n\ndata: [DONE]\n\n",
        ))));
        let mut resp = Response::new(StreamBody::new(futures_util::stream::iter(events)).boxed());
        resp.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        resp
    } else {
        let mut resp =
            Response::new(Full::new(Bytes::from_static(CHAT_RESPONSE.as_bytes())).boxed());
        resp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        resp
    }
}

async fn start_mock() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(
                        TokioIo::new(s),
                        service_fn(|r| async move { Ok::<_, Infallible>(mock(r).await) }),
                    )
                    .await;
            });
        }
    });
    addr
}

struct Cordon {
    addr: SocketAddr,
    key: String,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

async fn start_cordon(mock: SocketAddr) -> Cordon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let config = dir.path().join("cordon.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[store]
url = "sqlite://cordon.db"
[[providers]]
id = "bench-eu"
api = "openai"
base_url = "http://{mock}/v1"
models = {{ "bench-model" = "bench-upstream" }}
  [providers.data]
  jurisdiction = "FR"
  processing = ["FR"]
  dpa = "signed"
  trains_on_data = false
  retention_days = 0
  certifications = ["iso27001"]
[[providers]]
id = "bench-eu-anthropic"
api = "anthropic"
base_url = "http://{mock}/v1"
headers = {{ "anthropic-version" = "2023-06-01" }}
models = {{ "bench-claude" = "claude-upstream" }}
  [providers.data]
  jurisdiction = "FR"
  processing = ["FR"]
  dpa = "signed"
  trains_on_data = false
  retention_days = 0
  certifications = ["iso27001"]
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policies/bench.toml"),
        "tenant = \"bench\"\n[data]\nprocessing_in = [\"EEA\"]\njurisdiction_in = [\"EU\"]\ndpa = [\"signed\"]\n",
    )
    .unwrap();
    let store = cordon::store::Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("cordon.db").display()
    ))
    .await
    .unwrap();
    let k = cordon::auth::key::NewKey::generate();
    store
        .insert_key(&cordon::store::KeyRow {
            id: k.id.clone(),
            tenant: "bench".into(),
            project: None,
            name: None,
            hash: k.hash,
            created_ms: 0,
            expires_ms: None,
            revoked_ms: None,
            last_used_ms: None,
        })
        .await
        .unwrap();
    store.close().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(a) = line.strip_prefix("cordon listening on ") {
            addr = Some(a.parse().unwrap());
        }
        if line.starts_with("cordon admin listening on ") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Cordon {
        addr: addr.expect("cordon did not print its address"),
        key: k.raw.expose().clone(),
        _child: child,
        _dir: dir,
    }
}

struct Result_ {
    rps: f64,
    p50: Duration,
    p99: Duration,
    ttfb_p50: Option<Duration>,
    errors: usize,
}

/// `concurrency` workers send `body` to `url` for `secs`; latency is to the
/// last byte (and, for streams, also to the first body byte).
async fn run(
    url: String,
    key: Option<String>,
    body: String,
    stream: bool,
    concurrency: usize,
    secs: u64,
) -> Result_ {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let body = Bytes::from(body);
    // Warm up the connection pools.
    let warm_until = Instant::now() + Duration::from_millis(500);
    let deadline = warm_until + Duration::from_secs(secs);
    let stats = Arc::new(std::sync::Mutex::new((Vec::new(), Vec::new(), 0usize)));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, key, body, stats) = (
            client.clone(),
            url.clone(),
            key.clone(),
            body.clone(),
            stats.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut ttfb = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let mut req = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone());
                if let Some(k) = &key {
                    req = req.bearer_auth(k);
                }
                let ok = match req.send().await {
                    Ok(mut resp) if resp.status().is_success() => {
                        let mut first = None;
                        let mut ok = true;
                        loop {
                            match resp.chunk().await {
                                Ok(Some(_)) => {
                                    first.get_or_insert_with(|| t0.elapsed());
                                }
                                Ok(None) => break,
                                Err(_) => {
                                    ok = false;
                                    break;
                                }
                            }
                        }
                        if ok && t0 >= warm_until {
                            lat.push(t0.elapsed());
                            if stream {
                                ttfb.extend(first);
                            }
                        }
                        ok
                    }
                    _ => false,
                };
                if !ok {
                    errors += 1;
                }
            }
            let mut s = stats.lock().unwrap();
            s.0.extend(lat);
            s.1.extend(ttfb);
            s.2 += errors;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (mut lat, mut ttfb, errors) = std::mem::take(&mut *stats.lock().unwrap());
    lat.sort_unstable();
    ttfb.sort_unstable();
    let pct = |v: &[Duration], p: f64| {
        v.get(((v.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    Result_ {
        rps: lat.len() as f64 / secs as f64,
        p50: pct(&lat, 0.50),
        p99: pct(&lat, 0.99),
        ttfb_p50: (!ttfb.is_empty()).then(|| pct(&ttfb, 0.50)),
        errors,
    }
}

fn main() {
    let secs: u64 = std::env::var("LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let concurrency: usize = std::env::var("LOAD_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mock = start_mock().await;
        let cordon = start_cordon(mock).await;
        println!("load benchmark: {concurrency} concurrent clients, {secs} s per scenario, all on 127.0.0.1");
        println!(
            "{:<26} {:>10} {:>10} {:>10} {:>12} {:>7}",
            "scenario", "req/s", "p50 ms", "p99 ms", "ttfb p50 ms", "errors"
        );
        let anthropic_body = serde_json::json!({
            "model": "claude-upstream",
            "max_tokens": 256,
            "stream": true,
            "messages": [{"role": "user", "content": "lorem ipsum dolor sit amet ".repeat(36)}],
        })
        .to_string();
        let scenarios = [
            ("non-stream chat", false, format!("http://{mock}/v1/chat/completions"), chat_body("bench-model", false), "bench-model"),
            ("stream chat (20 ev)", true, format!("http://{mock}/v1/chat/completions"), chat_body("bench-model", true), "bench-model"),
            // Direct: the Anthropic provider's own stream. Through cordon: an
            // OpenAI client served by it, the stream translated event by event.
            ("translated stream", true, format!("http://{mock}/v1/messages"), anthropic_body, "bench-claude"),
        ];
        for (name, stream, direct_url, direct_body, model) in scenarios {
            for (target, url, key, body) in [
                ("direct", direct_url.clone(), None, direct_body.clone()),
                ("cordon", format!("http://{}/v1/chat/completions", cordon.addr), Some(cordon.key.clone()), chat_body(model, stream)),
            ] {
                let r = run(url, key, body, stream, concurrency, secs).await;
                println!(
                    "{:<26} {:>10.0} {:>10.3} {:>10.3} {:>12} {:>7}",
                    format!("{name} {target}"),
                    r.rps,
                    r.p50.as_secs_f64() * 1e3,
                    r.p99.as_secs_f64() * 1e3,
                    r.ttfb_p50.map_or("-".to_owned(), |t| format!("{:.3}", t.as_secs_f64() * 1e3)),
                    r.errors
                );
            }
        }
    });
}
