//! The admin API through real HTTP against the real binary: every cell of
//! role × endpoint × tenant, bad input on every endpoint, and what each
//! action leaves in the store and the audit log.

mod common;

use std::process::Command;

use common::admin::{admin_token, audit_entries, call};
use common::{EU_TERMS, Gateway, GatewayBuilder, MockProvider, http};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Two tenants on one provider, with BYOK on.
async fn gateway(mock: &MockProvider) -> Gateway {
    GatewayBuilder::new()
        .provider(
            "eu",
            mock,
            r#""gpt-4o" = "gpt-4o", "mistral-small" = "mistral-small""#,
            EU_TERMS,
        )
        .tenant("acme", "[data]\nprocessing_in = [\"EEA\"]\n")
        .tenant("globex", "[data]\nprocessing_in = [\"EEA\"]\n")
        .key("acme", None)
        .key("globex", None)
        .env("CORDON_MASTER_KEY", MASTER_KEY)
        .start()
        .await
}

/// What each endpoint needs, for tenant `t` (its key id is `key_id`).
fn endpoints(t: &str, key_id: &str) -> Vec<(&'static str, Method, String, Option<Value>)> {
    vec![
        (
            "explain",
            Method::POST,
            "/admin/explain".into(),
            Some(json!({"tenant": t, "model": "gpt-4o"})),
        ),
        (
            "list_keys",
            Method::GET,
            format!("/admin/tenants/{t}/keys"),
            None,
        ),
        (
            "create_key",
            Method::POST,
            format!("/admin/tenants/{t}/keys"),
            Some(json!({"name": "matrix"})),
        ),
        (
            "list_credentials",
            Method::GET,
            format!("/admin/tenants/{t}/credentials"),
            None,
        ),
        (
            "put_credential",
            Method::PUT,
            format!("/admin/tenants/{t}/credentials/eu"),
            Some(json!({"key": "sk-tenant-own"})),
        ),
        (
            "delete_credential",
            Method::DELETE,
            format!("/admin/tenants/{t}/credentials/eu"),
            None,
        ),
        (
            "usage",
            Method::GET,
            format!("/admin/usage?tenant={t}"),
            None,
        ),
        (
            "audit",
            Method::GET,
            format!("/admin/audit?tenant={t}"),
            None,
        ),
        // Last: revoking the tenant's only client key.
        (
            "revoke_key",
            Method::DELETE,
            format!("/admin/keys/{key_id}"),
            None,
        ),
        ("reload", Method::POST, "/admin/reload".into(), None),
    ]
}

/// The expected status, from the SPEC's role table (written out here, not
/// taken from the implementation).
fn expected(role: &str, own_tenant: bool, endpoint: &str) -> StatusCode {
    let reads = ["explain", "list_keys", "list_credentials", "usage", "audit"];
    let writes = [
        "create_key",
        "put_credential",
        "delete_credential",
        "revoke_key",
    ];
    let ok = |e: &str| match e {
        "create_key" => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    match role {
        "none" | "unknown" | "revoked" => StatusCode::UNAUTHORIZED,
        "platform-admin" => ok(endpoint),
        "auditor" => {
            if ["usage", "audit"].contains(&endpoint) {
                ok(endpoint)
            } else {
                StatusCode::FORBIDDEN
            }
        }
        "tenant-admin" | "viewer" => {
            if endpoint == "reload" {
                StatusCode::FORBIDDEN
            } else if !own_tenant {
                StatusCode::NOT_FOUND
            } else if reads.contains(&endpoint)
                || (role == "tenant-admin" && writes.contains(&endpoint))
            {
                ok(endpoint)
            } else {
                StatusCode::FORBIDDEN
            }
        }
        other => unreachable!("{other}"),
    }
}

#[tokio::test]
async fn every_role_endpoint_and_tenant_cell() {
    let mock = MockProvider::start("eu").await;
    let gw = gateway(&mock).await;
    let revoked = admin_token(&gw, "viewer", Some("acme"));
    let revoked_id = common::admin::token_id(&revoked);
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["admin-token", "revoke", "--config"])
        .arg(gw.dir.path().join("cordon.toml"))
        .arg(&revoked_id)
        .output()
        .unwrap();
    assert!(out.status.success());

    let roles: Vec<(&str, Option<String>)> = vec![
        ("none", None),
        (
            "unknown",
            Some("cdnadm_zzzzzzzz_0123456789abcdefghijABCDEFGHIJ0123456789".into()),
        ),
        ("revoked", Some(revoked)),
        ("viewer", Some(admin_token(&gw, "viewer", Some("acme")))),
        ("auditor", Some(admin_token(&gw, "auditor", None))),
        (
            "tenant-admin",
            Some(admin_token(&gw, "tenant-admin", Some("acme"))),
        ),
        (
            "platform-admin",
            Some(admin_token(&gw, "platform-admin", None)),
        ),
    ];
    let mut cells = 0;
    for (role, token) in &roles {
        for (tenant, own) in [("acme", true), ("globex", false)] {
            // A fresh key per (role, tenant), so each revocation is its own.
            let key_id = {
                let (s, v) = call(
                    &gw,
                    roles.last().unwrap().1.as_deref(),
                    Method::POST,
                    &format!("/admin/tenants/{tenant}/keys"),
                    Some(json!({})),
                )
                .await;
                assert_eq!(s, StatusCode::CREATED);
                v["id"].as_str().unwrap().to_owned()
            };
            for (name, method, path, body) in endpoints(tenant, &key_id) {
                let (status, body) = call(&gw, token.as_deref(), method, &path, body).await;
                let want = expected(role, own, name);
                assert_eq!(status, want, "{role} on {tenant}: {name} {path}: {body}");
                if !status.is_success() {
                    let code = body["error"]["code"].as_str().unwrap_or_default();
                    let want_code = match status {
                        StatusCode::UNAUTHORIZED => "unauthorized",
                        StatusCode::FORBIDDEN => "forbidden",
                        _ => "not_found",
                    };
                    assert_eq!(code, want_code, "{role} {name}: {body}");
                }
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 7 * 2 * 10);
    gw.stop().await;
}

#[tokio::test]
async fn another_tenants_name_cannot_be_probed() {
    let mock = MockProvider::start("eu").await;
    let gw = gateway(&mock).await;
    let viewer = admin_token(&gw, "tenant-admin", Some("acme"));
    let (s1, b1) = call(
        &gw,
        Some(&viewer),
        Method::GET,
        "/admin/tenants/globex/keys",
        None,
    )
    .await;
    let (s2, b2) = call(
        &gw,
        Some(&viewer),
        Method::GET,
        "/admin/tenants/nosuch/keys",
        None,
    )
    .await;
    assert_eq!((s1, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    // Same code and field; the message names only what was asked.
    assert_eq!(b1["error"]["code"], b2["error"]["code"]);
    assert_eq!(b1["error"]["field"], b2["error"]["field"]);
    gw.stop().await;
}

/// A bad request: method, path, body, the status and the field it names.
type Case = (
    Method,
    &'static str,
    Option<Value>,
    StatusCode,
    Option<&'static str>,
);

#[tokio::test]
async fn bad_input_is_a_4xx_naming_the_field_and_changes_nothing() {
    let mock = MockProvider::start("eu").await;
    let gw = gateway(&mock).await;
    let admin = admin_token(&gw, "platform-admin", None);
    let store = gw.store().await;
    let keys_before = store.list_keys("acme").await.unwrap().len();
    let audit_before = audit_entries(&gw, &admin).await.len();

    let big = json!({ "name": "x".repeat(2 << 20) });
    let cases: Vec<Case> = vec![
        // explain
        (
            Method::POST,
            "/admin/explain",
            Some(json!({"model": "gpt-4o"})),
            StatusCode::BAD_REQUEST,
            Some("tenant"),
        ),
        (
            Method::POST,
            "/admin/explain",
            Some(json!({"tenant": "acme"})),
            StatusCode::BAD_REQUEST,
            Some("model"),
        ),
        (
            Method::POST,
            "/admin/explain",
            Some(json!({"tenant": 7, "model": "gpt-4o"})),
            StatusCode::BAD_REQUEST,
            Some("tenant"),
        ),
        (
            Method::POST,
            "/admin/explain",
            Some(json!({"tenant": "nosuch", "model": "gpt-4o"})),
            StatusCode::NOT_FOUND,
            Some("tenant"),
        ),
        (
            Method::POST,
            "/admin/explain",
            Some(json!({"tenant": "acme", "model": "gpt-4o", "project": "nosuch"})),
            StatusCode::NOT_FOUND,
            Some("project"),
        ),
        (
            Method::POST,
            "/admin/explain",
            Some(json!({"tenant": "acme", "model": "gpt-4o", "at": "soon"})),
            StatusCode::BAD_REQUEST,
            Some("at"),
        ),
        (
            Method::POST,
            "/admin/explain",
            Some(big.clone()),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        // keys
        (
            Method::POST,
            "/admin/tenants/acme/keys",
            Some(json!({"rpm": "fast"})),
            StatusCode::BAD_REQUEST,
            Some("rpm"),
        ),
        (
            Method::POST,
            "/admin/tenants/acme/keys",
            Some(json!({"rpm": 0})),
            StatusCode::BAD_REQUEST,
            Some("rpm"),
        ),
        (
            Method::POST,
            "/admin/tenants/acme/keys",
            Some(json!({"models": "gpt-4o"})),
            StatusCode::BAD_REQUEST,
            Some("models"),
        ),
        (
            Method::POST,
            "/admin/tenants/acme/keys",
            Some(json!({"models": ["[unclosed"]})),
            StatusCode::BAD_REQUEST,
            Some("models"),
        ),
        (
            Method::POST,
            "/admin/tenants/acme/keys",
            Some(json!({"expires_in": "forever"})),
            StatusCode::BAD_REQUEST,
            Some("expires_in"),
        ),
        (
            Method::POST,
            "/admin/tenants/acme/keys",
            Some(json!({"name": "a\u{0007}b"})),
            StatusCode::BAD_REQUEST,
            Some("name"),
        ),
        (
            Method::POST,
            "/admin/tenants/acme/keys",
            Some(json!({"project": "nosuch"})),
            StatusCode::NOT_FOUND,
            Some("project"),
        ),
        (
            Method::POST,
            "/admin/tenants/nosuch/keys",
            Some(json!({})),
            StatusCode::NOT_FOUND,
            Some("tenant"),
        ),
        (
            Method::POST,
            "/admin/tenants/acme/keys",
            Some(json!({"nmae": "typo"})),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            Method::POST,
            "/admin/tenants/acme/keys",
            Some(big.clone()),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        (
            Method::DELETE,
            "/admin/keys/nosuch00",
            None,
            StatusCode::NOT_FOUND,
            Some("id"),
        ),
        (
            Method::DELETE,
            "/admin/keys/NOT-AN-ID",
            None,
            StatusCode::NOT_FOUND,
            Some("id"),
        ),
        // credentials
        (
            Method::PUT,
            "/admin/tenants/acme/credentials/eu",
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            Some("key"),
        ),
        (
            Method::PUT,
            "/admin/tenants/acme/credentials/eu",
            Some(json!({"key": 42})),
            StatusCode::BAD_REQUEST,
            Some("key"),
        ),
        (
            Method::PUT,
            "/admin/tenants/acme/credentials/nosuch",
            Some(json!({"key": "sk"})),
            StatusCode::NOT_FOUND,
            Some("provider"),
        ),
        (
            Method::PUT,
            "/admin/tenants/nosuch/credentials/eu",
            Some(json!({"key": "sk"})),
            StatusCode::NOT_FOUND,
            Some("tenant"),
        ),
        (
            Method::PUT,
            "/admin/tenants/acme/credentials/eu",
            Some(big),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        (
            Method::DELETE,
            "/admin/tenants/acme/credentials/eu",
            None,
            StatusCode::NOT_FOUND,
            Some("provider"),
        ),
        // usage and audit
        (
            Method::GET,
            "/admin/usage?group_by=colour",
            None,
            StatusCode::BAD_REQUEST,
            Some("group_by"),
        ),
        (
            Method::GET,
            "/admin/usage?since=someday",
            None,
            StatusCode::BAD_REQUEST,
            Some("since"),
        ),
        (
            Method::GET,
            "/admin/usage?tenant=nosuch",
            None,
            StatusCode::NOT_FOUND,
            Some("tenant"),
        ),
        (
            Method::GET,
            "/admin/usage?tenantt=acme",
            None,
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            Method::GET,
            "/admin/audit?limit=0",
            None,
            StatusCode::BAD_REQUEST,
            Some("limit"),
        ),
        // routing
        (
            Method::GET,
            "/admin/reload",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            None,
        ),
        (
            Method::GET,
            "/admin/nothing",
            None,
            StatusCode::NOT_FOUND,
            None,
        ),
    ];
    for (method, path, body, want, field) in cases {
        // A body over the limit is answered (413) and the connection closed
        // before the client has written it all: read the answer over a raw
        // connection, whatever becomes of the rest of the write.
        let (status, v) = match body {
            Some(b) if want == StatusCode::PAYLOAD_TOO_LARGE => {
                oversized(&gw, &admin, &method, path, b.to_string()).await
            }
            body => call(&gw, Some(&admin), method.clone(), path, body).await,
        };
        assert_eq!(status, want, "{method} {path}: {v}");
        assert!(v["error"]["code"].is_string(), "{method} {path}: {v}");
        assert_eq!(v["error"]["field"].as_str(), field, "{method} {path}: {v}");
    }
    assert_eq!(store.list_keys("acme").await.unwrap().len(), keys_before);
    let after = audit_entries(&gw, &admin).await;
    assert!(
        after[audit_before..]
            .iter()
            .all(|e| e["outcome"] != "success"),
        "a refused request was audited as a success: {after:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_key_made_through_the_api_works_at_once_and_revoked_is_refused() {
    let mock = MockProvider::start("eu").await;
    let gw = gateway(&mock).await;
    let admin = admin_token(&gw, "tenant-admin", Some("acme"));
    let (s, v) = call(
        &gw,
        Some(&admin),
        Method::POST,
        "/admin/tenants/acme/keys",
        Some(json!({"name": "api", "models": ["gpt-*"], "rpm": 100})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let key = v["key"].as_str().unwrap().to_owned();
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (v["rpm"].as_u64(), v["models"][0].as_str()),
        (Some(100), Some("gpt-*"))
    );
    let chat = |key: String| {
        let gw_url = gw.url("/v1/chat/completions");
        async move {
            http()
                .post(gw_url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(common::chat("gpt-4o", "hello").to_string())
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(chat(key.clone()).await, StatusCode::OK);
    // Listed without the key or its hash.
    let (_, list) = call(
        &gw,
        Some(&admin),
        Method::GET,
        "/admin/tenants/acme/keys",
        None,
    )
    .await;
    let listed = list.to_string();
    assert!(
        listed.contains(&id) && !listed.contains(&key[13..]),
        "{listed}"
    );
    let (s, v) = call(
        &gw,
        Some(&admin),
        Method::DELETE,
        &format!("/admin/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(
        (s, v["already_revoked"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    assert_eq!(chat(key.clone()).await, StatusCode::UNAUTHORIZED);
    let entries = audit_entries(&gw, &admin_token(&gw, "platform-admin", None)).await;
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"key.create") && actions.contains(&"key.revoke"),
        "{actions:?}"
    );
    // The audit log names the key by id, never by its secret.
    let text = serde_json::to_string(&entries).unwrap();
    assert!(text.contains(&id) && !text.contains(&key[13..]), "{text}");
    gw.stop().await;
}

#[tokio::test]
async fn a_keys_scope_narrows_its_models_and_rate() {
    let mock = MockProvider::start("eu").await;
    let gw = gateway(&mock).await;
    let admin = admin_token(&gw, "tenant-admin", Some("acme"));
    let (s, v) = call(
        &gw,
        Some(&admin),
        Method::POST,
        "/admin/tenants/acme/keys",
        Some(json!({"models": ["gpt-4o*"], "rpm": 2})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let key = v["key"].as_str().unwrap().to_owned();
    let send = |model: &'static str| {
        let (url, key) = (gw.url("/v1/chat/completions"), key.clone());
        async move {
            http()
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(common::chat(model, "hello").to_string())
                .send()
                .await
                .unwrap()
        }
    };
    // Outside the globs: not found, and nothing reaches the provider.
    let before = mock.count();
    let r = send("mistral-small").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(mock.count(), before);
    // Listed models are only those in scope.
    let models: Value = serde_json::from_str(
        &http()
            .get(gw.url("/v1/models"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["gpt-4o"]);
    // Two requests a minute: the third is refused with a retry-after, and
    // the tenant's other keys are not affected.
    let r = send("gpt-4o").await;
    assert_eq!(r.status(), StatusCode::OK);
    let refused = send("gpt-4o").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(refused.text().await.unwrap().contains("this key"));
    let other = http()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.keys[0])
        .header("content-type", "application/json")
        .body(common::chat("mistral-small", "hello").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    gw.stop().await;
}

#[tokio::test]
async fn admin_explain_gives_the_verdicts_of_cordon_explain_json() {
    let mock = MockProvider::start("eu").await;
    let gw = GatewayBuilder::new()
        .provider("eu", &mock, r#""gpt-4o" = "gpt-4o""#, EU_TERMS)
        // Compliant, but its credential is not set: unusable in both.
        .provider("eu-nokey", &mock, r#""gpt-4o" = "gpt-4o""#, EU_TERMS)
        .provider_extra(r#"auth = { env = "CORDON_TEST_UNSET_CREDENTIAL" }"#)
        .provider("us", &mock, r#""gpt-4o" = "gpt-4o""#, common::US_TERMS)
        .tenant("acme", "[data]\nprocessing_in = [\"EEA\"]\n")
        .start()
        .await;
    let admin = admin_token(&gw, "viewer", Some("acme"));
    let (s, api) = call(
        &gw,
        Some(&admin),
        Method::POST,
        "/admin/explain",
        Some(json!({"tenant": "acme", "model": "gpt-4o"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{api}");
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args([
            "explain", "--json", "--tenant", "acme", "--model", "gpt-4o", "--config",
        ])
        .arg(gw.dir.path().join("cordon.toml"))
        .env_remove("CORDON_TEST_UNSET_CREDENTIAL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(api, cli);
    assert_eq!(api["eligible"], json!(["eu"]));
    let nokey = api["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "eu-nokey")
        .unwrap();
    assert_eq!(nokey["failed_rules"][0]["rule"], "credential", "{nokey}");
    // Explain calls are audited.
    let platform = admin_token(&gw, "platform-admin", None);
    let entries = audit_entries(&gw, &platform).await;
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "explain" && e["tenant"] == "acme" && e["target"] == "gpt-4o"),
        "{entries:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_api_reload_is_not_repeated_by_the_file_watcher() {
    let mock = MockProvider::start("eu").await;
    let gw = gateway(&mock).await;
    let admin = admin_token(&gw, "platform-admin", None);
    std::fs::write(
        gw.dir.path().join("policies/acme.toml"),
        "tenant = \"acme\"\ndescription = \"edited\"\n[data]\nprocessing_in = [\"EEA\"]\n",
    )
    .unwrap();
    let (s, v) = call(&gw, Some(&admin), Method::POST, "/admin/reload", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Two and a half watch periods: the watcher has looked at the files.
    tokio::time::sleep(std::time::Duration::from_millis(5_000)).await;
    // (The watcher may have reloaded the edit before the API call; never
    // after it, since the API's reload read the same files.)
    let entries = audit_entries(&gw, &admin).await;
    let by_api = entries
        .iter()
        .position(|e| e["action"] == "reload" && e["actor"].as_str().unwrap().starts_with("token:"))
        .unwrap();
    let after: Vec<&Value> = entries[by_api + 1..]
        .iter()
        .filter(|e| e["action"] == "reload")
        .collect();
    assert!(after.is_empty(), "{after:?}");
    gw.stop().await;
}

#[tokio::test]
async fn an_admin_body_that_stalls_is_a_408_not_a_held_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = MockProvider::start("eu").await;
    let gw = GatewayBuilder::new()
        .provider("eu", &mock, r#""gpt-4o" = "gpt-4o""#, EU_TERMS)
        .tenant("acme", "")
        .server_extra("body_read_timeout_ms = 500")
        .start()
        .await;
    let admin = admin_token(&gw, "platform-admin", None);
    let mut conn = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
    let head = format!(
        "POST /admin/tenants/acme/keys HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {admin}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"name\":"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the connection was held past the deadline");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(gw.store().await.list_keys("acme").await.unwrap().is_empty());
    gw.stop().await;
}

/// Sends `body` with a raw HTTP/1.1 request, writing in one task and reading
/// the answer in another, so an answer sent before the body was all written
/// (and the connection then closed) is still read.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failed step must fail the test"
)]
async fn oversized(
    gw: &Gateway,
    token: &str,
    method: &Method,
    path: &str,
    body: String,
) -> (StatusCode, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let conn = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        // Fails with a broken pipe once the server has answered and closed.
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(body.as_bytes()).await;
    });
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        rd.read_to_end(&mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    writer.abort();
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text[9..12].parse().unwrap();
    let json = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        StatusCode::from_u16(status).unwrap(),
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}
