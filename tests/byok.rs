//! BYOK end to end, through the real binary, real HTTP and mock providers:
//! a tenant's own credential reaches its provider (in the provider's auth
//! header) and nothing else — no response, log, audit entry or file the
//! gateway writes; a row moved to another tenant does not open and fails
//! closed; rotating the master key keeps every credential usable; without a
//! master key nothing is stored; a credential set through one replica
//! reaches another within 5 s; a key no header could carry is refused when
//! it is PUT.

#![expect(
    clippy::unwrap_used,
    reason = "test scaffolding: a failed setup step must fail the test"
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::admin::{admin_token, audit_entries, call, call_raw, header_lines};
use common::pg::PgSchema;
use common::{Behaviour, EU_TERMS, Gateway, GatewayBuilder, MockProvider, chat, files_under, http};
use cordon::credentials::{self, KeyOrigin, MasterKey};
use cordon::store::{CredentialRow, Store};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;

const MASTER: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const MASTER_NEW: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f";
const MASTER_WRONG: &str = "5555555555555555555555555555555555555555555555555555555555555555";
const MASTER_OTHER: &str = "abababababababababababababababababababababababababababababababab";

/// The operator's credentials, from the environment.
const OPERATOR_EU: &str = "sk-operator-eu-3f9c0d7e";
const OPERATOR_AZ: &str = "operator-az-8b21e44a";

const TENANT: &str = "[data]\nprocessing_in = [\"EEA\"]\n";

/// Two providers on two mocks: `eu` (the default `Authorization: Bearer`)
/// serves `gpt-4o`; `az` (`api-key: …`) serves `gpt-4o` after `eu` and is
/// alone in serving `gpt-4o-mini`. Two tenants, one client key each
/// (`keys[0]` acme, `keys[1]` globex).
fn builder(eu: &MockProvider, az: &MockProvider) -> GatewayBuilder {
    GatewayBuilder::new()
        .provider("eu", eu, r#""gpt-4o" = "gpt-4o""#, EU_TERMS)
        .provider_extra(r#"auth = { env = "CORDON_TEST_EU_KEY" }"#)
        .provider(
            "az",
            az,
            r#""gpt-4o" = "gpt-4o", "gpt-4o-mini" = "gpt-4o-mini""#,
            EU_TERMS,
        )
        .provider_extra(r#"auth = { header = "api-key", env = "CORDON_TEST_AZ_KEY" }"#)
        .tenant("acme", TENANT)
        .tenant("globex", TENANT)
        .key("acme", None)
        .key("globex", None)
        .env("CORDON_TEST_EU_KEY", OPERATOR_EU)
        .env("CORDON_TEST_AZ_KEY", OPERATOR_AZ)
}

async fn mocks() -> (MockProvider, MockProvider) {
    (
        MockProvider::start("eu").await,
        MockProvider::start("az").await,
    )
}

/// A tenant credential no test shares: a fixed prefix and 128 random bits.
fn tenant_key(what: &str) -> String {
    format!("sk-{what}-{:032x}", rand::random::<u128>())
}

/// One chat request as `key` with request id `id`: its status and the
/// whole response as text (status line, headers, body).
async fn chat_as(gw: &Gateway, key: &str, model: &str, id: &str) -> (StatusCode, String) {
    chat_body(gw, key, id, chat(model, "hello")).await
}

async fn chat_body(gw: &Gateway, key: &str, id: &str, body: Value) -> (StatusCode, String) {
    let resp = http()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-request-id", id)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let head = format!("{status}\n{}", header_lines(resp.headers()));
    let body = resp.text().await.unwrap();
    (status, format!("{head}\n{body}"))
}

/// The credential headers each mock received for request `id`, as
/// `<mock> <header>: <value>` (both credential headers, whichever is set).
fn seen(mocks: &[&MockProvider], id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in mocks {
        for r in m.received() {
            if r.header("x-request-id") != Some(id) {
                continue;
            }
            for h in ["authorization", "api-key"] {
                if let Some(v) = r.header(h) {
                    out.push(format!("{} {h}: {v}", m.name));
                }
            }
        }
    }
    out
}

fn bearer_at_eu(key: &str) -> Vec<String> {
    vec![format!("eu authorization: Bearer {key}")]
}

fn api_key_at_az(key: &str) -> Vec<String> {
    vec![format!("az api-key: {key}")]
}

async fn put(gw: &Gateway, token: &str, tenant: &str, provider: &str, key: &str) -> String {
    let (s, headers, body) = call_raw(
        gw,
        Some(token),
        Method::PUT,
        &format!("/admin/tenants/{tenant}/credentials/{provider}"),
        Some(json!({ "key": key })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!({"tenant": tenant, "provider": provider, "stored": true})
    );
    format!("{s}\n{headers}\n{body}")
}

async fn delete(gw: &Gateway, token: &str, tenant: &str, provider: &str) -> String {
    let (s, headers, body) = call_raw(
        gw,
        Some(token),
        Method::DELETE,
        &format!("/admin/tenants/{tenant}/credentials/{provider}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    format!("{s}\n{headers}\n{body}")
}

fn has_entry(entries: &[Value], action: &str, tenant: &str, outcome: &str) -> bool {
    entries
        .iter()
        .any(|e| e["action"] == action && e["tenant"] == tenant && e["outcome"] == outcome)
}

// === looking for a secret in any form ===

/// Standard base64 (`+/`) or URL-safe (`-_`), with padding.
fn base64(bytes: &[u8], url_safe: bool) -> String {
    let alphabet: &[u8; 64] = if url_safe {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every form in which `secret` would betray itself: as is, hex (lower and
/// upper case), and base64 (standard and URL-safe). Base64 depends on where
/// the secret starts in the encoded text, so each of the three alignments
/// is covered by the encoding of the secret's tail from there, less the
/// last (padding-dependent) group.
fn forms(secret: &str) -> Vec<(String, Vec<u8>)> {
    let b = secret.as_bytes();
    let mut out = vec![
        ("raw".to_owned(), b.to_vec()),
        ("hex".to_owned(), hex::encode(b).into_bytes()),
        ("HEX".to_owned(), hex::encode_upper(b).into_bytes()),
    ];
    for url_safe in [false, true] {
        let name = if url_safe { "base64url" } else { "base64" };
        out.push((name.to_owned(), base64(b, url_safe).into_bytes()));
        for skip in 0..3 {
            let enc = base64(&b[skip..], url_safe);
            out.push((
                format!("{name} from byte {skip}"),
                enc.as_bytes()[..enc.len() - 4].to_vec(),
            ));
        }
    }
    out
}

/// Where (which form of which secret) `haystack` holds a secret, if it does.
fn leak(haystack: &[u8], secrets: &[&str]) -> Option<String> {
    for s in secrets {
        for (form, needle) in forms(s) {
            if haystack
                .windows(needle.len())
                .any(|w| w == needle.as_slice())
            {
                return Some(format!("{form} of {s}"));
            }
        }
    }
    None
}

fn assert_no_leak(what: &str, haystack: &[u8], secrets: &[&str]) {
    let found = leak(haystack, secrets);
    assert!(
        found.is_none(),
        "{what} holds the {}",
        found.unwrap_or_default()
    );
}

/// Every file under the gateway's directory (the SQLite database and its
/// `-wal` and `-shm` files, the log, the usage spool…), none holding any
/// form of `secrets`. Returns the names of the files read.
fn assert_no_file_leaks(dir: &Path, secrets: &[&str]) -> Vec<String> {
    let mut names = Vec::new();
    for f in files_under(dir) {
        let bytes = std::fs::read(&f).unwrap();
        assert_no_leak(&f.display().to_string(), &bytes, secrets);
        names.push(f.file_name().unwrap().to_string_lossy().into_owned());
    }
    names
}

#[test]
fn the_leak_finder_finds_every_form() {
    let secret = "sk-canary-0123456789";
    let b = secret.as_bytes();
    for prefix in ["", "x", "xy"] {
        let mut padded = prefix.as_bytes().to_vec();
        padded.extend_from_slice(b);
        padded.extend_from_slice(b"tail");
        for url_safe in [false, true] {
            let text = format!("..{}..", base64(&padded, url_safe));
            assert!(leak(text.as_bytes(), &[secret]).is_some(), "{text}");
        }
    }
    for text in [
        format!("a{secret}b"),
        hex::encode(b),
        hex::encode_upper(b),
        format!("<{}>", base64(b, false)),
    ] {
        assert!(leak(text.as_bytes(), &[secret]).is_some(), "{text}");
    }
    assert_eq!(base64(b"\xfb\xff", false), "+/8=");
    assert_eq!(base64(b"\xfb\xff", true), "-_8=");
    assert_eq!(leak(b"nothing to see here", &[secret]), None);
}

// === 1. the credential reaches the provider, for its tenant only ===

#[tokio::test]
async fn a_tenants_own_key_reaches_its_provider_and_no_other_tenants() {
    let (eu, az) = mocks().await;
    let gw = builder(&eu, &az)
        .env("CORDON_MASTER_KEY", MASTER)
        .start()
        .await;
    let admin = admin_token(&gw, "tenant-admin", Some("acme"));
    let (acme, globex) = (gw.keys[0].clone(), gw.keys[1].clone());
    let (acme_eu, acme_az) = (tenant_key("acme-eu"), tenant_key("acme-az"));

    // Before: everyone's requests carry the operator's credentials.
    chat_as(&gw, &acme, "gpt-4o", "before-eu").await;
    chat_as(&gw, &acme, "gpt-4o-mini", "before-az").await;
    assert_eq!(seen(&[&eu, &az], "before-eu"), bearer_at_eu(OPERATOR_EU));
    assert_eq!(seen(&[&eu, &az], "before-az"), api_key_at_az(OPERATOR_AZ));

    put(&gw, &admin, "acme", "eu", &acme_eu).await;
    put(&gw, &admin, "acme", "az", &acme_az).await;
    for (key, model, id) in [
        (&acme, "gpt-4o", "acme-eu"),
        (&acme, "gpt-4o-mini", "acme-az"),
        (&globex, "gpt-4o", "globex-eu"),
        (&globex, "gpt-4o-mini", "globex-az"),
    ] {
        let (s, text) = chat_as(&gw, key, model, id).await;
        assert_eq!(s, StatusCode::OK, "{id}: {text}");
    }
    // The tenant's own, in each provider's header form (only that header).
    assert_eq!(seen(&[&eu, &az], "acme-eu"), bearer_at_eu(&acme_eu));
    assert_eq!(seen(&[&eu, &az], "acme-az"), api_key_at_az(&acme_az));
    // Another tenant on the same providers: the operator's.
    assert_eq!(seen(&[&eu, &az], "globex-eu"), bearer_at_eu(OPERATOR_EU));
    assert_eq!(seen(&[&eu, &az], "globex-az"), api_key_at_az(OPERATOR_AZ));

    // Replacing it: the new one at once.
    let acme_eu2 = tenant_key("acme-eu-second");
    put(&gw, &admin, "acme", "eu", &acme_eu2).await;
    chat_as(&gw, &acme, "gpt-4o", "acme-eu-2").await;
    assert_eq!(seen(&[&eu, &az], "acme-eu-2"), bearer_at_eu(&acme_eu2));

    // Deleting it: the operator's again, provider by provider.
    delete(&gw, &admin, "acme", "eu").await;
    chat_as(&gw, &acme, "gpt-4o", "acme-eu-deleted").await;
    chat_as(&gw, &acme, "gpt-4o-mini", "acme-az-kept").await;
    assert_eq!(
        seen(&[&eu, &az], "acme-eu-deleted"),
        bearer_at_eu(OPERATOR_EU)
    );
    assert_eq!(seen(&[&eu, &az], "acme-az-kept"), api_key_at_az(&acme_az));
    delete(&gw, &admin, "acme", "az").await;
    chat_as(&gw, &acme, "gpt-4o-mini", "acme-az-deleted").await;
    assert_eq!(
        seen(&[&eu, &az], "acme-az-deleted"),
        api_key_at_az(OPERATOR_AZ)
    );

    let entries = audit_entries(&gw, &admin_token(&gw, "platform-admin", None)).await;
    let count = |action: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["tenant"] == "acme" && e["outcome"] == "success")
            .count()
    };
    assert_eq!(
        (count("credential.put"), count("credential.delete")),
        (3, 2),
        "{entries:?}"
    );
    gw.stop().await;
}

// === 2. … and nowhere else ===

#[tokio::test]
async fn the_credential_never_reaches_a_response_log_audit_entry_or_file() {
    let (eu, az) = mocks().await;
    let gw = builder(&eu, &az)
        .env("CORDON_MASTER_KEY", MASTER)
        .start()
        .await;
    let platform = admin_token(&gw, "platform-admin", None);
    let admin = admin_token(&gw, "tenant-admin", Some("acme"));
    let acme = gw.keys[0].clone();
    let (acme_eu, acme_az) = (tenant_key("acme-eu"), tenant_key("acme-az"));
    let secrets = [acme_eu.as_str(), acme_az.as_str()];
    let mut responses = vec![
        put(&gw, &admin, "acme", "eu", &acme_eu).await,
        put(&gw, &admin, "acme", "az", &acme_az).await,
    ];

    let mut stream = chat("gpt-4o", "hello");
    stream["stream"] = json!(true);
    for (model, id, body) in [
        ("gpt-4o", "r-eu", chat("gpt-4o", "hello")),
        ("gpt-4o-mini", "r-az", chat("gpt-4o-mini", "hello")),
        ("gpt-4o", "r-stream", stream),
    ] {
        if id == "r-stream" {
            eu.set(Behaviour::Stream {
                chunks: 3,
                delay: Duration::ZERO,
                prompt_tokens: 5,
                completion_tokens: 3,
            });
        }
        let (s, text) = chat_body(&gw, &acme, id, body).await;
        assert_eq!(s, StatusCode::OK, "{model}: {text}");
        responses.push(text);
    }
    assert_eq!(seen(&[&eu, &az], "r-eu"), bearer_at_eu(&acme_eu));
    assert_eq!(seen(&[&eu, &az], "r-stream"), bearer_at_eu(&acme_eu));
    assert_eq!(seen(&[&eu, &az], "r-az"), api_key_at_az(&acme_az));
    // A provider quoting the credential it received in its error (as
    // OpenAI's 401 does): the client does not see it.
    eu.set(Behaviour::EchoCredential(401));
    az.set(Behaviour::EchoCredential(400));
    for (model, id) in [("gpt-4o", "echo-eu"), ("gpt-4o-mini", "echo-az")] {
        let (s, text) = chat_as(&gw, &acme, model, id).await;
        assert!(!s.is_success(), "{text}");
        responses.push(text);
    }
    assert!(!seen(&[&eu], "echo-eu").is_empty() && !seen(&[&az], "echo-az").is_empty());
    for path in [
        "/admin/tenants/acme/credentials",
        "/admin/audit?limit=10000",
        "/admin/usage?group_by=provider",
    ] {
        let (s, headers, body) = call_raw(&gw, Some(&platform), Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {body}");
        responses.push(format!("{s}\n{headers}\n{body}"));
    }
    let (s, headers, body) = call_raw(
        &gw,
        Some(&platform),
        Method::POST,
        "/admin/explain",
        Some(json!({"tenant": "acme", "model": "gpt-4o"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    responses.push(format!("{s}\n{headers}\n{body}"));
    let (_, listed) = call(
        &gw,
        Some(&admin),
        Method::GET,
        "/admin/tenants/acme/credentials",
        None,
    )
    .await;
    let providers: Vec<&str> = listed["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["az", "eu"], "{listed}");
    let entries = audit_entries(&gw, &platform).await;
    assert!(has_entry(&entries, "credential.put", "acme", "success"));
    for (i, r) in responses.iter().enumerate() {
        assert_no_leak(&format!("response {i}"), r.as_bytes(), &secrets);
    }

    // The log at trace level, and every file, while the server runs (the
    // SQLite write-ahead log holds the latest writes) and once it stopped.
    let logs = gw.logs();
    assert!(logs.contains("TRACE"), "the log is at trace level");
    assert_no_leak("the log", logs.as_bytes(), &secrets);
    let names = assert_no_file_leaks(gw.dir.path(), &secrets);
    for name in ["cordon.db", "cordon.db-wal", "cordon.db-shm", "cordon.log"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let stopped = gw.stop_for_restart().await;
    assert_no_file_leaks(stopped.dir.path(), &secrets);

    // The store holds ciphertext: each row opens, under the master key and
    // for its own tenant and provider, to the credential that was PUT.
    let store = Store::connect(&format!(
        "sqlite://{}",
        stopped.dir.path().join("cordon.db").display()
    ))
    .await
    .unwrap();
    let rows = store.all_credentials().await.unwrap();
    let master = MasterKey::from_hex(MASTER, KeyOrigin::Var).unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let want = if row.provider == "eu" {
            &acme_eu
        } else {
            &acme_az
        };
        let s = row.sealed.as_ref().unwrap();
        assert_eq!(s.master_key_id, master.id());
        assert_eq!(s.ciphertext.len(), want.len() + 16, "ciphertext and tag");
        let sealed = credentials::Sealed::from_parts(
            &s.nonce,
            s.ciphertext.clone(),
            s.master_key_id.clone(),
        )
        .unwrap();
        let opened = credentials::open(&master, &row.tenant, &row.provider, &sealed).unwrap();
        assert_eq!(opened.expose(), want);
        assert!(credentials::open(&master, "globex", &row.provider, &sealed).is_err());
    }
    store.close().await;
    drop(stopped);
}

// === 3. a moved row does not open, and fails closed ===

/// Moves acme's credential for `provider` to globex, directly in the
/// database (as its owner could), with a new `updated_ms` so that running
/// replicas read it again.
async fn move_to_globex(db: &Path, provider: &str) {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let done = sqlx::query(
        "UPDATE credentials SET tenant = 'globex', updated_ms = $1 \
         WHERE tenant = 'acme' AND provider = $2",
    )
    .bind(cordon::clock::now_ms())
    .bind(provider)
    .execute(&mut c)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(done, 1);
    c.close().await.unwrap();
}

/// The first line of the log after byte `from` that `matches`, waiting up
/// to 5 s for it.
async fn log_line(gw: &Gateway, from: usize, matches: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let logs = gw.logs();
        if let Some(l) = logs[from..].lines().find(|l| matches(l)) {
            return l.to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no such line in the log:\n{}",
            &logs[from..]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The log line saying globex's credential for `provider` does not open.
fn does_not_open(provider: &str) -> impl Fn(&str) -> bool {
    let provider = format!("provider `{provider}`");
    move |l: &str| {
        l.contains("ERROR")
            && l.contains("tenant `globex`")
            && l.contains(&provider)
            && l.contains("does not authenticate")
    }
}

async fn explain(gw: &Gateway, token: &str, tenant: &str, model: &str) -> String {
    let (s, v) = call(
        gw,
        Some(token),
        Method::POST,
        "/admin/explain",
        Some(json!({"tenant": tenant, "model": model})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.to_string()
}

#[tokio::test]
async fn a_row_moved_to_another_tenant_does_not_open_and_fails_closed() {
    let (eu, az) = mocks().await;
    let gw = builder(&eu, &az)
        .env("CORDON_MASTER_KEY", MASTER)
        .start()
        .await;
    let platform = admin_token(&gw, "platform-admin", None);
    let (acme, globex) = (gw.keys[0].clone(), gw.keys[1].clone());
    let (acme_eu, acme_az) = (tenant_key("acme-eu"), tenant_key("acme-az"));
    put(&gw, &platform, "acme", "eu", &acme_eu).await;
    put(&gw, &platform, "acme", "az", &acme_az).await;

    // While the server runs: acme's `eu` row becomes globex's.
    move_to_globex(&gw.db, "eu").await;
    let line = log_line(&gw, 0, does_not_open("eu")).await;
    assert!(line.contains("unusable for this tenant"), "{line}");
    // `eu` is skipped for globex: its `gpt-4o` goes to `az`, with the
    // operator's `az` credential (globex has none of its own there).
    let (s, text) = chat_as(&gw, &globex, "gpt-4o", "moved-running").await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(
        seen(&[&eu, &az], "moved-running"),
        api_key_at_az(OPERATOR_AZ)
    );
    let why = explain(&gw, &platform, "globex", "gpt-4o").await;
    assert!(why.contains("cannot be opened"), "{why}");

    // Before a restart: acme's `az` row becomes globex's too. Both fail to
    // open at start; globex's requests then have no provider at all, and
    // fail rather than use the operator's credential or the moved one.
    let stopped = gw.stop_for_restart().await;
    let from = std::fs::metadata(stopped.dir.path().join("cordon.log"))
        .unwrap()
        .len() as usize;
    move_to_globex(&stopped.dir.path().join("cordon.db"), "az").await;
    let gw = stopped.start().await;
    log_line(&gw, from, does_not_open("eu")).await;
    log_line(&gw, from, does_not_open("az")).await;
    for (model, id) in [("gpt-4o", "closed-4o"), ("gpt-4o-mini", "closed-mini")] {
        let (s, text) = chat_as(&gw, &globex, model, id).await;
        assert!(s.is_server_error(), "{id}: {text}");
        assert_eq!(seen(&[&eu, &az], id), Vec::<String>::new(), "{id}");
        assert_no_leak(id, text.as_bytes(), &[&acme_eu, &acme_az]);
    }
    // acme has no credential of its own any more: the operator's.
    chat_as(&gw, &acme, "gpt-4o", "acme-after").await;
    assert_eq!(seen(&[&eu, &az], "acme-after"), bearer_at_eu(OPERATOR_EU));
    assert_no_leak("the log", gw.logs().as_bytes(), &[&acme_eu, &acme_az]);
    gw.stop().await;
}

// === 4. rotating the master key ===

/// `cordon credentials rotate-master` with `current` in `CORDON_MASTER_KEY`
/// and `new` in a key file: (success, stdout, stderr).
fn rotate(gw: &Gateway, keys: &Path, current: &str, new: &str) -> (bool, String, String) {
    let file = keys.join(format!("{}.key", &new[..8]));
    std::fs::write(&file, format!("{new}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["credentials", "rotate-master", "--config"])
        .arg(gw.dir.path().join("cordon.toml"))
        .arg("--new-key-file")
        .arg(&file)
        .env("CORDON_MASTER_KEY", current)
        .env_remove("CORDON_MASTER_KEY_FILE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

async fn rows(gw: &Gateway) -> Vec<CredentialRow> {
    let store = gw.store().await;
    let rows = store.all_credentials().await.unwrap();
    store.close().await;
    rows
}

/// acme's `gpt-4o` carries its `eu` credential and globex's `gpt-4o-mini`
/// its `az` one.
async fn both_carry_their_own(
    gw: &Gateway,
    (eu, az): (&MockProvider, &MockProvider),
    (acme_eu, globex_az): (&str, &str),
    tag: &str,
) {
    let (a, g) = (format!("{tag}-acme"), format!("{tag}-globex"));
    let (s, text) = chat_as(gw, &gw.keys[0], "gpt-4o", &a).await;
    assert_eq!(s, StatusCode::OK, "{a}: {text}");
    let (s, text) = chat_as(gw, &gw.keys[1], "gpt-4o-mini", &g).await;
    assert_eq!(s, StatusCode::OK, "{g}: {text}");
    assert_eq!(seen(&[eu, az], &a), bearer_at_eu(acme_eu), "{a}");
    assert_eq!(seen(&[eu, az], &g), api_key_at_az(globex_az), "{g}");
}

#[tokio::test]
async fn rotating_the_master_key_keeps_every_credential_usable() {
    let (eu, az) = mocks().await;
    let gw = builder(&eu, &az)
        .env("CORDON_MASTER_KEY", MASTER)
        .start()
        .await;
    let keys = tempfile::tempdir().unwrap();
    let platform = admin_token(&gw, "platform-admin", None);
    let (acme_eu, globex_az) = (tenant_key("acme-eu"), tenant_key("globex-az"));
    put(&gw, &platform, "acme", "eu", &acme_eu).await;
    put(&gw, &platform, "globex", "az", &globex_az).await;
    let mocks = (&eu, &az);
    let own = (acme_eu.as_str(), globex_az.as_str());
    both_carry_their_own(&gw, mocks, own, "before").await;
    let old = MasterKey::from_hex(MASTER, KeyOrigin::Var).unwrap();
    let new = MasterKey::from_hex(MASTER_NEW, KeyOrigin::Var).unwrap();

    // While the server runs.
    let before = rows(&gw).await;
    let (ok, out, err) = rotate(&gw, keys.path(), MASTER, MASTER_NEW);
    assert!(ok, "{out}{err}");
    assert!(out.contains("re-sealed 2 credentials"), "{out}");
    let after = rows(&gw).await;
    assert_eq!(after.len(), 2);
    for (b, a) in before.iter().zip(&after) {
        let (bs, as_) = (b.sealed.as_ref().unwrap(), a.sealed.as_ref().unwrap());
        assert_eq!((&a.tenant, &a.provider), (&b.tenant, &b.provider));
        assert_eq!(
            (bs.master_key_id.as_str(), as_.master_key_id.as_str()),
            (old.id(), new.id())
        );
        assert_ne!(bs.nonce, as_.nonce, "a fresh nonce");
        assert!(a.updated_ms >= b.updated_ms);
    }
    // The running server keeps what it opened, also once its refresh has
    // read the re-sealed rows (which it cannot open).
    both_carry_their_own(&gw, mocks, own, "rotated").await;
    let line = log_line(&gw, 0, |l| l.contains("sealed under another master key")).await;
    assert!(line.contains("WARN"), "{line}");
    both_carry_their_own(&gw, mocks, own, "rotated-refreshed").await;

    // Restarted with the new key: both open.
    let stopped = gw.stop_for_restart().await;
    let from = std::fs::metadata(stopped.dir.path().join("cordon.log"))
        .unwrap()
        .len() as usize;
    let gw = stopped.env("CORDON_MASTER_KEY", MASTER_NEW).start().await;
    both_carry_their_own(&gw, mocks, own, "restarted").await;
    let logs = gw.logs();
    assert!(
        !logs[from..].contains("BYOK credential"),
        "no credential warning after the restart:\n{}",
        &logs[from..]
    );

    // Again with the same keys: nothing to re-seal.
    let (ok, out, err) = rotate(&gw, keys.path(), MASTER, MASTER_NEW);
    assert!(ok, "{out}{err}");
    assert!(out.contains("re-sealed 0 credentials"), "{out}");
    assert_eq!(rows(&gw).await, after);

    // A wrong current key: fails naming each credential; changes nothing.
    let (ok, out, err) = rotate(&gw, keys.path(), MASTER_WRONG, MASTER_OTHER);
    assert!(!ok, "{out}");
    assert!(
        err.contains("acme/eu") && err.contains("globex/az") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(rows(&gw).await, after);
    both_carry_their_own(&gw, mocks, own, "after-wrong-key").await;

    let entries = audit_entries(&gw, &platform).await;
    let rotations: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "credentials.rotate_master")
        .collect();
    assert_eq!(rotations.len(), 2, "{entries:?}");
    assert!(rotations.iter().all(|e| e["outcome"] == "success"));
    let details: Vec<&Value> = rotations.iter().map(|e| &e["detail"]).collect();
    assert!(
        details.contains(&&json!({"from": old.id(), "to": new.id(), "credentials": 2}))
            && details.contains(&&json!({"from": old.id(), "to": new.id(), "credentials": 0})),
        "{details:?}"
    );
    let secrets = [
        acme_eu.as_str(),
        globex_az.as_str(),
        MASTER,
        MASTER_NEW,
        MASTER_WRONG,
    ];
    assert_no_leak("the log", gw.logs().as_bytes(), &secrets);
    assert_no_leak(
        "the audit log",
        serde_json::to_string(&entries).unwrap().as_bytes(),
        &secrets,
    );
    let dir = gw.stop().await;
    assert_no_file_leaks(dir.path(), &secrets);
}

// === 5. without a master key ===

#[tokio::test]
async fn without_a_master_key_put_is_409_and_nothing_is_stored() {
    let (eu, az) = mocks().await;
    let gw = builder(&eu, &az).start().await;
    let platform = admin_token(&gw, "platform-admin", None);
    let admin = admin_token(&gw, "tenant-admin", Some("acme"));
    let acme_eu = tenant_key("acme-eu");
    let (s, headers, body) = call_raw(
        &gw,
        Some(&admin),
        Method::PUT,
        "/admin/tenants/acme/credentials/eu",
        Some(json!({ "key": acme_eu })),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "byok_not_configured", "{v}");
    assert_no_leak(
        "the 409",
        format!("{headers}{body}").as_bytes(),
        &[&acme_eu],
    );

    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", gw.db.display()))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials")
        .fetch_one(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    assert_eq!(n, 0, "no row, not even a tombstone");
    let (s, v) = call(
        &gw,
        Some(&admin),
        Method::GET,
        "/admin/tenants/acme/credentials",
        None,
    )
    .await;
    assert_eq!((s, &v["credentials"]), (StatusCode::OK, &json!([])));
    let entries = audit_entries(&gw, &platform).await;
    assert!(
        !entries
            .iter()
            .any(|e| e["action"] == "credential.put" && e["outcome"] == "success"),
        "{entries:?}"
    );
    chat_as(&gw, &gw.keys[0], "gpt-4o", "no-byok").await;
    assert_eq!(seen(&[&eu, &az], "no-byok"), bearer_at_eu(OPERATOR_EU));
    assert_no_leak("the log", gw.logs().as_bytes(), &[&acme_eu]);
    let dir = gw.stop().await;
    assert_no_file_leaks(dir.path(), &[&acme_eu]);
}

// === 6. replicas ===

/// Waits until replica `gw`'s acme `gpt-4o` requests carry `want` at `eu`;
/// until then they must carry `was`. Fails after 5 s.
async fn until_carried(gw: &Gateway, eu: &MockProvider, az: &MockProvider, was: &str, want: &str) {
    let start = Instant::now();
    for n in 0.. {
        let id = format!("poll-{want}-{n}");
        let (s, text) = chat_as(gw, &gw.keys[0], "gpt-4o", &id).await;
        assert_eq!(s, StatusCode::OK, "{text}");
        let got = seen(&[eu, az], &id);
        if got == bearer_at_eu(want) {
            return;
        }
        assert_eq!(got, bearer_at_eu(was));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the change has not reached the other replica within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A credential PUT and then DELETEd through replica `a` is used (and then
/// no longer) by replica `b` within 5 s; by `a` at once.
async fn set_on_one_replica_reaches_the_other(
    a: &Gateway,
    b: &Gateway,
    eu: &MockProvider,
    az: &MockProvider,
) {
    let admin = admin_token(a, "tenant-admin", Some("acme"));
    let key = tenant_key("acme-eu");
    put(a, &admin, "acme", "eu", &key).await;
    chat_as(a, &a.keys[0], "gpt-4o", "on-a").await;
    assert_eq!(seen(&[eu, az], "on-a"), bearer_at_eu(&key));
    until_carried(b, eu, az, OPERATOR_EU, &key).await;
    delete(a, &admin, "acme", "eu").await;
    chat_as(a, &a.keys[0], "gpt-4o", "on-a-deleted").await;
    assert_eq!(seen(&[eu, az], "on-a-deleted"), bearer_at_eu(OPERATOR_EU));
    until_carried(b, eu, az, &key, OPERATOR_EU).await;
}

#[tokio::test]
async fn a_credential_set_through_one_replica_reaches_another_on_sqlite() {
    let (eu, az) = mocks().await;
    let a = builder(&eu, &az)
        .env("CORDON_MASTER_KEY", MASTER)
        .start()
        .await;
    let b = builder(&eu, &az)
        .env("CORDON_MASTER_KEY", MASTER)
        .store_url(&format!("sqlite://{}", a.db.display()))
        .start()
        .await;
    set_on_one_replica_reaches_the_other(&a, &b, &eu, &az).await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_credential_set_through_one_replica_reaches_another_on_postgres() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let (eu, az) = mocks().await;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        replicas.push(
            builder(&eu, &az)
                .env("CORDON_MASTER_KEY", MASTER)
                .store_url(&schema.url())
                .start()
                .await,
        );
    }
    set_on_one_replica_reaches_the_other(&replicas[0], &replicas[1], &eu, &az).await;
    for gw in replicas {
        gw.stop().await;
    }
    drop(schema);
}

// === a credential that could not be sent ===

/// A key no provider header could carry (empty, a control character such
/// as a pasted newline, surrounding whitespace, non-ASCII) is refused when
/// it is PUT, naming the field, rather than stored and then making the
/// provider unusable for the tenant.
#[tokio::test]
async fn a_key_that_cannot_be_sent_is_refused_when_put() {
    let (eu, az) = mocks().await;
    let gw = builder(&eu, &az)
        .env("CORDON_MASTER_KEY", MASTER)
        .start()
        .await;
    let admin = admin_token(&gw, "tenant-admin", Some("acme"));
    for bad in [
        "",
        "sk-abc\n",
        " sk-abc",
        "sk-a\u{7f}bc",
        "sk-abc\u{0}",
        "sk-äbc",
    ] {
        let (s, v) = call(
            &gw,
            Some(&admin),
            Method::PUT,
            "/admin/tenants/acme/credentials/eu",
            Some(json!({ "key": bad })),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad:?}: {v}");
        assert_eq!(v["error"]["field"], "key", "{bad:?}: {v}");
        assert!(!v.to_string().contains(bad) || bad.is_empty(), "{v}");
    }
    let (_, v) = call(
        &gw,
        Some(&admin),
        Method::GET,
        "/admin/tenants/acme/credentials",
        None,
    )
    .await;
    assert_eq!(v["credentials"], json!([]));
    let (s, text) = chat_as(&gw, &gw.keys[0], "gpt-4o", "after-bad").await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(seen(&[&eu, &az], "after-bad"), bearer_at_eu(OPERATOR_EU));
    // Inner spaces are a header value's to carry: accepted, and sent.
    let spaced = format!("{} {}", tenant_key("a"), tenant_key("b"));
    put(&gw, &admin, "acme", "eu", &spaced).await;
    chat_as(&gw, &gw.keys[0], "gpt-4o", "spaced").await;
    assert_eq!(seen(&[&eu, &az], "spaced"), bearer_at_eu(&spaced));
    gw.stop().await;
}

/// A credential set through a replica still on the old master key after
/// the rotation is sealed under the old key: once restarted with the new
/// key, the provider fails closed for that tenant, and running the rotation
/// again (same keys) re-seals just that one, which the running replica then
/// uses within 5 s.
#[tokio::test]
async fn a_credential_set_during_a_rotation_is_resealed_by_running_it_again() {
    let (eu, az) = mocks().await;
    let gw = builder(&eu, &az)
        .env("CORDON_MASTER_KEY", MASTER)
        .start()
        .await;
    let keys = tempfile::tempdir().unwrap();
    let platform = admin_token(&gw, "platform-admin", None);
    let (acme_eu, acme_az) = (tenant_key("acme-eu"), tenant_key("acme-az"));
    put(&gw, &platform, "acme", "eu", &acme_eu).await;
    let (ok, out, err) = rotate(&gw, keys.path(), MASTER, MASTER_NEW);
    assert!(ok && out.contains("re-sealed 1 credential "), "{out}{err}");
    // Set through the replica still on the old key: sealed under it.
    put(&gw, &platform, "acme", "az", &acme_az).await;
    let gw = gw
        .stop_for_restart()
        .await
        .env("CORDON_MASTER_KEY", MASTER_NEW)
        .start()
        .await;
    let acme = gw.keys[0].clone();
    chat_as(&gw, &acme, "gpt-4o", "new-key-eu").await;
    assert_eq!(seen(&[&eu, &az], "new-key-eu"), bearer_at_eu(&acme_eu));
    let (s, text) = chat_as(&gw, &acme, "gpt-4o-mini", "new-key-az").await;
    assert!(s.is_server_error(), "fails closed: {text}");
    assert_eq!(seen(&[&eu, &az], "new-key-az"), Vec::<String>::new());

    let (ok, out, err) = rotate(&gw, keys.path(), MASTER, MASTER_NEW);
    assert!(ok && out.contains("re-sealed 1 credential "), "{out}{err}");
    let start = Instant::now();
    for n in 0.. {
        let id = format!("resealed-{n}");
        let (s, _) = chat_as(&gw, &acme, "gpt-4o-mini", &id).await;
        if s == StatusCode::OK {
            assert_eq!(seen(&[&eu, &az], &id), api_key_at_az(&acme_az));
            break;
        }
        assert_eq!(seen(&[&eu, &az], &id), Vec::<String>::new());
        assert!(start.elapsed() < Duration::from_secs(5), "not re-opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.stop().await;
}
