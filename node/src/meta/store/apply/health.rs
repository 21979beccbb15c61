//! The health index, kept in step with every change to shards and nodes so
//! that status, metrics and repair never scan the manifests: which shard
//! files each node holds (`placed/`), which segments are short of healthy
//! shards and by how many (`short/`), and counters over both (`count/`).
//! Every change is applied in the same batch as the change it follows.

use std::collections::{BTreeMap, HashMap};

use super::super::keys::*;
use super::super::{MetaStore, StoreError};
use crate::ids::ShardId;
use crate::meta::Writes;
use crate::meta::{is_healthy, serves, NodeRecord, NodeState, ObjectId, ShardLocation};

/// The nodes by id, as a command sees them.
pub(super) type Nodes = HashMap<u64, NodeRecord>;

/// A counter's value as stored: 8 (or 4) big-endian bytes.
fn read_u64(value: Option<sled::IVec>) -> u64 {
    value
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

fn read_u32(value: Option<sled::IVec>) -> u32 {
    value
        .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
        .map(u32::from_be_bytes)
        .unwrap_or(0)
}

/// A `placed/` value: the damaged flag, then the digest if there is one.
fn placed_value(location: &ShardLocation) -> Vec<u8> {
    let mut v = vec![u8::from(location.damaged)];
    if let Some(d) = location.digest {
        v.extend_from_slice(&d.0);
    }
    v
}

/// The changes one command makes to the counters, summed before they are
/// written once each.
#[derive(Default)]
pub(super) struct Tally {
    node_shards: BTreeMap<u64, i64>,
    short: BTreeMap<u32, i64>,
    segments: i64,
    /// Segments whose shortfall changed: (stored before, now).
    segment_short: BTreeMap<(ObjectId, u32), (u32, i64)>,
}

impl Tally {
    fn placed(&mut self, node: u64, n: i64) {
        *self.node_shards.entry(node).or_default() += n;
    }
}

impl MetaStore {
    /// The nodes by id.
    pub(super) fn nodes_by_id(&self) -> Result<Nodes, StoreError> {
        Ok(self.nodes()?.into_iter().map(|n| (n.id, n)).collect())
    }

    /// The stored shortfall of a segment, or what `tally` already changed
    /// it to.
    fn shortfall<'t>(
        &self,
        tally: &'t mut Tally,
        object: ObjectId,
        segment: u32,
    ) -> Result<&'t mut (u32, i64), StoreError> {
        match tally.segment_short.entry((object, segment)) {
            std::collections::btree_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::btree_map::Entry::Vacant(e) => {
                let stored = read_u32(self.tree().get(short_key(&object, segment))?);
                Ok(e.insert((stored, i64::from(stored))))
            }
        }
    }

    /// Indexes the shards of a new segment.
    pub(super) fn index_segment(
        &self,
        object: ObjectId,
        segment: u32,
        shards: &[ShardLocation],
        nodes: &Nodes,
        tally: &mut Tally,
        batch: &mut Writes,
    ) -> Result<(), StoreError> {
        tally.segments += 1;
        let mut short = 0i64;
        for (index, location) in shards.iter().enumerate() {
            short += i64::from(!is_healthy(location, nodes));
            if let Some(node) = location.node {
                let shard = ShardId {
                    object_id: object,
                    segment,
                    index: index as u32,
                };
                batch.insert(placed_key(node, &shard), placed_value(location));
                tally.placed(node, 1);
            }
        }
        self.shortfall(tally, object, segment)?.1 = short;
        Ok(())
    }

    /// Removes a segment's shards from the index.
    pub(super) fn unindex_segment(
        &self,
        object: ObjectId,
        segment: u32,
        shards: &[ShardLocation],
        tally: &mut Tally,
        batch: &mut Writes,
    ) -> Result<(), StoreError> {
        tally.segments -= 1;
        for (index, location) in shards.iter().enumerate() {
            if let Some(node) = location.node {
                let shard = ShardId {
                    object_id: object,
                    segment,
                    index: index as u32,
                };
                batch.remove(placed_key(node, &shard));
                tally.placed(node, -1);
            }
        }
        self.shortfall(tally, object, segment)?.1 = 0;
        Ok(())
    }

    /// Follows one segment's shards from `old` to `new`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reindex_segment(
        &self,
        object: ObjectId,
        segment: u32,
        old: &[ShardLocation],
        new: &[ShardLocation],
        nodes: &Nodes,
        tally: &mut Tally,
        batch: &mut Writes,
    ) -> Result<(), StoreError> {
        for (index, (before, after)) in old.iter().zip(new).enumerate() {
            if before == after {
                continue;
            }
            let shard = ShardId {
                object_id: object,
                segment,
                index: index as u32,
            };
            if let Some(node) = before.node {
                batch.remove(placed_key(node, &shard));
                tally.placed(node, -1);
            }
            if let Some(node) = after.node {
                batch.insert(placed_key(node, &shard), placed_value(after));
                tally.placed(node, 1);
            }
        }
        let short = new.iter().filter(|l| !is_healthy(l, nodes)).count() as i64;
        self.shortfall(tally, object, segment)?.1 = short;
        Ok(())
    }

    /// A node's state changes from `before` to `after`: when that changes
    /// whether it serves its shards, every segment it holds a sound shard
    /// of gains or loses one healthy shard. Walks that node's index only.
    pub(super) fn node_state_changed(
        &self,
        node: u64,
        before: NodeState,
        after: NodeState,
        tally: &mut Tally,
    ) -> Result<(), StoreError> {
        let change = match (serves(before), serves(after)) {
            (true, false) => 1,
            (false, true) => -1,
            _ => return Ok(()),
        };
        for kv in self.tree().scan_prefix(placed_prefix(node)) {
            let (k, v) = kv?;
            let damaged = v.first().is_some_and(|d| *d != 0);
            let Some(shard) = placed_shard(&k) else {
                continue;
            };
            // A damaged file is unhealthy wherever it is.
            if !damaged {
                self.shortfall(tally, shard.object_id, shard.segment)?.1 += change;
            }
        }
        Ok(())
    }

    /// Writes the summed changes of `tally`.
    pub(super) fn write_tally(
        &self,
        mut tally: Tally,
        batch: &mut Writes,
    ) -> Result<(), StoreError> {
        for ((object, segment), (before, now)) in std::mem::take(&mut tally.segment_short) {
            let now = u32::try_from(now.max(0)).unwrap_or(u32::MAX);
            if before == now {
                continue;
            }
            if before > 0 {
                *tally.short.entry(before).or_default() -= 1;
            }
            if now > 0 {
                *tally.short.entry(now).or_default() += 1;
                batch.insert(short_key(&object, segment), now.to_be_bytes().to_vec());
            } else {
                batch.remove(short_key(&object, segment));
            }
        }
        let mut counters: Vec<(Vec<u8>, i64)> = Vec::new();
        counters.extend(
            tally
                .node_shards
                .iter()
                .map(|(node, n)| (node_shards_key(*node), *n)),
        );
        counters.extend(tally.short.iter().map(|(s, n)| (short_count_key(*s), *n)));
        counters.push((SEGMENTS_COUNT.to_vec(), tally.segments));
        for (key, delta) in counters {
            if delta == 0 {
                continue;
            }
            let value = read_u64(self.tree().get(&key)?).saturating_add_signed(delta);
            if value == 0 {
                batch.remove(key);
            } else {
                batch.insert(key, value.to_be_bytes().to_vec());
            }
        }
        Ok(())
    }
}
