//! A mock provider: a real HTTP server on 127.0.0.1:0 that records every
//! request it receives and answers as it is told, in the OpenAI protocol
//! (`MockProvider::start`) or the Anthropic Messages protocol
//! (`MockProvider::start_anthropic`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub version: hyper::Version,
    /// The request target as it came on the request line.
    pub target: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How the mock answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// A chat completion (or embeddings, by path) with these token counts.
    Ok {
        prompt_tokens: u64,
        completion_tokens: u64,
    },
    /// This status with an OpenAI-shaped error body.
    Status(u16),
    /// Never answers (for timeouts).
    Hang,
    /// Exactly this status, content type and body, in either protocol.
    Raw {
        status: u16,
        content_type: &'static str,
        body: Bytes,
    },
    /// These bytes as `text/event-stream`, then an end as `RawEnd` says.
    RawStream { events: Vec<Bytes>, end: RawEnd },
    /// This status with an error body (in the mock's protocol) whose message
    /// quotes the credential the mock received, as OpenAI's 401 does
    /// ("Incorrect API key provided: sk-…").
    EchoCredential(u16),
    /// This status with an OpenAI-shaped error body whose message echoes the
    /// whole request body (as some providers do for validation errors).
    EchoError(u16),
    /// Streams `chunks` content deltas, `delay` apart, then usage and [DONE].
    Stream {
        chunks: usize,
        delay: Duration,
        prompt_tokens: u64,
        completion_tokens: u64,
    },
    /// One tool call `get_weather({"city":"Paris"})` (id `call_mock1` in the
    /// OpenAI protocol, `toolu_mock1` in Anthropic's, after the text
    /// `let me check`), streamed with the arguments in two fragments when
    /// the request asks for a stream.
    ToolCall {
        prompt_tokens: u64,
        completion_tokens: u64,
    },
}

/// The tool call the mock answers with: name, arguments (split in two
/// fragments when streamed).
pub const TOOL_NAME: &str = "get_weather";
pub const TOOL_ARGS: [&str; 2] = ["{\"city\":", "\"Paris\"}"];

#[derive(Clone)]
pub struct MockProvider {
    pub addr: SocketAddr,
    pub name: String,
    tls: bool,
    /// Speaks the Anthropic Messages protocol instead of OpenAI's.
    anthropic: bool,
    received: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    /// Sends a signal when the stream's last chunk is about to be written.
    last_chunk: Arc<Mutex<Option<mpsc::UnboundedSender<()>>>>,
    /// Streams that stopped early because the receiving side went away.
    aborted: Arc<AtomicUsize>,
    /// The bytes each stream wrote (or tried to write) to its response body,
    /// one entry per stream.
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Connections accepted.
    connections: Arc<AtomicUsize>,
    /// TLS handshakes completed (a TLS mock only).
    handshakes: Arc<AtomicUsize>,
}

pub type MockBody = BoxBody<Bytes, std::io::Error>;

impl MockProvider {
    /// Starts a mock on 127.0.0.1:0 that answers `Behaviour::Ok`.
    pub async fn start(name: &str) -> MockProvider {
        Self::start_inner(name, None, false).await
    }

    /// Starts a mock speaking the Anthropic Messages protocol (`POST
    /// /v1/messages`, non-streamed and SSE, with usage) that answers
    /// `Behaviour::Ok`.
    pub async fn start_anthropic(name: &str) -> MockProvider {
        Self::start_inner(name, None, true).await
    }

    pub fn is_anthropic(&self) -> bool {
        self.anthropic
    }

    /// Starts a mock speaking HTTPS for `localhost`, with a certificate from a
    /// private CA made for it; returns the CA's certificate (PEM).
    pub async fn start_tls(name: &str) -> (MockProvider, String) {
        Self::start_tls_with(name, rustls::DEFAULT_VERSIONS).await
    }

    /// [`MockProvider::start_tls`], speaking TLS 1.2 only.
    pub async fn start_tls12(name: &str) -> (MockProvider, String) {
        Self::start_tls_with(name, &[&rustls::version::TLS12]).await
    }

    async fn start_tls_with(
        name: &str,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (MockProvider, String) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_protocol_versions(versions)
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        (
            Self::start_inner(name, Some(acceptor), false).await,
            ca.pem(),
        )
    }

    async fn start_inner(
        name: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
        anthropic: bool,
    ) -> MockProvider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mock = MockProvider {
            addr,
            name: name.to_owned(),
            tls: tls.is_some(),
            anthropic,
            received: Arc::default(),
            behaviour: Arc::new(Mutex::new(Behaviour::Ok {
                prompt_tokens: 12,
                completion_tokens: 5,
            })),
            last_chunk: Arc::default(),
            aborted: Arc::default(),
            sent: Arc::default(),
            connections: Arc::default(),
            handshakes: Arc::default(),
        };
        let m = mock.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                m.connections.fetch_add(1, Ordering::SeqCst);
                let m = m.clone();
                let tls = tls.clone();
                let handshakes = m.handshakes.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let m = m.clone();
                        async move { Ok::<_, Infallible>(m.answer(req).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                handshakes.fetch_add(1, Ordering::SeqCst);
                                let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                    }
                });
            }
        });
        mock
    }

    pub fn base_url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}/v1", self.addr.port())
        } else {
            format!("http://{}/v1", self.addr)
        }
    }

    pub fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far (a TLS mock only).
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// A receiver told when a stream is about to send its last chunk.
    pub fn on_last_chunk(&self) -> mpsc::UnboundedReceiver<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.last_chunk.lock().unwrap() = Some(tx);
        rx
    }

    /// How many streams stopped early because the gateway closed the
    /// connection (a send to the response body failed).
    pub fn streams_aborted(&self) -> usize {
        self.aborted.load(Ordering::SeqCst)
    }

    /// The bytes each stream has written so far, in the order the streams began.
    pub fn sent_streams(&self) -> Vec<Vec<u8>> {
        self.sent.lock().unwrap().clone()
    }

    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<MockBody> {
        let method = req.method().to_string();
        let version = req.version();
        let target = req.uri().to_string();
        let path = req.uri().path().to_owned();
        let credential = req
            .headers()
            .get("authorization")
            .or_else(|| req.headers().get("x-api-key"))
            .or_else(|| req.headers().get("api-key"))
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_default();
        let model = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["model"].as_str().map(str::to_owned))
            .unwrap_or_default();
        self.received.lock().unwrap().push(Received {
            method,
            path: path.clone(),
            headers,
            body: body.clone(),
            version,
            target,
        });
        let behaviour = self.behaviour.lock().unwrap().clone();
        let wants_stream = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .is_some_and(|v| v["stream"] == serde_json::Value::Bool(true));
        match behaviour {
            Behaviour::Raw {
                status,
                content_type,
                body,
            } => {
                let mut resp = Response::new(full(body));
                *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                resp.headers_mut()
                    .insert("content-type", content_type.parse().unwrap());
                return resp;
            }
            Behaviour::RawStream { events, end } => return self.raw_stream(events, end),
            _ => {}
        }
        if let Behaviour::EchoCredential(code) = behaviour {
            let message = format!("Incorrect API key provided: {credential}");
            let v = if self.anthropic {
                serde_json::json!({"type": "error", "error": {"type": "authentication_error", "message": message}})
            } else {
                serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key", "param": null}})
            };
            return json(StatusCode::from_u16(code).unwrap(), v);
        }
        if self.anthropic {
            return self
                .answer_anthropic(behaviour, &model, &body, wants_stream)
                .await;
        }
        match behaviour {
            Behaviour::ToolCall {
                prompt_tokens,
                completion_tokens,
            } => {
                let usage = serde_json::json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});
                if !wants_stream {
                    return json(
                        StatusCode::OK,
                        serde_json::json!({
                            "id": "chatcmpl-mock", "object": "chat.completion", "created": 1_700_000_000, "model": model,
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": "let me check", "tool_calls": [
                                {"id": "call_mock1", "type": "function", "function": {"name": TOOL_NAME, "arguments": TOOL_ARGS.concat()}}
                            ]}, "finish_reason": "tool_calls"}],
                            "usage": usage,
                        }),
                    );
                }
                let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
                    let v = serde_json::json!({
                        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    });
                    format!("data: {v}\n\n")
                };
                let null = serde_json::Value::Null;
                let events = vec![
                    chunk(
                        serde_json::json!({"role": "assistant", "content": "let me check"}),
                        null.clone(),
                    ),
                    chunk(
                        serde_json::json!({"tool_calls": [{"index": 0, "id": "call_mock1", "type": "function", "function": {"name": TOOL_NAME, "arguments": ""}}]}),
                        null.clone(),
                    ),
                    chunk(
                        serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": TOOL_ARGS[0]}}]}),
                        null.clone(),
                    ),
                    chunk(
                        serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": TOOL_ARGS[1]}}]}),
                        null.clone(),
                    ),
                    chunk(serde_json::json!({}), "tool_calls".into()),
                    format!(
                        "data: {}\n\n",
                        serde_json::json!({
                            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                            "choices": [], "usage": usage,
                        })
                    ),
                    "data: [DONE]\n\n".to_owned(),
                ];
                self.stream_events(events, Duration::ZERO)
            }
            Behaviour::Ok {
                prompt_tokens,
                completion_tokens,
            } => {
                let v = if path.ends_with("/embeddings") {
                    serde_json::json!({
                        "object": "list",
                        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                        "model": model,
                        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
                    })
                } else {
                    serde_json::json!({
                        "id": "chatcmpl-mock",
                        "object": "chat.completion",
                        "created": 1_700_000_000,
                        "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("hello from {}", self.name)}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
                    })
                };
                json(StatusCode::OK, v)
            }
            Behaviour::Status(code) => json(
                StatusCode::from_u16(code).unwrap(),
                serde_json::json!({"error": {"message": format!("mock {} says {code}", self.name), "type": "server_error"}}),
            ),
            Behaviour::EchoError(code) => json(
                StatusCode::from_u16(code).unwrap(),
                serde_json::json!({"error": {"message": format!("invalid request: {}", String::from_utf8_lossy(&body)), "type": "invalid_request_error"}}),
            ),
            Behaviour::Hang
            | Behaviour::EchoCredential(_)
            | Behaviour::Raw { .. }
            | Behaviour::RawStream { .. } => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                json(StatusCode::OK, serde_json::json!({}))
            }
            Behaviour::Stream {
                chunks,
                delay,
                prompt_tokens,
                completion_tokens,
            } => {
                let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
                let last = self.last_chunk.lock().unwrap().clone();
                let name = self.name.clone();
                let aborted = self.aborted.clone();
                let sent = self.sent.clone();
                let slot = {
                    let mut s = sent.lock().unwrap();
                    s.push(Vec::new());
                    s.len() - 1
                };
                let send = move |bytes: String| {
                    let tx = tx.clone();
                    let sent = sent.clone();
                    async move {
                        // Recorded first, so a test that has received these
                        // bytes through the gateway always finds them here.
                        sent.lock().unwrap()[slot].extend_from_slice(bytes.as_bytes());
                        tx.send(Ok(Frame::data(Bytes::from(bytes)))).await.is_ok()
                    }
                };
                tokio::spawn(async move {
                    for i in 0..chunks {
                        if i + 1 == chunks
                            && let Some(l) = &last
                        {
                            let _ = l.send(());
                        }
                        let ev = serde_json::json!({
                            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                            "choices": [{"index": 0, "delta": {"content": format!("{name}-{i} ")}, "finish_reason": null}],
                        });
                        if !send(format!("data: {ev}\n\n")).await {
                            aborted.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        tokio::time::sleep(delay).await;
                    }
                    let stop = serde_json::json!({
                        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    });
                    let usage = serde_json::json!({
                        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                        "choices": [],
                        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
                    });
                    if !send(format!("data: {stop}\n\ndata: {usage}\n\ndata: [DONE]\n\n")).await {
                        aborted.fetch_add(1, Ordering::SeqCst);
                    }
                });
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|f| (f, rx))
                });
                let mut resp = Response::new(StreamBody::new(stream).boxed());
                resp.headers_mut()
                    .insert("content-type", "text/event-stream".parse().unwrap());
                resp
            }
        }
    }
}

impl MockProvider {
    /// Streams `events` (each a complete SSE event), `delay` apart, recording
    /// what is sent and whether the receiver went away.
    fn stream_events(&self, events: Vec<String>, delay: Duration) -> Response<MockBody> {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let last = self.last_chunk.lock().unwrap().clone();
        let aborted = self.aborted.clone();
        let sent = self.sent.clone();
        let slot = {
            let mut s = sent.lock().unwrap();
            s.push(Vec::new());
            s.len() - 1
        };
        tokio::spawn(async move {
            let n = events.len();
            for (i, e) in events.into_iter().enumerate() {
                if i + 1 == n
                    && let Some(l) = &last
                {
                    let _ = l.send(());
                }
                sent.lock().unwrap()[slot].extend_from_slice(e.as_bytes());
                if tx.send(Ok(Frame::data(Bytes::from(e)))).await.is_err() {
                    aborted.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
        });
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let mut resp = Response::new(StreamBody::new(stream).boxed());
        resp.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        resp
    }

    /// The Anthropic Messages protocol's answer for `behaviour`.
    async fn answer_anthropic(
        &self,
        behaviour: Behaviour,
        model: &str,
        body: &[u8],
        wants_stream: bool,
    ) -> Response<MockBody> {
        let ev = |v: serde_json::Value| {
            let name = v["type"].as_str().unwrap().to_owned();
            format!("event: {name}\ndata: {v}\n\n")
        };
        let start = |input: u64| {
            ev(serde_json::json!({"type": "message_start", "message": {
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": 1}}}))
        };
        let end = |stop: &str, output: u64| {
            vec![
                ev(
                    serde_json::json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": output}}),
                ),
                ev(serde_json::json!({"type": "message_stop"})),
            ]
        };
        let message = |content: serde_json::Value, stop: &str, input: u64, output: u64| {
            serde_json::json!({
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop, "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": output},
            })
        };
        let error = |code: u16, ty: &str, msg: String| {
            json(
                StatusCode::from_u16(code).unwrap(),
                serde_json::json!({"type": "error", "error": {"type": ty, "message": msg}}),
            )
        };
        match behaviour {
            Behaviour::Ok {
                prompt_tokens,
                completion_tokens,
            } if wants_stream => {
                let mut events = vec![
                    start(prompt_tokens),
                    ev(
                        serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                    ),
                    ev(
                        serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("hello from {}", self.name)}}),
                    ),
                    ev(serde_json::json!({"type": "content_block_stop", "index": 0})),
                ];
                events.extend(end("end_turn", completion_tokens));
                self.stream_events(events, Duration::ZERO)
            }
            Behaviour::Ok {
                prompt_tokens,
                completion_tokens,
            } => json(
                StatusCode::OK,
                message(
                    serde_json::json!([{"type": "text", "text": format!("hello from {}", self.name)}]),
                    "end_turn",
                    prompt_tokens,
                    completion_tokens,
                ),
            ),
            Behaviour::Stream {
                chunks,
                delay,
                prompt_tokens,
                completion_tokens,
            } => {
                let mut events = vec![
                    start(prompt_tokens),
                    ev(
                        serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                    ),
                ];
                for i in 0..chunks {
                    events.push(ev(serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("{}-{i} ", self.name)}})));
                }
                events.push(ev(
                    serde_json::json!({"type": "content_block_stop", "index": 0}),
                ));
                events.extend(end("end_turn", completion_tokens));
                self.stream_events(events, delay)
            }
            Behaviour::ToolCall {
                prompt_tokens,
                completion_tokens,
            } if wants_stream => {
                let mut events = vec![
                    start(prompt_tokens),
                    ev(
                        serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                    ),
                    ev(
                        serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "let me check"}}),
                    ),
                    ev(serde_json::json!({"type": "content_block_stop", "index": 0})),
                    ev(
                        serde_json::json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_mock1", "name": TOOL_NAME, "input": {}}}),
                    ),
                    ev(
                        serde_json::json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": TOOL_ARGS[0]}}),
                    ),
                    ev(
                        serde_json::json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": TOOL_ARGS[1]}}),
                    ),
                    ev(serde_json::json!({"type": "content_block_stop", "index": 1})),
                ];
                events.extend(end("tool_use", completion_tokens));
                self.stream_events(events, Duration::ZERO)
            }
            Behaviour::ToolCall {
                prompt_tokens,
                completion_tokens,
            } => json(
                StatusCode::OK,
                message(
                    serde_json::json!([
                        {"type": "text", "text": "let me check"},
                        {"type": "tool_use", "id": "toolu_mock1", "name": TOOL_NAME, "input": {"city": "Paris"}},
                    ]),
                    "tool_use",
                    prompt_tokens,
                    completion_tokens,
                ),
            ),
            Behaviour::Status(code) => {
                let ty = match code {
                    429 => "rate_limit_error",
                    529 => "overloaded_error",
                    400..=499 => "invalid_request_error",
                    _ => "api_error",
                };
                error(code, ty, format!("mock {} says {code}", self.name))
            }
            Behaviour::EchoError(code) => error(
                code,
                "invalid_request_error",
                format!("invalid request: {}", String::from_utf8_lossy(body)),
            ),
            Behaviour::Hang
            | Behaviour::EchoCredential(_)
            | Behaviour::Raw { .. }
            | Behaviour::RawStream { .. } => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                json(StatusCode::OK, serde_json::json!({}))
            }
        }
    }
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<MockBody> {
    let mut resp = Response::new(full(Bytes::from(v.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

fn full(b: Bytes) -> MockBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// How a `Behaviour::RawStream` ends after its events.
#[derive(Debug, Clone)]
pub enum RawEnd {
    /// The body ends cleanly.
    Finish,
    /// The connection is cut mid-body (no terminating chunk).
    Cut,
    /// Nothing more is sent, and the body never ends.
    Hang,
    /// These bytes again and again, until the receiver goes away.
    Endless(Bytes),
    /// A pause, then these events, then the end.
    After(Duration, Vec<Bytes>),
}

impl MockProvider {
    /// Streams `events` verbatim as `text/event-stream`, then ends as `end`
    /// says, recording what is sent.
    fn raw_stream(&self, events: Vec<Bytes>, end: RawEnd) -> Response<MockBody> {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let aborted = self.aborted.clone();
        let sent = self.sent.clone();
        let slot = {
            let mut s = sent.lock().unwrap();
            s.push(Vec::new());
            s.len() - 1
        };
        tokio::spawn(async move {
            let send = |b: Bytes| {
                let (tx, sent) = (tx.clone(), sent.clone());
                async move {
                    sent.lock().unwrap()[slot].extend_from_slice(&b);
                    tx.send(Ok(Frame::data(b))).await.is_ok()
                }
            };
            for e in events {
                if !send(e).await {
                    aborted.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            match end {
                RawEnd::Finish => {}
                RawEnd::Cut => {
                    // Let what was sent leave first: hyper drops unflushed
                    // output when a body fails.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = tx.send(Err(std::io::Error::other("cut by the mock"))).await;
                }
                RawEnd::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                RawEnd::After(pause, more) => {
                    tokio::time::sleep(pause).await;
                    for e in more {
                        if !send(e).await {
                            aborted.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                }
                RawEnd::Endless(b) => loop {
                    if tx.send(Ok(Frame::data(b.clone()))).await.is_err() {
                        aborted.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                },
            }
        });
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let mut resp = Response::new(StreamBody::new(stream).boxed());
        resp.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        resp
    }
}
