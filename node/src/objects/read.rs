//! The read path: fetch the data shards of each needed stripe in parallel,
//! replace any missing, unreachable or corrupt one by parity, and stream the
//! bytes out in order. Wrong bytes are never sent: every block is checked
//! against its hash and its file's digest by the node that holds it, and a
//! stripe that cannot be rebuilt ends the stream with `Unavailable`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tresor_proto::internal::v1 as ipb;

use super::{DataPlane, ObjectError};
use crate::erasure::Codec;
use crate::meta::{ObjectManifest, StripeRef};

/// How long one block fetch may take before its shard is counted as lost
/// for this stripe and replaced by parity.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(10);
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

impl DataPlane {
    /// Starts a read of `bucket/key`: the manifest (read linearizably), the
    /// resolved `[start, end)` range, and the stream of its bytes.
    pub async fn get(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        range: ObjectRange,
    ) -> Result<(ObjectManifest, (u64, u64), ObjectStream), ObjectError> {
        let manifest = self.manifest(bucket, key).await?;
        if range.offset > manifest.size {
            return Err(ObjectError::InvalidArgument(format!(
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
        let stripes = manifest.stripes_for(start, end);
        let (tx, rx) = mpsc::channel::<Result<Vec<u8>, ObjectError>>(4);
        let plane = self.clone();
        let m = Arc::new(manifest.clone());
        let codec = Arc::new(codec);
        tokio::spawn(async move {
            let fetches = futures::stream::iter(stripes).map(|s| {
                let plane = plane.clone();
                let m = m.clone();
                let codec = codec.clone();
                async move { (s, plane.fetch_stripe(&m, &codec, s).await) }
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
                let from = start.saturating_sub(s.offset) as usize;
                let to = (end.min(s.offset + s.bytes) - s.offset) as usize;
                for chunk in bytes[from..to].chunks(MESSAGE_BYTES) {
                    if tx.send(Ok(chunk.to_vec())).await.is_err() {
                        return; // the client went away
                    }
                }
            }
        });
        Ok((manifest, (start, end), Box::pin(ReceiverStream::new(rx))))
    }

    /// One block of one shard file, or why not. `Err((reason, bad))`:
    /// `bad` when the holder confirmed the file missing or corrupt (as
    /// opposed to being unreachable), so it can be reported for repair.
    async fn fetch_block(
        &self,
        m: &ObjectManifest,
        s: StripeRef,
        index: usize,
        len: usize,
    ) -> Result<Vec<u8>, (String, bool)> {
        let location = m
            .segments
            .get(s.segment as usize)
            .and_then(|seg| seg.shards.get(index))
            .ok_or(("not in the manifest".to_string(), false))?;
        let (Some(node), Some(digest)) = (location.node, location.digest.as_ref()) else {
            return Err(("shard missing".into(), false));
        };
        let digest =
            hex::decode(digest).map_err(|_| ("manifest digest malformed".to_string(), false))?;
        let record = self
            .cluster
            .meta()
            .node(node)
            .map_err(|e| (e.to_string(), false))?
            .ok_or_else(|| (format!("node {node} unknown"), false))?;
        let mut client = self
            .peers
            .client(&record)
            .map_err(|e| (e.to_string(), false))?;
        let request = ipb::ReadBlockRequest {
            shard: Some(ipb::ShardRef {
                object_id: m.object_id.0.to_vec(),
                segment: s.segment,
                index: index as u32,
            }),
            block: s.stripe,
            digest,
        };
        let data = tokio::time::timeout(BLOCK_TIMEOUT, client.read_block(request))
            .await
            .map_err(|_| (format!("node {node} timed out"), false))?
            .map_err(|st| {
                let bad = matches!(st.code(), tonic::Code::NotFound | tonic::Code::DataLoss);
                (format!("node {node}: {}", st.message()), bad)
            })?
            .into_inner()
            .data;
        if data.len() != len {
            return Err((
                format!("node {node} sent {} bytes, expected {len}", data.len()),
                true,
            ));
        }
        Ok(data)
    }

    /// Fetches shards of one stripe, in waves along `order`, until `k` are
    /// in hand. Shards their holders report missing or corrupt are reported
    /// for repair.
    pub(super) async fn gather(
        &self,
        m: &ObjectManifest,
        codec: &Codec,
        s: StripeRef,
        order: &[usize],
    ) -> Result<Vec<Option<Vec<u8>>>, ObjectError> {
        let k = codec.data_shards();
        let width = codec.total_shards();
        let len = codec.shard_len(s.bytes as usize);
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; width];
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
                futures::future::join_all(wave.iter().map(|i| self.fetch_block(m, s, *i, len)))
                    .await;
            for (i, result) in wave.iter().zip(fetched) {
                match result {
                    Ok(block) => shards[*i] = Some(block),
                    Err((reason, bad)) => {
                        tracing::warn!(
                            object = %m.object_id,
                            segment = s.segment,
                            stripe = s.stripe,
                            shard = i,
                            reason,
                            "shard unreadable; using parity"
                        );
                        if bad {
                            self.report_bad_shard(m, s.segment, *i);
                        }
                        problems.push(format!("shard {i}: {reason}"));
                    }
                }
            }
        }
    }

    /// The bytes of one stripe, rebuilt from parity if need be.
    async fn fetch_stripe(
        &self,
        m: &ObjectManifest,
        codec: &Codec,
        s: StripeRef,
    ) -> Result<Vec<u8>, ObjectError> {
        // Data shards first: when they are all good, no decoding is needed.
        let order: Vec<usize> = (0..codec.total_shards()).collect();
        let shards = self.gather(m, codec, s, &order).await?;
        codec.decode(shards, s.bytes as usize).map_err(|e| {
            ObjectError::Internal(format!(
                "decoding stripe {} of segment {}: {e}",
                s.stripe, s.segment
            ))
        })
    }
}
