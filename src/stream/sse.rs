//! Server-sent events, re-framed at event boundaries as bytes arrive, with the
//! OpenAI usage chunk read (and removed when the client did not ask for it).
//! Events are passed on as the same bytes that arrived; only whole events are
//! held back, never the stream.

use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use memchr::memmem::Finder;
use serde::Deserialize;

/// Token counts reported by the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: Option<i64>,
    pub completion: Option<i64>,
}

/// One way of relaying a provider's SSE stream to the client, one complete
/// event at a time (the [`Framer`] cuts them): each is passed on, changed,
/// translated or dropped, and usage is counted.
pub trait Relay: Send {
    /// One complete event from upstream (its blank line included); events to
    /// send on go to `out`.
    fn event(&mut self, event: Bytes, out: &mut Vec<Bytes>);
    /// Upstream ended (after its last event): whatever must still be sent
    /// goes to `out`.
    fn finish(&mut self, _out: &mut Vec<Bytes>) {}
    /// Usage reported so far.
    fn tokens(&self) -> Tokens;
    /// Whether an event carrying content has been emitted.
    fn saw_content(&self) -> bool;
    /// Whether the provider has said why the answer stopped while its usage
    /// is still to come (OpenAI sends usage in a chunk after the finish
    /// reason; Anthropic's finish event carries it).
    fn saw_finish(&self) -> bool {
        false
    }
}

impl<R: Relay + ?Sized> Relay for Box<R> {
    fn event(&mut self, event: Bytes, out: &mut Vec<Bytes>) {
        (**self).event(event, out);
    }
    fn finish(&mut self, out: &mut Vec<Bytes>) {
        (**self).finish(out);
    }
    fn tokens(&self) -> Tokens {
        (**self).tokens()
    }
    fn saw_content(&self) -> bool {
        (**self).saw_content()
    }
    fn saw_finish(&self) -> bool {
        (**self).saw_finish()
    }
}

pub use crate::protocol::translate::failure_event;
use crate::protocol::translate::{Wire, scrub_stream_error, sse_fields};

/// Cuts a provider's SSE byte stream into complete events, as bytes arrive,
/// for a [`Relay`]. The one place SSE is framed. An event still incomplete
/// beyond `max_event` bytes ends the stream: a provider that never ends an
/// event must not hold cordon's memory without bound.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max_event: usize,
}

/// An event from upstream grew past the limit without ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event from the provider is larger than {0} bytes")]
pub struct EventTooLarge(pub usize);

impl Framer {
    pub fn new(max_event: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_event,
        }
    }

    /// Feeds bytes from upstream: each complete event goes to `relay`.
    pub fn push(
        &mut self,
        chunk: &[u8],
        relay: &mut dyn Relay,
        out: &mut Vec<Bytes>,
    ) -> Result<(), EventTooLarge> {
        self.buf.extend_from_slice(chunk);
        while let Some(end) = event_end(&self.buf) {
            relay.event(self.buf.split_to(end).freeze(), out);
        }
        if self.buf.len() > self.max_event {
            self.buf = BytesMut::new();
            return Err(EventTooLarge(self.max_event));
        }
        Ok(())
    }

    /// Upstream ended: an unterminated last event goes to `relay` as it is,
    /// then the relay finishes.
    pub fn finish(&mut self, relay: &mut dyn Relay, out: &mut Vec<Bytes>) {
        if !self.buf.is_empty() {
            relay.event(self.buf.split().freeze(), out);
        }
        relay.finish(out);
    }
}

/// Splits an SSE byte stream into events and inspects OpenAI chunks.
#[derive(Debug, Default)]
pub struct OpenAiRelay {
    /// Drop the usage-only chunk (the client did not ask for it).
    strip_usage: bool,
    pub tokens: Tokens,
    /// Whether an event carrying content has been passed on.
    pub saw_content: bool,
    pub saw_done: bool,
    /// A chunk with a non-null `finish_reason` has passed.
    pub saw_finish: bool,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<serde::de::IgnoredAny>>,
    #[serde(default)]
    usage: Option<Usage>,
}

/// `usage` of an OpenAI response or stream chunk.
#[derive(Deserialize, Debug, Clone, Copy)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: Option<i64>,
    #[serde(default)]
    pub completion_tokens: Option<i64>,
}

impl OpenAiRelay {
    pub fn new(strip_usage: bool) -> Self {
        Self {
            strip_usage,
            ..Self::default()
        }
    }

    /// Reads the event; false when it must not reach the client.
    fn keep(&mut self, event: &[u8]) -> bool {
        let (_, data) = sse_fields(event);
        if data.is_empty() {
            return true;
        }
        let data: &[u8] = &data;
        if data.trim_ascii() == b"[DONE]" {
            self.saw_done = true;
            return true;
        }
        // Only chunks with a usage object are parsed; content chunks (which
        // carry `"usage":null` once usage is asked for) are passed on unread.
        if !has_usage_object(data) {
            self.saw_content = true;
            if !self.saw_finish && has_finish_reason(data) {
                self.saw_finish = true;
            }
            return true;
        }
        let Ok(chunk) = serde_json::from_slice::<Chunk>(data) else {
            self.saw_content = true;
            return true;
        };
        if let Some(u) = chunk.usage {
            self.tokens = Tokens {
                prompt: u.prompt_tokens,
                completion: u.completion_tokens,
            };
        }
        let usage_only = chunk.usage.is_some() && chunk.choices.as_ref().is_none_or(Vec::is_empty);
        if usage_only {
            return !self.strip_usage;
        }
        self.saw_content = true;
        true
    }
}

impl Relay for OpenAiRelay {
    fn event(&mut self, event: Bytes, out: &mut Vec<Bytes>) {
        // The provider's own error event: its words may quote the request or
        // the credential cordon sent, so only its type is passed on. It is
        // read as a client reads it: all its `data:` lines, joined.
        if ERROR_KEY.find(&event).is_some() {
            let (_, data) = sse_fields(&event);
            if is_error_object(&data) {
                out.push(scrub_stream_error(Wire::OpenAi, &data));
                return;
            }
        }
        if self.keep(&event) {
            out.push(event);
        }
    }
    fn tokens(&self) -> Tokens {
        self.tokens
    }
    fn saw_content(&self) -> bool {
        self.saw_content
    }
    fn saw_finish(&self) -> bool {
        self.saw_finish
    }
}

/// Passes an Anthropic Messages stream on unchanged, reading usage from
/// `message_start` (input) and `message_delta` (output). Token counts are in
/// OpenAI's sense: the prompt includes cached tokens.
#[derive(Default)]
pub struct AnthropicRelay {
    usage: AnthropicUsage,
    saw_content: bool,
}

#[derive(Default, Clone, Copy)]
struct AnthropicUsage {
    input: Option<i64>,
    output: Option<i64>,
    cache_read: Option<i64>,
    cache_write: Option<i64>,
}

impl AnthropicUsage {
    fn update(&mut self, u: &crate::protocol::anthropic::Usage) {
        self.input = u.input_tokens.or(self.input);
        self.output = u.output_tokens.or(self.output);
        self.cache_read = u.cache_read_input_tokens.or(self.cache_read);
        self.cache_write = u.cache_creation_input_tokens.or(self.cache_write);
    }

    fn tokens(&self) -> Tokens {
        Tokens {
            // Saturating: provider-reported counts (see `TokenUsage`).
            prompt: self.input.map(|i| {
                i.saturating_add(self.cache_read.unwrap_or(0))
                    .saturating_add(self.cache_write.unwrap_or(0))
            }),
            completion: self.output,
        }
    }
}

impl AnthropicRelay {
    pub fn new() -> Self {
        Self::default()
    }

    fn inspect(&mut self, event: &[u8]) {
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Ev {
            MessageStart {
                message: Msg,
            },
            MessageDelta {
                #[serde(default)]
                usage: Option<crate::protocol::anthropic::Usage>,
            },
            #[serde(other)]
            Other,
        }
        #[derive(Deserialize)]
        struct Msg {
            #[serde(default)]
            usage: Option<crate::protocol::anthropic::Usage>,
        }
        let (_, data) = sse_fields(event);
        if data.is_empty() {
            return;
        }
        let data: &[u8] = &data;
        // Content events are passed on unread.
        if USAGE_KEY.find(data).is_none() {
            if CONTENT_BLOCK.find(data).is_some() {
                self.saw_content = true;
            }
            return;
        }
        match serde_json::from_slice::<Ev>(data) {
            Ok(Ev::MessageStart {
                message: Msg { usage: Some(u) },
            })
            | Ok(Ev::MessageDelta { usage: Some(u) }) => self.usage.update(&u),
            Ok(_) => {}
            Err(_) => self.saw_content = true,
        }
    }
}

impl Relay for AnthropicRelay {
    fn event(&mut self, event: Bytes, out: &mut Vec<Bytes>) {
        // The provider's own error event: only its type is passed on (see
        // `OpenAiRelay`). Its `event:` line need not come first (an `id:` or
        // a comment line may precede it): clients go by the name, wherever
        // it is.
        let (name, data) = sse_fields(&event);
        if name == Some("error") {
            out.push(scrub_stream_error(Wire::Anthropic, &data));
            return;
        }
        self.inspect(&event);
        out.push(event);
    }
    fn tokens(&self) -> Tokens {
        self.usage.tokens()
    }
    fn saw_content(&self) -> bool {
        self.saw_content
    }
}

/// Token usage of a whole (non-streamed) Anthropic `message` body, in
/// OpenAI's sense (the prompt includes cached tokens); `None` when the body
/// is not a message (an error object, or not Anthropic's protocol at all).
pub fn anthropic_body_tokens(body: &[u8]) -> Option<Tokens> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        content: Option<Vec<serde::de::IgnoredAny>>,
        #[serde(default)]
        usage: Option<crate::protocol::anthropic::Usage>,
    }
    let b = serde_json::from_slice::<Body>(body).ok()?;
    if b.kind != "message" || b.content.is_none() {
        return None;
    }
    let mut a = AnthropicUsage::default();
    if let Some(u) = &b.usage {
        a.update(u);
    }
    Some(a.tokens())
}

/// The end (exclusive) of the first complete event in `buf`: after a blank line.
fn event_end(buf: &[u8]) -> Option<usize> {
    // An event ends at a blank line: `\n\n` or `\r\n\r\n`.
    for j in memchr::memchr_iter(b'\n', buf) {
        match buf.get(j + 1) {
            Some(b'\n') => return Some(j + 2),
            Some(b'\r') if j > 0 && buf[j - 1] == b'\r' && buf.get(j + 2) == Some(&b'\n') => {
                return Some(j + 3);
            }
            _ => {}
        }
    }
    None
}

/// Searchers built once: `memmem::find` builds one per call, which cost
/// more than the search itself on these short events (about 0.3% of a
/// streaming run's samples went to `Searcher::new`).
static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
static CONTENT_BLOCK: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"content_block"));
static FINISH_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"finish_reason\""));
/// `"error"` as a JSON key; inside a string value it would be escaped.
static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));

/// Whether a JSON chunk is an object with a non-null top-level `error`, as
/// clients read it: invalid UTF-8 replaced, and of a repeated key the last.
/// (A derived struct refuses both, and the chunk would pass on unscrubbed.)
fn is_error_object(data: &[u8]) -> bool {
    serde_json::from_str::<serde_json::Value>(&String::from_utf8_lossy(data))
        .is_ok_and(|v| v.get("error").is_some_and(|e| !e.is_null()))
}

/// Whether a JSON chunk has `"usage": {` (not `"usage": null`). A key in a
/// string value would be escaped (`\"usage\"`), so it cannot match.
/// Whether a JSON chunk has a `"finish_reason"` that is not `null`.
fn has_finish_reason(data: &[u8]) -> bool {
    let mut rest = data;
    while let Some(at) = FINISH_KEY.find(rest) {
        rest = &rest[at + FINISH_KEY.needle().len()..];
        let value = rest.trim_ascii_start().strip_prefix(b":");
        if value.is_some_and(|v| v.trim_ascii_start().starts_with(b"\"")) {
            return true;
        }
    }
    false
}

fn has_usage_object(data: &[u8]) -> bool {
    let mut rest = data;
    while let Some(at) = USAGE_KEY.find(rest) {
        rest = &rest[at + USAGE_KEY.needle().len()..];
        let value = rest.trim_ascii_start().strip_prefix(b":");
        if value.is_some_and(|v| v.trim_ascii_start().starts_with(b"{")) {
            return true;
        }
    }
    false
}

/// Token usage of a whole (non-streamed) OpenAI response body; `None` when
/// the body is not an answer (an error object, or not OpenAI's protocol: an
/// answer has `choices`, or `data` for embeddings, and no `error`).
pub fn openai_body_tokens(body: &[u8]) -> Option<Tokens> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        choices: Option<Vec<serde::de::IgnoredAny>>,
        #[serde(default)]
        data: Option<Vec<serde::de::IgnoredAny>>,
        #[serde(default)]
        error: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        usage: Option<Usage>,
    }
    let b = serde_json::from_slice::<Body>(body).ok()?;
    if b.error.is_some() || (b.choices.is_none() && b.data.is_none()) {
        return None;
    }
    Some(b.usage.map_or_else(Tokens::default, |u| Tokens {
        prompt: u.prompt_tokens,
        completion: u.completion_tokens,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTENT: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n";
    const USAGE: &str =
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    /// The byte-by-byte scan `event_end` replaced, as the reference.
    fn naive_event_end(buf: &[u8]) -> Option<usize> {
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

    proptest::proptest! {
        #[test]
        fn event_end_agrees_with_a_byte_scan(
            buf in proptest::collection::vec(proptest::sample::select(b"ab\r\n:".to_vec()), 0..40)
        ) {
            proptest::prop_assert_eq!(event_end(&buf), naive_event_end(&buf));
        }
    }

    #[test]
    fn usage_null_chunks_are_content_and_usage_objects_are_read() {
        assert!(!has_usage_object(
            br#"{"choices":[{"delta":{}}],"usage":null}"#
        ));
        assert!(!has_usage_object(br#"{"usage" : null}"#));
        assert!(!has_usage_object(
            br#"{"choices":[{"delta":{"content":"\"usage\":{"}}]}"#
        ));
        assert!(has_usage_object(
            br#"{"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(has_usage_object(br#"{"usage" :  {"prompt_tokens":1}}"#));
        // A stream where every chunk says `"usage":null` until the last.
        let null_chunk = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":null}\n\n";
        let (r, out, _) = relay(
            true,
            &[null_chunk.as_bytes(), USAGE.as_bytes(), DONE.as_bytes()],
        );
        assert_eq!(out, format!("{null_chunk}{DONE}").into_bytes());
        assert_eq!(r.tokens.prompt, Some(7));
        assert!(r.saw_content);
    }

    fn relay(strip: bool, pieces: &[&[u8]]) -> (OpenAiRelay, Vec<u8>, usize) {
        let mut r = OpenAiRelay::new(strip);
        let mut f = Framer::new(1 << 20);
        let mut out = Vec::new();
        for p in pieces {
            f.push(p, &mut r, &mut out).unwrap();
        }
        f.finish(&mut r, &mut out);
        let n = out.len();
        (r, out.concat(), n)
    }

    #[test]
    fn passes_events_unchanged_and_reads_usage() {
        let all = format!("{CONTENT}{USAGE}{DONE}");
        let (r, out, n) = relay(false, &[all.as_bytes()]);
        assert_eq!(out, all.as_bytes());
        assert_eq!(n, 3);
        assert_eq!(
            r.tokens,
            Tokens {
                prompt: Some(7),
                completion: Some(3)
            }
        );
        assert!(r.saw_content && r.saw_done);
    }

    #[test]
    fn strips_the_usage_chunk_when_the_client_did_not_ask() {
        let all = format!("{CONTENT}{USAGE}{DONE}");
        let (r, out, _) = relay(true, &[all.as_bytes()]);
        assert_eq!(out, format!("{CONTENT}{DONE}").as_bytes());
        assert_eq!(r.tokens.prompt, Some(7));
    }

    #[test]
    fn events_split_across_reads_are_reassembled() {
        let all = format!("{CONTENT}{USAGE}{DONE}");
        let bytes = all.as_bytes();
        for cut in 1..bytes.len() {
            let (r, out, _) = relay(true, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(out, format!("{CONTENT}{DONE}").as_bytes(), "cut at {cut}");
            assert_eq!(r.tokens.completion, Some(3));
        }
    }

    #[test]
    fn crlf_framing_and_comments_pass_through() {
        let s = "data: {\"choices\":[{}]}\r\n\r\n: keep-alive\n\n";
        let (_, out, n) = relay(true, &[s.as_bytes()]);
        assert_eq!(out, s.as_bytes());
        assert_eq!(n, 2);
    }

    #[test]
    fn an_anthropic_error_event_is_scrubbed_wherever_its_name_line_is() {
        // Found by the `sse` fuzz target: an `event: error` line after an
        // `id:` or comment line was passed on with the provider's message.
        let secret = "your prompt was: SECRET PROMPT TEXT";
        let data = format!(
            "data: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"{secret}\"}}}}\n\n"
        );
        for head in [
            "event: error\n",
            "event:error\r\n",
            "id: 7\nevent: error\n",
            ": keep-alive\nevent: error\n",
            "\nevent:error\n",
            "event: ping\nevent: error\n",
        ] {
            let mut r = AnthropicRelay::new();
            let mut f = Framer::new(1 << 20);
            let mut out = Vec::new();
            f.push(format!("{head}{data}").as_bytes(), &mut r, &mut out)
                .unwrap();
            f.finish(&mut r, &mut out);
            let out = String::from_utf8(out.concat()).unwrap();
            assert!(!out.contains(secret), "{head:?}: {out}");
            assert!(out.starts_with("event: error\n"), "{head:?}: {out}");
            assert!(out.contains("overloaded_error"), "{head:?}: {out}");
        }
        // The last `event:` line names the event, as clients read it.
        let mut out = Vec::new();
        AnthropicRelay::new().event(
            Bytes::from(format!("event: error\nevent: ping\n{data}")),
            &mut out,
        );
        assert!(out[0].starts_with(b"event: error\nevent: ping\n"));
    }

    #[test]
    fn an_openai_error_chunk_is_scrubbed_however_it_is_written() {
        // Found by the `sse` fuzz target (invalid UTF-8 beside the error);
        // the other shapes are the same gap: the relay read the first
        // `data:` line into a derived struct, which refuses what clients
        // accept.
        let secret = "Incorrect API key provided: sk-proj-SECRET";
        let m = format!("{{\"message\":\"{secret}\",\"type\":\"invalid_request_error\"}}");
        let cases: [Vec<u8>; 4] = [
            format!("data: {{\"error\":{m}}}\n\n").into(),
            format!("data: {{\"id\":1,\ndata: \"error\":{m}}}\n\n").into(),
            format!("data: {{\"error\":null,\"error\":{m}}}\n\n").into(),
            // Invalid UTF-8 in a key.
            [
                &b"data:{\"\x9a\":\"\",\"error\":"[..],
                m.as_bytes(),
                b"}\r\n\r\n",
            ]
            .concat(),
        ];
        for case in &cases {
            let (_, out, n) = relay(false, &[case]);
            let out = String::from_utf8(out).unwrap();
            let case = String::from_utf8_lossy(case);
            assert_eq!(n, 1, "{case:?}");
            assert!(!out.contains("SECRET"), "{case:?}: {out}");
            // The documented type is kept when it can be read (a repeated
            // key makes it `unknown`).
            assert!(out.contains("failed mid-stream"), "{case:?}: {out}");
        }
        // Content that merely says "error" passes on unread.
        let content =
            "data: {\"choices\":[{\"delta\":{\"content\":\"error\"}}],\"error\":null}\n\n";
        let (_, out, _) = relay(false, &[content.as_bytes()]);
        assert_eq!(out, content.as_bytes());
    }

    #[test]
    fn anthropic_token_counts_past_i64_max_saturate() {
        let body = format!(
            r#"{{"type":"message","content":[],"usage":{{"input_tokens":{},"cache_read_input_tokens":1}}}}"#,
            i64::MAX
        );
        assert_eq!(
            anthropic_body_tokens(body.as_bytes()).and_then(|t| t.prompt),
            Some(i64::MAX)
        );
    }

    #[test]
    fn body_tokens_are_read_from_usage() {
        let t = openai_body_tokens(br#"{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":2,"total_tokens":13}}"#);
        assert_eq!(
            t,
            Some(Tokens {
                prompt: Some(11),
                completion: Some(2)
            })
        );
        let e = openai_body_tokens(br#"{"data":[],"usage":{"prompt_tokens":5,"total_tokens":5}}"#);
        assert_eq!(
            e,
            Some(Tokens {
                prompt: Some(5),
                completion: None
            })
        );
    }

    #[test]
    fn a_body_that_is_not_an_answer_is_told_apart() {
        for not_an_answer in [
            &b"not json"[..],
            br#"{"error":{"message":"quota","type":"insufficient_quota"}}"#,
            br#"{"choices":[],"error":{"message":"x"}}"#,
            br#"{"object":"chat.completion"}"#,
            br#"[1,2]"#,
        ] {
            assert_eq!(openai_body_tokens(not_an_answer), None);
        }
        for not_a_message in [
            &br#"{"type":"error","error":{"type":"api_error","message":"x"}}"#[..],
            br#"{"type":"message"}"#,
            br#"{"choices":[]}"#,
        ] {
            assert_eq!(anthropic_body_tokens(not_a_message), None);
        }
        assert_eq!(
            anthropic_body_tokens(
                br#"{"type":"message","content":[],"usage":{"input_tokens":3,"output_tokens":1}}"#
            ),
            Some(Tokens {
                prompt: Some(3),
                completion: Some(1)
            })
        );
    }
}
