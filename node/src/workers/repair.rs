//! Repair, run by the leader: find every segment with fewer than
//! `data + parity` healthy shard files and rebuild the missing ones, the
//! segments with the fewest healthy shards first. Also moves shards off
//! draining nodes and rebuilds those of nodes down longer than
//! `rebuild_after`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{StatusHandle, Worker};
use crate::meta::{now_ms, NodeRecord, NodeState, SegmentManifest};
use crate::objects::DataPlane;
use crate::rate::RateLimiter;

/// Segments repaired at the same time.
const REPAIR_LANES: usize = 4;

/// The health of one segment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentHealth {
    /// Shard files on active or draining nodes.
    pub healthy: usize,
    /// Shard indices to rebuild or move now.
    pub replace: Vec<usize>,
}

/// Which shards of `seg` are healthy and which must be rebuilt or moved:
/// missing, damaged, on a removed or unknown node, on a draining node, or
/// on a node down for longer than `rebuild_after_ms`. Shards on a node down
/// for less are neither healthy nor replaced yet.
pub fn segment_health(
    seg: &SegmentManifest,
    nodes: &HashMap<u64, NodeRecord>,
    now_ms: u64,
    rebuild_after_ms: u64,
) -> SegmentHealth {
    let mut health = SegmentHealth::default();
    for (index, location) in seg.shards.iter().enumerate() {
        let node = location.node.and_then(|n| nodes.get(&n));
        match node.map(|n| (n.state, now_ms.saturating_sub(n.state_since_ms))) {
            _ if location.damaged => health.replace.push(index),
            Some((NodeState::Active, _)) => health.healthy += 1,
            Some((NodeState::Draining, _)) => {
                health.healthy += 1;
                health.replace.push(index);
            }
            Some((NodeState::Down, down_for)) if down_for < rebuild_after_ms => {}
            _ => health.replace.push(index),
        }
    }
    health
}

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

    async fn repair(&mut self, status: &StatusHandle) -> Result<(), String> {
        let cluster = self.plane.cluster().clone();
        if !cluster.is_leader() {
            status.progress("not the leader; the leader repairs");
            return Ok(());
        }
        cluster
            .linearizable_read()
            .await
            .map_err(|e| e.to_string())?;
        let nodes: HashMap<u64, NodeRecord> = cluster
            .meta()
            .nodes()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|n| (n.id, n))
            .collect();
        let objects = cluster.meta().all_objects().map_err(|e| e.to_string())?;
        let now = now_ms();
        let rebuild_after = self.rebuild_after.as_millis() as u64;
        let mut work = Vec::new();
        let mut segments = 0u64;
        let mut degraded: BTreeMap<usize, u64> = BTreeMap::new();
        for m in &objects {
            let width = (m.data + m.parity) as usize;
            for (i, seg) in m.segments.iter().enumerate() {
                segments += 1;
                let health = segment_health(seg, &nodes, now, rebuild_after);
                if health.healthy < width {
                    *degraded.entry(width - health.healthy).or_default() += 1;
                }
                if !health.replace.is_empty() {
                    work.push((health.healthy, m, i as u32, health.replace));
                }
            }
        }
        // Fewest healthy shards first: those are closest to loss.
        work.sort_by_key(|(healthy, m, seg, _)| (*healthy, m.key.clone(), *seg));
        let todo = work.len() as u64;
        status.set("segments_total", segments);
        status.set("segments_degraded", degraded.values().sum());
        status.set("segments_to_repair", todo);
        status.set("segments_repaired_this_pass", 0);
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
            let mut limiter = RateLimiter::new(per_lane);
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
                    Ok(bytes) => {
                        status.add("bytes_rebuilt", bytes);
                        status.add("segments_repaired", 1);
                        status.add("segments_repaired_this_pass", 1);
                    }
                    Err(e) => {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(bucket = m.bucket, key = m.key, segment, error = %e, "repair failed; will retry");
                    }
                }
            }
        };
        futures::future::join_all((0..lanes).map(lane)).await;
        let failed = failed.load(std::sync::atomic::Ordering::Relaxed);
        status.add("passes", 1);
        status.progress(format!(
            "{segments} segments, {todo} needed repair, {} repaired, {failed} failed",
            todo - failed
        ));
        if failed > 0 {
            return Err(format!("{failed} segment(s) could not be repaired yet"));
        }
        Ok(())
    }
}

impl Worker for Repairer {
    fn name(&self) -> &'static str {
        "repair"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn pass<'a>(&'a mut self, status: &'a StatusHandle) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.repair(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{Digest, ShardLocation};

    fn node(id: u64, state: NodeState, since: u64) -> (u64, NodeRecord) {
        (
            id,
            NodeRecord {
                id,
                addr: format!("n{id}:1"),
                zone: "a".into(),
                capacity: 1,
                state,
                added_ms: 0,
                state_since_ms: since,
                incarnation: String::new(),
            },
        )
    }

    /// A segment from `(node, damaged)` per shard.
    fn seg(nodes: &[Option<u64>]) -> SegmentManifest {
        seg_with(&nodes.iter().map(|n| (*n, false)).collect::<Vec<_>>())
    }

    fn seg_with(shards: &[(Option<u64>, bool)]) -> SegmentManifest {
        SegmentManifest {
            bytes: 1,
            shards: shards
                .iter()
                .map(|(n, damaged)| ShardLocation {
                    node: *n,
                    digest: n.map(|_| Digest([0; 32])),
                    damaged: *damaged,
                })
                .collect(),
        }
    }

    #[test]
    fn damaged_shards_are_rebuilt_but_stay_readable() {
        let nodes: HashMap<u64, NodeRecord> =
            [node(1, NodeState::Active, 0), node(2, NodeState::Active, 0)]
                .into_iter()
                .collect();
        let s = seg_with(&[(Some(1), true), (Some(2), false)]);
        let h = segment_health(&s, &nodes, 10_000, 5_000);
        assert_eq!(h.healthy, 1);
        assert_eq!(h.replace, vec![0]);
        assert_eq!(s.missing(), 1);
        assert_eq!(s.shards[0].node, Some(1), "the damaged file stays recorded");
    }

    #[test]
    fn health_table() {
        let nodes: HashMap<u64, NodeRecord> = [
            node(1, NodeState::Active, 0),
            node(2, NodeState::Active, 0),
            node(3, NodeState::Draining, 0),
            node(4, NodeState::Down, 9_000), // down 1 s at now = 10 s
            node(5, NodeState::Down, 0),     // down 10 s
            node(6, NodeState::Removed, 0),
        ]
        .into_iter()
        .collect();
        type Case<'a> = (&'a [Option<u64>], usize, &'a [usize]);
        let cases: &[Case<'_>] = &[
            (&[Some(1), Some(2)], 2, &[]),
            (&[Some(1), None], 1, &[1]),
            (&[Some(1), Some(3)], 2, &[1]),
            (&[Some(1), Some(4)], 1, &[]),
            (&[Some(1), Some(5)], 1, &[1]),
            (&[Some(6), Some(7)], 0, &[0, 1]),
        ];
        for (shards, healthy, replace) in cases {
            let h = segment_health(&seg(shards), &nodes, 10_000, 5_000);
            assert_eq!(h.healthy, *healthy, "{shards:?}");
            assert_eq!(h.replace, *replace, "{shards:?}");
        }
    }
}
