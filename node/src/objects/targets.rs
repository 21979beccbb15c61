//! The shard files of one segment being written: placing and opening them
//! on their nodes, streaming blocks, and committing them — waiting for the
//! slowest only as long as the rest allow.

use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tresor_proto::internal::v1::{self as ipb, shard_write, shard_write_reply};

use super::{DataPlane, ObjectError};
use crate::erasure::Codec;
use crate::meta::ObjectId;
use crate::placement::place;

/// How long a node may take to open a shard file.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node may keep a block waiting before it counts as failed.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to fsync and rename a shard file.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(120);
/// Blocks queued per target node.
const BLOCKS_IN_FLIGHT: usize = 4;
/// Once enough shard files of a segment are durable, the others are waited
/// for as long again as that took, and at least this long: a node cut off
/// mid-upload delays it by seconds, not by the whole commit timeout.
const STRAGGLER_GRACE: Duration = Duration::from_secs(5);

/// What committing one slot of a segment gave: `None` for an empty slot or
/// a straggler given up on, else the node's answer.
pub(super) type Committed = Option<Result<(u64, [u8; 32]), String>>;

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

/// One node receiving one shard file of the open segment.
pub(super) struct Target {
    pub(super) node: u64,
    tx: mpsc::Sender<ipb::ShardWrite>,
    replies: tonic::Streaming<ipb::ShardWriteReply>,
    failed: Option<String>,
}

impl Target {
    pub(super) async fn send(&mut self, msg: shard_write::Msg) {
        if self.failed.is_some() {
            return;
        }
        let sent = tokio::time::timeout(
            SEND_TIMEOUT,
            self.tx.send(ipb::ShardWrite { msg: Some(msg) }),
        )
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => self.failed = Some("stream to the node closed".into()),
            Err(_) => {
                self.failed = Some(format!(
                    "node took more than {SEND_TIMEOUT:?} to take a block"
                ))
            }
        }
    }

    /// Commits and waits for the file's digest.
    pub(super) async fn commit(mut self) -> Result<(u64, [u8; 32]), String> {
        self.send(shard_write::Msg::Commit(true)).await;
        if let Some(reason) = self.failed.take() {
            return Err(reason);
        }
        drop(self.tx);
        let reply = tokio::time::timeout(COMMIT_TIMEOUT, self.replies.message())
            .await
            .map_err(|_| format!("no commit within {COMMIT_TIMEOUT:?}"))?
            .map_err(|s| format!("commit failed: {}", s.message()))?;
        match reply.and_then(|r| r.msg) {
            Some(shard_write_reply::Msg::Committed(digest)) => {
                <[u8; 32]>::try_from(digest.as_slice())
                    .map(|d| (self.node, d))
                    .map_err(|_| "node answered a malformed digest".to_string())
            }
            other => Err(format!("unexpected answer to commit: {other:?}")),
        }
    }
}

impl DataPlane {
    /// Opens one shard file on `node`.
    pub(super) async fn open_target(
        &self,
        node: u64,
        shard: ipb::ShardRef,
        block_size: u32,
        replace: bool,
    ) -> Result<Target, String> {
        let record = self
            .cluster
            .meta()
            .node(node)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("node {node} unknown"))?;
        let mut client = self.peers.client(&record).map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel(BLOCKS_IN_FLIGHT);
        let open = ipb::ShardWrite {
            msg: Some(shard_write::Msg::Open(ipb::ShardWriteOpen {
                shard: Some(shard),
                block_size,
                replace,
            })),
        };
        tx.send(open)
            .await
            .map_err(|_| "stream closed".to_string())?;
        let opened = async {
            let mut replies = client
                .write_shard(ReceiverStream::new(rx))
                .await
                .map_err(|s| s.message().to_string())?
                .into_inner();
            match replies
                .message()
                .await
                .map_err(|s| s.message().to_string())?
            {
                Some(ipb::ShardWriteReply {
                    msg: Some(shard_write_reply::Msg::Ready(true)),
                }) => Ok(replies),
                other => Err(format!("unexpected answer to open: {other:?}")),
            }
        };
        let replies = tokio::time::timeout(OPEN_TIMEOUT, opened)
            .await
            .map_err(|_| {
                format!("node {node} did not open a shard file within {OPEN_TIMEOUT:?}")
            })??;
        Ok(Target {
            node,
            tx,
            replies,
            failed: None,
        })
    }

    /// Places segment `segment` and opens its shard files. A node that
    /// fails to open is replaced by another eligible node; slots that cannot
    /// be filled stay empty (the segment will be degraded) as long as at
    /// least `data + 1` are open.
    pub(super) async fn open_segment(
        &self,
        object: ObjectId,
        segment: u32,
        codec: &Codec,
        block_size: u32,
    ) -> Result<Vec<Option<Target>>, ObjectError> {
        let width = codec.total_shards();
        let min = (codec.data_shards() + 1).min(width);
        let mut candidates = self.candidates()?;
        let mut seed = object.0.to_vec();
        seed.extend_from_slice(&segment.to_be_bytes());
        let chosen = place(&candidates, width, min, &seed)
            .map_err(|e| ObjectError::Unavailable(e.to_string()))?;
        candidates.retain(|c| !chosen.contains(&c.id));
        let shard_ref = |index: usize| ipb::ShardRef {
            object_id: object.0.to_vec(),
            segment,
            index: index as u32,
        };
        let opens = chosen
            .iter()
            .enumerate()
            .map(|(index, node)| self.open_target(*node, shard_ref(index), block_size, false));
        let mut targets: Vec<Option<Target>> = futures::future::join_all(opens)
            .await
            .into_iter()
            .zip(&chosen)
            .map(|(opened, node)| match opened {
                Ok(t) => Some(t),
                Err(reason) => {
                    tracing::warn!(%object, segment, node, reason, "shard target failed to open; replacing it");
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
                match self
                    .open_target(node, shard_ref(index), block_size, false)
                    .await
                {
                    Ok(t) => *slot = Some(t),
                    Err(reason) => {
                        tracing::warn!(%object, segment, node, reason, "replacement failed to open")
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
}
