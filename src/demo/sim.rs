//! A simulated provider for `cordon demo`: a real HTTP server on 127.0.0.1:0
//! that runs no model. An OpenAI-protocol profile answers chat completions
//! (plain or streamed, with a final usage chunk when
//! `stream_options.include_usage` is set; a call of the first tool when the
//! request offers tools) and embeddings; an Anthropic-protocol profile answers
//! Messages (plain or streamed; a `tool_use` of the first tool when the request
//! offers tools, streamed as `input_json_delta` fragments). Answers are clearly labelled canned text,
//! with token counts estimated from word counts.
//!
//! It logs nothing and keeps nothing: each body is read, counted, and dropped
//! when the answer is built.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::clock;

/// Largest request body a simulated provider reads.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Pause between streamed chunks, so a stream looks like one.
const CHUNK_DELAY: Duration = Duration::from_millis(10);
/// Embedding size when the request gives no `dimensions`.
const DEFAULT_DIMENSIONS: usize = 64;
const MAX_DIMENSIONS: usize = 4096;

type SimBody = UnsyncBoxBody<Bytes, Infallible>;

/// Who a simulated provider pretends to be.
#[derive(Debug)]
pub struct Profile {
    pub id: &'static str,
    pub city: &'static str,
    /// Its data terms in a few words, repeated in its answers.
    pub terms: &'static str,
    /// Speaks the Anthropic Messages protocol instead of OpenAI's.
    pub anthropic: bool,
}

/// A running simulated provider; stops when dropped.
#[derive(Debug)]
pub struct Sim {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Sim {
    /// Binds 127.0.0.1:0 and serves until dropped.
    pub async fn start(profile: &'static Profile) -> std::io::Result<Sim> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        let service = service_fn(move |req| async move {
                            Ok::<_, Infallible>(handle(profile, req).await)
                        });
                        connections.spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        Ok(Sim { addr, task })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(profile: &Profile, req: Request<Incoming>) -> Response<SimBody> {
    if req.method() != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let Ok(body) = Limited::new(req.into_body(), MAX_BODY).collect().await else {
        return error(StatusCode::BAD_REQUEST, "could not read the request body");
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return error(StatusCode::BAD_REQUEST, "the request body is not JSON");
    };
    match path.as_str() {
        "/v1/messages" if profile.anthropic => messages(profile, &request),
        "/v1/chat/completions" if !profile.anthropic => chat(profile, &request),
        "/v1/embeddings" if !profile.anthropic => embeddings(&request),
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

fn chat(profile: &Profile, request: &Value) -> Response<SimBody> {
    let Some(messages) = request["messages"].as_array() else {
        return error(StatusCode::BAD_REQUEST, "`messages` must be an array");
    };
    let model = request["model"].as_str().unwrap_or_default();
    let prompt_words: usize = messages.iter().map(|m| content_words(&m["content"])).sum();
    // Roughly what OpenAI counts: the text, plus a few tokens per message.
    let prompt_tokens = 3 + messages
        .iter()
        .map(|m| 3 + tokens(content_words(&m["content"])))
        .sum::<u64>();
    let answer = format!(
        "[simulated provider {id}, {city}] This answer is simulated: no model ran, and nothing \
         you sent was logged or kept. cordon routed your {prompt_words}-word prompt here because \
         {id} ({terms}) satisfies your tenant's policy.",
        id = profile.id,
        city = profile.city,
        terms = profile.terms,
    );
    let completion_tokens = tokens(answer.split_whitespace().count());
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let id = format!("chatcmpl-sim-{}", hex::encode(rand::random::<[u8; 8]>()));
    let created = clock::now_ms() / 1000;
    // Offered tools (and not told not to use them): call the first one.
    let tool = request["tools"][0]["function"]["name"]
        .as_str()
        .filter(|_| request["tool_choice"] != "none");
    let call_id = format!("call_sim{}", hex::encode(rand::random::<[u8; 6]>()));

    if let Some(name) = tool
        && request["stream"].as_bool() != Some(true)
    {
        return json_response(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": null, "refusal": null, "tool_calls": [{
                    "id": call_id, "type": "function",
                    "function": {"name": name, "arguments": TOOL_ARGS.concat()},
                }]},
                "logprobs": null,
                "finish_reason": "tool_calls",
            }],
            "usage": usage,
        }));
    }
    if request["stream"].as_bool() != Some(true) {
        return json_response(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": answer, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": usage,
        }));
    }
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if let Some(name) = tool {
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
        for piece in TOOL_ARGS {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
        events.push(chunk(json!({}), json!("tool_calls")));
    } else {
        events.extend(
            answer
                .split_inclusive(' ')
                .map(|piece| chunk(json!({"content": piece}), Value::Null)),
        );
        events.push(chunk(json!({}), json!("stop")));
    }
    if request["stream_options"]["include_usage"].as_bool() == Some(true) {
        events.push(json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage,
        }));
    }
    let mut lines: Vec<String> = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    lines.push("data: [DONE]\n\n".to_owned());
    sse_response(lines)
}

/// The arguments of a simulated tool call, streamed in these fragments.
const TOOL_ARGS: [&str; 3] = ["{\"simulated\": ", "true, \"note\": ", "\"no model ran\"}"];

/// Anthropic Messages, plain or streamed.
fn messages(profile: &Profile, request: &Value) -> Response<SimBody> {
    let Some(messages) = request["messages"].as_array() else {
        return anthropic_error(StatusCode::BAD_REQUEST, "`messages` must be an array");
    };
    let model = request["model"].as_str().unwrap_or_default();
    let prompt_words: usize = messages.iter().map(|m| content_words(&m["content"])).sum();
    let input_tokens = messages
        .iter()
        .map(|m| 3 + tokens(content_words(&m["content"])))
        .sum::<u64>();
    let answer = format!(
        "[simulated provider {id}, {city}, Anthropic protocol] This answer is simulated: no \
         model ran, and nothing you sent was logged or kept. cordon routed your \
         {prompt_words}-word prompt here because {id} ({terms}) satisfies your tenant's policy.",
        id = profile.id,
        city = profile.city,
        terms = profile.terms,
    );
    let output_tokens = tokens(answer.split_whitespace().count());
    let id = format!("msg_sim{}", hex::encode(rand::random::<[u8; 8]>()));
    // Offered tools (and not told not to use them): call the first one.
    let tool = request["tools"][0]["name"]
        .as_str()
        .filter(|_| request["tool_choice"]["type"] != "none");
    let call_id = format!("toolu_sim{}", hex::encode(rand::random::<[u8; 6]>()));
    if let Some(name) = tool
        && request["stream"].as_bool() != Some(true)
    {
        let input: Value = serde_json::from_str(&TOOL_ARGS.concat()).unwrap_or_default();
        return json_response(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "tool_use", "id": call_id, "name": name, "input": input}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }));
    }
    if request["stream"].as_bool() != Some(true) {
        return json_response(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": answer}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }));
    }
    let mut events = vec![json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}})];
    let stop_reason = if let Some(name) = tool {
        events.push(
            json!({"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": call_id, "name": name, "input": {}}}),
        );
        events.extend(TOOL_ARGS.iter().map(|piece| {
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}})
        }));
        "tool_use"
    } else {
        events.push(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
        events.extend(answer.split_inclusive(' ').map(|piece| {
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
        }));
        "end_turn"
    };
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output_tokens}}));
    events.push(json!({"type": "message_stop"}));
    let lines = events
        .iter()
        .map(|e| {
            let name = e["type"].as_str().unwrap_or_default();
            format!("event: {name}\ndata: {e}\n\n")
        })
        .collect();
    sse_response(lines)
}

/// An Anthropic-shaped error. Messages never quote the request.
fn anthropic_error(status: StatusCode, message: &str) -> Response<SimBody> {
    let mut resp = json_response(json!({
        "type": "error",
        "error": {"type": "invalid_request_error", "message": format!("simulated provider: {message}")},
    }));
    *resp.status_mut() = status;
    resp
}

/// Server-sent events, `CHUNK_DELAY` apart.
fn sse_response(lines: Vec<String>) -> Response<SimBody> {
    let frames = futures_util::stream::iter(lines).then(|line| async move {
        tokio::time::sleep(CHUNK_DELAY).await;
        Ok::<_, Infallible>(Frame::data(Bytes::from(line)))
    });
    let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    resp
}

fn embeddings(request: &Value) -> Response<SimBody> {
    // `input`: a string, an array of strings, an array of token ids, or an array of those.
    let inputs: Vec<&Value> = match &request["input"] {
        v @ Value::String(_) => vec![v],
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_number) => {
            vec![&request["input"]]
        }
        Value::Array(a) if !a.is_empty() => a.iter().collect(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "`input` must be a string or a non-empty array",
            );
        }
    };
    let dimensions = request["dimensions"]
        .as_u64()
        .and_then(|d| usize::try_from(d).ok())
        .map_or(DEFAULT_DIMENSIONS, |d| d.clamp(1, MAX_DIMENSIONS));
    let base64 = request["encoding_format"].as_str() == Some("base64");
    let mut prompt_tokens = 0;
    let mut data = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.into_iter().enumerate() {
        let features: Vec<String> = match input {
            Value::String(s) => {
                prompt_tokens += tokens(s.split_whitespace().count());
                s.split_whitespace().map(str::to_lowercase).collect()
            }
            Value::Array(ids) if ids.iter().all(Value::is_number) => {
                prompt_tokens += ids.len() as u64;
                ids.iter().map(Value::to_string).collect()
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "each `input` item must be a string or an array of token ids",
                );
            }
        };
        let vector = embed(&features, dimensions);
        let embedding = if base64 {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            json!(base64_encode(&bytes))
        } else {
            json!(vector)
        };
        data.push(json!({"object": "embedding", "index": index, "embedding": embedding}));
    }
    json_response(json!({
        "object": "list",
        "data": data,
        "model": request["model"].as_str().unwrap_or_default(),
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }))
}

/// Words in a message's `content`: a string or an array of parts.
fn content_words(content: &Value) -> usize {
    match content {
        Value::String(s) => s.split_whitespace().count(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .map(|t| t.split_whitespace().count())
            .sum(),
        _ => 0,
    }
}

/// About four tokens for every three English words.
fn tokens(words: usize) -> u64 {
    (words as u64 * 4).div_ceil(3)
}

/// A bag-of-words vector: each word adds a pseudo-random direction derived
/// from its hash, so texts sharing words point the same way. Unit length.
fn embed(features: &[String], dimensions: usize) -> Vec<f32> {
    let mut v = vec![0f32; dimensions];
    for f in features {
        let digest = Sha256::digest(f.as_bytes());
        let mut seed = digest
            .iter()
            .take(8)
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            | 1;
        for x in &mut v {
            // xorshift64
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *x += (seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else if let Some(first) = v.first_mut() {
        *first = 1.0;
    }
    v
}

/// Standard base64 with padding (what `encoding_format: "base64"` returns).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn json_response(v: Value) -> Response<SimBody> {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// An OpenAI-shaped error. Messages never quote the request.
fn error(status: StatusCode, message: &str) -> Response<SimBody> {
    let mut resp = json_response(json!({
        "error": {"message": format!("simulated provider: {message}"), "type": "invalid_request_error", "code": null},
    }));
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn embeddings_are_unit_length_and_deterministic() {
        let a = embed(&["hello".into(), "world".into()], 16);
        assert_eq!(a.len(), 16);
        assert!((a.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
        assert_eq!(a, embed(&["hello".into(), "world".into()], 16));
        assert_ne!(a, embed(&["goodbye".into()], 16));
        assert_eq!(embed(&[], 4), vec![1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn token_estimate_grows_with_words() {
        assert_eq!(tokens(0), 0);
        assert_eq!(tokens(3), 4);
        assert_eq!(content_words(&json!("one two  three")), 3);
        assert_eq!(
            content_words(&json!([{"type": "text", "text": "a b"}, {"type": "image_url"}])),
            2
        );
    }
}
