//! Two `cordon serve` replicas on one PostgreSQL store, driven through the
//! admin API: a key created on one works on the other at its very first
//! request; revoked on the other, the first refuses it within 5 s; audited
//! actions from both replicas at once make one intact audit chain.

#![expect(clippy::unwrap_used, reason = "test code")]
#![allow(
    clippy::print_stdout,
    reason = "the measured revocation delay is printed for the report"
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::admin::{admin_token, audit_entries, call, token_id};
use common::pg::PgSchema;
use common::{EU_TERMS, Gateway, GatewayBuilder, MockProvider, chat, http};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn replica(mock: &MockProvider, store_url: &str) -> Gateway {
    GatewayBuilder::new()
        .provider("eu-host", mock, r#""gpt-4o" = "gpt-4o-2024""#, EU_TERMS)
        .tenant("acme", "[data]\nprocessing_in = [\"EEA\"]\n")
        .store_url(store_url)
        .start()
        .await
}

async fn chat_status(gw: &Gateway, key: &str) -> u16 {
    http()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(chat("gpt-4o", "hello").to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_key_made_on_one_replica_works_on_the_other_at_once_and_revoked_there_is_refused_within_5_s()
 {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let url = schema.url();
    let mock = MockProvider::start("eu").await;
    let a = replica(&mock, &url).await;
    let b = replica(&mock, &url).await;
    // Made by the CLI against A's configuration, i.e. the shared store, after
    // both replicas started.
    let admin = admin_token(&a, "tenant-admin", Some("acme"));

    let (s, made) = call(
        &a,
        Some(&admin),
        Method::POST,
        "/admin/tenants/acme/keys",
        Some(json!({"name": "fleet"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let (id, key) = (
        made["id"].as_str().unwrap().to_owned(),
        made["key"].as_str().unwrap().to_owned(),
    );
    // No sleep: B has never seen the key and finds it in the store.
    assert_eq!(chat_status(&b, &key).await, 200, "replica B, first request");
    assert_eq!(chat_status(&a, &key).await, 200, "replica A");

    let (s, v) = call(
        &b,
        Some(&admin),
        Method::DELETE,
        &format!("/admin/keys/{id}"),
        None,
    )
    .await;
    let revoked_at = Instant::now();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["already_revoked"], false);
    assert_eq!(chat_status(&b, &key).await, 401, "B refuses it at once");
    let mut accepted_on_a = 0;
    loop {
        match chat_status(&a, &key).await {
            401 => break,
            200 => accepted_on_a += 1,
            other => panic!("replica A answered {other}"),
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "replica A still accepts the key 5 s after its revocation on B"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "revoked on B; refused by A after {:?} ({accepted_on_a} requests accepted meanwhile)",
        revoked_at.elapsed()
    );

    // Audited actions from both replicas at once: one chain.
    let body = json!({"tenant": "acme", "model": "gpt-4o"});
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let gw = if i % 2 == 0 { &a } else { &b };
            call(
                gw,
                Some(&admin),
                Method::POST,
                "/admin/explain",
                Some(body.clone()),
            )
        })
        .collect();
    for (s, v) in futures_util::future::join_all(burst).await {
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let entries = audit_entries(&b, &admin).await;
    let actor = format!("token:{}", token_id(&admin));
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["actor"] == actor.as_str())
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(actions[..2], [("key.create", &*id), ("key.revoke", &*id)]);
    assert_eq!(
        actions.iter().filter(|(a, _)| *a == "explain").count(),
        20,
        "{actions:?}"
    );
    // Numbered without gaps, each linked to its predecessor.
    for pair in entries.windows(2) {
        assert_eq!(pair[1]["seq"], pair[0]["seq"].as_i64().unwrap() + 1);
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    b.stop().await;
    let dir = a.stop().await;

    // The whole chain, as `cordon audit verify` walks it in the store.
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["audit", "verify", "--config"])
        .arg(dir.path().join("cordon.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("chain intact"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("cordon audit verify: {}", stdout.trim());
    drop(schema);
}
