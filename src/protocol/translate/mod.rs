//! OpenAI Chat Completions ⇄ Anthropic Messages: requests, responses, streams
//! and provider errors. Pure: bytes in, bytes out. docs/translation.md has the
//! field-by-field table and every known loss.
//!
//! A request member that has no counterpart is refused with a
//! [`TranslateError`] naming it (a 400), never dropped silently; the only
//! members dropped are hints that do not change what the model is asked
//! (listed in the document). Errors name fields by path (`messages[2].content`)
//! and never carry a value from the body.

use std::collections::HashMap;

use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::anthropic;

/// `max_tokens` sent to Anthropic when the OpenAI request sets neither
/// `max_tokens` nor `max_completion_tokens` (Anthropic requires it). 4096 is
/// within the output limit of every Claude model.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The most stop sequences an OpenAI provider accepts.
const OPENAI_MAX_STOP: usize = 4;

type Obj = Map<String, Value>;

/// Why a body cannot be translated. Request errors are a 400
/// `invalid_request`; [`TranslateError::BadResponse`] is the provider's fault
/// (a 502). Messages name fields, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("request body is not a JSON object")]
    NotAnObject,
    #[error("`{0}` is required")]
    Missing(String),
    #[error("`{0}` has the wrong type or an invalid value")]
    Invalid(String),
    #[error("`{field}` cannot be translated for this provider: {reason}")]
    Unsupported { field: String, reason: &'static str },
    #[error("the provider's response could not be read")]
    BadResponse,
}

impl TranslateError {
    /// The field named, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Missing(f) | Self::Invalid(f) | Self::Unsupported { field: f, .. } => Some(f),
            Self::NotAnObject | Self::BadResponse => None,
        }
    }

    /// True when the client's request is at fault (400), false for a bad
    /// provider answer (502).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Self::BadResponse)
    }
}

fn invalid(path: impl Into<String>) -> TranslateError {
    TranslateError::Invalid(path.into())
}

fn unsupported(path: impl Into<String>, reason: &'static str) -> TranslateError {
    TranslateError::Unsupported {
        field: path.into(),
        reason,
    }
}

/// `path.key`, where `key` comes from the body: echoed only when it looks
/// like a field name, so a key cannot smuggle prompt text into an error.
fn key_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if plain { key } else { "<unnamed>" };
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn parse_object(body: &[u8]) -> Result<Obj, TranslateError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(TranslateError::NotAnObject),
    }
}

fn obj<'a>(v: &'a Value, path: &str) -> Result<&'a Obj, TranslateError> {
    v.as_object().ok_or_else(|| invalid(path))
}

fn arr<'a>(v: &'a Value, path: &str) -> Result<&'a Vec<Value>, TranslateError> {
    v.as_array().ok_or_else(|| invalid(path))
}

fn string<'a>(v: &'a Value, path: &str) -> Result<&'a str, TranslateError> {
    v.as_str().ok_or_else(|| invalid(path))
}

/// A member, null counting as absent.
fn get<'a>(o: &'a Obj, key: &str) -> Option<&'a Value> {
    o.get(key).filter(|v| !v.is_null())
}

fn req_str<'a>(o: &'a Obj, key: &str, path: &str) -> Result<&'a str, TranslateError> {
    let p = || format!("{path}.{key}");
    string(
        get(o, key).ok_or_else(|| TranslateError::Missing(p()))?,
        &p(),
    )
}

/// Refuses any non-null member not in `allowed`.
fn check_keys(o: &Obj, allowed: &[&str], path: &str) -> Result<(), TranslateError> {
    match o
        .iter()
        .find(|(k, v)| !v.is_null() && !allowed.contains(&k.as_str()))
    {
        Some((k, _)) => Err(unsupported(key_path(path, k), "no counterpart")),
        None => Ok(()),
    }
}

fn to_vec(v: &Value) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    write_json(&mut b, v);
    b
}

fn positive_int(v: &Value, path: &str) -> Result<u64, TranslateError> {
    v.as_u64().filter(|n| *n > 0).ok_or_else(|| invalid(path))
}

mod error;
mod request;
mod response;
mod stream;

pub use error::*;
pub use request::*;
pub use response::*;
pub use stream::*;

// ===== usage and stop reasons =====

/// Token counts for billing, in OpenAI's sense: `input` includes the tokens
/// read from or written to a prompt cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: Option<i64>,
    pub output: Option<i64>,
    /// Of `input`, read from the prompt cache.
    pub cache_read: Option<i64>,
    /// Of `input`, written to the prompt cache (Anthropic only).
    pub cache_write: Option<i64>,
}

impl TokenUsage {
    fn from_anthropic(u: &anthropic::Usage) -> Self {
        // Saturating: the counts come from the provider, and a sum past
        // i64::MAX must not panic (debug builds) or wrap negative (release).
        let input = u.input_tokens.map(|i| {
            i.saturating_add(u.cache_read_input_tokens.unwrap_or(0))
                .saturating_add(u.cache_creation_input_tokens.unwrap_or(0))
        });
        Self {
            input,
            output: u.output_tokens,
            cache_read: u.cache_read_input_tokens,
            cache_write: u.cache_creation_input_tokens,
        }
    }

    /// Merges what a later Anthropic event reports.
    fn update_anthropic(&mut self, u: &anthropic::Usage) {
        let n = Self::from_anthropic(u);
        self.input = n.input.or(self.input);
        self.output = n.output.or(self.output);
        self.cache_read = n.cache_read.or(self.cache_read);
        self.cache_write = n.cache_write.or(self.cache_write);
    }

    fn from_openai(u: &OaUsage) -> Self {
        Self {
            input: u.prompt_tokens,
            output: u.completion_tokens,
            cache_read: u
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens),
            cache_write: None,
        }
    }

    fn openai_json(&self) -> Value {
        let (i, o) = (self.input.unwrap_or(0), self.output.unwrap_or(0));
        let total = i.saturating_add(o);
        let mut v = json!({"prompt_tokens": i, "completion_tokens": o, "total_tokens": total});
        if let Some(c) = self.cache_read {
            v["prompt_tokens_details"] = json!({"cached_tokens": c});
        }
        v
    }

    fn anthropic_json(&self) -> Value {
        let cached = self
            .cache_read
            .unwrap_or(0)
            .saturating_add(self.cache_write.unwrap_or(0));
        let input = self.input.unwrap_or(0).saturating_sub(cached).max(0);
        let mut v = json!({"input_tokens": input, "output_tokens": self.output.unwrap_or(0)});
        if let Some(c) = self.cache_read {
            v["cache_read_input_tokens"] = c.into();
        }
        if let Some(c) = self.cache_write {
            v["cache_creation_input_tokens"] = c.into();
        }
        v
    }
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, unknown.
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

// ===== OpenAI response and chunk types, shared by responses and streams =====

#[derive(Deserialize)]
struct OaUsage {
    #[serde(default)]
    prompt_tokens: Option<i64>,
    #[serde(default)]
    completion_tokens: Option<i64>,
    #[serde(default)]
    prompt_tokens_details: Option<OaTokenDetails>,
}

#[derive(Deserialize)]
struct OaTokenDetails {
    #[serde(default)]
    cached_tokens: Option<i64>,
}

#[derive(Deserialize)]
struct OaResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    choices: Vec<OaChoice>,
    #[serde(default)]
    usage: Option<OaUsage>,
}

#[derive(Deserialize)]
struct OaChoice {
    #[serde(default)]
    message: Option<OaMessage>,
    #[serde(default)]
    delta: Option<OaMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct OaMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Vec<OaToolCall>,
}

#[derive(Deserialize)]
struct OaToolCall {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: OaFunction,
}

#[derive(Deserialize, Default)]
struct OaFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[cfg(test)]
mod tests;
