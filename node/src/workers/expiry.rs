//! Retention expiry: on the leader, deletes the objects whose retention
//! made them due (`delete_at` passed, `keep_until` passed, no hold), through
//! the delete path's batch form (up to 100 objects per commit), each on
//! record as `system:retention`. Finds them through the time-ordered expiry
//! index in pages, paced to a number of objects per second; a pass ends
//! after a bounded number of them and the next goes on where it stopped, so
//! a backlog after downtime is worked off pass by pass. "Now" is cluster time: a majority of the voters' clocks
//! must have reached it, so a leader whose clock runs ahead expires nothing
//! early.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{StatusHandle, Worker, WorkerError};
use crate::meta::ObjectId;
use crate::objects::DataPlane;

counters! {
    /// What retention expiry has done.
    ExpiryCounters => Expiry {
        /// Objects deleted by their retention since the node started.
        objects_expired,
        /// Due objects kept by a legal hold, seen in the last pass.
        held_due,
        /// Deletes that failed and are retried on a later pass.
        failed,
    }
}

/// Index entries read, and objects deleted in one commit, at a time.
const BATCH: usize = 100;
/// Index entries one pass looks at, at most.
const PER_PASS: usize = 10_000;

/// The retention expiry worker.
pub struct RetentionExpiry {
    plane: Arc<DataPlane>,
    interval: Duration,
    objects_per_sec: u64,
    /// Where the last pass stopped, while it had due objects left.
    cursor: Option<(u64, ObjectId)>,
}

impl RetentionExpiry {
    /// Expires due objects every `interval`, at most `objects_per_sec`.
    pub fn new(plane: Arc<DataPlane>, interval: Duration, objects_per_sec: u64) -> Self {
        Self {
            plane,
            interval,
            objects_per_sec,
            cursor: None,
        }
    }

    async fn expire(&mut self, status: &StatusHandle<ExpiryCounters>) -> Result<(), WorkerError> {
        let cluster = self.plane.cluster().clone();
        if !cluster.is_leader() {
            self.cursor = None;
            status.progress("not the leader: the leader expires objects");
            return Ok(());
        }
        cluster.linearizable_read().await?;
        let now = cluster.cluster_time().await?;
        let meta = cluster.meta();
        let mut limiter = status.limiter(self.objects_per_sec);
        let (mut seen, mut expired, mut held) = (0usize, 0u64, 0u64);
        let outcome = loop {
            if seen >= PER_PASS {
                break Ok(());
            }
            let page = meta.due_objects(now, self.cursor, BATCH.min(PER_PASS - seen))?;
            let Some(last) = page.last().map(|d| d.cursor()) else {
                // Everything due was looked at: the next pass starts over,
                // and sees again what holds kept back.
                self.cursor = None;
                break Ok(());
            };
            seen += page.len();
            let mut batch = Vec::with_capacity(page.len());
            for due in page {
                let current = meta.object(&due.bucket, &due.key)?;
                let Some(manifest) = current.filter(|m| m.object_id == due.object_id) else {
                    continue;
                };
                if meta.holds_on(&due.bucket, &due.key)?.is_empty() {
                    batch.push(manifest);
                } else {
                    held += 1;
                }
            }
            let asked = batch.len() as u64;
            limiter.consume(asked).await;
            match self.plane.expire(batch, now).await {
                Ok(deleted) => {
                    expired += deleted;
                    // Held or extended between the look and the commit.
                    held += asked - deleted;
                    status.count(|c| c.objects_expired += deleted);
                    if deleted > 0 {
                        tracing::info!(deleted, "objects expired by their retention");
                    }
                    self.cursor = Some(last);
                }
                Err(e) => {
                    status.count(|c| c.failed += asked);
                    break Err(WorkerError::from(e));
                }
            }
        };
        status.count(|c| c.held_due = held);
        status.progress(format!(
            "{expired} object(s) expired this pass, {held} due but held; cluster time {now}"
        ));
        outcome
    }
}

impl Worker for RetentionExpiry {
    type Counters = ExpiryCounters;

    fn name(&self) -> &'static str {
        "retention-expiry"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn pass<'a>(
        &'a mut self,
        status: &'a StatusHandle<ExpiryCounters>,
    ) -> BoxFuture<'a, Result<(), WorkerError>> {
        Box::pin(self.expire(status))
    }
}
