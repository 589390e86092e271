//! Every status of SPEC section 3, failover, credentials, `/v1/models` and
//! passive health, end to end: the real `cordon serve` in front of mock
//! providers. Wherever a provider is not eligible for the tenant, it is
//! started anyway, serving the same model, and must receive nothing
//! (invariant 1).

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use std::time::{Duration, Instant};

use common::{Behaviour, EU_TERMS, Gateway, GatewayBuilder, MockProvider, US_TERMS, chat};
use cordon::auth::key::KeyId;
use serde_json::{Value, json};

const EU_ONLY: &str = "[data]\nprocessing_in = [\"EEA\"]\n";
const GPT: &str = r#""gpt-4o" = "gpt-4o""#;

/// EU data terms, processing in Germany.
const DE_TERMS: &str = r#"
jurisdiction = "DE"
processing = ["DE"]
dpa = "signed"
trains_on_data = false
retention_days = 0
certifications = ["iso27001"]
"#;

/// EU data terms of a provider that trains on customer data.
const TRAINS_TERMS: &str = r#"
jurisdiction = "FR"
processing = ["FR"]
dpa = "signed"
trains_on_data = true
retention_days = 0
"#;

/// A chat-completions request with the key as a Bearer token.
fn chat_req(gw: &Gateway, key: &str) -> reqwest::RequestBuilder {
    common::http()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
}

async fn send_chat(gw: &Gateway, key: &str, model: &str) -> reqwest::Response {
    chat_req(gw, key)
        .body(chat(model, "hello").to_string())
        .send()
        .await
        .unwrap()
}

/// Asserts an OpenAI-shaped refusal with this status and code; returns the
/// headers and the parsed body.
async fn refused(
    resp: reqwest::Response,
    status: u16,
    code: &str,
) -> (reqwest::header::HeaderMap, Value) {
    let headers = resp.headers().clone();
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], code, "body: {text}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {text}"
    );
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    (headers, v)
}

/// Asserts a 200 served by `provider`; returns the parsed body.
async fn served_by(resp: reqwest::Response, provider: &str) -> Value {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "body: {text}");
    assert_eq!(headers["x-cordon-provider"], provider);
    serde_json::from_str(&text).unwrap()
}

/// One eligible EU provider (`eu-host`) and one ineligible US provider
/// (`us-host`), both serving gpt-4o, for an EU-only tenant `acme` with `policy`
/// appended to its `[data]`-less remainder.
async fn eu_and_us(policy: &str) -> (Gateway, MockProvider, MockProvider) {
    eu_and_us_with(policy, |b| b).await
}

async fn eu_and_us_with(
    policy: &str,
    extra: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
) -> (Gateway, MockProvider, MockProvider) {
    let eu = MockProvider::start("eu").await;
    let us = MockProvider::start("us").await;
    let builder = GatewayBuilder::new()
        .provider("us-host", &us, GPT, US_TERMS)
        .provider("eu-host", &eu, GPT, EU_TERMS)
        .tenant("acme", &format!("{EU_ONLY}{policy}"))
        .key("acme", None);
    let gw = extra(builder).start().await;
    (gw, eu, us)
}

// === 400 invalid_request ===

#[tokio::test]
async fn malformed_json_is_400_invalid_request() {
    let (gw, eu, us) = eu_and_us("").await;
    let resp = chat_req(&gw, &gw.keys[0])
        .body(r#"{"model": "gpt-4o", "messages": [{"role": "user""#)
        .send()
        .await
        .unwrap();
    let (_, v) = refused(resp, 400, "invalid_request").await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!((eu.count(), us.count()), (0, 0));
}

#[tokio::test]
async fn body_without_model_is_400_invalid_request() {
    let (gw, eu, us) = eu_and_us("").await;
    let body = json!({"messages": [{"role": "user", "content": "hello"}]});
    let resp = chat_req(&gw, &gw.keys[0])
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let (_, v) = refused(resp, 400, "invalid_request").await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("model"),
        "{v}"
    );
    // An empty model name is no model either.
    let body = json!({"model": "", "messages": [{"role": "user", "content": "hello"}]});
    let resp = chat_req(&gw, &gw.keys[0])
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    refused(resp, 400, "invalid_request").await;
    assert_eq!((eu.count(), us.count()), (0, 0));
}

#[tokio::test]
async fn model_that_is_not_a_string_is_400_invalid_request() {
    let (gw, eu, us) = eu_and_us("").await;
    for model in [
        json!(42),
        json!(["gpt-4o"]),
        json!({"name": "gpt-4o"}),
        json!(null),
    ] {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hello"}]});
        let resp = chat_req(&gw, &gw.keys[0])
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        refused(resp, 400, "invalid_request").await;
    }
    assert_eq!((eu.count(), us.count()), (0, 0));
}

#[tokio::test]
async fn require_header_naming_an_unknown_rule_is_400() {
    let (gw, eu, us) = eu_and_us("").await;
    let resp = chat_req(&gw, &gw.keys[0])
        .header("x-cordon-require", "processing_in=FR, colour=blue")
        .body(chat("gpt-4o", "hello").to_string())
        .send()
        .await
        .unwrap();
    let (_, v) = refused(resp, 400, "invalid_request").await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("colour"),
        "{v}"
    );
    assert_eq!((eu.count(), us.count()), (0, 0));
}

#[tokio::test]
async fn require_header_with_a_bad_value_is_400() {
    let (gw, eu, us) = eu_and_us("").await;
    for header in [
        "max_retention_days=soon",
        "no_training=maybe",
        "processing_in=ATLANTIS",
        "dpa=handshake",
        "exclude_providers=no-such-provider",
        "processing_in",
    ] {
        let resp = chat_req(&gw, &gw.keys[0])
            .header("x-cordon-require", header)
            .body(chat("gpt-4o", "hello").to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "x-cordon-require: {header}");
        refused(resp, 400, "invalid_request").await;
    }
    assert_eq!((eu.count(), us.count()), (0, 0));
}

// === 401 invalid_api_key ===

#[tokio::test]
async fn missing_key_is_401() {
    let (gw, eu, us) = eu_and_us("").await;
    let resp = common::http()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(chat("gpt-4o", "hello").to_string())
        .send()
        .await
        .unwrap();
    let (h, v) = refused(resp, 401, "invalid_api_key").await;
    assert_eq!(v["error"]["type"], "authentication_error");
    assert!(!h.contains_key("x-cordon-provider"));
    assert_eq!((eu.count(), us.count()), (0, 0));
}

#[tokio::test]
async fn malformed_key_is_401() {
    let (gw, eu, us) = eu_and_us("").await;
    let good = gw.keys[0].clone();
    for bad in [
        "sk-not-a-cordon-key".to_owned(),
        "cdn_short_abc".to_owned(),
        format!("{good}!"),
        good.replacen("cdn_", "cdx_", 1),
    ] {
        let resp = send_chat(&gw, &bad, "gpt-4o").await;
        let (_, v) = refused(resp, 401, "invalid_api_key").await;
        assert_eq!(v["error"]["type"], "authentication_error");
        assert!(!v.to_string().contains(&bad), "the key is echoed back");
    }
    assert_eq!((eu.count(), us.count()), (0, 0));
}

#[tokio::test]
async fn unknown_well_formed_key_is_401() {
    let (gw, eu, us) = eu_and_us("").await;
    let unknown = format!("cdn_abcdefgh_{}", "Q7x".repeat(14).get(..40).unwrap());
    assert_eq!(unknown.len(), 13 + 40);
    let resp = send_chat(&gw, &unknown, "gpt-4o").await;
    let (_, v) = refused(resp, 401, "invalid_api_key").await;
    assert_eq!(v["error"]["type"], "authentication_error");
    assert!(!v.to_string().contains(&unknown));

    // A real key id with another key's secret is unknown too.
    let real = &gw.keys[0];
    let forged = format!("{}{}", &real[..13], "Z".repeat(40));
    let resp = send_chat(&gw, &forged, "gpt-4o").await;
    refused(resp, 401, "invalid_api_key").await;
    assert_eq!((eu.count(), us.count()), (0, 0));
}

#[tokio::test]
async fn x_api_key_header_authenticates_like_bearer() {
    let (gw, eu, us) = eu_and_us("").await;
    let key = &gw.keys[0];
    let resp = common::http()
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(chat("gpt-4o", "hello").to_string())
        .send()
        .await
        .unwrap();
    let v = served_by(resp, "eu-host").await;
    assert_eq!(v["choices"][0]["message"]["content"], "hello from eu");
    // A wrong key in x-api-key is refused just the same.
    let resp = common::http()
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", format!("cdn_abcdefgh_{}", "a".repeat(40)))
        .header("content-type", "application/json")
        .body(chat("gpt-4o", "hello").to_string())
        .send()
        .await
        .unwrap();
    refused(resp, 401, "invalid_api_key").await;

    let got = eu.received();
    assert_eq!(got.len(), 1);
    for (k, v) in &got[0].headers {
        assert!(!v.contains(key.as_str()), "client key forwarded in {k}");
    }
    assert_eq!(us.count(), 0);
}

#[tokio::test]
async fn key_revoked_while_running_is_refused_within_5_seconds() {
    let (gw, eu, us) = eu_and_us_with("", |b| b.key("acme", None)).await;
    let (key, other) = (&gw.keys[0], &gw.keys[1]);
    served_by(send_chat(&gw, key, "gpt-4o").await, "eu-host").await;

    let store = gw.store().await;
    let revoked = store
        .revoke_key(
            &KeyId::parse(&gw.key_ids[0]).unwrap(),
            cordon::clock::now_ms(),
        )
        .await
        .unwrap();
    assert!(revoked);
    store.close().await;

    let revoked_at = Instant::now();
    let deadline = revoked_at + Duration::from_secs(5);
    loop {
        let resp = send_chat(&gw, key, "gpt-4o").await;
        if resp.status() == 401 {
            let (_, v) = refused(resp, 401, "invalid_api_key").await;
            assert_eq!(v["error"]["type"], "authentication_error");
            break;
        }
        assert_eq!(
            resp.status(),
            200,
            "before refusal the key is served normally"
        );
        assert!(
            Instant::now() < deadline,
            "a revoked key was still accepted {:?} after revocation",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(revoked_at.elapsed() < Duration::from_secs(5));
    // Stays refused, and the tenant's other key is unaffected.
    refused(send_chat(&gw, key, "gpt-4o").await, 401, "invalid_api_key").await;
    served_by(send_chat(&gw, other, "gpt-4o").await, "eu-host").await;
    assert_eq!(us.count(), 0);
    assert!(eu.count() >= 2);
}

#[tokio::test]
async fn expired_key_is_401_and_an_unexpired_one_works() {
    let now = cordon::clock::now_ms();
    let (gw, eu, us) = eu_and_us_with("", |b| {
        b.key_expiring("acme", None, now - 60_000)
            .key_expiring("acme", None, now + 3_600_000)
    })
    .await;
    // keys[0] never expires, keys[1] expired a minute ago, keys[2] in an hour.
    let (_, v) = refused(
        send_chat(&gw, &gw.keys[1], "gpt-4o").await,
        401,
        "invalid_api_key",
    )
    .await;
    assert_eq!(v["error"]["type"], "authentication_error");
    let resp = common::http()
        .get(gw.url("/v1/models"))
        .bearer_auth(&gw.keys[1])
        .send()
        .await
        .unwrap();
    refused(resp, 401, "invalid_api_key").await;
    served_by(send_chat(&gw, &gw.keys[2], "gpt-4o").await, "eu-host").await;
    assert_eq!(
        eu.count(),
        1,
        "only the unexpired key's request is forwarded"
    );
    assert_eq!(us.count(), 0);
}

// === 403 policy_denied ===

#[tokio::test]
async fn no_eligible_provider_is_403_naming_each_provider_and_its_first_failed_rule() {
    // eu-host passes processing_in but lacks the `hds` certification; us-host
    // fails processing_in first.
    let (gw, eu, us) = eu_and_us("certifications = [\"hds\"]\n").await;
    let (h, v) = refused(
        send_chat(&gw, &gw.keys[0], "gpt-4o").await,
        403,
        "policy_denied",
    )
    .await;
    assert_eq!(v["error"]["type"], "permission_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("us-host: processing_in"), "{msg}");
    assert!(msg.contains("eu-host: certifications"), "{msg}");
    assert!(
        !msg.contains("us-host: certifications"),
        "only the first failed rule: {msg}"
    );
    let policy = h.get("x-cordon-policy").unwrap().to_str().unwrap();
    assert!(!policy.is_empty());
    assert!(
        !h.contains_key("x-cordon-provider"),
        "no provider was chosen"
    );
    assert_eq!((eu.count(), us.count()), (0, 0));
}

#[tokio::test]
async fn require_header_narrows_processing_in() {
    let (gw, eu, us) = eu_and_us("").await;
    let key = &gw.keys[0];
    let with = |h: &'static str| {
        chat_req(&gw, key)
            .header("x-cordon-require", h)
            .body(chat("gpt-4o", "hello").to_string())
            .send()
    };
    // Narrowed to Germany: the only eligible provider processes in France.
    let (h, v) = refused(
        with("processing_in=DE").await.unwrap(),
        403,
        "policy_denied",
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("eu-host: processing_in"),
        "{v}"
    );
    let narrowed_policy = h["x-cordon-policy"].to_str().unwrap().to_owned();
    assert_eq!(eu.count(), 0);

    // Without the header the same request is served.
    let resp = send_chat(&gw, key, "gpt-4o").await;
    let plain_policy = resp.headers()["x-cordon-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    served_by(resp, "eu-host").await;
    assert_eq!(eu.count(), 1);
    assert_ne!(
        narrowed_policy, plain_policy,
        "the request layer is part of the effective policy"
    );

    // A narrowing the provider satisfies is served too.
    served_by(
        with("processing_in=FR, max_retention_days=0")
            .await
            .unwrap(),
        "eu-host",
    )
    .await;
    assert_eq!(eu.count(), 2);
    assert_eq!(us.count(), 0);
}

#[tokio::test]
async fn require_header_cannot_widen_processing_in() {
    let (gw, eu, us) = eu_and_us("").await;
    for header in [
        "processing_in=US",
        "processing_in=US|FR",
        "jurisdiction_in=US",
    ] {
        let resp = chat_req(&gw, &gw.keys[0])
            .header("x-cordon-require", header)
            .body(chat("gpt-4o", "hello").to_string())
            .send()
            .await
            .unwrap();
        if header == "processing_in=US" || header == "jurisdiction_in=US" {
            let (_, v) = refused(resp, 403, "policy_denied").await;
            let msg = v["error"]["message"].as_str().unwrap();
            assert!(msg.contains("us-host: processing_in"), "{header}: {msg}");
        } else {
            // FR|US admits eu-host only: the tenant still excludes the US.
            served_by(resp, "eu-host").await;
        }
    }
    assert_eq!(
        us.count(),
        0,
        "a header must never make the US provider eligible"
    );
    assert_eq!(eu.count(), 1);
}

#[tokio::test]
async fn require_header_cannot_widen_no_training() {
    let trainer = MockProvider::start("trainer").await;
    let us = MockProvider::start("us").await;
    let gw = GatewayBuilder::new()
        .provider("trainer", &trainer, GPT, TRAINS_TERMS)
        .provider("us-host", &us, GPT, US_TERMS)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    for header in [None, Some("no_training=false")] {
        let mut req = chat_req(&gw, &gw.keys[0]).body(chat("gpt-4o", "hello").to_string());
        if let Some(h) = header {
            req = req.header("x-cordon-require", h);
        }
        let (_, v) = refused(req.send().await.unwrap(), 403, "policy_denied").await;
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("trainer: no_training"), "{header:?}: {msg}");
    }
    assert_eq!(
        trainer.count(),
        0,
        "a header must never make a training provider eligible"
    );
    assert_eq!(us.count(), 0);
}

// === 404 model_not_found ===

#[tokio::test]
async fn unknown_model_is_404() {
    let (gw, eu, us) = eu_and_us("").await;
    let (_, v) = refused(
        send_chat(&gw, &gw.keys[0], "gpt-5-imaginary").await,
        404,
        "model_not_found",
    )
    .await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!((eu.count(), us.count()), (0, 0));
}

#[tokio::test]
async fn model_outside_models_allow_is_404() {
    let eu = MockProvider::start("eu").await;
    let us = MockProvider::start("us").await;
    let gw = GatewayBuilder::new()
        .provider(
            "us-host",
            &us,
            r#""gpt-4o" = "gpt-4o", "llama-3" = "llama-3""#,
            US_TERMS,
        )
        .provider(
            "eu-host",
            &eu,
            r#""gpt-4o" = "gpt-4o", "llama-3" = "llama-3""#,
            EU_TERMS,
        )
        .tenant(
            "acme",
            &format!("{EU_ONLY}[models]\nallow = [\"gpt-4o*\"]\n"),
        )
        .key("acme", None)
        .start()
        .await;
    refused(
        send_chat(&gw, &gw.keys[0], "llama-3").await,
        404,
        "model_not_found",
    )
    .await;
    assert_eq!(
        eu.count(),
        0,
        "an eligible provider must not receive a disallowed model"
    );
    served_by(send_chat(&gw, &gw.keys[0], "gpt-4o").await, "eu-host").await;
    assert_eq!(eu.count(), 1);
    assert_eq!(us.count(), 0);
}

// === 413 request_too_large ===

#[tokio::test]
async fn body_over_max_body_bytes_is_413() {
    let (gw, eu, us) = eu_and_us_with("", |b| b.server_extra("max_body_bytes = 1000")).await;
    let big = chat("gpt-4o", &"x".repeat(2_000));
    let resp = chat_req(&gw, &gw.keys[0])
        .body(big.to_string())
        .send()
        .await
        .unwrap();
    let (_, v) = refused(resp, 413, "request_too_large").await;
    assert!(!v.to_string().contains("xxxxxxxx"), "the prompt is echoed");
    assert_eq!(eu.count(), 0);
    // A body under the limit is served.
    served_by(send_chat(&gw, &gw.keys[0], "gpt-4o").await, "eu-host").await;
    assert_eq!(eu.count(), 1);
    assert_eq!(us.count(), 0);
}

#[tokio::test]
async fn max_body_bytes_is_inclusive() {
    let (gw, eu, us) = eu_and_us_with("", |b| b.server_extra("max_body_bytes = 1000")).await;
    let sized = |n: usize| {
        let empty = chat("gpt-4o", "").to_string().len();
        let body = chat("gpt-4o", &"y".repeat(n - empty)).to_string();
        assert_eq!(body.len(), n);
        body
    };
    let resp = chat_req(&gw, &gw.keys[0])
        .body(sized(1000))
        .send()
        .await
        .unwrap();
    served_by(resp, "eu-host").await;
    let resp = chat_req(&gw, &gw.keys[0])
        .body(sized(1001))
        .send()
        .await
        .unwrap();
    refused(resp, 413, "request_too_large").await;
    assert_eq!((eu.count(), us.count()), (1, 0));
}

// === 429 rate_limited ===

#[tokio::test]
async fn third_request_over_requests_per_minute_is_429_with_retry_after() {
    let (gw, eu, us) = eu_and_us("[limits]\nrequests_per_minute = 2\n").await;
    let key = &gw.keys[0];
    served_by(send_chat(&gw, key, "gpt-4o").await, "eu-host").await;
    served_by(send_chat(&gw, key, "gpt-4o").await, "eu-host").await;
    let (h, v) = refused(send_chat(&gw, key, "gpt-4o").await, 429, "rate_limited").await;
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let retry: u64 = h
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(eu.count(), 2, "a rate-limited request reaches no provider");
    assert_eq!(us.count(), 0);
}

// === 502 / 504 ===

#[tokio::test]
async fn every_eligible_provider_failing_is_502() {
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    let us = MockProvider::start("us").await;
    a.set(Behaviour::Status(503));
    b.set(Behaviour::Status(503));
    let gw = GatewayBuilder::new()
        .provider("a", &a, GPT, EU_TERMS)
        .provider("us-host", &us, GPT, US_TERMS)
        .provider("b", &b, GPT, EU_TERMS)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    let (_, v) = refused(
        send_chat(&gw, &gw.keys[0], "gpt-4o").await,
        502,
        "upstream_error",
    )
    .await;
    assert_eq!(v["error"]["type"], "api_error");
    assert_eq!((a.count(), b.count()), (1, 1));
    assert_eq!(
        us.count(),
        0,
        "failover must not reach an ineligible provider"
    );
}

#[tokio::test]
async fn only_eligible_provider_hanging_past_its_timeout_is_504() {
    let eu = MockProvider::start("eu").await;
    let us = MockProvider::start("us").await;
    eu.set(Behaviour::Hang);
    let gw = GatewayBuilder::new()
        .provider("eu-host", &eu, GPT, EU_TERMS)
        .provider_extra("timeout_ms = 300")
        .provider("us-host", &us, GPT, US_TERMS)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    let started = Instant::now();
    let resp = send_chat(&gw, &gw.keys[0], "gpt-4o").await;
    let took = started.elapsed();
    let (_, v) = refused(resp, 504, "upstream_timeout").await;
    assert_eq!(v["error"]["type"], "api_error");
    assert!(
        took >= Duration::from_millis(250),
        "answered after {took:?}, before the timeout"
    );
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    assert_eq!(eu.count(), 1);
    assert_eq!(
        us.count(),
        0,
        "a timeout must not fail over to an ineligible provider"
    );
}

/// A non-streamed answer whose body stalls past the provider's timeout has
/// sent nothing to the client yet (cordon buffers it whole): a retryable
/// timeout before the first byte, so the next eligible provider is tried.
#[tokio::test]
async fn a_body_stalling_past_the_timeout_fails_over_before_the_first_byte() {
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    let us = MockProvider::start("us").await;
    // Headers and a first chunk at once, then nothing for 2 s.
    a.set(Behaviour::Stream {
        chunks: 2,
        delay: Duration::from_secs(2),
        prompt_tokens: 1,
        completion_tokens: 1,
    });
    let gw = GatewayBuilder::new()
        .provider("a", &a, GPT, EU_TERMS)
        .provider_extra("timeout_ms = 300")
        .provider("us-host", &us, GPT, US_TERMS)
        .provider("b", &b, GPT, EU_TERMS)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    let started = Instant::now();
    let resp = send_chat(&gw, &gw.keys[0], "gpt-4o").await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1_900),
        "waited for the stalled body"
    );
    assert_eq!(status, 200, "expected failover to b, got: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hello from b");
    assert_eq!((a.count(), b.count(), us.count()), (1, 1, 0));
}

/// A provider whose credential variable is unset is never sent a request
/// (without its credential); the next eligible provider serves.
#[tokio::test]
async fn a_provider_without_its_credential_is_skipped() {
    let (gw, a, b, us) = {
        let a = MockProvider::start("a").await;
        let b = MockProvider::start("b").await;
        let us = MockProvider::start("us").await;
        let gw = GatewayBuilder::new()
            .provider("a", &a, GPT, EU_TERMS)
            .provider_extra(r#"auth = { env = "CORDON_TEST_UNSET_A_KEY" }"#)
            .provider("us-host", &us, GPT, US_TERMS)
            .provider("b", &b, GPT, EU_TERMS)
            .tenant("acme", EU_ONLY)
            .key("acme", None)
            .start()
            .await;
        (gw, a, b, us)
    };
    served_by(send_chat(&gw, &gw.keys[0], "gpt-4o").await, "b").await;
    assert_eq!((a.count(), b.count(), us.count()), (0, 1, 0));
}

#[tokio::test]
async fn a_timeout_fails_over_to_the_next_eligible_provider() {
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    let us = MockProvider::start("us").await;
    a.set(Behaviour::Hang);
    let gw = GatewayBuilder::new()
        .provider("a", &a, GPT, EU_TERMS)
        .provider_extra("timeout_ms = 300")
        .provider("us-host", &us, GPT, US_TERMS)
        .provider("b", &b, GPT, EU_TERMS)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    served_by(send_chat(&gw, &gw.keys[0], "gpt-4o").await, "b").await;
    assert_eq!((a.count(), b.count(), us.count()), (1, 1, 0));
}

// === failover and routing order ===

/// Eligible `a` (priority 10), ineligible `us-host` (20), eligible `b` (30).
async fn a_us_b(policy: &str) -> (Gateway, MockProvider, MockProvider, MockProvider) {
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    let us = MockProvider::start("us").await;
    let gw = GatewayBuilder::new()
        .provider("a", &a, GPT, EU_TERMS)
        .provider("us-host", &us, GPT, US_TERMS)
        .provider("b", &b, GPT, EU_TERMS)
        .tenant("acme", &format!("{EU_ONLY}{policy}"))
        .key("acme", None)
        .start()
        .await;
    (gw, a, b, us)
}

#[tokio::test]
async fn failover_on_503_goes_to_the_next_eligible_provider() {
    let (gw, a, b, us) = a_us_b("").await;
    a.set(Behaviour::Status(503));
    let v = served_by(send_chat(&gw, &gw.keys[0], "gpt-4o").await, "b").await;
    assert_eq!(v["choices"][0]["message"]["content"], "hello from b");
    assert_eq!(a.count(), 1);
    assert_eq!(b.count(), 1);
    assert_eq!(
        a.received()[0].json()["messages"],
        b.received()[0].json()["messages"]
    );
    assert_eq!(us.count(), 0);
}

#[tokio::test]
async fn failover_also_on_429_and_500() {
    let (gw, a, b, us) = a_us_b("").await;
    a.set(Behaviour::Status(429));
    served_by(send_chat(&gw, &gw.keys[0], "gpt-4o").await, "b").await;
    assert_eq!((a.count(), b.count()), (1, 1));
    a.set(Behaviour::Status(500));
    served_by(send_chat(&gw, &gw.keys[0], "gpt-4o").await, "b").await;
    assert_eq!((a.count(), b.count()), (2, 2));
    assert_eq!(us.count(), 0);
}

#[tokio::test]
async fn failover_on_connection_refused() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let b = MockProvider::start("b").await;
    let us = MockProvider::start("us").await;
    let gw = GatewayBuilder::new()
        .provider_at("dead", &dead_url, GPT, EU_TERMS)
        .provider("us-host", &us, GPT, US_TERMS)
        .provider("b", &b, GPT, EU_TERMS)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    served_by(send_chat(&gw, &gw.keys[0], "gpt-4o").await, "b").await;
    assert_eq!(b.count(), 1);
    assert_eq!(us.count(), 0);
}

#[tokio::test]
async fn without_failover_a_503_is_502_and_the_next_provider_gets_nothing() {
    let (gw, a, b, us) = a_us_b("[routing]\nfailover = false\n").await;
    a.set(Behaviour::Status(503));
    refused(
        send_chat(&gw, &gw.keys[0], "gpt-4o").await,
        502,
        "upstream_error",
    )
    .await;
    assert_eq!(a.count(), 1);
    assert_eq!(b.count(), 0);
    assert_eq!(us.count(), 0);
}

#[tokio::test]
async fn a_non_retryable_400_is_passed_to_the_client_without_failover() {
    let (gw, a, b, us) = a_us_b("").await;
    a.set(Behaviour::Status(400));
    let resp = send_chat(&gw, &gw.keys[0], "gpt-4o").await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-cordon-provider"], "a");
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(
        v["error"]["message"], "the provider (OpenAI protocol) answered 400 server_error",
        "the provider's status and error type, in cordon's words"
    );
    assert_eq!(a.count(), 1);
    assert_eq!(b.count(), 0);
    assert_eq!(us.count(), 0);
}

#[tokio::test]
async fn routing_order_sends_to_the_listed_provider_first() {
    let (gw, a, b, us) = a_us_b("[routing]\norder = [\"us-host\", \"b\", \"a\"]\n").await;
    served_by(send_chat(&gw, &gw.keys[0], "gpt-4o").await, "b").await;
    served_by(send_chat(&gw, &gw.keys[0], "gpt-4o").await, "b").await;
    assert_eq!(b.count(), 2);
    assert_eq!(
        a.count(),
        0,
        "a has the better priority but the tenant's order puts b first"
    );
    assert_eq!(
        us.count(),
        0,
        "naming a provider in routing.order does not make it eligible"
    );
    // And the order still fails over: b down, a serves.
    b.set(Behaviour::Status(503));
    served_by(send_chat(&gw, &gw.keys[0], "gpt-4o").await, "a").await;
    assert_eq!((a.count(), b.count(), us.count()), (1, 3, 0));
}

// === credentials ===

const A_SECRET: &str = "sk-a-provider-secret-0123456789";
const B_SECRET: &str = "b-azure-style-secret-9876543210";
const US_SECRET: &str = "sk-us-provider-secret-5555555555";

async fn with_credentials() -> (Gateway, MockProvider, MockProvider, MockProvider) {
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    let us = MockProvider::start("us").await;
    let gw = GatewayBuilder::new()
        .provider("a", &a, GPT, EU_TERMS)
        .provider_extra(r#"auth = { env = "P_KEY" }"#)
        .provider("us-host", &us, GPT, US_TERMS)
        .provider_extra(r#"auth = { env = "US_KEY" }"#)
        .provider("b", &b, GPT, EU_TERMS)
        .provider_extra(r#"auth = { header = "api-key", env = "B_KEY" }"#)
        .env("P_KEY", A_SECRET)
        .env("B_KEY", B_SECRET)
        .env("US_KEY", US_SECRET)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    (gw, a, b, us)
}

/// The whole response as text (status line aside): every header and the body.
async fn response_text(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let mut all = String::new();
    for (k, v) in resp.headers() {
        all.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    all.push('\n');
    all.push_str(&resp.text().await.unwrap());
    (status, all)
}

#[tokio::test]
async fn credentials_never_cross_in_either_direction() {
    let (gw, a, b, us) = with_credentials().await;
    let key = gw.keys[0].clone();
    let secret_part = key[13..].to_owned();
    let via_x_api_key = || {
        common::http()
            .post(gw.url("/v1/chat/completions"))
            .header("x-api-key", &key)
            .header("content-type", "application/json")
            .body(chat("gpt-4o", "hello").to_string())
            .send()
    };

    let mut responses = Vec::new();
    // Served by a, by Bearer and by x-api-key.
    responses.push(response_text(send_chat(&gw, &key, "gpt-4o").await).await);
    responses.push(response_text(via_x_api_key().await.unwrap()).await);
    // a fails over to b.
    a.set(Behaviour::Status(503));
    responses.push(response_text(send_chat(&gw, &key, "gpt-4o").await).await);
    // Both fail: 502.
    b.set(Behaviour::Status(503));
    responses.push(response_text(via_x_api_key().await.unwrap()).await);
    // a refuses: its 400 is passed on.
    a.set(Behaviour::Status(400));
    responses.push(response_text(send_chat(&gw, &key, "gpt-4o").await).await);
    // Refusals before any provider.
    responses.push(response_text(send_chat(&gw, &key, "no-such-model").await).await);

    let statuses: Vec<u16> = responses.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 200, 502, 400, 404]);
    for (status, text) in &responses {
        for secret in [A_SECRET, B_SECRET, US_SECRET] {
            assert!(
                !text.contains(secret),
                "provider credential returned with {status}:\n{text}"
            );
        }
    }

    assert_eq!(us.count(), 0);
    assert_eq!((a.count(), b.count()), (5, 2));
    for mock in [&a, &b, &us] {
        for r in mock.received() {
            for (k, v) in &r.headers {
                assert!(
                    !v.contains(&secret_part),
                    "client key forwarded to {} in {k}",
                    mock.name
                );
            }
            assert!(
                r.header("x-api-key").is_none(),
                "x-api-key forwarded to {}",
                mock.name
            );
        }
    }
    // Each provider got its own credential, in its own header.
    for r in a.received() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {A_SECRET}").as_str())
        );
        assert!(r.header("api-key").is_none());
    }
    for r in b.received() {
        assert_eq!(
            r.header("api-key"),
            Some(B_SECRET),
            "raw key in the configured header"
        );
        assert!(
            r.header("authorization").is_none(),
            "b must get no Authorization header"
        );
    }
}

#[tokio::test]
async fn secrets_and_prompts_do_not_reach_the_trace_log() {
    const PROMPT: &str = "patient-record-7f3a9c-confidential";
    let (gw, a, b, us) = with_credentials().await;
    let key = gw.keys[0].clone();
    let unknown = "cdn_abcdefgh_0123456789012345678901234567890123456789";
    a.set(Behaviour::Status(503));
    let resp = chat_req(&gw, &key)
        .body(chat("gpt-4o", PROMPT).to_string())
        .send()
        .await
        .unwrap();
    let v = served_by(resp, "b").await;
    assert_eq!(v["choices"][0]["message"]["content"], "hello from b");
    refused(
        send_chat(&gw, unknown, "gpt-4o").await,
        401,
        "invalid_api_key",
    )
    .await;
    assert_eq!((a.count(), b.count(), us.count()), (1, 1, 0));
    assert_eq!(b.received()[0].json()["messages"][0]["content"], PROMPT);
    let logs = gw.logs();
    assert!(logs.contains("request finished"), "trace logging is on");
    for (what, secret) in [
        ("provider a's credential", A_SECRET),
        ("provider b's credential", B_SECRET),
        ("provider us's credential", US_SECRET),
        ("the client key's secret", &key[13..]),
        ("an unknown key's secret", &unknown[13..]),
        ("the prompt", PROMPT),
        ("the completion", "hello from b"),
    ] {
        assert!(!logs.contains(secret), "{what} is in the log");
    }
}

// === GET /v1/models ===

async fn model_ids(gw: &Gateway, key: &str) -> Vec<String> {
    let resp = common::http()
        .get(gw.url("/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(v["object"], "list");
    let mut ids: Vec<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model");
            m["id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn models_lists_exactly_what_the_key_may_reach() {
    let eu = MockProvider::start("eu").await;
    let de = MockProvider::start("de").await;
    let us = MockProvider::start("us").await;
    let gw = GatewayBuilder::new()
        .provider(
            "eu-host",
            &eu,
            r#""gpt-4o" = "gpt-4o", "mistral-large" = "mistral-large", "llama-3" = "llama-3""#,
            EU_TERMS,
        )
        .provider("de-host", &de, GPT, DE_TERMS)
        .provider(
            "us-host",
            &us,
            r#""gpt-4o" = "gpt-4o", "us-only" = "us-only""#,
            US_TERMS,
        )
        .tenant(
            "acme",
            &format!(
                "{EU_ONLY}[models]\nallow = [\"gpt-4o*\", \"mistral-*\", \"us-*\"]\n\
                 [projects.research]\ndata = {{ processing_in = [\"DE\"] }}\n"
            ),
        )
        .key("acme", None)
        .key("acme", Some("research"))
        .start()
        .await;
    // us-only: served only by an ineligible provider; llama-3: not allowed.
    assert_eq!(
        model_ids(&gw, &gw.keys[0]).await,
        ["gpt-4o", "mistral-large"]
    );
    // The project may only use German processing: de-host serves gpt-4o only.
    assert_eq!(model_ids(&gw, &gw.keys[1]).await, ["gpt-4o"]);
    // What is listed is what is served.
    served_by(send_chat(&gw, &gw.keys[1], "gpt-4o").await, "de-host").await;
    refused(
        send_chat(&gw, &gw.keys[1], "mistral-large").await,
        403,
        "policy_denied",
    )
    .await;
    refused(
        send_chat(&gw, &gw.keys[0], "us-only").await,
        403,
        "policy_denied",
    )
    .await;
    refused(
        send_chat(&gw, &gw.keys[0], "llama-3").await,
        404,
        "model_not_found",
    )
    .await;
    // No key, no list.
    let resp = common::http()
        .get(gw.url("/v1/models"))
        .send()
        .await
        .unwrap();
    refused(resp, 401, "invalid_api_key").await;
    assert_eq!((eu.count(), de.count(), us.count()), (0, 1, 0));
}

// === passive health ===

#[tokio::test]
async fn a_provider_failing_5_times_in_a_row_stops_getting_first_attempts() {
    let (gw, a, b, us) = a_us_b("").await;
    a.set(Behaviour::Status(503));
    for i in 1..=5 {
        served_by(send_chat(&gw, &gw.keys[0], "gpt-4o").await, "b").await;
        assert_eq!(
            (a.count(), b.count()),
            (i, i),
            "a is tried first until ejected"
        );
    }
    for i in 6..=10 {
        served_by(send_chat(&gw, &gw.keys[0], "gpt-4o").await, "b").await;
        assert_eq!(a.count(), 5, "an ejected provider gets no first attempts");
        assert_eq!(b.count(), i);
    }
    assert_eq!(us.count(), 0);
}
