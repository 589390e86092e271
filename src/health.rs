//! Passive health: a provider that fails several times in a row is ejected
//! for a while, so requests stop waiting on it. Lock-free; written by
//! `upstream` after each attempt, read by the exchange when ordering attempts.
//! Ejection never makes an ineligible provider eligible: it only reorders
//! (ejected providers are tried last, not skipped, so a blip on every
//! provider does not turn into refusals).

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

/// Consecutive retryable failures that eject a provider.
pub const EJECT_AFTER: u32 = 5;
/// How long an ejection lasts.
pub const EJECT_FOR_MS: i64 = 30_000;

/// Health of every provider, indexed like the policy table's providers.
#[derive(Debug)]
pub struct Health {
    slots: Box<[Slot]>,
}

#[derive(Debug, Default)]
struct Slot {
    failures: AtomicU32,
    ejected_until_ms: AtomicI64,
}

impl Health {
    pub fn new(providers: usize) -> Self {
        Self {
            slots: (0..providers).map(|_| Slot::default()).collect(),
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
}
