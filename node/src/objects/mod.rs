//! The write and read paths: coordinating one upload or download across the
//! nodes of the cluster. Uses `placement`, `erasure`, `shards` (through the
//! internal Shards service of each node, this one included) and `meta`
//! (through `cluster`, for linearizable manifest reads and commits).

mod audit;
mod body;
mod epochs;
mod keys;
mod peers;
mod read;
mod receipts;
mod repair;
mod segments;
mod sessions;
mod shred;
mod targets;
#[cfg(test)]
mod tests;
mod upload;
mod write;

use std::sync::Arc;

pub use audit::SealedRead;
pub use body::PutBody;
pub use keys::{RotationReport, S3Credential};
pub use peers::{
    epoch_key_from_proto, epoch_key_to_proto, timeouts, GrpcPeers, PeerError, Peers, ShardPeers,
    ShardSink, Target,
};
pub use read::{ObjectRange, ObjectStream};
pub use receipts::ReceiptsIssued;
pub use sessions::parse_upload_id;
pub use shred::{EpochSync, Shredded};
pub use write::{EtagRule, PutSpec};

use crate::config::DataTuning;
use crate::crypto::{EpochKeys, Keyring};
use crate::meta::{
    audit::AuditRecord, now_ms, validate_bucket_name, validate_key, Command, ExpiryItem, MetaError,
    NodeRecord, NodeState, ObjectId, ObjectManifest,
};
use crate::placement::Candidate;
use crate::raft::{CaughtUp, Cluster, ClusterError};
use crate::tls::ReceiptSigner;

/// Why an object operation failed; mapped to a gRPC status in `api`.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Bad request: key, range, header, checksum.
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown bucket or key.
    #[error("{0}")]
    NotFound(String),
    /// The key exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The object may not be changed now: a legal hold or its retention.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not use this (another principal's upload session).
    #[error("{0}")]
    PermissionDenied(String),
    /// Not enough nodes or shards right now.
    #[error("{0}")]
    Unavailable(String),
    /// The request was cut off by the client.
    #[error("{0}")]
    Cancelled(String),
    /// A range that starts past the end of the object.
    #[error("{0}")]
    OutOfRange(String),
    /// A message over the size limit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Stored bytes failed authentication and could not be rebuilt.
    #[error("{0}")]
    DataLoss(String),
    /// Something that should not happen.
    #[error("{0}")]
    Internal(String),
}

impl From<crate::crypto::CryptoError> for ObjectError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        match e {
            crate::crypto::CryptoError::Tampered(_) => ObjectError::DataLoss(e.to_string()),
            other => {
                // The detail names key files and key ids: for the log only.
                tracing::error!(error = %other, "encryption at rest unavailable");
                ObjectError::Internal(
                    "encryption at rest unavailable on this node (see its log)".into(),
                )
            }
        }
    }
}

impl From<ClusterError> for ObjectError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Meta(MetaError::NotFound(m)) => ObjectError::NotFound(m),
            ClusterError::Meta(MetaError::AlreadyExists(m)) => ObjectError::AlreadyExists(m),
            ClusterError::Meta(MetaError::InvalidArgument(m)) => ObjectError::InvalidArgument(m),
            ClusterError::Meta(MetaError::FailedPrecondition(m)) => ObjectError::Unavailable(m),
            ClusterError::NotLeader { leader } => ObjectError::Unavailable(match leader {
                Some((id, _)) => format!("leadership moved to node {id} during the request; retry"),
                None => "no leader elected at the moment; retry shortly".into(),
            }),
            ClusterError::Unavailable(m) => ObjectError::Unavailable(m),
            ClusterError::Storage(m) => ObjectError::Internal(format!("metadata storage: {m}")),
        }
    }
}

impl From<crate::meta::StoreError> for ObjectError {
    fn from(e: crate::meta::StoreError) -> Self {
        ObjectError::Internal(format!("metadata storage: {e}"))
    }
}

impl From<MetaError> for ObjectError {
    fn from(e: MetaError) -> Self {
        ClusterError::Meta(e).into()
    }
}

/// Most keys one `List` page returns.
pub const MAX_PAGE: usize = 10_000;
/// Keys per `List` page when the caller does not say.
pub const DEFAULT_PAGE: usize = 1_000;

/// The principal on record for deletes made by retention expiry. No
/// credential can name it (principal names take no `:`).
pub const EXPIRY_PRINCIPAL: &str = "system:retention";

/// Everything the write and read paths need on this node.
pub struct DataPlane {
    cluster: Arc<Cluster>,
    peers: Peers,
    tuning: DataTuning,
    keyring: Keyring,
    /// This node's epoch key files.
    epochs: Arc<EpochKeys>,
    /// Opening a key epoch, one at a time on this node.
    opening_epoch: tokio::sync::Mutex<()>,
    /// Signs receipts and custody bundles (none on an insecure cluster).
    signer: Option<Arc<ReceiptSigner>>,
}

impl DataPlane {
    /// The data plane of the node whose control plane is `cluster`, with
    /// its epoch keys `epochs`, signing with `signer`.
    pub fn new(
        cluster: Arc<Cluster>,
        tuning: DataTuning,
        epochs: Arc<EpochKeys>,
        signer: Option<Arc<ReceiptSigner>>,
    ) -> Self {
        let keyring = Keyring::new(cluster.config().security.master_key_file.clone());
        let transport = Arc::new(GrpcPeers::new(cluster.meta().clone()));
        Self {
            cluster,
            peers: Peers::new(transport),
            tuning,
            keyring,
            epochs,
            opening_epoch: tokio::sync::Mutex::new(()),
            signer,
        }
    }

    /// This node's epoch key files.
    pub fn epochs(&self) -> &Arc<EpochKeys> {
        &self.epochs
    }

    /// The cluster's signer, if it has one.
    pub fn signer(&self) -> Option<&Arc<ReceiptSigner>> {
        self.signer.as_ref()
    }

    /// The control plane.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Nodes eligible for new shards: active members, weighted by capacity.
    fn candidates(&self) -> Result<Vec<Candidate>, ObjectError> {
        Ok(self
            .cluster
            .meta()
            .nodes()?
            .into_iter()
            .filter(|n| n.state == NodeState::Active)
            .map(|n| candidate(&n))
            .collect())
    }

    /// The manifest of `bucket/key`, read linearizably (this node caught
    /// up during the request).
    pub fn manifest(
        &self,
        _: CaughtUp,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectManifest, ObjectError> {
        validate_bucket_name(bucket)?;
        validate_key(key)?;
        let meta = self.cluster.meta();
        if meta.bucket(bucket)?.is_none() {
            return Err(ObjectError::NotFound(format!("no bucket named {bucket}")));
        }
        if let Some(manifest) = meta.object(bucket, key)? {
            return Ok(manifest);
        }
        Err(ObjectError::NotFound(
            match meta.tombstone(bucket, key)? {
                Some(t) => format!(
                    "no object {bucket}/{key}: object {} was deleted by {} at {} (Unix ms)",
                    t.object_id, t.principal, t.deleted_ms
                ),
                None => format!("no object {bucket}/{key}"),
            },
        ))
    }

    /// One page of `bucket`'s objects whose keys start with `prefix`, after
    /// the key `after`; the second value is the next page's token.
    pub fn list(
        &self,
        _: CaughtUp,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        page: usize,
    ) -> Result<(Vec<ObjectManifest>, Option<String>), ObjectError> {
        validate_bucket_name(bucket)?;
        let page = match page {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let meta = self.cluster.meta();
        if meta.bucket(bucket)?.is_none() {
            return Err(ObjectError::NotFound(format!("no bucket named {bucket}")));
        }
        let mut objects = meta.objects(bucket, prefix, after, page + 1)?;
        let next = if objects.len() > page {
            objects.truncate(page);
            objects.last().map(|o| o.key.clone())
        } else {
            None
        };
        Ok((objects, next))
    }

    /// The audit record of a change this node makes on `principal`'s
    /// behalf, committed in the same Raft command as the change.
    fn audit_record(
        &self,
        principal: &str,
        action: &str,
        bucket: &str,
        key: &str,
        sha256: &str,
    ) -> AuditRecord {
        AuditRecord {
            time_ms: now_ms(),
            node: self.cluster.config().node_id,
            principal: principal.to_string(),
            action: action.to_string(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            object_sha256: sha256.to_string(),
            outcome: "ok".to_string(),
        }
    }

    /// Removes `bucket/key`: the manifest (the object is gone from that
    /// commit on); its shard files are removed by the leader as it issues
    /// the deletion's receipt.
    /// The audit record of the delete commits with it. Refused while a
    /// hold covers the object or before its `keep_until` in cluster time.
    pub async fn delete(
        &self,
        caught_up: CaughtUp,
        bucket: &str,
        key: &str,
        principal: &str,
    ) -> Result<(), ObjectError> {
        let manifest = self.manifest(caught_up, bucket, key)?;
        let now_ms = self.cluster.cluster_time().await?;
        let audit = self.audit_record(principal, "delete", bucket, key, &manifest.sha256);
        self.remove(manifest, now_ms, audit).await
    }

    /// Deletes the objects their retention made due by cluster time
    /// `now_ms`, in one commit: the batch form of [`DataPlane::delete`],
    /// each on record as [`EXPIRY_PRINCIPAL`] with action `expire` and the
    /// policy's name in the outcome. An object held, extended or replaced
    /// meanwhile is skipped, changing nothing. Returns how many were
    /// deleted; their shard files go with their receipts.
    pub async fn expire(
        &self,
        manifests: Vec<ObjectManifest>,
        now_ms: u64,
    ) -> Result<u64, ObjectError> {
        if manifests.is_empty() {
            return Ok(0);
        }
        let objects = manifests
            .iter()
            .map(|m| {
                let policy = m.retention.as_ref().map(|r| r.policy.as_str());
                let mut audit =
                    self.audit_record(EXPIRY_PRINCIPAL, "expire", &m.bucket, &m.key, &m.sha256);
                audit.outcome = format!("ok (retention policy {})", policy.unwrap_or_default());
                ExpiryItem {
                    bucket: m.bucket.clone(),
                    key: m.key.clone(),
                    object_id: m.object_id,
                    audit,
                }
            })
            .collect();
        self.cluster
            .propose(Command::ExpireObjects { now_ms, objects })
            .await?;
        // Those deleted left their tombstone (this runs on the leader, which
        // applied the commit before answering); their shard files go when
        // their receipts are issued.
        let meta = self.cluster.meta();
        let mut deleted = 0;
        for m in manifests {
            let tomb = meta.tombstone(&m.bucket, &m.key)?;
            if tomb.is_some_and(|t| t.object_id == m.object_id) {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn remove(
        &self,
        manifest: ObjectManifest,
        now_ms: u64,
        audit: AuditRecord,
    ) -> Result<(), ObjectError> {
        let mine = audit.clone();
        let deleted = self
            .cluster
            .propose(Command::DeleteObject {
                bucket: manifest.bucket.clone(),
                key: manifest.key.clone(),
                object_id: Some(manifest.object_id),
                now_ms,
                expiry: false,
                audit: Some(audit),
            })
            .await;
        match deleted {
            Ok(()) => {}
            // Gone: either a retried proposal whose first attempt committed
            // (this delete happened, on record), or another delete that won
            // the race — then this call deleted nothing and must not say it
            // did. The delete's audit entry tells which.
            Err(ClusterError::Meta(MetaError::NotFound(m))) => {
                self.cluster.linearizable_read().await?;
                let meta = self.cluster.meta();
                let tomb = meta.tombstone(&manifest.bucket, &manifest.key)?;
                let entry = match &tomb {
                    Some(t) if t.object_id == manifest.object_id && t.audit_seq > 0 => {
                        meta.audit_entries(t.audit_seq, 1)?.pop()
                    }
                    _ => None,
                };
                let ours = entry.is_some_and(|e| {
                    tomb.as_ref().is_some_and(|t| t.audit_seq == e.seq) && e.record == mine
                });
                if !ours {
                    return Err(ObjectError::NotFound(match tomb {
                        Some(t) => format!(
                            "{}/{} was deleted meanwhile by {} at {} (Unix ms)",
                            manifest.bucket, manifest.key, t.principal, t.deleted_ms
                        ),
                        None => m,
                    }));
                }
            }
            // Held, or kept by its retention: a refusal to report as such.
            Err(ClusterError::Meta(MetaError::FailedPrecondition(m))) => {
                return Err(ObjectError::FailedPrecondition(m))
            }
            Err(e) => return Err(e.into()),
        }
        // The shard files go when the leader issues the receipt.
        Ok(())
    }

    /// Asks `nodes` to delete every shard file of `object`, in the
    /// background (an upload abandoned). Files missed here are orphans for
    /// garbage collection.
    fn delete_shards(&self, object: ObjectId, mut nodes: Vec<u64>) {
        nodes.sort_unstable();
        nodes.dedup();
        for node in nodes {
            let peers = self.peers.clone();
            tokio::spawn(async move {
                if let Err(e) = peers.delete_object(node, object).await {
                    tracing::warn!(node, %object, error = %e, "could not delete shards");
                }
            });
        }
    }
}

/// A node as placement sees it: its zone, weighted by its capacity.
fn candidate(node: &NodeRecord) -> Candidate {
    Candidate {
        id: node.id,
        zone: node.zone.clone(),
        weight: node.capacity,
    }
}
