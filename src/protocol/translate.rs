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

// ===== requests: OpenAI → Anthropic =====

/// Translates an OpenAI Chat Completions request into the Anthropic Messages
/// request to send to the provider, with `model` set to `upstream_model`.
pub fn openai_to_anthropic_request(
    body: &[u8],
    upstream_model: &str,
) -> Result<Vec<u8>, TranslateError> {
    let req = parse_object(body)?;
    let mut out = Obj::new();
    out.insert("model".into(), upstream_model.into());
    let mut system = Vec::new();
    let mut messages = None;
    let mut max_tokens = None;
    let mut max_completion_tokens = None;
    let mut stream = false;
    let mut tool_choice: Option<Obj> = None;
    let mut parallel = true;
    let mut user = None;
    let mut safety_id = None;
    for (key, v) in &req {
        if v.is_null() {
            continue;
        }
        let k = key.as_str();
        match k {
            // Anthropic streams always report usage; a cache key is a hint.
            "model" | "stream_options" | "prompt_cache_key" => {}
            "messages" => messages = Some(oa_messages(v, &mut system)?),
            "max_tokens" => max_tokens = Some(positive_int(v, k)?),
            "max_completion_tokens" => max_completion_tokens = Some(positive_int(v, k)?),
            "stream" => stream = v.as_bool().ok_or_else(|| invalid(k))?,
            "temperature" => {
                let t = v.as_f64().ok_or_else(|| invalid(k))?;
                if !(0.0..=2.0).contains(&t) {
                    return Err(invalid(k));
                }
                if t > 1.0 {
                    return Err(unsupported(k, "Anthropic accepts 0 to 1"));
                }
                out.insert(k.into(), v.clone());
            }
            "top_p" => {
                v.as_f64().ok_or_else(|| invalid(k))?;
                out.insert(k.into(), v.clone());
            }
            "stop" => {
                let seqs: Vec<Value> = match v {
                    Value::String(_) => vec![v.clone()],
                    Value::Array(a) => {
                        for (i, s) in a.iter().enumerate() {
                            string(s, &format!("stop[{i}]"))?;
                        }
                        a.clone()
                    }
                    _ => return Err(invalid(k)),
                };
                if !seqs.is_empty() {
                    out.insert("stop_sequences".into(), Value::Array(seqs));
                }
            }
            "tools" => {
                out.insert("tools".into(), oa_tools(v)?);
            }
            "tool_choice" => tool_choice = Some(oa_tool_choice(v)?),
            "parallel_tool_calls" => parallel = v.as_bool().ok_or_else(|| invalid(k))?,
            "user" => user = Some(string(v, k)?.to_owned()),
            "safety_identifier" => safety_id = Some(string(v, k)?.to_owned()),
            "n" => {
                if v.as_u64() != Some(1) {
                    return Err(unsupported(k, "Anthropic generates one choice"));
                }
            }
            "logprobs" => {
                if v != &Value::Bool(false) {
                    return Err(unsupported(k, "Anthropic returns no log probabilities"));
                }
            }
            "top_logprobs" => {
                if v.as_u64() != Some(0) {
                    return Err(unsupported(k, "Anthropic returns no log probabilities"));
                }
            }
            "presence_penalty" | "frequency_penalty" => {
                if v.as_f64() != Some(0.0) {
                    return Err(unsupported(k, "Anthropic has no repetition penalties"));
                }
            }
            "logit_bias" => {
                if !v.as_object().is_some_and(Map::is_empty) {
                    return Err(unsupported(k, "Anthropic has no token biases"));
                }
            }
            "response_format" => {
                if v.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(unsupported(
                        "response_format.type",
                        "Anthropic has no JSON mode or schema-constrained output",
                    ));
                }
            }
            "modalities" => {
                if v != &json!(["text"]) {
                    return Err(unsupported(k, "Anthropic produces text only"));
                }
            }
            "service_tier" => {
                if !matches!(v.as_str(), Some("auto" | "default")) {
                    return Err(unsupported(k, "only the default tier can be translated"));
                }
            }
            "store" => {
                if v != &Value::Bool(false) {
                    return Err(unsupported(k, "Anthropic does not store completions"));
                }
            }
            "metadata" => {
                if !v.as_object().is_some_and(Map::is_empty) {
                    return Err(unsupported(k, "Anthropic metadata holds only a user id"));
                }
            }
            "seed" => return Err(unsupported(k, "Anthropic has no seed")),
            "audio" => return Err(unsupported(k, "Anthropic produces no audio")),
            "prediction" => return Err(unsupported(k, "Anthropic has no predicted outputs")),
            "reasoning_effort" | "verbosity" => {
                return Err(unsupported(k, "no Anthropic counterpart"));
            }
            "web_search_options" => {
                return Err(unsupported(k, "server-side tools are not translated"));
            }
            "functions" | "function_call" => {
                return Err(unsupported(k, "deprecated; use `tools`"));
            }
            _ => return Err(unsupported(key_path("", k), "unknown field")),
        }
    }
    out.insert(
        "messages".into(),
        Value::Array(messages.ok_or_else(|| TranslateError::Missing("messages".into()))?),
    );
    let max = max_completion_tokens
        .or(max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), max.into());
    match system.len() {
        0 => {}
        1 if system[0].0 => {
            if let Some(text) = system.pop().map(|(_, t)| t) {
                out.insert("system".into(), text.into());
            }
        }
        _ => {
            let blocks = system
                .into_iter()
                .map(|(_, t)| json!({"type": "text", "text": t}))
                .collect();
            out.insert("system".into(), Value::Array(blocks));
        }
    }
    let has_tools = out.get("tools").is_some();
    if !parallel && has_tools {
        let tc = tool_choice.get_or_insert_with(|| {
            let mut m = Obj::new();
            m.insert("type".into(), "auto".into());
            m
        });
        if tc.get("type").and_then(Value::as_str) != Some("none") {
            tc.insert("disable_parallel_tool_use".into(), true.into());
        }
    }
    if let Some(tc) = tool_choice {
        out.insert("tool_choice".into(), Value::Object(tc));
    }
    if let Some(id) = safety_id.or(user) {
        out.insert("metadata".into(), json!({ "user_id": id }));
    }
    out.insert("stream".into(), stream.into());
    Ok(to_vec(&Value::Object(out)))
}

/// System texts are collected as `(was a plain string message, text)`.
fn oa_messages(v: &Value, system: &mut Vec<(bool, String)>) -> Result<Vec<Value>, TranslateError> {
    let list = arr(v, "messages")?;
    let mut out: Vec<Value> = Vec::with_capacity(list.len());
    let mut last_was_tool = false;
    for (i, m) in list.iter().enumerate() {
        let path = format!("messages[{i}]");
        let m = obj(m, &path)?;
        let role = req_str(m, "role", &path)?;
        let content_path = format!("{path}.content");
        let is_tool = role == "tool";
        match role {
            "system" | "developer" => {
                check_keys(m, &["role", "content"], &path)?;
                match get(m, "content") {
                    Some(Value::String(s)) => system.push((true, s.clone())),
                    Some(c) => {
                        for t in oa_text_parts(c, &content_path)? {
                            system.push((false, t));
                        }
                    }
                    None => return Err(TranslateError::Missing(content_path)),
                }
            }
            "user" => {
                check_keys(m, &["role", "content"], &path)?;
                let c = get(m, "content")
                    .ok_or_else(|| TranslateError::Missing(content_path.clone()))?;
                let content = oa_user_content(c, &content_path)?;
                out.push(json!({"role": "user", "content": content}));
            }
            "assistant" => {
                check_keys(m, &["role", "content", "tool_calls", "refusal"], &path)?;
                out.push(oa_assistant(m, &path)?);
            }
            "tool" => {
                // `name` on a tool message repeats what the call id already says.
                check_keys(m, &["role", "content", "tool_call_id", "name"], &path)?;
                let id = req_str(m, "tool_call_id", &path)?;
                let content = match get(m, "content") {
                    None => Value::String(String::new()),
                    Some(Value::String(s)) => Value::String(s.clone()),
                    Some(c) => Value::Array(
                        oa_text_parts(c, &content_path)?
                            .into_iter()
                            .map(|t| json!({"type": "text", "text": t}))
                            .collect(),
                    ),
                };
                let block = json!({"type": "tool_result", "tool_use_id": id, "content": content});
                // Results of one assistant turn go back in one user message.
                match out.last_mut().and_then(|l| l.get_mut("content")) {
                    Some(Value::Array(blocks)) if last_was_tool => blocks.push(block),
                    _ => out.push(json!({"role": "user", "content": [block]})),
                }
            }
            "function" => {
                return Err(unsupported(
                    format!("{path}.role"),
                    "deprecated; use `tool`",
                ));
            }
            _ => return Err(invalid(format!("{path}.role"))),
        }
        last_was_tool = is_tool;
    }
    Ok(out)
}

/// Text of a content array made of `text` parts only.
fn oa_text_parts(v: &Value, path: &str) -> Result<Vec<String>, TranslateError> {
    let parts = arr(v, path)?;
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let pp = format!("{path}[{j}]");
        let p = obj(p, &pp)?;
        if req_str(p, "type", &pp)? != "text" {
            return Err(unsupported(
                format!("{pp}.type"),
                "only text is accepted here",
            ));
        }
        check_keys(p, &["type", "text"], &pp)?;
        out.push(req_str(p, "text", &pp)?.to_owned());
    }
    Ok(out)
}

fn oa_user_content(v: &Value, path: &str) -> Result<Value, TranslateError> {
    let parts = match v {
        Value::String(s) => return Ok(Value::String(s.clone())),
        v => arr(v, path)?,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let pp = format!("{path}[{j}]");
        let p = obj(p, &pp)?;
        match req_str(p, "type", &pp)? {
            "text" => {
                check_keys(p, &["type", "text"], &pp)?;
                blocks.push(json!({"type": "text", "text": req_str(p, "text", &pp)?}));
            }
            "image_url" => {
                check_keys(p, &["type", "image_url"], &pp)?;
                blocks.push(oa_image(p, &pp)?);
            }
            "input_audio" => return Err(unsupported(format!("{pp}.input_audio"), "audio content")),
            "file" => return Err(unsupported(format!("{pp}.file"), "file content")),
            _ => return Err(unsupported(format!("{pp}.type"), "unknown content part")),
        }
    }
    Ok(Value::Array(blocks))
}

fn oa_image(p: &Obj, path: &str) -> Result<Value, TranslateError> {
    let ip = format!("{path}.image_url");
    let up = format!("{ip}.url");
    let url = match get(p, "image_url").ok_or_else(|| TranslateError::Missing(ip.clone()))? {
        Value::String(s) => s.as_str(),
        Value::Object(o) => {
            // `detail` is a resolution hint with no Anthropic counterpart.
            check_keys(o, &["url", "detail"], &ip)?;
            req_str(o, "url", &ip)?
        }
        _ => return Err(invalid(ip)),
    };
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or_else(|| invalid(up.clone()))?;
        let Some(media) = meta.strip_suffix(";base64") else {
            return Err(unsupported(up, "only base64 data URLs"));
        };
        if !anthropic::IMAGE_MEDIA_TYPES.contains(&media) {
            return Err(unsupported(up, "Anthropic accepts JPEG, PNG, GIF and WebP"));
        }
        Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
        )
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
    } else {
        Err(invalid(up))
    }
}

fn oa_assistant(m: &Obj, path: &str) -> Result<Value, TranslateError> {
    let content_path = format!("{path}.content");
    let calls = match get(m, "tool_calls") {
        Some(v) => arr(v, &format!("{path}.tool_calls"))?.as_slice(),
        None => &[],
    };
    let refusal = get(m, "refusal")
        .map(|r| string(r, &format!("{path}.refusal")))
        .transpose()?;
    let mut blocks = Vec::new();
    match get(m, "content") {
        Some(Value::String(s)) if calls.is_empty() && refusal.is_none() => {
            return Ok(json!({"role": "assistant", "content": s}));
        }
        // Anthropic refuses empty text blocks.
        Some(Value::String(s)) if !s.is_empty() => {
            blocks.push(json!({"type": "text", "text": s}));
        }
        Some(Value::String(_)) | None => {}
        Some(Value::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                let pp = format!("{content_path}[{j}]");
                let p = obj(p, &pp)?;
                let text = match req_str(p, "type", &pp)? {
                    "text" => {
                        check_keys(p, &["type", "text"], &pp)?;
                        req_str(p, "text", &pp)?
                    }
                    "refusal" => {
                        check_keys(p, &["type", "refusal"], &pp)?;
                        req_str(p, "refusal", &pp)?
                    }
                    _ => return Err(unsupported(format!("{pp}.type"), "unknown content part")),
                };
                blocks.push(json!({"type": "text", "text": text}));
            }
        }
        Some(_) => return Err(invalid(content_path)),
    }
    if let Some(r) = refusal {
        blocks.push(json!({"type": "text", "text": r}));
    }
    for (j, c) in calls.iter().enumerate() {
        let cp = format!("{path}.tool_calls[{j}]");
        let c = obj(c, &cp)?;
        check_keys(c, &["id", "type", "function"], &cp)?;
        if let Some(t) = get(c, "type")
            && t.as_str() != Some("function")
        {
            return Err(unsupported(format!("{cp}.type"), "only function calls"));
        }
        let fp = format!("{cp}.function");
        let f = obj(
            get(c, "function").ok_or_else(|| TranslateError::Missing(fp.clone()))?,
            &fp,
        )?;
        check_keys(f, &["name", "arguments"], &fp)?;
        let args = get(f, "arguments")
            .map(|a| string(a, &format!("{fp}.arguments")))
            .transpose()?;
        let input = parse_arguments(args.unwrap_or(""), &format!("{fp}.arguments"))?;
        blocks.push(json!({
            "type": "tool_use",
            "id": req_str(c, "id", &cp)?,
            "name": req_str(f, "name", &fp)?,
            "input": input,
        }));
    }
    Ok(json!({"role": "assistant", "content": blocks}))
}

/// OpenAI tool-call arguments (a JSON text) as the object Anthropic wants.
fn parse_arguments(args: &str, path: &str) -> Result<Value, TranslateError> {
    if args.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(unsupported(path, "arguments must be a JSON object")),
    }
}

fn oa_tools(v: &Value) -> Result<Value, TranslateError> {
    let list = arr(v, "tools")?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let tp = format!("tools[{i}]");
        let t = obj(t, &tp)?;
        if req_str(t, "type", &tp)? != "function" {
            return Err(unsupported(format!("{tp}.type"), "only function tools"));
        }
        check_keys(t, &["type", "function"], &tp)?;
        let fp = format!("{tp}.function");
        let f = obj(
            get(t, "function").ok_or_else(|| TranslateError::Missing(fp.clone()))?,
            &fp,
        )?;
        check_keys(f, &["name", "description", "parameters", "strict"], &fp)?;
        if get(f, "strict").is_some_and(|s| s != &Value::Bool(false)) {
            return Err(unsupported(
                format!("{fp}.strict"),
                "Anthropic does not enforce schemas",
            ));
        }
        let mut tool = Obj::new();
        tool.insert("name".into(), req_str(f, "name", &fp)?.into());
        if let Some(d) = get(f, "description") {
            string(d, &format!("{fp}.description"))?;
            tool.insert("description".into(), d.clone());
        }
        let schema = match get(f, "parameters") {
            Some(p) => Value::Object(obj(p, &format!("{fp}.parameters"))?.clone()),
            None => json!({"type": "object", "properties": {}}),
        };
        tool.insert("input_schema".into(), schema);
        out.push(Value::Object(tool));
    }
    Ok(Value::Array(out))
}

fn oa_tool_choice(v: &Value) -> Result<Obj, TranslateError> {
    const P: &str = "tool_choice";
    let ty = match v {
        Value::String(s) => match s.as_str() {
            "auto" => "auto",
            "none" => "none",
            "required" => "any",
            _ => return Err(invalid(P)),
        },
        Value::Object(o) => {
            if req_str(o, "type", P)? != "function" {
                return Err(unsupported("tool_choice.type", "only a named function"));
            }
            check_keys(o, &["type", "function"], P)?;
            let fp = "tool_choice.function";
            let f = obj(
                get(o, "function").ok_or_else(|| TranslateError::Missing(fp.into()))?,
                fp,
            )?;
            check_keys(f, &["name"], fp)?;
            let mut m = Obj::new();
            m.insert("type".into(), "tool".into());
            m.insert("name".into(), req_str(f, "name", fp)?.into());
            return Ok(m);
        }
        _ => return Err(invalid(P)),
    };
    let mut m = Obj::new();
    m.insert("type".into(), ty.into());
    Ok(m)
}

// ===== requests: Anthropic → OpenAI =====

/// Translates an Anthropic Messages request into the OpenAI Chat Completions
/// request to send to the provider, with `model` set to `upstream_model`.
/// Streams ask for the usage chunk (`stream_options.include_usage`).
pub fn anthropic_to_openai_request(
    body: &[u8],
    upstream_model: &str,
) -> Result<Vec<u8>, TranslateError> {
    let req = parse_object(body)?;
    let mut out = Obj::new();
    out.insert("model".into(), upstream_model.into());
    let mut messages = Vec::new();
    let mut turns = None;
    let mut max_tokens = None;
    let mut stream = false;
    for (key, v) in &req {
        if v.is_null() {
            continue;
        }
        let k = key.as_str();
        match k {
            "model" => {}
            "system" => messages.push(an_system(v)?),
            "messages" => turns = Some(v),
            "max_tokens" => max_tokens = Some(positive_int(v, k)?),
            "stream" => stream = v.as_bool().ok_or_else(|| invalid(k))?,
            "temperature" | "top_p" => {
                v.as_f64().ok_or_else(|| invalid(k))?;
                out.insert(k.into(), v.clone());
            }
            "stop_sequences" => {
                let a = arr(v, k)?;
                for (i, s) in a.iter().enumerate() {
                    string(s, &format!("{k}[{i}]"))?;
                }
                if a.len() > OPENAI_MAX_STOP {
                    return Err(unsupported(k, "OpenAI accepts at most 4 stop sequences"));
                }
                if !a.is_empty() {
                    out.insert("stop".into(), v.clone());
                }
            }
            "tools" => {
                out.insert("tools".into(), an_tools(v)?);
            }
            "tool_choice" => {
                let o = obj(v, k)?;
                check_keys(o, &["type", "name", "disable_parallel_tool_use"], k)?;
                let choice = match req_str(o, "type", k)? {
                    "auto" => json!("auto"),
                    "any" => json!("required"),
                    "none" => json!("none"),
                    "tool" => {
                        json!({"type": "function", "function": {"name": req_str(o, "name", k)?}})
                    }
                    _ => return Err(invalid("tool_choice.type")),
                };
                out.insert("tool_choice".into(), choice);
                match get(o, "disable_parallel_tool_use") {
                    None => {}
                    Some(Value::Bool(true)) => {
                        out.insert("parallel_tool_calls".into(), false.into());
                    }
                    Some(Value::Bool(false)) => {}
                    Some(_) => return Err(invalid("tool_choice.disable_parallel_tool_use")),
                }
            }
            "metadata" => {
                let o = obj(v, k)?;
                check_keys(o, &["user_id"], k)?;
                if let Some(u) = get(o, "user_id") {
                    out.insert("user".into(), string(u, "metadata.user_id")?.into());
                }
            }
            "service_tier" => {
                if !matches!(v.as_str(), Some("auto" | "standard_only")) {
                    return Err(invalid(k));
                }
            }
            "thinking" => {
                if v.get("type").and_then(Value::as_str) != Some("disabled") {
                    return Err(unsupported(
                        k,
                        "extended thinking has no OpenAI counterpart",
                    ));
                }
            }
            "top_k" => return Err(unsupported(k, "OpenAI has no top-k sampling")),
            "container" | "mcp_servers" | "context_management" => {
                return Err(unsupported(k, "server-side features are not translated"));
            }
            _ => return Err(unsupported(key_path("", k), "unknown field")),
        }
    }
    let turns = turns.ok_or_else(|| TranslateError::Missing("messages".into()))?;
    an_messages(turns, &mut messages)?;
    out.insert("messages".into(), Value::Array(messages));
    let max = max_tokens.ok_or_else(|| TranslateError::Missing("max_tokens".into()))?;
    out.insert("max_tokens".into(), max.into());
    out.insert("stream".into(), stream.into());
    if stream {
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(to_vec(&Value::Object(out)))
}

fn an_system(v: &Value) -> Result<Value, TranslateError> {
    match v {
        Value::String(s) => Ok(json!({"role": "system", "content": s})),
        Value::Array(_) => Ok(json!({"role": "system", "content": an_text_parts(v, "system")?})),
        _ => Err(invalid("system")),
    }
}

/// OpenAI text parts from Anthropic blocks that must all be text.
fn an_text_parts(v: &Value, path: &str) -> Result<Value, TranslateError> {
    let blocks = arr(v, path)?;
    let mut out = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.iter().enumerate() {
        let bp = format!("{path}[{j}]");
        let b = obj(b, &bp)?;
        if req_str(b, "type", &bp)? != "text" {
            return Err(unsupported(
                format!("{bp}.type"),
                "only text is accepted here",
            ));
        }
        out.push(an_text(b, &bp)?);
    }
    Ok(Value::Array(out))
}

fn an_text(b: &Obj, path: &str) -> Result<Value, TranslateError> {
    // `cache_control` is a caching hint: dropped.
    check_keys(b, &["type", "text", "cache_control"], path)?;
    Ok(json!({"type": "text", "text": req_str(b, "text", path)?}))
}

fn an_messages(v: &Value, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    for (i, m) in arr(v, "messages")?.iter().enumerate() {
        let path = format!("messages[{i}]");
        let m = obj(m, &path)?;
        check_keys(m, &["role", "content"], &path)?;
        let role = req_str(m, "role", &path)?;
        let cp = format!("{path}.content");
        let content = get(m, "content").ok_or_else(|| TranslateError::Missing(cp.clone()))?;
        match (role, content) {
            ("user" | "assistant", Value::String(s)) => {
                out.push(json!({"role": role, "content": s}));
            }
            ("user", c) => an_user_blocks(arr(c, &cp)?, &cp, out)?,
            ("assistant", c) => out.push(an_assistant_blocks(arr(c, &cp)?, &cp)?),
            _ => return Err(invalid(format!("{path}.role"))),
        }
    }
    Ok(())
}

/// A user turn: its tool results become `tool` messages, the rest user
/// messages, in order.
fn an_user_blocks(
    blocks: &[Value],
    path: &str,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let mut parts: Vec<Value> = Vec::new();
    let flush = |parts: &mut Vec<Value>, out: &mut Vec<Value>| {
        if !parts.is_empty() {
            out.push(json!({"role": "user", "content": std::mem::take(parts)}));
        }
    };
    for (j, b) in blocks.iter().enumerate() {
        let bp = format!("{path}[{j}]");
        let b = obj(b, &bp)?;
        match req_str(b, "type", &bp)? {
            "text" => parts.push(an_text(b, &bp)?),
            "image" => parts.push(an_image(b, &bp)?),
            "tool_result" => {
                flush(&mut parts, out);
                // `is_error` has no OpenAI counterpart: the content still
                // says what went wrong (see docs/translation.md).
                check_keys(
                    b,
                    &[
                        "type",
                        "tool_use_id",
                        "content",
                        "is_error",
                        "cache_control",
                    ],
                    &bp,
                )?;
                let content = match get(b, "content") {
                    None => Value::String(String::new()),
                    Some(Value::String(s)) => Value::String(s.clone()),
                    Some(c) => an_text_parts(c, &format!("{bp}.content"))?,
                };
                out.push(json!({
                    "role": "tool",
                    "tool_call_id": req_str(b, "tool_use_id", &bp)?,
                    "content": content,
                }));
            }
            "document" => return Err(unsupported(format!("{bp}.type"), "document content")),
            _ => return Err(unsupported(format!("{bp}.type"), "no OpenAI counterpart")),
        }
    }
    flush(&mut parts, out);
    Ok(())
}

fn an_image(b: &Obj, path: &str) -> Result<Value, TranslateError> {
    check_keys(b, &["type", "source", "cache_control"], path)?;
    let sp = format!("{path}.source");
    let s = obj(
        get(b, "source").ok_or_else(|| TranslateError::Missing(sp.clone()))?,
        &sp,
    )?;
    let url = match req_str(s, "type", &sp)? {
        "base64" => {
            check_keys(s, &["type", "media_type", "data"], &sp)?;
            format!(
                "data:{};base64,{}",
                req_str(s, "media_type", &sp)?,
                req_str(s, "data", &sp)?
            )
        }
        "url" => {
            check_keys(s, &["type", "url"], &sp)?;
            req_str(s, "url", &sp)?.to_owned()
        }
        _ => {
            return Err(unsupported(
                format!("{sp}.type"),
                "only base64 and URL images",
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn an_assistant_blocks(blocks: &[Value], path: &str) -> Result<Value, TranslateError> {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bp = format!("{path}[{j}]");
        let b = obj(b, &bp)?;
        match req_str(b, "type", &bp)? {
            "text" => texts.push(an_text(b, &bp)?),
            "tool_use" => {
                check_keys(b, &["type", "id", "name", "input", "cache_control"], &bp)?;
                let input = get(b, "input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": req_str(b, "id", &bp)?,
                    "type": "function",
                    "function": {"name": req_str(b, "name", &bp)?, "arguments": input.to_string()},
                }));
            }
            "thinking" | "redacted_thinking" => {
                return Err(unsupported(format!("{bp}.type"), "thinking blocks"));
            }
            _ => return Err(unsupported(format!("{bp}.type"), "no OpenAI counterpart")),
        }
    }
    let content = match texts.len() {
        0 if calls.is_empty() => Value::String(String::new()),
        0 => Value::Null,
        1 => texts
            .pop()
            .and_then(|t| t.get("text").cloned())
            .unwrap_or_default(),
        _ => Value::Array(texts),
    };
    let mut m = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    Ok(m)
}

fn an_tools(v: &Value) -> Result<Value, TranslateError> {
    let list = arr(v, "tools")?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let tp = format!("tools[{i}]");
        let t = obj(t, &tp)?;
        if let Some(ty) = get(t, "type")
            && ty.as_str() != Some("custom")
        {
            return Err(unsupported(
                format!("{tp}.type"),
                "server tools are not translated",
            ));
        }
        check_keys(
            t,
            &[
                "type",
                "name",
                "description",
                "input_schema",
                "cache_control",
            ],
            &tp,
        )?;
        let mut f = Obj::new();
        f.insert("name".into(), req_str(t, "name", &tp)?.into());
        if let Some(d) = get(t, "description") {
            string(d, &format!("{tp}.description"))?;
            f.insert("description".into(), d.clone());
        }
        let sp = format!("{tp}.input_schema");
        let schema = obj(
            get(t, "input_schema").ok_or_else(|| TranslateError::Missing(sp.clone()))?,
            &sp,
        )?;
        f.insert("parameters".into(), Value::Object(schema.clone()));
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(Value::Array(out))
}

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

// ===== non-streamed responses =====

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

// ===== provider errors =====

/// Which protocol a provider speaks (and so its error bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
}

/// The error types and codes OpenAI and Anthropic document. A provider's
/// error type reaches the client only when it is one of these: anything else
/// is free text the provider chose (it may quote the request or the
/// credential cordon sent) and becomes `unknown`.
pub(crate) const ERROR_TYPES: &[&str] = &[
    "api_error",
    "authentication_error",
    "billing_error",
    "context_length_exceeded",
    "insufficient_quota",
    "invalid_api_key",
    "invalid_request_error",
    "model_not_found",
    "not_found_error",
    "overloaded_error",
    "permission_error",
    "rate_limit_error",
    "rate_limit_exceeded",
    "request_too_large",
    "server_error",
    "timeout_error",
];

/// A provider's error type, echoed only when it is a documented one.
fn error_type(t: Option<&str>) -> &'static str {
    t.and_then(|t| ERROR_TYPES.iter().find(|k| **k == t))
        .copied()
        .unwrap_or("unknown")
}

/// An OpenAI provider's error answer: its status and error type (its `code`
/// when that is a documented one, else its `type`); the message is not read.
fn openai_error_kind(body: &[u8]) -> &'static str {
    #[derive(Deserialize, Default)]
    struct Body {
        #[serde(default)]
        error: Option<Detail>,
    }
    #[derive(Deserialize, Default)]
    struct Detail {
        #[serde(rename = "type", default)]
        kind: Option<String>,
        #[serde(default)]
        code: Option<Value>,
    }
    let e: Body = serde_json::from_slice(body).unwrap_or_default();
    let d = e.error.unwrap_or_default();
    match error_type(d.code.as_ref().and_then(Value::as_str)) {
        "unknown" => error_type(d.kind.as_deref()),
        code => code,
    }
}

/// An Anthropic provider's error type; the message is not read.
fn anthropic_error_kind(body: &[u8]) -> &'static str {
    let e: anthropic::ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    error_type(e.error.kind.as_deref())
}

/// A provider's error answer (`from`'s protocol) as the client may see it,
/// in the client's protocol (`to`): cordon's own words, the provider's
/// status (mapped) and its error type; never the provider's free text, which
/// may quote the request or echo the credential cordon sent (OpenAI's 401
/// does: "Incorrect API key provided: sk-…"). A provider refusing cordon's
/// credential (401, 403) is cordon's fault, not the client's: 502.
pub fn scrub_provider_error(
    from: Wire,
    to: Wire,
    status: StatusCode,
    body: &[u8],
) -> (StatusCode, Bytes) {
    match (from, to) {
        (Wire::Anthropic, Wire::OpenAi) => anthropic_error_to_openai(status, body),
        (Wire::OpenAi, Wire::Anthropic) => openai_error_to_anthropic(status, body),
        (Wire::OpenAi, Wire::OpenAi) => {
            let kind = openai_error_kind(body);
            let mapped = mapped_status(status);
            (mapped, openai_error_body(mapped, status, kind, "OpenAI"))
        }
        (Wire::Anthropic, Wire::Anthropic) => {
            let kind = anthropic_error_kind(body);
            let (mapped, ty) = match (status.as_u16(), kind) {
                (529, _) | (_, "overloaded_error") => (overloaded(), "overloaded_error"),
                _ => {
                    let s = mapped_status(status);
                    (s, anthropic_type(s))
                }
            };
            (mapped, anthropic_error_body(ty, status, kind, "Anthropic"))
        }
    }
}

/// An OpenAI error body for the client's `status`, naming what the provider
/// answered (`provider_status`, `kind`).
fn openai_error_body(
    status: StatusCode,
    provider_status: StatusCode,
    kind: &str,
    protocol: &str,
) -> Bytes {
    let message = format!(
        "the provider ({protocol} protocol) answered {} {kind}",
        status_text(provider_status)
    );
    let body = json!({"error": {
        "type": openai_type(status),
        "code": kind,
        "message": message,
        "param": null,
    }});
    Bytes::from(to_vec(&body))
}

/// An Anthropic error body of type `ty`, naming what the provider answered
/// (`provider_status`, `kind`).
fn anthropic_error_body(
    ty: &str,
    provider_status: StatusCode,
    kind: &str,
    protocol: &str,
) -> Bytes {
    let message = format!(
        "the provider ({protocol} protocol) answered {} {kind}",
        status_text(provider_status)
    );
    let body = json!({"type": "error", "error": {"type": ty, "message": message}});
    Bytes::from(to_vec(&body))
}

/// Anthropic's 529 `overloaded_error`.
fn overloaded() -> StatusCode {
    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// An Anthropic provider's error answer in OpenAI's shape, with the status an
/// OpenAI client expects. The provider's message is not kept (it may quote
/// the request): the new one names the provider's status and error type.
pub fn anthropic_error_to_openai(status: StatusCode, body: &[u8]) -> (StatusCode, Bytes) {
    let kind = anthropic_error_kind(body);
    let mapped = match (status.as_u16(), kind) {
        (529, _) | (_, "overloaded_error") => StatusCode::SERVICE_UNAVAILABLE,
        _ => mapped_status(status),
    };
    (mapped, openai_error_body(mapped, status, kind, "Anthropic"))
}

/// An OpenAI provider's error answer in Anthropic's shape (see
/// [`anthropic_error_to_openai`]); a 503 becomes Anthropic's 529
/// `overloaded_error`.
pub fn openai_error_to_anthropic(status: StatusCode, body: &[u8]) -> (StatusCode, Bytes) {
    let kind = openai_error_kind(body);
    let mapped = mapped_status(status);
    let (mapped, ty) = match mapped.as_u16() {
        503 => (overloaded(), "overloaded_error"),
        _ => (mapped, anthropic_type(mapped)),
    };
    (mapped, anthropic_error_body(ty, status, kind, "OpenAI"))
}

/// Maps a provider error answer of protocol `from` into the other protocol.
pub fn map_provider_error(from: Wire, status: StatusCode, body: &[u8]) -> (StatusCode, Bytes) {
    let to = match from {
        Wire::Anthropic => Wire::OpenAi,
        Wire::OpenAi => Wire::Anthropic,
    };
    scrub_provider_error(from, to, status, body)
}

/// Statuses kept across protocols, except that the provider refusing
/// cordon's own credentials (401, 403) is a gateway fault (502), not the
/// client's, and anything that is not an error becomes a 502.
fn mapped_status(status: StatusCode) -> StatusCode {
    match status.as_u16() {
        401 | 403 => StatusCode::BAD_GATEWAY,
        529 => StatusCode::SERVICE_UNAVAILABLE,
        400..=599 => status,
        _ => StatusCode::BAD_GATEWAY,
    }
}

fn status_text(s: StatusCode) -> String {
    s.as_u16().to_string()
}

fn openai_type(s: StatusCode) -> &'static str {
    match s.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

fn anthropic_type(s: StatusCode) -> &'static str {
    match s.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

// ===== streams =====

/// Reads one complete SSE event: its `event:` name and its `data:` payload
/// (several `data:` lines joined with `\n`).
pub fn sse_fields(event: &[u8]) -> (Option<&str>, Vec<u8>) {
    let mut name = None;
    let mut data: Vec<u8> = Vec::new();
    let mut lines = 0;
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(d) = line.strip_prefix(b"data:") {
            if lines > 0 {
                data.push(b'\n');
            }
            data.extend_from_slice(d.strip_prefix(b" ").unwrap_or(d));
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
fn write_json<T: Serialize + ?Sized>(b: &mut Vec<u8>, v: &T) {
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

#[cfg(test)]
mod tests;
