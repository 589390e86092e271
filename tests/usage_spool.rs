//! Invariant 5: usage is not lost. While the store cannot be written, requests
//! are still served, their records go to the local spool, and they reach the
//! store in order once it can be written again — here across a restart.

mod common;

use std::time::Duration;

use common::{EU_TERMS, GatewayBuilder, MockProvider, chat};
use sqlx::Connection;

async fn spool_lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

#[tokio::test]
async fn records_survive_an_unwritable_store_and_a_restart_in_order() {
    let eu = MockProvider::start("eu").await;
    let gw = GatewayBuilder::new()
        .provider("eu-host", &eu, r#""gpt-4o" = "gpt-4o""#, EU_TERMS)
        .tenant("acme", "")
        .key("acme", None)
        .start()
        .await;
    let spool = gw.dir.path().join("cordon-usage.spool");

    // Another connection takes the database's write lock and keeps it.
    let mut lock = sqlx::SqliteConnection::connect(&format!("sqlite://{}", gw.db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();

    // Requests are served while the store cannot take their records.
    for i in 0..5 {
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            common::http()
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(&gw.keys[0])
                .header("x-request-id", format!("spool-{i}"))
                .body(chat("gpt-4o", "hi").to_string())
                .send(),
        )
        .await
        .expect("the request path waited on the store")
        .unwrap();
        assert_eq!(resp.status(), 200);
    }

    // The writer gives up on the locked store and spools the five records.
    let mut waited = 0;
    while spool_lines(&spool).await < 5 {
        assert!(
            waited < 300,
            "records were not spooled; logs:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let metrics = common::http()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("cordon_usage_spool_depth 5"), "{metrics}");

    // Stop while the store is still locked: the spool keeps the records.
    let stopped = gw.stop_for_restart().await;
    assert_eq!(spool_lines(&spool).await, 5);
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();

    // On restart they are replayed, in order, and the spool is emptied.
    let gw = stopped.start().await;
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..100 {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", gw.db.display()))
            .await
            .unwrap();
        ids = sqlx::query_scalar("SELECT request_id FROM usage ORDER BY rowid")
            .fetch_all(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
        if ids.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected: Vec<String> = (0..5).map(|i| format!("spool-{i}")).collect();
    assert_eq!(ids, expected, "logs:\n{}", gw.logs());
    let mut waited = 0;
    while spool.exists() {
        assert!(waited < 100, "the drained spool file was not removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    gw.stop().await;
}
