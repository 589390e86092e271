//! Load benchmark: the same requests sent straight to a fast mock provider,
//! through nginx (a plain reverse proxy) and through `cordon serve` (release
//! build, SQLite store, usage and metrics on, 20 providers, 50 tenants, floor
//! + tenant + project layers) in front of it.
//!
//! Run it with `benches/load.sh`, which installs `wrk`, `oha` and nginx and
//! raises the open-file limit first; see benches/README.md for every knob.
//!
//! Pinning (on a machine with two or more cores): this process (the mock
//! provider and the stream client), `wrk` and `oha` run on CPU 0; nginx and
//! cordon on CPU 1, one at a time, so each proxy has one core to itself and
//! its CPU time per request can be read from /proc.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::panic,
    reason = "benchmark harness"
)]

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

// ---------------------------------------------------------------- knobs ---

struct Knobs {
    secs: u64,
    runs: usize,
    concurrency: usize,
    rate: u32,
    stream_rate: u32,
    slow_streams: usize,
    only: Option<String>,
}

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

impl Knobs {
    fn from_env() -> Self {
        Knobs {
            secs: knob("LOAD_SECS", 10),
            runs: knob("LOAD_RUNS", 3),
            concurrency: knob("LOAD_CONCURRENCY", 64),
            rate: knob("LOAD_RATE", 1000),
            stream_rate: knob("LOAD_STREAM_RATE", 200),
            slow_streams: knob("LOAD_SLOW_STREAMS", 9_900),
            only: std::env::var("LOAD_ONLY").ok(),
        }
    }

    fn wants(&self, part: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|p| p.trim() == part))
    }
}

// --------------------------------------------------------------- bodies ---

/// A 1 KB chat request.
fn chat_body(model: &str, stream: bool) -> String {
    let filler = "lorem ipsum dolor sit amet ".repeat(36);
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": filler},
        ],
    })
    .to_string()
}

/// The Anthropic Messages counterpart of `chat_body(_, true)`.
fn anthropic_body() -> String {
    serde_json::json!({
        "model": "claude-upstream",
        "max_tokens": 256,
        "stream": true,
        "system": "You are a helpful assistant.",
        "messages": [{"role": "user", "content": "lorem ipsum dolor sit amet ".repeat(36)}],
    })
    .to_string()
}

fn embeddings_body(model: &str) -> String {
    serde_json::json!({
        "model": model,
        "input": "lorem ipsum dolor sit amet ".repeat(8),
    })
    .to_string()
}

// ----------------------------------------------------------------- mock ---

const CHAT_RESPONSE: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-upstream","choices":[{"index":0,"message":{"role":"assistant","content":"The quick brown fox jumps over the lazy dog."},"finish_reason":"stop"}],"usage":{"prompt_tokens":250,"completion_tokens":11,"total_tokens":261}}"#;

type MockBody = BoxBody<Bytes, Infallible>;

struct Canned {
    chat: Bytes,
    embeddings: Bytes,
    stream: Vec<Bytes>,
    anthropic_stream: Vec<Bytes>,
}

impl Canned {
    fn new() -> Self {
        let vector: Vec<f32> = (0..256).map(|i| ((i * 37) % 100) as f32 / 1000.0).collect();
        let embeddings = serde_json::json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "model": "embed-upstream",
            "usage": {"prompt_tokens": 48, "total_tokens": 48},
        })
        .to_string();
        let mut stream: Vec<Bytes> = (0..20)
            .map(|i| {
                Bytes::from(format!(
                    "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench-upstream\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i} \"}},\"finish_reason\":null}}],\"usage\":null}}\n\n"
                ))
            })
            .collect();
        stream.push(Bytes::from_static(
            b"data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench-upstream\",\"choices\":[],\"usage\":{\"prompt_tokens\":250,\"completion_tokens\":20,\"total_tokens\":270}}\n\ndata: [DONE]\n\n",
        ));
        let mut anthropic_stream = vec![Bytes::from_static(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-upstream\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":250,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        )];
        anthropic_stream.extend((0..20).map(|i| {
            Bytes::from(format!(
                "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"token{i} \"}}}}\n\n"
            ))
        }));
        anthropic_stream.push(Bytes::from_static(
            b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":20}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ));
        Canned {
            chat: Bytes::from_static(CHAT_RESPONSE.as_bytes()),
            embeddings: Bytes::from(embeddings),
            stream,
            anthropic_stream,
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn sse(chunks: Vec<Bytes>) -> Response<MockBody> {
    let frames = chunks.into_iter().map(|c| Ok(Frame::data(c)));
    let mut resp = Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
    resp.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    resp
}

/// One event a second for `SLOW_EVENTS` seconds: a client that holds a
/// stream open, as a long generation does.
const SLOW_EVENTS: u64 = 12;

fn slow_stream(canned: &Canned) -> Response<MockBody> {
    let event = canned.stream[0].clone();
    let last = canned.stream[20].clone();
    let frames = futures_util::stream::unfold(0u64, move |i| {
        let (event, last) = (event.clone(), last.clone());
        async move {
            match i {
                i if i < SLOW_EVENTS => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Some((Ok(Frame::data(event)), i + 1))
                }
                i if i == SLOW_EVENTS => Some((Ok(Frame::data(last)), i + 1)),
                _ => None,
            }
        }
    });
    let mut resp = Response::new(StreamBody::new(frames).boxed());
    resp.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    resp
}

async fn mock(req: Request<hyper::body::Incoming>, canned: Arc<Canned>) -> Response<MockBody> {
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let (resp, json) = if path.ends_with("/messages") {
        (sse(canned.anthropic_stream.clone()), false)
    } else if path.ends_with("/embeddings") {
        (
            Response::new(Full::new(canned.embeddings.clone()).boxed()),
            true,
        )
    } else if contains(&body, b"slow-upstream") {
        (slow_stream(&canned), false)
    } else if contains(&body, b"\"stream\":true") {
        (sse(canned.stream.clone()), false)
    } else {
        (Response::new(Full::new(canned.chat.clone()).boxed()), true)
    };
    let mut resp = resp;
    if json {
        resp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
    }
    resp
}

/// The mock provider, on a single-threaded runtime of its own.
fn start_mock() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let canned = Arc::new(Canned::new());
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                let canned = canned.clone();
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(
                            TokioIo::new(s),
                            service_fn(move |r| {
                                let canned = canned.clone();
                                async move { Ok::<_, Infallible>(mock(r, canned).await) }
                            }),
                        )
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

// ---------------------------------------------------------- the proxies ---

/// A process under test: its pids (all of them, for CPU time) and address.
struct Proxy {
    addr: SocketAddr,
    key: Option<String>,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGINT first, so that a profiler wrapping the proxy writes its data.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// The proxy's process and its children (nginx's worker).
    fn pids(&self) -> Vec<u32> {
        let root = self.child.id();
        let mut pids = vec![root];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                if let Some(stat) = proc_stat(pid)
                    && stat.ppid == root
                {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    /// User + system CPU time of all its processes, in seconds.
    fn cpu_secs(&self) -> f64 {
        self.pids()
            .into_iter()
            .filter_map(proc_stat)
            .map(|s| s.cpu_ticks as f64 / 100.0)
            .sum()
    }

    /// (VmRSS, VmHWM) in MB, summed over its processes.
    fn rss_mb(&self) -> (f64, f64) {
        let mut rss = 0.0;
        let mut hwm = 0.0;
        for pid in self.pids() {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            for line in status.lines() {
                let kb = |l: &str| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                        / 1024.0
                };
                if line.starts_with("VmRSS:") {
                    rss += kb(line);
                } else if line.starts_with("VmHWM:") {
                    hwm += kb(line);
                }
            }
        }
        (rss, hwm)
    }
}

struct Stat {
    ppid: u32,
    cpu_ticks: u64,
}

fn proc_stat(pid: u32) -> Option<Stat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state ppid ... utime(14) stime(15).
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        cpu_ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    })
}

fn pinned(cpu: Option<usize>, program: &str) -> Command {
    match cpu {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &c.to_string(), program]);
            cmd
        }
        None => Command::new(program),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < until, "{addr} is not listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A proxy that needs no key, once it listens on `port`.
fn keyless(child: std::process::Child, port: u16, dir: tempfile::TempDir) -> Proxy {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr);
    Proxy {
        addr,
        key: None,
        child,
        _dir: dir,
    }
}

fn start_nginx(mock: SocketAddr, cpu: Option<usize>) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        r#"daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 65536; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    upstream mock {{ server {mock}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"#
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = pinned(cpu, "nginx")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx (benches/load.sh installs it)");
    keyless(child, port, dir)
}

/// The floor of cordon's own stack: a reverse proxy of a few lines on the
/// same hyper server, hyper-util's pooled client and a tokio runtime, with
/// none of the gateway's work (no key, policy, body scan, metrics, usage or
/// log line). It runs as this benchmark binary again, pinned like the others,
/// with `LOAD_BARE_UPSTREAM` set.
fn start_bare(mock: SocketAddr, cpu: Option<usize>) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let exe = std::env::current_exe().unwrap();
    let child = pinned(cpu, &exe.to_string_lossy())
        .env("LOAD_BARE_UPSTREAM", mock.to_string())
        .env("LOAD_BARE_PORT", port.to_string())
        .env(
            "LOAD_BARE_RT",
            std::env::var("LOAD_BARE_RT").unwrap_or_default(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    keyless(child, port, dir)
}

/// The bare proxy's process (see [`start_bare`]): forwards every request to
/// `upstream` and streams the answer back.
fn run_bare(upstream: &str, port: u16) {
    use hyper_util::client::legacy::{Client, connect::HttpConnector};
    let rt = if std::env::var("LOAD_BARE_RT").as_deref() == Ok("current") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    rt.block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<_, hyper::body::Incoming> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(512)
            .build(connector);
        let base: Arc<str> = format!("http://{upstream}").into();
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let client = client.clone();
            let base = base.clone();
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(
                        TokioIo::new(s),
                        service_fn(move |req: Request<hyper::body::Incoming>| {
                            let client = client.clone();
                            let base = base.clone();
                            async move {
                                let (mut parts, body) = req.into_parts();
                                let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                                parts.uri = format!("{base}{path}").parse().unwrap();
                                parts.headers.remove(hyper::header::HOST);
                                match client.request(Request::from_parts(parts, body)).await {
                                    Ok(resp) => Ok::<_, Infallible>(resp.map(BodyExt::boxed)),
                                    Err(_) => {
                                        let mut r = Response::new(
                                            Full::new(Bytes::new())
                                                .map_err(|never| match never {})
                                                .boxed(),
                                        );
                                        *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                                        Ok(r)
                                    }
                                }
                            }
                        }),
                    )
                    .await;
            });
        }
    });
}

/// 20 providers, 50 tenants, a floor, and projects: the benchmark key belongs
/// to tenant `acme`, project `app`, whose layers (floor: no training; tenant:
/// EEA processing, EU law, signed DPA; project: retention ≤ 30 days) leave 5
/// of the OpenAI-protocol providers and both Anthropic-protocol ones.
fn write_cordon_config(dir: &Path, mock: SocketAddr) -> PathBuf {
    let countries = [
        ("FR", "FR"),
        ("DE", "DE"),
        ("IE", "IE"),
        ("NL", "NL"),
        ("US", "US"),
        ("GB", "GB"),
        ("CH", "CH"),
        ("JP", "JP"),
        ("SE", "SE"),
        ("US", "IE"),
    ];
    let mut toml = String::from(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[store]
url = "sqlite://cordon.db"
"#,
    );
    for i in 0..20 {
        let (jurisdiction, processing) = countries[i % countries.len()];
        // p02-ie and p12-ie speak the Anthropic protocol (and are eligible).
        let anthropic = i % 10 == 2;
        let (api, models, headers) = if anthropic {
            (
                "anthropic",
                r#"{ "bench-claude" = "claude-upstream" }"#,
                "headers = { \"anthropic-version\" = \"2023-06-01\" }\n",
            )
        } else {
            (
                "openai",
                r#"{ "bench-model" = "bench-upstream", "bench-embed" = "embed-upstream", "bench-slow" = "slow-upstream", "other-model" = "other-upstream" }"#,
                "",
            )
        };
        let dpa = if i % 4 == 3 { "none" } else { "signed" };
        let trains = i % 7 == 6;
        let retention = [0, 30, 0, 90][i % 4];
        let _ = write!(
            toml,
            r#"
[[providers]]
id = "p{i:02}-{}"
api = "{api}"
base_url = "http://{mock}/v1"
auth = {{ env = "BENCH_PROVIDER_KEY" }}
{headers}models = {models}
  [providers.data]
  jurisdiction = "{jurisdiction}"
  processing = ["{processing}"]
  dpa = "{dpa}"
  trains_on_data = {trains}
  retention_days = {retention}
  certifications = ["iso27001"]
"#,
            jurisdiction.to_lowercase()
        );
    }
    let path = dir.join("cordon.toml");
    std::fs::write(&path, toml).unwrap();
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("_floor.toml"), "[data]\nno_training = true\n").unwrap();
    std::fs::write(
        policies.join("acme.toml"),
        r#"tenant = "acme"
[data]
processing_in = ["EEA"]
jurisdiction_in = ["EU"]
dpa = ["signed"]

[projects.app.data]
max_retention_days = 30
"#,
    )
    .unwrap();
    for t in 0..49 {
        let rules = match t % 3 {
            0 => "processing_in = [\"EEA\"]\n",
            1 => "dpa = [\"signed\"]\nmax_retention_days = 30\n",
            _ => "jurisdiction_in = [\"EU\", \"GB\", \"CH\"]\n",
        };
        std::fs::write(
            policies.join(format!("tenant{t:02}.toml")),
            format!("tenant = \"tenant{t:02}\"\n[data]\n{rules}\n[projects.batch.data]\nmax_retention_days = 0\n"),
        )
        .unwrap();
    }
    path
}

fn start_cordon(mock: SocketAddr, cpu: Option<usize>) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let config = write_cordon_config(dir.path(), mock);
    let key = cordon::auth::key::NewKey::generate();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = cordon::store::Store::connect(&format!(
            "sqlite://{}",
            dir.path().join("cordon.db").display()
        ))
        .await
        .unwrap();
        store
            .insert_key(&cordon::store::KeyRow {
                id: key.id.clone(),
                tenant: "acme".into(),
                project: Some("app".into()),
                name: None,
                hash: key.hash,
                created_ms: 0,
                expires_ms: None,
                revoked_ms: None,
                last_used_ms: None,
                scope: Default::default(),
            })
            .await
            .unwrap();
        store.close().await;
    });
    // `LOAD_WRAP` runs cordon under a profiler, e.g.
    // `LOAD_WRAP="valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out"`.
    let wrap = std::env::var("LOAD_WRAP").unwrap_or_default();
    let mut words: Vec<&str> = wrap.split_whitespace().collect();
    // `LOAD_CORDON` measures another build of cordon (an A/B comparison).
    let bin = std::env::var("LOAD_CORDON").unwrap_or(env!("CARGO_BIN_EXE_cordon").to_owned());
    words.push(&bin);
    let mut child = pinned(cpu, words[0])
        .args(&words[1..])
        .args(["serve", "--config"])
        .arg(&config)
        .env("BENCH_PROVIDER_KEY", "sk-bench")
        .stdout(Stdio::piped())
        // Its log (one line a request at the default level) goes to a file,
        // as nginx's access log does.
        .stderr(std::fs::File::create(dir.path().join("cordon.log")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(a) = line.strip_prefix("cordon listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(a.parse::<SocketAddr>().unwrap());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| {
            let log = std::fs::read_to_string(dir.path().join("cordon.log")).unwrap_or_default();
            panic!("cordon did not start:\n{log}")
        });
    wait_listening(addr);
    Proxy {
        addr,
        key: Some(key.raw.expose().clone()),
        child,
        _dir: dir,
    }
}

// ---------------------------------------------------------- generators ---

/// One closed-loop `wrk` run: `concurrency` connections for `secs`.
#[derive(Clone, Copy, Default)]
struct WrkResult {
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    requests: u64,
    errors: u64,
    /// Proxy CPU time per request, µs (None for direct).
    cpu_us: Option<f64>,
}

fn wrk(
    url: &str,
    key: Option<&str>,
    body: &str,
    concurrency: usize,
    secs: u64,
    cpu: Option<usize>,
) -> WrkResult {
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, body).unwrap();
    let auth = key.map_or(String::new(), |k| {
        format!("wrk.headers[\"Authorization\"] = \"Bearer {k}\"\n")
    });
    let script = format!(
        r#"wrk.method = "POST"
local f = io.open("{}", "rb")
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
{auth}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#,
        body_file.display()
    );
    let script_file = dir.path().join("bench.lua");
    std::fs::write(&script_file, script).unwrap();
    let out = pinned(cpu, "wrk")
        .args(["-t1", &format!("-c{concurrency}"), &format!("-d{secs}s")])
        .arg("-s")
        .arg(&script_file)
        .arg(url)
        .output()
        .expect("wrk (benches/load.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("wrk printed no result: {text}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    WrkResult {
        requests: n[0],
        rps: n[0] as f64 / (n[1] as f64 / 1e6),
        errors: n[2],
        p50: n[3] as f64 / 1e3,
        p99: n[4] as f64 / 1e3,
        p999: n[5] as f64 / 1e3,
        cpu_us: None,
    }
}

/// Latency percentiles at a fixed request rate (open loop, `oha -q`).
#[derive(Clone, Copy, Default)]
struct Fixed {
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
}

fn oha(
    url: &str,
    key: Option<&str>,
    body: &str,
    rate: u32,
    secs: u64,
    cpu: Option<usize>,
) -> Fixed {
    let mut cmd = pinned(cpu, "oha");
    cmd.args([
        "--no-tui",
        "--output-format",
        "json",
        "-z",
        &format!("{secs}s"),
        "-q",
        &rate.to_string(),
        "-c",
        "32",
        "--latency-correction",
        "-m",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        body,
    ]);
    if let Some(k) = key {
        cmd.args(["-H", &format!("authorization: Bearer {k}")]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("oha (benches/load.sh installs it)");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "oha printed no JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let p = |k: &str| v["latencyPercentiles"][k].as_f64().unwrap_or(f64::NAN) * 1e3;
    let codes = &v["statusCodeDistribution"];
    let ok = codes["200"].as_u64().unwrap_or(0);
    let all: u64 = codes
        .as_object()
        .map(|m| m.values().filter_map(|c| c.as_u64()).sum())
        .unwrap_or(0);
    Fixed {
        p50: p("p50"),
        p99: p("p99"),
        p999: p("p99.9"),
        errors: all - ok,
    }
}

/// Streams at a fixed rate: time to the first body byte and to the end.
#[derive(Clone, Copy, Default)]
struct StreamTimes {
    ttfb_p50: f64,
    ttfb_p99: f64,
    total_p50: f64,
    total_p99: f64,
    errors: usize,
}

async fn stream_at_rate(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &str,
    rate: u32,
    secs: u64,
) -> StreamTimes {
    let body = Bytes::from(body.to_owned());
    let n = rate as u64 * secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        // Open loop: each request starts at its scheduled time, whatever the
        // earlier ones are doing.
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let mut req = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        tasks.push(tokio::spawn(async move {
            // Timed from the send itself, not from `scheduled`: tokio's timer
            // wakes up to a millisecond late, which would drown the
            // differences measured here. Each request is its own task, so a
            // slow answer never delays the next send.
            let sent = std::time::Instant::now();
            let resp = req.send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let mut resp = resp;
            let mut first = None;
            while let Some(_c) = resp.chunk().await.ok()? {
                first.get_or_insert_with(|| sent.elapsed());
            }
            Some((first?, sent.elapsed()))
        }));
    }
    let mut ttfb = Vec::new();
    let mut total = Vec::new();
    let mut errors = 0;
    for t in tasks {
        match t.await.unwrap() {
            Some((a, b)) => {
                ttfb.push(a);
                total.push(b);
            }
            None => errors += 1,
        }
    }
    ttfb.sort_unstable();
    total.sort_unstable();
    let pct = |v: &[Duration], p: f64| {
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    StreamTimes {
        ttfb_p50: pct(&ttfb, 0.50),
        ttfb_p99: pct(&ttfb, 0.99),
        total_p50: pct(&total, 0.50),
        total_p99: pct(&total, 0.99),
        errors,
    }
}

/// `n` streams held open at once through `proxy`, asking for `model` (the
/// name the proxy maps to the mock's slow stream); returns the proxy's RSS
/// while they are all open, its peak, and the number that completed. A
/// client of its own, dropped at the end, so no socket outlives the run.
async fn slow_streams(proxy: &Proxy, n: usize, model: &str) -> (f64, f64, usize) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("http://{}/v1/chat/completions", proxy.addr);
    let body = Bytes::from(chat_body(model, true));
    let started = Arc::new(tokio::sync::Semaphore::new(0));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let req = client
            .post(&url)
            .header("content-type", "application/json")
            .bearer_auth(proxy.key.as_deref().unwrap_or_default())
            .body(body.clone());
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let mut resp = req.send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let mut first = true;
            while let Some(_c) = resp.chunk().await.ok()? {
                if std::mem::take(&mut first) {
                    started.add_permits(1);
                }
            }
            Some(())
        }));
        // Open the connections at about 2,000 a second.
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    // Wait until every stream has its first event (or 20 s), then read RSS.
    let _ = tokio::time::timeout(Duration::from_secs(20), started.acquire_many(n as u32)).await;
    let (rss, _) = proxy.rss_mb();
    let mut done = 0;
    for t in tasks {
        if let Ok(Some(())) = t.await {
            done += 1;
        }
    }
    let (_, hwm) = proxy.rss_mb();
    (rss, hwm, done)
}

// ------------------------------------------------------------------ main ---

/// The chat endpoint direct, through nginx, through the hyper floor and
/// through cordon (with its key), each with the body it is sent:
/// `direct_body` for all but cordon.
fn chat_targets<'a>(
    mock: SocketAddr,
    nginx: &SocketAddr,
    floor: &SocketAddr,
    cordon: &'a Proxy,
    cordon_body: &'a str,
    direct_body: &'a str,
) -> [(&'static str, String, Option<&'a str>, &'a str); 4] {
    let url = |addr: &dyn std::fmt::Display| format!("http://{addr}/v1/chat/completions");
    [
        ("direct", url(&mock), None, direct_body),
        ("nginx", url(nginx), None, direct_body),
        ("hyper floor", url(floor), None, direct_body),
        (
            "cordon",
            url(&cordon.addr),
            cordon.key.as_deref(),
            cordon_body,
        ),
    ]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn median_run(runs: &[WrkResult]) -> WrkResult {
    WrkResult {
        rps: median(runs.iter().map(|r| r.rps).collect()),
        p50: median(runs.iter().map(|r| r.p50).collect()),
        p99: median(runs.iter().map(|r| r.p99).collect()),
        p999: median(runs.iter().map(|r| r.p999).collect()),
        requests: runs.iter().map(|r| r.requests).sum(),
        errors: runs.iter().map(|r| r.errors).sum(),
        cpu_us: runs
            .iter()
            .map(|r| r.cpu_us)
            .collect::<Option<Vec<_>>>()
            .map(median),
    }
}

fn main() {
    if let (Ok(upstream), Ok(port)) = (
        std::env::var("LOAD_BARE_UPSTREAM"),
        std::env::var("LOAD_BARE_PORT"),
    ) {
        run_bare(&upstream, port.parse().unwrap());
        return;
    }
    let knobs = Knobs::from_env();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Generator and mock on CPU 0, the proxy on CPU 1.
    let (client_cpu, proxy_cpu) = if cores >= 2 {
        let _ = Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status();
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let mock = start_mock();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(20_000)
        .build()
        .unwrap();

    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    println!(
        "load benchmark: {cores} cores ({machine}); pinning: {}; {} s per run, median of {} runs; concurrency {}",
        if proxy_cpu.is_some() {
            "generator + mock on CPU 0, proxy on CPU 1"
        } else {
            "none (one core)"
        },
        knobs.secs,
        knobs.runs,
        knobs.concurrency
    );

    let nginx = start_nginx(mock, proxy_cpu);
    let bare = start_bare(mock, proxy_cpu);
    let cordon = start_cordon(mock, proxy_cpu);
    // Let the store settle (migrations, key refresh) before the idle reading.
    std::thread::sleep(Duration::from_secs(2));
    let (idle_rss, _) = cordon.rss_mb();
    let (nginx_idle_rss, _) = nginx.rss_mb();

    // ---- closed loop, wrk ----
    let scenarios = [
        (
            "chat",
            "/v1/chat/completions",
            chat_body("bench-model", false),
            chat_body("bench-upstream", false),
        ),
        (
            "stream",
            "/v1/chat/completions",
            chat_body("bench-model", true),
            chat_body("bench-upstream", true),
        ),
        (
            "embeddings",
            "/v1/embeddings",
            embeddings_body("bench-embed"),
            embeddings_body("embed-upstream"),
        ),
        // Through cordon: an OpenAI client, an Anthropic-protocol provider,
        // the stream translated event by event. Direct and nginx: the
        // provider's own Anthropic stream.
        (
            "translated",
            "/v1/chat/completions",
            chat_body("bench-claude", true),
            anthropic_body(),
        ),
    ];
    let scenarios = &scenarios;
    let chat_targets_for = |i: usize| {
        let (_, _, cordon_body, direct_body) = &scenarios[i];
        chat_targets(
            mock,
            &nginx.addr,
            &bare.addr,
            &cordon,
            cordon_body,
            direct_body,
        )
    };
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| scenario (c={}) | target | req/s | p50 ms | p99 ms | p99.9 ms | proxy CPU µs/req | errors |",
        knobs.concurrency
    );
    let _ = writeln!(table, "|---|---|---:|---:|---:|---:|---:|---:|");
    for (name, path, cordon_body, direct_body) in scenarios {
        if !knobs.wants(name) {
            continue;
        }
        let direct_path = if *name == "translated" {
            "/v1/messages"
        } else {
            path
        };
        let targets: [(&str, String, Option<&Proxy>, &str); 4] = [
            (
                "direct",
                format!("http://{mock}{direct_path}"),
                None,
                direct_body,
            ),
            (
                "nginx",
                format!("http://{}{direct_path}", nginx.addr),
                Some(&nginx),
                direct_body,
            ),
            (
                "hyper floor",
                format!("http://{}{direct_path}", bare.addr),
                Some(&bare),
                direct_body,
            ),
            (
                "cordon",
                format!("http://{}{path}", cordon.addr),
                Some(&cordon),
                cordon_body,
            ),
        ];
        let mut results: Vec<Vec<WrkResult>> = vec![Vec::new(); targets.len()];
        // Warm up each target once (connection pools, lazy statics).
        for (_, url, proxy, body) in &targets {
            let _ = wrk(
                url,
                proxy.and_then(|p| p.key.as_deref()),
                body,
                knobs.concurrency,
                1,
                client_cpu,
            );
        }
        // Interleave the runs so that a noisy minute hits all three.
        for _ in 0..knobs.runs {
            for (i, (_, url, proxy, body)) in targets.iter().enumerate() {
                let before = proxy.map(|p| p.cpu_secs());
                let mut r = wrk(
                    url,
                    proxy.and_then(|p| p.key.as_deref()),
                    body,
                    knobs.concurrency,
                    knobs.secs,
                    client_cpu,
                );
                if let (Some(p), Some(b)) = (proxy, before) {
                    r.cpu_us = Some((p.cpu_secs() - b) / r.requests.max(1) as f64 * 1e6);
                }
                results[i].push(r);
            }
        }
        for (i, (target, ..)) in targets.iter().enumerate() {
            let r = median_run(&results[i]);
            let _ = writeln!(
                table,
                "| {name} | {target} | {:.0} | {:.3} | {:.3} | {:.3} | {} | {} |",
                r.rps,
                r.p50,
                r.p99,
                r.p999,
                r.cpu_us.map_or("-".to_owned(), |c| format!("{c:.1}")),
                r.errors
            );
        }
        eprintln!("{name}: done");
    }
    println!("\n{table}");

    // ---- fixed rate, oha ----
    if knobs.wants("fixed") {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "| chat at {} req/s (oha, open loop) | p50 ms | p99 ms | p99.9 ms | added p50 ms | added p99 ms | errors |",
            knobs.rate
        );
        let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|");
        let targets = chat_targets_for(0);
        let mut runs: Vec<Vec<Fixed>> = vec![Vec::new(); targets.len()];
        for _ in 0..knobs.runs {
            for (i, (_, url, key, body)) in targets.iter().enumerate() {
                runs[i].push(oha(url, *key, body, knobs.rate, knobs.secs, client_cpu));
            }
        }
        let med: Vec<Fixed> = runs
            .iter()
            .map(|r| Fixed {
                p50: median(r.iter().map(|f| f.p50).collect()),
                p99: median(r.iter().map(|f| f.p99).collect()),
                p999: median(r.iter().map(|f| f.p999).collect()),
                errors: r.iter().map(|f| f.errors).sum(),
            })
            .collect();
        for (i, (target, ..)) in targets.iter().enumerate() {
            let f = med[i];
            let added = |a: f64, b: f64| {
                if i == 0 {
                    "-".to_owned()
                } else {
                    format!("{:+.3}", a - b)
                }
            };
            let _ = writeln!(
                t,
                "| {target} | {:.3} | {:.3} | {:.3} | {} | {} | {} |",
                f.p50,
                f.p99,
                f.p999,
                added(f.p50, med[0].p50),
                added(f.p99, med[0].p99),
                f.errors
            );
        }
        println!("{t}");
        eprintln!("fixed: done");
    }

    // ---- streams at a fixed rate: first byte and total ----
    if knobs.wants("ttfb") {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "| stream, 20 chunks, at {} streams/s | ttfb p50 ms | ttfb p99 ms | total p50 ms | total p99 ms | added ttfb p50 ms | errors |",
            knobs.stream_rate
        );
        let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|");
        let targets = chat_targets_for(1);
        let mut runs: Vec<Vec<StreamTimes>> = vec![Vec::new(); targets.len()];
        rt.block_on(async {
            for (_, url, key, body) in &targets {
                let _ = stream_at_rate(&client, url, *key, body, knobs.stream_rate, 1).await;
            }
            for _ in 0..knobs.runs {
                for (i, (_, url, key, body)) in targets.iter().enumerate() {
                    runs[i].push(
                        stream_at_rate(
                            &client,
                            url,
                            *key,
                            body,
                            knobs.stream_rate,
                            knobs.secs.min(5),
                        )
                        .await,
                    );
                }
            }
        });
        let med: Vec<StreamTimes> = runs
            .iter()
            .map(|r| StreamTimes {
                ttfb_p50: median(r.iter().map(|f| f.ttfb_p50).collect()),
                ttfb_p99: median(r.iter().map(|f| f.ttfb_p99).collect()),
                total_p50: median(r.iter().map(|f| f.total_p50).collect()),
                total_p99: median(r.iter().map(|f| f.total_p99).collect()),
                errors: r.iter().map(|f| f.errors).sum(),
            })
            .collect();
        for (i, (target, ..)) in targets.iter().enumerate() {
            let s = med[i];
            let _ = writeln!(
                t,
                "| {target} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} |",
                s.ttfb_p50,
                s.ttfb_p99,
                s.total_p50,
                s.total_p99,
                if i == 0 {
                    "-".to_owned()
                } else {
                    format!("{:+.3}", s.ttfb_p50 - med[0].ttfb_p50)
                },
                s.errors
            );
        }
        println!("{t}");
        eprintln!("ttfb: done");
    }

    let (_, hwm_after_load) = cordon.rss_mb();
    let (_, nginx_hwm) = nginx.rss_mb();
    drop(nginx);
    drop(bare);

    // ---- memory: idle, after the runs, and holding slow streams ----
    let mut mem = String::new();
    let _ = writeln!(mem, "| memory | cordon MB | nginx MB |");
    let _ = writeln!(mem, "|---|---:|---:|");
    let _ = writeln!(
        mem,
        "| RSS idle (after start) | {idle_rss:.1} | {nginx_idle_rss:.1} |"
    );
    let _ = writeln!(
        mem,
        "| peak RSS over the runs above | {hwm_after_load:.1} | {nginx_hwm:.1} |"
    );
    if knobs.wants("slow") && knobs.slow_streams > 0 {
        let limit = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| {
                        l.split_whitespace()
                            .nth(3)
                            .and_then(|v| v.parse::<usize>().ok())
                    })
            })
            .unwrap_or(0);
        // The harness holds both ends' client and mock sockets, cordon both
        // its client and upstream sockets: about 2 descriptors a stream each.
        if limit < knobs.slow_streams * 2 + 100 {
            let _ = writeln!(
                mem,
                "| {} slow streams | skipped: open-file limit {limit} (run benches/load.sh, which raises it) | |",
                knobs.slow_streams
            );
        } else {
            // A fresh cordon, so the peak is the streams' own.
            drop(cordon);
            let cordon = start_cordon(mock, proxy_cpu);
            let (rss, hwm, done) =
                rt.block_on(slow_streams(&cordon, knobs.slow_streams, "bench-slow"));
            let _ = writeln!(
                mem,
                "| {} concurrent slow streams ({SLOW_EVENTS} s each; {done} completed) | RSS {rss:.1}, peak {hwm:.1} | |",
                knobs.slow_streams
            );
            // The same streams through the hyper floor: what the stack itself
            // holds a stream, with none of cordon's state.
            drop(cordon);
            let floor = start_bare(mock, proxy_cpu);
            std::thread::sleep(Duration::from_secs(1));
            let (floor_idle, _) = floor.rss_mb();
            let (rss, hwm, done) =
                rt.block_on(slow_streams(&floor, knobs.slow_streams, "slow-upstream"));
            let _ = writeln!(
                mem,
                "| the same through the hyper floor ({done} completed; idle {floor_idle:.1}) | RSS {rss:.1}, peak {hwm:.1} | |"
            );
        }
    }
    println!("{mem}");
}
