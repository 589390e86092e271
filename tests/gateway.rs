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

#[tokio::test]
async fn a_provider_behind_a_private_ca_is_reached_only_with_its_ca_file() {
    let (private, ca_pem) = MockProvider::start_tls("private").await;
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let trusted = GatewayBuilder::new()
        .provider("private", &private, r#""gpt-4o" = "gpt-4o""#, EU_TERMS)
        .provider_extra(&format!("ca_file = {:?}", ca_file.display().to_string()))
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    let resp = post(
        &trusted.url("/v1/chat/completions"),
        &trusted.keys[0],
        &chat("gpt-4o", "hi"),
    )
    .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(private.count(), 1);

    // Without the CA file the certificate is not trusted: nothing is sent.
    let untrusted = GatewayBuilder::new()
        .provider("private", &private, r#""gpt-4o" = "gpt-4o""#, EU_TERMS)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    let resp = post(
        &untrusted.url("/v1/chat/completions"),
        &untrusted.keys[0],
        &chat("gpt-4o", "hi"),
    )
    .await;
    assert_eq!(resp.status(), 502);
    assert_eq!(
        private.count(),
        1,
        "no request reached the provider over an untrusted connection"
    );
}

#[tokio::test]
async fn client_headers_are_not_forwarded_and_http2_is_served() {
    let eu = MockProvider::start("eu").await;
    let gw = GatewayBuilder::new()
        .provider("eu-host", &eu, r#""gpt-4o" = "gpt-4o""#, EU_TERMS)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.keys[0])
        .header("content-type", "application/json")
        .header("x-forwarded-for", "10.0.0.1")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("cookie", "session=abc")
        .header("openai-organization", "org-client")
        .body(chat("gpt-4o", "hi").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let got = &eu.received()[0];
    for name in [
        "x-forwarded-for",
        "te",
        "proxy-authorization",
        "cookie",
        "openai-organization",
        "x-api-key",
    ] {
        assert_eq!(got.header(name), None, "{name} was forwarded");
    }
    assert!(
        got.header("authorization").is_none(),
        "no credential configured, none sent"
    );
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_never_the_prompt() {
    let eu = MockProvider::start("eu").await;
    let gw = GatewayBuilder::new()
        .provider("eu-host", &eu, r#""gpt-4o" = "gpt-4o""#, EU_TERMS)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .serve_arg("--log-format")
        .serve_arg("json")
        .start()
        .await;
    let resp = common::http()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.keys[0])
        .header("x-request-id", "req-json-log-1")
        .body(chat("gpt-4o", "json-log-canary-prompt").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "req-json-log-1");
    let mut found = false;
    for _ in 0..50 {
        let logs = gw.logs();
        found = logs
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            && logs.lines().any(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
                v["fields"]["request_id"] == "req-json-log-1" && v["fields"]["tenant"] == "acme"
            });
        if found {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let logs = gw.logs();
    assert!(found, "no JSON log line with the request id:\n{logs}");
    assert!(!logs.contains("json-log-canary-prompt"));
}

#[tokio::test]
async fn the_client_api_speaks_https_when_tls_is_configured() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let eu = MockProvider::start("eu").await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let gw = GatewayBuilder::new()
        .provider("eu-host", &eu, r#""gpt-4o" = "gpt-4o""#, EU_TERMS)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .file("server.pem", cert.cert.pem())
        .file("server.key", cert.signing_key.serialize_pem())
        .gateway_tail("[tls]\ncert = \"server.pem\"\nkey = \"server.key\"")
        .start()
        .await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(vec![
            reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap(),
        ])
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/v1/chat/completions", gw.addr.port());
    let resp = client
        .post(&url)
        .bearer_auth(&gw.keys[0])
        .body(chat("gpt-4o", "hi").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2, "ALPN offers h2");
    // Plain HTTP on the TLS port is not served.
    let plain = common::http()
        .post(format!("http://{}/v1/chat/completions", gw.addr))
        .bearer_auth(&gw.keys[0])
        .body(chat("gpt-4o", "hi").to_string())
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    assert_eq!(eu.count(), 1);
}
