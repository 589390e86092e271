//! A key's own scope, narrower than its tenant's policy: the models it may
//! request (globs over public model names) and its own requests per minute.
//! Compiled once when the key enters the cache; a key without a scope costs
//! the request path one `None` check.
//!
//! A refresh replaces cache entries (the store's rows are re-read with an
//! overlap), so a key's limiter is carried over to the new entry when its
//! limit is unchanged, as tenant limiters are over a reload (`crate::limits`):
//! re-reading a row must not hand the key a fresh minute.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};

use crate::limits::Limited;
use crate::store::KeyScope;

type Direct = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    DefaultClock,
    governor::middleware::NoOpMiddleware<<DefaultClock as Clock>::Instant>,
>;

/// A scope, compiled.
#[derive(Debug)]
pub(crate) struct Compiled {
    /// As stored, to tell whether a re-read row changed it.
    source: KeyScope,
    models: Option<Box<[glob::Pattern]>>,
    rpm: Option<Arc<KeyLimiter>>,
}

pub(crate) struct KeyLimiter {
    limiter: Direct,
    clock: DefaultClock,
}

impl std::fmt::Debug for KeyLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLimiter").finish_non_exhaustive()
    }
}

impl Compiled {
    /// `None` for a scope that limits nothing. A stored glob that no longer
    /// parses matches nothing (fail closed).
    pub(crate) fn new(
        scope: &KeyScope,
        previous: Option<&Compiled>,
        clock: &DefaultClock,
    ) -> Option<Arc<Compiled>> {
        if scope.models.is_none() && scope.rpm.is_none() {
            return None;
        }
        let models = scope.models.as_ref().map(|globs| {
            globs
                .iter()
                .filter_map(|g| glob::Pattern::new(g).ok())
                .collect::<Box<[_]>>()
        });
        let rpm = scope.rpm.and_then(NonZeroU32::new).map(|n| {
            match previous
                .filter(|p| p.source.rpm == scope.rpm)
                .and_then(|p| p.rpm.clone())
            {
                Some(kept) => kept,
                None => Arc::new(KeyLimiter {
                    limiter: RateLimiter::direct_with_clock(Quota::per_minute(n), clock.clone()),
                    clock: clock.clone(),
                }),
            }
        });
        Some(Arc::new(Compiled {
            source: scope.clone(),
            models,
            rpm,
        }))
    }

    /// Whether the key may request `model` (a public model name).
    pub(crate) fn allows_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|globs| globs.iter().any(|g| g.matches(model)))
    }

    /// Counts one request against the key's own limit.
    pub(crate) fn admit(&self) -> Result<(), Limited> {
        let Some(rl) = &self.rpm else { return Ok(()) };
        rl.limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(rl.clock.now());
            Limited {
                retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(models: Option<&[&str]>, rpm: Option<u32>) -> KeyScope {
        KeyScope {
            models: models.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
            rpm,
        }
    }

    #[test]
    fn an_empty_scope_compiles_to_nothing() {
        assert!(Compiled::new(&KeyScope::default(), None, &DefaultClock::default()).is_none());
    }

    #[test]
    fn models_are_matched_by_glob_and_a_broken_glob_matches_nothing() {
        let clock = DefaultClock::default();
        let c = Compiled::new(&scope(Some(&["gpt-4o*", "claude-*"]), None), None, &clock).unwrap();
        assert!(c.allows_model("gpt-4o-mini") && c.allows_model("claude-3"));
        assert!(!c.allows_model("mistral-large"));
        let broken = Compiled::new(&scope(Some(&["[oops"]), None), None, &clock).unwrap();
        assert!(!broken.allows_model("[oops"));
        let any = Compiled::new(&scope(None, Some(5)), None, &clock).unwrap();
        assert!(any.allows_model("anything"));
    }

    #[test]
    fn the_limit_is_kept_across_a_reread_and_restarted_when_changed() {
        let clock = DefaultClock::default();
        let first = Compiled::new(&scope(None, Some(2)), None, &clock).unwrap();
        assert!(first.admit().is_ok() && first.admit().is_ok());
        let refused = first.admit().unwrap_err();
        assert!((1..=30).contains(&refused.retry_after_secs), "{refused:?}");
        // The same row read again: still refused.
        let again = Compiled::new(&scope(None, Some(2)), Some(&first), &clock).unwrap();
        assert!(again.admit().is_err());
        // A changed limit starts afresh.
        let changed = Compiled::new(&scope(None, Some(3)), Some(&again), &clock).unwrap();
        assert!(changed.admit().is_ok());
    }
}
