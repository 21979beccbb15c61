//! The repair path: rebuild chosen shard files of one segment from `data`
//! survivors onto new nodes, commit the new locations through Raft
//! (compare-and-set, so a concurrent change wins cleanly), then delete the
//! old copies. A crash at any point loses nothing: before the commit the
//! old locations stand and the new files are orphans; after it the old
//! copies are orphans. Either kind is collected by the orphan worker.

use std::collections::HashMap;

use bytes::Bytes;

use super::peers::Peers;
use super::read::gather;
use super::{candidate, DataPlane, ObjectError};
use crate::erasure::Codec;
use crate::meta::{Command, NodeRecord, NodeState, ObjectManifest, ShardLocation, StripeRef};
use crate::placement::{replacements, Candidate};
use crate::rate::RateLimiter;
use crate::shards::ShardId;

impl DataPlane {
    /// Reports shard `index` of `segment` as damaged (a block missing,
    /// corrupt or unreadable on its holder): the location is kept — its
    /// other blocks still serve — and marked, so repair rebuilds it. Runs in
    /// the background; a location that changed meanwhile is left alone.
    pub fn report_bad_shard(&self, m: &ObjectManifest, segment: u32, index: usize) {
        let Some(current) = m
            .segments
            .get(segment as usize)
            .and_then(|s| s.shards.get(index))
            .cloned()
        else {
            return;
        };
        if !current.is_sound() {
            return;
        }
        let command = Command::UpdateShards {
            bucket: m.bucket.clone(),
            key: m.key.clone(),
            object_id: m.object_id,
            segment,
            changes: vec![(
                index as u32,
                current.clone(),
                ShardLocation {
                    damaged: true,
                    ..current.clone()
                },
            )],
        };
        let cluster = self.cluster.clone();
        let object = m.object_id;
        tokio::spawn(async move {
            match cluster.propose(command).await {
                Ok(()) => {
                    tracing::warn!(%object, segment, index, node = ?current.node, "damaged shard reported for repair")
                }
                Err(e) => {
                    tracing::debug!(%object, segment, index, error = %e, "bad-shard report not applied")
                }
            }
        });
    }

    /// Rebuilds shards `replace` of `segment` of `m` onto other nodes and
    /// commits them. Returns the shard bytes written.
    pub async fn repair_segment(
        &self,
        m: &ObjectManifest,
        segment: u32,
        replace: &[usize],
        nodes: &HashMap<u64, NodeRecord>,
        limiter: &mut RateLimiter,
    ) -> Result<u64, ObjectError> {
        let damaged = |i: usize| self.report_bad_shard(m, segment, i);
        let rebuilt =
            rebuild_segment(&self.peers, m, segment, replace, nodes, limiter, &damaged).await?;
        self.cluster
            .propose(Command::UpdateShards {
                bucket: m.bucket.clone(),
                key: m.key.clone(),
                object_id: m.object_id,
                segment,
                changes: rebuilt.changes,
            })
            .await?;
        // The old copies are garbage now; delete what can be reached.
        for (index, location) in rebuilt.old {
            let Some(node) = location.node else {
                continue;
            };
            let shard = ShardId {
                object_id: m.object_id,
                segment,
                index: index as u32,
            };
            if let Err(e) = self.peers.delete(node, shard).await {
                tracing::debug!(object = %m.object_id, segment, index, node, error = %e, "old copy left for orphan collection");
            }
        }
        Ok(rebuilt.written)
    }
}

/// What rebuilding a segment's shards produced, not yet committed.
#[derive(Debug)]
pub(super) struct Rebuilt {
    /// `(index, old location, new location)` of every rebuilt shard.
    pub(super) changes: Vec<(u32, ShardLocation, ShardLocation)>,
    /// Old copies on other nodes, garbage once the changes commit.
    pub(super) old: Vec<(usize, ShardLocation)>,
    /// Shard bytes written.
    pub(super) written: u64,
}

/// Rebuilds shards `replace` of `segment` of `m` from `data` survivors onto
/// eligible nodes of `nodes`: a damaged file on an active node where it is,
/// the others on new nodes (the next best standing in for a target that
/// cannot open). Shards confirmed damaged while reading are passed to
/// `damaged`. A target that fails before its commit is left out of the
/// result (its shard stays as it was, for the next pass); fails only when
/// no rebuilt shard is durable.
pub(super) async fn rebuild_segment(
    peers: &Peers,
    m: &ObjectManifest,
    segment: u32,
    replace: &[usize],
    nodes: &HashMap<u64, NodeRecord>,
    limiter: &mut RateLimiter,
    damaged: &(dyn Fn(usize) + Sync),
) -> Result<Rebuilt, ObjectError> {
    let seg = m
        .segments
        .get(segment as usize)
        .ok_or_else(|| ObjectError::Internal(format!("no segment {segment}")))?;
    let codec = Codec::new(m.data as usize, m.parity as usize)
        .map_err(|e| ObjectError::Internal(format!("manifest scheme: {e}")))?;
    let readable = |i: usize| {
        seg.shards[i]
            .node
            .and_then(|n| nodes.get(&n))
            .is_some_and(|n| matches!(n.state, NodeState::Active | NodeState::Draining))
    };
    // Sources: sound shards that stay first, then readable ones being
    // replaced (a draining node still serves its own shards, and a
    // damaged file's other blocks are still good).
    let mut order: Vec<usize> = (0..seg.shards.len())
        .filter(|i| !replace.contains(i) && readable(*i))
        .collect();
    order.sort_by_key(|i| seg.shards[*i].damaged);
    order.extend(replace.iter().copied().filter(|i| readable(*i)));

    // A damaged file on an active node is rebuilt where it is (the
    // rebuilt file replaces it); the others move to new nodes.
    let (in_place, moving): (Vec<usize>, Vec<usize>) = replace.iter().partition(|i| {
        let l = &seg.shards[**i];
        l.damaged
            && l.node
                .and_then(|n| nodes.get(&n))
                .is_some_and(|n| n.state == NodeState::Active)
    });

    // Targets of moved shards: active nodes not holding another shard
    // of this segment, zone by zone where the segment is thinnest.
    let keep: Vec<(u64, String)> = seg
        .shards
        .iter()
        .enumerate()
        .filter(|(i, _)| !moving.contains(i))
        .filter_map(|(_, l)| l.node)
        .filter_map(|n| nodes.get(&n).map(|r| (n, r.zone.clone())))
        .collect();
    let candidates: Vec<Candidate> = nodes
        .values()
        .filter(|n| n.state == NodeState::Active)
        .filter(|n| !moving.iter().any(|i| seg.shards[*i].node == Some(n.id)))
        .map(candidate)
        .collect();
    let mut seed = m.object_id.0.to_vec();
    seed.extend_from_slice(&segment.to_be_bytes());
    seed.extend_from_slice(b"repair");
    // Every eligible node, best first: the first `moving.len()` are the
    // targets, the rest stand in for any that cannot take a file (full,
    // failing), so one bad node is never chosen pass after pass.
    let ranked = if moving.is_empty() && in_place.is_empty() {
        Vec::new()
    } else {
        replacements(&candidates, &keep, candidates.len(), &seed)
    };
    if ranked.is_empty() && in_place.is_empty() {
        return Err(ObjectError::Unavailable(format!(
            "no eligible node to rebuild shards of segment {segment} of {}/{} on",
            m.bucket, m.key
        )));
    }
    let mut open = Vec::new();
    // An in-place rebuild its node refuses (its disk is full or its
    // shard directory is gone) moves to another node instead.
    let mut moving = moving;
    for index in &in_place {
        let Some(node) = seg.shards[*index].node else {
            continue;
        };
        let shard = ShardId {
            object_id: m.object_id,
            segment,
            index: *index as u32,
        };
        match peers.open(node, shard, m.block_size, true).await {
            Ok(t) => open.push((*index, t)),
            Err(e) => {
                tracing::warn!(object = %m.object_id, segment, node, error = %e, "in-place repair refused; moving the shard");
                moving.push(*index);
            }
        }
    }
    let mut spare = ranked.into_iter();
    for index in &moving {
        for node in spare.by_ref() {
            let shard = ShardId {
                object_id: m.object_id,
                segment,
                index: *index as u32,
            };
            // A target may still hold a stale copy of this very shard
            // (a write that failed after its file was made): that file
            // is garbage, and a new file never overwrites, so clear it.
            if let Ok(Some(_)) = peers.stat(node, shard).await {
                match peers.delete(node, shard).await {
                    Ok(_) => {
                        tracing::info!(object = %m.object_id, segment, node, index, "stale copy on the repair target cleared")
                    }
                    Err(e) => {
                        tracing::debug!(object = %m.object_id, segment, node, error = %e, "stale copy not cleared")
                    }
                }
            }
            match peers.open(node, shard, m.block_size, false).await {
                Ok(t) => {
                    open.push((*index, t));
                    break;
                }
                Err(e) => {
                    tracing::warn!(object = %m.object_id, segment, node, error = %e, "repair target failed; trying the next")
                }
            }
        }
    }
    if open.is_empty() {
        return Err(ObjectError::Unavailable(
            "no repair target could be opened".into(),
        ));
    }

    let stripe_bytes = m.stripe_bytes();
    let stripes = seg.bytes.div_ceil(stripe_bytes.max(1));
    let mut written = 0u64;
    for stripe in 0..stripes {
        let offset = segment as u64 * m.segment_bytes() + stripe * stripe_bytes;
        let s = StripeRef {
            segment,
            stripe: stripe as u32,
            offset,
            bytes: stripe_bytes.min(seg.bytes - stripe * stripe_bytes),
        };
        let gathered = gather(peers, m, &codec, s, &order, damaged).await?;
        let mut shards: Vec<Option<Vec<u8>>> =
            gathered.into_iter().map(|b| b.map(Vec::from)).collect();
        codec
            .reconstruct_all(&mut shards)
            .map_err(|e| ObjectError::Internal(format!("rebuilding stripe {stripe}: {e}")))?;
        for (index, target) in open.iter_mut() {
            let block = shards[*index].take().unwrap_or_default();
            written += block.len() as u64;
            limiter.consume(block.len() as u64).await;
            target.send(Bytes::from(block)).await;
        }
    }
    let mut changes = Vec::new();
    let mut old = Vec::new();
    for (index, target) in open {
        match target.commit().await {
            Ok((node, digest)) => {
                if seg.shards[index].node.is_some_and(|n| n != node) {
                    old.push((index, seg.shards[index].clone()));
                }
                changes.push((
                    index as u32,
                    seg.shards[index].clone(),
                    ShardLocation::at(node, digest),
                ));
            }
            Err(e) => {
                tracing::warn!(object = %m.object_id, segment, index, error = %e, "repair commit failed")
            }
        }
    }
    if changes.is_empty() {
        return Err(ObjectError::Unavailable(
            "no rebuilt shard could be committed".into(),
        ));
    }
    Ok(Rebuilt {
        changes,
        old,
        written,
    })
}
