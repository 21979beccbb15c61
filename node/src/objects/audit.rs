//! Sealed audit segments through the data path: the leader writes the
//! tail's oldest entries as an object of the reserved audit bucket and then
//! commits the seal; readers fetch a segment like any object (rebuilding
//! around damaged shards and reporting them for repair) and check it.

use std::sync::Arc;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::{DataPlane, ObjectError, ObjectRange, PutSpec};
use crate::meta::audit::anchor::segment_root;
use crate::meta::audit::{
    decode_segment, encode_segment, segment_key, AuditEntry, SealedSegment, StoredCheckpoint,
    Summary, AUDIT_BUCKET, MAX_SEGMENT_BYTES,
};
use crate::meta::now_ms;
use crate::meta::{Command, MetaError, NodeState};
use crate::raft::{CaughtUp, ClusterError};

/// Who the audit log names as the writer of sealed segments.
const SEALER: &str = "cluster (audit seal)";

/// A sealed segment as read back.
#[derive(Debug)]
pub struct SealedRead {
    /// The entries, or why the bytes are not a segment.
    pub entries: Result<Vec<AuditEntry>, String>,
    /// Whether the bytes hash to the digest recorded when it was sealed.
    pub digest_matches: bool,
}

/// The erasure scheme of the audit bucket on a cluster of `nodes` active
/// nodes: two parity shards (a zone of two nodes may be lost) and up to
/// four data shards; none below two nodes.
fn audit_scheme(nodes: usize) -> Option<(u32, u32)> {
    match nodes {
        0 | 1 => None,
        2 => Some((1, 1)),
        n => Some(((n - 2).min(4) as u32, 2)),
    }
}

impl DataPlane {
    /// Seals the oldest unsealed audit entries, at most `max_entries` of
    /// them: stores them as a segment object, then commits the seal, which
    /// removes them from the replicated state. Returns the segment, or
    /// `None` when the tail is empty. Safe to repeat after any failure: an
    /// object left by an attempt whose seal did not commit holds the same
    /// entries and is reused.
    pub async fn seal_audit(
        self: &Arc<Self>,
        caught_up: CaughtUp,
        max_entries: usize,
    ) -> Result<Option<SealedSegment>, ObjectError> {
        let meta = self.cluster.meta();
        let start = meta.audit_tail_start()?;
        let entries = meta.audit_entries(start, max_entries)?;
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(None);
        };
        let bytes = encode_segment(&entries);
        let root = segment_root(&entries)
            .map_err(|e| ObjectError::Internal(e.to_string()))?
            .unwrap_or_default();
        let segment = SealedSegment {
            first_seq: first.seq,
            last_seq: last.seq,
            prev_hash: first.prev_hash.clone(),
            last_hash: last.hash.clone(),
            key: segment_key(first.seq, last.seq),
            sha256: hex::encode(Sha256::digest(&bytes)),
            summary: Summary::of(&entries),
            ordinal: meta.audit_segments()?,
            root,
        };
        drop(entries);
        self.ensure_audit_bucket().await?;
        match meta.object(AUDIT_BUCKET, &segment.key)? {
            Some(existing) if existing.sha256 == segment.sha256 => {}
            Some(existing) => {
                return Err(ObjectError::Internal(format!(
                    "{AUDIT_BUCKET}/{} exists with digest {} but the entries it should hold hash \
                     to {}: left as it is for inspection",
                    segment.key, existing.sha256, segment.sha256
                )))
            }
            None => {
                let spec = PutSpec {
                    bucket: AUDIT_BUCKET.into(),
                    key: segment.key.clone(),
                    content_type: "application/x-tresor-audit-segment".into(),
                    metadata: Default::default(),
                    expected_sha256: Some(segment.sha256.clone()),
                    principal: SEALER.into(),
                    etag: None,
                };
                let body = futures::stream::iter(
                    bytes
                        .chunks(1024 * 1024)
                        .map(|c| Ok(c.to_vec()))
                        .collect::<Vec<_>>(),
                );
                match self.put(caught_up, spec, body).await {
                    Ok(_) => {}
                    // Another leader stored it meanwhile; the seal's apply
                    // checks the digest.
                    Err(ObjectError::AlreadyExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        match self
            .cluster
            .propose(Command::SealAudit {
                segment: segment.clone(),
            })
            .await
        {
            Ok(()) => Ok(Some(segment)),
            Err(ClusterError::Meta(MetaError::FailedPrecondition(why))) => {
                Err(ObjectError::Unavailable(why))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Signs a checkpoint of the history as sealed now and records it;
    /// returns it, or `None` when nothing is sealed. A checkpoint of the
    /// same size recorded meanwhile is kept (and returned).
    pub async fn checkpoint_audit(&self) -> Result<Option<StoredCheckpoint>, ObjectError> {
        let meta = self.cluster.meta();
        let Some(last) = meta.last_sealed()? else {
            return Ok(None);
        };
        let segments = last.ordinal + 1;
        if let Some(done) = meta.checkpoint(segments)? {
            return Ok(Some(done));
        }
        let root = tresor_client::merkle::to_hex(&meta.history_root(segments)?);
        let body = tresor_client::anchor::CheckpointBody {
            version: 1,
            cluster_id: meta.cluster_id()?.unwrap_or_default(),
            segments,
            last_seq: last.last_seq,
            last_hash: last.last_hash.clone(),
            root: root.clone(),
            made_ms: now_ms(),
        };
        let signed = match self.signer() {
            Some(s) => s.sign(&body),
            None => crate::tls::unsigned(&body),
        }
        .map_err(ObjectError::Internal)?;
        let checkpoint = StoredCheckpoint {
            segments,
            last_seq: last.last_seq,
            root,
            made_ms: body.made_ms,
            signed: serde_json::to_string(&signed)
                .map_err(|e| ObjectError::Internal(e.to_string()))?,
        };
        match self
            .cluster
            .propose(Command::RecordCheckpoint {
                checkpoint: checkpoint.clone(),
            })
            .await
        {
            Ok(()) => Ok(meta.checkpoint(segments)?.or(Some(checkpoint))),
            Err(ClusterError::Meta(MetaError::FailedPrecondition(why))) => {
                Err(ObjectError::Unavailable(why))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the audit bucket if it does not exist yet.
    async fn ensure_audit_bucket(&self) -> Result<(), ObjectError> {
        let meta = self.cluster.meta();
        if meta.bucket(AUDIT_BUCKET)?.is_some() {
            return Ok(());
        }
        let active = meta
            .nodes()?
            .iter()
            .filter(|n| n.state == NodeState::Active)
            .count();
        let Some((data, parity)) = audit_scheme(active) else {
            return Err(ObjectError::Unavailable(format!(
                "sealing the audit log needs at least two active nodes ({active} now)"
            )));
        };
        match self
            .cluster
            .create_bucket(AUDIT_BUCKET, data, parity, None)
            .await
        {
            Ok(_) | Err(ClusterError::Meta(MetaError::AlreadyExists(_))) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a sealed segment back and checks its digest. An error means
    /// the object could not be read at all (more shards lost than parity
    /// covers, or no quorum to read its manifest).
    pub async fn read_sealed(
        self: &Arc<Self>,
        caught_up: CaughtUp,
        segment: &SealedSegment,
    ) -> Result<SealedRead, ObjectError> {
        let (manifest, _, mut stream) = self
            .get(
                caught_up,
                AUDIT_BUCKET,
                &segment.key,
                ObjectRange::default(),
            )
            .await?;
        if manifest.size > MAX_SEGMENT_BYTES {
            return Ok(SealedRead {
                entries: Err(format!(
                    "the object has {} bytes, more than a segment can",
                    manifest.size
                )),
                digest_matches: false,
            });
        }
        let mut bytes = Vec::with_capacity(manifest.size as usize);
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        Ok(SealedRead {
            digest_matches: hex::encode(Sha256::digest(&bytes)) == segment.sha256,
            entries: decode_segment(&bytes).map_err(|e| e.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::audit_scheme;

    #[test]
    fn audit_bucket_survives_two_losses_where_it_can() {
        assert_eq!(audit_scheme(1), None);
        assert_eq!(audit_scheme(2), Some((1, 1)));
        assert_eq!(audit_scheme(3), Some((1, 2)));
        assert_eq!(audit_scheme(6), Some((4, 2)));
        assert_eq!(audit_scheme(40), Some((4, 2)));
    }
}
