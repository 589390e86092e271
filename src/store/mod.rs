//! The store: client keys (as SHA-256 hashes only), usage records, admin
//! tokens, the audit log and BYOK credentials, in SQLite (one process, the
//! default) or PostgreSQL (several replicas).
//!
//! # Design
//!
//! [`Store`] wraps an enum over a `SqlitePool` and a `PgPool` rather than an
//! `AnyPool`: each backend keeps its native types and connection options (WAL,
//! busy timeout), and every statement is written once, with `$1, $2, …`
//! placeholders, which both PostgreSQL and SQLite (through sqlx, which binds
//! `$NNN` by number) accept. The `on_pool!` macro runs the same code on
//! whichever pool is live.
//!
//! The schema is versioned by sqlx's [`Migrator`], built from the SQL files in
//! `migrations/<backend>/` embedded in the binary. On PostgreSQL the migrator
//! holds an advisory lock, so several replicas starting at once apply each
//! migration exactly once; SQLite has no such lock, so a migration that loses a
//! race with another process is retried (it then finds the migration applied).
//!
//! # Keys and revocation
//!
//! A key row holds the hex SHA-256 of the key's secret (a CHECK constraint
//! accepts nothing else), never the raw key. `updated_ms` changes on creation
//! and revocation — not on `touch_keys` — and [`Store::keys_updated_since`]
//! returns every row with `updated_ms >= since`. An authentication cache
//! refreshing every couple of seconds must not use the previous poll's time as
//! the next `since`, because a row can become visible *after* a poll that ran
//! later than its `updated_ms`:
//!
//! - two writes in the same millisecond, one committed just before a poll and
//!   one just after (an exclusive `>` bound would skip the second one forever);
//! - a transaction stamped at `t` that commits a little later;
//! - a replica whose clock is slightly behind the poller's.
//!
//! So the window overlaps: a cache that starts a poll at `t` asks for
//! `keys_updated_since(t_prev - KEY_SYNC_OVERLAP_MS)`, where `t_prev` is when
//! its previous poll started (`i64::MIN` the first time, to load everything),
//! and applies rows idempotently (replace by id). Rows only ever move towards
//! "revoked", so re-reading one is harmless, and the cost is re-reading the
//! keys changed in the last [`KEY_SYNC_OVERLAP_MS`]. See [`next_key_sync_since`].
//! BYOK credentials are refreshed the same way (`credentials_updated_since`),
//! with deletions kept as tombstones so a replica sees them.
//!
//! # Control plane
//!
//! Admin tokens (`tokens.rs`, hashed like keys), the hash-chained audit log
//! (`audit.rs`: appends are serialised across processes and replicas, and
//! triggers refuse UPDATE and DELETE), and BYOK credentials (`credentials.rs`:
//! nonce and ciphertext only, sealed and opened elsewhere).

mod error;
mod priority;
mod url;

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, QueryBuilder, SqlSafeStr};

pub use credentials::{CredentialRow, Sealed};
pub use error::StoreError;
pub use tokens::AdminTokenRow;
pub use url::{Backend, resolve_url};

use crate::auth::key::{KeyHash, KeyId};
use crate::usage::{UsageRecord, shared_word};

/// How far back each key-cache refresh re-reads, beyond the previous refresh's
/// start, to cover commit latency, same-millisecond writes and clock skew
/// between replicas (see the module documentation).
pub const KEY_SYNC_OVERLAP_MS: i64 = 30_000;

/// The `since_ms` for the next [`Store::keys_updated_since`], given when the
/// previous refresh started (`None` before the first: load everything).
pub fn next_key_sync_since(previous_poll_started_ms: Option<i64>) -> i64 {
    previous_poll_started_ms.map_or(i64::MIN, |t| t.saturating_sub(KEY_SYNC_OVERLAP_MS))
}

/// How long a statement waits for a locked SQLite database before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`Store::connect`] waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most usage records per multi-row `INSERT` (22 parameters each). A power of
/// two: see [`usage_chunks`].
const USAGE_ROWS_PER_INSERT: usize = 128;
/// Attempts at migrating a SQLite file another process may be migrating too.
const SQLITE_MIGRATE_ATTEMPTS: u32 = 5;

/// Where applied migrations are recorded: not sqlx's default
/// `_sqlx_migrations`, which another application sharing the database may use.
const MIGRATIONS_TABLE: &str = "_cordon_migrations";

/// The embedded migrations: (version, description, SQLite SQL, PostgreSQL SQL).
/// Never edit a released one (sqlx refuses a changed checksum); add the next.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "keys and usage",
        include_str!("../../migrations/sqlite/0001_keys_and_usage.sql"),
        include_str!("../../migrations/postgres/0001_keys_and_usage.sql"),
    ),
    (
        2,
        "control plane",
        include_str!("../../migrations/sqlite/0002_control_plane.sql"),
        include_str!("../../migrations/postgres/0002_control_plane.sql"),
    ),
];

/// A stored client key. Only the hash of its secret is ever held; `Debug`
/// prints `KeyHash(..)` for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub id: KeyId,
    pub tenant: String,
    pub project: Option<String>,
    pub name: Option<String>,
    pub hash: KeyHash,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
    pub scope: KeyScope,
}

/// What a key may do within its tenant's (and project's) policy: narrower,
/// never wider. The default limits nothing. Stored, and shown by `keys list`;
/// the request path does not read it yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyScope {
    /// Model-name globs the key may request (`None`: every model the policy
    /// allows). Stored as a JSON array.
    pub models: Option<Vec<String>>,
    /// Requests per minute for this key alone (`None`: no per-key limit).
    pub rpm: Option<u32>,
}

/// Which usage to total, over `since_ms <= time_ms < until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// `None`: every tenant.
    pub tenant: Option<String>,
    /// `i64::MIN`: from the first record.
    pub since_ms: i64,
    /// Exclusive; `i64::MAX`: up to the last record.
    pub until_ms: i64,
    pub group_by: GroupBy,
}

/// What [`Store::usage_totals`] groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// By requested (public) model name.
    Model,
    /// By provider; requests refused before routing count under [`NO_PROVIDER`].
    Provider,
    /// By key id.
    Key,
    /// By project; requests of keys bound to none count under [`NO_PROJECT`].
    Project,
    /// By UTC day of the request, `YYYY-MM-DD`.
    Day,
    /// One total, under the group [`ALL`].
    None,
}

/// The group of requests that reached no provider, in [`GroupBy::Provider`].
pub const NO_PROVIDER: &str = "(none)";
/// The group of requests of keys bound to no project, in [`GroupBy::Project`].
pub const NO_PROJECT: &str = "(none)";
/// The only group of [`GroupBy::None`].
pub const ALL: &str = "(all)";

const MS_PER_DAY: i64 = 86_400_000;

impl GroupBy {
    /// Every grouping, in the order of [`GroupBy::name`]'s documentation.
    pub const ALL: [GroupBy; 6] = [
        GroupBy::Provider,
        GroupBy::Model,
        GroupBy::Key,
        GroupBy::Project,
        GroupBy::Day,
        GroupBy::None,
    ];

    /// `provider`, `model`, `key`, `project`, `day` or `none`.
    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Provider => "provider",
            GroupBy::Model => "model",
            GroupBy::Key => "key",
            GroupBy::Project => "project",
            GroupBy::Day => "day",
            GroupBy::None => "none",
        }
    }

    /// The grouping called `name` (see [`GroupBy::name`]).
    pub fn from_name(name: &str) -> Option<GroupBy> {
        GroupBy::ALL.into_iter().find(|g| g.name() == name)
    }

    /// The SQL expression of the group, written once for both backends.
    /// A day is grouped by its number since 1970-01-01 (floor division, also
    /// before 1970) and named in Rust: SQLite and PostgreSQL share no date
    /// formatting function, but integer division they do.
    fn sql(self) -> &'static str {
        match self {
            GroupBy::Model => "model",
            GroupBy::Provider => "COALESCE(provider, '(none)')",
            GroupBy::Key => "key_id",
            GroupBy::Project => "COALESCE(project, '(none)')",
            GroupBy::Day => "(time_ms - CASE WHEN time_ms < 0 THEN 86399999 ELSE 0 END) / 86400000",
            GroupBy::None => "'(all)'",
        }
    }
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (UTC).
fn day_name(day: &str) -> Option<String> {
    let day: i64 = day.parse().ok()?;
    let secs = day.checked_mul(MS_PER_DAY / 1_000)?;
    let date = time::OffsetDateTime::from_unix_timestamp(secs).ok()?.date();
    let format = time::macros::format_description!("[year]-[month]-[day]");
    date.format(&format).ok()
}

/// Totals for one group, sorted by group in [`Store::usage_totals`]'s result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageTotal {
    pub group: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Requests with outcome `refused` (never reached a provider).
    pub refused: i64,
}

/// A connection pool to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the live pool (and, in the second form,
/// `$db` naming its `sqlx::Database` type), so one piece of code serves both
/// backends.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
    ($pool:expr, |$p:ident, $db:ident| $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => {
                type $db = sqlx::Sqlite;
                $body
            }
            Pool::Postgres($p) => {
                type $db = sqlx::Postgres;
                $body
            }
        }
    };
}

/// `SELECT <the columns of KeyTuple> FROM keys <tail>`, as a literal.
macro_rules! select_keys {
    ($tail:literal) => {
        concat!(
            "SELECT id, tenant, project, name, hash, created_ms, expires_ms, revoked_ms, \
             last_used_ms, allowed_models, rpm FROM keys ",
            $tail
        )
    };
}

type KeyTuple = (
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

type TotalTuple = (String, i64, i64, i64, i64);

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `url` and brings its schema up to date.
    ///
    /// - `sqlite://path` (or `sqlite:path`): the file is created if missing and
    ///   opened in WAL mode. A relative path is relative to the working
    ///   directory; use [`resolve_url`] to make it relative to the gateway file.
    /// - `sqlite::memory:`: a private in-memory database (tests).
    /// - `postgres://…` / `postgresql://…`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with_timeout(url, ACQUIRE_TIMEOUT).await
    }

    /// [`Store::connect`], waiting at most `acquire_timeout` for a connection
    /// (while connecting, and later for each operation) instead of 10 s. An
    /// unreachable server is retried until then.
    pub async fn connect_with_timeout(
        url: &str,
        acquire_timeout: Duration,
    ) -> Result<Store, StoreError> {
        let store = match Backend::of(url)? {
            Backend::Sqlite => Store::connect_sqlite(url, acquire_timeout).await?,
            Backend::Postgres => Store::connect_postgres(url, acquire_timeout).await?,
        };
        if let Err(e) = store.migrate().await {
            // On PostgreSQL a failed migration can leave the migrator's
            // advisory lock held by a pooled connection: close them all.
            store.close().await;
            return Err(e);
        }
        Ok(store)
    }

    async fn connect_sqlite(url: &str, acquire_timeout: Duration) -> Result<Store, StoreError> {
        let options: SqliteConnectOptions = url.parse().map_err(StoreError::db("connect"))?;
        let options = options
            .create_if_missing(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true)
            .thread_name(|id| format!("{}{id}", priority::SQLITE_THREAD));
        let pool = if url::is_sqlite_memory(url) {
            // One connection, never recycled: the database lives as long as it.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(acquire_timeout)
                .after_connect(|_, _| Box::pin(async { priority::lower_sqlite_threads() }))
                .connect_with(options)
                .await
        } else {
            // Switching a new file to WAL takes a brief exclusive lock: several
            // processes opening the same file at once can see "database is
            // locked" here, so a few short retries (as for migrations).
            let options = options.journal_mode(SqliteJournalMode::Wal);
            let mut attempt = 1;
            loop {
                match SqlitePoolOptions::new()
                    .acquire_timeout(acquire_timeout)
                    .after_connect(|_, _| Box::pin(async { priority::lower_sqlite_threads() }))
                    .connect_with(options.clone())
                    .await
                {
                    Err(sqlx::Error::Database(e))
                        if attempt < SQLITE_MIGRATE_ATTEMPTS
                            && e.code().is_some_and(|c| c == "5" || c == "6") =>
                    {
                        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                        attempt += 1;
                    }
                    other => break other,
                }
            }
        }
        .map_err(StoreError::db("connect"))?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
        })
    }

    async fn connect_postgres(url: &str, acquire_timeout: Duration) -> Result<Store, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(StoreError::db("connect"))?;
        let pool = PgPoolOptions::new()
            .acquire_timeout(acquire_timeout)
            .connect_with(options.application_name("cordon"))
            .await
            .map_err(StoreError::db("connect"))?;
        Ok(Store {
            pool: Pool::Postgres(pool),
        })
    }

    fn migrator(backend: Backend) -> Migrator {
        let migrations = MIGRATIONS
            .iter()
            .map(|&(version, description, sqlite, postgres)| {
                let sql = match backend {
                    Backend::Sqlite => sqlite,
                    Backend::Postgres => postgres,
                };
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator {
            migrations: Cow::Owned(migrations),
            table_name: Cow::Borrowed(MIGRATIONS_TABLE),
            ..Migrator::DEFAULT
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = Store::migrator(self.backend());
        match &self.pool {
            // Serialised across processes by the migrator's advisory lock.
            Pool::Postgres(p) => migrator.run(p).await.map_err(|e| StoreError::migrate(&e)),
            Pool::Sqlite(p) => {
                let mut attempt = 1;
                loop {
                    match migrator.run(p).await {
                        Ok(()) => return Ok(()),
                        // Another process applied the same migration first
                        // ("table already exists", or a busy database): the
                        // next run sees it applied and only checks its checksum.
                        Err(
                            sqlx::migrate::MigrateError::Execute(_)
                            | sqlx::migrate::MigrateError::ExecuteMigration(..),
                        ) if attempt < SQLITE_MIGRATE_ATTEMPTS => {
                            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt)))
                                .await;
                            attempt += 1;
                        }
                        Err(e) => return Err(StoreError::migrate(&e)),
                    }
                }
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes every connection (and, for SQLite, checkpoints the WAL).
    pub async fn close(&self) {
        on_pool!(&self.pool, |p| p.close().await)
    }

    /// Checks the store answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(&self.pool, |p| {
            sqlx::query("SELECT 1")
                .execute(p)
                .await
                .map(drop)
                .map_err(StoreError::db("ping"))
        })
    }

    // === keys ===

    /// Stores a new key; its `updated_ms` is its `created_ms`. An id already
    /// taken is [`StoreError::DuplicateKey`] (generate another key).
    pub async fn insert_key(&self, row: &KeyRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO keys (id, tenant, project, name, hash, created_ms, \
             expires_ms, revoked_ms, last_used_ms, allowed_models, rpm, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $6)";
        let hash = row.hash.to_hex();
        let models = row
            .scope
            .models
            .as_ref()
            .map(|m| serde_json::Value::from(m.clone()).to_string());
        let rpm = row.scope.rpm.map(i64::from);
        let result = on_pool!(&self.pool, |p| {
            sqlx::query(SQL)
                .bind(row.id.as_str())
                .bind(row.tenant.as_str())
                .bind(row.project.as_deref())
                .bind(row.name.as_deref())
                .bind(hash.as_str())
                .bind(row.created_ms)
                .bind(row.expires_ms)
                .bind(row.revoked_ms)
                .bind(row.last_used_ms)
                .bind(models.as_deref())
                .bind(rpm)
                .execute(p)
                .await
                .map(drop)
        });
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                Err(StoreError::DuplicateKey)
            }
            Err(e) => Err(StoreError::db("insert_key")(e)),
        }
    }

    /// A tenant's keys, oldest first (revoked and expired ones included).
    pub async fn list_keys(&self, tenant: &str) -> Result<Vec<KeyRow>, StoreError> {
        const SQL: &str = select_keys!("WHERE tenant = $1 ORDER BY created_ms, id");
        let rows: Vec<KeyTuple> = on_pool!(&self.pool, |p| {
            sqlx::query_as(SQL).bind(tenant).fetch_all(p).await
        })
        .map_err(StoreError::db("list_keys"))?;
        rows.into_iter().map(key_row).collect()
    }

    pub async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRow>, StoreError> {
        const SQL: &str = select_keys!("WHERE id = $1");
        let row: Option<KeyTuple> = on_pool!(&self.pool, |p| {
            sqlx::query_as(SQL)
                .bind(id.as_str())
                .fetch_optional(p)
                .await
        })
        .map_err(StoreError::db("get_key"))?;
        row.map(key_row).transpose()
    }

    /// Revokes a key at `now_ms` (sets `revoked_ms` and `updated_ms`). `false`
    /// if no key has this id or it was already revoked (the first revocation
    /// time is kept).
    pub async fn revoke_key(&self, id: &KeyId, now_ms: i64) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE keys SET revoked_ms = $2, updated_ms = $2 \
             WHERE id = $1 AND revoked_ms IS NULL";
        let done = on_pool!(&self.pool, |p| {
            sqlx::query(SQL)
                .bind(id.as_str())
                .bind(now_ms)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(StoreError::db("revoke_key"))?;
        Ok(done > 0)
    }

    /// Every key (any tenant) with `updated_ms >= since_ms`, by `updated_ms`.
    /// The bound is inclusive and callers overlap their windows: see the module
    /// documentation and [`next_key_sync_since`]. `i64::MIN` returns all keys.
    pub async fn keys_updated_since(&self, since_ms: i64) -> Result<Vec<KeyRow>, StoreError> {
        const SQL: &str = select_keys!("WHERE updated_ms >= $1 ORDER BY updated_ms, id");
        let rows: Vec<KeyTuple> = on_pool!(&self.pool, |p| {
            sqlx::query_as(SQL).bind(since_ms).fetch_all(p).await
        })
        .map_err(StoreError::db("keys_updated_since"))?;
        rows.into_iter().map(key_row).collect()
    }

    /// Records when keys were last used, in one transaction. `last_used_ms`
    /// only moves forward (replicas flush in any order), unknown ids are
    /// ignored, and `updated_ms` is left alone: use is not a change the key
    /// cache needs to see.
    pub async fn touch_keys(&self, used: &[(KeyId, i64)]) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE keys SET last_used_ms = $2 \
             WHERE id = $1 AND (last_used_ms IS NULL OR last_used_ms < $2)";
        if used.is_empty() {
            return Ok(());
        }
        on_pool!(&self.pool, |p| async {
            let mut tx = p.begin().await?;
            for (id, at) in used {
                sqlx::query(SQL)
                    .bind(id.as_str())
                    .bind(*at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        }
        .await)
        .map_err(StoreError::db("touch_keys"))
    }

    // === usage ===

    /// Appends usage records, all or none (one transaction per call).
    pub async fn insert_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        on_pool!(&self.pool, |p, Db| async {
            let mut tx = p.begin().await?;
            for chunk in usage_chunks(records) {
                let mut q = QueryBuilder::<Db>::new(
                    "INSERT INTO usage (request_id, time_ms, tenant, project, key_id, endpoint, \
                     model, provider, upstream_model, policy_version, prompt_tokens, \
                     completion_tokens, status, outcome, attempts, providers_tried, latency_ms, \
                     ttft_ms, overhead_ms, streamed, client_api, provider_api) ",
                );
                q.push_values(chunk, |mut b, r| {
                    // Shared strings bind without a copy (SQLite) or are
                    // copied once into the message (PostgreSQL).
                    b.push_bind(r.request_id.clone())
                        .push_bind(r.time_ms)
                        .push_bind(r.tenant.clone())
                        .push_bind(r.project.clone())
                        .push_bind(r.key_id.clone())
                        .push_bind(shared_word(r.endpoint))
                        .push_bind(r.model.clone())
                        .push_bind(r.provider.clone())
                        .push_bind(r.upstream_model.clone())
                        .push_bind(r.policy_version.clone())
                        .push_bind(r.prompt_tokens)
                        .push_bind(r.completion_tokens)
                        .push_bind(i32::from(r.status))
                        .push_bind(shared_word(r.outcome))
                        .push_bind(i64::from(r.attempts))
                        .push_bind(r.providers_tried.clone())
                        .push_bind(r.latency_ms)
                        .push_bind(r.ttft_ms)
                        .push_bind(r.overhead_ms)
                        .push_bind(r.streamed)
                        .push_bind(shared_word(r.client_api))
                        .push_bind(r.provider_api.map(shared_word));
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await
        }
        .await)
        .map_err(StoreError::db("insert_usage"))
    }

    /// Request and token totals over `since_ms <= time_ms < until_ms`, one
    /// entry per group that has requests, sorted by group (byte order).
    pub async fn usage_totals(&self, q: &UsageQuery) -> Result<Vec<UsageTotal>, StoreError> {
        let group = q.group_by.sql();
        let tenant = if q.tenant.is_some() {
            "tenant = $3 AND "
        } else {
            ""
        };
        // Built only from the constant fragments above; values are bound.
        let sql = format!(
            "SELECT CAST({group} AS TEXT), CAST(COUNT(*) AS BIGINT), \
             CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN outcome = 'refused' THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM usage WHERE {tenant}time_ms >= $1 AND time_ms < $2 GROUP BY 1 ORDER BY 1"
        );
        let rows: Vec<TotalTuple> = on_pool!(&self.pool, |p| {
            let mut query = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(q.since_ms)
                .bind(q.until_ms);
            if let Some(t) = &q.tenant {
                query = query.bind(t.as_str());
            }
            query.fetch_all(p).await
        })
        .map_err(StoreError::db("usage_totals"))?;
        let mut totals = rows
            .into_iter()
            .filter(|r| r.1 > 0)
            .map(
                |(group, requests, prompt_tokens, completion_tokens, refused)| {
                    let group = match q.group_by {
                        GroupBy::Day => day_name(&group).ok_or(StoreError::Corrupt {
                            table: "usage",
                            what: "time out of range",
                        })?,
                        _ => group,
                    };
                    Ok(UsageTotal {
                        group,
                        requests,
                        prompt_tokens,
                        completion_tokens,
                        refused,
                    })
                },
            )
            .collect::<Result<Vec<_>, StoreError>>()?;
        // By bytes, whatever the database's collation; day numbers came
        // back ordered as text, their names sort by date.
        totals.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(totals)
    }
}

/// Splits a batch into `INSERT`s of power-of-two sizes up to
/// [`USAGE_ROWS_PER_INSERT`]: full chunks, then the rest by its binary
/// digits (100 rows: 64, 32, 4). The statement text depends only on the row
/// count, so the pool's statement cache holds all eight and a batch is never
/// prepared again, whatever its size; one statement per size a batch left
/// over costs it at most seven more round trips to the database.
fn usage_chunks<T>(records: &[T]) -> impl Iterator<Item = &[T]> {
    let full = records.len() / USAGE_ROWS_PER_INSERT * USAGE_ROWS_PER_INSERT;
    let (head, mut rest) = records.split_at(full);
    let left = rest.len();
    let sizes = (0..USAGE_ROWS_PER_INSERT.trailing_zeros())
        .rev()
        .map(|bit| 1 << bit)
        .filter(move |size| left & size != 0);
    head.chunks(USAGE_ROWS_PER_INSERT)
        .chain(sizes.map(move |size| {
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            chunk
        }))
}

fn key_row(t: KeyTuple) -> Result<KeyRow, StoreError> {
    let (
        id,
        tenant,
        project,
        name,
        hash,
        created_ms,
        expires_ms,
        revoked_ms,
        last_used_ms,
        models,
        rpm,
    ) = t;
    let corrupt = |what| StoreError::Corrupt {
        table: "keys",
        what,
    };
    let models = models
        .map(|m| serde_json::from_str::<Vec<String>>(&m))
        .transpose()
        .map_err(|_| corrupt("allowed_models is not a JSON array of strings"))?;
    let rpm = rpm
        .map(u32::try_from)
        .transpose()
        .map_err(|_| corrupt("rpm out of range"))?;
    Ok(KeyRow {
        id: KeyId::parse(&id).map_err(|_| corrupt("malformed id"))?,
        hash: KeyHash::from_hex(&hash).ok_or_else(|| corrupt("malformed hash"))?,
        tenant,
        project,
        name,
        created_ms,
        expires_ms,
        revoked_ms,
        last_used_ms,
        scope: KeyScope { models, rpm },
    })
}

// After `on_pool!`, which they use.
mod audit;
mod credentials;
#[cfg(test)]
mod tests;
mod tokens;
