//! Reload under load, through `POST /admin/reload` on the real binary: while
//! client loops send requests continuously, a policy change that excludes a
//! provider is reloaded; no request fails, and none reaches the excluded
//! provider after the reload's 200. An invalid policy is then refused with a
//! 422 naming file, line and key, and traffic carries on unchanged. Both
//! reloads are in the audit log under the admin token's id.

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::admin::{admin_token, audit_entries, call, token_id};
use common::{EU_TERMS, GatewayBuilder, MockProvider, chat, http};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

const MODELS: &str = r#""gpt-4o" = "gpt-4o""#;

/// acme prefers provider `b`; globex takes the default order (`a` has the
/// lower priority), so both providers serve traffic before the reload.
const TENANT_LINE: &str = "tenant = \"acme\"\n";
const ACME_BEFORE: &str = "tenant = \"acme\"
[data]
processing_in = [\"EEA\"]
[routing]
order = [\"b\", \"a\"]
";

/// acme objects to `b` (its routing order still names `b` first: an
/// exclusion wins over a preference).
const ACME_AFTER: &str = "tenant = \"acme\"
[data]
processing_in = [\"EEA\"]
exclude_providers = [\"b\"]
[routing]
order = [\"b\", \"a\"]
";

/// As `ACME_AFTER`, with a certification that does not exist (line 5).
const ACME_INVALID: &str = "tenant = \"acme\"
[data]
processing_in = [\"EEA\"]
exclude_providers = [\"b\"]
certifications = [\"iso2701\"]
[routing]
order = [\"b\", \"a\"]
";

/// Client loops per tenant, and the most requests one loop sends.
const LOOPS_PER_TENANT: usize = 3;
const MAX_PER_LOOP: usize = 600;

/// One client request: when it was sent and answered, and how.
struct Sample {
    tenant: &'static str,
    sent: Instant,
    status: u16,
    provider: Option<String>,
    body: String,
}

/// Sends chat requests with `key` until `stop` (or `MAX_PER_LOOP` requests).
async fn client_loop(
    tenant: &'static str,
    key: String,
    url: String,
    stop: Arc<AtomicBool>,
) -> Vec<Sample> {
    let client = http();
    let body = chat("gpt-4o", "hello").to_string();
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) && samples.len() < MAX_PER_LOOP {
        let sent = Instant::now();
        let resp = client
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let provider = resp
            .headers()
            .get("x-cordon-provider")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.text().await.unwrap_or_default();
        samples.push(Sample {
            tenant,
            sent,
            status,
            provider,
            body,
        });
    }
    samples
}

/// Rewrites `path` in place with `content` padded (with a trailing comment)
/// to the file's current length, then puts its modification time back: the
/// file watcher, which compares size, mtime and inode, does not see the
/// change, so only `POST /admin/reload` can apply it.
fn rewrite_unseen(path: &Path, content: &str) {
    let meta = std::fs::metadata(path).unwrap();
    let len = usize::try_from(meta.len()).unwrap();
    let mut padded = content.to_owned();
    assert!(padded.len() + 2 <= len, "pad the original to fit {content}");
    padded.push('#');
    while padded.len() < len - 1 {
        padded.push(' ');
    }
    padded.push('\n');
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all(padded.as_bytes()).unwrap();
    f.set_modified(meta.modified().unwrap()).unwrap();
    f.sync_all().unwrap();
}

/// Polls `f` every 20 ms for up to 10 s.
async fn wait_for(what: &str, f: impl Fn() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `mock` has served 60 more requests and at least 500 ms
/// have passed.
async fn more_traffic(mock: &MockProvider, what: &str) {
    let (target, since) = (mock.count() + 60, Instant::now());
    wait_for(what, || {
        mock.count() >= target && since.elapsed() >= Duration::from_millis(500)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_fails_no_request_and_stops_traffic_to_the_excluded_provider() {
    let mock_a = MockProvider::start("a").await;
    let mock_b = MockProvider::start("b").await;
    // The policy file starts long enough for every rewrite to fit in place.
    let padding = format!("#{}\n", " ".repeat(120));
    let gw = GatewayBuilder::new()
        .provider("a", &mock_a, MODELS, EU_TERMS)
        .provider("b", &mock_b, MODELS, EU_TERMS)
        .tenant("globex", "[data]\nprocessing_in = [\"EEA\"]\n")
        .tenant(
            "acme",
            &format!(
                "{}{padding}",
                ACME_BEFORE.strip_prefix(TENANT_LINE).unwrap()
            ),
        )
        .key("globex", None)
        .key("acme", None)
        .start()
        .await;
    let policy = gw.dir.path().join("policies/acme.toml");
    let admin = admin_token(&gw, "platform-admin", None);

    let stop = Arc::new(AtomicBool::new(false));
    let url = gw.url("/v1/chat/completions");
    let mut loops = Vec::new();
    for (tenant, key) in [("globex", &gw.keys[0]), ("acme", &gw.keys[1])] {
        for _ in 0..LOOPS_PER_TENANT {
            loops.push(tokio::spawn(client_loop(
                tenant,
                key.clone(),
                url.clone(),
                stop.clone(),
            )));
        }
    }
    // Both providers serve traffic before the reload.
    wait_for("traffic on both providers", || {
        mock_a.count() >= 30 && mock_b.count() >= 30
    })
    .await;

    // The valid change, applied by the API alone.
    rewrite_unseen(&policy, ACME_AFTER);
    let before_reload = Instant::now();
    let (s, reloaded) = call(&gw, Some(&admin), Method::POST, "/admin/reload", None).await;
    let reloaded_at = Instant::now();
    assert_eq!(s, StatusCode::OK, "{reloaded}");
    assert_eq!(reloaded["reloaded"], true);
    let files = reloaded["files"].as_array().unwrap();
    let mut names: Vec<String> = Vec::new();
    for f in files {
        let path = Path::new(f["path"].as_str().unwrap());
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            hex::encode(Sha256::digest(&bytes)),
            "{}",
            path.display()
        );
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    assert_eq!(
        names,
        ["cordon.toml", "acme.toml", "globex.toml"],
        "the gateway file, then the policies: {reloaded}"
    );
    println!(
        "valid reload answered 200 in {:?}",
        reloaded_at - before_reload
    );

    // Traffic carries on; requests already in flight to `b` finish.
    more_traffic(&mock_a, "traffic after the reload").await;
    let b_frozen = mock_b.count();

    // An invalid change is refused whole, naming file, line and key.
    rewrite_unseen(&policy, ACME_INVALID);
    let (s, refused) = call(&gw, Some(&admin), Method::POST, "/admin/reload", None).await;
    let refused_at = Instant::now();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_configuration");
    let errors = refused["error"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{refused}");
    assert!(
        errors[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("policies/acme.toml"),
        "{refused}"
    );
    assert_eq!(errors[0]["line"], 5, "{refused}");
    assert_eq!(errors[0]["key"], "data.certifications", "{refused}");
    assert!(
        errors[0]["message"].as_str().unwrap().contains("iso2701"),
        "{refused}"
    );
    more_traffic(&mock_a, "traffic after the refused reload").await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for l in loops {
        samples.extend(l.await.unwrap());
    }

    // Not one request failed, before, during or after either reload.
    let failed: Vec<String> = samples
        .iter()
        .filter(|s| s.status != 200)
        .map(|s| format!("{} {}: {}", s.tenant, s.status, s.body))
        .collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    let by = |p: &str| {
        samples
            .iter()
            .filter(|s| s.provider.as_deref() == Some(p))
            .count()
    };
    // Every request to a provider is one client request (no failover).
    assert_eq!(by("a") + by("b"), samples.len());
    assert_eq!((by("a"), by("b")), (mock_a.count(), mock_b.count()));
    // After the 200, nothing new reached `b`: every request answered by `b`
    // was sent before the 200 arrived, and its count has not moved since.
    assert_eq!(mock_b.count(), b_frozen, "b received requests after reload");
    let late_b = samples
        .iter()
        .filter(|s| s.provider.as_deref() == Some("b") && s.sent >= reloaded_at)
        .count();
    assert_eq!(late_b, 0, "requests sent after the 200 reached b");
    let after = |t: Instant, tenant: &str| {
        samples
            .iter()
            .filter(|s| s.sent >= t && s.tenant == tenant)
            .count()
    };
    for (t, what) in [(reloaded_at, "valid"), (refused_at, "refused")] {
        assert!(
            after(t, "acme") >= 20,
            "too little acme traffic after the {what} reload to show anything"
        );
    }
    println!(
        "{} requests ({} to a, {} to b), {} acme requests after the valid reload, \
         {} after the refused one; none failed",
        samples.len(),
        by("a"),
        by("b"),
        after(reloaded_at, "acme"),
        after(refused_at, "acme"),
    );

    // Both reloads are audited under the token, with files or error count.
    let actor = format!("token:{}", token_id(&admin));
    let entries = audit_entries(&gw, &admin).await;
    let reloads: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "reload" && e["actor"] == actor.as_str())
        .collect();
    assert_eq!(reloads.len(), 2, "valid, refused: {entries:?}");
    assert_eq!(reloads[0]["outcome"], "success");
    assert_eq!(&reloads[0]["detail"]["files"], &reloaded["files"]);
    assert_eq!(reloads[1]["outcome"], "failure");
    assert_eq!(reloads[1]["detail"]["errors"], 1);
    gw.stop().await;
}
