//! The metadata's sled tree: reads for the API, deterministic writes for the
//! state machine.
//!
//! Keys: `cluster_id`; `node/<id as 8 big-endian bytes>`; `bucket/<name>`.
//! Values are JSON. The Raft state machine keeps its own bookkeeping keys
//! (applied log id, membership) in the same tree so that they change in the
//! same atomic batch as the data they cover.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::model::{Bucket, Command, MetaError, NodeRecord, NodeState};
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

    /// Every object manifest of every bucket (for repair and GC scans).
    pub fn all_objects(&self) -> Result<Vec<ObjectManifest>, StoreError> {
        self.scan(OBJECT_PREFIX)
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
            Command::CreateObject { manifest } => {
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
                let mut name = manifest.bucket.as_bytes().to_vec();
                name.push(0);
                name.extend_from_slice(manifest.key.as_bytes());
                batch.insert(object_id_key(&manifest.object_id), name);
                batch.insert(key, encode(manifest));
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
            Command::AppendAudit { records } => {
                let (mut seq, mut prev) = self.audit_head()?;
                for record in records {
                    seq += 1;
                    let entry = super::audit::chain(seq, record.clone(), &prev);
                    let mut k = AUDIT_PREFIX.to_vec();
                    k.extend_from_slice(&seq.to_be_bytes());
                    prev = entry.hash.clone();
                    batch.insert(k, encode(&entry));
                }
                batch.insert(AUDIT_HEAD, encode(&(seq, prev)));
            }
            Command::DeleteObject { bucket, key } => {
                let k = object_key(bucket, key);
                if !self.tree.contains_key(&k)? {
                    return Ok(Err(MetaError::NotFound(format!(
                        "no object {bucket}/{key}"
                    ))));
                }
                batch.remove(k);
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
}
