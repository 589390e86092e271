//! Usage records: one per request, handed to a background writer that stores
//! them in batches. The request path only pushes onto a channel: a slow or
//! unavailable store delays records (kept in memory, in order, and retried),
//! it never blocks a request or drops a record.

mod record;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

pub use record::UsageRecord;

use crate::metrics::Metrics;
use crate::store::Store;

/// Records per write.
const BATCH: usize = 500;
/// How long the writer waits to fill a batch.
const LINGER: Duration = Duration::from_millis(50);
/// Retry delays while the store fails: doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where the request path sends records. Cheap to clone.
#[derive(Clone, Debug)]
pub struct UsageSink {
    tx: mpsc::UnboundedSender<UsageRecord>,
    depth: Arc<AtomicI64>,
}

/// The writer's end; run it with [`Writer::run`].
pub struct Writer {
    rx: mpsc::UnboundedReceiver<UsageRecord>,
    depth: Arc<AtomicI64>,
    store: Store,
    metrics: Metrics,
}

/// Creates a sink and its writer.
pub fn channel(store: Store, metrics: Metrics) -> (UsageSink, Writer) {
    let (tx, rx) = mpsc::unbounded_channel();
    let depth = Arc::new(AtomicI64::new(0));
    (
        UsageSink {
            tx,
            depth: depth.clone(),
        },
        Writer {
            rx,
            depth,
            store,
            metrics,
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

    /// Records queued and not yet stored.
    pub fn depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }
}

impl Writer {
    /// Stores records until every sink is dropped and the queue is empty.
    pub async fn run(mut self) {
        let mut pending: VecDeque<UsageRecord> = VecDeque::new();
        let mut backoff = Duration::from_millis(100);
        let mut open = true;
        loop {
            if pending.is_empty() {
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
            while pending.len() < BATCH * 4 {
                match self.rx.try_recv() {
                    Ok(r) => pending.push_back(r),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            let n = pending.len().min(BATCH);
            let batch: Vec<UsageRecord> = pending.range(..n).cloned().collect();
            match self.store.insert_usage(&batch).await {
                Ok(()) => {
                    pending.drain(..n);
                    self.depth.fetch_sub(n as i64, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!(error = %e, queued = pending.len(), "usage store write failed; will retry");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            self.metrics
                .usage_spool_depth
                .set(self.depth.load(Ordering::Relaxed));
        }
    }
}
