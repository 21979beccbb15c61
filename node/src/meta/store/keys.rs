//! How the tree's keys are spelled: one prefix per kind of record.

use crate::meta::{Grant, HoldTarget, ObjectId};

pub(super) const CLUSTER_ID: &[u8] = b"cluster_id";
pub(super) const NODE_PREFIX: &[u8] = b"node/";
pub(super) const BUCKET_PREFIX: &[u8] = b"bucket/";
pub(super) const OBJECT_PREFIX: &[u8] = b"object/";
/// `audit/<seq as 8 big-endian bytes>` → entry; `audit_head` → (seq, hash).
pub(super) const AUDIT_PREFIX: &[u8] = b"audit/";
pub(super) const AUDIT_HEAD: &[u8] = b"audit_head";
/// `audit_sealed/<last seq as 8 big-endian bytes>` → a sealed segment's
/// index record: keyed by its last entry, so the segment holding any seq
/// is the first at or after it.
pub(super) const AUDIT_SEALED_PREFIX: &[u8] = b"audit_sealed/";
/// `audit_mmr/<height byte><index as 8 big-endian bytes>` → 32 bytes: the
/// perfect subtrees of the history tree over the sealed segments.
pub(super) const AUDIT_MMR_PREFIX: &[u8] = b"audit_mmr/";
/// `audit_ckpt/<segments as 8 big-endian bytes>` → a signed checkpoint.
pub(super) const AUDIT_CHECKPOINT_PREFIX: &[u8] = b"audit_ckpt/";
/// The last audit entry a checkpoint was asked to cover (8 big-endian
/// bytes): the sealer seals up to it whatever its thresholds say.
pub(super) const AUDIT_CHECKPOINT_WANTED: &[u8] = b"audit_ckpt_wanted";
/// `objid/<16 bytes>` → `<bucket>\0<key>`: finds an object from its shard files.
pub(super) const OBJECT_ID_PREFIX: &[u8] = b"objid/";
/// `upload/<16-byte object id>` → an upload in progress.
pub(super) const UPLOAD_PREFIX: &[u8] = b"upload/";
pub(super) const PRINCIPAL_PREFIX: &[u8] = b"principal/";
/// `short/<object id><segment as 4 big-endian bytes>` → how many of the
/// segment's shards are not healthy (4 big-endian bytes); only for segments
/// short of at least one.
pub(super) const SHORT_PREFIX: &[u8] = b"short/";
/// `count/node/<node>` → shard files placed on the node (8 big-endian bytes).
pub(super) const NODE_SHARDS_PREFIX: &[u8] = b"count/node/";
/// `count/short/<n as 4 big-endian bytes>` → segments short of exactly `n`
/// healthy shards (8 big-endian bytes).
pub(super) const SHORT_COUNT_PREFIX: &[u8] = b"count/short/";
/// Segments of all objects (8 big-endian bytes).
pub(super) const SEGMENTS_COUNT: &[u8] = b"count/segments";
pub(super) const GRANT_PREFIX: &[u8] = b"grant/";
/// `retention/<name>` → a retention policy.
pub(super) const RETENTION_PREFIX: &[u8] = b"retention/";
/// `hold/<case>\0<bucket>\0<k|p><key or prefix>` → a hold.
pub(super) const HOLD_PREFIX: &[u8] = b"hold/";
/// `holdk/<bucket>\0<key>\0<case>` → nothing: the key holds of an object.
pub(super) const HOLD_KEY_PREFIX: &[u8] = b"holdk/";
/// `holdp/<bucket>\0<prefix>\0<case>` → nothing: a bucket's prefix holds.
pub(super) const HOLD_PREFIX_PREFIX: &[u8] = b"holdp/";
pub(super) const TOKEN_PREFIX: &[u8] = b"token/";
/// `s3key/<access key id>` → an S3 access key.
pub(super) const S3_KEY_PREFIX: &[u8] = b"s3key/";
/// `expiry/<delete_at_ms u64 BE><object id>` → `<bucket>\0<key>`: objects
/// in the order their retention makes them due.
pub(super) const EXPIRY_PREFIX: &[u8] = b"expiry/";
/// `tomb/<bucket>\0<key>` → the tombstone of the object deleted there.
pub(super) const TOMB_PREFIX: &[u8] = b"tomb/";

/// `receipt/<bucket>\0<key>` → the signed receipt of the object deleted
/// there (the JSON text of a `SignedReceipt`).
pub(super) const RECEIPT_PREFIX: &[u8] = b"receipt/";
/// `receiptdue/<16-byte object id>` → a [`crate::meta::ReceiptDue`]: a
/// deletion whose receipt is not yet recorded.
pub(super) const RECEIPT_DUE_PREFIX: &[u8] = b"receiptdue/";

/// `epoch/<id as 8 big-endian bytes>` → a live [`crate::meta::KeyEpoch`].
pub(super) const EPOCH_PREFIX: &[u8] = b"epoch/";
/// `epochgone/<id as 8 big-endian bytes>` → a destroyed epoch's record.
pub(super) const EPOCH_GONE_PREFIX: &[u8] = b"epochgone/";
/// `epochclass/<class>` → the id of the epoch new objects of the class use.
pub(super) const EPOCH_CLASS_PREFIX: &[u8] = b"epochclass/";
/// `epochobj/<epoch id as 8 big-endian bytes><16-byte object id>` →
/// `<bucket>\0<key>`: the objects an epoch key wraps.
pub(super) const EPOCH_OBJECT_PREFIX: &[u8] = b"epochobj/";
/// `epochdirty/<epoch id as 8 big-endian bytes>` → nothing: live epochs one
/// of whose objects was deleted, which the shredder must destroy.
pub(super) const EPOCH_DIRTY_PREFIX: &[u8] = b"epochdirty/";

pub(super) fn epoch_key(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub(super) fn epoch_class_key(class: &str) -> Vec<u8> {
    let mut k = EPOCH_CLASS_PREFIX.to_vec();
    k.extend_from_slice(class.as_bytes());
    k
}

pub(super) fn epoch_object_key(epoch: u64, object: &ObjectId) -> Vec<u8> {
    let mut k = epoch_key(EPOCH_OBJECT_PREFIX, epoch);
    k.extend_from_slice(&object.0);
    k
}

pub(super) fn receipt_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = RECEIPT_PREFIX.to_vec();
    k.extend_from_slice(&object_name(bucket, key));
    k
}

pub(super) fn receipt_due_key(object: &ObjectId) -> Vec<u8> {
    let mut k = RECEIPT_DUE_PREFIX.to_vec();
    k.extend_from_slice(&object.0);
    k
}

pub(super) fn node_key(id: u64) -> Vec<u8> {
    let mut key = NODE_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

pub(super) fn audit_key(seq: u64) -> Vec<u8> {
    let mut key = AUDIT_PREFIX.to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(super) fn sealed_key(last_seq: u64) -> Vec<u8> {
    let mut key = AUDIT_SEALED_PREFIX.to_vec();
    key.extend_from_slice(&last_seq.to_be_bytes());
    key
}

pub(super) fn mmr_key(height: u32, index: u64) -> Vec<u8> {
    let mut key = AUDIT_MMR_PREFIX.to_vec();
    key.push(height as u8);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

pub(super) fn checkpoint_key(segments: u64) -> Vec<u8> {
    let mut key = AUDIT_CHECKPOINT_PREFIX.to_vec();
    key.extend_from_slice(&segments.to_be_bytes());
    key
}

pub(super) fn bucket_key(name: &str) -> Vec<u8> {
    let mut key = BUCKET_PREFIX.to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// `object/<bucket>\0<key>`: bucket names and keys contain no NUL, so the
/// objects of a bucket are one contiguous, key-ordered range.
pub(super) fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = object_prefix(bucket);
    k.extend_from_slice(key.as_bytes());
    k
}

pub(super) fn object_prefix(bucket: &str) -> Vec<u8> {
    let mut k = OBJECT_PREFIX.to_vec();
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k
}

pub(super) fn object_id_key(id: &ObjectId) -> Vec<u8> {
    let mut k = OBJECT_ID_PREFIX.to_vec();
    k.extend_from_slice(&id.0);
    k
}

pub(super) fn upload_key(id: &ObjectId) -> Vec<u8> {
    let mut k = UPLOAD_PREFIX.to_vec();
    k.extend_from_slice(&id.0);
    k
}

pub(super) fn short_key(object: &ObjectId, segment: u32) -> Vec<u8> {
    let mut k = SHORT_PREFIX.to_vec();
    k.extend_from_slice(&object.0);
    k.extend_from_slice(&segment.to_be_bytes());
    k
}

/// The segment named by a `short/` key.
pub(super) fn short_segment(key: &[u8]) -> Option<(ObjectId, u32)> {
    let rest = key.get(SHORT_PREFIX.len()..)?;
    if rest.len() != 20 {
        return None;
    }
    Some((
        ObjectId::from_slice(&rest[..16])?,
        u32::from_be_bytes(rest[16..20].try_into().ok()?),
    ))
}

pub(super) fn node_shards_key(node: u64) -> Vec<u8> {
    let mut k = NODE_SHARDS_PREFIX.to_vec();
    k.extend_from_slice(&node.to_be_bytes());
    k
}

pub(super) fn short_count_key(short: u32) -> Vec<u8> {
    let mut k = SHORT_COUNT_PREFIX.to_vec();
    k.extend_from_slice(&short.to_be_bytes());
    k
}

pub(super) fn principal_key(name: &str) -> Vec<u8> {
    let mut key = PRINCIPAL_PREFIX.to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// `grant/<principal>\0`: principal names contain no NUL, so one
/// principal's grants are one contiguous range.
pub(super) fn grants_prefix(principal: &str) -> Vec<u8> {
    let mut key = GRANT_PREFIX.to_vec();
    key.extend_from_slice(principal.as_bytes());
    key.push(0);
    key
}

pub(super) fn grant_key(grant: &Grant) -> Vec<u8> {
    let mut key = grants_prefix(&grant.principal);
    key.extend_from_slice(grant.role.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(grant.bucket.as_deref().unwrap_or("").as_bytes());
    key
}

pub(super) fn token_key(id: &str) -> Vec<u8> {
    let mut key = TOKEN_PREFIX.to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

pub(super) fn s3_key_key(id: &str) -> Vec<u8> {
    let mut key = S3_KEY_PREFIX.to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

pub(super) fn expiry_key(delete_at_ms: u64, object: &ObjectId) -> Vec<u8> {
    let mut key = EXPIRY_PREFIX.to_vec();
    key.extend_from_slice(&delete_at_ms.to_be_bytes());
    key.extend_from_slice(&object.0);
    key
}

/// The due time and object id of an `expiry/` key.
pub(super) fn expiry_entry(key: &[u8]) -> Option<(u64, ObjectId)> {
    let rest = key.get(EXPIRY_PREFIX.len()..)?;
    if rest.len() != 24 {
        return None;
    }
    Some((
        u64::from_be_bytes(rest[..8].try_into().ok()?),
        ObjectId::from_slice(&rest[8..])?,
    ))
}

/// `<bucket>\0<key>`, the value naming an object in indexes.
pub(super) fn object_name(bucket: &str, key: &str) -> Vec<u8> {
    let mut name = bucket.as_bytes().to_vec();
    name.push(0);
    name.extend_from_slice(key.as_bytes());
    name
}

pub(super) fn tombstone_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = TOMB_PREFIX.to_vec();
    k.extend_from_slice(&object_name(bucket, key));
    k
}

pub(super) fn retention_key(name: &str) -> Vec<u8> {
    let mut key = RETENTION_PREFIX.to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// `hold/<case>\0`: case ids contain no NUL, so a case's holds are one
/// contiguous range.
pub(super) fn case_holds_prefix(case_id: &str) -> Vec<u8> {
    let mut key = HOLD_PREFIX.to_vec();
    key.extend_from_slice(case_id.as_bytes());
    key.push(0);
    key
}

pub(super) fn hold_key(case_id: &str, bucket: &str, target: &HoldTarget) -> Vec<u8> {
    let mut key = case_holds_prefix(case_id);
    key.extend_from_slice(bucket.as_bytes());
    key.push(0);
    let (kind, text) = match target {
        HoldTarget::Key(k) => (b'k', k),
        HoldTarget::Prefix(p) => (b'p', p),
    };
    key.push(kind);
    key.extend_from_slice(text.as_bytes());
    key
}

/// The coverage index's key of a hold: `holdk/…` or `holdp/…`.
pub(super) fn hold_index_key(case_id: &str, bucket: &str, target: &HoldTarget) -> Vec<u8> {
    let (mut key, text) = match target {
        HoldTarget::Key(k) => (HOLD_KEY_PREFIX.to_vec(), k),
        HoldTarget::Prefix(p) => (HOLD_PREFIX_PREFIX.to_vec(), p),
    };
    key.extend_from_slice(bucket.as_bytes());
    key.push(0);
    key.extend_from_slice(text.as_bytes());
    key.push(0);
    key.extend_from_slice(case_id.as_bytes());
    key
}

/// `holdk/<bucket>\0<key>\0`: the key holds on one object.
pub(super) fn key_holds_prefix(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = HOLD_KEY_PREFIX.to_vec();
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k.push(0);
    k
}

/// `holdp/<bucket>\0`: a bucket's prefix holds.
pub(super) fn prefix_holds_prefix(bucket: &str) -> Vec<u8> {
    let mut k = HOLD_PREFIX_PREFIX.to_vec();
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k
}
