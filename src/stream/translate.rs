//! Relays that translate a provider's stream into the client's protocol, one
//! complete event at a time (the state machines live in
//! `protocol::translate`). Nothing is buffered beyond one event.

use bytes::Bytes;

use super::sse::{Relay, Tokens};
use crate::protocol::translate::{
    AnthropicToOpenAiStream, OpenAiToAnthropicStream, TokenUsage, sse_fields,
};

fn tokens(u: TokenUsage) -> Tokens {
    Tokens {
        prompt: u.input,
        completion: u.output,
    }
}

/// An Anthropic provider's stream, to an OpenAI client.
pub struct AnthropicToOpenAiRelay {
    inner: AnthropicToOpenAiStream,
    saw_content: bool,
}

impl AnthropicToOpenAiRelay {
    pub fn new(inner: AnthropicToOpenAiStream) -> Self {
        Self {
            inner,
            saw_content: false,
        }
    }

    fn translate(&mut self, event: &[u8], out: &mut Vec<Bytes>) {
        let (name, data) = sse_fields(event);
        if name.is_some_and(|n| n.starts_with("content_block")) {
            self.saw_content = true;
        }
        self.inner.push(name, &data, out);
    }
}

impl Relay for AnthropicToOpenAiRelay {
    fn event(&mut self, event: Bytes, out: &mut Vec<Bytes>) {
        self.translate(&event, out);
    }
    fn finish(&mut self, out: &mut Vec<Bytes>) {
        self.inner.finish(out);
    }
    fn tokens(&self) -> Tokens {
        tokens(self.inner.usage())
    }
    fn saw_content(&self) -> bool {
        self.saw_content
    }
}

/// An OpenAI provider's stream, to an Anthropic client.
pub struct OpenAiToAnthropicRelay {
    inner: OpenAiToAnthropicStream,
    saw_content: bool,
}

impl OpenAiToAnthropicRelay {
    pub fn new(inner: OpenAiToAnthropicStream) -> Self {
        Self {
            inner,
            saw_content: false,
        }
    }

    fn translate(&mut self, event: &[u8], out: &mut Vec<Bytes>) {
        let (_, data) = sse_fields(event);
        let before = out.len();
        self.inner.push(&data, out);
        if out[before..]
            .iter()
            .any(|e| e.starts_with(b"event: content_block"))
        {
            self.saw_content = true;
        }
    }
}

impl Relay for OpenAiToAnthropicRelay {
    fn event(&mut self, event: Bytes, out: &mut Vec<Bytes>) {
        self.translate(&event, out);
    }
    fn finish(&mut self, out: &mut Vec<Bytes>) {
        self.inner.finish(out);
    }
    fn tokens(&self) -> Tokens {
        tokens(self.inner.usage())
    }
    fn saw_content(&self) -> bool {
        self.saw_content
    }
    fn saw_finish(&self) -> bool {
        self.inner.saw_finish()
    }
}
