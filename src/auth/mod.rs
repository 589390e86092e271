//! Client authentication: `Authorization: Bearer <key>` or `x-api-key`,
//! checked against an in-memory copy of the key table that a background task
//! refreshes from the store. The request path never waits on the store: a
//! revoked or expired key is refused within one refresh interval.

pub mod key;
pub mod token;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwap;
use http::HeaderMap;

use key::{KeyHash, KeyId, PresentedKey};

/// How often the cache asks the store for changed keys.
pub const REFRESH_MS: u64 = 1_000;

/// Who is calling: a key and the tenant (and project) it is bound to.
#[derive(Debug, Clone)]
pub struct Principal(Arc<Entry>);

/// A key as the cache knows it (no raw secret, only its hash).
#[derive(Debug)]
pub struct Entry {
    pub id: KeyId,
    pub tenant: Arc<str>,
    pub project: Option<Arc<str>>,
    pub hash: KeyHash,
    pub expires_ms: Option<i64>,
    pub revoked: bool,
    /// Last time this key was used, for `keys list`; flushed in batches.
    last_used_ms: AtomicI64,
    flushed_ms: AtomicI64,
}

/// What the store says about one key.
#[derive(Debug, Clone)]
pub struct KeyState {
    pub id: KeyId,
    pub tenant: String,
    pub project: Option<String>,
    pub hash: KeyHash,
    pub expires_ms: Option<i64>,
    pub revoked: bool,
    pub last_used_ms: Option<i64>,
}

/// Why a request is not authenticated. Messages never contain the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`")]
    Missing,
    #[error("{0}")]
    Malformed(#[from] key::KeyFormatError),
    #[error("invalid API key")]
    Unknown,
    #[error("this API key has been revoked")]
    Revoked,
    #[error("this API key has expired")]
    Expired,
}

/// The keys, swapped whole on refresh; readers never lock.
#[derive(Debug, Default)]
pub struct KeyCache {
    map: ArcSwap<HashMap<KeyId, Arc<Entry>>>,
}

// === impl Principal ===

impl Principal {
    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }

    pub fn project(&self) -> Option<&str> {
        self.0.project.as_deref()
    }

    pub fn key_id(&self) -> &KeyId {
        &self.0.id
    }

    pub fn tenant_shared(&self) -> &Arc<str> {
        &self.0.tenant
    }

    pub fn project_shared(&self) -> Option<&Arc<str>> {
        self.0.project.as_ref()
    }
}

// === impl KeyCache ===

impl KeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Finds the caller's key in the headers and checks it.
    pub fn authenticate(&self, headers: &HeaderMap, now_ms: i64) -> Result<Principal, AuthError> {
        let raw = presented(headers).ok_or(AuthError::Missing)?;
        let (id, hash) = PresentedKey::split(raw)?;
        let map = self.map.load();
        let entry = map.get(id).ok_or(AuthError::Unknown)?;
        if !entry.hash.ct_eq(&hash) {
            return Err(AuthError::Unknown);
        }
        if entry.revoked {
            return Err(AuthError::Revoked);
        }
        if entry.expires_ms.is_some_and(|e| e <= now_ms) {
            return Err(AuthError::Expired);
        }
        entry.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
        Ok(Principal(entry.clone()))
    }

    /// Merges keys read from the store (new, changed or revoked).
    pub fn apply(&self, rows: Vec<KeyState>) {
        if rows.is_empty() {
            return;
        }
        let mut next: HashMap<KeyId, Arc<Entry>> = (**self.map.load()).clone();
        for r in rows {
            let last = r.last_used_ms.unwrap_or(0);
            let previous = next
                .get(r.id.as_str())
                .map_or(0, |e| e.last_used_ms.load(Ordering::Relaxed));
            let used = last.max(previous);
            next.insert(
                r.id.clone(),
                Arc::new(Entry {
                    id: r.id,
                    tenant: r.tenant.into(),
                    project: r.project.map(Into::into),
                    hash: r.hash,
                    expires_ms: r.expires_ms,
                    revoked: r.revoked,
                    last_used_ms: AtomicI64::new(used),
                    flushed_ms: AtomicI64::new(last),
                }),
            );
        }
        self.map.store(Arc::new(next));
    }

    /// Keys used since the last call, with their last-use time, to write back.
    pub fn take_touches(&self) -> Vec<(KeyId, i64)> {
        self.map
            .load()
            .values()
            .filter_map(|e| {
                let used = e.last_used_ms.load(Ordering::Relaxed);
                let flushed = e.flushed_ms.swap(used, Ordering::Relaxed);
                (used > flushed).then(|| (e.id.clone(), used))
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The key from `Authorization: Bearer` or, failing that, `x-api-key`.
fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, rest) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim());
    }
    headers.get("x-api-key")?.to_str().ok().map(str::trim)
}

impl Borrow<str> for KeyId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use key::NewKey;

    fn cache_with(k: &NewKey, expires_ms: Option<i64>, revoked: bool) -> KeyCache {
        let c = KeyCache::new();
        c.apply(vec![KeyState {
            id: k.id.clone(),
            tenant: "acme".into(),
            project: Some("research".into()),
            hash: k.hash,
            expires_ms,
            revoked,
            last_used_ms: None,
        }]);
        c
    }

    fn bearer(raw: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {raw}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn bearer_and_x_api_key_both_authenticate() {
        let k = NewKey::generate();
        let c = cache_with(&k, None, false);
        let p = c.authenticate(&bearer(k.raw.expose()), 0).unwrap();
        assert_eq!((p.tenant(), p.project()), ("acme", Some("research")));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", k.raw.expose().parse().unwrap());
        assert_eq!(c.authenticate(&h, 0).unwrap().key_id(), &k.id);
    }

    #[test]
    fn wrong_secret_revoked_expired_and_missing_are_refused() {
        let k = NewKey::generate();
        let other = NewKey::generate();
        let c = cache_with(&k, Some(1_000), false);
        let forged = format!("cdn_{}_{}", k.id, &other.raw.expose()[13..]);
        assert_eq!(
            c.authenticate(&bearer(&forged), 0).err(),
            Some(AuthError::Unknown)
        );
        assert_eq!(
            c.authenticate(&bearer(other.raw.expose()), 0).err(),
            Some(AuthError::Unknown)
        );
        assert_eq!(
            c.authenticate(&HeaderMap::new(), 0).err(),
            Some(AuthError::Missing)
        );
        assert!(c.authenticate(&bearer(k.raw.expose()), 999).is_ok());
        assert_eq!(
            c.authenticate(&bearer(k.raw.expose()), 1_000).err(),
            Some(AuthError::Expired)
        );
        let c = cache_with(&k, None, true);
        assert_eq!(
            c.authenticate(&bearer(k.raw.expose()), 0).err(),
            Some(AuthError::Revoked)
        );
    }

    #[test]
    fn revocation_applies_to_a_running_cache() {
        let k = NewKey::generate();
        let c = cache_with(&k, None, false);
        assert!(c.authenticate(&bearer(k.raw.expose()), 0).is_ok());
        c.apply(vec![KeyState {
            id: k.id.clone(),
            tenant: "acme".into(),
            project: None,
            hash: k.hash,
            expires_ms: None,
            revoked: true,
            last_used_ms: None,
        }]);
        assert_eq!(
            c.authenticate(&bearer(k.raw.expose()), 0).err(),
            Some(AuthError::Revoked)
        );
    }

    #[test]
    fn touches_are_reported_once() {
        let k = NewKey::generate();
        let c = cache_with(&k, None, false);
        c.authenticate(&bearer(k.raw.expose()), 5_000).unwrap();
        assert_eq!(c.take_touches(), vec![(k.id.clone(), 5_000)]);
        assert!(c.take_touches().is_empty());
    }
}
