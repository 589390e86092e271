//! Every store method, on both backends: SQLite in a temporary file, and
//! PostgreSQL in a schema of its own per test (dropped afterwards), so tests
//! can run in parallel against one server.
//!
//! PostgreSQL is `postgres://postgres@127.0.0.1:5432/test` unless
//! `CORDON_TEST_POSTGRES_URL` says otherwise. When it is unreachable the
//! PostgreSQL variants print why and pass — except when `CI=true`, where they
//! fail.

use std::time::Duration;

use super::error::describe;
use super::*;
use crate::audit::{self, ACTOR_CLI, GENESIS, NewAuditEntry, Outcome};
use crate::auth::key::NewKey;
use crate::auth::token::{NewToken, Role};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

// === harness ===

/// A store under test, and what to clean up after it.
struct TestDb {
    store: Store,
    /// The URL `store` was opened with (to open it again).
    url: String,
    /// Removes the database when dropped (a `TempDir` or a [`PgSchema`]).
    _cleanup: Box<dyn std::any::Any + Send>,
}

async fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cordon.db").display());
    let store = Store::connect(&url).await.unwrap();
    TestDb {
        store,
        url,
        _cleanup: Box::new(dir),
    }
}

/// A fresh schema on the test server, or `None` (with the reason printed)
/// when the server is unreachable outside CI.
async fn postgres_db() -> Option<TestDb> {
    let schema = PgSchema::create().await?;
    let url = schema.url();
    let store = Store::connect(&url).await.unwrap();
    Some(TestDb {
        store,
        url,
        _cleanup: Box::new(schema),
    })
}

fn pg_base_url() -> String {
    std::env::var_os("CORDON_TEST_POSTGRES_URL")
        .and_then(|v| v.into_string().ok())
        .unwrap_or_else(|| DEFAULT_PG_URL.to_owned())
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| v == "true")
}

/// A schema named `cordon_test_<random>`, dropped (with everything in it)
/// when this is dropped, even if the test panicked.
struct PgSchema {
    admin_url: String,
    name: String,
}

impl PgSchema {
    async fn create() -> Option<PgSchema> {
        let admin_url = pg_base_url();
        let admin = match PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            .connect(&admin_url)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let why = format!(
                    "PostgreSQL at {admin_url} is unreachable ({})",
                    describe(&e)
                );
                assert!(!in_ci(), "{why}; CI=true, so this is a failure");
                eprintln!("skipping the PostgreSQL variant of this test: {why}");
                return None;
            }
        };
        let name = format!("cordon_test_{:016x}", rand::random::<u64>());
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        Some(PgSchema { admin_url, name })
    }

    /// The test server's URL with `search_path` set to this schema.
    fn url(&self) -> String {
        let sep = if self.admin_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}options=-csearch_path%3D{}",
            self.admin_url, self.name
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on:
        // clean up from a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&url)
                    .await?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {name} CASCADE"
                )))
                .execute(&pool)
                .await?;
                pool.close().await;
                Ok::<(), sqlx::Error>(())
            })
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("could not drop test schema {}: {}", self.name, describe(&e));
        }
    }
}

/// Defines `mod $name { sqlite, postgres }`, each running `$body(&TestDb)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    let db = super::sqlite_db().await;
                    super::$name(&db).await;
                    db.store.close().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    let Some(db) = super::postgres_db().await else {
                        return;
                    };
                    super::$name(&db).await;
                    db.store.close().await;
                }
            }
        )*
    };
}

on_both_backends!(
    migrations_run_once_and_reopening_keeps_data,
    concurrent_starts_migrate_once,
    keys_insert_get_and_list,
    duplicate_key_id_is_reported_without_values,
    only_the_hex_hash_is_stored,
    revoke_sets_revoked_and_updated_once,
    updated_since_sees_new_keys_and_revocations,
    same_millisecond_writes_are_not_missed_with_the_overlap,
    touch_keys_moves_last_used_forward_only,
    usage_records_keep_every_field,
    usage_totals_group_and_filter,
    usage_totals_by_key_project_and_day,
    usage_batches_larger_than_one_insert,
    ping_answers_until_closed,
    key_scope_is_stored_and_read_back,
    admin_tokens_insert_get_list_revoke_touch,
    duplicate_admin_token_id_is_reported,
    admin_token_roles_and_tenants_are_checked_by_the_schema,
    audit_appends_number_and_link_entries,
    audit_entries_filter_by_time_and_tenant,
    audit_triggers_refuse_update_and_delete,
    concurrent_appends_from_two_stores_keep_one_chain,
    credentials_put_get_delete_and_sync,
    replace_credentials_is_all_or_none,
    credential_bytes_are_all_or_nothing,
);

// === fixtures ===

fn key(tenant: &str, created_ms: i64) -> KeyRow {
    let k = NewKey::generate();
    KeyRow {
        id: k.id,
        tenant: tenant.to_owned(),
        project: None,
        name: None,
        hash: k.hash,
        created_ms,
        expires_ms: None,
        revoked_ms: None,
        last_used_ms: None,
        scope: KeyScope::default(),
    }
}

fn usage(tenant: &str, time_ms: i64, model: &str, provider: Option<&str>) -> UsageRecord {
    UsageRecord {
        request_id: format!("req-{time_ms}").into(),
        time_ms,
        tenant: tenant.into(),
        project: None,
        key_id: "abcd1234".into(),
        endpoint: "chat.completions",
        model: model.into(),
        provider: provider.map(Into::into),
        upstream_model: provider.map(|_| format!("{model}-2024").into()),
        policy_version: Some("0123456789ab".into()),
        prompt_tokens: provider.map(|_| 10),
        completion_tokens: provider.map(|_| 5),
        status: if provider.is_some() { 200 } else { 403 },
        outcome: if provider.is_some() { "ok" } else { "refused" },
        attempts: u32::from(provider.is_some()),
        providers_tried: provider.unwrap_or("").into(),
        latency_ms: 12.5,
        ttft_ms: None,
        overhead_ms: 0.75,
        streamed: false,
        client_api: "openai",
        provider_api: provider.map(|_| "openai"),
    }
}

fn ids(rows: &[KeyRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    on_pool!(&store.pool, |p| {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(p)
            .await
            .unwrap()
    })
}

// === tests (run on both backends) ===

async fn migrations_run_once_and_reopening_keeps_data(db: &TestDb) {
    let k = key("acme", 1_000);
    db.store.insert_key(&k).await.unwrap();
    let again = Store::connect(&db.url).await.unwrap();
    assert_eq!(again.get_key(&k.id).await.unwrap(), Some(k));
    assert_eq!(
        count(&again, "SELECT COUNT(*) FROM _cordon_migrations").await,
        i64::try_from(MIGRATIONS.len()).unwrap()
    );
    again.close().await;
}

async fn concurrent_starts_migrate_once(db: &TestDb) {
    // `db` is already migrated; start from an empty database instead.
    let fresh: (String, Box<dyn std::any::Any + Send>) = match db.store.backend() {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
            (url, Box::new(dir))
        }
        Backend::Postgres => {
            let schema = PgSchema::create().await.unwrap();
            (schema.url(), Box::new(schema))
        }
    };
    let (url, _cleanup) = fresh;
    let starts = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { Store::connect(&url).await })
    });
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap().unwrap());
    }
    for s in &stores {
        assert_eq!(
            count(s, "SELECT COUNT(*) FROM _cordon_migrations").await,
            i64::try_from(MIGRATIONS.len()).unwrap()
        );
        s.ping().await.unwrap();
        s.close().await;
    }
}

async fn keys_insert_get_and_list(db: &TestDb) {
    let s = &db.store;
    let mut a = key("acme", 2_000);
    a.project = Some("research".to_owned());
    a.name = Some("ci bot".to_owned());
    a.expires_ms = Some(9_000);
    let b = key("acme", 1_000);
    let other = key("globex", 1_500);
    for k in [&a, &b, &other] {
        s.insert_key(k).await.unwrap();
    }
    assert_eq!(s.get_key(&a.id).await.unwrap().as_ref(), Some(&a));
    assert_eq!(
        s.get_key(&KeyId::parse("zzzzzzzz").unwrap()).await.unwrap(),
        None
    );
    let listed = s.list_keys("acme").await.unwrap();
    assert_eq!(ids(&listed), [b.id.as_str(), a.id.as_str()], "oldest first");
    assert_eq!(listed[1], a);
    assert_eq!(s.list_keys("globex").await.unwrap(), [other]);
    assert!(s.list_keys("nobody").await.unwrap().is_empty());
}

async fn duplicate_key_id_is_reported_without_values(db: &TestDb) {
    let k = key("acme", 1_000);
    db.store.insert_key(&k).await.unwrap();
    let mut clash = key("acme", 2_000);
    clash.id = k.id.clone();
    let err = db.store.insert_key(&clash).await.unwrap_err();
    assert_eq!(err, StoreError::DuplicateKey);
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(&clash.hash.to_hex()), "{text}");
        assert!(!text.contains(&k.hash.to_hex()), "{text}");
    }
}

async fn only_the_hex_hash_is_stored(db: &TestDb) {
    let new = NewKey::generate();
    let row = KeyRow {
        id: new.id.clone(),
        hash: new.hash,
        ..key("acme", 1_000)
    };
    db.store.insert_key(&row).await.unwrap();
    let stored: String = on_pool!(&db.store.pool, |p| {
        sqlx::query_scalar("SELECT hash FROM keys WHERE id = $1")
            .bind(new.id.as_str())
            .fetch_one(p)
            .await
            .unwrap()
    });
    assert_eq!(stored, new.hash.to_hex());
    assert!(!new.raw.expose().contains(&stored));
    // The column itself refuses anything but a lower-case hex digest, such as
    // a raw key written by mistake; the error names the constraint, not the value.
    let raw = new.raw.expose().clone();
    let err = on_pool!(&db.store.pool, |p| {
        sqlx::query(
            "INSERT INTO keys (id, tenant, hash, created_ms, updated_ms) \
             VALUES ('rawrawra', 'acme', $1, 0, 0)",
        )
        .bind(raw.as_str())
        .execute(p)
        .await
        .map(drop)
        .unwrap_err()
    });
    let err = StoreError::db("test")(err);
    assert!(err.to_string().contains("check constraint"), "{err}");
    assert!(!err.to_string().contains(&raw), "{err}");
}

async fn revoke_sets_revoked_and_updated_once(db: &TestDb) {
    let s = &db.store;
    let k = key("acme", 1_000);
    s.insert_key(&k).await.unwrap();
    assert!(s.revoke_key(&k.id, 5_000).await.unwrap());
    assert!(
        !s.revoke_key(&k.id, 6_000).await.unwrap(),
        "already revoked"
    );
    assert!(
        !s.revoke_key(&KeyId::parse("zzzzzzzz").unwrap(), 5_000)
            .await
            .unwrap(),
        "unknown id"
    );
    let got = s.get_key(&k.id).await.unwrap().unwrap();
    assert_eq!(got.revoked_ms, Some(5_000), "the first revocation is kept");
    assert_eq!(
        ids(&s.keys_updated_since(5_000).await.unwrap()),
        [k.id.as_str()]
    );
    assert!(s.keys_updated_since(5_001).await.unwrap().is_empty());
}

async fn updated_since_sees_new_keys_and_revocations(db: &TestDb) {
    let s = &db.store;
    let a = key("acme", 1_000);
    let b = key("globex", 2_000);
    s.insert_key(&a).await.unwrap();
    s.insert_key(&b).await.unwrap();
    let all = s.keys_updated_since(i64::MIN).await.unwrap();
    assert_eq!(ids(&all), [a.id.as_str(), b.id.as_str()], "by updated_ms");
    assert_eq!(
        ids(&s.keys_updated_since(1_500).await.unwrap()),
        [b.id.as_str()]
    );
    assert_eq!(
        ids(&s.keys_updated_since(2_000).await.unwrap()),
        [b.id.as_str()],
        "the bound is inclusive"
    );
    s.revoke_key(&a.id, 3_000).await.unwrap();
    let changed = s.keys_updated_since(2_500).await.unwrap();
    assert_eq!(ids(&changed), [a.id.as_str()]);
    assert_eq!(changed[0].revoked_ms, Some(3_000));
    assert_eq!(changed[0].tenant, "acme");
}

async fn same_millisecond_writes_are_not_missed_with_the_overlap(db: &TestDb) {
    let s = &db.store;
    // A cache polls at t = 10_000 and sees key `a`, written at 10_000 too.
    let a = key("acme", 10_000);
    s.insert_key(&a).await.unwrap();
    let poll_started = 10_000;
    let first = s
        .keys_updated_since(next_key_sync_since(None))
        .await
        .unwrap();
    assert_eq!(ids(&first), [a.id.as_str()]);
    // After that poll, a second write stamped in the same millisecond commits,
    // and a revocation stamped a little earlier (slow commit or a replica
    // whose clock lags) commits as well.
    let b = key("acme", 10_000);
    s.insert_key(&b).await.unwrap();
    s.revoke_key(&a.id, 9_000).await.unwrap();
    // An exclusive bound at the last poll's time misses both…
    let naive: Vec<KeyRow> = s.keys_updated_since(poll_started + 1).await.unwrap();
    assert!(naive.is_empty());
    // …the overlapping window sees both.
    let next = s
        .keys_updated_since(next_key_sync_since(Some(poll_started)))
        .await
        .unwrap();
    let mut seen = ids(&next);
    seen.sort_unstable();
    let mut want = vec![a.id.as_str(), b.id.as_str()];
    want.sort_unstable();
    assert_eq!(seen, want);
    assert!(
        next.iter()
            .any(|r| r.id == a.id && r.revoked_ms == Some(9_000))
    );
}

async fn touch_keys_moves_last_used_forward_only(db: &TestDb) {
    let s = &db.store;
    let a = key("acme", 1_000);
    let b = key("acme", 1_000);
    s.insert_key(&a).await.unwrap();
    s.insert_key(&b).await.unwrap();
    s.touch_keys(&[]).await.unwrap();
    s.touch_keys(&[
        (a.id.clone(), 5_000),
        (b.id.clone(), 6_000),
        (KeyId::parse("zzzzzzzz").unwrap(), 7_000),
    ])
    .await
    .unwrap();
    // A replica flushing late, with an older time, does not move it back.
    s.touch_keys(&[(a.id.clone(), 4_000), (b.id.clone(), 8_000)])
        .await
        .unwrap();
    let last_used = |k: Option<KeyRow>| k.unwrap().last_used_ms;
    assert_eq!(last_used(s.get_key(&a.id).await.unwrap()), Some(5_000));
    assert_eq!(last_used(s.get_key(&b.id).await.unwrap()), Some(8_000));
    assert!(
        s.keys_updated_since(1_001).await.unwrap().is_empty(),
        "use is not a change the key cache needs"
    );
}

async fn usage_records_keep_every_field(db: &TestDb) {
    let r = UsageRecord {
        request_id: "req-1".into(),
        time_ms: 1_700_000_000_123,
        tenant: "acme".into(),
        project: Some("research".into()),
        key_id: "abcd1234".into(),
        endpoint: "messages",
        model: "claude-x".into(),
        provider: Some("anthropic-eu".into()),
        upstream_model: Some("claude-x-2025".into()),
        policy_version: Some("0123456789ab".into()),
        prompt_tokens: Some(1_234),
        completion_tokens: Some(56),
        status: 200,
        outcome: "ok",
        attempts: 2,
        providers_tried: "openai-eu,anthropic-eu".into(),
        latency_ms: 812.25,
        ttft_ms: Some(120.5),
        overhead_ms: 1.25,
        streamed: true,
        client_api: "anthropic",
        provider_api: Some("openai"),
    };
    // The other shape: every optional field empty, a whole-number latency,
    // text that JSON must escape.
    let bare = UsageRecord {
        request_id: "req-2".into(),
        tenant: "t \"quoted\" \\ é ✓".into(),
        project: None,
        provider: None,
        upstream_model: None,
        policy_version: None,
        prompt_tokens: None,
        completion_tokens: None,
        outcome: "refused",
        attempts: 0,
        providers_tried: "".into(),
        latency_ms: 3.0,
        ttft_ms: None,
        overhead_ms: 0.0,
        streamed: false,
        provider_api: None,
        ..r.clone()
    };
    db.store.insert_usage(&[]).await.unwrap();
    db.store
        .insert_usage(&[r.clone(), bare.clone()])
        .await
        .unwrap();
    for r in [r, bare] {
        assert_usage_row(db, &r).await;
    }
}

/// The stored row of `r.request_id` holds exactly `r`'s fields.
async fn assert_usage_row(db: &TestDb, r: &UsageRecord) {
    type Head = (String, i64, String, Option<String>, String, String, String);
    type Mid = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        i32,
    );
    type Tail = (
        String,
        i64,
        String,
        f64,
        Option<f64>,
        f64,
        bool,
        String,
        Option<String>,
    );
    let id: &str = &r.request_id;
    let (head, mid, tail): (Head, Mid, Tail) = on_pool!(&db.store.pool, |p| {
        (
            sqlx::query_as(
                "SELECT request_id, time_ms, tenant, project, key_id, endpoint, model FROM usage \
                 WHERE request_id = $1",
            )
            .bind(id)
            .fetch_one(p)
            .await
            .unwrap(),
            sqlx::query_as(
                "SELECT provider, upstream_model, policy_version, prompt_tokens, \
                 completion_tokens, status FROM usage WHERE request_id = $1",
            )
            .bind(id)
            .fetch_one(p)
            .await
            .unwrap(),
            sqlx::query_as(
                "SELECT outcome, attempts, providers_tried, latency_ms, ttft_ms, overhead_ms, \
                 streamed, client_api, provider_api FROM usage WHERE request_id = $1",
            )
            .bind(id)
            .fetch_one(p)
            .await
            .unwrap(),
        )
    });
    assert_eq!(
        head,
        (
            r.request_id.to_string(),
            r.time_ms,
            r.tenant.to_string(),
            r.project.as_deref().map(str::to_owned),
            r.key_id.to_string(),
            r.endpoint.to_owned(),
            r.model.to_string()
        )
    );
    assert_eq!(
        mid,
        (
            r.provider.as_deref().map(str::to_owned),
            r.upstream_model.as_deref().map(str::to_owned),
            r.policy_version.as_deref().map(str::to_owned),
            r.prompt_tokens,
            r.completion_tokens,
            i32::from(r.status)
        )
    );
    assert_eq!(
        tail,
        (
            r.outcome.to_owned(),
            i64::from(r.attempts),
            r.providers_tried.to_string(),
            r.latency_ms,
            r.ttft_ms,
            r.overhead_ms,
            r.streamed,
            r.client_api.to_owned(),
            r.provider_api.map(str::to_owned)
        )
    );
}

async fn usage_totals_group_and_filter(db: &TestDb) {
    let s = &db.store;
    let records = [
        usage("acme", 1_000, "gpt-4o", Some("azure-fr")),
        usage("acme", 1_500, "gpt-4o", Some("openai-us")),
        usage("acme", 2_000, "mistral-large", Some("azure-fr")),
        usage("acme", 2_500, "gpt-4o", None), // refused
        usage("acme", 3_000, "gpt-4o", Some("azure-fr")), // == until: excluded
        usage("globex", 1_200, "gpt-4o", Some("azure-fr")),
    ];
    s.insert_usage(&records).await.unwrap();
    let q = |tenant: Option<&str>, group_by| UsageQuery {
        tenant: tenant.map(str::to_owned),
        since_ms: 1_000,
        until_ms: 3_000,
        group_by,
    };
    let total = |group: &str, requests, prompt_tokens, completion_tokens, refused| UsageTotal {
        group: group.to_owned(),
        requests,
        prompt_tokens,
        completion_tokens,
        refused,
    };
    assert_eq!(
        s.usage_totals(&q(Some("acme"), GroupBy::Model))
            .await
            .unwrap(),
        [
            total("gpt-4o", 3, 20, 10, 1),
            total("mistral-large", 1, 10, 5, 0)
        ]
    );
    assert_eq!(
        s.usage_totals(&q(Some("acme"), GroupBy::Provider))
            .await
            .unwrap(),
        [
            total(NO_PROVIDER, 1, 0, 0, 1),
            total("azure-fr", 2, 20, 10, 0),
            total("openai-us", 1, 10, 5, 0),
        ]
    );
    assert_eq!(
        s.usage_totals(&q(Some("acme"), GroupBy::None))
            .await
            .unwrap(),
        [total(ALL, 4, 30, 15, 1)]
    );
    assert_eq!(
        s.usage_totals(&q(None, GroupBy::None)).await.unwrap(),
        [total(ALL, 5, 40, 20, 1)],
        "every tenant"
    );
    let later = UsageQuery {
        since_ms: 2_000,
        ..q(Some("acme"), GroupBy::None)
    };
    assert_eq!(
        s.usage_totals(&later).await.unwrap(),
        [total(ALL, 2, 10, 5, 1)],
        "since is inclusive"
    );
    assert!(
        s.usage_totals(&q(Some("nobody"), GroupBy::None))
            .await
            .unwrap()
            .is_empty(),
        "no requests, no groups"
    );
}

async fn usage_totals_by_key_project_and_day(db: &TestDb) {
    let s = &db.store;
    // 2026-01-01 00:00 UTC, and a day in 1969 (before the epoch).
    let jan1 = 1_767_225_600_000;
    let record = |time_ms, key: &str, project: Option<&str>, provider| UsageRecord {
        key_id: key.into(),
        project: project.map(Into::into),
        request_id: format!("req-{key}-{time_ms}").into(),
        ..usage("acme", time_ms, "gpt-4o", provider)
    };
    let records = [
        record(jan1, "key00001", Some("research"), Some("azure-fr")),
        record(jan1 + 86_399_999, "key00001", None, Some("azure-fr")),
        record(jan1 + 86_400_000, "key00002", Some("research"), None),
        record(
            jan1 + 10 * 86_400_000,
            "key00002",
            Some("ops"),
            Some("azure-fr"),
        ),
        record(-1, "key00003", None, Some("azure-fr")),
        record(-86_400_000, "key00003", None, Some("azure-fr")),
        UsageRecord {
            tenant: "globex".into(),
            ..record(jan1, "key00009", None, Some("azure-fr"))
        },
    ];
    s.insert_usage(&records).await.unwrap();
    let q = |group_by| UsageQuery {
        tenant: Some("acme".to_owned()),
        since_ms: i64::MIN,
        until_ms: i64::MAX,
        group_by,
    };
    let total = |group: &str, requests, prompt_tokens, completion_tokens, refused| UsageTotal {
        group: group.to_owned(),
        requests,
        prompt_tokens,
        completion_tokens,
        refused,
    };
    assert_eq!(
        s.usage_totals(&q(GroupBy::Key)).await.unwrap(),
        [
            total("key00001", 2, 20, 10, 0),
            total("key00002", 2, 10, 5, 1),
            total("key00003", 2, 20, 10, 0),
        ]
    );
    assert_eq!(
        s.usage_totals(&q(GroupBy::Project)).await.unwrap(),
        [
            total(NO_PROJECT, 3, 30, 15, 0),
            total("ops", 1, 10, 5, 0),
            total("research", 2, 10, 5, 1),
        ]
    );
    assert_eq!(
        s.usage_totals(&q(GroupBy::Day)).await.unwrap(),
        [
            total("1969-12-31", 2, 20, 10, 0),
            total("2026-01-01", 2, 20, 10, 0),
            total("2026-01-02", 1, 0, 0, 1),
            total("2026-01-11", 1, 10, 5, 0),
        ],
        "UTC days in date order; the last millisecond of a day is in it"
    );
    let january = UsageQuery {
        since_ms: jan1,
        until_ms: jan1 + 86_400_000,
        ..q(GroupBy::Day)
    };
    assert_eq!(
        s.usage_totals(&january).await.unwrap(),
        [total("2026-01-01", 2, 20, 10, 0)],
        "until is exclusive"
    );
    let every_tenant = UsageQuery {
        tenant: None,
        ..q(GroupBy::Key)
    };
    assert_eq!(s.usage_totals(&every_tenant).await.unwrap().len(), 4);
}

async fn usage_batches_larger_than_one_insert(db: &TestDb) {
    // Two full statements and a rest of 64 + 16 + 4 + 2 + 1.
    let n = USAGE_ROWS_PER_INSERT * 2 + 87;
    let records: Vec<UsageRecord> = (0..n)
        .map(|i| usage("acme", i64::try_from(i).unwrap(), "m", Some("p")))
        .collect();
    db.store.insert_usage(&records).await.unwrap();
    let totals = db
        .store
        .usage_totals(&UsageQuery {
            tenant: Some("acme".to_owned()),
            since_ms: 0,
            until_ms: i64::MAX,
            group_by: GroupBy::None,
        })
        .await
        .unwrap();
    assert_eq!(totals[0].requests, i64::try_from(n).unwrap());
    let distinct = count(&db.store, "SELECT COUNT(DISTINCT time_ms) FROM usage").await;
    assert_eq!(distinct, i64::try_from(n).unwrap(), "each record once");
}

async fn ping_answers_until_closed(db: &TestDb) {
    let other = Store::connect(&db.url).await.unwrap();
    other.ping().await.unwrap();
    other.close().await;
    let err = other.ping().await.unwrap_err();
    assert!(err.to_string().contains("ping"), "{err}");
}

fn token(role: Role, tenant: Option<&str>, created_ms: i64) -> AdminTokenRow {
    let t = NewToken::generate();
    AdminTokenRow {
        id: t.id,
        role,
        tenant: tenant.map(str::to_owned),
        name: None,
        hash: t.hash,
        created_ms,
        expires_ms: None,
        revoked_ms: None,
        last_used_ms: None,
    }
}

fn audit_entry(time_ms: i64, tenant: Option<&str>, target: &str) -> NewAuditEntry {
    NewAuditEntry::new(time_ms, ACTOR_CLI, "key.create", Outcome::Success)
        .tenant(tenant)
        .target(target)
}

fn sealed(byte: u8, key_id: &str) -> Sealed {
    Sealed {
        nonce: vec![byte; 12],
        ciphertext: vec![byte, 0, 255, byte],
        master_key_id: key_id.to_owned(),
    }
}

fn credential(tenant: &str, provider: &str, byte: u8, updated_ms: i64) -> CredentialRow {
    CredentialRow {
        tenant: tenant.to_owned(),
        provider: provider.to_owned(),
        sealed: Some(sealed(byte, "k1")),
        updated_ms,
    }
}

/// Every entry of the log, in order, read one small page at a time.
async fn whole_log(store: &Store) -> Vec<audit::AuditEntry> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &audit::AuditEntry| e.seq);
        let page = store.audit_page(after, 3).await.unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Runs `sql` and returns the error it must fail with, as cordon reports it.
async fn refused(store: &Store, sql: &'static str) -> String {
    let err = on_pool!(&store.pool, |p| {
        sqlx::query(sql).execute(p).await.map(drop).unwrap_err()
    });
    let message = match &err {
        sqlx::Error::Database(d) => d.message().to_owned(),
        other => other.to_string(),
    };
    format!("{} / {message}", describe(&err))
}

async fn key_scope_is_stored_and_read_back(db: &TestDb) {
    let s = &db.store;
    let mut scoped = key("acme", 1_000);
    scoped.scope = KeyScope {
        models: Some(vec!["gpt-4o*".to_owned(), "claude-*".to_owned()]),
        rpm: Some(60),
    };
    let plain = key("acme", 2_000);
    s.insert_key(&scoped).await.unwrap();
    s.insert_key(&plain).await.unwrap();
    assert_eq!(s.get_key(&scoped.id).await.unwrap().as_ref(), Some(&scoped));
    assert_eq!(s.list_keys("acme").await.unwrap(), [scoped.clone(), plain]);
    assert_eq!(
        s.keys_updated_since(i64::MIN).await.unwrap()[0].scope,
        scoped.scope
    );
    let stored: Option<String> = on_pool!(&s.pool, |p| {
        sqlx::query_scalar("SELECT allowed_models FROM keys WHERE id = $1")
            .bind(scoped.id.as_str())
            .fetch_one(p)
            .await
            .unwrap()
    });
    assert_eq!(stored.as_deref(), Some(r#"["gpt-4o*","claude-*"]"#));
    let err = refused(
        s,
        "INSERT INTO keys (id, tenant, hash, created_ms, updated_ms, rpm) VALUES          ('zerorpm0', 'acme', '0000000000000000000000000000000000000000000000000000000000000000', 0, 0, 0)",
    )
    .await;
    assert!(err.contains("check constraint"), "{err}");
}

async fn admin_tokens_insert_get_list_revoke_touch(db: &TestDb) {
    let s = &db.store;
    let mut admin = token(Role::PlatformAdmin, None, 2_000);
    admin.name = Some("ops".to_owned());
    admin.expires_ms = Some(9_000);
    let tenant = token(Role::TenantAdmin, Some("acme"), 1_000);
    let auditor = token(Role::Auditor, None, 3_000);
    let viewer = token(Role::Viewer, Some("globex"), 3_000);
    for t in [&admin, &tenant, &auditor, &viewer] {
        s.insert_admin_token(t).await.unwrap();
    }
    assert_eq!(
        s.get_admin_token(&admin.id).await.unwrap().as_ref(),
        Some(&admin)
    );
    assert_eq!(
        s.get_admin_token(&KeyId::parse("zzzzzzzz").unwrap())
            .await
            .unwrap(),
        None
    );
    let listed = s.list_admin_tokens().await.unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0], tenant, "oldest first");
    assert_eq!(listed[1], admin);
    assert!(listed.contains(&viewer) && listed.contains(&auditor));

    assert!(s.revoke_admin_token(&tenant.id, 5_000).await.unwrap());
    assert!(!s.revoke_admin_token(&tenant.id, 6_000).await.unwrap());
    assert!(
        !s.revoke_admin_token(&KeyId::parse("zzzzzzzz").unwrap(), 5_000)
            .await
            .unwrap()
    );
    let got = s.get_admin_token(&tenant.id).await.unwrap().unwrap();
    assert_eq!(got.revoked_ms, Some(5_000), "the first revocation is kept");

    s.touch_admin_token(&admin.id, 7_000).await.unwrap();
    s.touch_admin_token(&admin.id, 6_500).await.unwrap();
    s.touch_admin_token(&KeyId::parse("zzzzzzzz").unwrap(), 1)
        .await
        .unwrap();
    let got = s.get_admin_token(&admin.id).await.unwrap().unwrap();
    assert_eq!(got.last_used_ms, Some(7_000), "moves forward only");
}

async fn duplicate_admin_token_id_is_reported(db: &TestDb) {
    let t = token(Role::Auditor, None, 1);
    db.store.insert_admin_token(&t).await.unwrap();
    let clash = AdminTokenRow {
        id: t.id.clone(),
        ..token(Role::PlatformAdmin, None, 2)
    };
    let err = db.store.insert_admin_token(&clash).await.unwrap_err();
    assert_eq!(err, StoreError::DuplicateToken);
    assert!(!format!("{err} {err:?}").contains(&clash.hash.to_hex()));
}

async fn admin_token_roles_and_tenants_are_checked_by_the_schema(db: &TestDb) {
    // Through the API: a tenant-scoped role without a tenant, and the reverse.
    for bad in [
        token(Role::TenantAdmin, None, 1),
        token(Role::Viewer, None, 1),
        token(Role::PlatformAdmin, Some("acme"), 1),
        token(Role::Auditor, Some("acme"), 1),
    ] {
        let err = db.store.insert_admin_token(&bad).await.unwrap_err();
        assert!(err.to_string().contains("check constraint"), "{err}");
    }
    // Directly: an unknown role, and a hash that is not a hex digest.
    let err = refused(
        &db.store,
        "INSERT INTO admin_tokens (id, role, hash, created_ms)          VALUES ('abcdefgh', 'root', '0000000000000000000000000000000000000000000000000000000000000000', 0)",
    )
    .await;
    assert!(err.contains("check constraint"), "{err}");
    let err = refused(
        &db.store,
        "INSERT INTO admin_tokens (id, role, hash, created_ms)          VALUES ('abcdefgh', 'auditor', 'cdnadm_raw_secret', 0)",
    )
    .await;
    assert!(err.contains("check constraint"), "{err}");
}

async fn audit_appends_number_and_link_entries(db: &TestDb) {
    let s = &db.store;
    assert!(whole_log(s).await.is_empty());
    let first = s
        .append_audit(&audit_entry(1_000, Some("acme"), "k1").detail("project", "research"))
        .await
        .unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(first.prev_hash, GENESIS);
    let mut last = first.clone();
    for i in 2..=7 {
        let e = s
            .append_audit(&audit_entry(1_000 + i, None, &format!("k{i}")))
            .await
            .unwrap();
        assert_eq!(e.seq, i);
        assert_eq!(e.prev_hash, last.hash);
        last = e;
    }
    let log = whole_log(s).await;
    assert_eq!(log.len(), 7);
    assert_eq!(log[0], first, "stored exactly as returned");
    assert_eq!(log[6], last);
    let verified = audit::verify(log).unwrap();
    assert_eq!((verified.count, verified.last_hash), (7, last.hash));
    // Reopening continues the same chain.
    let again = Store::connect(&db.url).await.unwrap();
    let next = again
        .append_audit(&audit_entry(2_000, None, "k8"))
        .await
        .unwrap();
    assert_eq!((next.seq, next.prev_hash), (8, last.hash));
    again.close().await;
}

async fn audit_entries_filter_by_time_and_tenant(db: &TestDb) {
    let s = &db.store;
    for (t, tenant) in [
        (1_000, Some("acme")),
        (2_000, Some("globex")),
        (3_000, None),
        (4_000, Some("acme")),
        (5_000, Some("acme")),
    ] {
        s.append_audit(&audit_entry(t, tenant, "x")).await.unwrap();
    }
    let seqs = |v: Vec<audit::AuditEntry>| v.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(s.audit_entries(i64::MIN, None, 100).await.unwrap()),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        seqs(s.audit_entries(2_000, None, 100).await.unwrap()),
        [2, 3, 4, 5],
        "since is inclusive"
    );
    assert_eq!(
        seqs(s.audit_entries(2_000, Some("acme"), 100).await.unwrap()),
        [4, 5]
    );
    assert_eq!(
        seqs(s.audit_entries(0, Some("acme"), 2).await.unwrap()),
        [1, 4],
        "the oldest `limit`, ascending"
    );
    assert!(
        s.audit_entries(0, Some("nobody"), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn audit_triggers_refuse_update_and_delete(db: &TestDb) {
    let s = &db.store;
    s.append_audit(&audit_entry(1, Some("acme"), "a"))
        .await
        .unwrap();
    s.append_audit(&audit_entry(2, Some("acme"), "b"))
        .await
        .unwrap();
    let mut statements = vec![
        "UPDATE audit SET actor = 'someone else' WHERE seq = 1",
        "UPDATE audit SET detail = NULL",
        "DELETE FROM audit WHERE seq = 2",
        "DELETE FROM audit",
    ];
    if s.backend() == Backend::Postgres {
        statements.push("TRUNCATE audit");
    }
    for sql in statements {
        let err = refused(s, sql).await;
        assert!(err.contains("audit log is append-only"), "{sql}: {err}");
    }
    let log = whole_log(s).await;
    assert_eq!(log.len(), 2, "nothing changed");
    assert_eq!(log[0].actor, ACTOR_CLI);
    audit::verify(log).unwrap();
}

async fn concurrent_appends_from_two_stores_keep_one_chain(db: &TestDb) {
    // A second pool on the same database: another process, as far as the
    // database can tell.
    let other = Store::connect(&db.url).await.unwrap();
    let per_task = 10;
    let mut tasks = Vec::new();
    for (n, store) in [db.store.clone(), other.clone()]
        .into_iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..per_task {
                let e = store
                    .append_audit(&audit_entry(i, None, &format!("task{n}")))
                    .await
                    .unwrap();
                seqs.push(e.seq);
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort_unstable();
    let total = 6 * per_task;
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "no duplicate, no gap"
    );
    let verified = audit::verify(whole_log(&db.store).await).unwrap();
    assert_eq!(verified.count, u64::try_from(total).unwrap());
    other.close().await;
}

async fn credentials_put_get_delete_and_sync(db: &TestDb) {
    let s = &db.store;
    let a = credential("acme", "openai-eu", 1, 1_000);
    let b = credential("acme", "anthropic", 2, 2_000);
    let c = credential("globex", "openai-eu", 3, 3_000);
    for row in [&a, &b, &c] {
        s.put_credential(row).await.unwrap();
    }
    assert_eq!(
        s.get_credential("acme", "openai-eu")
            .await
            .unwrap()
            .as_ref(),
        Some(&a)
    );
    assert_eq!(s.get_credential("acme", "nope").await.unwrap(), None);
    // A put replaces the tenant's credential for that provider.
    let a2 = CredentialRow {
        sealed: Some(sealed(9, "k2")),
        updated_ms: 4_000,
        ..a.clone()
    };
    s.put_credential(&a2).await.unwrap();
    assert_eq!(
        s.get_credential("acme", "openai-eu")
            .await
            .unwrap()
            .as_ref(),
        Some(&a2)
    );

    assert!(
        s.delete_credential("acme", "anthropic", 5_000)
            .await
            .unwrap()
    );
    assert!(
        !s.delete_credential("acme", "anthropic", 6_000)
            .await
            .unwrap(),
        "already deleted"
    );
    assert!(!s.delete_credential("acme", "never", 6_000).await.unwrap());
    assert_eq!(s.get_credential("acme", "anthropic").await.unwrap(), None);

    // Replicas see changes, deletions included, by `updated_ms`.
    let changed = s.credentials_updated_since(3_500).await.unwrap();
    assert_eq!(
        changed,
        [
            a2.clone(),
            CredentialRow {
                tenant: "acme".to_owned(),
                provider: "anthropic".to_owned(),
                sealed: None,
                updated_ms: 5_000,
            },
        ]
    );
    assert_eq!(
        s.credentials_updated_since(i64::MIN).await.unwrap().len(),
        3
    );
    // Only live credentials, by tenant and provider.
    assert_eq!(s.all_credentials().await.unwrap(), [a2.clone(), c.clone()]);
    // A deleted credential can be set again.
    s.put_credential(&b).await.unwrap();
    assert_eq!(s.all_credentials().await.unwrap().len(), 3);
}

async fn replace_credentials_is_all_or_none(db: &TestDb) {
    let s = &db.store;
    let a = credential("acme", "p1", 1, 1_000);
    let b = credential("acme", "p2", 2, 1_000);
    s.put_credential(&a).await.unwrap();
    s.put_credential(&b).await.unwrap();
    s.replace_credentials(&[]).await.unwrap();
    let reseal = |rows: &[CredentialRow], byte: u8, key_id: &str, updated_ms: i64| {
        rows.iter()
            .map(|r| {
                let new = CredentialRow {
                    sealed: Some(sealed(byte, key_id)),
                    updated_ms,
                    ..r.clone()
                };
                (r.clone(), new)
            })
            .collect::<Vec<_>>()
    };
    let pairs = reseal(&[a.clone(), b.clone()], 7, "k2", 2_000);
    s.replace_credentials(&pairs).await.unwrap();
    let rotated: Vec<CredentialRow> = pairs.into_iter().map(|(_, new)| new).collect();
    assert_eq!(s.all_credentials().await.unwrap(), rotated);

    // Replacing what was read before: the rows no longer hold it.
    let stale = reseal(&[a.clone(), b.clone()], 9, "k3", 3_000);
    assert_eq!(
        s.replace_credentials(&stale).await.unwrap_err(),
        StoreError::CredentialChanged
    );
    assert_eq!(s.all_credentials().await.unwrap(), rotated);

    // One of the rows was set again meanwhile (a tenant's new key): nothing
    // changes, and the new key is not overwritten by the older one.
    let again = reseal(&rotated, 8, "k3", 4_000);
    let p1_new = credential("acme", "p1", 5, 3_500);
    s.put_credential(&p1_new).await.unwrap();
    assert_eq!(
        s.replace_credentials(&again).await.unwrap_err(),
        StoreError::CredentialChanged
    );
    assert_eq!(
        s.all_credentials().await.unwrap(),
        [p1_new.clone(), rotated[1].clone()]
    );

    // One of the rows was deleted meanwhile: nothing changes, and the deleted
    // one is not brought back.
    let again = reseal(&[p1_new.clone(), rotated[1].clone()], 8, "k3", 4_000);
    s.delete_credential("acme", "p2", 3_600).await.unwrap();
    assert_eq!(
        s.replace_credentials(&again).await.unwrap_err(),
        StoreError::CredentialChanged
    );
    assert_eq!(s.all_credentials().await.unwrap(), [p1_new]);
    assert_eq!(s.get_credential("acme", "p2").await.unwrap(), None);
}

async fn credential_bytes_are_all_or_nothing(db: &TestDb) {
    let err = refused(
        &db.store,
        "INSERT INTO credentials (tenant, provider, nonce, ciphertext, master_key_id, updated_ms)          VALUES ('acme', 'p', NULL, NULL, 'k1', 0)",
    )
    .await;
    assert!(err.contains("check constraint"), "{err}");
}

// === single-backend tests ===

#[test]
fn sealed_credentials_debug_as_lengths() {
    let row = CredentialRow {
        sealed: Some(Sealed {
            nonce: vec![0xAB; 12],
            ciphertext: b"ciphertext-canary-bytes".to_vec(),
            master_key_id: "0123abcd".to_owned(),
        }),
        ..credential("acme", "p", 0, 0)
    };
    let text = format!("{row:?}");
    assert!(text.contains("ciphertext_len: 23"), "{text}");
    assert!(text.contains("nonce_len: 12"), "{text}");
    assert!(!text.contains("171"), "no nonce bytes: {text}");
    assert!(!text.contains("99, 105"), "no ciphertext bytes: {text}");
}

/// Any batch is stored through at most eight statement texts, in order, each
/// record once.
#[test]
fn usage_chunks_are_power_of_two_sizes_in_order() {
    let mut sizes_seen = std::collections::BTreeSet::new();
    for n in 0..=3 * USAGE_ROWS_PER_INSERT + 5 {
        let records: Vec<usize> = (0..n).collect();
        let chunks: Vec<&[usize]> = super::usage_chunks(&records).collect();
        assert_eq!(chunks.concat(), records, "{n} records");
        for c in &chunks {
            assert!(c.len().is_power_of_two() && c.len() <= USAGE_ROWS_PER_INSERT);
            sizes_seen.insert(c.len());
        }
        let rest = chunks.iter().filter(|c| c.len() < USAGE_ROWS_PER_INSERT);
        assert!(rest.count() <= 7, "{n} records: {chunks:?}");
    }
    assert_eq!(sizes_seen.len(), 8, "{sizes_seen:?}");
}

/// SQLite's connection threads run at nice 10 (`priority.rs`); the thread
/// that opened the store keeps its own. Other tests open stores at the same
/// time, so a thread may be seen between its start and its lowering, or
/// after it ended: the check is repeated until every named thread that still
/// exists is lowered, which never happens without the feature.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn sqlite_threads_run_below_the_request_threads() {
    use rustix::process::{Pid, getpriority_process};
    let own = getpriority_process(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("p.db").display()))
        .await
        .unwrap();
    store.ping().await.unwrap();
    let unlowered = || {
        let threads = priority::threads_named(priority::SQLITE_THREAD);
        assert!(!threads.is_empty(), "sqlx's threads carry cordon's name");
        threads
            .into_iter()
            .filter_map(|tid| Some((tid, getpriority_process(Pid::from_raw(tid)).ok()?)))
            .filter(|(_, nice)| *nice < priority::NICE)
            .collect::<Vec<_>>()
    };
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let mut left = unlowered();
    while !left.is_empty() && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = unlowered();
    }
    assert!(left.is_empty(), "(thread, nice) not lowered: {left:?}");
    assert_eq!(getpriority_process(None).unwrap(), own);
    store.close().await;
}

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    assert!(!path.exists());
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(path.exists());
    let mode: String = on_pool!(&store.pool, |p| {
        sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(p)
            .await
            .unwrap()
    });
    assert_eq!(mode, "wal");
    assert_eq!(store.backend(), Backend::Sqlite);
    store.close().await;
}

#[tokio::test]
async fn in_memory_sqlite_works_for_tests() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let k = key("acme", 1);
    store.insert_key(&k).await.unwrap();
    assert_eq!(store.list_keys("acme").await.unwrap(), [k]);
    // Each in-memory store is its own database.
    let other = Store::connect("sqlite::memory:").await.unwrap();
    assert!(other.list_keys("acme").await.unwrap().is_empty());
}

#[tokio::test]
async fn unsupported_and_unreachable_urls_never_echo_the_url() {
    let err = Store::connect("mysql://root:hunter2@localhost/db")
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::UnsupportedUrl);
    // Port 1: connection refused, at once.
    let err = Store::connect_with_timeout(
        "postgres://cordon:hunter2@127.0.0.1:1/cordon",
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("connect"), "{text}");
    }
}

#[test]
fn debug_output_holds_no_secret() {
    let new = NewKey::generate();
    let row = KeyRow {
        hash: new.hash,
        ..key("acme", 1)
    };
    let text = format!("{row:?}");
    assert!(!text.contains(&new.hash.to_hex()), "{text}");
    assert!(text.contains("KeyHash(..)"), "{text}");
}

#[test]
fn group_names_round_trip_and_days_are_named_in_utc() {
    for g in GroupBy::ALL {
        assert_eq!(GroupBy::from_name(g.name()), Some(g));
    }
    assert_eq!(GroupBy::from_name("tenant"), None);
    assert_eq!(super::day_name("0").as_deref(), Some("1970-01-01"));
    assert_eq!(super::day_name("-1").as_deref(), Some("1969-12-31"));
    assert_eq!(super::day_name("20454").as_deref(), Some("2026-01-01"));
    assert_eq!(super::day_name("x"), None);
}

#[test]
fn key_sync_window_overlaps_the_previous_poll() {
    assert_eq!(next_key_sync_since(None), i64::MIN);
    assert_eq!(
        next_key_sync_since(Some(100_000)),
        100_000 - KEY_SYNC_OVERLAP_MS
    );
    assert_eq!(next_key_sync_since(Some(i64::MIN + 1)), i64::MIN);
}

#[test]
fn every_migration_exists_for_both_backends_in_order() {
    for (i, (version, _, sqlite, postgres)) in MIGRATIONS.iter().enumerate() {
        assert_eq!(*version, i64::try_from(i).unwrap() + 1);
        assert!(sqlite.contains("CREATE TABLE") || sqlite.contains("ALTER TABLE"));
        assert!(postgres.contains("CREATE TABLE") || postgres.contains("ALTER TABLE"));
    }
    assert_eq!(
        Store::migrator(Backend::Sqlite).iter().count(),
        MIGRATIONS.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn sqlite_processes_starting_together_all_migrate() {
    // Without the retry in `Store::migrate`, some of these fail with "table
    // keys already exists": SQLite's migrator takes no lock.
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
        let starts: Vec<_> = (0..12)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Store::connect(&url).await })
            })
            .collect();
        for s in starts {
            let store = s.await.unwrap().unwrap();
            assert_eq!(
                count(&store, "SELECT COUNT(*) FROM _cordon_migrations").await,
                i64::try_from(MIGRATIONS.len()).unwrap()
            );
            store.close().await;
        }
    }
}
