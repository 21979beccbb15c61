//! Segments of shard files: placing each, streaming its stripes to its
//! nodes, committing its files — for a Put's segments and a resumable
//! upload's parts alike.

use bytes::Bytes;

use super::body::{Body, PutBody};
use super::peers::Peers;
use super::targets::{commit_all, open_segment};
use super::ObjectError;
use crate::erasure::Codec;
use crate::meta::{ObjectId, SegmentManifest, ShardLocation};
use crate::placement::Candidate;

/// How an object's bytes are cut: its id, erasure code, block size and
/// stripes per segment.
#[derive(Clone, Copy)]
pub(super) struct Layout<'a> {
    pub(super) object: ObjectId,
    /// The index of the first segment written.
    pub(super) first_segment: u32,
    pub(super) codec: &'a Codec,
    pub(super) block_size: u32,
    pub(super) segment_stripes: u32,
}

/// Streams `body` into segments of shard files on nodes chosen among
/// `candidates()` (asked again for each segment), pushing each segment's
/// manifest onto `segments` — its placement as soon as it is chosen, so a
/// failure part-way still knows which nodes to clean up. Fails when a
/// segment cannot get `data + 1` durable shard files.
pub(super) async fn write_segments<S: PutBody>(
    peers: &Peers,
    candidates: impl Fn() -> Result<Vec<Candidate>, ObjectError>,
    layout: Layout<'_>,
    body: &mut Body<S>,
    segments: &mut Vec<SegmentManifest>,
) -> Result<(), ObjectError> {
    let stripe_bytes = layout.codec.data_shards() * layout.block_size as usize;
    let mut stripe = Vec::with_capacity(stripe_bytes);
    body.fill(&mut stripe, stripe_bytes).await?;
    let mut segment = layout.first_segment;
    while !stripe.is_empty() {
        let sent = send_segment(peers, candidates()?, layout, segment, body, &mut stripe).await;
        let sent = match sent {
            Ok(sent) => sent,
            Err((e, placed)) => {
                if !placed.shards.is_empty() {
                    segments.push(placed);
                }
                return Err(e);
            }
        };
        segments.push(sent.placed.clone());
        let written = commit_segment(sent, layout).await;
        if let Some(last) = segments.last_mut() {
            match written {
                Ok(done) => *last = done,
                Err((e, placed)) => {
                    *last = placed;
                    return Err(e);
                }
            }
        }
        crate::crash::point("put::after_segment");
        segment += 1;
    }
    Ok(())
}

/// A segment whose blocks are all sent, its shard files not yet
/// committed.
pub(super) struct SentSegment {
    segment: u32,
    targets: Vec<Option<super::peers::Target>>,
    /// Object (stored) bytes in it.
    bytes: u64,
    /// Where its shard files are being written, for clean-up.
    pub(super) placed: SegmentManifest,
}

/// Places segment `segment` and streams its stripes to its nodes, from
/// `stripe` (filled already) on: at most `segment_stripes` of them, or to
/// the body's end. Leaves the next stripe in `stripe`. A failure comes
/// with the placement so far, for clean-up.
pub(super) async fn send_segment<S: PutBody>(
    peers: &Peers,
    candidates: Vec<Candidate>,
    layout: Layout<'_>,
    segment: u32,
    body: &mut Body<S>,
    stripe: &mut Vec<u8>,
) -> Result<SentSegment, (ObjectError, SegmentManifest)> {
    let Layout {
        object,
        codec,
        block_size,
        segment_stripes,
        ..
    } = layout;
    let stripe_bytes = codec.data_shards() * block_size as usize;
    let mut targets = open_segment(peers, candidates, object, segment, codec, block_size)
        .await
        .map_err(|e| {
            (
                e,
                SegmentManifest {
                    bytes: 0,
                    shards: Vec::new(),
                },
            )
        })?;
    // Record the nodes now so a failure below still cleans them up.
    let placed = SegmentManifest {
        bytes: 0,
        shards: targets
            .iter()
            .map(|t| ShardLocation {
                node: t.as_ref().map(|t| t.node),
                digest: None,
                damaged: false,
            })
            .collect(),
    };
    let mut bytes = 0u64;
    let mut stripes = 0u32;
    loop {
        let shards = match codec.encode(stripe) {
            Ok(shards) => shards,
            Err(e) => return Err((ObjectError::Internal(format!("encoding: {e}")), placed)),
        };
        let sends = targets
            .iter_mut()
            .zip(shards)
            .filter_map(|(t, shard)| t.as_mut().map(|t| t.send(Bytes::from(shard))));
        futures::future::join_all(sends).await;
        bytes += stripe.len() as u64;
        stripes += 1;

        let full = stripe.len() == stripe_bytes;
        if let Err(e) = body.fill(stripe, stripe_bytes).await {
            return Err((e, placed));
        }
        if !full || stripe.is_empty() || stripes == segment_stripes {
            break;
        }
    }
    Ok(SentSegment {
        segment,
        targets,
        bytes,
        placed,
    })
}

/// Commits the shard files of a sent segment: its manifest once at least
/// `data + 1` are durable, else the error with the placement (the nodes
/// of failed writes included) for clean-up.
pub(super) async fn commit_segment(
    sent: SentSegment,
    layout: Layout<'_>,
) -> Result<SegmentManifest, (ObjectError, SegmentManifest)> {
    let SentSegment {
        segment,
        mut targets,
        bytes,
        mut placed,
    } = sent;
    let (object, codec) = (layout.object, layout.codec);
    let needed = (codec.data_shards() + 1).min(codec.total_shards());
    let results = commit_all(&mut targets, needed).await;
    let mut shards = Vec::with_capacity(results.len());
    for (index, result) in results.into_iter().enumerate() {
        shards.push(match result {
            Some(Ok((node, digest))) => ShardLocation::at(node, digest),
            Some(Err(e)) => {
                tracing::warn!(%object, segment, index, error = %e, "shard write failed");
                ShardLocation::missing()
            }
            None => ShardLocation::missing(),
        });
    }
    let durable = shards.iter().filter(|s| s.node.is_some()).count();
    if durable < needed {
        // Keep the recorded nodes of failed writes for clean-up.
        for (slot, written) in placed.shards.iter_mut().zip(&shards) {
            if written.node.is_some() {
                *slot = written.clone();
            }
        }
        return Err((
            ObjectError::Unavailable(format!(
                "only {durable} of {} shard files of segment {segment} could be made durable; {needed} are needed",
                codec.total_shards()
            )),
            placed,
        ));
    }
    Ok(SegmentManifest { bytes, shards })
}
