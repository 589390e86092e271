//! A mock OpenAI-compatible provider: a real HTTP server on 127.0.0.1:0 that
//! records every request it receives and answers as it is told.

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
}

#[derive(Clone)]
pub struct MockProvider {
    pub addr: SocketAddr,
    pub name: String,
    tls: bool,
    received: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    /// Sends a signal when the stream's last chunk is about to be written.
    last_chunk: Arc<Mutex<Option<mpsc::UnboundedSender<()>>>>,
    /// Streams that stopped early because the receiving side went away.
    aborted: Arc<AtomicUsize>,
    /// The bytes each stream wrote (or tried to write) to its response body,
    /// one entry per stream.
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
}

pub type MockBody = BoxBody<Bytes, Infallible>;

impl MockProvider {
    /// Starts a mock on 127.0.0.1:0 that answers `Behaviour::Ok`.
    pub async fn start(name: &str) -> MockProvider {
        Self::start_inner(name, None).await
    }

    /// Starts a mock speaking HTTPS for `localhost`, with a certificate from a
    /// private CA made for it; returns the CA's certificate (PEM).
    pub async fn start_tls(name: &str) -> (MockProvider, String) {
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
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        (Self::start_inner(name, Some(acceptor)).await, ca.pem())
    }

    async fn start_inner(name: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> MockProvider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mock = MockProvider {
            addr,
            name: name.to_owned(),
            tls: tls.is_some(),
            received: Arc::default(),
            behaviour: Arc::new(Mutex::new(Behaviour::Ok {
                prompt_tokens: 12,
                completion_tokens: 5,
            })),
            last_chunk: Arc::default(),
            aborted: Arc::default(),
            sent: Arc::default(),
        };
        let m = mock.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let m = m.clone();
                let tls = tls.clone();
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
        let path = req.uri().path().to_owned();
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
        });
        let behaviour = self.behaviour.lock().unwrap().clone();
        match behaviour {
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
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                json(StatusCode::OK, serde_json::json!({}))
            }
            Behaviour::Stream {
                chunks,
                delay,
                prompt_tokens,
                completion_tokens,
            } => {
                let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
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

fn json(status: StatusCode, v: serde_json::Value) -> Response<MockBody> {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}
