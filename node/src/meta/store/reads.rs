//! Reads of the tree: what the API, the workers and the state machine ask.

use super::keys::*;
use super::{decode, MetaStore, StoreError};
use crate::meta::ObjectManifest;
use crate::meta::{Bucket, Grant, NodeRecord, Principal, Role, Token, UploadRecord};

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
        for kv in self.tree.range(start..) {
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
        let Some(name) = self.tree.get(object_id_key(id))? else {
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
        for kv in self.tree.range(start..) {
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

    /// Audit entries from `from_seq` on, in order, at most `limit`.
    pub fn audit_entries(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<crate::meta::audit::AuditEntry>, StoreError> {
        let mut start = AUDIT_PREFIX.to_vec();
        start.extend_from_slice(&from_seq.to_be_bytes());
        let mut out = Vec::new();
        for kv in self.tree.range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(AUDIT_PREFIX) || out.len() >= limit {
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

    /// Whether someone other than `name` holds `admin` on all buckets.
    pub(super) fn other_cluster_admin(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .grants()?
            .iter()
            .any(|g| g.principal != name && g.role == Role::Admin && g.bucket.is_none()))
    }

    /// Every object manifest of every bucket (for repair and GC scans).
    pub fn all_objects(&self) -> Result<Vec<ObjectManifest>, StoreError> {
        self.scan(OBJECT_PREFIX)
    }
}
