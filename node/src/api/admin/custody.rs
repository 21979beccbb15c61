//! Chain-of-custody bundles: one object's history, signed by the cluster's
//! signer, for courts and defence counsel to check offline (`tresor
//! custody verify`).

use tonic::{Request, Response, Status};
use tresor_client::anchor::{Anchor, EntryProof, SegmentProof, SignedCheckpoint};
use tresor_client::custody::{CustodyBody, CustodyHold, CustodyObject};
use tresor_client::merkle;
use tresor_proto::v1 as pb;

use super::AdminService;
use crate::api::auth::Action;
use crate::api::{meta_status, store_status, to_status};
use crate::meta::audit::anchor::segment_tree;
use crate::meta::audit::{AuditEntry, SealedSegment, StoredCheckpoint};
use crate::meta::{now_ms, validate_bucket_name, validate_key, HoldTarget, MetaError};

/// Audit entries one bundle carries at most.
const MAX_ENTRIES: usize = 10_000;

impl AdminService {
    pub(super) async fn export_custody(
        &self,
        request: Request<pb::ExportCustodyRequest>,
    ) -> Result<Response<pb::ExportCustodyResponse>, Status> {
        let bucket = request.get_ref().bucket.clone();
        validate_bucket_name(&bucket).map_err(meta_status)?;
        let caller = self
            .auth
            .check(&request, Action::ExportCustody, Some(&bucket), "")
            .await?;
        self.catch_up(&caller).await?;
        let request = request.into_inner();
        let (key, checkpoint_segments) = (request.key, request.checkpoint_segments);
        validate_key(&key).map_err(meta_status)?;
        let meta = self.cluster.meta();
        let manifest = meta.object(&bucket, &key).map_err(store_status)?;
        let receipt = match &manifest {
            Some(_) => None,
            None => meta.receipt(&bucket, &key).map_err(store_status)?,
        };
        if manifest.is_none() && receipt.is_none() {
            let why = match meta.tombstone(&bucket, &key).map_err(store_status)? {
                Some(_) => format!(
                    "{bucket}/{key} was deleted and its receipt is still being issued: try \
                     again in a few seconds"
                ),
                None => format!("nothing is or was stored at {bucket}/{key}"),
            };
            return Err(meta_status(MetaError::NotFound(why)));
        }
        let object = manifest.map(|m| {
            let r = m.retention.as_ref();
            CustodyObject {
                object_id: m.object_id.to_string(),
                size: m.size,
                sha256: m.sha256.clone(),
                content_type: m.content_type.clone(),
                metadata: m.metadata.clone(),
                ingested_ms: m.created_ms,
                ingested_by: m.ingested_by.clone(),
                retention_policy: r.map(|r| r.policy.clone()),
                keep_until_ms: r.and_then(|r| r.keep_until_ms),
                delete_at_ms: r.and_then(|r| r.delete_at_ms),
            }
        });
        let holds = meta
            .holds_on(&bucket, &key)
            .map_err(store_status)?
            .into_iter()
            .map(|h| CustodyHold {
                case_id: h.case_id,
                target: match h.target {
                    HoldTarget::Key(k) => k,
                    HoldTarget::Prefix(p) => format!("{p}*"),
                },
                reason: h.reason,
                placed_by: h.placed_by,
                placed_ms: h.placed_ms,
            })
            .collect();
        // The export is an access like any other: on record before the
        // bundle is made, so the bundle shows it too.
        let sha = object
            .as_ref()
            .map(|o| o.sha256.clone())
            .unwrap_or_default();
        self.audit
            .record(
                caller.name(),
                Action::ExportCustody.name(),
                &bucket,
                &key,
                &sha,
                "ok",
            )
            .await
            .map_err(|e| Status::unavailable(format!("the export could not be audited: {e}")))?;
        // Caught up again (not the check's cached read): this node has
        // applied that record too.
        let caught_up = self.cluster.linearizable_read().await.map_err(to_status)?;
        let (head_seq, head_hash) = meta.audit_head().map_err(store_status)?;
        let checkpoint = match checkpoint_segments {
            0 => meta.latest_checkpoint().map_err(store_status)?,
            k => Some(meta.checkpoint(k).map_err(store_status)?.ok_or_else(|| {
                Status::not_found(format!("no checkpoint was made of {k} sealed segments"))
            })?),
        };
        let filter = pb::AuditLogRequest {
            bucket: bucket.clone(),
            key: key.clone(),
            ..Default::default()
        };
        let mut proofs = Proofs::new(checkpoint.as_ref(), &bucket, &key);
        let mut entries = self
            .audit_entries(caught_up, filter, MAX_ENTRIES + 1, |s, e| {
                proofs.segment(s, e)
            })
            .await?;
        let entries_complete = entries.len() <= MAX_ENTRIES;
        entries.truncate(MAX_ENTRIES);
        entries.retain(|e| e.seq <= head_seq);
        let anchor = match checkpoint {
            Some(c) => Some(proofs.anchor(c, &entries, |ordinal, size| {
                meta.history_path(ordinal, size).map_err(store_status)
            })?),
            None => None,
        };
        let body = CustodyBody {
            version: 2,
            cluster_id: meta.cluster_id().map_err(store_status)?.unwrap_or_default(),
            bucket,
            key,
            object,
            receipt,
            holds,
            entries: entries.iter().map(|e| e.custody()).collect(),
            entries_complete,
            head_seq,
            head_hash,
            anchor,
            exported_by: caller.name().to_string(),
            exported_ms: now_ms(),
        };
        let signed = match self.plane.signer() {
            Some(s) => s.sign(&body),
            None => crate::tls::unsigned(&body),
        }
        .map_err(Status::internal)?;
        let bundle_json =
            serde_json::to_string(&signed).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::ExportCustodyResponse { bundle_json }))
    }
}

/// The inclusion proofs of a bundle's sealed entries, gathered as the
/// segments are read.
struct Proofs<'a> {
    /// Segments below this ordinal are in the checkpoint (0: none is).
    covered: u64,
    bucket: &'a str,
    key: &'a str,
    segments: Vec<SegmentProof>,
    /// A segment whose entries did not give a tree.
    failed: Option<String>,
}

impl<'a> Proofs<'a> {
    fn new(checkpoint: Option<&StoredCheckpoint>, bucket: &'a str, key: &'a str) -> Self {
        Self {
            covered: checkpoint.map_or(0, |c| c.segments),
            bucket,
            key,
            segments: Vec::new(),
            failed: None,
        }
    }

    /// Takes a sealed segment as read: the paths of its entries naming
    /// the object, if the checkpoint covers it.
    fn segment(&mut self, segment: &SealedSegment, entries: &[AuditEntry]) {
        if segment.ordinal >= self.covered || self.failed.is_some() {
            return;
        }
        let ours: Vec<&AuditEntry> = entries
            .iter()
            .filter(|e| e.record.bucket == self.bucket && e.record.key == self.key)
            .collect();
        if ours.is_empty() {
            return;
        }
        let tree = match segment_tree(entries) {
            Ok(t) => t,
            Err(e) => {
                self.failed = Some(e.to_string());
                return;
            }
        };
        let hex = |path: Vec<merkle::Hash>| path.iter().map(merkle::to_hex).collect();
        self.segments.push(SegmentProof {
            ordinal: segment.ordinal,
            first_seq: segment.first_seq,
            last_seq: segment.last_seq,
            root: segment.root.clone(),
            last_hash: segment.last_hash.clone(),
            path: Vec::new(),
            entries: ours
                .iter()
                .filter_map(|e| {
                    let path = tree.path(e.seq.checked_sub(segment.first_seq)?)?;
                    Some(EntryProof {
                        seq: e.seq,
                        path: hex(path),
                    })
                })
                .collect(),
        });
    }

    /// The anchor to `checkpoint` of `entries` (what the bundle carries):
    /// each segment's path to the checkpoint's root from `history_path`.
    fn anchor(
        mut self,
        checkpoint: StoredCheckpoint,
        entries: &[AuditEntry],
        history_path: impl Fn(u64, u64) -> Result<Vec<merkle::Hash>, Status>,
    ) -> Result<Anchor, Status> {
        if let Some(why) = self.failed {
            return Err(Status::data_loss(format!(
                "a sealed audit segment cannot be proven: {why} (run `audit verify`)"
            )));
        }
        let kept: std::collections::BTreeSet<u64> = entries.iter().map(|e| e.seq).collect();
        for s in &mut self.segments {
            s.entries.retain(|p| kept.contains(&p.seq));
            s.path = history_path(s.ordinal, checkpoint.segments)?
                .iter()
                .map(merkle::to_hex)
                .collect();
        }
        self.segments.retain(|s| !s.entries.is_empty());
        let checkpoint: SignedCheckpoint = serde_json::from_str(&checkpoint.signed)
            .map_err(|e| Status::internal(format!("a stored checkpoint does not parse: {e}")))?;
        Ok(Anchor {
            checkpoint,
            segments: self.segments,
        })
    }
}
