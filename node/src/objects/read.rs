//! The read path: fetch the data shards of each needed stripe in parallel,
//! replace any missing, unreachable or corrupt one by parity, and stream the
//! bytes out in order. Wrong bytes are never sent: every block is checked
//! against its hash and its file's digest by the node that holds it, and a
//! stripe that cannot be rebuilt ends the stream with `Unavailable`.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::peers::{PeerError, Peers};
use super::{DataPlane, ObjectError};
use crate::crypto::{chunks_for, CryptoError, DataKey};
use crate::erasure::Codec;
use crate::meta::ObjectEncryption;
use crate::meta::{ObjectManifest, StripeRef};
use crate::raft::CaughtUp;
use crate::shards::ShardId;

/// Stripes fetched ahead of the one being sent.
const STRIPES_AHEAD: usize = 2;
/// Largest data message sent to the client.
const MESSAGE_BYTES: usize = 1024 * 1024;

/// A byte range of an object: `[offset, offset + length)`, `length` to the
/// end when absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObjectRange {
    /// First byte.
    pub offset: u64,
    /// Bytes wanted.
    pub length: Option<u64>,
}

/// The bytes of a read, in order, in messages of at most 1 MiB.
pub type ObjectStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>, ObjectError>> + Send>>;

/// Turns a run of stored bytes, starting at a chunk boundary, into the
/// object bytes of the wanted range: whole sealed chunks are opened (and
/// thereby authenticated) before any of their bytes leave.
struct ChunkOpener {
    key: DataKey,
    /// Index of the chunk being collected.
    next: u64,
    sealed_len: usize,
    chunk_bytes: u64,
    /// Stored offset one past the last byte to be fetched.
    stored_end: u64,
    /// Stored offset of `buf`'s first byte.
    stored_at: u64,
    buf: Vec<u8>,
    /// Object bytes `[start, end)` to hand out.
    want: (u64, u64),
}

impl ChunkOpener {
    /// An opener for object bytes `[start, end)` of an object of `size`
    /// bytes, and the stored range `[from, to)` to feed it.
    fn new(
        key: DataKey,
        enc: &ObjectEncryption,
        size: u64,
        start: u64,
        end: u64,
    ) -> (Self, u64, u64) {
        let (first, from, to) = chunks_for(enc, size, start, end);
        let opener = Self {
            key,
            next: first,
            sealed_len: enc.sealed_chunk_len() as usize,
            chunk_bytes: enc.chunk_bytes as u64,
            stored_end: to,
            stored_at: from,
            buf: Vec::new(),
            want: (start, end),
        };
        (opener, from, to)
    }

    /// Takes the next stored bytes; returns the object bytes of every
    /// chunk they complete, in one piece.
    fn push(&mut self, mut stored: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(stored.len());
        while !stored.is_empty() {
            let chunk_len = (self.sealed_len as u64).min(self.stored_end - self.stored_at) as usize;
            let take = (chunk_len - self.buf.len()).min(stored.len());
            self.buf.extend_from_slice(&stored[..take]);
            stored = &stored[take..];
            if self.buf.len() < chunk_len {
                break;
            }
            let mut chunk = std::mem::take(&mut self.buf);
            self.key.open(self.next, &mut chunk)?;
            let plain_at = self.next * self.chunk_bytes;
            let from = self.want.0.saturating_sub(plain_at) as usize;
            let to = (self.want.1.min(plain_at + chunk.len() as u64) - plain_at) as usize;
            if from < to {
                out.extend_from_slice(&chunk[from..to]);
            }
            self.stored_at += chunk_len as u64;
            self.next += 1;
        }
        Ok(out)
    }
}

impl DataPlane {
    /// Starts a read of `bucket/key`: the manifest (read linearizably), the
    /// resolved `[start, end)` range, and the stream of its bytes.
    pub async fn get(
        self: &Arc<Self>,
        caught_up: CaughtUp,
        bucket: &str,
        key: &str,
        range: ObjectRange,
    ) -> Result<(ObjectManifest, (u64, u64), ObjectStream), ObjectError> {
        let manifest = self.manifest(caught_up, bucket, key)?;
        if range.offset > 0 && range.offset >= manifest.size {
            return Err(ObjectError::OutOfRange(format!(
                "range starts at byte {}, but {bucket}/{key} has {} bytes",
                range.offset, manifest.size
            )));
        }
        let end = match range.length {
            Some(len) => range.offset.saturating_add(len).min(manifest.size),
            None => manifest.size,
        };
        let start = range.offset;
        let codec = Codec::new(manifest.data as usize, manifest.parity as usize)
            .map_err(|e| ObjectError::Internal(format!("manifest scheme: {e}")))?;
        // The stored bytes to fetch, and how to turn them into object bytes.
        let (stored_start, stored_end, mut opener) = match &manifest.encryption {
            None => (start, end, None),
            Some(enc) => {
                let key = self.data_key(manifest.object_id, &enc.key).await?;
                let (opener, from, to) = ChunkOpener::new(key, enc, manifest.size, start, end);
                (from, to, Some(opener))
            }
        };
        let stripes = manifest.stripes_for(stored_start, stored_end);
        let (tx, rx) = mpsc::channel::<Result<Vec<u8>, ObjectError>>(4);
        let plane = self.clone();
        let m = Arc::new(manifest.clone());
        let codec = Arc::new(codec);
        tokio::spawn(async move {
            let fetches = futures::stream::iter(stripes).map(|s| {
                let plane = plane.clone();
                let m = m.clone();
                let codec = codec.clone();
                async move {
                    let damaged = |i: usize| plane.report_bad_shard(&m, s.segment, i);
                    (s, fetch_stripe(&plane.peers, &m, &codec, s, &damaged).await)
                }
            });
            let mut fetches = fetches.buffered(STRIPES_AHEAD);
            while let Some((s, fetched)) = fetches.next().await {
                let bytes = match fetched {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let from = stored_start.saturating_sub(s.offset) as usize;
                let to = (stored_end.min(s.offset + s.bytes) - s.offset) as usize;
                let opened;
                let out: &[u8] = match &mut opener {
                    None => &bytes[from..to],
                    Some(opener) => match opener.push(&bytes[from..to]) {
                        Ok(plain) => {
                            opened = plain;
                            &opened
                        }
                        Err(e) => {
                            tracing::error!(object = %m.object_id, error = %e, "stored bytes failed authentication");
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                    },
                };
                for chunk in out.chunks(MESSAGE_BYTES) {
                    if tx.send(Ok(chunk.to_vec())).await.is_err() {
                        return; // the client went away
                    }
                }
            }
        });
        Ok((manifest, (start, end), Box::pin(ReceiverStream::new(rx))))
    }
}

/// One block of one shard file, `len` bytes long, from its holder.
async fn fetch_block(
    peers: &Peers,
    m: &ObjectManifest,
    s: StripeRef,
    index: usize,
    len: usize,
) -> Result<Bytes, BlockError> {
    let location = m
        .segments
        .get(s.segment as usize)
        .and_then(|seg| seg.shards.get(index))
        .ok_or(BlockError::NotInManifest)?;
    let (Some(node), Some(digest)) = (location.node, location.digest) else {
        return Err(BlockError::Missing);
    };
    let shard = ShardId {
        object_id: m.object_id,
        segment: s.segment,
        index: index as u32,
    };
    Ok(peers.read_block(node, shard, s.stripe, digest, len).await?)
}

/// Why one block could not be had.
#[derive(Debug, thiserror::Error)]
enum BlockError {
    /// The manifest has no such shard slot.
    #[error("not in the manifest")]
    NotInManifest,
    /// The manifest records no file for the shard (never written, or lost).
    #[error("shard missing")]
    Missing,
    /// Its holder failed to give it.
    #[error(transparent)]
    Peer(#[from] PeerError),
}

/// Fetches shards of one stripe, in waves along `order`, until `k` are in
/// hand. Shards whose holders confirm them missing or corrupt are passed
/// to `damaged`, to be reported for repair.
pub(super) async fn gather(
    peers: &Peers,
    m: &ObjectManifest,
    codec: &Codec,
    s: StripeRef,
    order: &[usize],
    damaged: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Option<Bytes>>, ObjectError> {
    let k = codec.data_shards();
    let width = codec.total_shards();
    let len = codec.shard_len(s.bytes as usize);
    let mut shards: Vec<Option<Bytes>> = vec![None; width];
    let mut next = 0;
    let mut problems = Vec::new();
    loop {
        let have = shards.iter().filter(|b| b.is_some()).count();
        if have >= k {
            return Ok(shards);
        }
        let wave: Vec<usize> = order[next.min(order.len())..]
            .iter()
            .copied()
            .take(k - have)
            .collect();
        next += wave.len();
        if wave.is_empty() {
            return Err(ObjectError::Unavailable(format!(
                "{}/{}: stripe {} of segment {} has only {have} of the {k} readable shards it needs ({})",
                m.bucket,
                m.key,
                s.stripe,
                s.segment,
                problems.join("; ")
            )));
        }
        let fetched =
            futures::future::join_all(wave.iter().map(|i| fetch_block(peers, m, s, *i, len))).await;
        for (i, result) in wave.iter().zip(fetched) {
            match result {
                Ok(block) => shards[*i] = Some(block),
                Err(e) => {
                    tracing::warn!(
                        object = %m.object_id,
                        segment = s.segment,
                        stripe = s.stripe,
                        shard = i,
                        error = %e,
                        "shard unreadable; using parity"
                    );
                    if matches!(&e, BlockError::Peer(p) if p.is_damage()) {
                        damaged(*i);
                    }
                    problems.push(format!("shard {i}: {e}"));
                }
            }
        }
    }
}

/// The bytes of one stripe, rebuilt from parity if need be.
pub(super) async fn fetch_stripe(
    peers: &Peers,
    m: &ObjectManifest,
    codec: &Codec,
    s: StripeRef,
    damaged: &(dyn Fn(usize) + Sync),
) -> Result<Vec<u8>, ObjectError> {
    // Data shards first: when they are all good, no decoding is needed.
    // Shards known to be damaged last: most of their blocks are good,
    // but a sound shard is the better bet.
    let mut order: Vec<usize> = (0..codec.total_shards()).collect();
    if let Some(seg) = m.segments.get(s.segment as usize) {
        order.sort_by_key(|i| seg.shards.get(*i).is_some_and(|l| l.damaged));
    }
    let shards = gather(peers, m, codec, s, &order, damaged).await?;
    let k = codec.data_shards();
    let bytes = s.bytes as usize;
    if shards[..k].iter().all(Option::is_some) {
        // Every data shard is here: the stripe is their concatenation.
        let mut out = Vec::with_capacity(bytes);
        for shard in shards[..k].iter().flatten() {
            let take = (bytes - out.len()).min(shard.len());
            out.extend_from_slice(&shard[..take]);
        }
        return Ok(out);
    }
    let shards = shards.into_iter().map(|b| b.map(Vec::from)).collect();
    codec.decode(shards, bytes).map_err(|e| {
        ObjectError::Internal(format!(
            "decoding stripe {} of segment {}: {e}",
            s.stripe, s.segment
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKeys;
    use crate::meta::ObjectId;
    use proptest::prelude::*;

    const KEYS: &str = "k1 0303030303030303030303030303030303030303030303030303030303030303\n";

    /// Seals `plain` as the write path does, with small chunks.
    fn sealed_object(plain: &[u8], chunk: u32) -> (ObjectEncryption, Vec<u8>, ObjectId) {
        let object = ObjectId([5; 16]);
        let keys = MasterKeys::parse(KEYS).expect("keys");
        let key = DataKey::generate(object);
        let enc = ObjectEncryption {
            chunk_bytes: chunk,
            key: key.wrap(keys.current()),
        };
        let mut stored = Vec::new();
        for (i, piece) in plain.chunks(chunk as usize).enumerate() {
            let mut c = piece.to_vec();
            key.seal(i as u64, &mut c);
            stored.extend_from_slice(&c);
        }
        assert_eq!(stored.len() as u64, enc.stored_len(plain.len() as u64));
        (enc, stored, object)
    }

    fn opener(
        enc: &ObjectEncryption,
        object: ObjectId,
        size: u64,
        start: u64,
        end: u64,
    ) -> (ChunkOpener, u64, u64) {
        let keys = MasterKeys::parse(KEYS).expect("keys");
        let key = DataKey::unwrap(object, &enc.key, &keys).expect("unwrap");
        ChunkOpener::new(key, enc, size, start, end.min(size))
    }

    proptest! {
        /// Any range, fed in pieces of any size, opens to exactly the
        /// object's bytes in that range.
        #[test]
        fn ranges_open_to_the_right_bytes(
            len in 0usize..400,
            chunk in 1u32..70,
            a in 0usize..400,
            b in 0usize..400,
            piece in 1usize..50,
        ) {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let (start, end) = (a.min(b).min(len) as u64, a.max(b).min(len) as u64);
            let (enc, stored, object) = sealed_object(&plain, chunk);
            let (mut opener, from, to) = opener(&enc, object, len as u64, start, end);
            let mut out = Vec::new();
            for p in stored[from as usize..to as usize].chunks(piece) {
                out.extend_from_slice(&opener.push(p).expect("opens"));
            }
            prop_assert_eq!(&out[..], &plain[start as usize..end as usize]);
        }
    }

    #[test]
    fn an_altered_stored_byte_is_refused() {
        let plain = vec![7u8; 100];
        let (enc, mut stored, object) = sealed_object(&plain, 30);
        stored[40] ^= 0x80;
        let (mut opener, from, to) = opener(&enc, object, 100, 0, 100);
        let result = opener.push(&stored[from as usize..to as usize]);
        assert!(
            matches!(result, Err(CryptoError::Tampered(_))),
            "{:?}",
            result.map(|v| v.len())
        );
    }
}
