//! The data health of the cluster as the manifests tell it: which shards
//! count as healthy ([`is_healthy`], the one definition, used by the index
//! `apply` keeps as well), which of a segment's shards repair replaces, and
//! the sums over objects ([`Survey`]: read from the store's counters, or
//! recounted from the manifests to check them).

use std::collections::{BTreeMap, HashMap};

use super::{NodeRecord, NodeState, ObjectManifest, SegmentManifest, ShardLocation};

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
        if is_healthy(location, nodes) {
            health.healthy += 1;
            // A draining node still serves, but its shards move.
            if node.is_some_and(|n| n.state == NodeState::Draining) {
                health.replace.push(index);
            }
            continue;
        }
        let waiting = !location.damaged
            && node.is_some_and(|n| {
                n.state == NodeState::Down
                    && now_ms.saturating_sub(n.state_since_ms) < rebuild_after_ms
            });
        if !waiting {
            health.replace.push(index);
        }
    }
    health
}

/// Whether a shard counts towards its segment's redundancy: present, not
/// damaged, on a node that serves reads (active or draining).
pub fn is_healthy(location: &ShardLocation, nodes: &HashMap<u64, NodeRecord>) -> bool {
    !location.damaged
        && location
            .node
            .and_then(|n| nodes.get(&n))
            .is_some_and(|n| serves(n.state))
}

/// Whether a node in `state` serves its shards.
pub fn serves(state: NodeState) -> bool {
    matches!(state, NodeState::Active | NodeState::Draining)
}

/// Segment health summed over objects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Survey {
    /// Segments looked at.
    pub segments: u64,
    /// Segments short of `data + parity` healthy shard files, by how many
    /// they are short.
    pub degraded: BTreeMap<usize, u64>,
    /// Shard files the manifests place on each node.
    pub shards_per_node: HashMap<u64, u64>,
}

impl Survey {
    /// Adds the segments of `m`, judged against `nodes`.
    pub fn add(&mut self, m: &ObjectManifest, nodes: &HashMap<u64, NodeRecord>) {
        let width = (m.data + m.parity) as usize;
        for seg in &m.segments {
            self.segments += 1;
            let healthy = seg.shards.iter().filter(|l| is_healthy(l, nodes)).count();
            if healthy < width {
                *self.degraded.entry(width - healthy).or_default() += 1;
            }
            for node in seg.shards.iter().filter_map(|l| l.node) {
                *self.shards_per_node.entry(node).or_default() += 1;
            }
        }
    }

    /// Segments short of at least one healthy shard file.
    pub fn degraded_segments(&self) -> u64 {
        self.degraded.values().sum()
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
