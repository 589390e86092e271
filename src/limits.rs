//! Per-tenant rate limits, built from the policies at load time: requests per
//! minute through governor (GCRA), and tokens per minute as a fixed one-minute
//! window that is charged after each response (the cost of a request is known
//! only once the provider reports usage). Lock-free on the request path.
//!
//! Limits live in this process; with several replicas each enforces its own
//! share (a Redis-backed store is planned behind the same interface).
//!
//! A configuration reload builds new `Limits` from the previous ones
//! ([`Limits::carry_over`]): a tenant's request limiter and token window are
//! the same objects as before when that limit is unchanged, so editing any
//! policy file (or SIGHUP) does not hand every tenant a fresh minute. A limit
//! whose value changed starts afresh.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};

use crate::policy::Table;

type Direct<C> = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    C,
    governor::middleware::NoOpMiddleware<<C as Clock>::Instant>,
>;

/// Every tenant's limiters.
pub struct Limits<C: Clock = DefaultClock> {
    tenants: HashMap<Box<str>, TenantLimits<C>>,
    /// The limiters' clock, made once: building a `DefaultClock` calibrates
    /// it (CPUID), far too slow to do per request.
    clock: C,
}

/// Shared (`Arc`) so a reload can hand the same limiter to the next
/// configuration; each remembers the limit it was built for.
struct TenantLimits<C: Clock> {
    requests: Option<Arc<RequestLimiter<C>>>,
    tokens: Option<Arc<TokenWindow>>,
}

struct RequestLimiter<C: Clock> {
    per_minute: NonZeroU32,
    limiter: Direct<C>,
}

/// A refusal: retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
}

/// Tokens charged in the current minute, packed as (minute << 32 | count).
struct TokenWindow {
    per_minute: u32,
    state: AtomicU64,
}

// === impl Limits ===

impl Limits<DefaultClock> {
    pub fn from_table(table: &Table) -> Self {
        Self::with_clock(table, &DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limits<C> {
    pub fn with_clock(table: &Table, clock: &C) -> Self {
        Self::build(table, clock, None)
    }

    /// The limits of `table`, keeping `self`'s state (and clock) for every
    /// tenant limit whose value is unchanged: what a reload builds.
    pub fn carry_over(&self, table: &Table) -> Self {
        Self::build(table, &self.clock, Some(self))
    }

    fn build(table: &Table, clock: &C, previous: Option<&Self>) -> Self {
        let tenants =
            table
                .tenants()
                .into_iter()
                .map(|t| {
                    let before = previous.and_then(|p| p.tenants.get(t.tenant.as_str()));
                    let requests = t.limits.requests_per_minute.and_then(NonZeroU32::new).map(
                        |n| match before.and_then(|b| b.requests.as_ref()) {
                            Some(kept) if kept.per_minute == n => kept.clone(),
                            _ => Arc::new(RequestLimiter {
                                per_minute: n,
                                limiter: RateLimiter::direct_with_clock(
                                    Quota::per_minute(n),
                                    clock.clone(),
                                ),
                            }),
                        },
                    );
                    let tokens = t.limits.tokens_per_minute.map(|n| {
                        match before.and_then(|b| b.tokens.as_ref()) {
                            Some(kept) if kept.per_minute == n => kept.clone(),
                            _ => Arc::new(TokenWindow {
                                per_minute: n,
                                state: AtomicU64::new(0),
                            }),
                        }
                    });
                    (t.tenant.as_str().into(), TenantLimits { requests, tokens })
                })
                .collect();
        Self {
            tenants,
            clock: clock.clone(),
        }
    }

    /// [`Limits::admit`] with the limiters' own clock.
    pub fn admit_now(&self, tenant: &str, now_ms: i64) -> Result<(), Limited> {
        self.admit(tenant, now_ms, &self.clock)
    }

    /// Admits one request for `tenant` at `now_ms`, or says when to retry.
    pub fn admit(&self, tenant: &str, now_ms: i64, clock: &C) -> Result<(), Limited> {
        let Some(t) = self.tenants.get(tenant) else {
            return Ok(());
        };
        if let Some(tokens) = &t.tokens {
            let minute = minute_of(now_ms);
            let (m, used) = unpack(tokens.state.load(Ordering::Relaxed));
            if m == minute && used >= u64::from(tokens.per_minute) {
                let into_minute = u64::try_from(now_ms.rem_euclid(60_000)).unwrap_or(0);
                return Err(Limited {
                    retry_after_secs: (60_000 - into_minute).div_ceil(1000).max(1),
                });
            }
        }
        if let Some(rl) = &t.requests
            && let Err(not_until) = rl.limiter.check()
        {
            let wait = not_until.wait_time_from(clock.now());
            return Err(Limited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            });
        }
        Ok(())
    }

    /// Charges tokens reported by a provider to `tenant`'s current minute.
    pub fn charge_tokens(&self, tenant: &str, now_ms: i64, tokens: u64) {
        let Some(window) = self.tenants.get(tenant).and_then(|t| t.tokens.as_ref()) else {
            return;
        };
        let minute = minute_of(now_ms);
        let _ = window
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                let (m, used) = unpack(s);
                let base = if m == minute { used } else { 0 };
                Some(pack(minute, base.saturating_add(tokens)))
            });
    }
}

fn minute_of(now_ms: i64) -> u64 {
    u64::try_from(now_ms.div_euclid(60_000)).unwrap_or(0) & 0xFFFF_FFFF
}

fn pack(minute: u64, used: u64) -> u64 {
    (minute << 32) | used.min(0xFFFF_FFFF)
}

fn unpack(s: u64) -> (u64, u64) {
    (s >> 32, s & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;
    use crate::policy::{Layer, LayerKind, Limits as PolicyLimits, Regions, TenantPolicy};

    fn table(rpm: Option<u32>, tpm: Option<u32>) -> Table {
        let t = TenantPolicy {
            tenant: "acme".into(),
            description: None,
            layer: Layer::empty(LayerKind::Tenant),
            order: vec![],
            failover: true,
            limits: PolicyLimits {
                requests_per_minute: rpm,
                tokens_per_minute: tpm,
            },
            projects: Default::default(),
        };
        Table::compile(vec![], None, vec![t], Regions::default())
    }

    #[test]
    fn requests_per_minute_refuses_the_excess_and_recovers() {
        let clock = FakeRelativeClock::default();
        let l = Limits::with_clock(&table(Some(2), None), &clock);
        assert!(l.admit("acme", 0, &clock).is_ok());
        assert!(l.admit("acme", 0, &clock).is_ok());
        let refused = l.admit("acme", 0, &clock).unwrap_err();
        assert_eq!(refused.retry_after_secs, 30, "one request every 30 s");
        clock.advance(Duration::from_secs(30));
        assert!(l.admit("acme", 30_000, &clock).is_ok());
        assert!(
            l.admit("other", 0, &clock).is_ok(),
            "tenants without limits pass"
        );
    }

    #[test]
    fn tokens_per_minute_counts_reported_usage_per_window() {
        let clock = FakeRelativeClock::default();
        let l = Limits::with_clock(&table(None, Some(100)), &clock);
        assert!(l.admit("acme", 1_000, &clock).is_ok());
        l.charge_tokens("acme", 1_000, 60);
        assert!(l.admit("acme", 2_000, &clock).is_ok());
        l.charge_tokens("acme", 2_000, 40);
        let refused = l.admit("acme", 50_000, &clock).unwrap_err();
        assert_eq!(refused.retry_after_secs, 10);
        assert!(
            l.admit("acme", 60_000, &clock).is_ok(),
            "a new minute starts empty"
        );
    }

    #[test]
    fn a_reload_keeps_an_unchanged_request_window_and_restarts_a_changed_one() {
        let clock = FakeRelativeClock::default();
        let l = Limits::with_clock(&table(Some(2), None), &clock);
        assert!(l.admit("acme", 0, &clock).is_ok());
        assert!(l.admit("acme", 0, &clock).is_ok());
        let same = l.carry_over(&table(Some(2), None));
        assert!(same.admit("acme", 0, &clock).is_err(), "window kept");
        let changed = same.carry_over(&table(Some(3), None));
        for _ in 0..3 {
            assert!(
                changed.admit("acme", 0, &clock).is_ok(),
                "new limit, new window"
            );
        }
        assert!(changed.admit("acme", 0, &clock).is_err());
    }

    #[test]
    fn a_reload_keeps_an_unchanged_token_window_shared_with_the_old_snapshot() {
        let clock = FakeRelativeClock::default();
        let l = Limits::with_clock(&table(None, Some(100)), &clock);
        l.charge_tokens("acme", 0, 60);
        let same = l.carry_over(&table(None, Some(100)));
        assert!(same.admit("acme", 0, &clock).is_ok());
        // A request that started on the old snapshot is charged after the
        // swap: the new snapshot sees it.
        l.charge_tokens("acme", 0, 40);
        assert!(same.admit("acme", 0, &clock).is_err());
        let changed = same.carry_over(&table(None, Some(200)));
        assert!(
            changed.admit("acme", 0, &clock).is_ok(),
            "new limit, new window"
        );
    }
}
