//! Requests, both directions: OpenAI Chat Completions ⇄ Anthropic Messages.

use super::*;

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
