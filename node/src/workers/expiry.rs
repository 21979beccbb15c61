//! Retention expiry: on the leader, deletes the objects whose retention
//! made them due (`delete_at` passed, `keep_until` passed, no hold), through
//! the normal delete path, on record as `system:retention`. Finds them
//! through the time-ordered expiry index in pages, paced to a number of
//! objects per second; a pass ends after a bounded number of them and the
//! next goes on where it stopped, so a backlog after downtime is worked off
//! pass by pass. "Now" is cluster time: a majority of the voters' clocks
//! must have reached it, so a leader whose clock runs ahead expires nothing
//! early.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{StatusHandle, Worker, WorkerError};
use crate::meta::ObjectId;
use crate::objects::{DataPlane, ObjectError};

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

/// Index entries read per page.
const PAGE: usize = 500;
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
        let outcome = 'pass: loop {
            if seen >= PER_PASS {
                break Ok(());
            }
            let page = meta.due_objects(now, self.cursor, PAGE.min(PER_PASS - seen))?;
            if page.is_empty() {
                // Everything due was looked at: the next pass starts over,
                // and sees again what holds kept back.
                self.cursor = None;
                break Ok(());
            }
            for due in page {
                seen += 1;
                let current = meta.object(&due.bucket, &due.key)?;
                let Some(manifest) = current.filter(|m| m.object_id == due.object_id) else {
                    self.cursor = Some(due.cursor());
                    continue;
                };
                if !meta.holds_on(&due.bucket, &due.key)?.is_empty() {
                    held += 1;
                    self.cursor = Some(due.cursor());
                    continue;
                }
                limiter.consume(1).await;
                match self.plane.expire(manifest, now).await {
                    Ok(()) => {
                        expired += 1;
                        status.count(|c| c.objects_expired += 1);
                        tracing::info!(
                            bucket = due.bucket,
                            key = due.key,
                            delete_at_ms = due.delete_at_ms,
                            "object expired by its retention"
                        );
                    }
                    // A hold placed, or the retention extended, meanwhile.
                    Err(ObjectError::FailedPrecondition(why)) => {
                        held += 1;
                        tracing::info!(bucket = due.bucket, key = due.key, why, "not expired");
                    }
                    Err(ObjectError::NotFound(_)) => {}
                    Err(e) => {
                        status.count(|c| c.failed += 1);
                        break 'pass Err(WorkerError::from(e));
                    }
                }
                self.cursor = Some(due.cursor());
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
