//! The health index, kept in step with every change to shards and nodes so
//! that status, metrics and repair never scan the manifests: which segments
//! are short of healthy shards and by how many (`short/`), and counters of
//! those and of the shard files on each node (`count/`). Every change is
//! applied in the same batch as the change it follows.
//!
//! Which files a node holds is read from the manifests themselves (they
//! name each shard's node): a key per shard file would be six of the eight
//! keys a small object costs, and the state's memory and size go by keys.

use std::collections::{BTreeMap, HashMap};

use super::super::keys::*;
use super::super::{MetaStore, StoreError};
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
    ) -> Result<(), StoreError> {
        tally.segments += 1;
        let mut short = 0i64;
        for location in shards {
            short += i64::from(!is_healthy(location, nodes));
            if let Some(node) = location.node {
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
    ) -> Result<(), StoreError> {
        tally.segments -= 1;
        for location in shards {
            if let Some(node) = location.node {
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
    ) -> Result<(), StoreError> {
        for (before, after) in old.iter().zip(new) {
            if before.node == after.node {
                continue;
            }
            if let Some(node) = before.node {
                tally.placed(node, -1);
            }
            if let Some(node) = after.node {
                tally.placed(node, 1);
            }
        }
        let short = new.iter().filter(|l| !is_healthy(l, nodes)).count() as i64;
        self.shortfall(tally, object, segment)?.1 = short;
        Ok(())
    }

    /// A node's state changes from `before` to `after`: when that changes
    /// whether it serves its shards, every segment it holds a sound shard
    /// of gains or loses one healthy shard. Walks the manifests a page at a
    /// time (a node's state changes seldom; puts and reads never walk).
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
        // The files left to find: a node that holds none (every node that
        // joins) costs no walk, and the walk ends at its last file. (When
        // this command has itself placed or moved files, the whole walk.)
        let stored = read_u64(self.tree().get(node_shards_key(node))?);
        let mut left = match tally.node_shards.contains_key(&node) {
            false => i64::try_from(stored).unwrap_or(i64::MAX),
            true => i64::MAX,
        };
        let mut cursor = None;
        while left > 0 {
            let (page, next) = self.placed_on(node, cursor.as_ref(), 1000)?;
            for placed in page {
                left -= 1;
                // A damaged file is unhealthy wherever it is.
                if !placed.damaged {
                    let shard = placed.shard;
                    self.shortfall(tally, shard.object_id, shard.segment)?.1 += change;
                }
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
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
