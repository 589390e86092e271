//! Reading what a stopped gateway left on disk: usage rows straight from the
//! SQLite store, and byte searches over every file of its directory.

use std::path::{Path, PathBuf};

use sqlx::Row;

/// One stored usage record (the columns tests look at).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub request_id: String,
    pub tenant: String,
    pub key_id: String,
    pub endpoint: String,
    pub model: String,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub status: i64,
    pub outcome: String,
    pub attempts: i64,
    pub providers_tried: String,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub overhead_ms: f64,
    pub streamed: bool,
    pub client_api: String,
    pub provider_api: Option<String>,
}

/// Every usage row of the SQLite store at `db`, in insertion order.
pub async fn usage_rows(db: &Path) -> Vec<UsageRow> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT request_id, tenant, key_id, endpoint, model, provider, upstream_model, \
         prompt_tokens, completion_tokens, status, outcome, attempts, providers_tried, \
         latency_ms, ttft_ms, overhead_ms, streamed, client_api, provider_api FROM usage ORDER BY rowid",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let out = rows
        .iter()
        .map(|r| UsageRow {
            request_id: r.get("request_id"),
            tenant: r.get("tenant"),
            key_id: r.get("key_id"),
            endpoint: r.get("endpoint"),
            model: r.get("model"),
            provider: r.get("provider"),
            upstream_model: r.get("upstream_model"),
            prompt_tokens: r.get("prompt_tokens"),
            completion_tokens: r.get("completion_tokens"),
            status: r.get("status"),
            outcome: r.get("outcome"),
            attempts: r.get("attempts"),
            providers_tried: r.get("providers_tried"),
            latency_ms: r.get("latency_ms"),
            ttft_ms: r.get("ttft_ms"),
            overhead_ms: r.get("overhead_ms"),
            streamed: r.get("streamed"),
            client_api: r.get("client_api"),
            provider_api: r.get("provider_api"),
        })
        .collect();
    pool.close().await;
    out
}

/// The stored `hash` column of every key row.
pub async fn key_hashes(db: &Path) -> Vec<String> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows: Vec<(String,)> = sqlx::query_as("SELECT hash FROM keys ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.into_iter().map(|(h,)| h).collect()
}

/// Whether `needle` occurs in `hay`, byte for byte.
pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The files under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    super::files_under(dir)
        .into_iter()
        .filter(|p| contains_bytes(&std::fs::read(p).unwrap(), needle))
        .collect()
}
