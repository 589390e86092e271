//! What a miss in the key cache does: the key id is looked up in the store,
//! so a key works on every replica the moment it is created, not one refresh
//! later.
//!
//! A miss is rare for a real key (once per key per replica; after that the
//! key is in the cache and refreshed and revoked with it) and is what every
//! request with a made-up id causes, so the miss path is bounded three ways:
//!
//! - **Single flight per id.** Concurrent requests presenting the same unknown
//!   id share one store query: the first one runs it, the others wait for
//!   its result. If the request running it goes away (its client left), the
//!   query is dropped with it and the next waiter runs it instead.
//! - **Negative cache.** An id the store does not have is remembered as
//!   unknown for [`UNKNOWN_TTL_MS`] (at most [`UNKNOWN_MAX`] ids). Key ids are
//!   random (36^8), and a key's id is first shown when the key is created, so
//!   an id can be remembered as unknown before its key exists only if a client
//!   presented it before anyone could know it: by guessing. A key created on
//!   replica A is therefore never held back on B by this cache; and the
//!   periodic refresh, which loads every new key anyway, bounds the delay even
//!   for a guessed one.
//! - **A global bound**, [`LOOKUPS_PER_SECOND`] store queries per second (per
//!   process, a fixed one-second window). A miss over the bound is refused
//!   without a query, with the same `401 invalid_api_key` as an unknown key:
//!   a client spraying ids cannot tell "limited" from "unknown", so the
//!   answer says nothing about which ids exist, and it learns nothing it could
//!   retry on. The cost falls on a key first used during such a flood: it is
//!   refused until the refresh loads it (within [`super::REFRESH_MS`]).
//!
//! A query that fails or takes longer than [`LOOKUP_TIMEOUT`] is a `503`
//! (`AuthError::Unavailable`): the key may well be valid, so the client is
//! told to retry rather than that its key is bad; a request never waits on the
//! store for longer than that. Neither an error nor a refusal by the bound is
//! remembered.
//!
//! A cache hit touches none of this: it stays a lock-free `ArcSwap` load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus::IntCounterVec;
use tokio::sync::OnceCell;

use super::Entry;
use super::key::KeyId;

/// Store queries per second that cache misses may cause, per process.
pub const LOOKUPS_PER_SECOND: u32 = 50;
/// How long an id the store does not have is answered from memory.
pub const UNKNOWN_TTL_MS: i64 = 2_000;
/// Most ids remembered as unknown. Only ids that were looked up are
/// remembered, so the bound on lookups keeps this far smaller in practice
/// (at most `LOOKUPS_PER_SECOND × UNKNOWN_TTL_MS / 1000` live entries).
pub const UNKNOWN_MAX: usize = 4_096;
/// The longest a request waits for a lookup.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The result of one cache miss, and the `result` label of
/// `cordon_key_lookups_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The store has the key; it is now in the cache.
    Found,
    /// The store does not have it; remembered for [`UNKNOWN_TTL_MS`].
    Unknown,
    /// Over [`LOOKUPS_PER_SECOND`]: refused without a query.
    Limited,
    /// The query failed or timed out.
    Error,
}

impl Lookup {
    pub const ALL: [Lookup; 4] = [
        Lookup::Found,
        Lookup::Unknown,
        Lookup::Limited,
        Lookup::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Lookup::Found => "found",
            Lookup::Unknown => "unknown",
            Lookup::Limited => "limited",
            Lookup::Error => "error",
        }
    }
}

/// What the requests sharing one flight learn.
#[derive(Debug, Clone)]
pub(super) enum Flight {
    Found(Arc<Entry>),
    /// Unknown, or refused by the bound: the client cannot tell which.
    Refused,
    Failed,
}

type Cell = Arc<OnceCell<Flight>>;

/// The state of the miss path (see the module documentation).
#[derive(Debug)]
pub(super) struct Misses {
    flights: Mutex<HashMap<KeyId, Cell>>,
    /// Id → until when (Unix ms) it is known to be unknown.
    unknown: Mutex<HashMap<KeyId, i64>>,
    /// `second << 32 | lookups in that second`.
    window: AtomicU64,
    per_second: u32,
    /// `cordon_key_lookups_total`, by [`Lookup`].
    counter: Option<IntCounterVec>,
}

/// A request's share in a flight. Dropping it (done, or the request gone)
/// removes the flight from the map once it has a result or has nobody else
/// waiting on it, so an id's next miss starts afresh.
pub(super) struct Ticket<'a> {
    flights: &'a Mutex<HashMap<KeyId, Cell>>,
    id: KeyId,
    cell: Option<Cell>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the map consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl Misses ===

impl Misses {
    pub(super) fn new(per_second: u32, counter: Option<IntCounterVec>) -> Self {
        Self {
            flights: Mutex::default(),
            unknown: Mutex::default(),
            window: AtomicU64::new(0),
            per_second,
            counter,
        }
    }

    pub(super) fn count(&self, lookup: Lookup) {
        if let Some(c) = &self.counter {
            c.with_label_values(&[lookup.as_str()]).inc();
        }
    }

    /// Whether `id` was found unknown less than [`UNKNOWN_TTL_MS`] ago.
    pub(super) fn known_unknown(&self, id: &str, now_ms: i64) -> bool {
        let mut unknown = lock(&self.unknown);
        match unknown.get(id) {
            Some(&until) if until > now_ms => true,
            Some(_) => {
                unknown.remove(id);
                false
            }
            None => false,
        }
    }

    /// Remembers `id` as unknown. When the cache is full, expired ids are
    /// dropped first; if it is still full, the id is not remembered (the
    /// bound on lookups still holds).
    pub(super) fn remember_unknown(&self, id: KeyId, now_ms: i64) {
        let mut unknown = lock(&self.unknown);
        if unknown.len() >= UNKNOWN_MAX {
            unknown.retain(|_, until| *until > now_ms);
        }
        if unknown.len() < UNKNOWN_MAX {
            unknown.insert(id, now_ms.saturating_add(UNKNOWN_TTL_MS));
        }
    }

    /// Takes one lookup from this second's allowance; `false` when spent.
    pub(super) fn admit(&self, now_ms: i64) -> bool {
        let second = u64::try_from(now_ms.div_euclid(1_000)).unwrap_or(0) & 0xFFFF_FFFF;
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (at, used) = (current >> 32, current & 0xFFFF_FFFF);
            let used = if at == second { used } else { 0 };
            if used >= u64::from(self.per_second) {
                return false;
            }
            let next = second << 32 | (used + 1);
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Joins the flight for `id`, starting it if there is none.
    pub(super) fn join(&self, id: KeyId) -> Ticket<'_> {
        let mut flights = lock(&self.flights);
        let cell = flights.entry(id.clone()).or_default().clone();
        Ticket {
            flights: &self.flights,
            id,
            cell: Some(cell),
        }
    }

    #[cfg(test)]
    pub(super) fn flights(&self) -> usize {
        lock(&self.flights).len()
    }
}

// === impl Ticket ===

impl Ticket<'_> {
    /// The flight's result, once a request has set it. (`None` only
    /// while the ticket is being dropped.)
    pub(super) fn cell(&self) -> Option<&OnceCell<Flight>> {
        self.cell.as_deref()
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let Some(mine) = self.cell.take() else {
            return;
        };
        let mut flights = lock(self.flights);
        let current = flights.get(&self.id).is_some_and(|c| Arc::ptr_eq(c, &mine));
        // Every clone of a flight's cell is made and dropped under this lock,
        // so the count is exact: 2 is the map's and this ticket's.
        if current && (mine.initialized() || Arc::strong_count(&mine) == 2) {
            flights.remove(&self.id);
        }
        drop(mine);
    }
}
