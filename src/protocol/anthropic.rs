//! Anthropic Messages wire types that cordon reads: the non-streamed
//! response, the stream events and the error body. Requests are translated
//! member by member (see `translate`), so they have no struct here.
//!
//! None of these types derives `Debug`: they hold model output, which must
//! never reach a log line by accident.

use serde::Deserialize;
use serde_json::Value;

/// The content block types Anthropic accepts for an image `media_type`.
pub const IMAGE_MEDIA_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// `usage` of a response, `message_start` or `message_delta`. Anthropic's
/// `input_tokens` excludes the tokens read from or written to the prompt cache.
#[derive(Deserialize, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: Option<i64>,
    #[serde(default)]
    pub output_tokens: Option<i64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<i64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<i64>,
}

/// A content block of a response (or of `content_block_start`).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking, server tool results and anything newer: not carried over.
    #[serde(other)]
    Other,
}

/// A non-streamed `message` response.
#[derive(Deserialize)]
pub struct Message {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub content: Vec<Block>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: Usage,
}

/// The `message` of `message_start`.
#[derive(Deserialize)]
pub struct StartMessage {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub usage: Usage,
}

/// `delta` of `content_block_delta`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Delta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    /// Thinking, signatures, citations: not carried over.
    #[serde(other)]
    Other,
}

/// `delta` of `message_delta`.
#[derive(Deserialize, Default)]
pub struct MessageDelta {
    #[serde(default)]
    pub stop_reason: Option<String>,
}

/// The `error` member of an error body or `error` event. Only the type is
/// read: the message may quote the request.
#[derive(Deserialize, Default)]
pub struct ErrorDetail {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

/// A streamed event, by its `type`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u64,
        content_block: Block,
    },
    ContentBlockDelta {
        index: u64,
        delta: Delta,
    },
    ContentBlockStop {
        #[serde(default)]
        index: u64,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDelta,
        #[serde(default)]
        usage: Option<Usage>,
    },
    MessageStop,
    Ping,
    Error {
        #[serde(default)]
        error: ErrorDetail,
    },
    #[serde(other)]
    Other,
}

/// `{"type":"error","error":{...}}`.
#[derive(Deserialize, Default)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: ErrorDetail,
}
