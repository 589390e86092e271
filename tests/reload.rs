//! Configuration reload: a policy change takes effect on a running server; a
//! change that fails validation is rejected whole, counted, and the previous
//! configuration stays in force; SIGHUP reloads on demand.

#![expect(clippy::unwrap_used, clippy::panic, reason = "test helpers")]

mod common;

use std::time::Duration;

use common::{EU_TERMS, GatewayBuilder, MockProvider, chat};

async fn status(gw: &common::Gateway) -> u16 {
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

async fn reloads(gw: &common::Gateway, result: &str) -> u64 {
    gw.metric(&format!(
        "cordon_config_reloads_total{{result=\"{result}\"}}"
    ))
    .await
    .map_or(0, |v| v as u64)
}

/// Polls `f` every 100 ms for up to 15 s.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..150 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn policy_changes_apply_and_invalid_ones_are_rejected_whole() {
    let eu = MockProvider::start("eu").await;
    let gw = GatewayBuilder::new()
        .provider("eu-host", &eu, r#""gpt-4o" = "gpt-4o""#, EU_TERMS)
        .tenant("acme", "[data]\nprocessing_in = [\"EEA\"]\n")
        .key("acme", None)
        .start()
        .await;
    assert_eq!(status(&gw).await, 200);
    let policy = gw.dir.path().join("policies/acme.toml");

    // A valid change: the tenant now objects to the only provider.
    std::fs::write(
        &policy,
        "tenant = \"acme\"\n[data]\nprocessing_in = [\"EEA\"]\nexclude_providers = [\"eu-host\"]\n",
    )
    .unwrap();
    eventually("the exclusion to apply", || async {
        status(&gw).await == 403
    })
    .await;
    assert_eq!(reloads(&gw, "success").await, 1);
    let served = eu.count();

    // An invalid change (unknown key) is rejected whole: the exclusion stays.
    std::fs::write(
        &policy,
        "tenant = \"acme\"\n[data]\nprocesing_in = [\"EEA\"]\n",
    )
    .unwrap();
    eventually("the failure to be counted", || async {
        reloads(&gw, "failure").await == 1
    })
    .await;
    assert_eq!(
        status(&gw).await,
        403,
        "the previous configuration must stay in force"
    );
    assert_eq!(
        eu.count(),
        served,
        "the excluded provider received a request"
    );
    let logs = gw.logs();
    assert!(
        logs.contains("acme.toml:3"),
        "the error names the file and line:\n{logs}"
    );

    // SIGHUP reloads on demand (here: the same valid files again).
    std::fs::write(
        &policy,
        "tenant = \"acme\"\n[data]\nprocessing_in = [\"EEA\"]\n",
    )
    .unwrap();
    eventually("the fixed policy to apply", || async {
        status(&gw).await == 200
    })
    .await;
    let before = reloads(&gw, "success").await;
    gw.signal("HUP");
    eventually("SIGHUP to reload", || async {
        reloads(&gw, "success").await == before + 1
    })
    .await;
}
