//! Audit sealing: on the leader, moves the audit log's oldest entries out
//! of the replicated state into segment objects of the audit bucket, once
//! the unsealed tail is long enough or its oldest entry old enough. Reads
//! at most one segment's worth of entries at a time.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{StatusHandle, Worker, WorkerError};
use crate::meta::now_ms;
use crate::objects::DataPlane;

counters! {
    /// What audit sealing has done.
    SealCounters => Seal {
        /// Segments this node sealed since it started.
        segments_sealed,
        /// Entries in those segments.
        entries_sealed,
        /// Unsealed entries in the replicated state at the last pass.
        tail_entries,
    }
}

/// Segments sealed per pass at most, so a long backlog does not hold the
/// pass (and the leader's bandwidth) for long.
const SEGMENTS_PER_PASS: usize = 8;

/// The audit sealing worker.
pub struct AuditSealer {
    plane: Arc<DataPlane>,
    seal_entries: u64,
    seal_after: Duration,
    interval: Duration,
}

impl AuditSealer {
    /// Seals segments of `seal_entries` entries, or whatever is older than
    /// `seal_after`, checking every `interval`.
    pub fn new(
        plane: Arc<DataPlane>,
        seal_entries: u64,
        seal_after: Duration,
        interval: Duration,
    ) -> Self {
        Self {
            plane,
            seal_entries,
            seal_after,
            interval,
        }
    }

    /// Whether the tail holds a segment's worth, or an entry too old.
    fn due(&self) -> Result<(bool, u64), WorkerError> {
        let meta = self.plane.cluster().meta();
        let start = meta.audit_tail_start()?;
        let (head, _) = meta.audit_head()?;
        let tail = (head + 1).saturating_sub(start);
        if tail == 0 {
            return Ok((false, 0));
        }
        if tail >= self.seal_entries {
            return Ok((true, tail));
        }
        let oldest = meta.audit_entries(start, 1)?;
        let age_ms = oldest
            .first()
            .map(|e| now_ms().saturating_sub(e.record.time_ms))
            .unwrap_or(0);
        Ok((age_ms >= self.seal_after.as_millis() as u64, tail))
    }

    async fn seal(&mut self, status: &StatusHandle<SealCounters>) -> Result<(), WorkerError> {
        let cluster = self.plane.cluster().clone();
        if !cluster.is_leader() {
            status.progress("not the leader: the leader seals".to_string());
            return Ok(());
        }
        let caught_up = cluster.linearizable_read().await?;
        let mut sealed = 0;
        let mut tail = 0;
        for _ in 0..SEGMENTS_PER_PASS {
            let (due, left) = self.due()?;
            tail = left;
            if !due {
                break;
            }
            let Some(segment) = self
                .plane
                .seal_audit(caught_up, self.seal_entries as usize)
                .await?
            else {
                break;
            };
            let entries = segment.last_seq - segment.first_seq + 1;
            sealed += 1;
            tail = tail.saturating_sub(entries);
            status.count(|c| {
                c.segments_sealed += 1;
                c.entries_sealed += entries;
            });
            tracing::info!(
                first = segment.first_seq,
                last = segment.last_seq,
                key = segment.key,
                "audit entries sealed"
            );
        }
        status.count(|c| c.tail_entries = tail);
        status.progress(format!(
            "{sealed} segment(s) sealed this pass, {tail} entries unsealed"
        ));
        Ok(())
    }
}

impl Worker for AuditSealer {
    type Counters = SealCounters;

    fn name(&self) -> &'static str {
        "audit-seal"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn pass<'a>(
        &'a mut self,
        status: &'a StatusHandle<SealCounters>,
    ) -> BoxFuture<'a, Result<(), WorkerError>> {
        Box::pin(self.seal(status))
    }
}
