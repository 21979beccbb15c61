//! How the tree's keys are spelled: one prefix per kind of record.

use crate::meta::{Grant, ObjectId};

pub(super) const CLUSTER_ID: &[u8] = b"cluster_id";
pub(super) const NODE_PREFIX: &[u8] = b"node/";
pub(super) const BUCKET_PREFIX: &[u8] = b"bucket/";
pub(super) const OBJECT_PREFIX: &[u8] = b"object/";
/// `audit/<seq as 8 big-endian bytes>` → entry; `audit_head` → (seq, hash).
pub(super) const AUDIT_PREFIX: &[u8] = b"audit/";
pub(super) const AUDIT_HEAD: &[u8] = b"audit_head";
/// `objid/<16 bytes>` → `<bucket>\0<key>`: finds an object from its shard files.
pub(super) const OBJECT_ID_PREFIX: &[u8] = b"objid/";
/// `upload/<16-byte object id>` → an upload in progress.
pub(super) const UPLOAD_PREFIX: &[u8] = b"upload/";
pub(super) const PRINCIPAL_PREFIX: &[u8] = b"principal/";
pub(super) const GRANT_PREFIX: &[u8] = b"grant/";
pub(super) const TOKEN_PREFIX: &[u8] = b"token/";

pub(super) fn node_key(id: u64) -> Vec<u8> {
    let mut key = NODE_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
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
