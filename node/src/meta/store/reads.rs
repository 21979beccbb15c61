//! Reads of the tree: what the API, the workers and the state machine ask.

use super::keys::*;
use super::{decode, MetaStore, StoreError};
use crate::ids::ShardId;
use crate::meta::audit::{AuditEntry, SealedSegment};
use crate::meta::{Bucket, Grant, NodeRecord, Principal, Role, S3Key, Token, UploadRecord};
use crate::meta::{Digest, ObjectId, ObjectManifest, Survey};

/// Where a walk over every object's manifest stopped: hand it to the next
/// page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCursor(Vec<u8>);

/// One shard file the manifests place on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedShard {
    /// The file.
    pub shard: ShardId,
    /// Its digest, as the manifest records it.
    pub digest: Option<Digest>,
    /// Marked damaged (to be rebuilt).
    pub damaged: bool,
}

fn be_u64(v: &[u8]) -> u64 {
    <[u8; 8]>::try_from(v).map(u64::from_be_bytes).unwrap_or(0)
}

impl MetaStore {
    /// The cluster's id, once initialised.
    pub fn cluster_id(&self) -> Result<Option<String>, StoreError> {
        self.get(CLUSTER_ID)
    }

    /// One node's record, removed nodes included.
    pub fn node(&self, id: u64) -> Result<Option<NodeRecord>, StoreError> {
        self.get(&node_key(id))
    }

    /// Every node ever added, in id order.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.scan(NODE_PREFIX)
    }

    /// One bucket.
    pub fn bucket(&self, name: &str) -> Result<Option<Bucket>, StoreError> {
        self.get(&bucket_key(name))
    }

    /// Every bucket, in name order.
    pub fn buckets(&self) -> Result<Vec<Bucket>, StoreError> {
        self.scan(BUCKET_PREFIX)
    }

    /// One object's manifest.
    pub fn object(&self, bucket: &str, key: &str) -> Result<Option<ObjectManifest>, StoreError> {
        self.get(&object_key(bucket, key))
    }

    /// Up to `limit` objects of `bucket` whose keys start with `prefix`, in
    /// key order, after the key `after` (exclusive) when given.
    pub fn objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectManifest>, StoreError> {
        let scan_prefix = object_key(bucket, prefix);
        let start = match after {
            Some(a) if a.as_bytes() >= prefix.as_bytes() => {
                let mut k = object_key(bucket, a);
                k.push(0);
                k
            }
            _ => scan_prefix.clone(),
        };
        let mut out = Vec::new();
        for kv in self.tree().range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(&scan_prefix) || out.len() >= limit {
                break;
            }
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// The manifest of the object with this id, if it still exists.
    pub fn object_by_id(
        &self,
        id: &crate::meta::ObjectId,
    ) -> Result<Option<ObjectManifest>, StoreError> {
        let Some(name) = self.tree().get(object_id_key(id))? else {
            return Ok(None);
        };
        let mut full = OBJECT_PREFIX.to_vec();
        full.extend_from_slice(&name);
        self.get(&full)
    }

    /// The upload in progress with this object id, if any.
    pub fn upload(&self, id: &crate::meta::ObjectId) -> Result<Option<UploadRecord>, StoreError> {
        self.get(&upload_key(id))
    }

    /// Up to `limit` uploads in progress, in object-id order, after the
    /// object id `after` (a resumable cursor for paged walks).
    pub fn uploads(
        &self,
        after: Option<&crate::meta::ObjectId>,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, StoreError> {
        let start = match after {
            Some(id) => {
                let mut k = upload_key(id);
                k.push(0);
                k
            }
            None => UPLOAD_PREFIX.to_vec(),
        };
        let mut out = Vec::new();
        for kv in self.tree().range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(UPLOAD_PREFIX) || out.len() >= limit {
                break;
            }
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// The last audit entry's sequence number and hash.
    pub fn audit_head(&self) -> Result<(u64, String), StoreError> {
        Ok(self
            .get::<(u64, String)>(AUDIT_HEAD)?
            .unwrap_or_else(|| (0, crate::meta::audit::GENESIS_HASH.to_string())))
    }

    /// Unsealed audit entries from `from_seq` on, in order, at most
    /// `limit`. Entries before [`Self::audit_tail_start`] are sealed: read
    /// them from their segments ([`Self::sealed_segments`]).
    pub fn audit_entries(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree().range(audit_key(from_seq)..) {
            let (k, v) = kv?;
            if !k.starts_with(AUDIT_PREFIX) || out.len() >= limit {
                break;
            }
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// One unsealed audit entry.
    pub(super) fn audit_entry(&self, seq: u64) -> Result<Option<AuditEntry>, StoreError> {
        self.get(&audit_key(seq))
    }

    /// The first audit entry that is not sealed (1 when none is).
    pub fn audit_tail_start(&self) -> Result<u64, StoreError> {
        Ok(self.last_sealed()?.map_or(1, |s| s.last_seq + 1))
    }

    /// Up to `limit` sealed segments, in log order, from the one holding
    /// entry `after_seq + 1` on.
    pub fn sealed_segments(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<SealedSegment>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree().range(sealed_key(after_seq.saturating_add(1))..) {
            let (k, v) = kv?;
            if !k.starts_with(AUDIT_SEALED_PREFIX) || out.len() >= limit {
                break;
            }
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// One principal.
    pub fn principal(&self, name: &str) -> Result<Option<Principal>, StoreError> {
        self.get(&principal_key(name))
    }

    /// Every principal, in name order.
    pub fn principals(&self) -> Result<Vec<Principal>, StoreError> {
        self.scan(PRINCIPAL_PREFIX)
    }

    /// The roles given to `principal` (none for an unknown name).
    pub fn grants_of(&self, principal: &str) -> Result<Vec<Grant>, StoreError> {
        self.scan(&grants_prefix(principal))
    }

    /// Every grant, by principal.
    pub fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.scan(GRANT_PREFIX)
    }

    /// One token, by id.
    pub fn token(&self, id: &str) -> Result<Option<Token>, StoreError> {
        self.get(&token_key(id))
    }

    /// Every token, in id order.
    pub fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        self.scan(TOKEN_PREFIX)
    }

    /// One S3 access key, by id.
    pub fn s3_key(&self, id: &str) -> Result<Option<S3Key>, StoreError> {
        self.get(&s3_key_key(id))
    }

    /// Every S3 access key, in id order.
    pub fn s3_keys(&self) -> Result<Vec<S3Key>, StoreError> {
        self.scan(S3_KEY_PREFIX)
    }

    /// Whether someone other than `name` holds `admin` on all buckets.
    pub(super) fn other_cluster_admin(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .grants()?
            .iter()
            .any(|g| g.principal != name && g.role == Role::Admin && g.bucket.is_none()))
    }

    /// Up to `limit` manifests of every bucket, in key order, after where
    /// the last page stopped; and where this one stopped, unless it was the
    /// last. Memory is one page, however many objects there are.
    pub fn objects_page(
        &self,
        after: Option<&ObjectCursor>,
        limit: usize,
    ) -> Result<(Vec<ObjectManifest>, Option<ObjectCursor>), StoreError> {
        let start = match after {
            Some(ObjectCursor(k)) => {
                let mut k = k.clone();
                k.push(0);
                k
            }
            None => OBJECT_PREFIX.to_vec(),
        };
        let mut page = Vec::new();
        let mut last = None;
        for kv in self.tree().range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(OBJECT_PREFIX) {
                return Ok((page, None));
            }
            if page.len() == limit {
                return Ok((page, last.map(ObjectCursor)));
            }
            page.push(decode(&k, &v)?);
            last = Some(k.to_vec());
        }
        Ok((page, None))
    }

    /// The cluster's data health counted afresh from every manifest, page
    /// by page: what [`MetaStore::health`] must always equal. For checks,
    /// not for periodic paths.
    pub fn recount(&self) -> Result<Survey, StoreError> {
        let nodes = self
            .nodes()?
            .into_iter()
            .map(|n| (n.id, n))
            .collect::<std::collections::HashMap<_, _>>();
        let mut survey = Survey::default();
        let mut cursor = None;
        loop {
            let (page, next) = self.objects_page(cursor.as_ref(), 1000)?;
            for m in &page {
                survey.add(m, &nodes);
            }
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(survey),
            }
        }
    }

    /// The cluster's data health from the counters `apply` keeps: reads a
    /// handful of keys (one per node and per shortfall), however many
    /// objects there are.
    pub fn health(&self) -> Result<Survey, StoreError> {
        let mut survey = Survey {
            segments: self
                .tree()
                .get(SEGMENTS_COUNT)?
                .map(|v| be_u64(&v))
                .unwrap_or(0),
            ..Survey::default()
        };
        for kv in self.tree().scan_prefix(SHORT_COUNT_PREFIX) {
            let (k, v) = kv?;
            if let Ok(n) = <[u8; 4]>::try_from(&k[SHORT_COUNT_PREFIX.len()..]) {
                survey
                    .degraded
                    .insert(u32::from_be_bytes(n) as usize, be_u64(&v));
            }
        }
        for kv in self.tree().scan_prefix(NODE_SHARDS_PREFIX) {
            let (k, v) = kv?;
            if let Ok(n) = <[u8; 8]>::try_from(&k[NODE_SHARDS_PREFIX.len()..]) {
                survey
                    .shards_per_node
                    .insert(u64::from_be_bytes(n), be_u64(&v));
            }
        }
        Ok(survey)
    }

    /// The shard files the manifests place on `node`, among up to `limit`
    /// manifests after where the last page stopped (in key order); and
    /// where this page stopped, unless it was the last. A page may hold no
    /// shard of the node and still not be the last. Memory is one page,
    /// however many objects there are.
    pub fn placed_on(
        &self,
        node: u64,
        after: Option<&ObjectCursor>,
        limit: usize,
    ) -> Result<(Vec<PlacedShard>, Option<ObjectCursor>), StoreError> {
        let (page, next) = self.objects_page(after, limit)?;
        let mut placed = Vec::new();
        for m in &page {
            for (segment, s) in m.segments.iter().enumerate() {
                for (index, l) in s.shards.iter().enumerate() {
                    if l.node == Some(node) {
                        placed.push(PlacedShard {
                            shard: ShardId {
                                object_id: m.object_id,
                                segment: segment as u32,
                                index: index as u32,
                            },
                            digest: l.digest,
                            damaged: l.damaged,
                        });
                    }
                }
            }
        }
        Ok((placed, next))
    }

    /// Whether a segment is short of at least one healthy shard.
    pub fn is_short(&self, object: &ObjectId, segment: u32) -> Result<bool, StoreError> {
        Ok(self.tree().contains_key(short_key(object, segment))?)
    }

    /// Whether a manifest places shard file `shard` on `node`: two key
    /// lookups (the object's id, then its manifest).
    pub fn is_placed(&self, node: u64, shard: &ShardId) -> Result<bool, StoreError> {
        let Some(m) = self.object_by_id(&shard.object_id)? else {
            return Ok(false);
        };
        Ok(m.segments
            .get(shard.segment as usize)
            .and_then(|s| s.shards.get(shard.index as usize))
            .is_some_and(|l| l.node == Some(node)))
    }

    /// Up to `limit` segments short of at least one healthy shard, in id
    /// order, after `after`.
    pub fn short_segments(
        &self,
        after: Option<(ObjectId, u32)>,
        limit: usize,
    ) -> Result<Vec<(ObjectId, u32)>, StoreError> {
        let start = match after {
            Some((object, segment)) => {
                let mut k = short_key(&object, segment);
                k.push(0);
                k
            }
            None => SHORT_PREFIX.to_vec(),
        };
        let mut out = Vec::new();
        for kv in self.tree().range(start..) {
            let (k, _) = kv?;
            if !k.starts_with(SHORT_PREFIX) || out.len() >= limit {
                break;
            }
            if let Some(segment) = short_segment(&k) {
                out.push(segment);
            }
        }
        Ok(out)
    }
}
