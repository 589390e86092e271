//! Both client protocols against providers of both protocols, end to end: the
//! real `cordon serve` in front of mock providers. Each client protocol ×
//! each provider protocol × {non-stream, stream, tool call, streamed tool
//! call}: the answer parses in the client's protocol, text and tool calls
//! (ids, arguments) survive, usage is recorded with the right tokens and
//! protocols, and ineligible providers of either protocol are never sent
//! anything.

#![expect(clippy::unwrap_used, reason = "test code")]
#![expect(clippy::panic, reason = "test code")]

mod common;

use common::mock::{TOOL_ARGS, TOOL_NAME};
use common::records::usage_rows;
use common::{Behaviour, EU_TERMS, Gateway, GatewayBuilder, MockProvider, US_TERMS};
use serde_json::{Value, json};

const EU_ONLY: &str = "[data]\nprocessing_in = [\"EEA\"]\n";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    OpenAi,
    Anthropic,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::OpenAi => "openai",
            Proto::Anthropic => "anthropic",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Text,
    Stream,
    Tool,
    ToolStream,
}

impl Mode {
    fn streamed(self) -> bool {
        matches!(self, Mode::Stream | Mode::ToolStream)
    }
    fn tool(self) -> bool {
        matches!(self, Mode::Tool | Mode::ToolStream)
    }
}

struct Setup {
    gw: Gateway,
    eligible: MockProvider,
    /// US providers of both protocols, preferred by priority but never
    /// eligible under the EU-only policy.
    ineligible: Vec<MockProvider>,
}

async fn start(provider: Proto) -> Setup {
    let us_openai = MockProvider::start("us-openai").await;
    let us_anthropic = MockProvider::start_anthropic("us-anthropic").await;
    let eligible = match provider {
        Proto::OpenAi => MockProvider::start("eu").await,
        Proto::Anthropic => MockProvider::start_anthropic("eu").await,
    };
    let models = r#""chat-model" = "upstream-chat""#;
    let mut b = GatewayBuilder::new()
        .provider("us-openai", &us_openai, models, US_TERMS)
        .anthropic_provider("us-anthropic", &us_anthropic, models, US_TERMS)
        .provider_extra(
            "auth = { header = \"x-api-key\", env = \"US_ANTHROPIC_KEY\" }\nheaders = { \"anthropic-version\" = \"2023-06-01\" }",
        );
    b = match provider {
        Proto::OpenAi => b
            .provider("eu", &eligible, models, EU_TERMS)
            .provider_extra(r#"auth = { env = "EU_KEY" }"#),
        Proto::Anthropic => b
            .anthropic_provider("eu", &eligible, models, EU_TERMS)
            .provider_extra(
                "auth = { header = \"x-api-key\", env = \"EU_KEY\" }\nheaders = { \"anthropic-version\" = \"2023-06-01\" }",
            ),
    };
    let gw = b
        .env("EU_KEY", "sk-eu-provider-secret")
        .env("US_ANTHROPIC_KEY", "sk-us-provider-secret")
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    Setup {
        gw,
        eligible,
        ineligible: vec![us_openai, us_anthropic],
    }
}

fn request(client: Proto, mode: Mode) -> Value {
    let mut v = match client {
        Proto::OpenAi => json!({
            "model": "chat-model",
            "messages": [{"role": "user", "content": "what is the weather in Paris?"}],
        }),
        Proto::Anthropic => json!({
            "model": "chat-model",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": "what is the weather in Paris?"}],
        }),
    };
    if mode.streamed() {
        v["stream"] = true.into();
        if client == Proto::OpenAi {
            v["stream_options"] = json!({"include_usage": true});
        }
    }
    if mode.tool() {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
        v["tools"] = match client {
            Proto::OpenAi => {
                json!([{"type": "function", "function": {"name": TOOL_NAME, "description": "weather", "parameters": schema}}])
            }
            Proto::Anthropic => {
                json!([{"name": TOOL_NAME, "description": "weather", "input_schema": schema}])
            }
        };
    }
    v
}

async fn send(gw: &Gateway, client: Proto, body: &Value) -> reqwest::Response {
    let http = common::http();
    let req = match client {
        Proto::OpenAi => http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&gw.keys[0]),
        Proto::Anthropic => http
            .post(gw.url("/v1/messages"))
            .header("x-api-key", &gw.keys[0])
            .header("anthropic-version", "2023-06-01"),
    };
    req.header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// The SSE events of a body: (event name, data).
fn sse(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, data)
        })
        .collect()
}

/// What the client got, read in its own protocol.
#[derive(Debug, Default)]
struct Seen {
    text: String,
    /// (id, name, arguments JSON)
    tool: Option<(String, String, Value)>,
    stop: String,
    input_tokens: i64,
    output_tokens: i64,
}

/// A translated answer names the public model; a passed-through one keeps
/// the provider's name for it (passthrough does not rewrite responses).
fn assert_model(m: &Value) {
    assert!(m == "chat-model" || m == "upstream-chat", "{m}");
}

fn read_openai(body: &str, streamed: bool) -> Seen {
    let mut s = Seen::default();
    if !streamed {
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["object"], "chat.completion", "{v}");
        assert_model(&v["model"]);
        let m = &v["choices"][0]["message"];
        assert_eq!(m["role"], "assistant");
        s.text = m["content"].as_str().unwrap_or("").to_owned();
        if let Some(c) = m["tool_calls"].get(0) {
            assert_eq!(c["type"], "function");
            s.tool = Some((
                c["id"].as_str().unwrap().to_owned(),
                c["function"]["name"].as_str().unwrap().to_owned(),
                serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap(),
            ));
        }
        s.stop = v["choices"][0]["finish_reason"]
            .as_str()
            .unwrap()
            .to_owned();
        s.input_tokens = v["usage"]["prompt_tokens"].as_i64().unwrap();
        s.output_tokens = v["usage"]["completion_tokens"].as_i64().unwrap();
        return s;
    }
    let events = sse(body);
    assert_eq!(events.last().unwrap().1, "[DONE]", "{body}");
    let (mut id, mut name, mut args) = (None, None, String::new());
    for (_, data) in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk", "{v}");
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            s.input_tokens = u["prompt_tokens"].as_i64().unwrap();
            s.output_tokens = u["completion_tokens"].as_i64().unwrap();
        }
        let Some(c) = v["choices"].get(0) else {
            continue;
        };
        if let Some(t) = c["delta"]["content"].as_str() {
            s.text.push_str(t);
        }
        for tc in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
            assert_eq!(tc["index"], 0);
            if let Some(i) = tc["id"].as_str() {
                id = Some(i.to_owned());
            }
            if let Some(n) = tc["function"]["name"].as_str() {
                name = Some(n.to_owned());
            }
            if let Some(a) = tc["function"]["arguments"].as_str() {
                args.push_str(a);
            }
        }
        if let Some(f) = c["finish_reason"].as_str() {
            s.stop = f.to_owned();
        }
    }
    if let (Some(id), Some(name)) = (id, name) {
        s.tool = Some((id, name, serde_json::from_str(&args).unwrap()));
    }
    s
}

fn read_anthropic(body: &str, streamed: bool) -> Seen {
    let mut s = Seen::default();
    if !streamed {
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["type"], "message", "{v}");
        assert_eq!(v["role"], "assistant");
        assert_model(&v["model"]);
        for b in v["content"].as_array().unwrap() {
            match b["type"].as_str().unwrap() {
                "text" => s.text.push_str(b["text"].as_str().unwrap()),
                "tool_use" => {
                    s.tool = Some((
                        b["id"].as_str().unwrap().to_owned(),
                        b["name"].as_str().unwrap().to_owned(),
                        b["input"].clone(),
                    ));
                }
                other => panic!("unexpected block {other}"),
            }
        }
        s.stop = v["stop_reason"].as_str().unwrap().to_owned();
        s.input_tokens = v["usage"]["input_tokens"].as_i64().unwrap();
        s.output_tokens = v["usage"]["output_tokens"].as_i64().unwrap();
        return s;
    }
    let events = sse(body);
    assert_eq!(
        events.first().unwrap().0.as_deref(),
        Some("message_start"),
        "{body}"
    );
    assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));
    let (mut tool, mut args) = (None, String::new());
    for (name, data) in &events {
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(name.as_deref(), v["type"].as_str(), "event name = type");
        match v["type"].as_str().unwrap() {
            "message_start" => {
                assert_model(&v["message"]["model"]);
                if let Some(i) = v["message"]["usage"]["input_tokens"].as_i64() {
                    s.input_tokens = i;
                }
            }
            "content_block_start" if v["content_block"]["type"] == "tool_use" => {
                let b = &v["content_block"];
                tool = Some((
                    b["id"].as_str().unwrap().to_owned(),
                    b["name"].as_str().unwrap().to_owned(),
                ));
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str().unwrap() {
                    "text_delta" => s.text.push_str(d["text"].as_str().unwrap()),
                    "input_json_delta" => args.push_str(d["partial_json"].as_str().unwrap()),
                    other => panic!("unexpected delta {other}"),
                }
            }
            "message_delta" => {
                s.stop = v["delta"]["stop_reason"].as_str().unwrap().to_owned();
                let u = &v["usage"];
                s.output_tokens = u["output_tokens"].as_i64().unwrap();
                if let Some(i) = u["input_tokens"].as_i64().filter(|i| *i > 0) {
                    s.input_tokens = i;
                }
            }
            _ => {}
        }
    }
    if let Some((id, name)) = tool {
        s.tool = Some((id, name, serde_json::from_str(&args).unwrap()));
    }
    s
}

async fn run(client: Proto, provider: Proto, mode: Mode) {
    let Setup {
        gw,
        eligible,
        ineligible,
    } = start(provider).await;
    let (prompt_tokens, completion_tokens) = (12, 5);
    eligible.set(match mode {
        Mode::Text => Behaviour::Ok {
            prompt_tokens,
            completion_tokens,
        },
        Mode::Stream => Behaviour::Stream {
            chunks: 3,
            delay: std::time::Duration::ZERO,
            prompt_tokens,
            completion_tokens,
        },
        Mode::Tool | Mode::ToolStream => Behaviour::ToolCall {
            prompt_tokens,
            completion_tokens,
        },
    });
    let resp = send(&gw, client, &request(client, mode)).await;
    let status = resp.status();
    assert_eq!(resp.headers()["x-cordon-provider"], "eu");
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    if mode.streamed() {
        assert!(ct.starts_with("text/event-stream"), "{ct}");
    } else {
        assert!(ct.starts_with("application/json"), "{ct}");
    }
    let seen = match client {
        Proto::OpenAi => read_openai(&body, mode.streamed()),
        Proto::Anthropic => read_anthropic(&body, mode.streamed()),
    };

    // What the provider received, in its own protocol.
    let got = eligible.received();
    assert_eq!(got.len(), 1);
    let up = got[0].json();
    assert_eq!(up["model"], "upstream-chat");
    match provider {
        Proto::OpenAi => {
            assert_eq!(got[0].path, "/v1/chat/completions");
            assert_eq!(
                got[0].header("authorization"),
                Some("Bearer sk-eu-provider-secret")
            );
            assert_eq!(
                up["messages"][0]["content"],
                "what is the weather in Paris?"
            );
            if mode.streamed() {
                assert_eq!(up["stream_options"]["include_usage"], true);
            }
            if mode.tool() {
                assert_eq!(up["tools"][0]["function"]["name"], TOOL_NAME);
            }
        }
        Proto::Anthropic => {
            assert_eq!(got[0].path, "/v1/messages");
            assert_eq!(got[0].header("x-api-key"), Some("sk-eu-provider-secret"));
            assert_eq!(got[0].header("anthropic-version"), Some("2023-06-01"));
            assert_eq!(got[0].header("authorization"), None);
            assert!(up["max_tokens"].as_u64().is_some());
            assert!(up.get("stream_options").is_none(), "{up}");
            if mode.tool() {
                assert_eq!(up["tools"][0]["name"], TOOL_NAME);
                assert!(up["tools"][0]["input_schema"].is_object());
            }
        }
    }
    assert_eq!(up["stream"].as_bool().unwrap_or(false), mode.streamed());
    // The client's key never goes upstream.
    for (_, v) in &got[0].headers {
        assert!(!v.contains(&gw.keys[0]));
    }

    // The answer, in the client's protocol.
    assert_eq!(seen.input_tokens, 12, "{body}");
    assert_eq!(seen.output_tokens, 5, "{body}");
    if mode.tool() {
        let (id, name, args) = seen.tool.clone().unwrap();
        let want_id = match provider {
            Proto::OpenAi => "call_mock1",
            Proto::Anthropic => "toolu_mock1",
        };
        assert_eq!(id, want_id);
        assert_eq!(name, TOOL_NAME);
        assert_eq!(args, json!({"city": "Paris"}));
        let parsed: Value = serde_json::from_str(&TOOL_ARGS.concat()).unwrap();
        assert_eq!(args, parsed);
        assert_eq!(seen.text, "let me check");
        assert_eq!(
            seen.stop,
            match client {
                Proto::OpenAi => "tool_calls",
                Proto::Anthropic => "tool_use",
            }
        );
    } else {
        assert!(seen.tool.is_none());
        let want = if mode.streamed() {
            "eu-0 eu-1 eu-2 "
        } else {
            "hello from eu"
        };
        assert_eq!(seen.text, want);
        assert_eq!(
            seen.stop,
            match client {
                Proto::OpenAi => "stop",
                Proto::Anthropic => "end_turn",
            }
        );
    }
    for m in &ineligible {
        assert_eq!(m.count(), 0, "ineligible provider {} was contacted", m.name);
    }

    let dir = gw.stop().await;
    let rows = usage_rows(&dir.path().join("cordon.db")).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(r.status, 200);
    assert_eq!(r.outcome, "ok");
    assert_eq!(r.provider.as_deref(), Some("eu"));
    assert_eq!(r.upstream_model.as_deref(), Some("upstream-chat"));
    assert_eq!(r.prompt_tokens, Some(12));
    assert_eq!(r.completion_tokens, Some(5));
    assert_eq!(r.streamed, mode.streamed());
    assert_eq!(r.client_api, client.name());
    assert_eq!(r.provider_api.as_deref(), Some(provider.name()));
    assert_eq!(
        r.endpoint,
        match client {
            Proto::OpenAi => "chat.completions",
            Proto::Anthropic => "messages",
        }
    );
    assert_eq!(r.providers_tried, "eu");
}

macro_rules! matrix {
    ($($name:ident: $client:ident -> $provider:ident, $mode:ident;)*) => {$(
        #[tokio::test]
        async fn $name() {
            run(Proto::$client, Proto::$provider, Mode::$mode).await;
        }
    )*};
}

matrix! {
    openai_to_openai_text: OpenAi -> OpenAi, Text;
    openai_to_openai_stream: OpenAi -> OpenAi, Stream;
    openai_to_openai_tool_call: OpenAi -> OpenAi, Tool;
    openai_to_openai_tool_call_stream: OpenAi -> OpenAi, ToolStream;
    openai_to_anthropic_text: OpenAi -> Anthropic, Text;
    openai_to_anthropic_stream: OpenAi -> Anthropic, Stream;
    openai_to_anthropic_tool_call: OpenAi -> Anthropic, Tool;
    openai_to_anthropic_tool_call_stream: OpenAi -> Anthropic, ToolStream;
    anthropic_to_anthropic_text: Anthropic -> Anthropic, Text;
    anthropic_to_anthropic_stream: Anthropic -> Anthropic, Stream;
    anthropic_to_anthropic_tool_call: Anthropic -> Anthropic, Tool;
    anthropic_to_anthropic_tool_call_stream: Anthropic -> Anthropic, ToolStream;
    anthropic_to_openai_text: Anthropic -> OpenAi, Text;
    anthropic_to_openai_stream: Anthropic -> OpenAi, Stream;
    anthropic_to_openai_tool_call: Anthropic -> OpenAi, Tool;
    anthropic_to_openai_tool_call_stream: Anthropic -> OpenAi, ToolStream;
}

/// An Anthropic error body: `{"type":"error","error":{"type","message"}}`.
fn anthropic_error(body: &str) -> (String, String) {
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    (
        v["error"]["type"].as_str().unwrap().to_owned(),
        v["error"]["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn anthropic_clients_get_anthropic_shaped_refusals() {
    let Setup {
        gw,
        eligible,
        ineligible,
    } = start(Proto::OpenAi).await;
    let http = common::http();
    let post = |key: &str, body: String| {
        http.post(gw.url("/v1/messages"))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let ok = request(Proto::Anthropic, Mode::Text);

    // 401
    let r = post(
        "cdn_nobody00_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ok.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        anthropic_error(&r.text().await.unwrap()).0,
        "authentication_error"
    );
    // 400: not JSON
    let r = post(&gw.keys[0], "{not json".into()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        anthropic_error(&r.text().await.unwrap()).0,
        "invalid_request_error"
    );
    // 404: unknown model
    let mut unknown = ok.clone();
    unknown["model"] = "no-such-model".into();
    let r = post(&gw.keys[0], unknown.to_string()).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        anthropic_error(&r.text().await.unwrap()).0,
        "not_found_error"
    );
    // 403: the narrowing header leaves no provider
    let r = http
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &gw.keys[0])
        .header("x-cordon-require", "processing_in=DE")
        .body(ok.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        anthropic_error(&r.text().await.unwrap()).0,
        "permission_error"
    );
    // 400: a member with no OpenAI counterpart, named but its value not echoed
    let mut untranslatable = ok.clone();
    untranslatable["top_k"] = 17_777.into();
    let r = post(&gw.keys[0], untranslatable.to_string()).await.unwrap();
    assert_eq!(r.status(), 400);
    let (ty, msg) = anthropic_error(&r.text().await.unwrap());
    assert_eq!(ty, "invalid_request_error");
    assert!(msg.contains("top_k") && !msg.contains("17777"), "{msg}");
    assert_eq!(eligible.count(), 0, "a refused translation sends nothing");
    // 502: the provider fails (retryable, no other eligible provider)
    eligible.set(Behaviour::Status(500));
    let r = post(&gw.keys[0], ok.to_string()).await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(anthropic_error(&r.text().await.unwrap()).0, "api_error");
    // A provider's own refusal is mapped into Anthropic's shape; its message
    // (which echoes the prompt) is not copied.
    eligible.set(Behaviour::EchoError(422));
    let r = post(&gw.keys[0], ok.to_string()).await.unwrap();
    assert_eq!(r.status(), 422);
    let (ty, msg) = anthropic_error(&r.text().await.unwrap());
    assert_eq!(ty, "invalid_request_error");
    assert!(!msg.contains("weather"), "{msg}");
    for m in &ineligible {
        assert_eq!(m.count(), 0);
    }

    let metrics = http
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "cordon_protocol_requests_total{client_api=\"anthropic\",provider_api=\"openai\"}"
        ),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_anthropic_provider_error_reaches_openai_clients_in_openai_shape() {
    let Setup { gw, eligible, .. } = start(Proto::Anthropic).await;
    eligible.set(Behaviour::EchoError(400));
    let r = send(&gw, Proto::OpenAi, &request(Proto::OpenAi, Mode::Text)).await;
    assert_eq!(r.status(), 400);
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert!(!v.to_string().contains("weather"), "{v}");
    // An OpenAI member with no Anthropic counterpart: 400 naming it.
    let mut req = request(Proto::OpenAi, Mode::Text);
    req["logit_bias"] = json!({"1234": 5});
    let r = send(&gw, Proto::OpenAi, &req).await;
    assert_eq!(r.status(), 400);
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "invalid_request");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("logit_bias")
    );
    assert_eq!(eligible.count(), 1);
    gw.stop().await;
}
