//! Repair, run by the leader: find every segment with fewer than
//! `data + parity` healthy shard files and rebuild the missing ones, the
//! segments with the fewest healthy shards first. Also moves shards off
//! draining nodes and rebuilds those of nodes down longer than
//! `rebuild_after`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{StatusHandle, Worker, WorkerError};
use crate::meta::{now_ms, NodeRecord, Survey};
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
        let nodes: HashMap<u64, NodeRecord> = cluster
            .meta()
            .nodes()?
            .into_iter()
            .map(|n| (n.id, n))
            .collect();
        let objects = cluster.meta().all_objects()?;
        let now = now_ms();
        let rebuild_after = self.rebuild_after.as_millis() as u64;
        let mut work = Vec::new();
        let mut survey = Survey::default();
        for m in &objects {
            survey.add(m, &nodes, now, rebuild_after, |segment, health| {
                if !health.replace.is_empty() {
                    work.push((health.healthy, m, segment, health.replace));
                }
            });
        }
        let segments = survey.segments;
        // Fewest healthy shards first: those are closest to loss.
        work.sort_by_key(|(healthy, m, seg, _)| (*healthy, m.key.clone(), *seg));
        let todo = work.len() as u64;
        status.count(|c| {
            c.segments_total = segments;
            c.segments_degraded = survey.degraded_segments();
            c.segments_to_repair = todo;
            c.segments_repaired_this_pass = 0;
        });
        // A few segments at a time: one segment's repair waits on fsyncs
        // and a Raft commit, so running several keeps disks and network
        // busy. Each lane gets its share of the byte rate; the order of
        // starting keeps the most endangered segments first.
        let lanes = REPAIR_LANES.min(work.len().max(1));
        let per_lane = (self.bytes_per_sec / lanes as u64).max(1);
        let queue = std::sync::Mutex::new(work.into_iter().enumerate());
        let failed = std::sync::atomic::AtomicU64::new(0);
        let plane = &self.plane;
        let nodes = &nodes;
        let lane = |_| async {
            let mut limiter = status.limiter(per_lane);
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some((n, (_, m, segment, replace))) = next else {
                    break;
                };
                status.progress(format!("repairing segment {}/{todo}", n + 1));
                match plane
                    .repair_segment(m, segment, &replace, nodes, &mut limiter)
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
        let failed = failed.load(std::sync::atomic::Ordering::Relaxed);
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
