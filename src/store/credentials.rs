//! Tenants' own provider credentials (BYOK), as sealed bytes only: the store
//! never sees a plaintext credential nor the master key. A deleted credential
//! is kept as a tombstone (no bytes, a new `updated_ms`) so replicas
//! refreshing with `credentials_updated_since` see the deletion, with the same
//! overlapping window as keys (see the module documentation of `store`).

use std::fmt;

use super::{Pool, Store, StoreError};

/// A credential sealed with AES-256-GCM under the master key
/// `master_key_id` (sealing and opening happen outside the store). `Debug`
/// prints lengths, not bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub master_key_id: String,
}

/// A tenant's credential for one provider; `sealed` is `None` for a
/// deleted one (a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub tenant: String,
    pub provider: String,
    pub sealed: Option<Sealed>,
    pub updated_ms: i64,
}

/// `SELECT <the columns of CredentialTuple> FROM credentials <tail>`.
macro_rules! select_credentials {
    ($tail:literal) => {
        concat!(
            "SELECT tenant, provider, nonce, ciphertext, master_key_id, updated_ms \
             FROM credentials ",
            $tail
        )
    };
}

type CredentialTuple = (
    String,
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<String>,
    i64,
);

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("nonce_len", &self.nonce.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .field("master_key_id", &self.master_key_id)
            .finish()
    }
}

impl Store {
    /// Stores `row` (replacing the tenant's credential for the provider, if
    /// any), stamped with `row.updated_ms`. `sealed: None` stores a tombstone.
    pub async fn put_credential(&self, row: &CredentialRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO credentials \
             (tenant, provider, nonce, ciphertext, master_key_id, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant, provider) DO UPDATE SET nonce = excluded.nonce, \
             ciphertext = excluded.ciphertext, master_key_id = excluded.master_key_id, \
             updated_ms = excluded.updated_ms";
        let s = row.sealed.as_ref();
        on_pool!(&self.pool, |p| {
            sqlx::query(SQL)
                .bind(row.tenant.as_str())
                .bind(row.provider.as_str())
                .bind(s.map(|s| s.nonce.as_slice()))
                .bind(s.map(|s| s.ciphertext.as_slice()))
                .bind(s.map(|s| s.master_key_id.as_str()))
                .bind(row.updated_ms)
                .execute(p)
                .await
                .map(drop)
        })
        .map_err(StoreError::db("put_credential"))
    }

    /// The tenant's live credential for `provider`; `None` if there is none
    /// or it was deleted.
    pub async fn get_credential(
        &self,
        tenant: &str,
        provider: &str,
    ) -> Result<Option<CredentialRow>, StoreError> {
        const SQL: &str =
            select_credentials!("WHERE tenant = $1 AND provider = $2 AND ciphertext IS NOT NULL");
        let row: Option<CredentialTuple> = on_pool!(&self.pool, |p| {
            sqlx::query_as(SQL)
                .bind(tenant)
                .bind(provider)
                .fetch_optional(p)
                .await
        })
        .map_err(StoreError::db("get_credential"))?;
        row.map(credential_row).transpose()
    }

    /// Deletes the tenant's credential for `provider` at `now_ms`, leaving a
    /// tombstone. `false` if there was no live credential.
    pub async fn delete_credential(
        &self,
        tenant: &str,
        provider: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE credentials SET nonce = NULL, ciphertext = NULL, \
             master_key_id = NULL, updated_ms = $3 \
             WHERE tenant = $1 AND provider = $2 AND ciphertext IS NOT NULL";
        let done = on_pool!(&self.pool, |p| {
            sqlx::query(SQL)
                .bind(tenant)
                .bind(provider)
                .bind(now_ms)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(StoreError::db("delete_credential"))?;
        Ok(done > 0)
    }

    /// Every credential (any tenant) with `updated_ms >= since_ms`, by
    /// `updated_ms`, tombstones included. Callers overlap their windows as for
    /// keys (`next_key_sync_since`); `i64::MIN` returns every row.
    pub async fn credentials_updated_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<CredentialRow>, StoreError> {
        const SQL: &str =
            select_credentials!("WHERE updated_ms >= $1 ORDER BY updated_ms, tenant, provider");
        let rows: Vec<CredentialTuple> = on_pool!(&self.pool, |p| {
            sqlx::query_as(SQL).bind(since_ms).fetch_all(p).await
        })
        .map_err(StoreError::db("credentials_updated_since"))?;
        rows.into_iter().map(credential_row).collect()
    }

    /// Every live credential (no tombstones), by tenant and provider.
    pub async fn all_credentials(&self) -> Result<Vec<CredentialRow>, StoreError> {
        const SQL: &str =
            select_credentials!("WHERE ciphertext IS NOT NULL ORDER BY tenant, provider");
        let rows: Vec<CredentialTuple> =
            on_pool!(&self.pool, |p| { sqlx::query_as(SQL).fetch_all(p).await })
                .map_err(StoreError::db("all_credentials"))?;
        rows.into_iter().map(credential_row).collect()
    }

    /// Replaces live credentials, all or none, in one transaction (for
    /// master-key rotation: every row re-sealed under the new key). Each
    /// pair is (the row as read, its replacement for the same tenant and
    /// provider); a row is replaced only
    /// if it still holds what was read (the same nonce: every sealing draws
    /// a fresh one). A credential deleted, or set again, since it was read
    /// is neither brought back nor overwritten: nothing is replaced and the
    /// result is [`StoreError::CredentialChanged`].
    pub async fn replace_credentials(
        &self,
        rows: &[(CredentialRow, CredentialRow)],
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE credentials SET nonce = $3, ciphertext = $4, \
             master_key_id = $5, updated_ms = $6 \
             WHERE tenant = $1 AND provider = $2 AND nonce = $7";
        if rows.is_empty() {
            return Ok(());
        }
        let db = |e: sqlx::Error| StoreError::db("replace_credentials")(e);
        on_pool!(&self.pool, |p| async {
            let mut tx = p.begin().await.map_err(db)?;
            for (read, row) in rows {
                let Some(was) = read.sealed.as_ref() else {
                    return Err(StoreError::CredentialChanged);
                };
                let s = row.sealed.as_ref();
                let done = sqlx::query(SQL)
                    .bind(row.tenant.as_str())
                    .bind(row.provider.as_str())
                    .bind(s.map(|s| s.nonce.as_slice()))
                    .bind(s.map(|s| s.ciphertext.as_slice()))
                    .bind(s.map(|s| s.master_key_id.as_str()))
                    .bind(row.updated_ms)
                    .bind(was.nonce.as_slice())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?
                    .rows_affected();
                if done == 0 {
                    // Dropping `tx` rolls back.
                    return Err(StoreError::CredentialChanged);
                }
            }
            tx.commit().await.map_err(db)
        }
        .await)
    }
}

fn credential_row(t: CredentialTuple) -> Result<CredentialRow, StoreError> {
    let (tenant, provider, nonce, ciphertext, master_key_id, updated_ms) = t;
    let sealed = match (nonce, ciphertext, master_key_id) {
        (Some(nonce), Some(ciphertext), Some(master_key_id)) => Some(Sealed {
            nonce,
            ciphertext,
            master_key_id,
        }),
        (None, None, None) => None,
        _ => {
            return Err(StoreError::Corrupt {
                table: "credentials",
                what: "nonce, ciphertext and master key id are not all set or all empty",
            });
        }
    };
    Ok(CredentialRow {
        tenant,
        provider,
        sealed,
        updated_ms,
    })
}
