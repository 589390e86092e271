//! Micro-benchmarks of the steps every proxied request goes through, in the
//! order `src/server/exchange.rs` runs them: key verification, the model read
//! from the body, the eligibility lookup, translation when the client and the
//! provider speak different protocols, and usage extraction from the answer.
//! Inputs are shaped like real traffic: SDK headers, ~1 KB chat bodies, and
//! streams framed event by event as OpenAI and Anthropic send them.
//!
//! Run with `cargo bench --bench hotpath`; see `benches/README.md`.

#![expect(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark harness: prints the fixture sizes once and aborts on a broken fixture"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;

use bytes::Bytes;
use cordon::auth::key::NewKey;
use cordon::auth::{AuthError, KeyCache, KeyState};
use cordon::config::{self, Config};
use cordon::policy::{Date, Decision, Table};
use cordon::protocol::openai::Request;
use cordon::protocol::translate::{self, AnthropicToOpenAiStream, OpenAiToAnthropicStream};
use cordon::stream::sse::{self, AnthropicRelay, OpenAiRelay, Relay, Tokens};
use cordon::stream::translate::{AnthropicToOpenAiRelay, OpenAiToAnthropicRelay};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use serde_json::json;

/// Keys in the cache.
const KEYS: usize = 10_000;
/// How many distinct keys the authentication bench cycles through.
const PRESENTED: usize = 4_096;
/// 2026-11-23 12:00 UTC, in milliseconds.
const NOW_MS: i64 = 1_795_435_200_000;
/// Tokens of the streamed answers below.
const PROMPT_TOKENS: i64 = 250;

fn today() -> Date {
    time::macros::date!(2026 - 11 - 23)
}

// === 1. key verification ===

/// The headers an OpenAI SDK sends with a chat request.
fn sdk_headers(raw_key: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        h.insert(name, HeaderValue::from_str(value).expect("a header value"));
    };
    put("host", "llm.northwind.example");
    put("accept", "application/json");
    put("content-type", "application/json");
    put("user-agent", "OpenAI/Python 1.99.9");
    put("x-stainless-lang", "python");
    put("x-stainless-package-version", "1.99.9");
    put("x-stainless-retry-count", "0");
    put("content-length", "1024");
    put("authorization", &format!("Bearer {raw_key}"));
    h
}

/// A cache of `KEYS` keys spread over the example's tenants, and the headers
/// of `PRESENTED` of them.
fn key_cache() -> (KeyCache, Vec<HeaderMap>) {
    const TENANTS: [(&str, Option<&str>); 6] = [
        ("eu-sovereign", None),
        ("health-fr", None),
        ("health-fr", Some("research")),
        ("hr", None),
        ("labs", None),
        ("marketing", Some("nordics")),
    ];
    let keys: Vec<NewKey> = (0..KEYS).map(|_| NewKey::generate()).collect();
    let rows = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let (tenant, project) = TENANTS[i % TENANTS.len()];
            KeyState {
                id: k.id.clone(),
                tenant: tenant.to_owned(),
                project: project.map(str::to_owned),
                hash: k.hash,
                // One key in four expires, next year.
                expires_ms: (i % 4 == 0).then_some(NOW_MS + 365 * 86_400_000),
                revoked: false,
                last_used_ms: None,
                scope: Default::default(),
            }
        })
        .collect();
    let cache = KeyCache::new();
    cache.apply(rows);
    assert_eq!(cache.len(), KEYS, "every generated key is in the cache");
    let step = KEYS / PRESENTED;
    let headers = (0..PRESENTED)
        .map(|i| sdk_headers(keys[i * step].raw.expose()))
        .collect();
    (cache, headers)
}

fn bench_auth(c: &mut Criterion) {
    let (cache, headers) = key_cache();
    for h in &headers {
        assert!(cache.authenticate(h, NOW_MS).is_ok(), "known keys pass");
    }
    let stranger = NewKey::generate();
    let unknown = sdk_headers(stranger.raw.expose());
    assert_eq!(
        cache.authenticate(&unknown, NOW_MS).err(),
        Some(AuthError::Unknown)
    );

    let mut g = c.benchmark_group("auth");
    g.bench_function("authenticate_10k_keys", |b| {
        let mut i = 0;
        b.iter(|| {
            let h = &headers[i % PRESENTED];
            i += 1;
            black_box(cache.authenticate(black_box(h), NOW_MS))
        })
    });
    g.bench_function("authenticate_unknown_key", |b| {
        b.iter(|| black_box(cache.authenticate(black_box(&unknown), NOW_MS)))
    });
    // The part of the above that is parsing and SHA-256, without the lookup.
    let raw = stranger.raw.expose().as_str();
    g.bench_function("parse_and_hash_key", |b| {
        b.iter(|| black_box(cordon::auth::key::PresentedKey::parse(black_box(raw))))
    });
    g.finish();
}

// === 2. eligibility ===

fn example() -> Config {
    let gateway = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/cordon.toml"));
    config::load(gateway, &HashMap::<String, String>::new()).expect("the example cordon.toml loads")
}

/// (tenant, project, model) as a key and a body give them; all route today.
const LOOKUPS: [(&str, Option<&str>, &str); 9] = [
    ("eu-sovereign", None, "mistral-large"),
    ("eu-sovereign", None, "llama-3.3-70b"),
    ("health-fr", None, "gpt-4o"),
    ("health-fr", Some("research"), "llama-3.3-70b"),
    ("hr", None, "gpt-4o"),
    ("hr", None, "claude-sonnet-4"),
    ("labs", None, "gemini-2.5-flash"),
    ("marketing", None, "gpt-4o-mini"),
    ("marketing", Some("nordics"), "gpt-4o"),
];

fn first_provider<'a>(table: &'a Table, k: &(&str, Option<&str>, &'a str)) -> Option<&'a str> {
    match table.decide(k.0, k.1, k.2, today(), None) {
        Decision::Route(r) => r.eligible().next().map(|p| p.id.as_str()),
        _ => None,
    }
}

/// What `exchange.rs` step 6 does: decide, the policy version for the
/// response header, and every eligible provider's index for failover.
fn as_served(table: &Table, k: &(&str, Option<&str>, &str)) -> Option<(String, Vec<usize>)> {
    match table.decide(k.0, k.1, k.2, today(), None) {
        Decision::Route(r) => Some((
            r.version().to_string(),
            r.eligible_indexed().map(|(i, _)| i).collect(),
        )),
        _ => None,
    }
}

fn bench_eligibility(c: &mut Criterion) {
    let config = example();
    let table: &Table = &config.table;
    for k in &LOOKUPS {
        assert!(first_provider(table, k).is_some(), "{k:?} routes");
    }
    let mut g = c.benchmark_group("eligibility");
    g.bench_function("first_provider_example", |b| {
        let mut i = 0;
        b.iter(|| {
            let k = &LOOKUPS[i % LOOKUPS.len()];
            i += 1;
            black_box(first_provider(table, black_box(k)))
        })
    });
    g.bench_function("as_served_example", |b| {
        let mut i = 0;
        b.iter(|| {
            let k = &LOOKUPS[i % LOOKUPS.len()];
            i += 1;
            black_box(as_served(table, black_box(k)))
        })
    });
    g.finish();
}

// === 3. the model, read from the body ===

const SYSTEM: &str = "You are Northwind's HR assistant. Answer in the language of the question, \
    cite the section of the employee handbook you rely on, and never include personal data \
    about an employee in your answer.";

/// A chat request of about 1 KB: a system prompt and three turns.
fn chat_body() -> Vec<u8> {
    json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "How many days of paid leave does a new employee in \
                France get in the first year, and can unused days be carried over into the \
                next year? Our team lead says they are lost on 31 May."},
            {"role": "assistant", "content": "Under section 4.2 of the handbook, employees in \
                France accrue 2.5 working days of paid leave per month worked, so 25 days over \
                a full first year. Days not taken by 31 May are lost unless a carry-over was \
                agreed in writing with HR before that date (section 4.5)."},
            {"role": "user", "content": "And if I was on sick leave in April and May, do the \
                days I could not take still expire? Please answer briefly."}
        ],
        "temperature": 0.2,
        "max_tokens": 512,
        "stream": true,
        "user": "employee-48213"
    })
    .to_string()
    .into_bytes()
}

/// A chat request with two tools and a finished tool call in its history.
fn tools_body() -> Vec<u8> {
    json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Book me a desk in the Lyon office for next Tuesday, \
                near the window if possible, and tell me whether the canteen is open."},
            {"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_Qx8mR2vTnB3kLp0sYw7eJ1aD",
                "type": "function",
                "function": {"name": "find_desks",
                    "arguments": "{\"office\":\"lyon\",\"date\":\"2026-12-01\",\"near_window\":true}"}
            }]},
            {"role": "tool", "tool_call_id": "call_Qx8mR2vTnB3kLp0sYw7eJ1aD",
                "content": "[{\"desk\":\"L3-14\",\"window\":true},{\"desk\":\"L3-22\",\"window\":true}]"}
        ],
        "tools": [
            {"type": "function", "function": {
                "name": "find_desks",
                "description": "List the free desks of an office on a given day.",
                "parameters": {"type": "object", "properties": {
                    "office": {"type": "string", "enum": ["paris", "lyon", "lille"]},
                    "date": {"type": "string", "description": "ISO 8601 day"},
                    "near_window": {"type": "boolean"}
                }, "required": ["office", "date"]}
            }},
            {"type": "function", "function": {
                "name": "book_desk",
                "description": "Book one desk for the calling employee.",
                "parameters": {"type": "object", "properties": {
                    "desk": {"type": "string"},
                    "date": {"type": "string", "description": "ISO 8601 day"}
                }, "required": ["desk", "date"]}
            }}
        ],
        "tool_choice": "auto",
        "temperature": 0.2,
        "stream": false
    })
    .to_string()
    .into_bytes()
}

/// An embeddings request: four passages of a document.
fn embeddings_body() -> Vec<u8> {
    json!({
        "model": "text-embedding-3-small",
        "input": [
            "Employees in France accrue 2.5 working days of paid leave per month worked.",
            "Days not taken by 31 May are lost unless a carry-over was agreed in writing.",
            "Sick leave during a planned holiday postpones the days not taken.",
            "Part-time employees accrue leave in proportion to their contract."
        ],
        "encoding_format": "float"
    })
    .to_string()
    .into_bytes()
}

/// An Anthropic Messages request (`/v1/messages`), the same conversation.
fn messages_body() -> Vec<u8> {
    json!({
        "model": "claude-sonnet-4",
        "max_tokens": 1024,
        "system": SYSTEM,
        "messages": [
            {"role": "user", "content": "How many days of paid leave does a new employee in \
                France get in the first year, and can unused days be carried over into the \
                next year? Our team lead says they are lost on 31 May."},
            {"role": "assistant", "content": "Under section 4.2 of the handbook, employees in \
                France accrue 2.5 working days of paid leave per month worked, so 25 days over \
                a full first year. Days not taken by 31 May are lost unless a carry-over was \
                agreed in writing with HR before that date (section 4.5)."},
            {"role": "user", "content": [{"type": "text", "text": "And if I was on sick leave \
                in April and May, do the days I could not take still expire?"}]}
        ],
        "temperature": 0.2,
        "stream": true
    })
    .to_string()
    .into_bytes()
}

fn bench_request(c: &mut Criterion) {
    let bodies = [
        ("parse_chat_1k", chat_body(), "gpt-4o"),
        ("parse_chat_tools", tools_body(), "gpt-4o"),
        (
            "parse_embeddings",
            embeddings_body(),
            "text-embedding-3-small",
        ),
        // `/v1/messages` bodies go through the same parser (exchange.rs step 3).
        (
            "parse_anthropic_messages",
            messages_body(),
            "claude-sonnet-4",
        ),
    ];
    println!(
        "request bodies: {}",
        bodies
            .iter()
            .map(|(name, b, _)| format!("{name} {} B", b.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut g = c.benchmark_group("request");
    for (name, body, model) in &bodies {
        let parsed = Request::parse(body).expect("the body parses");
        assert_eq!(parsed.model, *model);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| black_box(Request::parse(black_box(body))))
        });
    }
    // The other half of step 3 on the passthrough path: the body to send on.
    let body = &bodies[0].1;
    let parsed = Request::parse(body).expect("the chat body parses");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("forward_body_chat_1k", |b| {
        b.iter(|| black_box(parsed.forward_body(black_box("gpt-4o-2024-11-20"))))
    });
    g.finish();
}

// === 4. usage, from the provider's answer ===

/// The streamed answer, one token per content event (16 tokens).
const TOKENS: &str = "Yes|,| days| you| could| not| take| because| of| sick| leave| are| postponed| (section| 4.6)|.";

fn words() -> Vec<&'static str> {
    TOKENS.split('|').collect()
}

/// An OpenAI stream of 20 events, one `Vec` per event as the provider writes
/// them: the role chunk, 16 content chunks, the finish chunk, the usage chunk
/// and `[DONE]`. With `include_usage` on (cordon always asks for it), OpenAI
/// puts `"usage":null` in every chunk; `null_usage: false` leaves it out, as
/// some OpenAI-compatible servers (and `benches/load.rs`'s mock) do.
fn openai_stream(null_usage: bool) -> Vec<Vec<u8>> {
    let usage = if null_usage { ",\"usage\":null" } else { "" };
    let chunk = |delta: &str, finish: &str, obfuscation: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-CXq3RkT8aV2mN5pL0sB7wE1yHdZfG\",\"object\":\"chat.completion.chunk\",\
             \"created\":1795435200,\"model\":\"gpt-4o-2024-11-20\",\"service_tier\":\"default\",\
             \"system_fingerprint\":\"fp_b7faba9ef5\",\"choices\":[{{\"index\":0,\"delta\":{delta},\
             \"logprobs\":null,\"finish_reason\":{finish}}}]{usage},\"obfuscation\":\"{obfuscation}\"}}\n\n"
        )
        .into_bytes()
    };
    let mut events = vec![chunk(
        "{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}",
        "null",
        "x7Kd",
    )];
    for w in words() {
        let delta = json!({ "content": w }).to_string();
        events.push(chunk(&delta, "null", "Qm2"));
    }
    events.push(chunk("{}", "\"stop\"", "e9RtYp1"));
    events.push(
        format!(
            "data: {{\"id\":\"chatcmpl-CXq3RkT8aV2mN5pL0sB7wE1yHdZfG\",\"object\":\"chat.completion.chunk\",\
             \"created\":1795435200,\"model\":\"gpt-4o-2024-11-20\",\"service_tier\":\"default\",\
             \"system_fingerprint\":\"fp_b7faba9ef5\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{PROMPT_TOKENS},\
             \"completion_tokens\":17,\"total_tokens\":267,\"prompt_tokens_details\":{{\"cached_tokens\":0,\
             \"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\
             \"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}},\"obfuscation\":\"Zk\"}}\n\n"
        )
        .into_bytes(),
    );
    events.push(b"data: [DONE]\n\n".to_vec());
    events
}

/// An Anthropic Messages stream of 20 events: `message_start`, a text block
/// (start, a `ping`, 14 deltas, stop), `message_delta` and `message_stop`.
fn anthropic_stream() -> Vec<Vec<u8>> {
    let ev = |name: &str, data: String| format!("event: {name}\ndata: {data}\n\n").into_bytes();
    let mut events = vec![
        ev(
            "message_start",
            format!(
                "{{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\
                 \"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-20250514\",\
                 \"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":{PROMPT_TOKENS},\
                 \"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1,\
                 \"service_tier\":\"standard\"}}}}}}"
            ),
        ),
        ev(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#
                .to_owned(),
        ),
        ev("ping", r#"{"type": "ping"}"#.to_owned()),
    ];
    for w in &words()[..14] {
        let data = json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": w}});
        events.push(ev("content_block_delta", data.to_string()));
    }
    events.push(ev(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#.to_owned(),
    ));
    events.push(ev(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#
            .to_owned(),
    ));
    events.push(ev("message_stop", r#"{"type":"message_stop"}"#.to_owned()));
    events
}

/// A non-streamed OpenAI `chat.completion`.
fn openai_response() -> Vec<u8> {
    json!({
        "id": "chatcmpl-CXq3RkT8aV2mN5pL0sB7wE1yHdZfG",
        "object": "chat.completion",
        "created": 1_795_435_200,
        "model": "gpt-4o-2024-11-20",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Yes, days you could not take because \
                of sick leave are postponed (section 4.6). You have 15 months from your return \
                to take them.", "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 31, "total_tokens": 281,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
        "service_tier": "default",
        "system_fingerprint": "fp_b7faba9ef5"
    })
    .to_string()
    .into_bytes()
}

/// A non-streamed Anthropic `message`.
fn anthropic_response() -> Vec<u8> {
    json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": [{"type": "text", "text": "Yes, days you could not take because of sick \
            leave are postponed (section 4.6). You have 15 months from your return to take them."}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": PROMPT_TOKENS, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "output_tokens": 31, "service_tier": "standard"}
    })
    .to_string()
    .into_bytes()
}

fn total_len(events: &[Vec<u8>]) -> u64 {
    events.iter().map(|e| e.len() as u64).sum()
}

/// Feeds `events` one at a time, then ends the stream: what `RelayBody` does
/// with one response. Returns the events sent on and the usage read.
fn relay(mut r: impl Relay, events: &[Vec<u8>]) -> (Vec<Bytes>, Tokens) {
    let mut out = Vec::with_capacity(events.len() + 4);
    let mut framer = sse::Framer::new(1 << 20);
    for e in events {
        // Never over the limit: these events are short.
        let _ = framer.push(black_box(e), &mut r, &mut out);
    }
    framer.finish(&mut r, &mut out);
    (out, r.tokens())
}

fn bench_usage(c: &mut Criterion) {
    let oa = openai_stream(true);
    let oa_lean = openai_stream(false);
    let an = anthropic_stream();
    let (oa_resp, an_resp) = (openai_response(), anthropic_response());
    assert_eq!((oa.len(), oa_lean.len(), an.len()), (20, 20, 20));
    println!(
        "streams: OpenAI {} B (without \"usage\":null {} B), Anthropic {} B; \
         responses: OpenAI {} B, Anthropic {} B",
        total_len(&oa),
        total_len(&oa_lean),
        total_len(&an),
        oa_resp.len(),
        an_resp.len()
    );
    let want = Tokens {
        prompt: Some(PROMPT_TOKENS),
        completion: Some(17),
    };
    // The client did not ask for usage: the usage chunk is read and dropped.
    for events in [&oa, &oa_lean] {
        let (out, tokens) = relay(OpenAiRelay::new(true), events);
        assert_eq!((out.len(), tokens), (19, want));
    }
    let (out, tokens) = relay(AnthropicRelay::new(), &an);
    let want_an = Tokens {
        prompt: Some(PROMPT_TOKENS),
        completion: Some(15),
    };
    assert_eq!((out.len(), tokens), (20, want_an));
    assert_eq!(
        sse::openai_body_tokens(&oa_resp).and_then(|t| t.completion),
        Some(31)
    );
    assert_eq!(
        sse::anthropic_body_tokens(&an_resp).and_then(|t| t.completion),
        Some(31)
    );

    let mut g = c.benchmark_group("usage");
    g.throughput(Throughput::Elements(20));
    g.bench_function("openai_relay_20_events", |b| {
        b.iter(|| relay(OpenAiRelay::new(true), &oa))
    });
    g.bench_function("openai_relay_20_events_no_null_usage", |b| {
        b.iter(|| relay(OpenAiRelay::new(true), &oa_lean))
    });
    g.bench_function("anthropic_relay_20_events", |b| {
        b.iter(|| relay(AnthropicRelay::new(), &an))
    });
    g.throughput(Throughput::Bytes(oa_resp.len() as u64));
    g.bench_function("openai_body_tokens", |b| {
        b.iter(|| black_box(sse::openai_body_tokens(black_box(&oa_resp))))
    });
    g.throughput(Throughput::Bytes(an_resp.len() as u64));
    g.bench_function("anthropic_body_tokens", |b| {
        b.iter(|| black_box(sse::anthropic_body_tokens(black_box(&an_resp))))
    });
    g.finish();
}

// === 5. translation ===

fn bench_translate(c: &mut Criterion) {
    let upstream = "claude-sonnet-4-20250514";
    let (chat, tools, messages) = (chat_body(), tools_body(), messages_body());
    let (oa_resp, an_resp) = (openai_response(), anthropic_response());
    let (oa, an) = (openai_stream(true), anthropic_stream());
    for body in [&chat, &tools] {
        translate::openai_to_anthropic_request(body, upstream).expect("the request translates");
    }
    translate::anthropic_to_openai_request(&messages, "gpt-4o-2024-11-20")
        .expect("the Messages request translates");
    translate::anthropic_to_openai_response(&an_resp, "claude-sonnet-4")
        .expect("the Anthropic response translates");
    translate::openai_to_anthropic_response(&oa_resp, "gpt-4o")
        .expect("the OpenAI response translates");
    let inner = AnthropicToOpenAiStream::new("claude-sonnet-4", false);
    let (out, tokens) = relay(AnthropicToOpenAiRelay::new(inner), &an);
    assert_eq!(
        (out.len(), tokens.prompt, tokens.completion),
        (17, Some(PROMPT_TOKENS), Some(15))
    );
    let inner = OpenAiToAnthropicStream::new("gpt-4o");
    let (out, tokens) = relay(OpenAiToAnthropicRelay::new(inner), &oa);
    assert_eq!(
        (out.len(), tokens.prompt, tokens.completion),
        (21, Some(PROMPT_TOKENS), Some(17))
    );

    let mut g = c.benchmark_group("translate");
    g.throughput(Throughput::Bytes(chat.len() as u64));
    g.bench_function("openai_to_anthropic_request_chat_1k", |b| {
        b.iter(|| {
            black_box(translate::openai_to_anthropic_request(
                black_box(&chat),
                upstream,
            ))
        })
    });
    g.throughput(Throughput::Bytes(tools.len() as u64));
    g.bench_function("openai_to_anthropic_request_tools", |b| {
        b.iter(|| {
            black_box(translate::openai_to_anthropic_request(
                black_box(&tools),
                upstream,
            ))
        })
    });
    g.throughput(Throughput::Bytes(messages.len() as u64));
    g.bench_function("anthropic_to_openai_request", |b| {
        b.iter(|| {
            black_box(translate::anthropic_to_openai_request(
                black_box(&messages),
                "gpt-4o-2024-11-20",
            ))
        })
    });
    g.throughput(Throughput::Bytes(an_resp.len() as u64));
    g.bench_function("anthropic_to_openai_response", |b| {
        b.iter(|| {
            black_box(translate::anthropic_to_openai_response_at(
                black_box(&an_resp),
                "claude-sonnet-4",
                1_795_435_200,
            ))
        })
    });
    g.throughput(Throughput::Bytes(oa_resp.len() as u64));
    g.bench_function("openai_to_anthropic_response", |b| {
        b.iter(|| {
            black_box(translate::openai_to_anthropic_response(
                black_box(&oa_resp),
                "gpt-4o",
            ))
        })
    });

    // One content event in the middle of a stream, through the state machine
    // (`sse_fields` included, as the relay calls it).
    g.throughput(Throughput::Elements(1));
    let an_delta = &an[5];
    g.bench_function("anthropic_to_openai_one_delta", |b| {
        let mut s = AnthropicToOpenAiStream::new("claude-sonnet-4", false);
        let mut out = Vec::with_capacity(4);
        for e in &an[..5] {
            let (name, data) = translate::sse_fields(e);
            s.push(name, &data, &mut out);
        }
        b.iter(|| {
            out.clear();
            let (name, data) = translate::sse_fields(black_box(an_delta));
            s.push(name, &data, &mut out);
            black_box(&out);
        })
    });
    let oa_delta = &oa[5];
    g.bench_function("openai_to_anthropic_one_delta", |b| {
        let mut s = OpenAiToAnthropicStream::new("gpt-4o");
        let mut out = Vec::with_capacity(4);
        for e in &oa[..5] {
            s.push(&translate::sse_fields(e).1, &mut out);
        }
        b.iter(|| {
            out.clear();
            s.push(&translate::sse_fields(black_box(oa_delta)).1, &mut out);
            black_box(&out);
        })
    });

    // Whole streams through the translating relays, as `relay_stream` builds them.
    g.throughput(Throughput::Elements(20));
    g.bench_function("anthropic_to_openai_relay_20_events", |b| {
        b.iter(|| {
            let inner =
                AnthropicToOpenAiStream::new("claude-sonnet-4", false).with_created(1_795_435_200);
            relay(AnthropicToOpenAiRelay::new(inner), &an)
        })
    });
    g.bench_function("openai_to_anthropic_relay_20_events", |b| {
        b.iter(|| {
            let inner = OpenAiToAnthropicStream::new("gpt-4o");
            relay(OpenAiToAnthropicRelay::new(inner), &oa)
        })
    });
    g.finish();
}

/// The access log line (`Exchange::record`), formatted as `cordon serve`
/// does in text mode, into `io::sink` so the write is left out: with
/// tracing-subscriber's `DefaultFields` and with cordon's `PlainFields`.
fn bench_log(c: &mut Criterion) {
    fn line() {
        tracing::info!(
            request_id = %"9f1c2e7a4b5d6e8f0a1b2c3d",
            tenant = "tenant-17",
            endpoint = "chat",
            model = "gpt-4o-mini",
            provider = "azure-eu-west",
            status = 200u16,
            outcome = "ok",
            attempts = 1usize,
            latency_ms = 0.734_f64,
            "request finished"
        );
    }
    fn subscriber<N>(fields: N) -> tracing::Dispatch
    where
        N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
                .with_writer(std::io::sink)
                .with_ansi(false)
                .fmt_fields(fields)
                .finish(),
        )
    }
    let mut g = c.benchmark_group("log");
    let default = subscriber(tracing_subscriber::fmt::format::DefaultFields::new());
    g.bench_function("access_line_default_fields", |b| {
        tracing::dispatcher::with_default(&default, || b.iter(line));
    });
    let plain = subscriber(cordon::cli::log_fields::PlainFields);
    g.bench_function("access_line_plain_fields", |b| {
        tracing::dispatcher::with_default(&plain, || b.iter(line));
    });
    g.finish();
}

criterion_group!(
    hotpath,
    bench_auth,
    bench_eligibility,
    bench_request,
    bench_usage,
    bench_translate,
    bench_log
);
criterion_main!(hotpath);
