//! Bounded soak: `cordon serve` (release build, SQLite store) under steady
//! mixed traffic with injected provider faults and clients that give up, for
//! at most `SOAK_SECS` seconds, then checked:
//!
//! - every answer a client got is explained by the faults the mocks injected
//!   (or by the client giving up first): no unexpected status, body or
//!   stream ending;
//! - the ineligible provider (processing in the US, same model, first by
//!   priority and first in one tenant's routing order) received nothing;
//! - cordon's resident memory is flat after warm-up;
//! - `cordon_in_flight_requests` is back to 0 once the clients are done;
//! - after SIGTERM (cordon exits by itself), the SQLite store holds exactly
//!   one usage record for each request that reached a provider, naming the
//!   providers in the order the mocks received it, with the status and
//!   outcome the client saw.
//!
//! Run it with `benches/soak.sh` or `cargo bench --bench soak`; knobs and the
//! latest figures are in benches/README.md ("Soak").

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::panic,
    reason = "benchmark harness"
)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

// ---------------------------------------------------------------- knobs ---

#[derive(Clone, Copy)]
struct Knobs {
    /// The whole run, start to exit (traffic stops `reserve()` before).
    secs: u64,
    clients: usize,
    /// Requests per second over all clients; 0 = as fast as they can.
    rate: u64,
    fault_pct: f64,
    abandon_pct: f64,
    seed: u64,
    pin: bool,
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
            secs: knob("SOAK_SECS", 300u64).max(8),
            clients: knob("SOAK_CLIENTS", 48usize).max(1),
            rate: knob("SOAK_RATE", 1000),
            fault_pct: knob("SOAK_FAULT_PCT", 1.0),
            abandon_pct: knob("SOAK_ABANDON_PCT", 1.0),
            seed: knob("SOAK_SEED", 14),
            pin: knob("SOAK_PIN", 0u8) == 1,
        }
    }

    /// Time kept after the traffic for draining, SIGTERM and the checks.
    fn reserve(&self) -> Duration {
        if self.secs >= 60 {
            Duration::from_secs(15)
        } else {
            Duration::from_secs(self.secs / 4)
        }
    }
}

/// A small deterministic PRNG (splitmix64): one per client task.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, pct: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 10_000.0 < pct
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

// ------------------------------------------------------------ providers ---

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    OpenAi,
    Anthropic,
}

/// The providers: index 0 is ineligible for both tenants (processing in the
/// US), yet serves the same model and comes first by priority and in
/// globex's routing order.
const PROVIDERS: [(&str, Api, bool); 3] = [
    ("us-east", Api::OpenAi, false),
    ("fr-paris", Api::OpenAi, true),
    ("de-frankfurt", Api::Anthropic, true),
];
const INELIGIBLE: usize = 0;
const ELIGIBLE: usize = 2;

/// Every provider's `timeout_ms`: the head, a whole body, a stream's silence.
const TIMEOUT_MS: u64 = 1000;
/// How long a stalling mock stays silent: well past the timeout.
const STALL: Duration = Duration::from_millis(TIMEOUT_MS + 1500);
/// Events a stream sends before it is cut or stalls.
const EVENTS_BEFORE_FAULT: usize = 3;

/// A fault a mock injects into its answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
enum Fault {
    None,
    /// 500 with an error body: cordon may fail over.
    S500,
    /// The connection cut mid-body: mid-stream, or halfway through a JSON
    /// answer.
    Cut,
    /// 200 whose body is an error object: the provider answered; no failover.
    Err200,
    /// No response head until well past the timeout: cordon may fail over.
    StallHead,
    /// A stream that goes silent after a few events (streams only).
    StallMid,
}

impl Fault {
    const ALL: [Fault; 5] = [
        Fault::S500,
        Fault::Cut,
        Fault::Err200,
        Fault::StallHead,
        Fault::StallMid,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::S500 => "500",
            Fault::Cut => "cut",
            Fault::Err200 => "200-error-object",
            Fault::StallHead => "stall-before-head",
            Fault::StallMid => "stall-mid-stream",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::S500 => "s500",
            Fault::Cut => "cut",
            Fault::Err200 => "err200",
            Fault::StallHead => "stallhead",
            Fault::StallMid => "stallmid",
        }
    }

    fn parse(s: &str) -> Fault {
        Fault::ALL
            .into_iter()
            .find(|f| f.code() == s)
            .unwrap_or(Fault::None)
    }

    /// Whether cordon may try the next provider after it (SPEC: only after a
    /// connection error, a timeout, a 429 or a 5xx, before any byte reached
    /// the client).
    fn allows_failover(self) -> bool {
        matches!(self, Fault::S500 | Fault::StallHead)
    }
}

// ------------------------------------------------------------ directive ---

/// What the client asks the mocks for, written into the prompt (the only
/// part of a request cordon forwards verbatim, whichever the protocol):
/// `<<soak chunks=N head=MS gap=MS faults=fr-paris:s500;de-frankfurt:cut>>`.
#[derive(Clone, Debug, Default)]
struct Directive {
    chunks: usize,
    head_ms: u64,
    gap_ms: u64,
    faults: [Option<Fault>; 3],
}

impl Directive {
    fn render(&self) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.map(|f| format!("{}:{}", PROVIDERS[i].0, f.code())))
            .collect();
        format!(
            "<<soak chunks={} head={} gap={} faults={}>>",
            self.chunks,
            self.head_ms,
            self.gap_ms,
            faults.join(";")
        )
    }

    fn parse(body: &[u8]) -> Directive {
        let text = String::from_utf8_lossy(body);
        let mut d = Directive {
            chunks: 1,
            ..Directive::default()
        };
        let Some(start) = text.find("<<soak ") else {
            return d;
        };
        let rest = &text[start + 7..];
        let inner = &rest[..rest.find(">>").unwrap_or(rest.len())];
        for field in inner.split(' ') {
            let Some((k, v)) = field.split_once('=') else {
                continue;
            };
            match k {
                "chunks" => d.chunks = v.parse().unwrap_or(1),
                "head" => d.head_ms = v.parse().unwrap_or(0),
                "gap" => d.gap_ms = v.parse().unwrap_or(0),
                "faults" => {
                    for pf in v.split(';').filter(|s| !s.is_empty()) {
                        if let Some((p, f)) = pf.split_once(':')
                            && let Some(i) = PROVIDERS.iter().position(|(id, ..)| *id == p)
                        {
                            d.faults[i] = Some(Fault::parse(f));
                        }
                    }
                }
                _ => {}
            }
        }
        d
    }
}

// ----------------------------------------------------------------- mock ---

type MockBody = BoxBody<Bytes, std::io::Error>;

/// What the mocks saw: per request id (the number in `x-request-id:
/// soak-N`), the providers it reached in order and the fault each injected.
#[derive(Default)]
struct Seen {
    by_id: Mutex<HashMap<u64, Vec<(u8, Fault)>>>,
    /// Requests whose `x-request-id` was not one the harness sends.
    foreign: AtomicU64,
    per_provider: [AtomicU64; 3],
}

impl Seen {
    fn record(&self, id: Option<u64>, provider: usize, fault: Fault) {
        self.per_provider[provider].fetch_add(1, Ordering::Relaxed);
        match id {
            Some(id) => self
                .by_id
                .lock()
                .unwrap()
                .entry(id)
                .or_default()
                .push((provider as u8, fault)),
            None => {
                self.foreign.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn full(b: impl Into<Bytes>) -> MockBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn json_response(status: u16, v: &serde_json::Value) -> Response<MockBody> {
    let mut resp = Response::new(full(v.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

/// How a streamed body ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Finish,
    /// After `EVENTS_BEFORE_FAULT` events, the connection is cut.
    Cut,
    /// After `EVENTS_BEFORE_FAULT` events, silence for `STALL`, then the rest.
    Stall,
}

/// `parts` sent `gap` apart as a chunked body of `content_type`.
fn streamed(
    parts: Vec<Bytes>,
    gap: Duration,
    end: End,
    content_type: &'static str,
) -> Response<MockBody> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        for (i, part) in parts.into_iter().enumerate() {
            if i == EVENTS_BEFORE_FAULT || (end == End::Cut && i == 1 && content_type != SSE) {
                match end {
                    End::Finish => {}
                    End::Cut => {
                        // Let what was sent leave first: hyper drops unflushed
                        // output when a body fails.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = tx.send(Err(std::io::Error::other("cut by the mock"))).await;
                        return;
                    }
                    End::Stall => tokio::time::sleep(STALL).await,
                }
            }
            if tx.send(Ok(Frame::data(part))).await.is_err() {
                return;
            }
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
        }
    });
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    let mut resp = Response::new(StreamBody::new(body).boxed());
    resp.headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    resp
}

const SSE: &str = "text/event-stream";
const PROMPT_TOKENS: u64 = 120;

fn content(chunks: usize) -> String {
    (0..chunks).map(|i| format!("zq{i} ")).collect()
}

fn openai_events(model: &str, chunks: usize) -> Vec<Bytes> {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        let v = serde_json::json!({
            "id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        Bytes::from(format!("data: {v}\n\n"))
    };
    let mut ev = vec![chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        serde_json::Value::Null,
    )];
    for i in 0..chunks {
        ev.push(chunk(
            serde_json::json!({"content": format!("zq{i} ")}),
            serde_json::Value::Null,
        ));
    }
    ev.push(chunk(serde_json::json!({}), "stop".into()));
    let usage = serde_json::json!({
        "id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": model, "choices": [],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": chunks, "total_tokens": PROMPT_TOKENS + chunks as u64},
    });
    ev.push(Bytes::from(format!("data: {usage}\n\ndata: [DONE]\n\n")));
    ev
}

fn anthropic_events(model: &str, chunks: usize) -> Vec<Bytes> {
    let ev = |v: serde_json::Value| {
        Bytes::from(format!(
            "event: {}\ndata: {v}\n\n",
            v["type"].as_str().unwrap_or("")
        ))
    };
    let mut out = vec![
        ev(serde_json::json!({"type": "message_start", "message": {
            "id": "msg_soak", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1}}})),
        ev(
            serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for i in 0..chunks {
        out.push(ev(
            serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("zq{i} ")}}),
        ));
    }
    out.push(ev(
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    ));
    out.push(ev(
        serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": chunks}}),
    ));
    out.push(ev(serde_json::json!({"type": "message_stop"})));
    out
}

fn whole_answer(api: Api, model: &str, chunks: usize) -> serde_json::Value {
    match api {
        Api::OpenAi => serde_json::json!({
            "id": "chatcmpl-soak", "object": "chat.completion", "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content(chunks)}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": chunks, "total_tokens": PROMPT_TOKENS + chunks as u64},
        }),
        Api::Anthropic => serde_json::json!({
            "id": "msg_soak", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": content(chunks)}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": chunks},
        }),
    }
}

fn error_object(api: Api) -> serde_json::Value {
    match api {
        Api::OpenAi => {
            serde_json::json!({"error": {"message": "the mock is overloaded", "type": "server_error", "code": null}})
        }
        Api::Anthropic => {
            serde_json::json!({"type": "error", "error": {"type": "overloaded_error", "message": "the mock is overloaded"}})
        }
    }
}

async fn mock(req: Request<hyper::body::Incoming>, p: usize, seen: &Seen) -> Response<MockBody> {
    let api = PROVIDERS[p].1;
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("soak-"))
        .and_then(|v| v.parse::<u64>().ok());
    let Ok(body) = req.into_body().collect().await.map(|c| c.to_bytes()) else {
        // It reached the provider all the same.
        seen.record(id, p, Fault::None);
        return json_response(400, &error_object(api));
    };
    let d = Directive::parse(&body);
    let fault = d.faults[p].unwrap_or(Fault::None);
    seen.record(id, p, fault);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let stream = v["stream"] == serde_json::Value::Bool(true);
    let model = v["model"].as_str().unwrap_or("").to_owned();
    if d.head_ms > 0 {
        tokio::time::sleep(Duration::from_millis(d.head_ms)).await;
    }
    match fault {
        Fault::StallHead => {
            tokio::time::sleep(STALL).await;
            return json_response(200, &whole_answer(api, &model, d.chunks));
        }
        Fault::S500 => return json_response(500, &error_object(api)),
        Fault::Err200 => return json_response(200, &error_object(api)),
        Fault::None | Fault::Cut | Fault::StallMid => {}
    }
    let end = match fault {
        Fault::Cut => End::Cut,
        Fault::StallMid => End::Stall,
        _ => End::Finish,
    };
    if stream {
        let events = match api {
            Api::OpenAi => openai_events(&model, d.chunks),
            Api::Anthropic => anthropic_events(&model, d.chunks),
        };
        streamed(events, Duration::from_millis(d.gap_ms), end, SSE)
    } else if end == End::Cut {
        // Half a JSON answer, then the cut.
        let whole = whole_answer(api, &model, d.chunks).to_string();
        let (a, b) = whole.split_at(whole.len() / 2);
        streamed(
            vec![Bytes::from(a.to_owned()), Bytes::from(b.to_owned())],
            Duration::ZERO,
            End::Cut,
            "application/json",
        )
    } else {
        json_response(200, &whole_answer(api, &model, d.chunks))
    }
}

/// Starts provider `p`'s mock on 127.0.0.1:0, on the current runtime.
async fn start_mock(p: usize, seen: Arc<Seen>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let seen = seen.clone();
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(
                        TokioIo::new(s),
                        service_fn(move |r| {
                            let seen = seen.clone();
                            async move { Ok::<_, Infallible>(mock(r, p, &seen).await) }
                        }),
                    )
                    .await;
            });
        }
    });
    addr
}

// --------------------------------------------------------------- cordon ---

fn write_config(dir: &Path, mocks: &[SocketAddr]) -> std::path::PathBuf {
    let mut toml = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[store]\nurl = \"sqlite://cordon.db\"\n",
    );
    let terms = [
        "jurisdiction = \"US\"\nprocessing = [\"US\"]\ntransfer = \"dpf\"",
        "jurisdiction = \"FR\"\nprocessing = [\"FR\"]",
        "jurisdiction = \"DE\"\nprocessing = [\"DE\"]",
    ];
    for (i, (id, api, _)) in PROVIDERS.iter().enumerate() {
        let (api, models, headers) = match api {
            Api::OpenAi => ("openai", "{ \"soak-chat\" = \"chat-upstream\" }", ""),
            Api::Anthropic => (
                "anthropic",
                "{ \"soak-chat\" = \"claude-upstream\" }",
                "headers = { \"anthropic-version\" = \"2023-06-01\" }\n",
            ),
        };
        let _ = write!(
            toml,
            "\n[[providers]]\nid = \"{id}\"\napi = \"{api}\"\nbase_url = \"http://{}/v1\"\npriority = {}\ntimeout_ms = {TIMEOUT_MS}\nauth = {{ env = \"SOAK_PROVIDER_KEY\" }}\n{headers}models = {models}\n[providers.data]\n{}\ndpa = \"signed\"\ntrains_on_data = false\nretention_days = 0\ncertifications = [\"iso27001\"]\n",
            mocks[i],
            i + 1,
            terms[i],
        );
    }
    let path = dir.join("cordon.toml");
    std::fs::write(&path, toml).unwrap();
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("_floor.toml"), "[data]\nno_training = true\n").unwrap();
    // acme: priority order (us-east, fr-paris, de-frankfurt); globex names
    // the ineligible provider first in its own order.
    std::fs::write(
        policies.join("acme.toml"),
        "tenant = \"acme\"\n[data]\nprocessing_in = [\"EEA\"]\n",
    )
    .unwrap();
    std::fs::write(
        policies.join("globex.toml"),
        "tenant = \"globex\"\n[data]\nprocessing_in = [\"EEA\"]\njurisdiction_in = [\"EU\"]\n[routing]\norder = [\"us-east\", \"de-frankfurt\", \"fr-paris\"]\nfailover = true\n",
    )
    .unwrap();
    path
}

/// The first eligible provider each tenant tries (when none is ejected).
const TENANTS: [(&str, usize, usize); 2] = [("acme", 1, 2), ("globex", 2, 1)];

async fn create_keys(db: &Path) -> Vec<String> {
    let store = cordon::store::Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let mut keys = Vec::new();
    for (tenant, ..) in TENANTS {
        let key = cordon::auth::key::NewKey::generate();
        store
            .insert_key(&cordon::store::KeyRow {
                id: key.id.clone(),
                tenant: tenant.into(),
                project: None,
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
        keys.push(key.raw.expose().clone());
    }
    store.close().await;
    keys
}

struct Cordon {
    child: std::process::Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

fn start_cordon(config: &Path, log: &Path, pin: Option<usize>) -> Cordon {
    let bin = std::env::var("SOAK_CORDON").unwrap_or(env!("CARGO_BIN_EXE_cordon").to_owned());
    let mut cmd = match pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string(), &bin]);
            c
        }
        None => Command::new(&bin),
    };
    let mut child = cmd
        .args(["serve", "--config"])
        .arg(config)
        .env("SOAK_PROVIDER_KEY", "sk-soak")
        .env(
            "RUST_LOG",
            std::env::var("SOAK_RUST_LOG").unwrap_or("info".to_owned()),
        )
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(a) = line.strip_prefix("cordon listening on ") {
                let _ = tx.send((false, a.parse::<SocketAddr>().unwrap()));
            } else if let Some(a) = line.strip_prefix("cordon admin listening on ") {
                let _ = tx.send((true, a.parse::<SocketAddr>().unwrap()));
            }
        }
    });
    let (mut addr, mut admin) = (None, None);
    while addr.is_none() || admin.is_none() {
        let Ok((is_admin, a)) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!(
                "cordon did not start:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        };
        if is_admin {
            admin = Some(a);
        } else {
            addr = Some(a);
        }
    }
    Cordon {
        child,
        addr: addr.unwrap(),
        admin: admin.unwrap(),
    }
}

/// VmRSS and VmHWM of `pid`, in MB.
fn rss_mb(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

async fn metric(client: &reqwest::Client, admin: SocketAddr, name: &str) -> Option<f64> {
    let text = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

// --------------------------------------------------------------- client ---

/// When the client gives up on a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Abandon {
    /// Its future dropped 0–3 ms after it was started: before cordon read
    /// it, or while cordon waits for the provider.
    Early(u64),
    /// The provider holds the head 300 ms; the client drops at this many ms.
    Waiting(u64),
    /// A slow stream; the client drops it after reading this many chunks.
    MidStream(usize),
}

impl Abandon {
    fn stage(self) -> &'static str {
        match self {
            Abandon::Early(_) => "early (0-3 ms)",
            Abandon::Waiting(_) => "waiting for the head",
            Abandon::MidStream(_) => "mid-stream",
        }
    }
}

/// One request as the client sent it.
struct Plan {
    n: u64,
    tenant: usize,
    stream: bool,
    messages: bool,
    directive: Directive,
    abandon: Option<Abandon>,
}

/// What the client got.
#[derive(Debug, Clone)]
enum Got {
    /// It gave up first (its future was dropped).
    Abandoned,
    /// No HTTP answer, or its body broke.
    Transport(String),
    Whole {
        status: u16,
        /// `error.code` of an error body.
        code: Option<String>,
        json: bool,
        zq: usize,
    },
    Stream {
        status: u16,
        done: bool,
        /// The last error event's message, if any.
        error: Option<String>,
        zq: usize,
    },
}

struct Sent {
    plan: Plan,
    got: Got,
}

fn plan(n: u64, rng: &mut Rng, k: &Knobs) -> Plan {
    let tenant = (rng.next() % 2) as usize;
    let stream = rng.next().is_multiple_of(2);
    let messages = rng.chance(20.0);
    let mut directive = Directive {
        chunks: rng.range(3, 16) as usize,
        head_ms: 0,
        gap_ms: if stream { rng.pick(&[0, 0, 1, 2]) } else { 0 },
        faults: [None; 3],
    };
    let mut abandon = None;
    if rng.chance(k.fault_pct) {
        let kinds: &[Fault] = if stream {
            &Fault::ALL
        } else {
            &Fault::ALL[..4]
        };
        let (_, first, second) = TENANTS[tenant];
        if rng.chance(25.0) {
            // Every eligible provider: the first with a fault that lets
            // cordon fail over, the second with any.
            directive.faults[first] = Some(rng.pick(&[Fault::S500, Fault::StallHead]));
            directive.faults[second] = Some(rng.pick(kinds));
        } else {
            directive.faults[first] = Some(rng.pick(kinds));
        }
    } else if rng.chance(k.abandon_pct) {
        let stages = if stream { 3 } else { 2 };
        abandon = Some(match rng.next() % stages {
            0 => Abandon::Early(rng.range(0, 3)),
            1 => {
                directive.head_ms = 300;
                Abandon::Waiting(rng.range(20, 250))
            }
            _ => {
                directive.chunks = 20;
                directive.gap_ms = 20;
                Abandon::MidStream(rng.range(1, 4) as usize)
            }
        });
    }
    Plan {
        n,
        tenant,
        stream,
        messages,
        directive,
        abandon,
    }
}

fn body_for(p: &Plan) -> String {
    let text = format!(
        "{} {}",
        p.directive.render(),
        "lorem ipsum dolor sit amet ".repeat(14)
    );
    if p.messages {
        serde_json::json!({
            "model": "soak-chat", "max_tokens": 256, "stream": p.stream,
            "system": "You are a helpful assistant.",
            "messages": [{"role": "user", "content": text}],
        })
        .to_string()
    } else {
        serde_json::json!({
            "model": "soak-chat", "stream": p.stream,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": text},
            ],
        })
        .to_string()
    }
}

fn count_zq(s: &str) -> usize {
    s.matches("zq").count()
}

/// Sends `p` and reads the answer, as a client that may give up.
async fn send(client: &reqwest::Client, base: &str, key: &str, p: &Plan) -> Got {
    let path = if p.messages {
        "/v1/messages"
    } else {
        "/v1/chat/completions"
    };
    let mut req = client
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header("x-request-id", format!("soak-{}", p.n))
        .body(body_for(p));
    req = if p.messages {
        req.header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
    } else {
        req.header("authorization", format!("Bearer {key}"))
    };
    let exchange = async {
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Got::Transport(format!("send: {e}")),
        };
        let status = resp.status().as_u16();
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(SSE));
        let mut buf = Vec::new();
        let mut chunks = 0;
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    buf.extend_from_slice(&c);
                    chunks += 1;
                    if let Some(Abandon::MidStream(k)) = p.abandon
                        && chunks >= k
                    {
                        return Got::Abandoned;
                    }
                }
                Ok(None) => break,
                Err(e) => return Got::Transport(format!("body after {} bytes: {e}", buf.len())),
            }
        }
        let text = String::from_utf8_lossy(&buf);
        if is_sse {
            let (done, error) = if p.messages {
                (
                    text.contains("event: message_stop"),
                    text.split("event: error\ndata: ").nth(1).map(|e| {
                        let line = e.lines().next().unwrap_or("");
                        serde_json::from_str::<serde_json::Value>(line).unwrap_or_default()["error"]
                            ["message"]
                            .as_str()
                            .unwrap_or("?")
                            .to_owned()
                    }),
                )
            } else {
                (
                    text.contains("data: [DONE]"),
                    text.split("data: {\"error\"").nth(1).map(|e| {
                        let line = format!("{{\"error\"{}", e.lines().next().unwrap_or(""));
                        serde_json::from_str::<serde_json::Value>(&line).unwrap_or_default()
                            ["error"]["message"]
                            .as_str()
                            .unwrap_or("?")
                            .to_owned()
                    }),
                )
            };
            Got::Stream {
                status,
                done,
                error,
                zq: count_zq(&text),
            }
        } else {
            let v = serde_json::from_slice::<serde_json::Value>(&buf);
            Got::Whole {
                status,
                code: v
                    .as_ref()
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_owned)),
                json: v.is_ok(),
                zq: count_zq(&text),
            }
        }
    };
    // No request may hang the soak: 30 s is far beyond any expected answer.
    let limit = match p.abandon {
        Some(Abandon::Early(ms) | Abandon::Waiting(ms)) => Duration::from_millis(ms),
        _ => Duration::from_secs(30),
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(got) => got,
        Err(_) if p.abandon.is_some() => Got::Abandoned,
        Err(_) => Got::Transport("no answer within 30 s".to_owned()),
    }
}

// --------------------------------------------------------------- checks ---

/// One usage row.
struct Row {
    providers_tried: String,
    status: i64,
    outcome: String,
    completion_tokens: Option<i64>,
    prompt_tokens: Option<i64>,
}

/// What the client should have got, given what the mocks did: `Err` says
/// why it is unexpected. Abandoned requests are not judged here.
fn judge(s: &Sent, attempts: &[(u8, Fault)]) -> Result<Expect, String> {
    let Some(&(last_p, last)) = attempts.last() else {
        return Err("reached no provider".to_owned());
    };
    if attempts.iter().any(|&(p, _)| p as usize == INELIGIBLE) {
        return Err("reached the ineligible provider".to_owned());
    }
    for &(p, f) in &attempts[..attempts.len() - 1] {
        if !f.allows_failover() {
            return Err(format!(
                "failed over after {} at {}",
                f.name(),
                PROVIDERS[p as usize].0
            ));
        }
    }
    let mut distinct: Vec<u8> = attempts.iter().map(|a| a.0).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != attempts.len() {
        return Err("a provider was tried twice".to_owned());
    }
    if let Got::Transport(e) = &s.got {
        return Err(format!("transport error after {:?}: {e}", attempts));
    }
    let chunks = s.plan.directive.chunks;
    let expect = match (last, s.plan.stream) {
        (Fault::None, _) => Expect::Complete,
        (Fault::S500 | Fault::StallHead, _) => {
            if attempts.len() < ELIGIBLE {
                return Err(format!(
                    "gave up after {} at {} with an eligible provider left",
                    last.name(),
                    PROVIDERS[last_p as usize].0
                ));
            }
            Expect::Status502
        }
        (Fault::Err200, _) | (Fault::Cut, false) => Expect::Status502,
        (Fault::Cut, true) => Expect::StreamFailed("the provider's stream broke"),
        (Fault::StallMid, true) => Expect::StreamFailed("the provider's stream stalled"),
        (Fault::StallMid, false) => return Err("stall-mid-stream on a whole answer".to_owned()),
    };
    let ok = match (&expect, &s.got) {
        (
            Expect::Complete,
            Got::Whole {
                status: 200,
                json: true,
                zq,
                code: None,
            },
        ) => !s.plan.stream && *zq == chunks,
        (
            Expect::Complete,
            Got::Stream {
                status: 200,
                done: true,
                error: None,
                zq,
            },
        ) => s.plan.stream && *zq == chunks,
        (
            Expect::Status502,
            Got::Whole {
                status: 502, code, ..
            },
        ) => code.as_deref() == Some("upstream_error"),
        (
            Expect::StreamFailed(words),
            Got::Stream {
                status: 200,
                done: false,
                error: Some(e),
                zq,
            },
        ) => e == words && *zq <= EVENTS_BEFORE_FAULT.min(chunks),
        _ => false,
    };
    if ok {
        Ok(expect)
    } else {
        Err(format!("expected {expect:?}, got {:?}", s.got))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Complete,
    Status502,
    StreamFailed(&'static str),
}

fn row_matches(expect: Expect, row: &Row, chunks: usize) -> Result<(), String> {
    let (status, outcome) = match expect {
        Expect::Complete => (200, "ok"),
        Expect::Status502 => (502, "upstream_error"),
        Expect::StreamFailed(_) => (200, "upstream_error"),
    };
    if row.status != status || row.outcome != outcome {
        return Err(format!(
            "record says {} {}, the client saw {status} {outcome}",
            row.status, row.outcome
        ));
    }
    if expect == Expect::Complete
        && (row.completion_tokens != Some(chunks as i64)
            || row.prompt_tokens != Some(PROMPT_TOKENS as i64))
    {
        return Err(format!(
            "record has tokens {:?}/{:?}, the provider said {PROMPT_TOKENS}/{chunks}",
            row.prompt_tokens, row.completion_tokens
        ));
    }
    Ok(())
}

async fn usage_rows(db: &Path) -> (HashMap<u64, Row>, Vec<String>, usize) {
    use sqlx::Row as _;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT request_id, providers_tried, status, outcome, prompt_tokens, completion_tokens FROM usage",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    let total = rows.len();
    let mut by_id = HashMap::with_capacity(total);
    let mut odd = Vec::new();
    for r in rows {
        let rid: String = r.get("request_id");
        let row = Row {
            providers_tried: r.get("providers_tried"),
            status: r.get("status"),
            outcome: r.get("outcome"),
            prompt_tokens: r.get("prompt_tokens"),
            completion_tokens: r.get("completion_tokens"),
        };
        match rid
            .strip_prefix("soak-")
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(n) => {
                if by_id.insert(n, row).is_some() {
                    odd.push(format!("two records for {rid}"));
                }
            }
            None => odd.push(format!(
                "a record for a request the harness never sent: {rid}"
            )),
        }
    }
    (by_id, odd, total)
}

// ----------------------------------------------------------------- main ---

fn main() {
    let started = Instant::now();
    let k = Knobs::from_env();
    let traffic = Duration::from_secs(k.secs) - k.reserve();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cordon_cpu = if k.pin && cores >= 2 {
        let _ = Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status();
        Some(1)
    } else {
        None
    };
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
        "soak: {} s in all ({} s of traffic), {} clients, {} req/s target, faults {} %, abandons {} %, seed {}; {cores} cores ({machine}){}",
        k.secs,
        traffic.as_secs(),
        k.clients,
        if k.rate == 0 {
            "no".to_owned()
        } else {
            k.rate.to_string()
        },
        k.fault_pct,
        k.abandon_pct,
        k.seed,
        if cordon_cpu.is_some() {
            "; harness on CPU 0, cordon on CPU 1"
        } else {
            ""
        }
    );

    // The watchdog: the soak stops by itself, whatever happens.
    let cordon_pid = Arc::new(AtomicU32::new(0));
    {
        let pid = cordon_pid.clone();
        let limit = Duration::from_secs(k.secs + 60);
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            eprintln!("soak: still running after {} s; aborting", limit.as_secs());
            let p = pid.load(Ordering::SeqCst);
            if p != 0 {
                let _ = Command::new("kill")
                    .args(["-KILL", &p.to_string()])
                    .status();
            }
            std::process::exit(3);
        });
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Seen::default());
    let mocks: Vec<SocketAddr> = rt.block_on(async {
        let mut v = Vec::new();
        for p in 0..PROVIDERS.len() {
            v.push(start_mock(p, seen.clone()).await);
        }
        v
    });
    let config = write_config(dir.path(), &mocks);
    let db = dir.path().join("cordon.db");
    let keys = rt.block_on(create_keys(&db));
    let log = dir.path().join("cordon.log");
    let mut cordon = start_cordon(&config, &log, cordon_cpu);
    let pid = cordon.child.id();
    cordon_pid.store(pid, Ordering::SeqCst);
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(k.clients * 2)
        .build()
        .unwrap();
    let admin = cordon.admin;
    rt.block_on(async {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client
                .get(format!("http://{admin}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                break;
            }
            assert!(Instant::now() < until, "cordon is not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    // RSS, every 2 s while traffic runs.
    let sampling = Arc::new(AtomicBool::new(true));
    let traffic_start = Instant::now();
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while sampling.load(Ordering::SeqCst) {
                if let Some((rss, _)) = rss_mb(pid) {
                    samples.push((traffic_start.elapsed().as_secs_f64(), rss));
                }
                std::thread::sleep(Duration::from_secs(2));
            }
            samples
        })
    };

    // ---- traffic ----
    let traffic_end = traffic_start + traffic;
    let counter = Arc::new(AtomicU64::new(0));
    let base = format!("http://{}", cordon.addr);
    let sent: Vec<Sent> = rt.block_on(async {
        let progress = {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut last = (Instant::now(), 0u64);
                loop {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    let n = counter.load(Ordering::Relaxed);
                    let rss = rss_mb(pid).map_or(0.0, |r| r.0);
                    eprintln!(
                        "soak: {:>4.0} s, {n} requests, {:.0} req/s over the last 30 s, cordon RSS {rss:.1} MB",
                        traffic_start.elapsed().as_secs_f64(),
                        (n - last.1) as f64 / last.0.elapsed().as_secs_f64()
                    );
                    last = (Instant::now(), n);
                }
            })
        };
        let mut tasks = Vec::new();
        for t in 0..k.clients {
            let client = client.clone();
            let base = base.clone();
            let keys = keys.clone();
            let counter = counter.clone();
            let per_task = if k.rate == 0 {
                None
            } else {
                Some(Duration::from_secs_f64(k.clients as f64 / k.rate as f64))
            };
            let mut rng = Rng(k.seed.wrapping_mul(1_000_003).wrapping_add(t as u64));
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                let mut tick = per_task.map(|d| {
                    let mut i = tokio::time::interval_at(
                        tokio::time::Instant::now() + d.mul_f64(t as f64 / k.clients as f64),
                        d,
                    );
                    // A request that took longer than its slot (a stall) is
                    // made up for by the next ones: the rate holds.
                    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    i
                });
                while Instant::now() < traffic_end {
                    if let Some(i) = &mut tick {
                        i.tick().await;
                    }
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let p = plan(n, &mut rng, &k);
                    let got = send(&client, &base, &keys[p.tenant], &p).await;
                    out.push(Sent { plan: p, got });
                }
                out
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        progress.abort();
        all
    });
    let traffic_secs = traffic_start.elapsed().as_secs_f64();
    sampling.store(false, Ordering::SeqCst);
    let samples = sampler.join().unwrap();
    let hwm = rss_mb(pid).map_or(0.0, |r| r.1);

    // ---- in flight, then SIGTERM ----
    let (in_flight, in_flight_wait) = rt.block_on(async {
        let t = Instant::now();
        loop {
            let v = metric(&client, admin, "cordon_in_flight_requests").await;
            if v == Some(0.0) || t.elapsed() > Duration::from_secs(10) {
                return (v, t.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let term_at = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let mut exit = None;
    while term_at.elapsed() < Duration::from_secs(40) {
        if let Ok(Some(s)) = cordon.child.try_wait() {
            exit = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let shutdown = term_at.elapsed();
    if exit.is_none() {
        let _ = cordon.child.kill();
        let _ = cordon.child.wait();
    }
    cordon_pid.store(0, Ordering::SeqCst);

    // ---- the records ----
    let (rows, odd_rows, total_rows) = rt.block_on(usage_rows(&db));
    let by_id = std::mem::take(&mut *seen.by_id.lock().unwrap());
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();

    // ---- judging ----
    let mut unexpected: Vec<String> = Vec::new();
    let mut fault_kinds: HashMap<Fault, u64> = HashMap::new();
    let mut outcomes: HashMap<&'static str, u64> = HashMap::new();
    let mut abandons: HashMap<&'static str, (u64, u64)> = HashMap::new();
    let (mut streams, mut messages, mut faulted, mut failovers) = (0u64, 0u64, 0u64, 0u64);
    let (mut abandoned_unsent, mut abandoned_no_row) = (0, 0);
    // Abandoned requests whose record names a provider that never received
    // them: cordon had chosen it, and was still connecting, when the client left.
    let mut tried_unreached: Vec<String> = Vec::new();
    let mut records_for_reached = 0u64;
    for s in &sent {
        let n = s.plan.n;
        streams += u64::from(s.plan.stream);
        messages += u64::from(s.plan.messages);
        let attempts = by_id.get(&n).map_or(&[][..], Vec::as_slice);
        let row = rows.get(&n);
        let injected: Vec<Fault> = attempts
            .iter()
            .map(|a| a.1)
            .filter(|f| *f != Fault::None)
            .collect();
        for f in &injected {
            *fault_kinds.entry(*f).or_default() += 1;
        }
        faulted += u64::from(!injected.is_empty());
        failovers += attempts.len().saturating_sub(1) as u64;
        // The record against what the mocks saw.
        let mocks_saw = attempts
            .iter()
            .map(|a| PROVIDERS[a.0 as usize].0)
            .collect::<Vec<_>>()
            .join(",");
        let abandoned = matches!(s.got, Got::Abandoned);
        match (attempts.is_empty(), row) {
            (false, Some(r)) => {
                records_for_reached += 1;
                if r.providers_tried != mocks_saw {
                    unexpected.push(format!(
                        "soak-{n}: record names providers [{}], the mocks received it at [{mocks_saw}]",
                        r.providers_tried
                    ));
                }
            }
            (false, None) => unexpected.push(format!(
                "soak-{n}: reached [{mocks_saw}] but has no usage record (got {:?})",
                s.got
            )),
            (true, Some(r)) if abandoned && r.providers_tried.is_empty() => abandoned_unsent += 1,
            (true, Some(r)) if abandoned => {
                let what = format!(
                    "soak-{n}: record [{}] {} {} ({:?})",
                    r.providers_tried, r.status, r.outcome, s.plan.abandon
                );
                // Only as a request the client left: 499, cancelled.
                if r.status != 499 || r.outcome != "cancelled" {
                    unexpected.push(format!("{what}, yet no provider received it"));
                }
                tried_unreached.push(what);
            }
            (true, None) if abandoned => abandoned_no_row += 1,
            (true, r) => unexpected.push(format!(
                "soak-{n}: reached no provider (record: {:?}), got {:?}",
                r.map(|r| (&r.providers_tried, r.status, &r.outcome)),
                s.got
            )),
        }
        if let Some(a) = s.plan.abandon {
            let e = abandons.entry(a.stage()).or_default();
            e.0 += 1;
            e.1 += u64::from(!attempts.is_empty());
        }
        if abandoned {
            *outcomes.entry("abandoned by the client").or_default() += 1;
            continue;
        }
        match judge(s, attempts) {
            Ok(expect) => {
                *outcomes
                    .entry(match expect {
                        Expect::Complete => "complete",
                        Expect::Status502 => "502 upstream_error (explained)",
                        Expect::StreamFailed(_) => "stream ended by an error event (explained)",
                    })
                    .or_default() += 1;
                if let Some(r) = row
                    && let Err(e) = row_matches(expect, r, s.plan.directive.chunks)
                {
                    unexpected.push(format!("soak-{n}: {e}"));
                }
            }
            Err(why) => {
                *outcomes.entry("UNEXPECTED").or_default() += 1;
                unexpected.push(format!(
                    "soak-{n} ({}{}, faults {:?}): {why}",
                    if s.plan.stream { "stream" } else { "whole" },
                    if s.plan.messages {
                        ", /v1/messages"
                    } else {
                        ""
                    },
                    attempts
                ));
            }
        }
    }
    let sent_ids: std::collections::HashSet<u64> = sent.iter().map(|s| s.plan.n).collect();
    let stray_at_mocks = by_id.keys().filter(|n| !sent_ids.contains(n)).count() as u64
        + seen.foreign.load(Ordering::Relaxed);
    let stray_rows = rows.keys().filter(|n| !sent_ids.contains(n)).count();
    let reached = by_id.len() as u64;
    let ineligible = seen.per_provider[INELIGIBLE].load(Ordering::Relaxed);
    let rows_with_provider = rows
        .values()
        .filter(|r| !r.providers_tried.is_empty())
        .count() as u64;

    // RSS: flat after warm-up.
    let warmup = (traffic_secs / 5.0).max(2.0);
    let after: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= warmup)
        .collect();
    let third = (traffic_secs - warmup) / 3.0;
    let max_in = |lo: f64, hi: f64| {
        after
            .iter()
            .filter(|(t, _)| *t >= lo && *t < hi)
            .map(|s| s.1)
            .fold(f64::NAN, f64::max)
    };
    let first_third = max_in(warmup, warmup + third);
    let last_third = max_in(warmup + 2.0 * third, f64::INFINITY);
    let rss_limit = first_third * 1.10 + 5.0;
    let rss_max = samples.iter().map(|s| s.1).fold(f64::NAN, f64::max);
    let panics = log_text.matches("panicked").count();
    let error_lines = log_text.lines().filter(|l| l.contains(" ERROR ")).count();
    let warn_lines = log_text.lines().filter(|l| l.contains(" WARN ")).count();

    // ---- report ----
    let mut r = String::new();
    let total = sent.len() as u64;
    let _ = writeln!(
        r,
        "\n== soak figures ({:.0} s of traffic, {:.1} s in all) ==",
        traffic_secs,
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        r,
        "requests: {total} ({:.0} req/s): {streams} streamed, {} whole; {messages} on /v1/messages",
        total as f64 / traffic_secs,
        total - streams
    );
    let mut o: Vec<_> = outcomes.into_iter().collect();
    o.sort();
    for (what, n) in o {
        let _ = writeln!(r, "  {what}: {n}");
    }
    let mut f: Vec<_> = fault_kinds.into_iter().collect();
    f.sort();
    let _ = writeln!(
        r,
        "faults injected: {} in {faulted} requests ({:.2} %): {}; failovers: {failovers}",
        f.iter().map(|x| x.1).sum::<u64>(),
        faulted as f64 * 100.0 / total.max(1) as f64,
        f.iter()
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut a: Vec<_> = abandons.into_iter().collect();
    a.sort();
    let _ = writeln!(
        r,
        "abandons planned: {} ({}); of those, {abandoned_unsent} recorded before any provider, {} recorded with a provider they never reached, {abandoned_no_row} with no record",
        a.iter().map(|x| x.1.0).sum::<u64>(),
        a.iter()
            .map(|(s, (n, reached))| format!("{s}: {n}, {reached} reached a provider"))
            .collect::<Vec<_>>()
            .join("; "),
        tried_unreached.len(),
    );
    let _ = writeln!(
        r,
        "per provider (requests received): {}",
        PROVIDERS
            .iter()
            .enumerate()
            .map(|(i, p)| format!(
                "{}{} {}",
                p.0,
                if p.2 { "" } else { " (INELIGIBLE)" },
                seen.per_provider[i].load(Ordering::Relaxed)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        r,
        "usage records: {total_rows} in the store; {rows_with_provider} name a provider; requests that reached a provider (mock side): {reached}, of which {records_for_reached} have their record; records of abandoned requests naming a provider that never received them: {}",
        tried_unreached.len()
    );
    let _ = writeln!(
        r,
        "in flight before SIGTERM: {in_flight:?} (read after {:.1} s); SIGTERM to exit: {:.2} s, {}",
        in_flight_wait.as_secs_f64(),
        shutdown.as_secs_f64(),
        exit.map_or("did not exit within 40 s".to_owned(), |s| s.to_string())
    );
    let _ = writeln!(
        r,
        "RSS (MB, {} samples every 2 s): start {:.1}, end {:.1}, max {rss_max:.1}, VmHWM {hwm:.1}; after a {warmup:.0} s warm-up: first third max {first_third:.1}, last third max {last_third:.1} (limit {rss_limit:.1} = first × 1.10 + 5)",
        samples.len(),
        samples.first().map_or(f64::NAN, |s| s.1),
        samples.last().map_or(f64::NAN, |s| s.1),
    );
    let _ = writeln!(
        r,
        "RSS every 30 s (MB): {}",
        samples
            .iter()
            .step_by(15)
            .map(|s| format!("{:.1}", s.1))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        r,
        "cordon log: {panics} panics, {error_lines} ERROR lines, {warn_lines} WARN lines"
    );

    let mut failed = Vec::new();
    if !unexpected.is_empty() {
        failed.push(format!("{} unexpected results", unexpected.len()));
    }
    if ineligible > 0 {
        failed.push(format!("the ineligible provider received {ineligible}"));
    }
    // One record per request that reached a provider; the only other records
    // naming one are those of requests left while cordon was connecting.
    if records_for_reached != reached
        || rows_with_provider != reached + tried_unreached.len() as u64
    {
        failed.push(format!(
            "{rows_with_provider} records name a provider, {records_for_reached} match the {reached} requests that reached one, {} were left before",
            tried_unreached.len()
        ));
    }
    if !odd_rows.is_empty() || stray_rows > 0 || stray_at_mocks > 0 {
        failed.push(format!(
            "{} odd records, {stray_rows} records and {stray_at_mocks} mock requests for ids never sent",
            odd_rows.len()
        ));
    }
    if in_flight != Some(0.0) {
        failed.push(format!("in-flight gauge {in_flight:?} before SIGTERM"));
    }
    if !exit.is_some_and(|s| s.success()) {
        failed.push(format!("cordon's exit after SIGTERM: {exit:?}"));
    }
    let rss_flat = last_third <= rss_limit;
    if !rss_flat {
        failed.push(format!(
            "RSS grew: last third max {last_third:.1} MB > {rss_limit:.1} MB"
        ));
    }
    if panics > 0 || error_lines > 0 {
        failed.push(format!(
            "{panics} panics, {error_lines} ERROR lines in the log"
        ));
    }
    let mut noted: Vec<&str> = Vec::new();
    for l in log_text
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
    {
        // The line without its timestamp, once per message.
        let msg = l.split_once(' ').map_or(l, |(_, m)| m);
        let key = msg.split(" request_id").next().unwrap_or(msg);
        if noted.len() < 5 && !noted.contains(&key) {
            noted.push(key);
            let _ = writeln!(r, "  log: {}", msg.chars().take(240).collect::<String>());
        }
    }
    for t in tried_unreached.iter().take(5) {
        let _ = writeln!(r, "  left while connecting: {t}");
    }
    for u in unexpected.iter().chain(&odd_rows).take(30) {
        let _ = writeln!(r, "  ! {u}");
    }
    if failed.is_empty() {
        let _ = writeln!(r, "PASS: every check held");
        print!("{r}");
    } else {
        let _ = writeln!(r, "FAIL: {}", failed.join("; "));
        print!("{r}");
        if std::env::var("SOAK_KEEP").is_ok() {
            let kept = dir.keep();
            println!("files kept in {}", kept.display());
        }
        std::process::exit(1);
    }
}
