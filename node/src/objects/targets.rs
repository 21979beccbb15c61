//! The shard files of one segment being written: placing and opening them
//! on their nodes, streaming blocks, and committing them — waiting for the
//! slowest only as long as the rest allow.

use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::time::Instant;

use super::peers::{PeerError, Peers, Target};
use super::ObjectError;
use crate::erasure::Codec;
use crate::meta::{Digest, ObjectId};
use crate::placement::{place, Candidate};
use crate::shards::ShardId;
/// Once enough shard files of a segment are durable, the others are waited
/// for as long again as that took, and at least this long: a node cut off
/// mid-upload delays it by seconds, not by the whole commit timeout.
const STRAGGLER_GRACE: Duration = Duration::from_secs(5);

/// What committing one slot of a segment gave: `None` for an empty slot or
/// a straggler given up on, else the node's answer.
pub(super) type Committed = Option<Result<(u64, Digest), PeerError>>;

/// Commits every open target of a segment. Once `needed` are durable, the
/// rest get [`STRAGGLER_GRACE`] (or as long again as the quorum took) and
/// are then given up on: their slots come back `None`, to be rebuilt by
/// repair, and any file they still finish is an orphan for GC.
pub(super) async fn commit_all(targets: &mut [Option<Target>], needed: usize) -> Vec<Committed> {
    let started = Instant::now();
    let mut results: Vec<Committed> = targets.iter().map(|_| None).collect();
    let opened: Vec<(usize, u64)> = targets
        .iter()
        .enumerate()
        .filter_map(|(index, slot)| slot.as_ref().map(|t| (index, t.node)))
        .collect();
    let mut pending: FuturesUnordered<_> = targets
        .iter_mut()
        .enumerate()
        .filter_map(|(index, slot)| slot.take().map(|t| (index, t)))
        .map(|(index, target)| async move { (index, target.commit().await) })
        .collect();
    let mut durable = 0usize;
    let mut deadline: Option<Instant> = None;
    loop {
        let next = match deadline {
            None => pending.next().await,
            Some(at) => match tokio::time::timeout_at(at, pending.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        let Some((index, result)) = next else {
            break;
        };
        durable += usize::from(result.is_ok());
        results[index] = Some(result);
        if durable >= needed && deadline.is_none() {
            deadline = Some(Instant::now() + started.elapsed().max(STRAGGLER_GRACE));
        }
    }
    for (index, node) in opened {
        if results[index].is_none() {
            tracing::warn!(
                index,
                node,
                "shard commit slower than the rest: given up on, repair rebuilds it"
            );
        }
    }
    results
}

/// Places segment `segment` of `object` on `candidates` and opens its
/// shard files. A node that fails to open is replaced by another eligible
/// node; slots that cannot be filled stay empty (the segment will be
/// degraded) as long as at least `data + 1` are open.
pub(super) async fn open_segment(
    peers: &Peers,
    mut candidates: Vec<Candidate>,
    object: ObjectId,
    segment: u32,
    codec: &Codec,
    block_size: u32,
) -> Result<Vec<Option<Target>>, ObjectError> {
    let width = codec.total_shards();
    let min = (codec.data_shards() + 1).min(width);
    let mut seed = object.0.to_vec();
    seed.extend_from_slice(&segment.to_be_bytes());
    let chosen = place(&candidates, width, min, &seed)
        .map_err(|e| ObjectError::Unavailable(e.to_string()))?;
    candidates.retain(|c| !chosen.contains(&c.id));
    let shard = |index: usize| ShardId {
        object_id: object,
        segment,
        index: index as u32,
    };
    let opens = chosen
        .iter()
        .enumerate()
        .map(|(index, node)| peers.open(*node, shard(index), block_size, false));
    let mut targets: Vec<Option<Target>> = futures::future::join_all(opens)
            .await
            .into_iter()
            .zip(&chosen)
            .map(|(opened, node)| match opened {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(%object, segment, node, error = %e, "shard target failed to open; replacing it");
                    None
                }
            })
            .collect();
    targets.resize_with(width, || None);
    // Replace failed slots from the nodes not yet used, best first.
    let mut spare = if candidates.is_empty() {
        Vec::new()
    } else {
        place(&candidates, candidates.len(), 1, &seed).unwrap_or_default()
    };
    spare.reverse();
    for (index, slot) in targets.iter_mut().enumerate() {
        while slot.is_none() {
            let Some(node) = spare.pop() else { break };
            match peers.open(node, shard(index), block_size, false).await {
                Ok(t) => *slot = Some(t),
                Err(e) => {
                    tracing::warn!(%object, segment, node, error = %e, "replacement failed to open")
                }
            }
        }
    }
    let open = targets.iter().filter(|t| t.is_some()).count();
    if open < min {
        return Err(ObjectError::Unavailable(format!(
            "only {open} nodes could take shards of this upload; {min} are needed"
        )));
    }
    Ok(targets)
}
