//! Keys usable the moment they exist: a key created (by the CLI, against the
//! gateway's store) after `cordon serve` started works on its first request,
//! on every replica sharing the store, and a revocation reaches every replica
//! within seconds; random unknown ids cost at most the lookup bound's number
//! of store queries.

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pg::PgSchema;
use common::{EU_TERMS, Gateway, GatewayBuilder, MockProvider, chat};
use cordon::auth::LOOKUPS_PER_SECOND;
use cordon::auth::key::NewKey;

const TENANT: &str = "[data]\nprocessing_in = [\"EEA\"]\n";

async fn gateway(mock: &MockProvider, store_url: Option<&str>) -> Gateway {
    let mut b = GatewayBuilder::new()
        .provider("eu-host", mock, r#""gpt-4o" = "gpt-4o-2024""#, EU_TERMS)
        .tenant("acme", TENANT);
    if let Some(url) = store_url {
        b = b.store_url(url);
    }
    b.start().await
}

/// Runs `cordon <args> --config <config>` and returns its stdout.
fn cordon(config: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "cordon {args:?}: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `cordon keys create` for tenant acme: (id, raw key).
fn create_key(config: &Path) -> (String, String) {
    let stdout = cordon(config, &["keys", "create", "--tenant", "acme"]);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    (field("id:"), field("key:"))
}

async fn status(gw: &Gateway, key: &str) -> u16 {
    common::http()
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

async fn lookups(gw: &Gateway, result: &str) -> f64 {
    gw.metric(&format!("cordon_key_lookups_total{{result=\"{result}\"}}"))
        .await
        .unwrap_or(0.0)
}

fn config(gw: &Gateway) -> std::path::PathBuf {
    gw.dir.path().join("cordon.toml")
}

#[tokio::test]
async fn a_key_created_after_start_works_on_its_first_request() {
    let mock = MockProvider::start("eu").await;
    let gw = gateway(&mock, None).await;
    // No waiting for the refresh (every second): the miss is looked up in
    // the store. The refresh may still, by chance, load a key first; three
    // keys make "never by a lookup" all but impossible.
    for _ in 0..3 {
        let (_, raw) = create_key(&config(&gw));
        assert_eq!(status(&gw, &raw).await, 200, "first request");
        let found = lookups(&gw, "found").await;
        assert_eq!(status(&gw, &raw).await, 200);
        assert_eq!(lookups(&gw, "found").await, found, "then from the cache");
    }
    assert!(lookups(&gw, "found").await >= 1.0, "found by lookups");
    let (_, raw) = create_key(&config(&gw));
    let models = common::http()
        .get(gw.url("/v1/models"))
        .bearer_auth(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200, "GET /v1/models looks keys up too");
}

#[tokio::test]
async fn two_replicas_on_one_postgres_accept_a_new_key_at_once_and_refuse_it_once_revoked() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let url = schema.url();
    let mock = MockProvider::start("eu").await;
    let a = gateway(&mock, Some(&url)).await;
    let b = gateway(&mock, Some(&url)).await;

    let (id, raw) = create_key(&config(&a));
    // Each replica: found by a lookup, or (by chance) already loaded by its
    // refresh; either way at once.
    assert_eq!(status(&a, &raw).await, 200, "replica A, first request");
    assert_eq!(status(&b, &raw).await, 200, "replica B, first request");
    for gw in [&a, &b] {
        assert!(lookups(gw, "found").await <= 1.0, "one lookup at most");
    }

    let out = cordon(&config(&b), &["keys", "revoke", &id]);
    assert!(out.contains(&format!("revoked key {id}")), "{out}");
    let revoked_at = Instant::now();
    for (name, gw) in [("A", &a), ("B", &b)] {
        loop {
            let s = status(gw, &raw).await;
            if s == 401 {
                break;
            }
            assert_eq!(s, 200);
            assert!(
                revoked_at.elapsed() < Duration::from_secs(5),
                "replica {name} still accepts the key 5 s after its revocation"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop((a, b));
    drop(schema);
}

#[tokio::test]
async fn random_unknown_ids_cost_at_most_the_lookup_bound_in_store_queries() {
    let mock = MockProvider::start("eu").await;
    let gw = gateway(&mock, None).await;
    let client = common::http();
    let started = Instant::now();
    let mut statuses = Vec::new();
    for batch in 0..20 {
        let requests = (0..50).map(|_| {
            let key = NewKey::generate();
            let req = client
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(key.raw.expose())
                .header("content-type", "application/json")
                .body(chat("gpt-4o", "hello").to_string())
                .send();
            async move { req.await.unwrap().status().as_u16() }
        });
        statuses.extend(futures_util::future::join_all(requests).await);
        assert_eq!(statuses.len(), (batch + 1) * 50);
    }
    let elapsed = started.elapsed();
    assert!(
        statuses.iter().all(|&s| s == 401),
        "every unknown id is a 401, limited or not"
    );
    let queries =
        lookups(&gw, "found").await + lookups(&gw, "unknown").await + lookups(&gw, "error").await;
    let limited = lookups(&gw, "limited").await;
    assert_eq!(queries + limited, 1_000.0, "each id missed once");
    // The bound is per wall-clock second: the run spans at most this many.
    let seconds = elapsed.as_secs_f64().ceil() + 1.0;
    assert!(
        queries <= f64::from(LOOKUPS_PER_SECOND) * seconds,
        "{queries} store queries in {elapsed:?}"
    );
    assert_eq!(mock.count(), 0, "nothing reached a provider");
}
