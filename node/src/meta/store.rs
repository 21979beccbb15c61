//! The metadata's sled tree: reads for the API, deterministic writes for the
//! state machine.
//!
//! Keys: `cluster_id`; `node/<id as 8 big-endian bytes>`; `bucket/<name>`;
//! `principal/<name>`; `grant/<principal>\0<role>\0<bucket or empty>`;
//! `token/<id>`. Values are JSON. The Raft state machine keeps its own bookkeeping keys
//! (applied log id, membership) in the same tree so that they change in the
//! same atomic batch as the data they cover.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::model::{
    validate_principal_name, Bucket, Command, Grant, MetaError, NodeRecord, NodeState, Principal,
    Role, Token, UploadRecord, BOOTSTRAP_ADMIN,
};
use super::object::ObjectManifest;

const CLUSTER_ID: &[u8] = b"cluster_id";
const NODE_PREFIX: &[u8] = b"node/";
const BUCKET_PREFIX: &[u8] = b"bucket/";
const OBJECT_PREFIX: &[u8] = b"object/";
/// `audit/<seq as 8 big-endian bytes>` → entry; `audit_head` → (seq, hash).
const AUDIT_PREFIX: &[u8] = b"audit/";
const AUDIT_HEAD: &[u8] = b"audit_head";
/// `objid/<16 bytes>` → `<bucket>\0<key>`: finds an object from its shard files.
const OBJECT_ID_PREFIX: &[u8] = b"objid/";
/// `upload/<16-byte object id>` → an upload in progress.
const UPLOAD_PREFIX: &[u8] = b"upload/";
const PRINCIPAL_PREFIX: &[u8] = b"principal/";
const GRANT_PREFIX: &[u8] = b"grant/";
const TOKEN_PREFIX: &[u8] = b"token/";

/// Errors reading the tree: the disk or its contents are bad.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("metadata store: {0}")]
    Sled(#[from] sled::Error),
    /// A value could not be decoded.
    #[error("metadata store: corrupt value under {key}: {source}")]
    Corrupt {
        /// The key, lossily decoded.
        key: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Read and apply access to the metadata tree.
#[derive(Clone)]
pub struct MetaStore {
    tree: sled::Tree,
}

fn node_key(id: u64) -> Vec<u8> {
    let mut key = NODE_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn bucket_key(name: &str) -> Vec<u8> {
    let mut key = BUCKET_PREFIX.to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// `object/<bucket>\0<key>`: bucket names and keys contain no NUL, so the
/// objects of a bucket are one contiguous, key-ordered range.
fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = object_prefix(bucket);
    k.extend_from_slice(key.as_bytes());
    k
}

fn object_prefix(bucket: &str) -> Vec<u8> {
    let mut k = OBJECT_PREFIX.to_vec();
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k
}

fn object_id_key(id: &super::ObjectId) -> Vec<u8> {
    let mut k = OBJECT_ID_PREFIX.to_vec();
    k.extend_from_slice(&id.0);
    k
}

fn upload_key(id: &super::ObjectId) -> Vec<u8> {
    let mut k = UPLOAD_PREFIX.to_vec();
    k.extend_from_slice(&id.0);
    k
}

fn principal_key(name: &str) -> Vec<u8> {
    let mut key = PRINCIPAL_PREFIX.to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// `grant/<principal>\0`: principal names contain no NUL, so one
/// principal's grants are one contiguous range.
fn grants_prefix(principal: &str) -> Vec<u8> {
    let mut key = GRANT_PREFIX.to_vec();
    key.extend_from_slice(principal.as_bytes());
    key.push(0);
    key
}

fn grant_key(grant: &Grant) -> Vec<u8> {
    let mut key = grants_prefix(&grant.principal);
    key.extend_from_slice(grant.role.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(grant.bucket.as_deref().unwrap_or("").as_bytes());
    key
}

fn token_key(id: &str) -> Vec<u8> {
    let mut key = TOKEN_PREFIX.to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain structs and enums with string keys cannot fail.
    serde_json::to_vec(value).expect("metadata values serialise to JSON")
}

fn no_principal(name: &str) -> MetaError {
    MetaError::NotFound(format!(
        "no principal named {name} (create it with `tresor-node principal create {name}`)"
    ))
}

fn last_admin(name: &str) -> MetaError {
    MetaError::FailedPrecondition(format!(
        "{name} is the only principal with role admin on all buckets; \
         grant admin to another principal first, or nobody could administer the cluster"
    ))
}

impl MetaStore {
    /// Wraps the state machine's tree.
    pub fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    /// The underlying tree (for the state machine's bookkeeping keys).
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.tree.get(key)? {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

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
    pub fn object_by_id(&self, id: &super::ObjectId) -> Result<Option<ObjectManifest>, StoreError> {
        let Some(name) = self.tree.get(object_id_key(id))? else {
            return Ok(None);
        };
        let mut full = OBJECT_PREFIX.to_vec();
        full.extend_from_slice(&name);
        self.get(&full)
    }

    /// The upload in progress with this object id, if any.
    pub fn upload(&self, id: &super::ObjectId) -> Result<Option<UploadRecord>, StoreError> {
        self.get(&upload_key(id))
    }

    /// Up to `limit` uploads in progress, in object-id order, after the
    /// object id `after` (a resumable cursor for paged walks).
    pub fn uploads(
        &self,
        after: Option<&super::ObjectId>,
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
            .unwrap_or_else(|| (0, super::audit::GENESIS_HASH.to_string())))
    }

    /// Audit entries from `from_seq` on, in order, at most `limit`.
    pub fn audit_entries(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<super::audit::AuditEntry>, StoreError> {
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
    fn other_cluster_admin(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .grants()?
            .iter()
            .any(|g| g.principal != name && g.role == Role::Admin && g.bucket.is_none()))
    }

    /// Every object manifest of every bucket (for repair and GC scans).
    pub fn all_objects(&self) -> Result<Vec<ObjectManifest>, StoreError> {
        self.scan(OBJECT_PREFIX)
    }

    /// Adds `records` to the hash-chained audit log, after its head.
    fn append_audit<'a>(
        &self,
        records: impl Iterator<Item = &'a super::audit::AuditRecord>,
        batch: &mut sled::Batch,
    ) -> Result<(), StoreError> {
        let (mut seq, mut prev) = self.audit_head()?;
        let mut appended = false;
        for record in records {
            seq += 1;
            let entry = super::audit::chain(seq, record.clone(), &prev);
            let mut k = AUDIT_PREFIX.to_vec();
            k.extend_from_slice(&seq.to_be_bytes());
            prev = entry.hash.clone();
            batch.insert(k, encode(&entry));
            appended = true;
        }
        if appended {
            batch.insert(AUDIT_HEAD, encode(&(seq, prev)));
        }
        Ok(())
    }

    /// Checks `command` against the current state and, if it is allowed,
    /// adds its writes to `batch`. Deterministic: every replica reaches the
    /// same decision. A refused command adds nothing.
    pub fn apply(
        &self,
        command: &Command,
        batch: &mut sled::Batch,
    ) -> Result<Result<(), MetaError>, StoreError> {
        match command {
            Command::InitCluster { cluster_id, node } => {
                if let Some(existing) = self.cluster_id()? {
                    return Ok(Err(MetaError::FailedPrecondition(format!(
                        "cluster {existing} is already initialised"
                    ))));
                }
                batch.insert(CLUSTER_ID, encode(cluster_id));
                batch.insert(node_key(node.id), encode(node));
                // Every cluster starts with an administrator, in the same
                // entry, so there is never a cluster nobody may operate.
                let admin = Grant {
                    principal: BOOTSTRAP_ADMIN.to_string(),
                    role: Role::Admin,
                    bucket: None,
                };
                batch.insert(
                    principal_key(BOOTSTRAP_ADMIN),
                    encode(&Principal {
                        name: BOOTSTRAP_ADMIN.to_string(),
                        created_ms: node.added_ms,
                    }),
                );
                batch.insert(grant_key(&admin), encode(&admin));
            }
            Command::AddNode { node } => {
                if let Some(existing) = self.node(node.id)? {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "node id {} is already in use{} (ids are never reused)",
                        node.id,
                        if existing.state == NodeState::Removed {
                            " by a removed node"
                        } else {
                            ""
                        }
                    ))));
                }
                if let Some(other) = self
                    .nodes()?
                    .into_iter()
                    .find(|n| n.state != NodeState::Removed && n.addr == node.addr)
                {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "address {} already belongs to node {}",
                        node.addr, other.id
                    ))));
                }
                batch.insert(node_key(node.id), encode(node));
            }
            Command::RemoveNode { id } => {
                let Some(mut node) = self.node(*id)? else {
                    return Ok(Err(MetaError::NotFound(format!("no node with id {id}"))));
                };
                node.state = NodeState::Removed;
                batch.insert(node_key(*id), encode(&node));
            }
            Command::CreateBucket { bucket } => {
                if self.bucket(&bucket.name)?.is_some() {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "bucket {} already exists",
                        bucket.name
                    ))));
                }
                batch.insert(bucket_key(&bucket.name), encode(bucket));
            }
            Command::BeginUpload { upload } => {
                if self.tree.contains_key(upload_key(&upload.object_id))?
                    || self.tree.contains_key(object_id_key(&upload.object_id))?
                {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "object id {} is already in use",
                        upload.object_id
                    ))));
                }
                batch.insert(upload_key(&upload.object_id), encode(upload));
            }
            Command::TouchUpload {
                object_id,
                touched_ms,
            } => {
                let Some(mut upload) = self.upload(object_id)? else {
                    return Ok(Err(MetaError::FailedPrecondition(format!(
                        "upload {object_id} was aborted or expired"
                    ))));
                };
                upload.touched_ms = upload.touched_ms.max(*touched_ms);
                batch.insert(upload_key(object_id), encode(&upload));
            }
            Command::AbortUpload { object_id } => {
                if self.tree.contains_key(upload_key(object_id))? {
                    batch.remove(upload_key(object_id));
                } else if self.tree.contains_key(object_id_key(object_id))? {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "upload {object_id} was committed"
                    ))));
                }
            }
            Command::CreateObject { manifest, audit } => {
                // The same object again: a proposal retried after its first
                // attempt committed. Say it succeeded, change nothing.
                if let Some(name) = self.tree.get(object_id_key(&manifest.object_id))? {
                    let mut ours = manifest.bucket.as_bytes().to_vec();
                    ours.push(0);
                    ours.extend_from_slice(manifest.key.as_bytes());
                    if *name == *ours {
                        return Ok(Ok(()));
                    }
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "object id {} is already in use",
                        manifest.object_id
                    ))));
                }
                if self.bucket(&manifest.bucket)?.is_none() {
                    return Ok(Err(MetaError::NotFound(format!(
                        "no bucket named {}",
                        manifest.bucket
                    ))));
                }
                let key = object_key(&manifest.bucket, &manifest.key);
                if self.tree.contains_key(&key)? {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "{}/{} already exists (objects are immutable)",
                        manifest.bucket, manifest.key
                    ))));
                }
                // Only a live upload may commit: once aborted (by its
                // coordinator or by expiry) its shards may be deleted.
                if !self.tree.contains_key(upload_key(&manifest.object_id))? {
                    return Ok(Err(MetaError::FailedPrecondition(format!(
                        "upload {} of {}/{} was aborted or expired; nothing was stored",
                        manifest.object_id, manifest.bucket, manifest.key
                    ))));
                }
                let mut name = manifest.bucket.as_bytes().to_vec();
                name.push(0);
                name.extend_from_slice(manifest.key.as_bytes());
                batch.remove(upload_key(&manifest.object_id));
                batch.insert(object_id_key(&manifest.object_id), name);
                batch.insert(key, encode(manifest));
                self.append_audit(audit.iter(), batch)?;
            }
            Command::SetNodeState {
                id,
                state,
                since_ms,
            } => {
                let Some(mut node) = self.node(*id)? else {
                    return Ok(Err(MetaError::NotFound(format!("no node with id {id}"))));
                };
                if node.state == NodeState::Removed || *state == NodeState::Removed {
                    return Ok(Err(MetaError::FailedPrecondition(format!(
                        "node {id}: a removed node's state cannot change"
                    ))));
                }
                if node.state != *state {
                    node.state = *state;
                    node.state_since_ms = *since_ms;
                    batch.insert(node_key(*id), encode(&node));
                }
            }
            Command::UpdateShards {
                bucket,
                key,
                object_id,
                segment,
                changes,
            } => {
                let k = object_key(bucket, key);
                let Some(mut manifest) = self.get::<ObjectManifest>(&k)? else {
                    return Ok(Err(MetaError::NotFound(format!(
                        "no object {bucket}/{key}"
                    ))));
                };
                if manifest.object_id != *object_id {
                    return Ok(Err(MetaError::FailedPrecondition(format!(
                        "{bucket}/{key} is another object now"
                    ))));
                }
                let Some(seg) = manifest.segments.get_mut(*segment as usize) else {
                    return Ok(Err(MetaError::InvalidArgument(format!(
                        "no segment {segment}"
                    ))));
                };
                for (index, expected, _) in changes {
                    match seg.shards.get(*index as usize) {
                        Some(current) if current == expected => {}
                        _ => {
                            return Ok(Err(MetaError::FailedPrecondition(format!(
                                "shard {index} of segment {segment} of {bucket}/{key} changed meanwhile"
                            ))))
                        }
                    }
                }
                for (index, _, new) in changes {
                    seg.shards[*index as usize] = new.clone();
                }
                batch.insert(k, encode(&manifest));
            }
            Command::AppendAudit { records } => self.append_audit(records.iter(), batch)?,
            Command::RewrapKeys { rewraps } => {
                for r in rewraps {
                    let k = object_key(&r.bucket, &r.key);
                    let Some(mut manifest) = self.get::<ObjectManifest>(&k)? else {
                        continue;
                    };
                    let Some(enc) = manifest.encryption.as_mut() else {
                        continue;
                    };
                    if manifest.object_id != r.object_id || enc.key.key_id != r.from_key_id {
                        continue;
                    }
                    enc.key = r.wrapped.clone();
                    batch.insert(k, encode(&manifest));
                }
            }
            Command::DeleteObject { bucket, key, audit } => {
                let k = object_key(bucket, key);
                // The manifest holds the only copy of the wrapped data key:
                // removing it is what makes the shards unreadable.
                let Some(manifest) = self.get::<ObjectManifest>(&k)? else {
                    return Ok(Err(MetaError::NotFound(format!(
                        "no object {bucket}/{key}"
                    ))));
                };
                batch.remove(object_id_key(&manifest.object_id));
                batch.remove(k);
                self.append_audit(audit.iter(), batch)?;
            }
            Command::CreatePrincipal { principal } => {
                if let Err(e) = validate_principal_name(&principal.name) {
                    return Ok(Err(e));
                }
                if self.principal(&principal.name)?.is_some() {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "principal {} already exists",
                        principal.name
                    ))));
                }
                batch.insert(principal_key(&principal.name), encode(principal));
            }
            Command::DeletePrincipal { name } => {
                if self.principal(name)?.is_none() {
                    return Ok(Err(no_principal(name)));
                }
                let grants = self.grants_of(name)?;
                if grants
                    .iter()
                    .any(|g| g.role == Role::Admin && g.bucket.is_none())
                    && !self.other_cluster_admin(name)?
                {
                    return Ok(Err(last_admin(name)));
                }
                for g in &grants {
                    batch.remove(grant_key(g));
                }
                for t in self.tokens()?.iter().filter(|t| t.principal == *name) {
                    batch.remove(token_key(&t.id));
                }
                batch.remove(principal_key(name));
            }
            Command::Grant { grant } => {
                if self.principal(&grant.principal)?.is_none() {
                    return Ok(Err(no_principal(&grant.principal)));
                }
                if let Some(bucket) = &grant.bucket {
                    if self.bucket(bucket)?.is_none() {
                        return Ok(Err(MetaError::NotFound(format!(
                            "no bucket named {bucket} (a grant can only name an existing bucket)"
                        ))));
                    }
                }
                batch.insert(grant_key(grant), encode(grant));
            }
            Command::Revoke { grant } => {
                if !self.tree.contains_key(grant_key(grant))? {
                    if self.principal(&grant.principal)?.is_none() {
                        return Ok(Err(no_principal(&grant.principal)));
                    }
                    return Ok(Err(MetaError::NotFound(format!(
                        "{} does not hold role {}{}",
                        grant.principal,
                        grant.role,
                        match &grant.bucket {
                            Some(b) => format!(" on bucket {b}"),
                            None => " on all buckets".to_string(),
                        }
                    ))));
                }
                if grant.role == Role::Admin
                    && grant.bucket.is_none()
                    && !self.other_cluster_admin(&grant.principal)?
                {
                    return Ok(Err(last_admin(&grant.principal)));
                }
                batch.remove(grant_key(grant));
            }
            Command::CreateToken { token } => {
                if !is_lower_hex(&token.id, 16) || !is_lower_hex(&token.secret_sha256, 64) {
                    return Ok(Err(MetaError::InvalidArgument(
                        "a token needs a 16-digit hex id and a 64-digit hex secret hash".into(),
                    )));
                }
                if self.principal(&token.principal)?.is_none() {
                    return Ok(Err(no_principal(&token.principal)));
                }
                if self.token(&token.id)?.is_some() {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "token id {} is in use",
                        token.id
                    ))));
                }
                batch.insert(token_key(&token.id), encode(token));
            }
            Command::RevokeToken { id } => {
                if self.token(id)?.is_none() {
                    return Ok(Err(MetaError::NotFound(format!(
                        "no token with id {id} (revoked already?)"
                    ))));
                }
                batch.remove(token_key(id));
            }
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, MetaStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("sled");
        let tree = db.open_tree("sm").expect("tree");
        (dir, MetaStore::new(tree))
    }

    fn run(store: &MetaStore, command: Command) -> Result<(), MetaError> {
        let mut batch = sled::Batch::default();
        let result = store.apply(&command, &mut batch).expect("store");
        store.tree().apply_batch(batch).expect("batch");
        result
    }

    fn node(id: u64, addr: &str) -> NodeRecord {
        NodeRecord {
            id,
            addr: addr.into(),
            zone: "dc1".into(),
            capacity: 1,
            state: NodeState::Active,
            added_ms: 0,
            state_since_ms: 0,
            incarnation: String::new(),
        }
    }

    fn audit(action: &str, key: &str) -> super::super::audit::AuditRecord {
        super::super::audit::AuditRecord {
            time_ms: 1,
            node: 1,
            principal: "cam-7".into(),
            action: action.into(),
            bucket: "footage".into(),
            key: key.into(),
            object_sha256: "ab".into(),
            outcome: "ok".into(),
        }
    }

    #[test]
    fn an_object_and_its_audit_record_commit_together() {
        let (_d, s) = store();
        let bucket = Bucket {
            name: "footage".into(),
            data: 4,
            parity: 2,
            created_ms: 0,
        };
        run(&s, Command::CreateBucket { bucket }).expect("bucket");
        let id = super::super::ObjectId([7; 16]);
        let upload = UploadRecord {
            object_id: id,
            bucket: "footage".into(),
            key: "k".into(),
            coordinator: 1,
            started_ms: 0,
            touched_ms: 0,
        };
        run(&s, Command::BeginUpload { upload }).expect("upload");
        let manifest = ObjectManifest {
            bucket: "footage".into(),
            key: "k".into(),
            object_id: id,
            size: 0,
            sha256: "ab".into(),
            content_type: String::new(),
            metadata: Default::default(),
            data: 4,
            parity: 2,
            block_size: 4096,
            segment_stripes: 1,
            created_ms: 0,
            segments: Vec::new(),
            encryption: None,
        };
        let create = Command::CreateObject {
            manifest: Box::new(manifest.clone()),
            audit: Some(audit("put", "k")),
        };
        run(&s, create.clone()).expect("create");
        assert_eq!(
            s.audit_head().expect("head").0,
            1,
            "one record with the object"
        );
        // A retried proposal changes nothing, its record included.
        run(&s, create).expect("retry");
        assert_eq!(s.audit_head().expect("head").0, 1, "a retry recorded twice");
        // A refused commit records nothing (the caller records the refusal).
        let other = Command::CreateObject {
            manifest: Box::new(ObjectManifest {
                object_id: super::super::ObjectId([8; 16]),
                ..manifest
            }),
            audit: Some(audit("put", "k")),
        };
        assert!(run(&s, other).is_err());
        assert_eq!(
            s.audit_head().expect("head").0,
            1,
            "a refused put was recorded as done"
        );
        let delete = Command::DeleteObject {
            bucket: "footage".into(),
            key: "k".into(),
            audit: Some(audit("delete", "k")),
        };
        run(&s, delete).expect("delete");
        let entries = s.audit_entries(0, 10).expect("entries");
        let actions: Vec<_> = entries.iter().map(|e| e.record.action.as_str()).collect();
        assert_eq!(actions, ["put", "delete"]);
        assert!(s.object("footage", "k").expect("read").is_none());
    }

    #[test]
    fn ids_are_never_reused_and_refusals_change_nothing() {
        let (_d, s) = store();
        let init = Command::InitCluster {
            cluster_id: "c".into(),
            node: node(1, "a:1"),
        };
        assert_eq!(run(&s, init.clone()), Ok(()));
        assert!(matches!(
            run(&s, init),
            Err(MetaError::FailedPrecondition(_))
        ));
        assert_eq!(
            run(
                &s,
                Command::AddNode {
                    node: node(2, "b:1")
                }
            ),
            Ok(())
        );
        assert!(matches!(
            run(
                &s,
                Command::AddNode {
                    node: node(2, "c:1")
                }
            ),
            Err(MetaError::AlreadyExists(_))
        ));
        assert!(matches!(
            run(
                &s,
                Command::AddNode {
                    node: node(3, "b:1")
                }
            ),
            Err(MetaError::AlreadyExists(_))
        ));
        assert_eq!(run(&s, Command::RemoveNode { id: 2 }), Ok(()));
        assert!(matches!(
            run(
                &s,
                Command::AddNode {
                    node: node(2, "d:1")
                }
            ),
            Err(MetaError::AlreadyExists(_))
        ));
        assert!(matches!(
            run(&s, Command::RemoveNode { id: 9 }),
            Err(MetaError::NotFound(_))
        ));
        let nodes = s.nodes().expect("nodes");
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].addr, "b:1");
        assert_eq!(nodes[1].state, NodeState::Removed);
        // The removed node's address may be given to a new node.
        assert_eq!(
            run(
                &s,
                Command::AddNode {
                    node: node(3, "b:1")
                }
            ),
            Ok(())
        );
    }

    #[test]
    fn duplicate_bucket_is_refused() {
        let (_d, s) = store();
        let bucket = Bucket {
            name: "cams".into(),
            data: 4,
            parity: 2,
            created_ms: 5,
        };
        assert_eq!(
            run(
                &s,
                Command::CreateBucket {
                    bucket: bucket.clone()
                }
            ),
            Ok(())
        );
        let again = Bucket {
            data: 2,
            ..bucket.clone()
        };
        assert!(matches!(
            run(&s, Command::CreateBucket { bucket: again }),
            Err(MetaError::AlreadyExists(_))
        ));
        assert_eq!(s.buckets().expect("buckets"), vec![bucket]);
    }

    fn grant(principal: &str, role: Role, bucket: Option<&str>) -> Grant {
        Grant {
            principal: principal.into(),
            role,
            bucket: bucket.map(Into::into),
        }
    }

    fn token(id: &str, principal: &str) -> Token {
        Token {
            id: id.into(),
            principal: principal.into(),
            secret_sha256: "ab".repeat(32),
            created_ms: 9,
        }
    }

    fn create_principal(s: &MetaStore, name: &str) -> Result<(), MetaError> {
        run(
            s,
            Command::CreatePrincipal {
                principal: Principal {
                    name: name.into(),
                    created_ms: 7,
                },
            },
        )
    }

    fn initialised() -> (tempfile::TempDir, MetaStore) {
        let (d, s) = store();
        let init = Command::InitCluster {
            cluster_id: "c".into(),
            node: node(1, "a:1"),
        };
        assert_eq!(run(&s, init), Ok(()));
        let bucket = Bucket {
            name: "cams".into(),
            data: 2,
            parity: 1,
            created_ms: 1,
        };
        assert_eq!(run(&s, Command::CreateBucket { bucket }), Ok(()));
        (d, s)
    }

    #[test]
    fn init_creates_the_admin_principal() {
        let (_d, s) = initialised();
        let admin = s.principal(BOOTSTRAP_ADMIN).expect("read").expect("admin");
        assert_eq!(admin.name, "admin");
        assert_eq!(
            s.grants_of("admin").expect("grants"),
            vec![grant("admin", Role::Admin, None)]
        );
    }

    #[test]
    fn principals_grants_and_tokens_round_trip() {
        let (_d, s) = initialised();
        assert_eq!(create_principal(&s, "alice"), Ok(()));
        assert!(matches!(
            create_principal(&s, "alice"),
            Err(MetaError::AlreadyExists(_))
        ));
        assert!(matches!(
            create_principal(&s, "Bad Name"),
            Err(MetaError::InvalidArgument(_))
        ));
        // A prefix of another name shares no grants with it.
        assert_eq!(create_principal(&s, "alic"), Ok(()));
        let names: Vec<String> = s
            .principals()
            .expect("principals")
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, vec!["admin", "alic", "alice"]);

        let scoped = grant("alice", Role::Read, Some("cams"));
        let wide = grant("alice", Role::Ingest, None);
        for g in [&scoped, &wide, &scoped] {
            assert_eq!(run(&s, Command::Grant { grant: g.clone() }), Ok(()));
        }
        let mut got = s.grants_of("alice").expect("grants");
        got.sort();
        let mut want = vec![scoped.clone(), wide.clone()];
        want.sort();
        assert_eq!(got, want);
        assert_eq!(s.grants_of("alic").expect("grants"), vec![]);
        // Unknown principals and buckets are refused, naming what is missing.
        match run(
            &s,
            Command::Grant {
                grant: grant("bob", Role::Read, None),
            },
        ) {
            Err(MetaError::NotFound(m)) => assert!(m.contains("no principal named bob"), "{m}"),
            other => panic!("{other:?}"),
        }
        match run(
            &s,
            Command::Grant {
                grant: grant("alice", Role::Read, Some("nope")),
            },
        ) {
            Err(MetaError::NotFound(m)) => assert!(m.contains("no bucket named nope"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            run(
                &s,
                Command::Revoke {
                    grant: scoped.clone()
                }
            ),
            Ok(())
        );
        assert!(matches!(
            run(&s, Command::Revoke { grant: scoped }),
            Err(MetaError::NotFound(_))
        ));
        assert_eq!(s.grants_of("alice").expect("grants"), vec![wide]);

        let t = token("00112233445566ff", "alice");
        assert_eq!(run(&s, Command::CreateToken { token: t.clone() }), Ok(()));
        assert_eq!(s.token(&t.id).expect("read"), Some(t.clone()));
        assert!(matches!(
            run(&s, Command::CreateToken { token: t.clone() }),
            Err(MetaError::AlreadyExists(_))
        ));
        assert!(matches!(
            run(
                &s,
                Command::CreateToken {
                    token: token("0011223344556677", "bob")
                }
            ),
            Err(MetaError::NotFound(_))
        ));
        assert!(matches!(
            run(
                &s,
                Command::CreateToken {
                    token: token("not-hex", "alice")
                }
            ),
            Err(MetaError::InvalidArgument(_))
        ));
        assert_eq!(run(&s, Command::RevokeToken { id: t.id.clone() }), Ok(()));
        assert_eq!(s.token(&t.id).expect("read"), None);
        assert!(matches!(
            run(&s, Command::RevokeToken { id: t.id }),
            Err(MetaError::NotFound(_))
        ));
    }

    #[test]
    fn the_last_cluster_admin_stays() {
        let (_d, s) = initialised();
        let admin = grant("admin", Role::Admin, None);
        assert!(matches!(
            run(
                &s,
                Command::Revoke {
                    grant: admin.clone()
                }
            ),
            Err(MetaError::FailedPrecondition(_))
        ));
        assert!(matches!(
            run(
                &s,
                Command::DeletePrincipal {
                    name: "admin".into()
                }
            ),
            Err(MetaError::FailedPrecondition(_))
        ));
        // A bucket-scoped admin does not count.
        assert_eq!(create_principal(&s, "ops"), Ok(()));
        let scoped = grant("ops", Role::Admin, Some("cams"));
        assert_eq!(run(&s, Command::Grant { grant: scoped }), Ok(()));
        assert!(run(
            &s,
            Command::Revoke {
                grant: admin.clone()
            }
        )
        .is_err());
        let wide = grant("ops", Role::Admin, None);
        assert_eq!(run(&s, Command::Grant { grant: wide }), Ok(()));
        assert_eq!(run(&s, Command::Revoke { grant: admin }), Ok(()));
    }

    #[test]
    fn deleting_a_principal_takes_its_grants_and_tokens() {
        let (_d, s) = initialised();
        for name in ["alice", "bob"] {
            assert_eq!(create_principal(&s, name), Ok(()));
            let g = grant(name, Role::Read, None);
            assert_eq!(run(&s, Command::Grant { grant: g }), Ok(()));
        }
        let ta = token("000000000000000a", "alice");
        let tb = token("000000000000000b", "bob");
        for t in [&ta, &tb] {
            assert_eq!(run(&s, Command::CreateToken { token: t.clone() }), Ok(()));
        }
        assert_eq!(
            run(
                &s,
                Command::DeletePrincipal {
                    name: "alice".into()
                }
            ),
            Ok(())
        );
        assert_eq!(s.principal("alice").expect("read"), None);
        assert_eq!(s.grants_of("alice").expect("grants"), vec![]);
        assert_eq!(s.tokens().expect("tokens"), vec![tb]);
        assert_eq!(s.grants_of("bob").expect("grants").len(), 1);
        assert!(matches!(
            run(
                &s,
                Command::DeletePrincipal {
                    name: "alice".into()
                }
            ),
            Err(MetaError::NotFound(_))
        ));
    }
}
