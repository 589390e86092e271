//! Provider credentials read from a file (`auth = { file = … }`): the
//! credential reaches the provider, a rotated file is picked up by the running
//! gateway with no restart and no failed request, and a provider without its
//! credential is named by `/readyz` (still 200).

#![expect(clippy::unwrap_used, clippy::panic, reason = "test helpers")]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{EU_TERMS, Gateway, GatewayBuilder, MockProvider, chat};

const GPT: &str = r#""gpt-4o" = "gpt-4o""#;
const EU_ONLY: &str = "[data]\nprocessing_in = [\"EEA\"]\n";

async fn send(gw: &Gateway) -> u16 {
    common::http()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.keys[0])
        .body(chat("gpt-4o", "hi").to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn readyz(gw: &Gateway) -> (u16, String) {
    let resp = common::http()
        .get(gw.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The credential the mock received last.
fn last_credential(mock: &MockProvider) -> Option<String> {
    mock.received()
        .last()
        .and_then(|r| r.header("authorization").map(str::to_owned))
}

/// Replaces `path` atomically, as secret agents and Kubernetes do: write a
/// new file beside it, then rename it over the old one.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn eventually<F, Fut>(what: &str, gw: &Gateway, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f().await {
        if Instant::now() > deadline {
            panic!("timed out waiting for: {what}; logs:\n{}", gw.logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_rotated_credential_file_is_used_without_a_restart_or_a_failed_request() {
    let mock = MockProvider::start("eu").await;
    let gw = GatewayBuilder::new()
        .provider("eu-host", &mock, GPT, EU_TERMS)
        .provider_extra(r#"auth = { file = "provider.key" }"#)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .file("provider.key", "sk-file-canary-first\n")
        .start()
        .await;
    assert_eq!(send(&gw).await, 200);
    assert_eq!(
        last_credential(&mock).as_deref(),
        Some("Bearer sk-file-canary-first"),
        "the file's content, without its newline"
    );
    assert_eq!(readyz(&gw).await, (200, "ready\n".to_owned()));

    // Requests keep flowing while the file is rotated.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (url, key, stop) = (
            gw.url("/v1/chat/completions"),
            gw.keys[0].clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let client = common::http();
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let status = client
                    .post(&url)
                    .bearer_auth(&key)
                    .body(chat("gpt-4o", "hi").to_string())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                statuses.push(status);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    replace(
        &gw.dir.path().join("provider.key"),
        "sk-file-canary-second\n",
    );
    eventually("the new credential to reach the provider", &gw, || async {
        last_credential(&mock).as_deref() == Some("Bearer sk-file-canary-second")
    })
    .await;
    // The watcher looks every 2 s.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let statuses = traffic.await.unwrap();
    assert!(statuses.len() >= 10, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Once the new credential is in use, the old one is never sent again.
    let received = mock.received();
    let first_new = received
        .iter()
        .position(|r| r.header("authorization") == Some("Bearer sk-file-canary-second"))
        .unwrap();
    assert!(
        received[first_new..]
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer sk-file-canary-second"))
    );

    let logs = gw.logs();
    assert!(logs.contains("configuration reloaded"), "{logs}");
    assert!(
        !logs.contains("sk-file-canary"),
        "a credential was logged:\n{logs}"
    );
}

#[tokio::test]
async fn a_provider_without_its_credential_is_named_by_readyz_until_the_file_appears() {
    let with_file = MockProvider::start("a").await;
    let with_env = MockProvider::start("b").await;
    let gw = GatewayBuilder::new()
        .provider("a", &with_file, GPT, EU_TERMS)
        .provider_extra(r#"auth = { header = "api-key", file = "a.key" }"#)
        .provider("b", &with_env, GPT, EU_TERMS)
        .provider_extra(r#"auth = { env = "CORDON_TEST_UNSET_B_KEY" }"#)
        .tenant("acme", EU_ONLY)
        .key("acme", None)
        .start()
        .await;
    // Neither has a credential: ready (the store is fine), naming both.
    assert_eq!(
        readyz(&gw).await,
        (
            200,
            "ready\nproviders without a credential: a, b\n".to_owned()
        )
    );
    let logs = gw.logs();
    assert!(
        logs.contains("provider `a` is unavailable: credential file"),
        "{logs}"
    );
    assert!(
        logs.contains(
            "provider `b` is unavailable: credential variable `CORDON_TEST_UNSET_B_KEY` is not set"
        ),
        "{logs}"
    );
    assert_eq!(send(&gw).await, 502);
    assert_eq!((with_file.count(), with_env.count()), (0, 0));

    // The file appears: `a` serves, with the credential in its header.
    std::fs::write(gw.dir.path().join("a.key"), "canary-a-key").unwrap();
    eventually("provider `a` to get its credential", &gw, || async {
        readyz(&gw).await == (200, "ready\nproviders without a credential: b\n".to_owned())
    })
    .await;
    assert_eq!(send(&gw).await, 200);
    let received = with_file.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("api-key"), Some("canary-a-key"));
    assert_eq!(with_env.count(), 0);

    // Emptied again: unavailable again.
    replace(&gw.dir.path().join("a.key"), "\n");
    eventually("provider `a` to lose its credential", &gw, || async {
        readyz(&gw).await.1.contains("without a credential: a, b")
    })
    .await;
    assert!(gw.logs().contains(&format!(
        "provider `a` is unavailable: credential file {} is empty",
        gw.dir.path().join("a.key").display()
    )));
    assert!(!gw.logs().contains("canary-a-key"));
}
