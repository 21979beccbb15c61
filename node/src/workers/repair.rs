//! Repair, run by the leader: find every segment with fewer than
//! `data + parity` healthy shard files and rebuild the missing ones. Also
//! moves shards off draining nodes and rebuilds those of nodes down longer
//! than `rebuild_after`. The segments come from the index the state
//! machine keeps (segments short of a healthy shard, shards per node), in
//! batches of [`BATCH`], the fewest healthy shards first within a batch: a
//! pass costs what is degraded, not what is stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{StatusHandle, Worker, WorkerError};
use crate::meta::{
    now_ms, segment_health, MetaStore, NodeRecord, NodeState, ObjectCursor, ObjectId,
    ObjectManifest,
};
use crate::objects::DataPlane;

counters! {
    /// What repair has done.
    RepairCounters => Repair {
        /// Passes completed.
        passes,
        /// Segments looked at in the last pass.
        segments_total,
        /// Segments short of a healthy shard in the last pass.
        segments_degraded,
        /// Segments with shards to rebuild or move in the last pass.
        segments_to_repair,
        /// Segments repaired in the current or last pass.
        segments_repaired_this_pass,
        /// Segments repaired since the node started.
        segments_repaired,
        /// Shard bytes rebuilt since the node started.
        bytes_rebuilt,
    }
}

/// Segments looked at per batch of a pass.
const BATCH: usize = 512;
/// Segments repaired at the same time.
const REPAIR_LANES: usize = 4;

/// The repair worker.
pub struct Repairer {
    plane: Arc<DataPlane>,
    interval: Duration,
    rebuild_after: Duration,
    bytes_per_sec: u64,
}

impl Repairer {
    /// Repairs every `interval`, at most `bytes_per_sec`.
    pub fn new(
        plane: Arc<DataPlane>,
        interval: Duration,
        rebuild_after: Duration,
        bytes_per_sec: u64,
    ) -> Self {
        Self {
            plane,
            interval,
            rebuild_after,
            bytes_per_sec,
        }
    }

    async fn repair(&mut self, status: &StatusHandle<RepairCounters>) -> Result<(), WorkerError> {
        let cluster = self.plane.cluster().clone();
        if !cluster.is_leader() {
            status.progress("not the leader; the leader repairs");
            return Ok(());
        }
        cluster.linearizable_read().await?;
        let meta = cluster.meta();
        let nodes: HashMap<u64, NodeRecord> =
            meta.nodes()?.into_iter().map(|n| (n.id, n)).collect();
        let survey = meta.health()?;
        let segments = survey.segments;
        status.count(|c| {
            c.segments_total = segments;
            c.segments_degraded = survey.degraded_segments();
            c.segments_to_repair = 0;
            c.segments_repaired_this_pass = 0;
        });
        let draining = nodes
            .values()
            .filter(|n| n.state == NodeState::Draining)
            .map(|n| n.id)
            .collect();
        let mut walk = Walk::new(draining);
        let now = now_ms();
        let rebuild_after = self.rebuild_after.as_millis() as u64;
        let (mut todo, mut failed) = (0u64, 0u64);
        loop {
            let found = walk.next(meta, BATCH)?;
            if found.is_empty() {
                break;
            }
            let mut work = Vec::new();
            for (object, segment) in found {
                let Some(m) = meta.object_by_id(&object)? else {
                    continue; // deleted meanwhile
                };
                let Some(seg) = m.segments.get(segment as usize) else {
                    continue;
                };
                let health = segment_health(seg, &nodes, now, rebuild_after);
                if !health.replace.is_empty() {
                    work.push((health.healthy, Arc::new(m), segment, health.replace));
                }
            }
            // Fewest healthy shards first: those are closest to loss.
            work.sort_by_key(|(healthy, m, seg, _)| (*healthy, m.key.clone(), *seg));
            todo += work.len() as u64;
            status.count(|c| c.segments_to_repair = todo);
            failed += self.run_lanes(work, &nodes, status).await;
        }
        status.count(|c| c.passes += 1);
        status.progress(format!(
            "{segments} segments, {todo} needed repair, {} repaired, {failed} failed",
            todo - failed
        ));
        if failed > 0 {
            return Err(WorkerError::Incomplete {
                failed,
                what: "segment repairs",
            });
        }
        Ok(())
    }

    /// Repairs `work` a few segments at a time: one segment's repair waits
    /// on fsyncs and a Raft commit, so running several keeps disks and
    /// network busy. Each lane gets its share of the byte rate; the order
    /// of starting keeps the most endangered segments first. Returns how
    /// many failed.
    async fn run_lanes(
        &self,
        work: Vec<Work>,
        nodes: &HashMap<u64, NodeRecord>,
        status: &StatusHandle<RepairCounters>,
    ) -> u64 {
        let total = work.len();
        let lanes = REPAIR_LANES.min(total.max(1));
        let per_lane = (self.bytes_per_sec / lanes as u64).max(1);
        let queue = std::sync::Mutex::new(work.into_iter().enumerate());
        let failed = std::sync::atomic::AtomicU64::new(0);
        let plane = &self.plane;
        let lane = |_| async {
            let mut limiter = status.limiter(per_lane);
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some((n, (_, m, segment, replace))) = next else {
                    break;
                };
                status.progress(format!("repairing segment {}/{total} of this batch", n + 1));
                match plane
                    .repair_segment(&m, segment, &replace, nodes, &mut limiter)
                    .await
                {
                    Ok(bytes) => status.count(|c| {
                        c.bytes_rebuilt += bytes;
                        c.segments_repaired += 1;
                        c.segments_repaired_this_pass += 1;
                    }),
                    Err(e) => {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(bucket = m.bucket, key = m.key, segment, error = %e, "repair failed; will retry");
                    }
                }
            }
        };
        futures::future::join_all((0..lanes).map(lane)).await;
        failed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// One segment to repair: its healthy shards, its object, its index, the
/// shards to rebuild or move.
type Work = (usize, Arc<ObjectManifest>, u32, Vec<usize>);

/// Where a repair pass is in its walk: first the segments short of a
/// healthy shard (the index `apply` keeps), then the shards of each
/// draining node. Pages of at most `limit`; memory is one batch, however
/// many objects there are.
struct Walk {
    short_after: Option<(ObjectId, u32)>,
    short_done: bool,
    draining: Vec<u64>,
    placed_after: Option<ObjectCursor>,
}

impl Walk {
    fn new(draining: Vec<u64>) -> Self {
        Self {
            short_after: None,
            short_done: false,
            draining,
            placed_after: None,
        }
    }

    /// The next segments to look at; empty at the end of the walk.
    fn next(
        &mut self,
        meta: &MetaStore,
        limit: usize,
    ) -> Result<Vec<(ObjectId, u32)>, WorkerError> {
        if !self.short_done {
            let page = meta.short_segments(self.short_after, limit)?;
            self.short_done = page.len() < limit;
            self.short_after = page.last().copied();
            if !page.is_empty() {
                return Ok(page);
            }
        }
        while let Some(&node) = self.draining.first() {
            let (page, next) = meta.placed_on(node, self.placed_after.as_ref(), limit)?;
            self.placed_after = next;
            if self.placed_after.is_none() {
                self.draining.remove(0);
            }
            let mut segments = Vec::new();
            for p in page {
                // A segment short of a healthy shard was handled above.
                if !meta.is_short(&p.shard.object_id, p.shard.segment)? {
                    segments.push((p.shard.object_id, p.shard.segment));
                }
            }
            if !segments.is_empty() {
                return Ok(segments);
            }
        }
        Ok(Vec::new())
    }
}

impl Worker for Repairer {
    type Counters = RepairCounters;

    fn name(&self) -> &'static str {
        "repair"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn pass<'a>(
        &'a mut self,
        status: &'a StatusHandle<RepairCounters>,
    ) -> BoxFuture<'a, Result<(), WorkerError>> {
        Box::pin(self.repair(status))
    }
}
