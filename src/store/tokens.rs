//! Admin tokens: like client keys, only the hash of the secret is stored.

use super::{Pool, Store, StoreError};
use crate::auth::key::{KeyHash, KeyId};
use crate::auth::token::Role;

/// A stored admin token. `tenant` is `Some` exactly for tenant-scoped roles
/// (a CHECK constraint holds the store to it). `Debug` prints `KeyHash(..)`
/// for the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTokenRow {
    pub id: KeyId,
    pub role: Role,
    pub tenant: Option<String>,
    pub name: Option<String>,
    pub hash: KeyHash,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
}

/// `SELECT <the columns of TokenTuple> FROM admin_tokens <tail>`.
macro_rules! select_tokens {
    ($tail:literal) => {
        concat!(
            "SELECT id, role, tenant, name, hash, created_ms, expires_ms, revoked_ms, \
             last_used_ms FROM admin_tokens ",
            $tail
        )
    };
}

type TokenTuple = (
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

impl Store {
    /// Stores a new admin token. An id already taken is
    /// [`StoreError::DuplicateToken`] (generate another token).
    pub async fn insert_admin_token(&self, row: &AdminTokenRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO admin_tokens (id, role, tenant, name, hash, created_ms, \
             expires_ms, revoked_ms, last_used_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        let hash = row.hash.to_hex();
        let result = on_pool!(&self.pool, |p| {
            sqlx::query(SQL)
                .bind(row.id.as_str())
                .bind(row.role.as_str())
                .bind(row.tenant.as_deref())
                .bind(row.name.as_deref())
                .bind(hash.as_str())
                .bind(row.created_ms)
                .bind(row.expires_ms)
                .bind(row.revoked_ms)
                .bind(row.last_used_ms)
                .execute(p)
                .await
                .map(drop)
        });
        match result {
            Ok(()) => Ok(()),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                Err(StoreError::DuplicateToken)
            }
            Err(e) => Err(StoreError::db("insert_admin_token")(e)),
        }
    }

    pub async fn get_admin_token(&self, id: &KeyId) -> Result<Option<AdminTokenRow>, StoreError> {
        const SQL: &str = select_tokens!("WHERE id = $1");
        let row: Option<TokenTuple> = on_pool!(&self.pool, |p| {
            sqlx::query_as(SQL)
                .bind(id.as_str())
                .fetch_optional(p)
                .await
        })
        .map_err(StoreError::db("get_admin_token"))?;
        row.map(token_row).transpose()
    }

    /// Every admin token, oldest first (revoked and expired ones included).
    pub async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRow>, StoreError> {
        const SQL: &str = select_tokens!("ORDER BY created_ms, id");
        let rows: Vec<TokenTuple> =
            on_pool!(&self.pool, |p| { sqlx::query_as(SQL).fetch_all(p).await })
                .map_err(StoreError::db("list_admin_tokens"))?;
        rows.into_iter().map(token_row).collect()
    }

    /// Revokes a token at `now_ms`. `false` if no token has this id or it was
    /// already revoked (the first revocation time is kept).
    pub async fn revoke_admin_token(&self, id: &KeyId, now_ms: i64) -> Result<bool, StoreError> {
        const SQL: &str =
            "UPDATE admin_tokens SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL";
        let done = on_pool!(&self.pool, |p| {
            sqlx::query(SQL)
                .bind(id.as_str())
                .bind(now_ms)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(StoreError::db("revoke_admin_token"))?;
        Ok(done > 0)
    }

    /// Records that a token was used at `now_ms`; `last_used_ms` only moves
    /// forward. An unknown id is ignored.
    pub async fn touch_admin_token(&self, id: &KeyId, now_ms: i64) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE admin_tokens SET last_used_ms = $2 \
             WHERE id = $1 AND (last_used_ms IS NULL OR last_used_ms < $2)";
        on_pool!(&self.pool, |p| {
            sqlx::query(SQL)
                .bind(id.as_str())
                .bind(now_ms)
                .execute(p)
                .await
                .map(drop)
        })
        .map_err(StoreError::db("touch_admin_token"))
    }
}

fn token_row(t: TokenTuple) -> Result<AdminTokenRow, StoreError> {
    let (id, role, tenant, name, hash, created_ms, expires_ms, revoked_ms, last_used_ms) = t;
    let corrupt = |what| StoreError::Corrupt {
        table: "admin_tokens",
        what,
    };
    Ok(AdminTokenRow {
        id: KeyId::parse(&id).map_err(|_| corrupt("malformed id"))?,
        role: role.parse().map_err(|_| corrupt("unknown role"))?,
        hash: KeyHash::from_hex(&hash).ok_or_else(|| corrupt("malformed hash"))?,
        tenant,
        name,
        created_ms,
        expires_ms,
        revoked_ms,
        last_used_ms,
    })
}
