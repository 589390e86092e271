//! BYOK on the request path: each tenant's own provider credentials, opened
//! once when they are loaded and kept in memory, looked up lock-free per
//! attempt. The store holds only sealed values (`crate::credentials`).
//!
//! Every replica loads all credentials at start and then, every
//! [`REFRESH_MS`], those changed since its previous look (with the same
//! overlapping window as the key cache, see `crate::store`); the replica that
//! stores or deletes one applies it to its own cache at once. So a change
//! reaches every replica within a couple of seconds.
//!
//! Failing closed: a credential that is stored but cannot be opened (moved to
//! another tenant or provider, altered) makes that provider unusable for that
//! tenant; the tenant's requests never silently fall back to the operator's
//! credential. One sealed under a master key this replica does not have (a
//! rotation in progress, `cordon credentials rotate-master`) keeps the value
//! this replica opened before, with a warning, until the replica is
//! restarted with the new master key.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::credentials::{self, CredentialError, MasterKey, Sealed};
use crate::secret::Secret;
use crate::store::{CredentialRow, Store, StoreError};

/// How often every replica asks the store for changed credentials.
pub(crate) const REFRESH_MS: u64 = 1_000;

/// One tenant's credential for one provider, as this replica holds it.
#[derive(Debug, Clone)]
pub(crate) enum Held {
    Key(Arc<Secret<String>>),
    /// Stored but unusable here; the provider is unusable for the tenant.
    Broken,
}

type ByTenant = HashMap<Arc<str>, HashMap<Arc<str>, Held>>;

/// The credentials, swapped whole on change; readers never lock.
#[derive(Debug)]
pub(crate) struct Byok {
    master: Option<MasterKey>,
    map: ArcSwap<ByTenant>,
}

/// Why a credential could not be stored or removed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ByokError {
    #[error(
        "BYOK is not configured on this gateway: set CORDON_MASTER_KEY or CORDON_MASTER_KEY_FILE"
    )]
    NotConfigured,
    #[error("{0}")]
    Credential(#[from] CredentialError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl Byok {
    pub(crate) fn new(master: Option<MasterKey>) -> Self {
        Self {
            master,
            map: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// The tenant's own credential for `provider`, if it stored one.
    pub(crate) fn get(&self, tenant: &str, provider: &str) -> Option<Held> {
        let map = self.map.load();
        if map.is_empty() {
            return None;
        }
        map.get(tenant)?.get(provider).cloned()
    }

    /// Seals and stores `key` for (tenant, provider), replacing any earlier
    /// one, and uses it here at once.
    pub(crate) async fn put(
        &self,
        store: &Store,
        tenant: &str,
        provider: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<(), ByokError> {
        let master = self.master.as_ref().ok_or(ByokError::NotConfigured)?;
        let sealed = credentials::seal(master, tenant, provider, key)?;
        store
            .put_credential(&CredentialRow {
                tenant: tenant.to_owned(),
                provider: provider.to_owned(),
                sealed: Some(to_stored(&sealed)),
                updated_ms: now_ms,
            })
            .await?;
        self.set(
            tenant,
            provider,
            Some(Held::Key(Arc::new(Secret::new(key.to_owned())))),
        );
        Ok(())
    }

    /// Removes the tenant's credential for `provider`; `false` if it had none.
    pub(crate) async fn delete(
        &self,
        store: &Store,
        tenant: &str,
        provider: &str,
        now_ms: i64,
    ) -> Result<bool, ByokError> {
        let done = store.delete_credential(tenant, provider, now_ms).await?;
        self.set(tenant, provider, None);
        Ok(done)
    }

    /// Applies rows read from the store (new, changed, deleted).
    pub(crate) fn apply(&self, rows: &[CredentialRow]) {
        if rows.is_empty() {
            return;
        }
        let mut next: ByTenant = (**self.map.load()).clone();
        for row in rows {
            let held = match &row.sealed {
                None => None,
                Some(stored) => self.open(row, stored, &next),
            };
            set_in(&mut next, &row.tenant, &row.provider, held);
        }
        self.map.store(Arc::new(next));
    }

    /// What a stored row holds for this replica (see the module doc).
    fn open(
        &self,
        row: &CredentialRow,
        stored: &crate::store::Sealed,
        now: &ByTenant,
    ) -> Option<Held> {
        let Some(master) = &self.master else {
            tracing::error!(
                tenant = %row.tenant, provider = %row.provider,
                "a BYOK credential is stored but this replica has no master key: the provider is unusable for this tenant"
            );
            return Some(Held::Broken);
        };
        let opened = Sealed::from_parts(
            &stored.nonce,
            stored.ciphertext.clone(),
            stored.master_key_id.clone(),
        )
        .and_then(|s| credentials::open(master, &row.tenant, &row.provider, &s));
        match opened {
            Ok(key) => Some(Held::Key(Arc::new(key))),
            Err(e @ CredentialError::OtherMasterKey { .. }) => {
                let before = now
                    .get(row.tenant.as_str())
                    .and_then(|m| m.get(row.provider.as_str()));
                tracing::warn!(
                    tenant = %row.tenant, provider = %row.provider, error = %e,
                    "BYOK credential sealed under another master key; restart this replica with the new one"
                );
                Some(before.cloned().unwrap_or(Held::Broken))
            }
            Err(e) => {
                tracing::error!(
                    tenant = %row.tenant, provider = %row.provider, error = %e,
                    "BYOK credential cannot be opened: the provider is unusable for this tenant"
                );
                Some(Held::Broken)
            }
        }
    }

    fn set(&self, tenant: &str, provider: &str, held: Option<Held>) {
        self.map.rcu(|m| {
            let mut next = (**m).clone();
            set_in(&mut next, tenant, provider, held.clone());
            next
        });
    }
}

fn set_in(map: &mut ByTenant, tenant: &str, provider: &str, held: Option<Held>) {
    match held {
        Some(h) => {
            map.entry(Arc::from(tenant))
                .or_default()
                .insert(Arc::from(provider), h);
        }
        None => {
            if let Some(m) = map.get_mut(tenant) {
                m.remove(provider);
                if m.is_empty() {
                    map.remove(tenant);
                }
            }
        }
    }
}

/// Whether `key` can be sent as a provider credential: in a header value
/// (printable ASCII, spaces and tabs inside), without surrounding
/// whitespace, which a header would lose or a paste added (a newline).
pub(crate) fn sendable(key: &str) -> bool {
    !key.is_empty()
        && key.is_ascii()
        && key.trim() == key
        && http::HeaderValue::from_str(key).is_ok()
}

pub(crate) fn to_stored(s: &Sealed) -> crate::store::Sealed {
    crate::store::Sealed {
        nonce: s.nonce.to_vec(),
        ciphertext: s.ciphertext.clone(),
        master_key_id: s.master_key_id.clone(),
    }
}
