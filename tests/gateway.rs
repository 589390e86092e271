//! The gateway end to end: the real `cordon serve` in front of mock providers.

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use common::{EU_TERMS, GatewayBuilder, MockProvider, US_TERMS, chat};

const EU_ONLY: &str = "[data]\nprocessing_in = [\"EEA\"]\n";

async fn post(url: &str, key: &str, body: &serde_json::Value) -> reqwest::Response {
    common::http()
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn chat_goes_to_the_eligible_provider_with_its_model_name_and_credential() {
    let eu = MockProvider::start("eu").await;
    let us = MockProvider::start("us").await;
    let gw = GatewayBuilder::new()
        .provider("us-host", &us, r#""gpt-4o" = "gpt-4o-us""#, US_TERMS)
        .provider(
            "eu-host",
            &eu,
            r#""gpt-4o" = "gpt-4o-2024-08-06""#,
            EU_TERMS,
        )
        .provider_extra(r#"auth = { env = "EU_HOST_KEY" }"#)
        .env("EU_HOST_KEY", "sk-provider-secret-123")
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    let key = &gw.keys[0];

    let resp = post(
        &gw.url("/v1/chat/completions"),
        key,
        &chat("gpt-4o", "hello"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-cordon-provider"], "eu-host");
    assert_eq!(resp.headers()["x-cordon-policy"].len(), 12);
    assert!(resp.headers().contains_key("x-request-id"));
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("sk-provider-secret-123"),
        "provider credential returned"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hello from eu");

    assert_eq!(
        us.count(),
        0,
        "the US provider is not eligible and must receive nothing"
    );
    let got = eu.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/v1/chat/completions");
    assert_eq!(got[0].json()["model"], "gpt-4o-2024-08-06");
    assert_eq!(got[0].json()["messages"][0]["content"], "hello");
    assert_eq!(
        got[0].header("authorization"),
        Some("Bearer sk-provider-secret-123")
    );
    for (k, v) in &got[0].headers {
        assert!(!v.contains(key.as_str()), "client key forwarded in {k}");
    }
}
