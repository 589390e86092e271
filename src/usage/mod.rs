//! Usage records: one per request, handed to a background writer that stores
//! them in batches. The request path only pushes onto a channel and never
//! waits. When the store fails, records go to a local spool file (in order,
//! fsynced) and are replayed from it, before any newer record, once the store
//! answers again, also after a restart: a slow or unavailable store delays
//! records, it does not drop them (SPEC invariant 5). Records still in memory
//! when the process is killed outright (at most one batch window, ~50 ms of
//! traffic) are the one loss this design accepts.
//!
//! The writer publishes whether it is storing or spooling ([`Spooling`],
//! read through [`UsageSink::spooling`]), so readiness can say the gateway
//! is degraded while the store cannot be written, and why.

mod record;
mod spool;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::mpsc;

pub use record::{UsageRecord, shared_word};
pub use spool::Spool;

use crate::clock;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Records per write.
const BATCH: usize = 500;
/// How long the writer waits to fill a batch.
const LINGER: Duration = Duration::from_millis(50);
/// Retry delays while the store fails: doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The longest store error kept for readiness, in characters.
const MAX_REASON: usize = 200;

/// Where the request path sends records. Cheap to clone.
#[derive(Clone, Debug)]
pub struct UsageSink {
    tx: mpsc::UnboundedSender<UsageRecord>,
    depth: Arc<AtomicI64>,
    spooling: Arc<ArcSwapOption<Spooling>>,
}

/// The writer could not store records and is spooling them: since when, and
/// the store's error (a [`StoreError`], which holds no values; one line,
/// bounded). Cleared once the spool has been replayed into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooling {
    /// Unix milliseconds of the first failed write of this episode.
    pub since_ms: i64,
    /// The latest store error.
    pub reason: String,
}

/// The writer's end; run it with [`Writer::run`].
pub struct Writer {
    rx: mpsc::UnboundedReceiver<UsageRecord>,
    depth: Arc<AtomicI64>,
    spooling: Arc<ArcSwapOption<Spooling>>,
    store: Store,
    metrics: Metrics,
    spool: Spool,
}

/// Creates a sink and its writer. Records left in `spool` by an earlier run
/// are stored first.
pub fn channel(store: Store, metrics: Metrics, spool: Spool) -> (UsageSink, Writer) {
    let (tx, rx) = mpsc::unbounded_channel();
    let depth = Arc::new(AtomicI64::new(0));
    let spooling = Arc::new(ArcSwapOption::empty());
    (
        UsageSink {
            tx,
            depth: depth.clone(),
            spooling: spooling.clone(),
        },
        Writer {
            rx,
            depth,
            spooling,
            store,
            metrics,
            spool,
        },
    )
}

impl UsageSink {
    /// Queues one record. Never blocks.
    pub fn record(&self, r: UsageRecord) {
        self.depth.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(r).is_err() {
            // The writer is gone (shutdown finished): nothing can store it now.
            self.depth.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("usage writer stopped; a usage record could not be queued");
        }
    }

    /// `Some` while the writer cannot store records and spools them.
    pub fn spooling(&self) -> Option<Arc<Spooling>> {
        self.spooling.load_full()
    }
}

impl Writer {
    /// Stores records until every sink is dropped and nothing is left in memory.
    pub async fn run(mut self) {
        let mut pending: VecDeque<UsageRecord> = VecDeque::new();
        let mut backoff = Duration::from_millis(100);
        let mut open = true;
        loop {
            self.publish_depth(&pending);
            if pending.is_empty() && self.spool.pending() == 0 {
                if !open {
                    return;
                }
                match self.rx.recv().await {
                    Some(r) => pending.push_back(r),
                    None => return,
                }
                // Let a batch gather.
                tokio::time::sleep(LINGER).await;
            }
            open &= self.drain_channel(&mut pending);

            if self.spool.pending() > 0 {
                // Older records wait in the spool: newer ones queue behind them.
                if !pending.is_empty() {
                    self.spool_all(&mut pending);
                }
                if !self.replay_one_batch().await {
                    if !open {
                        return; // stopping while the store is down: the spool keeps them
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                } else {
                    backoff = Duration::from_millis(100);
                }
                continue;
            }

            let n = pending.len().min(BATCH);
            // Stored straight from the queue: no copy of the records.
            let batch = &pending.make_contiguous()[..n];
            match self.store.insert_usage(batch).await {
                Ok(()) => {
                    pending.drain(..n);
                    self.depth.fetch_sub(n as i64, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
                    // Nothing is spooled (checked above): caught up.
                    self.stored();
                }
                Err(e) => {
                    tracing::warn!(error = %e, queued = pending.len(), "usage store write failed; spooling to disk");
                    self.spool_all(&mut pending);
                    // Before the backoff, so the gauge (and readiness) count them now.
                    self.publish_depth(&pending);
                    self.failed(&e);
                    if open {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
    }

    /// Moves what the channel holds into `pending`; false once it is closed.
    fn drain_channel(&mut self, pending: &mut VecDeque<UsageRecord>) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(r) => pending.push_back(r),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn spool_all(&mut self, pending: &mut VecDeque<UsageRecord>) {
        let records: Vec<UsageRecord> = pending.drain(..).collect();
        let n = records.len() as i64;
        // A few small fsynced writes, only while the store is failing.
        match self.spool.append(&records) {
            Ok(0) => {}
            Ok(refused) => {
                tracing::error!(refused, "usage spool is full; records refused");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot write the usage spool; keeping records in memory");
                pending.extend(records);
                return;
            }
        }
        self.depth.fetch_sub(n, Ordering::Relaxed);
    }

    /// Stores one batch from the spool; false when the store refused it.
    async fn replay_one_batch(&mut self) -> bool {
        let (batch, next) = match self.spool.read_batch(BATCH) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the usage spool");
                return false;
            }
        };
        if batch.is_empty() {
            let _ = self.spool.commit(next, 0);
            return true;
        }
        match self.store.insert_usage(&batch).await {
            Ok(()) => {
                if let Err(e) = self.spool.commit(next, batch.len() as u64) {
                    tracing::error!(error = %e, "cannot record usage spool progress");
                }
                if self.spool.pending() == 0 {
                    self.stored();
                }
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "usage store still failing; spool kept");
                self.failed(&e);
                false
            }
        }
    }

    /// A write failed: publish that records are being spooled (keeping the
    /// time the episode began) and why.
    fn failed(&self, e: &StoreError) {
        let since_ms = self
            .spooling
            .load()
            .as_ref()
            .map_or_else(clock::now_ms, |s| s.since_ms);
        let reason: String = e
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(MAX_REASON)
            .collect();
        let next = Spooling { since_ms, reason };
        if self.spooling.load().as_deref() != Some(&next) {
            if self.spooling.load().is_none() {
                tracing::warn!(reason = %next.reason, "usage store not writable; records are spooled and readiness reports degraded");
            }
            self.spooling.store(Some(Arc::new(next)));
        }
    }

    /// The store took records and nothing waits in the spool: caught up.
    fn stored(&self) {
        if self.spooling.load().is_some() {
            self.spooling.store(None);
            tracing::info!("usage store writable again; the spool has been replayed");
        }
    }

    fn publish_depth(&self, pending: &VecDeque<UsageRecord>) {
        let spooled = i64::try_from(self.spool.pending()).unwrap_or(i64::MAX);
        let _ = pending;
        self.metrics
            .usage_spool_depth
            .set(self.depth.load(Ordering::Relaxed) + spooled);
    }
}
