//! Non-streamed responses, both directions.

use super::*;

/// An Anthropic `message` response as an OpenAI `chat.completion`, with
/// `created` 0 (see [`anthropic_to_openai_response_at`]).
pub fn anthropic_to_openai_response(
    body: &[u8],
    public_model: &str,
) -> Result<Vec<u8>, TranslateError> {
    anthropic_to_openai_response_at(body, public_model, 0)
}

/// As [`anthropic_to_openai_response`], with the `created` Unix time the
/// caller read from its clock.
pub fn anthropic_to_openai_response_at(
    body: &[u8],
    public_model: &str,
    created: i64,
) -> Result<Vec<u8>, TranslateError> {
    let m: anthropic::Message =
        serde_json::from_slice(body).map_err(|_| TranslateError::BadResponse)?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in &m.content {
        match b {
            anthropic::Block::Text { text: t } => text.push_str(t),
            anthropic::Block::ToolUse { id, name, input } => calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": tool_arguments(input)},
            })),
            anthropic::Block::Other => {}
        }
    }
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let usage = TokenUsage::from_anthropic(&m.usage);
    Ok(to_vec(&json!({
        "id": m.id,
        "object": "chat.completion",
        "created": created,
        "model": public_model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(m.stop_reason.as_deref()),
        }],
        "usage": usage.openai_json(),
    })))
}

/// Tool input as OpenAI arguments text; an empty input is `{}`.
fn tool_arguments(input: &Value) -> String {
    match input {
        Value::Null => "{}".to_owned(),
        v => v.to_string(),
    }
}

/// An OpenAI `chat.completion` as an Anthropic `message` response. Only the
/// first choice is read (requests from Anthropic clients never ask for more).
pub fn openai_to_anthropic_response(
    body: &[u8],
    public_model: &str,
) -> Result<Vec<u8>, TranslateError> {
    let r: OaResponse = serde_json::from_slice(body).map_err(|_| TranslateError::BadResponse)?;
    let choice = r
        .choices
        .into_iter()
        .next()
        .ok_or(TranslateError::BadResponse)?;
    let msg = choice.message.unwrap_or_default();
    let mut content = Vec::new();
    if let Some(t) = msg.content.filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": t}));
    }
    let refused = msg.refusal.is_some();
    if let Some(t) = msg.refusal {
        content.push(json!({"type": "text", "text": t}));
    }
    for c in msg.tool_calls {
        let input = match c.function.arguments.as_deref().map(str::trim) {
            None | Some("") => json!({}),
            Some(a) => serde_json::from_str::<Value>(a).map_err(|_| TranslateError::BadResponse)?,
        };
        content.push(json!({
            "type": "tool_use",
            "id": c.id.unwrap_or_default(),
            "name": c.function.name.unwrap_or_default(),
            "input": input,
        }));
    }
    let stop = if refused {
        "refusal"
    } else {
        stop_reason(choice.finish_reason.as_deref())
    };
    let usage = r
        .usage
        .as_ref()
        .map(TokenUsage::from_openai)
        .unwrap_or_default();
    Ok(to_vec(&json!({
        "id": r.id,
        "type": "message",
        "role": "assistant",
        "model": public_model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage.anthropic_json(),
    })))
}
