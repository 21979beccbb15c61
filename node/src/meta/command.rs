//! The changes to the metadata proposed through Raft, and the records
//! only they carry (uploads in progress, key rewraps).

use serde::{Deserialize, Serialize};

use super::{
    Bucket, Grant, Hold, HoldTarget, NodeRecord, NodeState, Principal, RetentionPolicy, S3Key,
    Token,
};

/// A change to the metadata, proposed through Raft.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// First entry of a new cluster: its id and its first node.
    InitCluster {
        /// Random id naming this cluster.
        cluster_id: String,
        /// The node that initialised it.
        node: NodeRecord,
    },
    /// Records a new node. Refused if its id was ever used.
    AddNode {
        /// The node.
        node: NodeRecord,
    },
    /// Marks a node removed; its id stays reserved.
    RemoveNode {
        /// Node id.
        id: u64,
    },
    /// Creates a bucket. Refused if the name exists.
    CreateBucket {
        /// The bucket.
        bucket: Bucket,
    },
    /// Deletes an empty bucket and the grants on it. Refused while it
    /// holds an object, an upload in progress or a legal hold. Tombstones
    /// of the objects once in it stay: a bucket made again under the name
    /// still never reuses a deleted object's key.
    DeleteBucket {
        /// The bucket's name.
        name: String,
    },
    /// Records an upload in progress: its shard files are not orphans
    /// while the record lives. Refused if the object id is in use.
    BeginUpload {
        /// The upload.
        upload: UploadRecord,
    },
    /// Shows an upload is still making progress, so it does not expire.
    TouchUpload {
        /// The upload's object id.
        object_id: super::ObjectId,
        /// When, Unix milliseconds (chosen by the proposer).
        touched_ms: u64,
    },
    /// Ends an upload without an object: from this commit on its
    /// `CreateObject` can never succeed, and its shard files are garbage.
    /// Refused with `AlreadyExists` if the object was committed — so the
    /// answer tells a coordinator that lost track which way it went — and
    /// with `NotFound` if the upload was aborted already (by expiry, or a
    /// first attempt of this proposal).
    AbortUpload {
        /// The upload's object id.
        object_id: super::ObjectId,
        /// The abort's audit record (a resumable session's abort or
        /// expiry), appended if the upload was open.
        #[serde(default)]
        audit: Option<super::audit::AuditRecord>,
        /// Only if the upload shows no progress since this (an expiry
        /// judged by it): refused with `FailedPrecondition` otherwise.
        #[serde(default)]
        if_touched_ms: Option<u64>,
    },
    /// Makes `writer` the only one that may record the next parts of a
    /// resumable upload (a writer cut off but still running can then
    /// record nothing). Refused if the upload is not an open session.
    ClaimUpload {
        /// The session's object id.
        object_id: super::ObjectId,
        /// A random id of the claiming `UploadParts` call.
        writer: u64,
        /// When, Unix milliseconds (chosen by the proposer).
        touched_ms: u64,
    },
    /// Records a part of a resumable upload made durable. Refused unless
    /// `writer` holds the session's claim, `part` is the next part, the
    /// session is not finished and `hash` goes exactly one part further
    /// (or less, ending the object, when `finished`).
    RecordPart {
        /// The session's object id.
        object_id: super::ObjectId,
        /// The writer, as claimed.
        writer: u64,
        /// Which part (0-based): the object's segment of the same index.
        part: u32,
        /// Its shard files.
        segment: super::SegmentManifest,
        /// SHA-256 of the object's bytes up to the end of this part.
        hash: super::HashState,
        /// This part ends the object.
        finished: bool,
        /// When, Unix milliseconds (chosen by the proposer).
        touched_ms: u64,
    },
    /// Makes an object visible and ends its upload. Refused if the bucket
    /// is unknown, the key exists (keys are immutable) or the upload was
    /// aborted or expired. Idempotent: the same object committed again (a
    /// retried proposal) succeeds without change.
    CreateObject {
        /// Its manifest, shards already durable.
        manifest: Box<super::ObjectManifest>,
        /// The put's audit record, appended to the audit log in the same
        /// commit: an object is never stored without its record.
        #[serde(default)]
        audit: Option<super::audit::AuditRecord>,
    },
    /// Changes a node's liveness or drain state (never to or from `Removed`).
    SetNodeState {
        /// Node id.
        id: u64,
        /// New state.
        state: NodeState,
        /// When, Unix milliseconds (chosen by the proposer).
        since_ms: u64,
    },
    /// Moves or clears shard locations of one segment, if they are still
    /// what the proposer saw (compare-and-set): repair commits rebuilt
    /// shards this way, and scrub and reads report bad ones.
    UpdateShards {
        /// Bucket of the object.
        bucket: String,
        /// Key of the object.
        key: String,
        /// The object the proposer saw under that key.
        object_id: super::ObjectId,
        /// Segment index.
        segment: u32,
        /// `(shard index, location expected now, new location)`.
        changes: Vec<(u32, super::ShardLocation, super::ShardLocation)>,
    },
    /// Appends audit records to the hash-chained audit log.
    AppendAudit {
        /// The records, in the order the node saw them.
        records: Vec<super::audit::AuditRecord>,
    },
    /// Moves entries `first_seq..=last_seq` of the audit log out of the
    /// replicated state: the segment object already holds them, and the
    /// index records where and with which hashes. Refused unless the
    /// segment starts where the unsealed tail does, ends at an entry with
    /// the recorded hash, and its object exists with the recorded digest.
    SealAudit {
        /// The index record.
        segment: super::audit::SealedSegment,
    },
    /// Asks for a checkpoint covering the audit log as it is now: the
    /// sealer seals up to the head whatever its thresholds, and a
    /// checkpoint follows.
    RequestCheckpoint,
    /// Records a signed checkpoint of the history tree. Refused unless it
    /// states the state's own root over its segments, the last entry of
    /// its last segment and this cluster; a second checkpoint of the same
    /// size is a no-op.
    RecordCheckpoint {
        /// The checkpoint.
        checkpoint: super::audit::StoredCheckpoint,
    },
    /// Re-wraps data keys under another key: from a master key into an
    /// epoch (`keys rotate`), or from a retiring epoch into a new one (the
    /// shredder). Each change applies only if the object is still the same
    /// one, its key is still wrapped by `from_key_id`, and the new epoch
    /// exists and is not destroyed; others are skipped.
    RewrapKeys {
        /// The new wrappings.
        rewraps: Vec<KeyRewrap>,
    },
    /// Records a new key epoch; its key is already on the nodes (never in
    /// the replicated state). New objects of its class use it from now on.
    /// Refused if the id was ever used.
    CreateEpoch {
        /// The epoch (`live` 0, not retiring, not destroyed).
        epoch: super::KeyEpoch,
    },
    /// Stops an epoch taking new objects: its class gets a new one, and
    /// its objects are re-wrapped into that ([`Command::RewrapKeys`]).
    RetireEpoch {
        /// The epoch.
        id: u64,
    },
    /// Records an epoch key destroyed: every node removes its copy.
    /// Refused while any object's data key is still wrapped by it.
    DestroyEpoch {
        /// The epoch.
        id: u64,
        /// Unix milliseconds (chosen by the proposer).
        now_ms: u64,
    },
    /// Removes an object's manifest; its shards become garbage. Refused
    /// while a hold covers it or before its `keep_until`.
    DeleteObject {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// The object the proposer meant: if the key names another one now,
        /// the delete is refused as `NotFound` (the one meant is gone).
        #[serde(default)]
        object_id: Option<super::ObjectId>,
        /// Cluster time (see `Cluster::cluster_time`), Unix milliseconds:
        /// compared with the object's `keep_until` and `delete_at`.
        now_ms: u64,
        /// An expiry by retention: refused unless the object's `delete_at`
        /// has passed too.
        #[serde(default)]
        expiry: bool,
        /// The delete's audit record, appended in the same commit.
        #[serde(default)]
        audit: Option<super::audit::AuditRecord>,
    },
    /// Deletes the objects their retention made due at `now_ms` (cluster
    /// time), as [`Command::DeleteObject`] with `expiry` does one by one;
    /// an object that is no longer due, held, or another object now is
    /// skipped, the others are deleted. Each deleted object's record is
    /// appended to the audit log, in order.
    ExpireObjects {
        /// Cluster time, Unix milliseconds.
        now_ms: u64,
        /// The objects, with the audit record of each.
        objects: Vec<ExpiryItem>,
    },
    /// Records signed deletion receipts: each for an object whose receipt
    /// is due (deleted, receipt not yet recorded); one that is not due —
    /// recorded already, by a retried proposal — is skipped.
    RecordReceipts {
        /// The receipts.
        receipts: Vec<RecordedReceipt>,
    },
    /// Creates a principal, without roles. Refused if the name exists.
    CreatePrincipal {
        /// The principal.
        principal: Principal,
    },
    /// Deletes a principal with its grants and tokens. Refused if it would
    /// leave no principal with `admin` on all buckets.
    DeletePrincipal {
        /// Its name.
        name: String,
    },
    /// Gives a role. Refused for an unknown principal or bucket; granting a
    /// role held already changes nothing.
    Grant {
        /// The grant.
        grant: Grant,
    },
    /// Takes a role back. Refused if the principal does not hold it, or if
    /// it would leave no principal with `admin` on all buckets.
    Revoke {
        /// The grant to remove.
        grant: Grant,
    },
    /// Stores a new token (its secret's hash). Refused for an unknown
    /// principal or an id in use.
    CreateToken {
        /// The token.
        token: Token,
    },
    /// Deletes a token: it stops working at once.
    RevokeToken {
        /// The token's id.
        id: String,
    },
    /// Stores a new S3 access key (its secret wrapped). Refused for an
    /// unknown principal or an id in use.
    CreateS3Key {
        /// The key.
        key: S3Key,
    },
    /// Deletes an S3 access key: it stops working at once.
    RevokeS3Key {
        /// The access key id.
        id: String,
    },
    /// Creates a retention policy. Refused if the name exists: policies
    /// never change.
    CreateRetention {
        /// The policy.
        policy: RetentionPolicy,
    },
    /// Sets (or clears) the policy a bucket gives the objects committed to
    /// it from now on; objects already there keep theirs.
    SetBucketRetention {
        /// The bucket.
        bucket: String,
        /// The policy, which must exist.
        policy: Option<String>,
    },
    /// Moves an object to another policy, computed from its ingest time;
    /// refused unless it keeps the object at least as long in both respects.
    ExtendRetention {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// The object it must still be.
        object_id: super::ObjectId,
        /// The new policy.
        policy: String,
    },
    /// Places a legal hold. Refused if the case already holds the same
    /// target in the bucket.
    PlaceHold {
        /// The hold.
        hold: Hold,
    },
    /// Releases a case's hold on a target.
    ReleaseHold {
        /// The case.
        case_id: String,
        /// The bucket.
        bucket: String,
        /// What it held.
        target: HoldTarget,
    },
}

/// An upload in progress, from its first shard file to its commit or
/// abort.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The object id its shard files are named after.
    pub object_id: super::ObjectId,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// The node coordinating it.
    pub coordinator: u64,
    /// Unix milliseconds (chosen by the proposer).
    pub started_ms: u64,
    /// Last sign of progress, Unix milliseconds: an upload silent for longer
    /// than the expiry is aborted by the leader.
    pub touched_ms: u64,
    /// For a resumable upload: the session (`None` for a single-stream
    /// upload, which lives only as long as its coordinator's call).
    #[serde(default)]
    pub session: Option<Box<super::UploadSession>>,
}

/// One object of [`Command::ExpireObjects`].
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryItem {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// The object meant.
    pub object_id: super::ObjectId,
    /// Its audit record, appended if it is deleted.
    pub audit: super::audit::AuditRecord,
}

/// One receipt of [`Command::RecordReceipts`].
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedReceipt {
    /// The deleted object.
    pub object_id: super::ObjectId,
    /// Its receipt: the JSON text of a `tresor_client::receipt::SignedReceipt`.
    pub signed: String,
}

/// One object's data key, wrapped anew.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRewrap {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// The object the key belongs to.
    pub object_id: super::ObjectId,
    /// The key id (master or epoch) the current wrapping must have.
    pub from_key_id: String,
    /// The new wrapping.
    pub wrapped: super::WrappedKey,
}
