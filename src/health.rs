//! Passive health: a provider that fails several times in a row is ejected
//! for a while, so requests stop waiting on it. Lock-free; written by
//! `upstream` after each attempt, read by the exchange when ordering attempts.
//! Ejection never makes an ineligible provider eligible: it only reorders
//! (ejected providers are tried last, not skipped, so a blip on every
//! provider does not turn into refusals).
//!
//! A configuration reload keeps each remaining provider's state
//! ([`Health::carry_over`]): the new `Health` shares the slot the same
//! provider had in the old one, so an ejected provider stays ejected and
//! attempts still running on the old configuration count in the new one.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

/// Consecutive retryable failures that eject a provider.
pub const EJECT_AFTER: u32 = 5;
/// How long an ejection lasts.
pub const EJECT_FOR_MS: i64 = 30_000;

/// Health of every provider, indexed like the policy table's providers.
#[derive(Debug)]
pub struct Health {
    slots: Box<[Arc<Slot>]>,
}

#[derive(Debug, Default)]
struct Slot {
    failures: AtomicU32,
    ejected_until_ms: AtomicI64,
}

impl Health {
    pub fn new(providers: usize) -> Self {
        Self {
            slots: (0..providers).map(|_| Arc::default()).collect(),
        }
    }

    /// The health of a new provider list: `previous[i]` is the index the
    /// provider now at `i` had before (matched by id by the caller), or
    /// `None` for a provider that is new, which starts healthy.
    pub fn carry_over(&self, previous: &[Option<usize>]) -> Self {
        Self {
            slots: previous
                .iter()
                .map(|old| {
                    old.and_then(|i| self.slots.get(i))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect(),
        }
    }

    pub fn is_ejected(&self, provider: usize, now_ms: i64) -> bool {
        self.slots
            .get(provider)
            .is_some_and(|s| s.ejected_until_ms.load(Ordering::Relaxed) > now_ms)
    }

    pub fn record_success(&self, provider: usize) {
        if let Some(s) = self.slots.get(provider) {
            s.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a retryable failure; returns true when it ejects the provider.
    pub fn record_failure(&self, provider: usize, now_ms: i64) -> bool {
        let Some(s) = self.slots.get(provider) else {
            return false;
        };
        let n = s.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= EJECT_AFTER {
            s.failures.store(0, Ordering::Relaxed);
            s.ejected_until_ms
                .store(now_ms + EJECT_FOR_MS, Ordering::Relaxed);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejects_after_consecutive_failures_and_recovers_after_the_period() {
        let h = Health::new(2);
        for _ in 0..EJECT_AFTER - 1 {
            assert!(!h.record_failure(0, 1_000));
        }
        assert!(!h.is_ejected(0, 1_000));
        assert!(h.record_failure(0, 1_000));
        assert!(h.is_ejected(0, 1_000));
        assert!(!h.is_ejected(1, 1_000), "other providers unaffected");
        assert!(!h.is_ejected(0, 1_000 + EJECT_FOR_MS));
    }

    #[test]
    fn a_success_resets_the_count() {
        let h = Health::new(1);
        for _ in 0..EJECT_AFTER - 1 {
            h.record_failure(0, 0);
        }
        h.record_success(0);
        assert!(!h.record_failure(0, 0));
        assert!(!h.is_ejected(0, 0));
    }

    #[test]
    fn a_reload_keeps_the_state_of_providers_that_remain_wherever_they_move() {
        let h = Health::new(2);
        for _ in 0..EJECT_AFTER {
            h.record_failure(1, 1_000);
        }
        h.record_failure(0, 1_000);
        // Provider 1 is now first, provider 0 is gone, a new one is second.
        let next = h.carry_over(&[Some(1), None]);
        assert!(
            next.is_ejected(0, 1_000),
            "the ejection follows the provider"
        );
        assert!(!next.is_ejected(1, 1_000), "a new provider starts healthy");
        // One slot, shared: the old snapshot's attempts count in the new one.
        h.record_success(1);
        for _ in 0..EJECT_AFTER - 1 {
            next.record_failure(0, 50_000);
        }
        assert!(!next.record_failure(1, 50_000));
        assert!(next.record_failure(0, 50_000));
        assert!(h.is_ejected(1, 50_000));
    }
}
