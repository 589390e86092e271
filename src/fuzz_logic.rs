//! What the cargo-fuzz targets in `fuzz/` run: each function takes the raw
//! fuzzer input, feeds it to one piece of pure protocol logic and asserts the
//! properties that logic promises. A violated property panics, which
//! libFuzzer reports as a crash. Compiled only with the `fuzzing` feature.
//!
//! The seeds in `fuzz/corpus/<target>/` are replayed through these functions
//! by `cargo test --features fuzzing --lib fuzz_logic`, on stable and without
//! cargo-fuzz.

use std::collections::BTreeSet;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::protocol::json::deeper_than;
use crate::protocol::openai::{Request, RequestError};
use crate::protocol::translate::{
    self, AnthropicToOpenAiStream, OpenAiToAnthropicStream, TranslateError, Wire,
};
use crate::stream::sse::{AnthropicRelay, Framer, OpenAiRelay, Relay, Tokens};
use crate::stream::translate::{AnthropicToOpenAiRelay, OpenAiToAnthropicRelay};

/// Model names written into forwarded bodies: a plain one and one that needs
/// JSON escapes.
const MODELS: [&str; 2] = ["gpt-4o-2024-08-06", "m\"\\\n\u{e9}/\u{1F600}"];
/// The public model name of translated responses and streams.
const PUBLIC: &str = "chat-small";
const CREATED: i64 = 1_700_000_000;

// ===== target `routing`: OpenAI routing fields and JSON depth =====

/// `Request::parse` on any body, `forward_body` / `with_model` on what
/// parses, and `deeper_than` against a plain scan and the parsed depth.
///
/// - What parses is a JSON object whose `model` is the model read; the
///   rewritten bodies parse again, with the new model and the same `stream`;
///   when serde_json reads the body too, the rewritten bodies are the same
///   value with only `model` (and, forwarded streams,
///   `stream_options.include_usage`) changed.
/// - A refusal agrees with what the body is, and names no value from it.
/// - `deeper_than` agrees with a byte scan without its vectorised shortcut,
///   is never below the depth serde_json sees, and is monotonic in `max`.
pub fn routing(data: &[u8]) {
    let value = serde_json::from_slice::<Value>(data).ok();
    check_depth(data, value.as_ref());
    match Request::parse(data) {
        Ok(req) => check_routed(&req, value.as_ref()),
        Err(e) => check_route_error(&e, value.as_ref()),
    }
}

fn check_routed(req: &Request<'_>, value: Option<&Value>) {
    assert!(!req.model.is_empty());
    for m in MODELS {
        for (forward, body) in [(true, req.forward_body(m)), (false, req.with_model(m))] {
            let again = Request::parse(&body);
            assert!(again.is_ok(), "rewritten body does not parse: {again:?}");
            let Ok(again) = again else { return };
            assert_eq!(again.model, m);
            assert_eq!(again.stream, req.stream);
            let usage = if forward && req.stream {
                true
            } else {
                req.client_wants_usage
            };
            assert_eq!(again.client_wants_usage, usage);
            let Some(Value::Object(original)) = value else {
                // serde_json cannot read it (e.g. nested past its limit),
                // but the routing parser can: checked above.
                assert!(value.is_none(), "routed a body that is not an object");
                continue;
            };
            let mut want = original.clone();
            want.insert("model".into(), m.into());
            if forward && req.stream {
                let mut opts = match original.get("stream_options") {
                    Some(Value::Object(o)) => o.clone(),
                    _ => Map::new(),
                };
                opts.insert("include_usage".into(), true.into());
                want.insert("stream_options".into(), Value::Object(opts));
            }
            let got = serde_json::from_slice::<Value>(&body);
            assert!(got.is_ok(), "rewritten body is not JSON");
            assert_eq!(got.ok(), Some(Value::Object(want)));
        }
    }
    if let Some(Value::Object(o)) = value {
        assert_eq!(o.get("model").and_then(Value::as_str), Some(&*req.model));
        let stream = o.get("stream").and_then(Value::as_bool).unwrap_or(false);
        assert_eq!(req.stream, stream);
        // serde reads a struct from an array too: `[true]` is
        // `{"include_usage": true}`.
        let usage = match o.get("stream_options") {
            Some(Value::Array(a)) => a.first(),
            Some(s) => s.get("include_usage"),
            None => None,
        };
        let usage = usage.and_then(Value::as_bool).unwrap_or(false);
        assert_eq!(req.client_wants_usage, usage);
    }
}

fn check_route_error(e: &RequestError, value: Option<&Value>) {
    let object = match value {
        Some(Value::Object(o)) => Some(o),
        _ => None,
    };
    match e {
        RequestError::NotAnObject => {
            assert!(object.is_none(), "a JSON object refused as not an object");
        }
        RequestError::MissingModel => {
            if let Some(o) = object {
                assert!(matches!(o.get("model"), None | Some(Value::String(_))));
                assert!(
                    o.get("model")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                );
            }
        }
        RequestError::WrongType(field) => {
            assert!(["model", "stream", "stream_options"].contains(field));
            if let Some(o) = object {
                assert!(o.contains_key(*field));
            }
        }
        RequestError::Duplicate(field) => {
            assert!(["model", "stream", "stream_options"].contains(&field.as_str()));
        }
    }
}

fn check_depth(data: &[u8], value: Option<&Value>) {
    for max in [0, 1, 2, 3, 8, 64, 127] {
        let deeper = deeper_than(data, max);
        assert_eq!(deeper, scan_deeper_than(data, max), "max {max}");
        if deeper_than(data, max + 1) {
            assert!(deeper, "not monotonic at {max}");
        }
        // The text can be deeper than the value: of a duplicated key, the
        // value keeps only the last member.
        if let Some(v) = value.filter(|v| depth(v) > max) {
            assert!(deeper, "max {max}, parsed depth {}", depth(v));
        }
    }
}

/// `deeper_than` without its bracket-count shortcut.
fn scan_deeper_than(json: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        match (in_string, b) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') | (false, b'"') => in_string = !in_string,
            (false, b'[' | b'{') => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

// ===== target `sse`: the framer and every relay =====

/// Which relay a `sse` input drives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    OpenAi { strip_usage: bool },
    Anthropic,
    AnthropicToOpenAi { include_usage: bool },
    OpenAiToAnthropic,
}

impl Kind {
    fn relay(self) -> Box<dyn Relay> {
        match self {
            Self::OpenAi { strip_usage } => Box::new(OpenAiRelay::new(strip_usage)),
            Self::Anthropic => Box::new(AnthropicRelay::new()),
            Self::AnthropicToOpenAi { include_usage } => Box::new(AnthropicToOpenAiRelay::new(
                AnthropicToOpenAiStream::new(PUBLIC, include_usage).with_created(CREATED),
            )),
            Self::OpenAiToAnthropic => Box::new(OpenAiToAnthropicRelay::new(
                OpenAiToAnthropicStream::new(PUBLIC),
            )),
        }
    }

    fn passes_through(self) -> bool {
        matches!(self, Self::OpenAi { .. } | Self::Anthropic)
    }
}

/// Bytes of a `sse` input before the stream: relay, `max_event`, and four
/// chunk lengths used in turn.
const SSE_HEADER: usize = 6;

/// A provider stream cut into chunks at fuzzer-chosen places, through a
/// [`Framer`] with a small `max_event`, into one of the relays; and the same
/// stream pushed whole.
///
/// Input: byte 0 picks the relay (mod 6: OpenAI keeping / stripping the usage
/// chunk, Anthropic, Anthropic→OpenAI without / with usage, OpenAI→Anthropic),
/// byte 1 the limit (`max_event = 1 + 8 * b`), bytes 2..6 chunk lengths
/// (0 pushes an empty chunk), the rest is the stream.
///
/// - The framer never panics, hands the relay exactly the events a plain
///   byte scan finds (then the unterminated rest, at the end), and refuses
///   the stream only when an event or the rest really is over the limit.
/// - Every emitted piece is one whole event ending in a blank line, except
///   that a pass-through relay passes an unterminated last fragment on as it
///   came.
/// - Pass-through relays emit each event unchanged, or scrubbed when it is
///   the provider's error, or (OpenAI, client did not ask) drop the
///   usage-only chunk; translating relays emit a well-formed stream of the
///   client's protocol, nothing after its end.
/// - Chunking changes nothing: the output, usage and content flag are those
///   of the whole stream pushed at once (a prefix of them when a chunk left
///   an event over the limit).
pub fn sse(data: &[u8]) {
    let mut header = [0u8; SSE_HEADER];
    let n = data.len().min(SSE_HEADER);
    header[..n].copy_from_slice(&data[..n]);
    let stream = &data[n..];
    let kind = match header[0] % 6 {
        0 => Kind::OpenAi { strip_usage: false },
        1 => Kind::OpenAi { strip_usage: true },
        2 => Kind::Anthropic,
        3 => Kind::AnthropicToOpenAi {
            include_usage: false,
        },
        4 => Kind::AnthropicToOpenAi {
            include_usage: true,
        },
        _ => Kind::OpenAiToAnthropic,
    };
    let max_event = 1 + 8 * usize::from(header[1]);
    let mut lengths = [0usize; 4];
    for (l, b) in lengths.iter_mut().zip(&header[2..]) {
        *l = usize::from(*b);
    }
    if lengths.iter().all(|l| *l == 0) {
        lengths = [stream.len().max(1); 4];
    }
    let mut chunks = Vec::new();
    let mut at = 0;
    for l in lengths.iter().cycle() {
        if at >= stream.len() {
            break;
        }
        let end = (at + l).min(stream.len());
        chunks.push(&stream[at..end]);
        at = end;
    }

    let (events, rest) = scan_events(stream);
    let pieces = run(kind, max_event, &chunks);
    let whole = run(kind, max_event, &[stream]);
    for r in [&pieces, &whole] {
        check_framing(r, &events, rest, max_event);
        check_relay_output(kind, r);
    }
    assert_eq!(whole.too_large, rest.len() > max_event);
    if pieces.too_large {
        assert!(
            whole.out.starts_with(&pieces.out),
            "a refused stream emitted what the whole stream does not"
        );
    } else {
        assert!(!whole.too_large);
        assert_eq!(pieces.out, whole.out, "chunking changed the output");
        assert_eq!(pieces.tokens, whole.tokens);
        assert_eq!(pieces.saw_content, whole.saw_content);
    }
}

/// What one run of the framer and a relay gave.
struct Run {
    out: Vec<Bytes>,
    /// The events the relay was handed, each with what it emitted for it.
    events: Vec<(Bytes, Vec<Bytes>)>,
    /// What the relay emitted at `finish`, if it was called.
    finish: Option<Vec<Bytes>>,
    too_large: bool,
    tokens: Tokens,
    saw_content: bool,
}

/// A relay that records what it is handed and what it emits.
struct Recorder {
    inner: Box<dyn Relay>,
    events: Vec<(Bytes, Vec<Bytes>)>,
    finish: Option<Vec<Bytes>>,
}

impl Relay for Recorder {
    fn event(&mut self, event: Bytes, out: &mut Vec<Bytes>) {
        assert!(self.finish.is_none(), "an event after finish");
        let before = out.len();
        self.inner.event(event.clone(), out);
        self.events.push((event, out[before..].to_vec()));
    }
    fn finish(&mut self, out: &mut Vec<Bytes>) {
        assert!(self.finish.is_none(), "finished twice");
        let before = out.len();
        self.inner.finish(out);
        self.finish = Some(out[before..].to_vec());
    }
    fn tokens(&self) -> Tokens {
        self.inner.tokens()
    }
    fn saw_content(&self) -> bool {
        self.inner.saw_content()
    }
}

fn run(kind: Kind, max_event: usize, chunks: &[&[u8]]) -> Run {
    let mut framer = Framer::new(max_event);
    let mut relay = Recorder {
        inner: kind.relay(),
        events: Vec::new(),
        finish: None,
    };
    let mut out = Vec::new();
    let mut too_large = false;
    for chunk in chunks {
        if let Err(e) = framer.push(chunk, &mut relay, &mut out) {
            assert_eq!(e.0, max_event);
            too_large = true;
            break;
        }
    }
    // As `stream::body` does: a stream refused for a large event is not
    // finished.
    if !too_large {
        framer.finish(&mut relay, &mut out);
    }
    Run {
        out,
        tokens: relay.tokens(),
        saw_content: relay.saw_content(),
        events: relay.events,
        finish: relay.finish,
        too_large,
    }
}

/// The end of the first event in `buf` (after its blank line, `\n\n` or
/// `\r\n\r\n`), by a plain byte scan.
fn scan_event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < buf.len() {
        match (buf[i], buf[i + 1]) {
            (b'\n', b'\n') => return Some(i + 2),
            (b'\r', b'\n') if buf[i + 2..].starts_with(b"\r\n") => return Some(i + 4),
            _ => i += 1,
        }
    }
    None
}

/// The complete events of a stream, and the unterminated rest.
fn scan_events(mut stream: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut events = Vec::new();
    while let Some(end) = scan_event_end(stream) {
        events.push(&stream[..end]);
        stream = &stream[end..];
    }
    (events, stream)
}

/// Whether `b` is exactly one event: its first blank line is its end.
fn is_whole_event(b: &[u8]) -> bool {
    scan_event_end(b) == Some(b.len())
}

fn check_framing(r: &Run, events: &[&[u8]], rest: &[u8], max_event: usize) {
    let handed: Vec<&[u8]> = r.events.iter().map(|(e, _)| &e[..]).collect();
    if r.too_large {
        assert!(r.finish.is_none());
        assert!(
            events.starts_with(&handed),
            "framed events differ from a scan"
        );
        let longest = events.iter().map(|e| e.len() - 1).max().unwrap_or(0);
        assert!(
            longest > max_event || rest.len() > max_event,
            "refused a stream whose events all fit in {max_event} bytes"
        );
    } else {
        assert!(r.finish.is_some());
        let mut want = events.to_vec();
        if !rest.is_empty() {
            want.push(rest);
        }
        assert_eq!(handed, want, "framed events differ from a scan");
    }
}

fn check_relay_output(kind: Kind, r: &Run) {
    // Every emitted piece, in order, from `out`'s point of view.
    let mut emitted: Vec<Bytes> = Vec::new();
    for (i, (event, outs)) in r.events.iter().enumerate() {
        let last_unterminated =
            r.finish.is_some() && i + 1 == r.events.len() && !is_whole_event(event);
        for o in outs {
            if last_unterminated && kind.passes_through() && o == event {
                continue;
            }
            assert!(is_whole_event(o), "{kind:?} emitted a partial event");
        }
        if kind.passes_through() {
            check_pass_through(kind, event, outs);
        }
        emitted.extend(outs.iter().cloned());
    }
    for o in r.finish.iter().flatten() {
        assert!(
            is_whole_event(o),
            "{kind:?} emitted a partial event at the end"
        );
        emitted.push(o.clone());
    }
    assert_eq!(emitted, r.out);
    match kind {
        Kind::AnthropicToOpenAi { include_usage } => check_openai_stream(&r.out, include_usage),
        Kind::OpenAiToAnthropic => check_anthropic_stream(&r.out),
        Kind::OpenAi { .. } | Kind::Anthropic => {}
    }
}

/// A pass-through relay emits the event as it came, or the provider's error
/// scrubbed, or (OpenAI, stripping) nothing for the usage-only chunk.
fn check_pass_through(kind: Kind, event: &Bytes, outs: &[Bytes]) {
    match outs {
        [] => {
            assert_eq!(kind, Kind::OpenAi { strip_usage: true }, "dropped an event");
            // The relay reads the event's data lines joined, as SSE
            // defines them (and as a client would).
            let (_, data) = translate::sse_fields(event);
            let chunk = lenient_json(&data);
            assert!(chunk.get("usage").is_some_and(Value::is_object));
            assert!(
                chunk
                    .get("choices")
                    .is_none_or(|c| c.is_null() || c.as_array().is_some_and(Vec::is_empty)),
                "dropped a chunk with choices"
            );
        }
        [o] if o == event => {
            // Passed on as it came: not what a client would read as the
            // provider's error (its event name, or its data lines joined).
            let (name, data) = translate::sse_fields(event);
            match kind {
                Kind::Anthropic => assert_ne!(name, Some("error"), "an error event passed on"),
                _ => {
                    let v = lenient_json(&data);
                    assert!(
                        v.get("error").is_none_or(Value::is_null),
                        "an error chunk passed on"
                    );
                }
            }
        }
        [o] => {
            let (from, name) = match kind {
                Kind::Anthropic => (Wire::Anthropic, Some("error")),
                _ => (Wire::OpenAi, None),
            };
            let (n, data) = translate::sse_fields(o);
            assert_eq!(n, name);
            let v = parse_json(&data);
            check_mid_stream_error(&v, from);
        }
        _ => assert!(outs.is_empty(), "one event became {}", outs.len()),
    }
}

/// The error event cordon writes for a provider's mid-stream error: the
/// provider's documented type at most, in cordon's words.
fn check_mid_stream_error(v: &Value, from: Wire) {
    let protocol = match from {
        Wire::OpenAi => "OpenAI",
        Wire::Anthropic => "Anthropic",
    };
    let message = v["error"]["message"].as_str().unwrap_or_default();
    let prefix = format!("the provider ({protocol} protocol) failed mid-stream: ");
    let kind = message.strip_prefix(&prefix);
    assert!(kind.is_some(), "not cordon's words: {message:?}");
    assert!(is_error_kind(kind.unwrap_or_default()));
}

fn is_error_kind(k: &str) -> bool {
    k == "unknown" || translate::ERROR_TYPES.contains(&k)
}

/// JSON read past invalid UTF-8, as the relays read it (serde skips the
/// strings it ignores unchecked) and as clients read it (with replacement
/// characters); `null` when it is not JSON.
fn lenient_json(b: &[u8]) -> Value {
    serde_json::from_str(&String::from_utf8_lossy(b)).unwrap_or_default()
}

fn parse_json(b: &[u8]) -> Value {
    let v = serde_json::from_slice::<Value>(b);
    assert!(v.is_ok(), "not JSON: {:?}", String::from_utf8_lossy(b));
    v.unwrap_or_default()
}

/// An OpenAI stream as the Anthropic→OpenAI relay writes it: `data:` events
/// of chunks, the usage chunk only when asked for, `[DONE]` or an error
/// last.
fn check_openai_stream(out: &[Bytes], include_usage: bool) {
    let mut ended = false;
    for (i, o) in out.iter().enumerate() {
        assert!(!ended, "an event after the end");
        let line = o
            .strip_prefix(b"data: ")
            .and_then(|l| l.strip_suffix(b"\n\n"));
        assert!(line.is_some(), "not one data line");
        let line = line.unwrap_or_default();
        if line == b"[DONE]" {
            ended = true;
            continue;
        }
        let v = parse_json(line);
        if v.get("error").is_some() {
            assert_eq!(v["error"]["type"], "api_error");
            check_mid_stream_error(&v, Wire::Anthropic);
            ended = true;
            continue;
        }
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["model"], PUBLIC);
        assert_eq!(v["created"], CREATED);
        let choices = v["choices"].as_array().map_or(usize::MAX, Vec::len);
        if choices == 0 {
            assert!(include_usage, "a usage chunk nobody asked for");
            check_openai_usage(&v["usage"]);
            assert_eq!(
                out.get(i + 1).map(|b| &b[..]),
                Some(&b"data: [DONE]\n\n"[..])
            );
        } else {
            assert_eq!(choices, 1);
            assert!(v.get("usage").is_none());
        }
    }
}

fn check_openai_usage(u: &Value) {
    let (p, c, t) = (
        u["prompt_tokens"].as_i64(),
        u["completion_tokens"].as_i64(),
        u["total_tokens"].as_i64(),
    );
    assert!(p.is_some() && c.is_some() && t.is_some(), "usage {u}");
    // Saturating: the counts come from the provider.
    let sum = p.unwrap_or_default().saturating_add(c.unwrap_or_default());
    assert_eq!(Some(sum), t, "total is not the sum");
}

/// An Anthropic stream as the OpenAI→Anthropic relay writes it:
/// `message_start` first, blocks opened one at a time with consecutive
/// indices and closed before `message_delta`, `message_stop` or an error
/// last.
fn check_anthropic_stream(out: &[Bytes]) {
    let mut started = false;
    let mut blocks: Vec<String> = Vec::new();
    let mut open: Option<u64> = None;
    let mut delta_sent = false;
    let mut ended = false;
    for o in out {
        assert!(!ended, "an event after the end");
        let (name, data) = translate::sse_fields(o);
        let expected_head = format!("event: {}\ndata: ", name.unwrap_or_default());
        assert!(o.starts_with(expected_head.as_bytes()), "not event + data");
        let v = parse_json(&data);
        let name = name.unwrap_or_default();
        assert_eq!(v["type"], name);
        let index = v["index"].as_u64();
        match name {
            "message_start" => {
                assert!(!started);
                started = true;
                assert_eq!(v["message"]["model"], PUBLIC);
            }
            "content_block_start" => {
                assert!(started && !delta_sent && open.is_none());
                assert_eq!(index, Some(blocks.len() as u64));
                let ty = v["content_block"]["type"].as_str().unwrap_or_default();
                assert!(ty == "text" || ty == "tool_use", "block {ty}");
                blocks.push(ty.to_owned());
                open = index;
            }
            "content_block_delta" => {
                assert!(started && !delta_sent);
                let i = index.unwrap_or(u64::MAX);
                let block = usize::try_from(i).ok().and_then(|i| blocks.get(i));
                // A tool's fragment may follow its block's close (documented).
                let want = match v["delta"]["type"].as_str() {
                    Some("text_delta") => {
                        assert_eq!(open, index, "text outside the open block");
                        "text"
                    }
                    Some("input_json_delta") => "tool_use",
                    other => {
                        assert!(other.is_none(), "delta {other:?}");
                        ""
                    }
                };
                assert_eq!(block.map(String::as_str), Some(want));
            }
            "content_block_stop" => {
                assert!(open.is_some() && open == index, "closing a block not open");
                open = None;
            }
            "message_delta" => {
                assert!(started && open.is_none() && !delta_sent);
                delta_sent = true;
                let stop = v["delta"]["stop_reason"].as_str().unwrap_or_default();
                assert!(["end_turn", "max_tokens", "tool_use", "refusal"].contains(&stop));
                check_anthropic_usage(&v["usage"]);
            }
            "message_stop" => {
                assert!(delta_sent);
                ended = true;
            }
            "error" => {
                assert_eq!(v["error"]["type"], "api_error");
                check_mid_stream_error(&v, Wire::OpenAi);
                ended = true;
            }
            other => assert!(other.is_empty(), "event {other}"),
        }
    }
}

fn check_anthropic_usage(u: &Value) {
    let input = u["input_tokens"].as_i64();
    assert!(input.is_some_and(|i| i >= 0), "usage {u}");
    assert!(u["output_tokens"].as_i64().is_some(), "usage {u}");
}

// ===== target `translate`: requests and responses, both directions =====

/// Field names the translators write into error paths themselves (the rest
/// come from the body's keys).
const FIELD_NAMES: &[&str] = &[
    "messages",
    "content",
    "role",
    "type",
    "text",
    "image_url",
    "url",
    "input_audio",
    "file",
    "tool_calls",
    "refusal",
    "function",
    "arguments",
    "name",
    "tool_choice",
    "tool_call_id",
    "max_tokens",
    "response_format",
    "stop_sequences",
    "disable_parallel_tool_use",
    "metadata",
    "user_id",
    "source",
    "media_type",
    "data",
    "tool_use_id",
    "input_schema",
    "system",
    "description",
    "parameters",
    "strict",
    "id",
    "<unnamed>",
];

/// Every translation of requests and responses on the same body.
///
/// - Nothing panics. A request refusal names a field path made of the
///   translators' own names and the body's keys, never a value.
/// - A translated request is a JSON object with the provider's model,
///   `messages`, a positive `max_tokens` and `stream`; an OpenAI one is one
///   cordon's routing parser reads, asking for usage when it streams.
/// - An OpenAI request translated to Anthropic translates back (unless it
///   had more stop sequences than OpenAI allows).
/// - A refused response is always `BadResponse` (the provider's fault).
/// - A translated response is well formed in the client's protocol with the
///   public model; usage totals add up; translated back, its text and tool
///   calls are the same.
pub fn translate(data: &[u8]) {
    let value = serde_json::from_slice::<Value>(data).ok();
    let mut keys = BTreeSet::new();
    if let Some(v) = &value {
        collect_keys(v, &mut keys);
    }
    let up = MODELS[0];

    match translate::openai_to_anthropic_request(data, up) {
        Ok(a) => {
            let req = check_request(&a, up);
            assert!(req.get("stream_options").is_none());
            match translate::anthropic_to_openai_request(&a, up) {
                Ok(o) => {
                    check_openai_request(&o, up);
                }
                Err(e) => {
                    let stops = value
                        .as_ref()
                        .and_then(|v| v.get("stop"))
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    assert!(
                        stops > 4 && e.field() == Some("stop_sequences"),
                        "a translated request does not translate back: {e}"
                    );
                }
            }
        }
        Err(e) => check_request_error(&e, &keys),
    }
    match translate::anthropic_to_openai_request(data, up) {
        Ok(o) => check_openai_request(&o, up),
        Err(e) => check_request_error(&e, &keys),
    }

    match translate::openai_to_anthropic_response(data, PUBLIC) {
        Ok(a) => {
            let msg = check_anthropic_response(&a);
            let back = translate::anthropic_to_openai_response_at(&a, PUBLIC, CREATED);
            assert!(
                back.is_ok(),
                "a translated response does not translate back"
            );
            let back = check_openai_response(&back.unwrap_or_default());
            assert_eq!(answer_of_anthropic(&msg), answer_of_openai(&back));
        }
        Err(e) => assert_eq!(e, TranslateError::BadResponse),
    }
    match translate::anthropic_to_openai_response_at(data, PUBLIC, CREATED) {
        Ok(o) => {
            let resp = check_openai_response(&o);
            let back = translate::openai_to_anthropic_response(&o, PUBLIC);
            assert!(
                back.is_ok(),
                "a translated response does not translate back"
            );
            let back = check_anthropic_response(&back.unwrap_or_default());
            assert_eq!(answer_of_openai(&resp), answer_of_anthropic(&back));
        }
        Err(e) => assert_eq!(e, TranslateError::BadResponse),
    }
}

fn collect_keys(v: &Value, keys: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                keys.insert(k.clone());
                collect_keys(v, keys);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_keys(v, keys)),
        _ => {}
    }
}

fn check_request_error(e: &TranslateError, keys: &BTreeSet<String>) {
    assert!(e.is_client_error());
    let Some(field) = e.field() else { return };
    assert!(
        field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.[]<>".contains(&b)),
        "field path {field:?}"
    );
    for segment in field.split('.') {
        // `messages[2]`, `content[0]`: the name before the indices.
        let name = segment.split('[').next().unwrap_or_default();
        assert!(
            FIELD_NAMES.contains(&name) || keys.contains(name),
            "field path {field:?} names {name:?}, neither a field nor a key of the body"
        );
    }
}

/// The checks common to both directions; returns the request object.
fn check_request(body: &[u8], model: &str) -> Map<String, Value> {
    let v = parse_json(body);
    let Value::Object(o) = v else {
        assert!(v.is_object(), "a translated request is not an object");
        return Map::new();
    };
    assert_eq!(o.get("model").and_then(Value::as_str), Some(model));
    assert!(o.get("messages").is_some_and(Value::is_array));
    assert!(
        o.get("max_tokens")
            .and_then(Value::as_u64)
            .is_some_and(|n| n > 0)
    );
    assert!(o.get("stream").is_some_and(Value::is_boolean));
    o
}

fn check_openai_request(body: &[u8], model: &str) {
    let o = check_request(body, model);
    let stream = o.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let req = Request::parse(body);
    assert!(
        req.is_ok(),
        "cordon cannot route its own translation: {req:?}"
    );
    if let Ok(req) = req {
        assert_eq!(req.model, model);
        assert_eq!(req.stream, stream);
        assert_eq!(req.client_wants_usage, stream);
    }
}

/// Text and tool calls (id, name, input) of an answer.
type Answer = (String, Vec<(String, String, Value)>);

fn check_anthropic_response(body: &[u8]) -> Value {
    let v = parse_json(body);
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], PUBLIC);
    let stop = v["stop_reason"].as_str().unwrap_or_default();
    assert!(["end_turn", "max_tokens", "tool_use", "refusal"].contains(&stop));
    for b in v["content"].as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("text") => assert!(b["text"].is_string()),
            Some("tool_use") => {
                assert!(b["id"].is_string() && b["name"].is_string());
                assert!(b.get("input").is_some());
            }
            other => assert!(other.is_none(), "block {other:?}"),
        }
    }
    assert!(v["content"].is_array());
    check_anthropic_usage(&v["usage"]);
    v
}

fn check_openai_response(body: &[u8]) -> Value {
    let v = parse_json(body);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], PUBLIC);
    assert_eq!(v["created"], CREATED);
    let choices = v["choices"].as_array().map_or(0, Vec::len);
    assert_eq!(choices, 1);
    let finish = v["choices"][0]["finish_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(["stop", "length", "tool_calls", "content_filter"].contains(&finish));
    check_openai_usage(&v["usage"]);
    v
}

fn answer_of_anthropic(v: &Value) -> Answer {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in v["content"].as_array().into_iter().flatten() {
        if b["type"] == "text" {
            text.push_str(b["text"].as_str().unwrap_or_default());
        } else {
            calls.push(tool_call(&b["id"], &b["name"], &b["input"]));
        }
    }
    (text, calls)
}

fn answer_of_openai(v: &Value) -> Answer {
    let m = &v["choices"][0]["message"];
    let mut text = m["content"].as_str().unwrap_or_default().to_owned();
    text.push_str(m["refusal"].as_str().unwrap_or_default());
    let calls = m["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let args = c["function"]["arguments"].as_str().unwrap_or_default();
            let input = serde_json::from_str(args).unwrap_or(json!({}));
            tool_call(&c["id"], &c["function"]["name"], &input)
        })
        .collect();
    (text, calls)
}

fn tool_call(id: &Value, name: &Value, input: &Value) -> (String, String, Value) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let input = match input {
        Value::Null => json!({}),
        v => v.clone(),
    };
    (s(id), s(name), input)
}

// ===== target `provider_error`: scrubbing a provider's error answer =====

/// Bytes of a `provider_error` input before the rest: protocols and shape,
/// then the status (big-endian).
const ERROR_HEADER: usize = 3;

/// `scrub_provider_error` on an error answer carrying a fuzzer-chosen
/// secret.
///
/// Input:
/// - byte 0: the provider's protocol (bit 0), the client's (bit 1), and the
///   body (bits 2 and 3): OpenAI's error shape with the secret as its
///   message, Anthropic's likewise, the rest of the input as the body
///   itself, or an error shape with the secret as type and code;
/// - bytes 1 and 2: the status (100 to 999);
/// - the rest: the secret, then (after a newline) the error type.
///
/// - The answer does not depend on the provider's message at all, and holds
///   no 24-byte window of the secret (other than cordon's own words).
/// - It has the client protocol's error shape, a 4xx or 5xx status that is
///   not 401 or 403, and a message in cordon's words naming the provider's
///   status and, at most, a documented error type.
pub fn provider_error(data: &[u8]) {
    let mut header = [0u8; ERROR_HEADER];
    let n = data.len().min(ERROR_HEADER);
    header[..n].copy_from_slice(&data[..n]);
    let rest = &data[n..];
    let wire = |bit: u8| {
        if header[0] & bit == 0 {
            Wire::OpenAi
        } else {
            Wire::Anthropic
        }
    };
    let (from, to) = (wire(1), wire(2));
    let code = 100 + u16::from_be_bytes([header[1], header[2]]) % 900;
    // Every number from 100 to 999 is a status.
    let Ok(status) = StatusCode::from_u16(code) else {
        return;
    };
    let (secret, kind) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let secret = String::from_utf8_lossy(secret);
    let kind = String::from_utf8_lossy(kind);
    let shape = (header[0] >> 2) & 3;
    let body = |message: &str| -> Vec<u8> {
        let v = match shape {
            0 => json!({"error": {"message": message, "type": kind, "code": kind, "param": null}}),
            1 => json!({"type": "error", "error": {"type": kind, "message": message}}),
            _ => json!({"error": {"message": "m", "type": message, "code": message}}),
        };
        serde_json::to_vec(&v).unwrap_or_default()
    };
    let (got_status, got) = match shape {
        2 => translate::scrub_provider_error(from, to, status, rest),
        _ => translate::scrub_provider_error(from, to, status, &body(&secret)),
    };
    check_scrubbed(from, to, status, got_status, &got);
    if shape == 2 {
        return;
    }
    // What cordon says for the same error with no secret in it.
    let (plain_status, plain) = translate::scrub_provider_error(from, to, status, &body(""));
    if shape != 3 {
        assert_eq!(
            (plain_status, &plain),
            (got_status, &got),
            "the message changed the answer"
        );
    }
    let escaped = serde_json::to_string(&*secret).unwrap_or_default();
    let escaped = escaped
        .get(1..escaped.len().saturating_sub(1))
        .unwrap_or_default();
    for text in [secret.as_bytes(), escaped.as_bytes()] {
        for window in text.windows(24) {
            assert!(
                !contains(&got, window) || contains(&plain, window),
                "the answer holds a window of the secret: {:?}",
                String::from_utf8_lossy(window)
            );
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

fn check_scrubbed(from: Wire, to: Wire, provider: StatusCode, status: StatusCode, body: &Bytes) {
    let s = status.as_u16();
    assert!((400..=599).contains(&s), "status {s}");
    assert!(s != 401 && s != 403, "status {s}");
    let v = parse_json(body);
    let protocol = match from {
        Wire::OpenAi => "OpenAI",
        Wire::Anthropic => "Anthropic",
    };
    let e = &v["error"];
    match to {
        Wire::OpenAi => {
            assert_ne!(s, 529);
            let keys: Vec<&String> = v
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            assert_eq!(keys, ["error"]);
            assert!(e["param"].is_null());
            let ty = e["type"].as_str().unwrap_or_default();
            assert!(
                [
                    "invalid_request_error",
                    "rate_limit_error",
                    "api_error",
                    "authentication_error",
                    "permission_error"
                ]
                .contains(&ty)
            );
        }
        Wire::Anthropic => {
            assert_eq!(v["type"], "error");
            assert!(is_error_kind(e["type"].as_str().unwrap_or_default()));
        }
    }
    let message = e["message"].as_str().unwrap_or_default();
    let prefix = format!(
        "the provider ({protocol} protocol) answered {} ",
        provider.as_u16()
    );
    let kind = message.strip_prefix(&prefix);
    assert!(kind.is_some(), "not cordon's words: {message:?}");
    let kind = kind.unwrap_or_default();
    assert!(is_error_kind(kind), "kind {kind:?}");
    if to == Wire::OpenAi {
        assert_eq!(e["code"], kind);
    }
}

#[cfg(test)]
mod tests;

// ===== target `admin_request`: admin API routing, query and body =====

/// The admin API's request parsing on any path, query and body; the
/// properties are documented on `crate::server::admin::fuzz`.
pub fn admin_request(data: &[u8]) {
    crate::server::admin::fuzz(data);
}
