//! Client authentication: `Authorization: Bearer <key>` or `x-api-key`,
//! checked against an in-memory copy of the key table that a background task
//! refreshes from the store every [`REFRESH_MS`]; a revoked or expired key is
//! refused within one refresh interval.
//!
//! A key found in the cache is checked without a lock and without the store.
//! An id the cache does not hold is looked up in the store
//! ([`KeyCache::authenticate_or_fetch`]), one query per id however many
//! requests present it, with unknown ids remembered briefly and a bound on
//! queries per second (`lookup`); a key found that way joins the cache, so
//! the refresh revokes it like any other.

pub(crate) mod issue;
pub mod key;
mod lookup;
pub(crate) mod scope;
pub mod token;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwap;
use http::HeaderMap;
use prometheus::IntCounterVec;

use key::{KeyHash, KeyId, PresentedKey};
use lookup::{Flight, Misses};
pub use lookup::{LOOKUP_TIMEOUT, LOOKUPS_PER_SECOND, Lookup, UNKNOWN_MAX, UNKNOWN_TTL_MS};

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
    /// The key's own models and rate limit; `None`: only its policy's.
    scope: Option<Arc<scope::Compiled>>,
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
    pub scope: crate::store::KeyScope,
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
    /// The key is not in the cache and the store could not be asked in
    /// time: the key may be valid, so the client should retry.
    #[error("the API key could not be checked just now; retry shortly")]
    Unavailable,
}

/// The keys, swapped whole on change; readers never lock.
#[derive(Debug)]
pub struct KeyCache {
    map: ArcSwap<HashMap<KeyId, Arc<Entry>>>,
    misses: Misses,
    /// The clock of per-key rate limiters, made once (making one calibrates it).
    clock: governor::clock::DefaultClock,
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

    /// Whether the key's own scope lets it request `model` (a public name).
    pub fn allows_model(&self, model: &str) -> bool {
        self.0.scope.as_ref().is_none_or(|s| s.allows_model(model))
    }

    /// Counts one request against the key's own rate limit, if it has one.
    pub fn admit(&self) -> Result<(), crate::limits::Limited> {
        self.0.scope.as_ref().map_or(Ok(()), |s| s.admit())
    }

    pub fn tenant_shared(&self) -> &Arc<str> {
        &self.0.tenant
    }

    pub fn project_shared(&self) -> Option<&Arc<str>> {
        self.0.project.as_ref()
    }
}

// === impl KeyCache ===

impl Default for KeyCache {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyCache {
    /// A cache whose misses may query the store [`LOOKUPS_PER_SECOND`]
    /// times a second, uncounted.
    pub fn new() -> Self {
        Self::build(LOOKUPS_PER_SECOND, None)
    }

    /// A cache whose misses may query the store `per_second` times a second,
    /// each miss counted in `counter` under its [`Lookup`] label.
    pub fn with_lookups(per_second: u32, counter: IntCounterVec) -> Self {
        Self::build(per_second, Some(counter))
    }

    fn build(per_second: u32, counter: Option<IntCounterVec>) -> Self {
        Self {
            map: ArcSwap::default(),
            misses: Misses::new(per_second, counter),
            clock: governor::clock::DefaultClock::default(),
        }
    }

    /// Finds the caller's key in the headers and checks it against the
    /// cache only: an id the cache does not hold is [`AuthError::Unknown`].
    pub fn authenticate(&self, headers: &HeaderMap, now_ms: i64) -> Result<Principal, AuthError> {
        let raw = presented(headers).ok_or(AuthError::Missing)?;
        let (id, hash) = PresentedKey::split(raw)?;
        let map = self.map.load();
        let entry = map.get(id).ok_or(AuthError::Unknown)?;
        check(entry, &hash, now_ms)
    }

    /// [`KeyCache::authenticate`], and on a miss `fetch` asks the store for
    /// the id (see `lookup` for what bounds this). A hit never waits; a miss
    /// waits at most [`LOOKUP_TIMEOUT`], and [`AuthError::Unavailable`] when
    /// the store fails or is that slow. A key found joins the cache.
    pub async fn authenticate_or_fetch<F, Fut, E>(
        &self,
        headers: &HeaderMap,
        now_ms: i64,
        fetch: F,
    ) -> Result<Principal, AuthError>
    where
        F: FnOnce(KeyId) -> Fut,
        Fut: Future<Output = Result<Option<KeyState>, E>>,
        E: Display,
    {
        let raw = presented(headers).ok_or(AuthError::Missing)?;
        let (id, hash) = PresentedKey::split(raw)?;
        if let Some(entry) = self.map.load().get(id) {
            return check(entry, &hash, now_ms);
        }
        let entry = self.miss(id, now_ms, fetch).await?;
        check(&entry, &hash, now_ms)
    }

    /// The key of a cache miss, from the unknown ids, a flight under way, or
    /// the store.
    async fn miss<F, Fut, E>(
        &self,
        id: &str,
        now_ms: i64,
        fetch: F,
    ) -> Result<Arc<Entry>, AuthError>
    where
        F: FnOnce(KeyId) -> Fut,
        Fut: Future<Output = Result<Option<KeyState>, E>>,
        E: Display,
    {
        if self.misses.known_unknown(id, now_ms) {
            return Err(AuthError::Unknown);
        }
        let id = KeyId::parse(id)?;
        let ticket = self.misses.join(id.clone());
        let Some(cell) = ticket.cell() else {
            return Err(AuthError::Unavailable);
        };
        let flight = cell
            .get_or_init(|| self.fly(id, now_ms, fetch))
            .await
            .clone();
        drop(ticket);
        match flight {
            Flight::Found(entry) => Ok(entry),
            Flight::Refused => Err(AuthError::Unknown),
            Flight::Failed => Err(AuthError::Unavailable),
        }
    }

    /// One flight: the store query for `id`, unless the answer is already
    /// known or the bound is spent.
    async fn fly<F, Fut, E>(&self, id: KeyId, now_ms: i64, fetch: F) -> Flight
    where
        F: FnOnce(KeyId) -> Fut,
        Fut: Future<Output = Result<Option<KeyState>, E>>,
        E: Display,
    {
        // A flight that ended just before this one started may have answered.
        if let Some(entry) = self.map.load().get(&id) {
            return Flight::Found(entry.clone());
        }
        if self.misses.known_unknown(id.as_str(), now_ms) {
            return Flight::Refused;
        }
        if !self.misses.admit(now_ms) {
            self.misses.count(Lookup::Limited);
            return Flight::Refused;
        }
        match tokio::time::timeout(LOOKUP_TIMEOUT, fetch(id.clone())).await {
            Ok(Ok(Some(state))) if state.id == id => {
                self.misses.count(Lookup::Found);
                Flight::Found(self.insert_found(state))
            }
            Ok(Ok(_)) => {
                self.misses.count(Lookup::Unknown);
                self.misses.remember_unknown(id, now_ms);
                Flight::Refused
            }
            Ok(Err(e)) => {
                self.misses.count(Lookup::Error);
                tracing::warn!(error = %e, "key lookup failed");
                Flight::Failed
            }
            Err(_) => {
                self.misses.count(Lookup::Error);
                tracing::warn!(
                    timeout_ms = LOOKUP_TIMEOUT.as_millis(),
                    "key lookup timed out"
                );
                Flight::Failed
            }
        }
    }

    /// Adds a key a lookup found, unless the cache got it meanwhile (then
    /// the cache's entry, which the refresh keeps current, wins), and
    /// returns the entry now cached.
    fn insert_found(&self, state: KeyState) -> Arc<Entry> {
        let id = state.id.clone();
        let scope = scope::Compiled::new(&state.scope, None, &self.clock);
        let fresh = Arc::new(Entry::new(state, 0, scope));
        let mut cached = fresh.clone();
        self.map.rcu(|current| {
            if let Some(e) = current.get(&id) {
                cached = e.clone();
                return current.clone();
            }
            cached = fresh.clone();
            let mut next = HashMap::clone(current);
            next.insert(id.clone(), fresh.clone());
            Arc::new(next)
        });
        cached
    }

    /// Merges keys read from the store (new, changed or revoked), replacing
    /// what the cache held for them, whether the refresh or a lookup put it
    /// there.
    pub fn apply(&self, rows: Vec<KeyState>) {
        if rows.is_empty() {
            return;
        }
        // `rcu`: a lookup may insert a key at the same time.
        self.map.rcu(|current| {
            let mut next = HashMap::clone(current);
            for r in &rows {
                let previous = next.get(r.id.as_str());
                let used = previous.map_or(0, |e| e.last_used_ms.load(Ordering::Relaxed));
                let scope = scope::Compiled::new(
                    &r.scope,
                    previous.and_then(|e| e.scope.as_deref()),
                    &self.clock,
                );
                next.insert(r.id.clone(), Arc::new(Entry::new(r.clone(), used, scope)));
            }
            next
        });
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

// === impl Entry ===

impl Entry {
    /// The cache's entry for a row, which was last used at the latest of the
    /// row's time and `used_ms` (what this process saw).
    fn new(r: KeyState, used_ms: i64, scope: Option<Arc<scope::Compiled>>) -> Self {
        let last = r.last_used_ms.unwrap_or(0);
        Self {
            id: r.id,
            tenant: r.tenant.into(),
            project: r.project.map(Into::into),
            hash: r.hash,
            expires_ms: r.expires_ms,
            revoked: r.revoked,
            scope,
            last_used_ms: AtomicI64::new(last.max(used_ms)),
            flushed_ms: AtomicI64::new(last),
        }
    }
}

/// The checks of a key the cache holds: its secret (in constant time), then
/// revocation, then expiry. A use is recorded for `take_touches`.
fn check(entry: &Arc<Entry>, hash: &KeyHash, now_ms: i64) -> Result<Principal, AuthError> {
    if !entry.hash.ct_eq(hash) {
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
            scope: Default::default(),
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
            scope: Default::default(),
        }]);
        assert_eq!(
            c.authenticate(&bearer(k.raw.expose()), 0).err(),
            Some(AuthError::Revoked)
        );
    }

    // === cache misses ===

    use std::sync::atomic::AtomicUsize;

    fn state(k: &NewKey, revoked: bool) -> KeyState {
        KeyState {
            id: k.id.clone(),
            tenant: "acme".into(),
            project: None,
            hash: k.hash,
            expires_ms: None,
            revoked,
            last_used_ms: None,
            scope: Default::default(),
        }
    }

    fn counted(per_second: u32) -> (KeyCache, IntCounterVec) {
        let counter =
            IntCounterVec::new(prometheus::Opts::new("lookups", "test"), &["result"]).unwrap();
        (KeyCache::with_lookups(per_second, counter.clone()), counter)
    }

    fn lookups(counter: &IntCounterVec) -> [u64; 4] {
        Lookup::ALL.map(|l| counter.with_label_values(&[l.as_str()]).get())
    }

    /// A store holding `keys`, counting its queries, each taking `delay`.
    struct FakeStore {
        keys: Vec<KeyState>,
        queries: AtomicUsize,
        delay: std::time::Duration,
        fail: bool,
    }

    impl FakeStore {
        fn new(keys: Vec<KeyState>) -> Self {
            Self {
                keys,
                queries: AtomicUsize::new(0),
                delay: std::time::Duration::from_millis(50),
                fail: false,
            }
        }

        async fn get(&self, id: KeyId) -> Result<Option<KeyState>, &'static str> {
            self.queries.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            if self.fail {
                return Err("store down");
            }
            Ok(self.keys.iter().find(|k| k.id == id).cloned())
        }

        fn queries(&self) -> usize {
            self.queries.load(Ordering::SeqCst)
        }
    }

    async fn auth(
        c: &KeyCache,
        store: &FakeStore,
        raw: &str,
        now_ms: i64,
    ) -> Result<Principal, AuthError> {
        c.authenticate_or_fetch(&bearer(raw), now_ms, async |id| store.get(id).await)
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_missing_from_the_cache_is_found_in_the_store_once() {
        let k = NewKey::generate();
        let store = FakeStore::new(vec![state(&k, false)]);
        let (c, counter) = counted(LOOKUPS_PER_SECOND);
        let p = auth(&c, &store, k.raw.expose(), 0).await.unwrap();
        assert_eq!(p.key_id(), &k.id);
        assert_eq!(c.len(), 1, "the key joined the cache");
        assert!(auth(&c, &store, k.raw.expose(), 1).await.is_ok());
        assert!(c.authenticate(&bearer(k.raw.expose()), 2).is_ok());
        assert_eq!(store.queries(), 1, "later requests hit the cache");
        assert_eq!(lookups(&counter), [1, 0, 0, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_on_one_id_share_one_query() {
        let k = NewKey::generate();
        let store = FakeStore::new(vec![state(&k, false)]);
        let (c, counter) = counted(LOOKUPS_PER_SECOND);
        let results =
            futures_util::future::join_all((0..50).map(|_| auth(&c, &store, k.raw.expose(), 0)))
                .await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(store.queries(), 1);
        assert_eq!(lookups(&counter), [1, 0, 0, 0]);
        assert_eq!(c.misses.flights(), 0, "the flight is gone once answered");

        // The same for an id the store does not have.
        let stranger = NewKey::generate();
        let results = futures_util::future::join_all(
            (0..50).map(|_| auth(&c, &store, stranger.raw.expose(), 0)),
        )
        .await;
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().err() == Some(&AuthError::Unknown))
        );
        assert_eq!(store.queries(), 2);
        assert_eq!(lookups(&counter), [1, 1, 0, 0]);
        assert_eq!(c.misses.flights(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_found_key_is_checked_like_a_cached_one() {
        let k = NewKey::generate();
        let other = NewKey::generate();
        let revoked = NewKey::generate();
        let store = FakeStore::new(vec![state(&k, false), state(&revoked, true)]);
        let (c, _) = counted(LOOKUPS_PER_SECOND);
        let forged = format!("cdn_{}_{}", k.id, &other.raw.expose()[13..]);
        assert_eq!(
            auth(&c, &store, &forged, 0).await.err(),
            Some(AuthError::Unknown),
            "the right id with a wrong secret"
        );
        assert!(auth(&c, &store, k.raw.expose(), 0).await.is_ok());
        assert_eq!(
            auth(&c, &store, revoked.raw.expose(), 0).await.err(),
            Some(AuthError::Revoked)
        );
        assert_eq!(store.queries(), 2, "one query per id");
        // The refresh revokes a key a lookup added.
        c.apply(vec![state(&k, true)]);
        assert_eq!(
            auth(&c, &store, k.raw.expose(), 0).await.err(),
            Some(AuthError::Revoked)
        );
        assert_eq!(store.queries(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_ids_are_remembered_briefly() {
        let stranger = NewKey::generate();
        let store = FakeStore::new(vec![]);
        let (c, counter) = counted(LOOKUPS_PER_SECOND);
        let raw = stranger.raw.expose();
        assert_eq!(
            auth(&c, &store, raw, 0).await.err(),
            Some(AuthError::Unknown)
        );
        assert_eq!(
            auth(&c, &store, raw, UNKNOWN_TTL_MS - 1).await.err(),
            Some(AuthError::Unknown)
        );
        assert_eq!(store.queries(), 1, "answered from the negative cache");
        assert_eq!(
            auth(&c, &store, raw, UNKNOWN_TTL_MS).await.err(),
            Some(AuthError::Unknown)
        );
        assert_eq!(store.queries(), 2, "asked again once expired");
        assert_eq!(lookups(&counter), [0, 2, 0, 0]);

        // A key the refresh loads is usable even while its id is
        // remembered as unknown: the cache is asked first.
        let now = UNKNOWN_TTL_MS + 1;
        c.apply(vec![state(&stranger, false)]);
        assert!(auth(&c, &store, raw, now).await.is_ok());
        assert_eq!(store.queries(), 2);
    }

    #[test]
    fn the_negative_cache_is_bounded() {
        let (c, _) = counted(LOOKUPS_PER_SECOND);
        let ids: Vec<KeyId> = (0..=UNKNOWN_MAX).map(|_| NewKey::generate().id).collect();
        for id in &ids[..UNKNOWN_MAX] {
            c.misses.remember_unknown(id.clone(), 0);
        }
        c.misses.remember_unknown(ids[UNKNOWN_MAX].clone(), 1);
        assert!(c.misses.known_unknown(ids[0].as_str(), 1));
        assert!(
            !c.misses.known_unknown(ids[UNKNOWN_MAX].as_str(), 1),
            "full of live entries: not remembered"
        );
        // Once the old entries expire, they make room.
        c.misses
            .remember_unknown(ids[UNKNOWN_MAX].clone(), UNKNOWN_TTL_MS);
        assert!(
            c.misses
                .known_unknown(ids[UNKNOWN_MAX].as_str(), UNKNOWN_TTL_MS)
        );
        assert!(!c.misses.known_unknown(ids[0].as_str(), UNKNOWN_TTL_MS));
    }

    #[tokio::test(start_paused = true)]
    async fn lookups_per_second_are_bounded_and_limited_looks_like_unknown() {
        let k = NewKey::generate();
        let store = FakeStore::new(vec![state(&k, false)]);
        let (c, counter) = counted(3);
        let strangers: Vec<NewKey> = (0..10).map(|_| NewKey::generate()).collect();
        for s in &strangers {
            assert_eq!(
                auth(&c, &store, s.raw.expose(), 1_000).await.err(),
                Some(AuthError::Unknown)
            );
        }
        assert_eq!(store.queries(), 3);
        assert_eq!(lookups(&counter), [0, 3, 7, 0]);
        // A real key over the bound is refused too (the refresh loads it)…
        assert_eq!(
            auth(&c, &store, k.raw.expose(), 1_999).await.err(),
            Some(AuthError::Unknown)
        );
        // …and found in the next second: refusals are not remembered.
        assert!(auth(&c, &store, k.raw.expose(), 2_000).await.is_ok());
        assert_eq!(store.queries(), 4);
        assert_eq!(lookups(&counter), [1, 3, 8, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_or_slow_store_is_unavailable_and_not_remembered() {
        let k = NewKey::generate();
        let mut store = FakeStore::new(vec![state(&k, false)]);
        store.fail = true;
        let (c, counter) = counted(LOOKUPS_PER_SECOND);
        assert_eq!(
            auth(&c, &store, k.raw.expose(), 0).await.err(),
            Some(AuthError::Unavailable)
        );
        store.fail = false;
        store.delay = LOOKUP_TIMEOUT * 10;
        let started = tokio::time::Instant::now();
        assert_eq!(
            auth(&c, &store, k.raw.expose(), 0).await.err(),
            Some(AuthError::Unavailable)
        );
        assert_eq!(started.elapsed(), LOOKUP_TIMEOUT, "never longer");
        store.delay = std::time::Duration::ZERO;
        assert!(auth(&c, &store, k.raw.expose(), 0).await.is_ok());
        assert_eq!(store.queries(), 3);
        assert_eq!(lookups(&counter), [1, 0, 0, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_takes_over_when_the_request_running_the_query_leaves() {
        let k = NewKey::generate();
        let store = FakeStore::new(vec![state(&k, false)]);
        let (c, _) = counted(LOOKUPS_PER_SECOND);
        let first = auth(&c, &store, k.raw.expose(), 0);
        let second = auth(&c, &store, k.raw.expose(), 0);
        let (gone, found) = tokio::join!(tokio::time::timeout(store.delay / 2, first), second);
        assert!(gone.is_err(), "the first request left mid-query");
        assert!(found.is_ok());
        assert_eq!(store.queries(), 2, "the second ran it again");
        assert_eq!(c.misses.flights(), 0);

        // A flight everyone left is not kept either.
        let stranger = NewKey::generate();
        let left =
            tokio::time::timeout(store.delay / 2, auth(&c, &store, stranger.raw.expose(), 0)).await;
        assert!(left.is_err());
        assert_eq!(c.misses.flights(), 0);
    }

    #[test]
    fn the_lookup_window_admits_per_second_and_starts_afresh() {
        let (c, _) = counted(2);
        assert!(c.misses.admit(5_000));
        assert!(c.misses.admit(5_999));
        assert!(!c.misses.admit(5_999));
        assert!(c.misses.admit(6_000));
        assert!(
            c.misses.admit(4_000),
            "a clock going back starts a window too"
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
