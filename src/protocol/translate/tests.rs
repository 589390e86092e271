use super::*;
use proptest::prelude::*;

fn j(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

fn oa2an(v: &Value) -> Result<Value, TranslateError> {
    openai_to_anthropic_request(v.to_string().as_bytes(), "claude-up")
        .map(|b| serde_json::from_slice(&b).unwrap())
}

fn an2oa(v: &Value) -> Result<Value, TranslateError> {
    anthropic_to_openai_request(v.to_string().as_bytes(), "gpt-up")
        .map(|b| serde_json::from_slice(&b).unwrap())
}

const SECRET: &str = "SECRET-PROMPT-TEXT";

// ===== requests =====

#[test]
fn openai_requests_translate_to_anthropic() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "system, developer, defaults, sampling, stop, user",
            r#"{"model":"m","messages":[
                {"role":"system","content":"be brief"},
                {"role":"developer","content":[{"type":"text","text":"no emoji"}]},
                {"role":"user","content":"hi"}],
               "temperature":0.5,"top_p":0.9,"stop":"END","user":"u-1","stream":true,
               "stream_options":{"include_usage":true},"n":1,"logprobs":false,
               "presence_penalty":0,"response_format":{"type":"text"}}"#,
            r#"{"model":"claude-up","max_tokens":4096,"stream":true,
                "system":[{"type":"text","text":"be brief"},{"type":"text","text":"no emoji"}],
                "messages":[{"role":"user","content":"hi"}],
                "temperature":0.5,"top_p":0.9,"stop_sequences":["END"],
                "metadata":{"user_id":"u-1"}}"#,
        ),
        (
            "single system string, max_completion_tokens wins, stop array",
            r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"q"}],
               "max_tokens":10,"max_completion_tokens":20,"stop":["a","b"]}"#,
            r#"{"model":"claude-up","max_tokens":20,"stream":false,"system":"s",
                "messages":[{"role":"user","content":"q"}],"stop_sequences":["a","b"]}"#,
        ),
        (
            "images: data URL and https URL; detail dropped",
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[
                {"type":"text","text":"what is this"},
                {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0=","detail":"high"}},
                {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"}}]}]}"#,
            r#"{"model":"claude-up","max_tokens":5,"stream":false,"messages":[{"role":"user","content":[
                {"type":"text","text":"what is this"},
                {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0="}},
                {"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}}]}]}"#,
        ),
        (
            "tools, required choice, no parallel calls, tool calls and merged results",
            r#"{"model":"m","max_tokens":50,
               "tools":[{"type":"function","function":{"name":"get_weather","description":"w",
                  "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},
                  {"type":"function","function":{"name":"now"}}],
               "tool_choice":"required","parallel_tool_calls":false,
               "messages":[{"role":"user","content":"weather?"},
                 {"role":"assistant","content":"Checking.","tool_calls":[
                   {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                   {"id":"toolu_2","type":"function","function":{"name":"now","arguments":""}}]},
                 {"role":"tool","tool_call_id":"call_1","content":"sunny"},
                 {"role":"tool","tool_call_id":"toolu_2","name":"now","content":[{"type":"text","text":"noon"}]},
                 {"role":"user","content":"thanks"}]}"#,
            r#"{"model":"claude-up","max_tokens":50,"stream":false,
               "tools":[{"name":"get_weather","description":"w",
                  "input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},
                  {"name":"now","input_schema":{"type":"object","properties":{}}}],
               "tool_choice":{"type":"any","disable_parallel_tool_use":true},
               "messages":[{"role":"user","content":"weather?"},
                 {"role":"assistant","content":[{"type":"text","text":"Checking."},
                   {"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},
                   {"type":"tool_use","id":"toolu_2","name":"now","input":{}}]},
                 {"role":"user","content":[
                   {"type":"tool_result","tool_use_id":"call_1","content":"sunny"},
                   {"type":"tool_result","tool_use_id":"toolu_2","content":[{"type":"text","text":"noon"}]}]},
                 {"role":"user","content":"thanks"}]}"#,
        ),
        (
            "named tool choice; parallel false without tools is moot; none stays none",
            r#"{"model":"m","max_tokens":1,"tool_choice":{"type":"function","function":{"name":"f"}},
               "messages":[{"role":"assistant","content":null,"refusal":"I can't"}]}"#,
            r#"{"model":"claude-up","max_tokens":1,"stream":false,"tool_choice":{"type":"tool","name":"f"},
               "messages":[{"role":"assistant","content":[{"type":"text","text":"I can't"}]}]}"#,
        ),
        (
            "tool_choice none with parallel false",
            r#"{"model":"m","max_tokens":1,"tool_choice":"none","parallel_tool_calls":false,
               "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
               "messages":[{"role":"user","content":"x"}]}"#,
            r#"{"model":"claude-up","max_tokens":1,"stream":false,"tool_choice":{"type":"none"},
               "tools":[{"name":"f","input_schema":{"type":"object"}}],
               "messages":[{"role":"user","content":"x"}]}"#,
        ),
    ];
    for (name, input, want) in cases {
        let got = oa2an(&j(input)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, j(want), "{name}");
    }
}

#[test]
fn untranslatable_openai_fields_are_refused_by_name_without_values() {
    let msg = format!(r#"[{{"role":"user","content":"{SECRET}"}}]"#);
    let cases: Vec<(String, &str)> = vec![
        (format!(r#"{{"model":"m","messages":{msg},"n":2}}"#), "n"),
        (
            format!(r#"{{"model":"m","messages":{msg},"logprobs":true}}"#),
            "logprobs",
        ),
        (
            format!(r#"{{"model":"m","messages":{msg},"top_logprobs":3}}"#),
            "top_logprobs",
        ),
        (
            format!(r#"{{"model":"m","messages":{msg},"frequency_penalty":0.5}}"#),
            "frequency_penalty",
        ),
        (
            format!(r#"{{"model":"m","messages":{msg},"logit_bias":{{"50256":-100}}}}"#),
            "logit_bias",
        ),
        (
            format!(r#"{{"model":"m","messages":{msg},"seed":7}}"#),
            "seed",
        ),
        (
            format!(
                r#"{{"model":"m","messages":{msg},"response_format":{{"type":"json_schema","json_schema":{{"name":"{SECRET}"}}}}}}"#
            ),
            "response_format.type",
        ),
        (
            format!(r#"{{"model":"m","messages":{msg},"temperature":1.5}}"#),
            "temperature",
        ),
        (
            format!(r#"{{"model":"m","messages":{msg},"temperature":3}}"#),
            "temperature",
        ),
        (
            format!(r#"{{"model":"m","messages":{msg},"modalities":["text","audio"]}}"#),
            "modalities",
        ),
        (
            format!(r#"{{"model":"m","messages":{msg},"reasoning_effort":"high"}}"#),
            "reasoning_effort",
        ),
        (
            format!(r#"{{"model":"m","messages":{msg},"functions":[]}}"#),
            "functions",
        ),
        (
            format!(r#"{{"model":"m","messages":{msg},"mystery":1}}"#),
            "mystery",
        ),
        (
            format!(r#"{{"model":"m","messages":{msg},"{SECRET} key":1}}"#),
            "<unnamed>",
        ),
        (r#"{"model":"m"}"#.to_owned(), "messages"),
        (
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","name":"bob","content":"{SECRET}"}}]}}"#
            ),
            "messages[0].name",
        ),
        (
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"input_audio","input_audio":{{"data":"{SECRET}","format":"wav"}}}}]}}]}}"#
            ),
            "messages[0].content[0].input_audio",
        ),
        (
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"data:image/svg+xml;base64,{SECRET}"}}}}]}}]}}"#
            ),
            "messages[0].content[0].image_url.url",
        ),
        (
            format!(
                r#"{{"model":"m","messages":[{{"role":"assistant","tool_calls":[{{"id":"c","type":"function","function":{{"name":"f","arguments":"{SECRET}"}}}}]}}]}}"#
            ),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            format!(
                r#"{{"model":"m","messages":{msg},"tools":[{{"type":"function","function":{{"name":"f","strict":true}}}}]}}"#
            ),
            "tools[0].function.strict",
        ),
        (
            format!(
                r#"{{"model":"m","messages":{msg},"tools":[{{"type":"custom","custom":{{"name":"f"}}}}]}}"#
            ),
            "tools[0].type",
        ),
        (
            format!(
                r#"{{"model":"m","messages":[{{"role":"function","name":"f","content":"{SECRET}"}}]}}"#
            ),
            "messages[0].role",
        ),
        (
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":5}}],"x":"{SECRET}"}}"#),
            "messages[0].content",
        ),
    ];
    for (body, field) in &cases {
        let e = openai_to_anthropic_request(body.as_bytes(), "u").unwrap_err();
        assert_eq!(e.field(), Some(*field), "{body}");
        assert!(e.is_client_error());
        assert!(!e.to_string().contains(SECRET), "{e}");
        assert!(!format!("{e:?}").contains(SECRET), "{e:?}");
    }
    assert_eq!(
        openai_to_anthropic_request(b"[1]", "u").unwrap_err(),
        TranslateError::NotAnObject
    );
}

#[test]
fn anthropic_requests_translate_to_openai() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "system string, stream asks for usage, sampling, stop, metadata",
            r#"{"model":"claude","max_tokens":100,"system":"be brief","stream":true,
               "temperature":0.3,"top_p":0.8,"stop_sequences":["END"],"metadata":{"user_id":"u-1"},
               "messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}"#,
            r#"{"model":"gpt-up","max_tokens":100,"stream":true,"stream_options":{"include_usage":true},
               "temperature":0.3,"top_p":0.8,"stop":["END"],"user":"u-1",
               "messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},
                 {"role":"assistant","content":"hello"}]}"#,
        ),
        (
            "system blocks with cache_control, images",
            r#"{"model":"claude","max_tokens":5,
               "system":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}},{"type":"text","text":"b"}],
               "messages":[{"role":"user","content":[{"type":"text","text":"see"},
                 {"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/4A=="}},
                 {"type":"image","source":{"type":"url","url":"https://example.com/a.png"}}]}]}"#,
            r#"{"model":"gpt-up","max_tokens":5,"stream":false,
               "messages":[{"role":"system","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                 {"role":"user","content":[{"type":"text","text":"see"},
                   {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4A=="}},
                   {"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}"#,
        ),
        (
            "tools, any + no parallel, tool_use and tool_result with trailing text",
            r#"{"model":"claude","max_tokens":9,
               "tools":[{"name":"get_weather","description":"w","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
               "tool_choice":{"type":"any","disable_parallel_tool_use":true},
               "messages":[{"role":"user","content":"weather?"},
                 {"role":"assistant","content":[{"type":"text","text":"Checking."},
                   {"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"city":"Paris"}},
                   {"type":"tool_use","id":"toolu_01B","name":"get_weather","input":{"city":"Rome"}}]},
                 {"role":"user","content":[
                   {"type":"tool_result","tool_use_id":"toolu_01A","content":"sunny"},
                   {"type":"tool_result","tool_use_id":"toolu_01B","content":[{"type":"text","text":"rain"}],"is_error":false},
                   {"type":"text","text":"and tomorrow?"}]}]}"#,
            r#"{"model":"gpt-up","max_tokens":9,"stream":false,
               "tools":[{"type":"function","function":{"name":"get_weather","description":"w",
                 "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
               "tool_choice":"required","parallel_tool_calls":false,
               "messages":[{"role":"user","content":"weather?"},
                 {"role":"assistant","content":"Checking.","tool_calls":[
                   {"id":"toolu_01A","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                   {"id":"toolu_01B","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},
                 {"role":"tool","tool_call_id":"toolu_01A","content":"sunny"},
                 {"role":"tool","tool_call_id":"toolu_01B","content":[{"type":"text","text":"rain"}]},
                 {"role":"user","content":[{"type":"text","text":"and tomorrow?"}]}]}"#,
        ),
        (
            "named tool, none, tool-only assistant turn",
            r#"{"model":"claude","max_tokens":9,"tool_choice":{"type":"tool","name":"f"},
               "messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]}]}"#,
            r#"{"model":"gpt-up","max_tokens":9,"stream":false,
               "tool_choice":{"type":"function","function":{"name":"f"}},
               "messages":[{"role":"assistant","content":null,"tool_calls":[
                 {"id":"t1","type":"function","function":{"name":"f","arguments":"{}"}}]}]}"#,
        ),
    ];
    for (name, input, want) in cases {
        let got = an2oa(&j(input)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, j(want), "{name}");
    }
}

#[test]
fn untranslatable_anthropic_fields_are_refused_by_name_without_values() {
    let msg = format!(r#"[{{"role":"user","content":"{SECRET}"}}]"#);
    let cases: Vec<(String, &str)> = vec![
        (format!(r#"{{"model":"m","messages":{msg}}}"#), "max_tokens"),
        (
            format!(r#"{{"model":"m","max_tokens":1,"messages":{msg},"top_k":5}}"#),
            "top_k",
        ),
        (
            format!(
                r#"{{"model":"m","max_tokens":1,"messages":{msg},"thinking":{{"type":"enabled","budget_tokens":1024}}}}"#
            ),
            "thinking",
        ),
        (
            format!(
                r#"{{"model":"m","max_tokens":1,"messages":{msg},"stop_sequences":["1","2","3","4","5"]}}"#
            ),
            "stop_sequences",
        ),
        (
            format!(r#"{{"model":"m","max_tokens":1,"messages":{msg},"mcp_servers":[]}}"#),
            "mcp_servers",
        ),
        (
            format!(
                r#"{{"model":"m","max_tokens":1,"messages":{msg},"metadata":{{"x":"{SECRET}"}}}}"#
            ),
            "metadata.x",
        ),
        (
            format!(
                r#"{{"model":"m","max_tokens":1,"messages":{msg},"tools":[{{"type":"web_search_20250305","name":"web_search"}}]}}"#
            ),
            "tools[0].type",
        ),
        (
            format!(
                r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"user","content":[{{"type":"document","source":{{"type":"text","media_type":"text/plain","data":"{SECRET}"}}}}]}}]}}"#
            ),
            "messages[0].content[0].type",
        ),
        (
            format!(
                r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t","content":[{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{SECRET}"}}}}]}}]}}]}}"#
            ),
            "messages[0].content[0].content[0].type",
        ),
        (
            format!(
                r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"assistant","content":[{{"type":"thinking","thinking":"{SECRET}","signature":"x"}}]}}]}}"#
            ),
            "messages[0].content[0].type",
        ),
        (
            format!(
                r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"user","content":[{{"type":"image","source":{{"type":"file","file_id":"{SECRET}"}}}}]}}]}}"#
            ),
            "messages[0].content[0].source.type",
        ),
        (
            format!(
                r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"system","content":"{SECRET}"}}]}}"#
            ),
            "messages[0].role",
        ),
    ];
    for (body, field) in &cases {
        let e = anthropic_to_openai_request(body.as_bytes(), "u").unwrap_err();
        assert_eq!(e.field(), Some(*field), "{body}");
        assert!(!e.to_string().contains(SECRET), "{e}");
    }
}

// ===== responses =====

#[test]
fn anthropic_responses_translate_to_openai() {
    let body = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-x",
        "content":[{"type":"text","text":"Let me check. "},{"type":"text","text":"One moment."},
          {"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"city":"Paris"}}],
        "stop_reason":"tool_use","stop_sequence":null,
        "usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":20}}"#;
    let got: Value = serde_json::from_slice(
        &anthropic_to_openai_response_at(body.as_bytes(), "pub", 1700).unwrap(),
    )
    .unwrap();
    assert_eq!(
        got,
        j(
            r#"{"id":"msg_01","object":"chat.completion","created":1700,"model":"pub",
            "choices":[{"index":0,"logprobs":null,"finish_reason":"tool_calls",
              "message":{"role":"assistant","content":"Let me check. One moment.","refusal":null,
                "tool_calls":[{"id":"toolu_01","type":"function",
                  "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}}],
            "usage":{"prompt_tokens":130,"completion_tokens":5,"total_tokens":135,
              "prompt_tokens_details":{"cached_tokens":100}}}"#
        )
    );
    let stops = [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ];
    for (stop, finish) in stops {
        let body = format!(
            r#"{{"id":"m","content":[{{"type":"text","text":"x"}}],"stop_reason":"{stop}","usage":{{"input_tokens":1,"output_tokens":1}}}}"#
        );
        let got: Value =
            serde_json::from_slice(&anthropic_to_openai_response(body.as_bytes(), "p").unwrap())
                .unwrap();
        assert_eq!(got["choices"][0]["finish_reason"], finish, "{stop}");
        assert_eq!(got["created"], 0);
    }
    assert_eq!(
        anthropic_to_openai_response(b"not json", "p").unwrap_err(),
        TranslateError::BadResponse
    );
}

#[test]
fn openai_responses_translate_to_anthropic() {
    let body = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-x",
        "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":"Checking.",
          "tool_calls":[{"id":"call_9","type":"function","function":{"name":"f","arguments":"{\"a\":[1,2]}"}},
                        {"id":"call_10","type":"function","function":{"name":"g","arguments":""}}]}}],
        "usage":{"prompt_tokens":130,"completion_tokens":5,"total_tokens":135,"prompt_tokens_details":{"cached_tokens":100}}}"#;
    let got: Value =
        serde_json::from_slice(&openai_to_anthropic_response(body.as_bytes(), "pub").unwrap())
            .unwrap();
    assert_eq!(
        got,
        j(
            r#"{"id":"chatcmpl-1","type":"message","role":"assistant","model":"pub",
            "content":[{"type":"text","text":"Checking."},
              {"type":"tool_use","id":"call_9","name":"f","input":{"a":[1,2]}},
              {"type":"tool_use","id":"call_10","name":"g","input":{}}],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":30,"output_tokens":5,"cache_read_input_tokens":100}}"#
        )
    );
    let stops = [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
    ];
    for (finish, stop) in stops {
        let body = format!(
            r#"{{"id":"c","choices":[{{"message":{{"content":"x"}},"finish_reason":"{finish}"}}]}}"#
        );
        let got: Value =
            serde_json::from_slice(&openai_to_anthropic_response(body.as_bytes(), "p").unwrap())
                .unwrap();
        assert_eq!(got["stop_reason"], stop, "{finish}");
    }
    let refusal = r#"{"id":"c","choices":[{"message":{"content":null,"refusal":"no"},"finish_reason":"stop"}]}"#;
    let got: Value =
        serde_json::from_slice(&openai_to_anthropic_response(refusal.as_bytes(), "p").unwrap())
            .unwrap();
    assert_eq!(got["stop_reason"], "refusal");
    assert_eq!(got["content"], j(r#"[{"type":"text","text":"no"}]"#));
    for bad in [
        &b"{}"[..],
        br#"{"choices":[]}"#,
        b"[",
        br#"{"choices":[{"message":{"tool_calls":[{"function":{"arguments":"{"}}]}}]}"#,
    ] {
        assert_eq!(
            openai_to_anthropic_response(bad, "p").unwrap_err(),
            TranslateError::BadResponse
        );
    }
}

// ===== errors =====

#[test]
fn provider_errors_map_to_the_client_protocol_without_the_message() {
    let an =
        |t: &str| format!(r#"{{"type":"error","error":{{"type":"{t}","message":"{SECRET}"}}}}"#);
    let cases: Vec<(u16, String, u16, &str, &str)> = vec![
        (
            400,
            an("invalid_request_error"),
            400,
            "invalid_request_error",
            "invalid_request_error",
        ),
        (
            401,
            an("authentication_error"),
            502,
            "api_error",
            "authentication_error",
        ),
        (
            403,
            an("permission_error"),
            502,
            "api_error",
            "permission_error",
        ),
        (
            404,
            an("not_found_error"),
            404,
            "invalid_request_error",
            "not_found_error",
        ),
        (
            413,
            an("request_too_large"),
            413,
            "invalid_request_error",
            "request_too_large",
        ),
        (
            429,
            an("rate_limit_error"),
            429,
            "rate_limit_error",
            "rate_limit_error",
        ),
        (500, an("api_error"), 500, "api_error", "api_error"),
        (
            529,
            an("overloaded_error"),
            503,
            "api_error",
            "overloaded_error",
        ),
        (500, "garbage".to_owned(), 500, "api_error", "unknown"),
        (
            400,
            an("bad type with spaces"),
            400,
            "invalid_request_error",
            "unknown",
        ),
    ];
    for (status, body, want, ty, code) in cases {
        let (s, b) = map_provider_error(
            Wire::Anthropic,
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        );
        assert_eq!(s.as_u16(), want, "{body}");
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["type"], ty, "{body}");
        assert_eq!(v["error"]["code"], code, "{body}");
        assert!(v["error"]["message"].is_string());
        assert!(!String::from_utf8_lossy(&b).contains(SECRET));
    }

    let oa = |t: &str, c: &str| {
        format!(r#"{{"error":{{"type":"{t}","code":{c},"message":"{SECRET}","param":null}}}}"#)
    };
    let cases: Vec<(u16, String, u16, &str)> = vec![
        (
            400,
            oa("invalid_request_error", "null"),
            400,
            "invalid_request_error",
        ),
        (
            401,
            oa("invalid_request_error", r#""invalid_api_key""#),
            502,
            "api_error",
        ),
        (
            404,
            oa("invalid_request_error", r#""model_not_found""#),
            404,
            "not_found_error",
        ),
        (
            429,
            oa("insufficient_quota", r#""insufficient_quota""#),
            429,
            "rate_limit_error",
        ),
        (500, oa("server_error", "null"), 500, "api_error"),
        (503, oa("server_error", "null"), 529, "overloaded_error"),
        (504, "".to_owned(), 504, "timeout_error"),
        (200, "{}".to_owned(), 502, "api_error"),
    ];
    for (status, body, want, ty) in cases {
        let (s, b) = map_provider_error(
            Wire::OpenAi,
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        );
        assert_eq!(s.as_u16(), want, "{body}");
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], ty, "{body}");
        assert!(!String::from_utf8_lossy(&b).contains(SECRET));
    }
}

// ===== streams =====

/// Splits `name\tjson` lines into Anthropic SSE events.
fn anthropic_events(lines: &[&str]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| {
            let (n, d) = l.split_once('\t').unwrap();
            (n.to_owned(), d.to_owned())
        })
        .collect()
}

fn run_an2oa(events: &[(String, String)], include_usage: bool) -> (Vec<Value>, bool, TokenUsage) {
    let mut s = AnthropicToOpenAiStream::new("pub", include_usage).with_created(42);
    let mut out = Vec::new();
    for (n, d) in events {
        // Through the SSE framing, as the relay will do it.
        let raw = format!("event: {n}\ndata: {d}\n\n");
        let (name, data) = sse_fields(raw.as_bytes());
        s.push(name, &data, &mut out);
    }
    s.finish(&mut out);
    let mut done = false;
    let mut chunks = Vec::new();
    for e in &out {
        let text = std::str::from_utf8(e).unwrap();
        assert!(
            text.starts_with("data: ") && text.ends_with("\n\n"),
            "{text}"
        );
        let payload = &text[6..text.len() - 2];
        if payload == "[DONE]" {
            assert!(!done);
            done = true;
        } else {
            assert!(!done, "chunk after [DONE]");
            chunks.push(serde_json::from_str(payload).unwrap());
        }
    }
    (chunks, done, s.usage())
}

const AN_TEXT: &[&str] = &[
    "message_start\t{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}",
    "content_block_start\t{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
    "ping\t{\"type\":\"ping\"}",
    "content_block_delta\t{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}",
    "content_block_delta\t{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\", world\"}}",
    "content_block_stop\t{\"type\":\"content_block_stop\",\"index\":0}",
    "message_delta\t{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}",
    "message_stop\t{\"type\":\"message_stop\"}",
];

const AN_TOOL: &[&str] = &[
    "message_start\t{\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":400,\"output_tokens\":1,\"cache_read_input_tokens\":50}}}",
    "content_block_start\t{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
    "content_block_delta\t{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking.\"}}",
    "content_block_stop\t{\"type\":\"content_block_stop\",\"index\":0}",
    "content_block_start\t{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x\",\"name\":\"get_weather\",\"input\":{}}}",
    "content_block_delta\t{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}",
    "content_block_delta\t{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Par\"}}",
    "content_block_delta\t{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"is\\\", \\\"unit\\\"\"}}",
    "content_block_delta\t{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\": \\\"c\\\"}\"}}",
    "content_block_stop\t{\"type\":\"content_block_stop\",\"index\":1}",
    "content_block_start\t{\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_02\",\"name\":\"now\",\"input\":{}}}",
    "content_block_delta\t{\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}",
    "content_block_stop\t{\"type\":\"content_block_stop\",\"index\":2}",
    "message_delta\t{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}",
    "message_stop\t{\"type\":\"message_stop\"}",
];

/// What an OpenAI client would accumulate from chunks: text, tool calls
/// (id, name, arguments) by index, finish reason.
fn accumulate_openai(chunks: &[Value]) -> (String, Vec<(String, String, String)>, Option<String>) {
    let mut text = String::new();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = None;
    for c in chunks {
        let Some(choice) = c["choices"].get(0) else {
            continue;
        };
        assert_eq!(c["object"], "chat.completion.chunk");
        let d = &choice["delta"];
        if let Some(t) = d["content"].as_str() {
            text.push_str(t);
        }
        for tc in d["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                calls.push((
                    tc["id"].as_str().unwrap().to_owned(),
                    tc["function"]["name"].as_str().unwrap().to_owned(),
                    String::new(),
                ));
            }
            calls[i]
                .2
                .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
    }
    (text, calls, finish)
}

#[test]
fn anthropic_text_stream_becomes_openai_chunks() {
    let (chunks, done, usage) = run_an2oa(&anthropic_events(AN_TEXT), true);
    assert!(done);
    assert_eq!(chunks.len(), 5, "{chunks:?}");
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        j(r#"{"role":"assistant","content":""}"#)
    );
    assert_eq!(chunks[0]["id"], "msg_1");
    assert_eq!(chunks[0]["model"], "pub");
    assert_eq!(chunks[0]["created"], 42);
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hello");
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[4]["choices"], j("[]"));
    assert_eq!(
        chunks[4]["usage"],
        j(r#"{"prompt_tokens":25,"completion_tokens":15,"total_tokens":40}"#)
    );
    let (text, calls, finish) = accumulate_openai(&chunks);
    assert_eq!(
        (text.as_str(), calls.len(), finish.as_deref()),
        ("Hello, world", 0, Some("stop"))
    );
    assert_eq!(usage.input, Some(25));
    assert_eq!(usage.output, Some(15));

    // Without include_usage: no usage chunk, usage still known for billing.
    let (chunks, done, usage) = run_an2oa(&anthropic_events(AN_TEXT), false);
    assert!(done);
    assert_eq!(chunks.len(), 4);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(usage.output, Some(15));
}

#[test]
fn anthropic_tool_stream_reassembles_to_openai_tool_calls() {
    let (chunks, done, usage) = run_an2oa(&anthropic_events(AN_TOOL), true);
    assert!(done);
    let (text, calls, finish) = accumulate_openai(&chunks);
    assert_eq!(text, "Checking.");
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].0.as_str(), calls[0].1.as_str()),
        ("toolu_01T1x", "get_weather")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].2).unwrap(),
        j(r#"{"city":"Paris","unit":"c"}"#)
    );
    assert_eq!(
        (
            calls[1].0.as_str(),
            calls[1].1.as_str(),
            calls[1].2.as_str()
        ),
        ("toolu_02", "now", "{}")
    );
    // The first tool chunk carries id, type and name; later ones only arguments.
    let first = chunks
        .iter()
        .find(|c| c["choices"][0]["delta"]["tool_calls"].is_array())
        .unwrap();
    assert_eq!(
        first["choices"][0]["delta"]["tool_calls"][0],
        j(
            r#"{"index":0,"id":"toolu_01T1x","type":"function","function":{"name":"get_weather","arguments":""}}"#
        )
    );
    assert_eq!(usage.input, Some(450));
    assert_eq!(usage.cache_read, Some(50));
    assert_eq!(usage.output, Some(89));
    assert_eq!(
        chunks.last().unwrap()["usage"]["prompt_tokens_details"]["cached_tokens"],
        50
    );
}

#[test]
fn anthropic_stream_errors_and_truncation() {
    let mut lines = AN_TEXT[..4].to_vec();
    lines.push("error\t{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"SECRET-PROMPT-TEXT\"}}");
    let mut s = AnthropicToOpenAiStream::new("pub", true);
    let mut out = Vec::new();
    for (n, d) in anthropic_events(&lines) {
        s.push(Some(&n), d.as_bytes(), &mut out);
    }
    let last = std::str::from_utf8(out.last().unwrap()).unwrap();
    assert!(last.contains("\"error\"") && last.contains("overloaded_error"));
    assert!(!last.contains(SECRET));
    assert!(s.is_done());

    // Cut before message_delta: no [DONE] is invented.
    let (chunks, done, _) = run_an2oa(&anthropic_events(&AN_TEXT[..5]), true);
    assert!(!done);
    assert_eq!(chunks.len(), 3);
    // Cut after message_delta: the stream is closed properly.
    let (_, done, _) = run_an2oa(&anthropic_events(&AN_TEXT[..7]), true);
    assert!(done);
    // Garbage and unknown events are skipped.
    let mut s = AnthropicToOpenAiStream::new("pub", true);
    let mut out = Vec::new();
    s.push(None, b"{not json", &mut out);
    s.push(
        Some("future"),
        br#"{"type":"future_event","x":1}"#,
        &mut out,
    );
    assert!(out.is_empty());
}

const OA_TOOL: &[&str] = &[
    r#"{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[{"index":0,"delta":{"content":"Let me "},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[{"index":0,"delta":{"content":"check."},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\": \"Paris\"}"}}]},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_def","type":"function","function":{"name":"now","arguments":"{}"}}]},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
    r#"{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt","choices":[],"usage":{"prompt_tokens":80,"completion_tokens":20,"total_tokens":100,"prompt_tokens_details":{"cached_tokens":30}}}"#,
    "[DONE]",
];

fn run_oa2an(datas: &[&str]) -> (Vec<(String, Value)>, OpenAiToAnthropicStream) {
    let mut s = OpenAiToAnthropicStream::new("pub");
    let mut out = Vec::new();
    for d in datas {
        let raw = format!("data: {d}\n\n");
        let (name, data) = sse_fields(raw.as_bytes());
        assert_eq!(name, None);
        s.push(&data, &mut out);
    }
    s.finish(&mut out);
    let events = out
        .iter()
        .map(|e| {
            let (name, data) = sse_fields(e);
            let v: Value = serde_json::from_slice(&data).unwrap();
            let name = name.unwrap().to_owned();
            assert_eq!(v["type"], name.as_str());
            (name, v)
        })
        .collect();
    (events, s)
}

/// What an Anthropic client accumulates: content blocks by index, checking
/// that every delta targets a started block of the right kind.
fn accumulate_anthropic(events: &[(String, Value)]) -> (Value, Option<String>, Value) {
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    let mut stop = None;
    let mut usage = Value::Null;
    assert_eq!(events.first().unwrap().0, "message_start");
    assert_eq!(events.last().unwrap().0, "message_stop");
    for (name, v) in events {
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(v["index"].as_u64().unwrap() as usize, blocks.len());
                blocks.push(v["content_block"].clone());
                partial.push(String::new());
            }
            "content_block_delta" => {
                let i = v["index"].as_u64().unwrap() as usize;
                match v["delta"]["type"].as_str().unwrap() {
                    "text_delta" => {
                        let t = format!(
                            "{}{}",
                            blocks[i]["text"].as_str().unwrap(),
                            v["delta"]["text"].as_str().unwrap()
                        );
                        blocks[i]["text"] = t.into();
                    }
                    "input_json_delta" => {
                        assert_eq!(blocks[i]["type"], "tool_use");
                        partial[i].push_str(v["delta"]["partial_json"].as_str().unwrap());
                    }
                    other => panic!("{other}"),
                }
            }
            "content_block_stop" => {
                let i = v["index"].as_u64().unwrap() as usize;
                if blocks[i]["type"] == "tool_use" && !partial[i].is_empty() {
                    blocks[i]["input"] = serde_json::from_str(&partial[i]).unwrap();
                }
            }
            "message_delta" => {
                stop = v["delta"]["stop_reason"].as_str().map(str::to_owned);
                usage = v["usage"].clone();
            }
            _ => {}
        }
    }
    (Value::Array(blocks), stop, usage)
}

#[test]
fn openai_tool_stream_becomes_anthropic_events() {
    let (events, s) = run_oa2an(OA_TOOL);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(events[0].1["message"]["id"], "chatcmpl-7");
    assert_eq!(events[0].1["message"]["model"], "pub");
    let (blocks, stop, usage) = accumulate_anthropic(&events);
    assert_eq!(
        blocks,
        j(r#"[{"type":"text","text":"Let me check."},
              {"type":"tool_use","id":"call_abc","name":"get_weather","input":{"city":"Paris"}},
              {"type":"tool_use","id":"call_def","name":"now","input":{}}]"#)
    );
    assert_eq!(stop.as_deref(), Some("tool_use"));
    assert_eq!(
        usage,
        j(r#"{"input_tokens":50,"output_tokens":20,"cache_read_input_tokens":30}"#)
    );
    assert!(s.is_done());
    assert_eq!(
        s.usage(),
        TokenUsage {
            input: Some(80),
            output: Some(20),
            cache_read: Some(30),
            cache_write: None
        }
    );
}

#[test]
fn openai_stream_finish_reasons_errors_and_truncation() {
    let text = |f: &str| {
        vec![
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"}}]}"#
                .to_owned(),
            format!(r#"{{"id":"c","choices":[{{"index":0,"delta":{{}},"finish_reason":"{f}"}}]}}"#),
            "[DONE]".to_owned(),
        ]
    };
    for (f, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
    ] {
        let d = text(f);
        let refs: Vec<&str> = d.iter().map(String::as_str).collect();
        let (events, _) = run_oa2an(&refs);
        let (blocks, got, _) = accumulate_anthropic(&events);
        assert_eq!(got.as_deref(), Some(stop));
        assert_eq!(blocks, j(r#"[{"type":"text","text":"hi"}]"#));
    }
    // No [DONE] after the finish reason: closed anyway.
    let d = text("stop");
    let (events, s) = run_oa2an(&[d[0].as_str(), d[1].as_str()]);
    assert!(s.is_done());
    assert_eq!(events.last().unwrap().0, "message_stop");
    // Cut mid-message: no message_stop is invented.
    let (events, s) = run_oa2an(&[d[0].as_str()]);
    assert!(!s.is_done());
    assert!(events.iter().all(|(n, _)| n != "message_stop"));
    // A mid-stream error becomes an Anthropic error event, without its message.
    let mut s = OpenAiToAnthropicStream::new("pub");
    let mut out = Vec::new();
    s.push(d[0].as_bytes(), &mut out);
    s.push(
        format!(r#"{{"error":{{"type":"server_error","message":"{SECRET}"}}}}"#).as_bytes(),
        &mut out,
    );
    let last = std::str::from_utf8(out.last().unwrap()).unwrap();
    assert!(last.starts_with("event: error\n") && last.contains("server_error"));
    assert!(!last.contains(SECRET));
    assert!(s.is_done());
}

#[test]
fn sse_fields_reads_names_and_multiline_data() {
    let (n, d) = sse_fields(b"event: message_stop\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n");
    assert_eq!(n, Some("message_stop"));
    assert_eq!(&*d, b"{\"a\":\n1}");
    assert!(
        matches!(d, std::borrow::Cow::Owned(_)),
        "joined lines are owned"
    );
    let (n, d) = sse_fields(b": comment\ndata:[DONE]\n\n");
    assert_eq!((n, &*d), (None, &b"[DONE]"[..]));
    assert!(
        matches!(d, std::borrow::Cow::Borrowed(_)),
        "one line is borrowed"
    );
}

/// Anthropic stream → OpenAI chunks → Anthropic stream keeps the content.
#[test]
fn streams_round_trip() {
    let (chunks, _, _) = run_an2oa(&anthropic_events(AN_TOOL), true);
    let datas: Vec<String> = chunks
        .iter()
        .map(Value::to_string)
        .chain(["[DONE]".to_owned()])
        .collect();
    let refs: Vec<&str> = datas.iter().map(String::as_str).collect();
    let (events, s) = run_oa2an(&refs);
    let (blocks, stop, _) = accumulate_anthropic(&events);
    assert_eq!(
        blocks,
        j(r#"[{"type":"text","text":"Checking."},
              {"type":"tool_use","id":"toolu_01T1x","name":"get_weather","input":{"city":"Paris","unit":"c"}},
              {"type":"tool_use","id":"toolu_02","name":"now","input":{}}]"#)
    );
    assert_eq!(stop.as_deref(), Some("tool_use"));
    assert_eq!(s.usage().input, Some(450));
    assert_eq!(s.usage().output, Some(89));
}

// ===== round trips =====

const CONVERSATION: &str = r#"{"model":"gpt-up","max_tokens":300,"stream":false,
    "temperature":0.7,"stop":["@@@","END"],"user":"alice",
    "tools":[{"type":"function","function":{"name":"search","description":"web search",
      "parameters":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}}}],
    "tool_choice":"auto","parallel_tool_calls":false,
    "messages":[
      {"role":"system","content":"You are helpful."},
      {"role":"user","content":[{"type":"text","text":"Find"},
        {"type":"image_url","image_url":{"url":"data:image/webp;base64,UklGRg=="}}]},
      {"role":"assistant","content":null,"tool_calls":[
        {"id":"call_A","type":"function","function":{"name":"search","arguments":"{\"q\":\"rust\"}"}},
        {"id":"toolu_B","type":"function","function":{"name":"search","arguments":"{\"q\":\"serde\"}"}}]},
      {"role":"tool","tool_call_id":"call_A","content":"result A"},
      {"role":"tool","tool_call_id":"toolu_B","content":"result B"},
      {"role":"assistant","content":"Here you go."},
      {"role":"user","content":"thanks"}]}"#;

#[test]
fn openai_to_anthropic_to_openai_keeps_meaning() {
    let original = j(CONVERSATION);
    let there = oa2an(&original).unwrap();
    let back = an2oa(&there).unwrap();
    assert_eq!(back, original);
}

#[test]
fn anthropic_to_openai_to_anthropic_keeps_meaning() {
    let original = j(
        r#"{"model":"claude-up","max_tokens":300,"stream":true,"system":"Be terse.",
        "stop_sequences":["@@@"],"metadata":{"user_id":"bob"},"top_p":0.5,
        "tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}],
        "tool_choice":{"type":"tool","name":"f","disable_parallel_tool_use":true},
        "messages":[{"role":"user","content":"go"},
          {"role":"assistant","content":[{"type":"text","text":"ok"},
            {"type":"tool_use","id":"toolu_X","name":"f","input":{"n":[1,{"k":null}]}}]},
          {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_X","content":"done"}]},
          {"role":"assistant","content":"fin"}]}"#,
    );
    let there = an2oa(&original).unwrap();
    assert_eq!(there["stream_options"]["include_usage"], true);
    let back = oa2an(&there).unwrap();
    assert_eq!(back, original);
}

#[test]
fn responses_round_trip() {
    let an = r#"{"id":"msg_9","type":"message","role":"assistant","model":"pub",
        "content":[{"type":"text","text":"Sure."},{"type":"tool_use","id":"toolu_9","name":"f","input":{"a":1}}],
        "stop_reason":"tool_use","stop_sequence":null,
        "usage":{"input_tokens":3,"output_tokens":4,"cache_read_input_tokens":5}}"#;
    let oa = anthropic_to_openai_response(an.as_bytes(), "pub").unwrap();
    let back: Value =
        serde_json::from_slice(&openai_to_anthropic_response(&oa, "pub").unwrap()).unwrap();
    assert_eq!(back, j(an));
}

// ===== generated conversations =====

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn tool_id() -> impl Strategy<Value = String> {
    "(call_|toolu_)[a-zA-Z0-9]{1,12}"
}

fn args() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        "[a-z]{1,6}",
        prop_oneof![
            text().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
        ],
        0..4,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// A turn as OpenAI messages: user text, user parts, assistant text, or an
/// assistant tool-call turn followed by its results.
fn turn() -> impl Strategy<Value = Vec<Value>> {
    prop_oneof![
        text().prop_map(|t| vec![json!({"role": "user", "content": t})]),
        prop::collection::vec(text(), 1..3).prop_map(|ts| {
            let parts: Vec<Value> = ts
                .iter()
                .map(|t| json!({"type": "text", "text": t}))
                .collect();
            vec![json!({"role": "user", "content": parts})]
        }),
        text().prop_map(|t| vec![json!({"role": "assistant", "content": t})]),
        (
            prop::option::of("\\PC{1,12}"),
            prop::collection::vec((tool_id(), "[a-z_]{1,8}", args(), text()), 1..4),
        )
            .prop_map(|(say, calls)| {
                let tool_calls: Vec<Value> = calls
                    .iter()
                    .map(|(id, name, a, _)| {
                        json!({"id": id, "type": "function",
                            "function": {"name": name, "arguments": a.to_string()}})
                    })
                    .collect();
                let mut out =
                    vec![json!({"role": "assistant", "content": say, "tool_calls": tool_calls})];
                for (id, _, _, result) in &calls {
                    out.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
                }
                out
            }),
    ]
}

fn conversation() -> impl Strategy<Value = Value> {
    (
        prop::option::of(text()),
        prop::collection::vec(turn(), 1..6),
        prop::collection::vec("\\PC{1,5}", 0..4),
        prop::option::of((0u32..=20).prop_map(|n| f64::from(n) / 20.0)),
        1u64..100_000,
        any::<bool>(),
    )
        .prop_map(|(system, turns, stop, temperature, max, stream)| {
            let mut messages = Vec::new();
            if let Some(s) = system {
                messages.push(json!({"role": "system", "content": s}));
            }
            messages.extend(turns.into_iter().flatten());
            let mut req = json!({"model": "gpt-up", "messages": messages, "max_tokens": max, "stream": stream});
            if !stop.is_empty() {
                req["stop"] = json!(stop);
            }
            if let Some(t) = temperature {
                req["temperature"] = json!(t);
            }
            if stream {
                req["stream_options"] = json!({"include_usage": true});
            }
            req
        })
}

proptest! {
    // No regression files: the generators are small and the seed is printed.
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_conversations_round_trip(original in conversation()) {
        let there = oa2an(&original).unwrap();
        // The Anthropic side alternates roles around tool results as required.
        for m in there["messages"].as_array().unwrap() {
            if let Some(blocks) = m["content"].as_array() {
                let results = blocks.iter().filter(|b| b["type"] == "tool_result").count();
                prop_assert!(results == 0 || (m["role"] == "user" && results == blocks.len()));
            }
        }
        let back = an2oa(&there).unwrap();
        prop_assert_eq!(back, original);
    }

    #[test]
    fn generated_tool_streams_reassemble(calls in prop::collection::vec((tool_id(), args(), 1usize..6), 1..4)) {
        // An OpenAI stream cutting each argument text into pieces.
        let mut datas = Vec::new();
        for (i, (id, a, pieces)) in calls.iter().enumerate() {
            datas.push(json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": i, "id": id, "type": "function", "function": {"name": "f", "arguments": ""}}]}}]}).to_string());
            let s: Vec<char> = a.to_string().chars().collect();
            let step = s.len().div_ceil(*pieces).max(1);
            for part in s.chunks(step) {
                let part: String = part.iter().collect();
                datas.push(json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
                    {"index": i, "function": {"arguments": part}}]}}]}).to_string());
            }
        }
        datas.push(r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#.to_owned());
        datas.push("[DONE]".to_owned());
        let refs: Vec<&str> = datas.iter().map(String::as_str).collect();
        let (events, _) = run_oa2an(&refs);
        let (blocks, stop, _) = accumulate_anthropic(&events);
        prop_assert_eq!(stop.as_deref(), Some("tool_use"));
        let want: Vec<Value> = calls.iter().map(|(id, a, _)| json!({"type": "tool_use", "id": id, "name": "f", "input": a})).collect();
        prop_assert_eq!(&blocks, &Value::Array(want));

        // And back to OpenAI chunks.
        let mut s = AnthropicToOpenAiStream::new("pub", false);
        let mut out = Vec::new();
        for (n, v) in &events {
            s.push(Some(n), v.to_string().as_bytes(), &mut out);
        }
        let chunks: Vec<Value> = out.iter().filter_map(|e| {
            let t = std::str::from_utf8(e).ok()?;
            serde_json::from_str(t.strip_prefix("data: ")?.trim_end()).ok()
        }).collect();
        let (_, got, finish) = accumulate_openai(&chunks);
        prop_assert_eq!(finish.as_deref(), Some("tool_calls"));
        prop_assert_eq!(got.len(), calls.len());
        for ((id, a, _), (gid, _, gargs)) in calls.iter().zip(&got) {
            prop_assert_eq!(id, gid);
            prop_assert_eq!(&serde_json::from_str::<Value>(gargs).unwrap(), a);
        }
    }
}

/// The per-token events are written from typed structs, not `Value`s; the
/// bytes must be what the `Value` path printed (sorted keys, `null`s kept),
/// including for text that needs escaping.
#[test]
fn typed_stream_events_print_the_same_bytes_as_values() {
    let text = "say \"hi\"\n\u{1F600} \\ done";
    let mut s = AnthropicToOpenAiStream::new("pub", false).with_created(42);
    let mut out = Vec::new();
    let start = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}}"#;
    s.push(Some("message_start"), start.as_bytes(), &mut out);
    let delta = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
    s.push(
        Some("content_block_delta"),
        delta.to_string().as_bytes(),
        &mut out,
    );
    let stop = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}"#;
    s.push(Some("message_delta"), stop.as_bytes(), &mut out);
    let chunk = |delta: Value, finish: Value| {
        let v = json!({"id": "msg_1", "object": "chat.completion.chunk", "created": 42,
            "model": "pub", "choices": [{"index": 0, "delta": delta, "logprobs": null,
            "finish_reason": finish}]});
        format!("data: {v}\n\n")
    };
    let printed: Vec<&str> = out
        .iter()
        .map(|b| std::str::from_utf8(b).unwrap())
        .collect();
    assert_eq!(
        printed,
        [
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({ "content": text }), Value::Null),
            chunk(json!({}), json!("stop")),
        ]
    );

    let mut s = OpenAiToAnthropicStream::new("pub");
    let mut out = Vec::new();
    let data = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
    s.push(data.to_string().as_bytes(), &mut out);
    let expected = json!({"type": "content_block_delta", "index": 0,
        "delta": {"type": "text_delta", "text": text}});
    assert_eq!(
        std::str::from_utf8(out.last().unwrap()).unwrap(),
        format!("event: content_block_delta\ndata: {expected}\n\n")
    );
}

#[test]
fn a_provider_error_reaches_a_client_of_either_protocol_without_its_free_text() {
    const KEY: &str = "sk_proj_operator_key_1234567890";
    let openai = format!(
        r#"{{"error":{{"type":"{KEY}","code":"{KEY}","message":"Incorrect API key provided: {KEY}"}}}}"#
    );
    let anthropic =
        format!(r#"{{"type":"error","error":{{"type":"{KEY}","message":"bad key {KEY}"}}}}"#);
    for (from, body) in [(Wire::OpenAi, &openai), (Wire::Anthropic, &anthropic)] {
        for to in [Wire::OpenAi, Wire::Anthropic] {
            for status in [400u16, 401, 403, 404, 429, 500, 503, 529] {
                let (s, b) = scrub_provider_error(
                    from,
                    to,
                    StatusCode::from_u16(status).unwrap(),
                    body.as_bytes(),
                );
                let text = String::from_utf8_lossy(&b);
                assert!(!text.contains(KEY), "{from:?} -> {to:?} {status}: {text}");
                assert!(
                    text.contains(&status.to_string()),
                    "names the provider's status: {text}"
                );
                assert!(text.contains("unknown"), "an undocumented type: {text}");
                if matches!(status, 401 | 403) {
                    assert_eq!(s, StatusCode::BAD_GATEWAY, "cordon's credential failed");
                }
            }
        }
    }
}

#[test]
fn token_counts_past_i64_max_saturate_instead_of_overflowing() {
    // Found by the `translate` fuzz target: a provider reporting counts near
    // i64::MAX made the sums overflow (a panic in debug builds, a negative
    // total in release builds).
    let body = format!(
        r#"{{"type":"message","content":[],"usage":{{"input_tokens":{},"output_tokens":1,"cache_read_input_tokens":5}}}}"#,
        i64::MAX
    );
    let got: Value =
        serde_json::from_slice(&anthropic_to_openai_response(body.as_bytes(), "m").unwrap())
            .unwrap();
    assert_eq!(got["usage"]["prompt_tokens"], i64::MAX);
    assert_eq!(got["usage"]["total_tokens"], i64::MAX);

    let body = format!(
        r#"{{"choices":[{{"message":{{"content":"x"}}}}],"usage":{{"prompt_tokens":{},"completion_tokens":1,"prompt_tokens_details":{{"cached_tokens":1}}}}}}"#,
        i64::MIN
    );
    let got: Value =
        serde_json::from_slice(&openai_to_anthropic_response(body.as_bytes(), "m").unwrap())
            .unwrap();
    assert_eq!(got["usage"]["input_tokens"], 0);

    let mut s = AnthropicToOpenAiStream::new("m", true);
    let mut out = Vec::new();
    let start = format!(
        r#"{{"type":"message_start","message":{{"id":"x","usage":{{"input_tokens":{},"cache_creation_input_tokens":{}}}}}}}"#,
        i64::MAX,
        i64::MAX
    );
    s.push(Some("message_start"), start.as_bytes(), &mut out);
    s.push(None, br#"{"type":"message_stop"}"#, &mut out);
    assert_eq!(s.usage().input, Some(i64::MAX));
    let usage = String::from_utf8(out.concat()).unwrap();
    assert!(
        usage.contains(&format!("\"total_tokens\":{}", i64::MAX)),
        "{usage}"
    );
}
