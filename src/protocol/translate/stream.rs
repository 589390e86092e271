//! Streams, both directions, one complete event at a time.

use super::*;

// ===== streams =====

/// Reads one complete SSE event as a client does: its name (the last
/// `event:` line) and its payload (every `data:` line, joined with `\n`;
/// borrowed when there is one, as with nearly every event these APIs send).
/// The one SSE field parser: the relays and the translations both read
/// events through it.
pub fn sse_fields(event: &[u8]) -> (Option<&str>, std::borrow::Cow<'_, [u8]>) {
    use std::borrow::Cow;
    let mut name = None;
    let mut data: Cow<'_, [u8]> = Cow::Borrowed(&[]);
    let mut lines = 0;
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(d) = line.strip_prefix(b"data:") {
            let d = d.strip_prefix(b" ").unwrap_or(d);
            if lines == 0 {
                data = Cow::Borrowed(d);
            } else {
                let joined = data.to_mut();
                joined.push(b'\n');
                joined.extend_from_slice(d);
            }
            lines += 1;
        } else if let Some(n) = line.strip_prefix(b"event:") {
            name = std::str::from_utf8(n.strip_prefix(b" ").unwrap_or(n)).ok();
        }
    }
    (name, data)
}

/// The last event of a stream cordon ends as failed (`why`: cordon's own
/// words), in the client's protocol: OpenAI's SDKs raise on a `data:` event
/// holding `error`, Anthropic's on an `error` event.
pub fn failure_event(client: Wire, why: &str) -> Bytes {
    match client {
        Wire::OpenAi => openai_event(&json!({"error": {
            "type": "api_error",
            "code": "upstream_error",
            "message": why,
            "param": null,
        }})),
        Wire::Anthropic => anthropic_event(
            "error",
            &json!({"type": "error", "error": {"type": "api_error", "message": why}}),
        ),
    }
}

/// A provider's own mid-stream error event (`data`: its payload, in the
/// provider's protocol `from`), scrubbed as [`scrub_provider_error`] does
/// for whole answers, as the event a client of the same protocol gets: the
/// provider's documented error type, never its message.
pub fn scrub_stream_error(from: Wire, data: &[u8]) -> Bytes {
    #[derive(Deserialize, Default)]
    struct Body {
        #[serde(default)]
        error: Option<Detail>,
    }
    #[derive(Deserialize, Default)]
    struct Detail {
        #[serde(rename = "type", default)]
        kind: Option<String>,
    }
    let e: Body = serde_json::from_slice(data).unwrap_or_default();
    let kind = error_type(e.error.and_then(|d| d.kind).as_deref());
    let protocol = match from {
        Wire::OpenAi => "OpenAI",
        Wire::Anthropic => "Anthropic",
    };
    let why = format!("the provider ({protocol} protocol) failed mid-stream: {kind}");
    match from {
        Wire::OpenAi => openai_event(&json!({"error": {
            "type": "api_error",
            "code": kind,
            "message": why,
            "param": null,
        }})),
        Wire::Anthropic => anthropic_event(
            "error",
            &json!({"type": "error", "error": {"type": kind, "message": why}}),
        ),
    }
}

fn openai_event<T: Serialize + ?Sized>(v: &T) -> Bytes {
    let mut b = Vec::with_capacity(160);
    b.extend_from_slice(b"data: ");
    write_json(&mut b, v);
    b.extend_from_slice(b"\n\n");
    Bytes::from(b)
}

fn anthropic_event<T: Serialize + ?Sized>(name: &str, v: &T) -> Bytes {
    let mut b = Vec::with_capacity(160);
    b.extend_from_slice(b"event: ");
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"\ndata: ");
    write_json(&mut b, v);
    b.extend_from_slice(b"\n\n");
    Bytes::from(b)
}

/// Appends `v` as JSON. serde_json fails only on a map with non-string keys
/// or a `Serialize` impl that fails; the events here have neither.
pub(super) fn write_json<T: Serialize + ?Sized>(b: &mut Vec<u8>, v: &T) {
    let _ = serde_json::to_writer(b, v);
}

// The events sent for every streamed token, written straight from these
// instead of through a `Value` (a map and a copy of every string per event).
// Fields are in the order a `Value` would print them (sorted), so the bytes
// are the same either way.

/// An OpenAI `chat.completion.chunk` with one choice.
#[derive(Serialize)]
struct ChunkOut<'a, D> {
    choices: [ChoiceOut<'a, D>; 1],
    created: i64,
    id: &'a str,
    model: &'a str,
    object: &'static str,
}

#[derive(Serialize)]
struct ChoiceOut<'a, D> {
    delta: D,
    finish_reason: Option<&'a str>,
    index: u32,
    /// Always `null`.
    logprobs: (),
}

/// `{"content": ...}`
#[derive(Serialize)]
struct ContentOut<'a> {
    content: &'a str,
}

/// `{"content": "", "role": "assistant"}`
#[derive(Serialize)]
struct RoleOut {
    content: &'static str,
    role: &'static str,
}

/// `{}`
#[derive(Serialize)]
struct EmptyOut {}

/// An Anthropic `content_block_delta` event's data.
#[derive(Serialize)]
struct BlockDeltaOut<D> {
    delta: D,
    index: u64,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// `{"text": ..., "type": "text_delta"}`
#[derive(Serialize)]
struct TextDeltaOut<'a> {
    text: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// Re-emits an Anthropic Messages stream as OpenAI `chat.completion.chunk`
/// events, one input event at a time.
pub struct AnthropicToOpenAiStream {
    model: String,
    include_usage: bool,
    created: i64,
    id: String,
    usage: TokenUsage,
    /// Anthropic block index → OpenAI tool call index, for `tool_use` blocks.
    tools: HashMap<u64, u64>,
    saw_finish: bool,
    done: bool,
}

impl AnthropicToOpenAiStream {
    /// `include_usage`: the client asked for the final usage chunk.
    pub fn new(public_model: &str, include_usage: bool) -> Self {
        Self {
            model: public_model.to_owned(),
            include_usage,
            created: 0,
            id: String::new(),
            usage: TokenUsage::default(),
            tools: HashMap::new(),
            saw_finish: false,
            done: false,
        }
    }

    /// Sets the `created` Unix time of every chunk (0 otherwise).
    pub fn with_created(mut self, created: i64) -> Self {
        self.created = created;
        self
    }

    /// Usage reported so far (input from `message_start`, output from `message_delta`).
    pub fn usage(&self) -> TokenUsage {
        self.usage
    }

    /// Whether `data: [DONE]` (or an error event) has been emitted.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// One `chat.completion.chunk` event carrying `delta`.
    fn chunk<D: Serialize>(&self, delta: D, finish: Option<&str>) -> Bytes {
        openai_event(&ChunkOut {
            choices: [ChoiceOut {
                delta,
                finish_reason: finish,
                index: 0,
                logprobs: (),
            }],
            created: self.created,
            id: &self.id,
            model: &self.model,
            object: "chat.completion.chunk",
        })
    }

    /// Feeds one complete event. The event's `data` carries its `type`, which
    /// is what is read; `event_name` is used only to skip `ping`s unread.
    /// Unknown or unreadable events are skipped, as Anthropic asks of clients.
    pub fn push(&mut self, event_name: Option<&str>, data: &[u8], out: &mut Vec<Bytes>) {
        if self.done || event_name == Some("ping") {
            return;
        }
        let Ok(ev) = serde_json::from_slice::<anthropic::StreamEvent>(data) else {
            return;
        };
        use anthropic::StreamEvent as E;
        match ev {
            E::MessageStart { message } => {
                self.id = message.id;
                self.usage.update_anthropic(&message.usage);
                out.push(self.chunk(
                    RoleOut {
                        content: "",
                        role: "assistant",
                    },
                    None,
                ));
            }
            E::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                anthropic::Block::Text { text } if !text.is_empty() => {
                    out.push(self.chunk(ContentOut { content: &text }, None));
                }
                anthropic::Block::ToolUse { id, name, input } => {
                    let n = self.tools.len() as u64;
                    self.tools.insert(index, n);
                    // Streamed input starts empty and arrives as deltas.
                    let args = match &input {
                        Value::Object(o) if !o.is_empty() => input.to_string(),
                        _ => String::new(),
                    };
                    let call = json!({"index": n, "id": id, "type": "function",
                        "function": {"name": name, "arguments": args}});
                    out.push(self.chunk(json!({ "tool_calls": [call] }), None));
                }
                _ => {}
            },
            E::ContentBlockDelta { index, delta } => match delta {
                anthropic::Delta::TextDelta { text } => {
                    out.push(self.chunk(ContentOut { content: &text }, None));
                }
                anthropic::Delta::InputJsonDelta { partial_json } => {
                    if let Some(n) = self.tools.get(&index) {
                        let call = json!({"index": n, "function": {"arguments": partial_json}});
                        out.push(self.chunk(json!({ "tool_calls": [call] }), None));
                    }
                }
                anthropic::Delta::Other => {}
            },
            E::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.usage.update_anthropic(&u);
                }
                self.saw_finish = true;
                let f = finish_reason(delta.stop_reason.as_deref());
                out.push(self.chunk(EmptyOut {}, Some(f)));
            }
            E::MessageStop => self.end(out),
            E::Error { error } => {
                let kind = error_type(error.kind.as_deref());
                out.push(openai_event(&json!({"error": {
                    "type": "api_error",
                    "code": kind,
                    "message": format!("the provider (Anthropic protocol) failed mid-stream: {kind}"),
                    "param": null,
                }})));
                self.done = true;
            }
            E::ContentBlockStop { .. } | E::Ping | E::Other => {}
        }
    }

    /// Upstream ended. If the message was finished but `message_stop` never
    /// came, the stream is closed properly; a truncated stream stays truncated.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if !self.done && self.saw_finish {
            self.end(out);
        }
    }

    fn end(&mut self, out: &mut Vec<Bytes>) {
        if self.include_usage {
            out.push(openai_event(&json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.usage.openai_json(),
            })));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        self.done = true;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    /// A `tool_use` block, by OpenAI tool call index.
    Tool(u64),
}

/// Re-emits an OpenAI Chat Completions stream as Anthropic Messages events
/// (`message_start`, content blocks, `message_delta`, `message_stop`).
pub struct OpenAiToAnthropicStream {
    model: String,
    id: String,
    started: bool,
    /// The open content block: its index and kind.
    open: Option<(u64, Open)>,
    next_block: u64,
    /// OpenAI tool call index → Anthropic block index.
    tools: HashMap<u64, u64>,
    stop: Option<&'static str>,
    usage: TokenUsage,
    done: bool,
}

#[derive(Deserialize)]
struct OaChunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    choices: Vec<OaChoice>,
    #[serde(default)]
    usage: Option<OaUsage>,
    #[serde(default)]
    error: Option<Value>,
}

impl OpenAiToAnthropicStream {
    pub fn new(public_model: &str) -> Self {
        Self {
            model: public_model.to_owned(),
            id: String::new(),
            started: false,
            open: None,
            next_block: 0,
            tools: HashMap::new(),
            stop: None,
            usage: TokenUsage::default(),
            done: false,
        }
    }

    /// Usage reported so far (OpenAI sends it in the last chunk).
    pub fn usage(&self) -> TokenUsage {
        self.usage
    }

    /// Whether `message_stop` (or an error event) has been emitted.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds the `data` of one complete OpenAI event (`[DONE]` included).
    /// Unreadable events are skipped.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        if data.trim_ascii() == b"[DONE]" {
            self.end(out);
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<OaChunk>(data) else {
            return;
        };
        if let Some(e) = chunk.error {
            let kind = error_type(e.get("type").and_then(Value::as_str));
            out.push(anthropic_event(
                "error",
                &json!({"type": "error", "error": {
                    "type": "api_error",
                    "message": format!("the provider (OpenAI protocol) failed mid-stream: {kind}"),
                }}),
            ));
            self.done = true;
            return;
        }
        if let Some(u) = &chunk.usage {
            self.usage = TokenUsage::from_openai(u);
        }
        if !self.started {
            self.id = chunk.id.unwrap_or_default();
            self.start(out);
        }
        let Some(choice) = chunk.choices.into_iter().next() else {
            return;
        };
        let delta = choice.delta.or(choice.message).unwrap_or_default();
        for text in [delta.content, delta.refusal.clone()].into_iter().flatten() {
            if text.is_empty() {
                continue;
            }
            if self.open.map(|(_, k)| k) != Some(Open::Text) {
                self.open_block(out, Open::Text, json!({"type": "text", "text": ""}));
            }
            let index = self.next_block - 1;
            out.push(anthropic_event(
                "content_block_delta",
                &BlockDeltaOut {
                    delta: TextDeltaOut {
                        text: &text,
                        kind: "text_delta",
                    },
                    index,
                    kind: "content_block_delta",
                },
            ));
        }
        if delta.refusal.is_some() {
            self.stop = Some("refusal");
        }
        for (pos, call) in delta.tool_calls.into_iter().enumerate() {
            let n = call.index.unwrap_or(pos as u64);
            let block = match self.tools.get(&n) {
                Some(b) => *b,
                None => {
                    let id = call.id.unwrap_or_else(|| format!("call_{n}"));
                    let name = call.function.name.clone().unwrap_or_default();
                    let b = self.open_block(
                        out,
                        Open::Tool(n),
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    );
                    self.tools.insert(n, b);
                    b
                }
            };
            if let Some(args) = call.function.arguments.filter(|a| !a.is_empty()) {
                out.push(anthropic_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": block,
                        "delta": {"type": "input_json_delta", "partial_json": args}}),
                ));
            }
        }
        if let Some(f) = choice.finish_reason {
            self.close_block(out);
            if self.stop.is_none() {
                self.stop = Some(stop_reason(Some(&f)));
            }
        }
    }

    /// Whether the provider has said why the answer stopped (its usage may
    /// still be to come).
    pub fn saw_finish(&self) -> bool {
        self.stop.is_some()
    }

    /// Upstream ended. Without `[DONE]` but after a finish reason, the
    /// message is closed properly; a truncated stream stays truncated.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if !self.done && self.stop.is_some() {
            self.end(out);
        }
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        self.started = true;
        out.push(anthropic_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        ));
    }

    /// Closes the open block and opens a new one; returns its index.
    fn open_block(&mut self, out: &mut Vec<Bytes>, kind: Open, block: Value) -> u64 {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        out.push(anthropic_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        self.open = Some((index, kind));
        index
    }

    fn close_block(&mut self, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open.take() {
            out.push(anthropic_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn end(&mut self, out: &mut Vec<Bytes>) {
        if !self.started {
            self.start(out);
        }
        self.close_block(out);
        let stop = self.stop.unwrap_or("end_turn");
        out.push(anthropic_event(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": self.usage.anthropic_json()}),
        ));
        out.push(anthropic_event(
            "message_stop",
            &json!({"type": "message_stop"}),
        ));
        self.done = true;
    }
}
