//! Audit sealing: on the leader, moves the audit log's oldest entries out
//! of the replicated state into segment objects of the audit bucket, once
//! the unsealed tail is long enough or its oldest entry old enough (or a
//! checkpoint was asked for), and signs a checkpoint of the sealed history
//! at most every `checkpoint_every` (and whenever one was asked for). Reads
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
        /// Checkpoints this node signed since it started.
        checkpoints_signed,
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
    checkpoint_every: Duration,
    interval: Duration,
}

impl AuditSealer {
    /// Seals segments of `seal_entries` entries, or whatever is older than
    /// `seal_after`, and signs a checkpoint at most every
    /// `checkpoint_every`, checking every `interval`.
    pub fn new(
        plane: Arc<DataPlane>,
        seal_entries: u64,
        seal_after: Duration,
        checkpoint_every: Duration,
        interval: Duration,
    ) -> Self {
        Self {
            plane,
            seal_entries,
            seal_after,
            checkpoint_every,
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
        if tail >= self.seal_entries || meta.checkpoint_wanted()? >= start {
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
        if crate::crash::armed("audit::seal_stalled") {
            status.progress("stalled by a fault point".to_string());
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
        let signed = self.checkpoint_if_due().await?;
        if signed {
            status.count(|c| c.checkpoints_signed += 1);
        }
        status.progress(format!(
            "{sealed} segment(s) sealed this pass, {tail} entries unsealed{}",
            if signed { ", checkpoint signed" } else { "" }
        ));
        Ok(())
    }

    /// Signs a checkpoint if segments were sealed since the last one and
    /// it is `checkpoint_every` old, or one was asked for; whether it did.
    async fn checkpoint_if_due(&self) -> Result<bool, WorkerError> {
        let meta = self.plane.cluster().meta();
        let segments = meta.audit_segments()?;
        if segments == 0 {
            return Ok(false);
        }
        let latest = meta.latest_checkpoint()?;
        let (covered, covered_seq, made) = latest
            .as_ref()
            .map_or((0, 0, 0), |c| (c.segments, c.last_seq, c.made_ms));
        if covered >= segments {
            return Ok(false);
        }
        let asked = meta.checkpoint_wanted()? > covered_seq;
        let old = now_ms().saturating_sub(made) >= self.checkpoint_every.as_millis() as u64;
        if !(asked || old) {
            return Ok(false);
        }
        let Some(c) = self.plane.checkpoint_audit().await? else {
            return Ok(false);
        };
        tracing::info!(
            segments = c.segments,
            last_seq = c.last_seq,
            root = c.root,
            "audit checkpoint signed"
        );
        Ok(true)
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
