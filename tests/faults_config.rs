//! Issue 14, configuration and operating rows, against the real `cordon
//! serve`: a reload keeps rate-limit windows and passive health; a provider
//! with `min_tls = "1.3"` is never reached over TLS 1.2; `/readyz` says
//! degraded while usage records are being spooled.
//!
//! Every wait is a poll with a deadline ([`PATIENCE`]); nothing asserts a
//! duration.

#![expect(clippy::unwrap_used, reason = "test code")]
#![expect(clippy::panic, reason = "test code")]

mod common;

use std::time::{Duration, Instant};

use common::{Behaviour, EU_TERMS, Gateway, GatewayBuilder, MockProvider, chat};

/// Upper bound for anything the tests wait on; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

const GPT: &str = r#""gpt-4o" = "gpt-4o""#;

/// Sends one chat request with the gateway's first key.
async fn send(gw: &Gateway) -> reqwest::Response {
    common::http()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.keys[0])
        .header("content-type", "application/json")
        .body(chat("gpt-4o", "hello").to_string())
        .send()
        .await
        .unwrap()
}

/// The status and the provider that served it (if any).
async fn status_and_provider(gw: &Gateway) -> (u16, Option<String>) {
    let resp = send(gw).await;
    let provider = resp
        .headers()
        .get("x-cordon-provider")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), provider)
}

/// `cordon_config_reloads_total{result="success"}`.
async fn successful_reloads(gw: &Gateway) -> u64 {
    gw.metric("cordon_config_reloads_total{result=\"success\"}")
        .await
        .map_or(0, |v| v as u64)
}

/// Polls `f` every 100 ms until it holds, for at most [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, gw: &Gateway, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !f().await {
        if Instant::now() > deadline {
            panic!("timed out waiting for: {what}; logs:\n{}", gw.logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rewrites `policies/<tenant>.toml` and waits until the running gateway has
/// reloaded successfully at least once more (the file watcher, or SIGHUP).
async fn change_policy_and_reload(gw: &Gateway, tenant: &str, body: &str) {
    let before = successful_reloads(gw).await;
    let path = gw.dir.path().join(format!("policies/{tenant}.toml"));
    std::fs::write(&path, format!("tenant = \"{tenant}\"\n{body}")).unwrap();
    // The watcher would see the change within 2 s; SIGHUP makes it sooner.
    gw.signal("HUP");
    eventually("a successful reload", gw, || async {
        successful_reloads(gw).await > before
    })
    .await;
}

// === row 13: a reload keeps rate-limit windows and passive health ===

#[tokio::test]
async fn a_reload_keeps_rate_limit_windows_of_unchanged_limits() {
    let eu = MockProvider::start("eu").await;
    // Two requests a minute: one every 30 s after the burst, so the window
    // cannot refill while the test waits for a reload (well under 30 s).
    let gw = GatewayBuilder::new()
        .provider("eu-host", &eu, GPT, EU_TERMS)
        .tenant("acme", "[limits]\nrequests_per_minute = 2\n")
        .tenant("other", "")
        .key("acme", None)
        .start()
        .await;
    assert_eq!(send(&gw).await.status(), 200);
    assert_eq!(send(&gw).await.status(), 200);
    assert_eq!(send(&gw).await.status(), 429, "the window is full");

    // Another tenant's policy changes.
    change_policy_and_reload(&gw, "other", "description = \"edited\"\n").await;
    assert_eq!(
        send(&gw).await.status(),
        429,
        "a reload for another tenant's file emptied acme's window"
    );

    // acme's own file changes, but not its limits.
    change_policy_and_reload(
        &gw,
        "acme",
        "# a comment\n[limits]\nrequests_per_minute = 2\n",
    )
    .await;
    assert_eq!(
        send(&gw).await.status(),
        429,
        "a reload that kept acme's limit emptied its window"
    );
    assert_eq!(eu.count(), 2, "a refused request reached the provider");

    // A changed limit applies, with a window of its own.
    change_policy_and_reload(&gw, "acme", "[limits]\nrequests_per_minute = 5\n").await;
    assert_eq!(send(&gw).await.status(), 200, "the new limit did not apply");
    assert_eq!(eu.count(), 3);
}

#[tokio::test]
async fn a_reload_keeps_a_failing_provider_ejected() {
    // `a` (priority 10) is tried before `b` (priority 20) until ejected.
    let a = MockProvider::start("a").await;
    let b = MockProvider::start("b").await;
    let gw = GatewayBuilder::new()
        .provider("a", &a, GPT, EU_TERMS)
        .provider("b", &b, GPT, EU_TERMS)
        .tenant("acme", "")
        .tenant("other", "")
        .key("acme", None)
        .start()
        .await;
    a.set(Behaviour::Status(503));
    for i in 1..=5 {
        assert_eq!(status_and_provider(&gw).await, (200, Some("b".to_owned())));
        assert_eq!(a.count(), i, "a is tried first until ejected");
    }
    // Ejected for 30 s: tried last, so it gets nothing while b answers.
    assert_eq!(status_and_provider(&gw).await, (200, Some("b".to_owned())));
    assert_eq!(a.count(), 5);

    change_policy_and_reload(&gw, "other", "description = \"edited\"\n").await;
    assert_eq!(status_and_provider(&gw).await, (200, Some("b".to_owned())));
    assert_eq!(
        a.count(),
        5,
        "after a reload the ejected provider got a first attempt again"
    );
}

// === row 15: `min_tls` ===

/// A gateway whose one provider is `mock` (HTTPS, private CA `ca_pem`) with
/// these extra provider lines and gateway tables.
async fn over_tls(mock: &MockProvider, ca_pem: &str, provider: &str, tail: &str) -> Gateway {
    GatewayBuilder::new()
        .file("ca.pem", ca_pem)
        .provider("tls-host", mock, GPT, EU_TERMS)
        .provider_extra(&format!("ca_file = \"ca.pem\"\n{provider}"))
        .gateway_tail(tail)
        .tenant("acme", "")
        .key("acme", None)
        .start()
        .await
}

#[tokio::test]
async fn a_provider_with_min_tls_1_3_is_never_reached_over_tls_1_2() {
    let (mock, ca_pem) = MockProvider::start_tls12("tls12-only").await;

    // Refused: no handshake completes, nothing is sent, the client gets 502.
    for (provider, tail) in [
        ("min_tls = \"1.3\"", ""),
        ("", "[upstream]\nmin_tls = \"1.3\"\n"),
    ] {
        let gw = over_tls(&mock, &ca_pem, provider, tail).await;
        let resp = send(&gw).await;
        let status = resp.status().as_u16();
        let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(status, 502, "{body}; logs:\n{}", gw.logs());
        assert_eq!(body["error"]["code"], "upstream_error", "{body}");
        assert!(mock.connections() > 0, "the gateway never tried to connect");
        assert_eq!(mock.handshakes(), 0, "a TLS 1.2 handshake completed");
        assert_eq!(mock.count(), 0, "a request reached the provider");
    }

    // Allowed with 1.2, by the provider's key or by default (a provider's
    // own key overrides the gateway-wide one).
    for (provider, tail) in [
        ("min_tls = \"1.2\"", ""),
        ("", ""),
        ("min_tls = \"1.2\"", "[upstream]\nmin_tls = \"1.3\"\n"),
    ] {
        let before = mock.count();
        let gw = over_tls(&mock, &ca_pem, provider, tail).await;
        let resp = send(&gw).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        assert_eq!(mock.count(), before + 1);
    }
    assert!(mock.handshakes() > 0);
}

// === row 11: readiness while the store cannot be written ===

/// `/readyz`: status and body.
async fn readyz(gw: &Gateway) -> (u16, String) {
    let resp = common::http()
        .get(gw.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn readiness_is_degraded_while_usage_records_are_spooled() {
    use sqlx::Connection;

    let eu = MockProvider::start("eu").await;
    let gw = GatewayBuilder::new()
        .provider("eu-host", &eu, GPT, EU_TERMS)
        .tenant("acme", "")
        .key("acme", None)
        .start()
        .await;
    assert_eq!(readyz(&gw).await, (200, "ready\n".to_owned()));

    // Another connection takes the database's write lock and keeps it: reads
    // (and so a ping) still work, writes fail after the busy timeout.
    let url = format!("sqlite://{}", gw.db.display());
    let mut lock = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();

    // Served regardless; its usage record cannot be stored.
    let resp = send(&gw).await;
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();

    eventually("/readyz to report degraded", &gw, || async {
        readyz(&gw).await.0 == 503
    })
    .await;
    let (_, degraded) = readyz(&gw).await;
    assert!(
        degraded.starts_with("degraded: usage spooling (store not writable: "),
        "{degraded}"
    );
    assert!(degraded.contains("locked"), "the reason: {degraded}");
    assert!(!degraded.contains(&gw.keys[0]), "{degraded}");

    // Writable again: the spool is replayed and readiness recovers.
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
    eventually("/readyz to report ready again", &gw, || async {
        readyz(&gw).await == (200, "ready\n".to_owned())
    })
    .await;
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT request_id FROM usage")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert_eq!(stored, vec![request_id], "the spooled record was stored");
}
