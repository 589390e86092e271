//! The audit log's table: appending (numbered and linked under a lock that
//! holds across processes and replicas) and reading. Hashing and verification
//! are in `crate::audit`.

use super::{Backend, Pool, Store, StoreError};
use crate::audit::{AuditEntry, AuditHash, GENESIS, NewAuditEntry};

/// The PostgreSQL advisory lock that serialises appends ("cordon" and 1).
/// Advisory locks are per database, so schemas sharing a database share it:
/// that only serialises their appends.
const AUDIT_LOCK_ID: i64 = 0x636f_7264_6f6e_0001;

/// `SELECT <the columns of AuditTuple> FROM audit <tail>`.
macro_rules! select_audit {
    ($tail:literal) => {
        concat!(
            "SELECT seq, time_ms, actor, action, tenant, target, outcome, detail, prev_hash, \
             hash FROM audit ",
            $tail
        )
    };
}

type AuditTuple = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    String,
    String,
);

impl Store {
    /// Appends `entry` after the newest one: number `seq + 1` (1 for the
    /// first) and previous hash the newest one's ([`GENESIS`] for the first).
    ///
    /// Reading the newest entry and inserting the next happen in one
    /// transaction that no other appender can interleave with, in this process
    /// or another: on PostgreSQL the transaction first takes an advisory lock
    /// (`pg_advisory_xact_lock`, released at commit); on SQLite it starts with
    /// `BEGIN IMMEDIATE`, which takes the database's write lock before the
    /// read. (The primary key on `seq` would refuse a duplicate anyway.)
    pub async fn append_audit(&self, entry: &NewAuditEntry) -> Result<AuditEntry, StoreError> {
        const LAST: &str = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";
        const INSERT: &str = "INSERT INTO audit (seq, time_ms, actor, action, tenant, target, \
             outcome, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        const LOCK: &str = "SELECT pg_advisory_xact_lock($1)";
        let db = |e: sqlx::Error| StoreError::db("append_audit")(e);
        let (begin, lock) = match self.backend() {
            Backend::Sqlite => ("BEGIN IMMEDIATE", false),
            Backend::Postgres => ("BEGIN", true),
        };
        on_pool!(&self.pool, |p| async {
            let mut tx = p.begin_with(begin).await.map_err(db)?;
            if lock {
                sqlx::query(LOCK)
                    .bind(AUDIT_LOCK_ID)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            let last: Option<(i64, String)> = sqlx::query_as(LAST)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            let (seq, prev) = match last {
                None => (1, GENESIS),
                Some((seq, hash)) => (
                    seq + 1,
                    AuditHash::from_hex(&hash).ok_or(StoreError::Corrupt {
                        table: "audit",
                        what: "malformed hash",
                    })?,
                ),
            };
            let linked = entry.link(seq, prev);
            sqlx::query(INSERT)
                .bind(linked.seq)
                .bind(linked.time_ms)
                .bind(linked.actor.as_str())
                .bind(linked.action.as_str())
                .bind(linked.tenant.as_deref())
                .bind(linked.target.as_deref())
                .bind(linked.outcome.as_str())
                .bind(linked.detail.as_deref())
                .bind(linked.prev_hash.to_hex())
                .bind(linked.hash.to_hex())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(linked)
        }
        .await)
    }

    /// Entries with `time_ms >= since_ms` (of `tenant` only, if given), the
    /// oldest `limit` of them, in ascending `seq`.
    pub async fn audit_entries(
        &self,
        since_ms: i64,
        tenant: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        const ALL: &str = select_audit!("WHERE time_ms >= $1 ORDER BY seq LIMIT $2");
        const TENANT: &str =
            select_audit!("WHERE time_ms >= $1 AND tenant = $3 ORDER BY seq LIMIT $2");
        let rows: Vec<AuditTuple> = on_pool!(&self.pool, |p| {
            match tenant {
                None => {
                    sqlx::query_as(ALL)
                        .bind(since_ms)
                        .bind(i64::from(limit))
                        .fetch_all(p)
                        .await
                }
                Some(t) => {
                    sqlx::query_as(TENANT)
                        .bind(since_ms)
                        .bind(i64::from(limit))
                        .bind(t)
                        .fetch_all(p)
                        .await
                }
            }
        })
        .map_err(StoreError::db("audit_entries"))?;
        rows.into_iter().map(audit_entry).collect()
    }

    /// Up to `limit` entries with `seq > after_seq`, in ascending `seq`: page
    /// through the whole log with `after_seq` = the last page's last `seq`
    /// (0 to start), for verification.
    pub async fn audit_page(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        const SQL: &str = select_audit!("WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows: Vec<AuditTuple> = on_pool!(&self.pool, |p| {
            sqlx::query_as(SQL)
                .bind(after_seq)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await
        })
        .map_err(StoreError::db("audit_page"))?;
        rows.into_iter().map(audit_entry).collect()
    }
}

fn audit_entry(t: AuditTuple) -> Result<AuditEntry, StoreError> {
    let (seq, time_ms, actor, action, tenant, target, outcome, detail, prev_hash, hash) = t;
    let corrupt = |what| StoreError::Corrupt {
        table: "audit",
        what,
    };
    Ok(AuditEntry {
        seq,
        time_ms,
        actor,
        action,
        tenant,
        target,
        outcome: outcome.parse().map_err(|()| corrupt("unknown outcome"))?,
        detail,
        prev_hash: AuditHash::from_hex(&prev_hash).ok_or_else(|| corrupt("malformed hash"))?,
        hash: AuditHash::from_hex(&hash).ok_or_else(|| corrupt("malformed hash"))?,
    })
}
