//! An in-process [`ShardPeers`] for tests: each node is a real
//! [`ShardStore`] in a temporary directory (so digests, checks and
//! corruption behave exactly as on a node), and any node can be told to
//! fail in a chosen way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::{PeerError, ShardPeers, ShardSink};
use crate::crypto::WrappedEpochKey;
use crate::meta::{Digest, ObjectId};
use crate::shards::{ShardError, ShardId, ShardStore, ShardWriter};

/// How a node misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every call fails as unreachable.
    Down,
    /// A file being written breaks off after this many blocks (the node
    /// died mid-stream): the block after them fails, nothing is kept.
    DiesAfterBlocks(u32),
    /// A file being written takes every block, then the node dies before
    /// the commit: nothing is kept.
    DiesBeforeCommit,
}

/// Nodes `1..=n`, each a shard store of its own.
pub struct LocalPeers {
    _dirs: Vec<tempfile::TempDir>,
    stores: HashMap<u64, Arc<ShardStore>>,
    faults: Arc<Mutex<HashMap<u64, Fault>>>,
    epoch_keys: Mutex<HashMap<(u64, u64), WrappedEpochKey>>,
}

impl LocalPeers {
    /// `n` healthy nodes, numbered from 1.
    pub fn new(n: u64) -> Self {
        let mut dirs = Vec::new();
        let mut stores = HashMap::new();
        for node in 1..=n {
            let dir = tempfile::tempdir().expect("temporary directory");
            let store = ShardStore::open(dir.path()).expect("shard store");
            stores.insert(node, Arc::new(store));
            dirs.push(dir);
        }
        Self {
            _dirs: dirs,
            stores,
            faults: Arc::default(),
            epoch_keys: Mutex::default(),
        }
    }

    /// The store of `node`, to look at or damage its files.
    pub fn store(&self, node: u64) -> &ShardStore {
        &self.stores[&node]
    }

    /// From now on `node` fails as `fault` says.
    pub fn fail(&self, node: u64, fault: Fault) {
        self.faults.lock().expect("fault table").insert(node, fault);
    }

    /// From now on `node` works again.
    pub fn heal(&self, node: u64) {
        self.faults.lock().expect("fault table").remove(&node);
    }

    fn fault(&self, node: u64) -> Option<Fault> {
        self.faults.lock().expect("fault table").get(&node).copied()
    }

    /// The store of `node`, unless it is down.
    fn reach(&self, node: u64) -> Result<Arc<ShardStore>, PeerError> {
        if self.fault(node) == Some(Fault::Down) {
            return Err(PeerError::Unreachable {
                node,
                reason: "node is down".into(),
            });
        }
        self.stores
            .get(&node)
            .cloned()
            .ok_or_else(|| PeerError::Unreachable {
                node,
                reason: "no such node".into(),
            })
    }
}

/// What a holder's store error means at the boundary, as the Shards
/// service maps it: a file that cannot be read is damage too.
fn peer_error(node: u64, e: ShardError) -> PeerError {
    match e {
        ShardError::NotFound(_) => PeerError::NotFound { node },
        ShardError::Corrupt { .. } | ShardError::Io(_) => PeerError::Corrupt {
            node,
            reason: e.to_string(),
        },
        other => PeerError::Refused {
            node,
            reason: other.to_string(),
        },
    }
}

#[async_trait]
impl ShardPeers for LocalPeers {
    async fn open(
        &self,
        node: u64,
        shard: ShardId,
        block_size: u32,
        replace: bool,
    ) -> Result<Box<dyn ShardSink>, PeerError> {
        let store = self.reach(node)?;
        let writer = store
            .create(shard, block_size)
            .map_err(|e| peer_error(node, e))?;
        Ok(Box::new(LocalSink {
            node,
            writer: Some(if replace { writer.replacing() } else { writer }),
            blocks: 0,
            faults: self.faults.clone(),
        }))
    }

    async fn read_block(
        &self,
        node: u64,
        shard: ShardId,
        block: u32,
        digest: Digest,
    ) -> Result<Bytes, PeerError> {
        let store = self.reach(node)?;
        let data = store
            .open_reader(&shard, &digest)
            .and_then(|r| r.read_block(block))
            .map_err(|e| peer_error(node, e))?;
        Ok(Bytes::from(data))
    }

    async fn delete(&self, node: u64, shard: ShardId) -> Result<bool, PeerError> {
        let store = self.reach(node)?;
        store.delete(&shard).map_err(|e| peer_error(node, e.into()))
    }

    async fn delete_object(&self, node: u64, object: ObjectId) -> Result<u32, PeerError> {
        let store = self.reach(node)?;
        store
            .delete_object(&object)
            .map(|n| n as u32)
            .map_err(|e| peer_error(node, e.into()))
    }

    async fn stat(&self, node: u64, shard: ShardId) -> Result<Option<u64>, PeerError> {
        let store = self.reach(node)?;
        store.stat(&shard).map_err(|e| peer_error(node, e.into()))
    }

    async fn put_epoch_key(&self, node: u64, key: WrappedEpochKey) -> Result<bool, PeerError> {
        self.reach(node)?;
        let mut keys = self.epoch_keys.lock().expect("epoch keys");
        Ok(keys.insert((node, key.id), key.clone()).as_ref() != Some(&key))
    }

    async fn get_epoch_key(
        &self,
        node: u64,
        epoch: u64,
    ) -> Result<Option<WrappedEpochKey>, PeerError> {
        self.reach(node)?;
        let keys = self.epoch_keys.lock().expect("epoch keys");
        Ok(keys.get(&(node, epoch)).cloned())
    }
}

/// A file being written into a local store; dropping it unfinished
/// removes its temporary file, as a broken stream does on a node.
struct LocalSink {
    node: u64,
    writer: Option<ShardWriter>,
    blocks: u32,
    faults: Arc<Mutex<HashMap<u64, Fault>>>,
}

impl LocalSink {
    fn fault(&self) -> Option<Fault> {
        self.faults
            .lock()
            .expect("fault table")
            .get(&self.node)
            .copied()
    }

    /// The node died: the file is abandoned.
    fn die(&mut self) -> PeerError {
        self.writer = None;
        PeerError::Unreachable {
            node: self.node,
            reason: "node died mid-stream".into(),
        }
    }
}

#[async_trait]
impl ShardSink for LocalSink {
    async fn send(&mut self, block: Bytes) -> Result<(), PeerError> {
        match self.fault() {
            Some(Fault::Down) => return Err(self.die()),
            Some(Fault::DiesAfterBlocks(n)) if self.blocks >= n => return Err(self.die()),
            _ => {}
        }
        let node = self.node;
        let writer = self.writer.as_mut().ok_or_else(|| PeerError::Unreachable {
            node,
            reason: "stream closed".into(),
        })?;
        writer
            .append_block(&block)
            .map_err(|e| peer_error(node, e))?;
        self.blocks += 1;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<Digest, PeerError> {
        if matches!(
            self.fault(),
            Some(Fault::Down | Fault::DiesBeforeCommit | Fault::DiesAfterBlocks(_))
        ) {
            return Err(self.die());
        }
        let node = self.node;
        let writer = self.writer.take().ok_or_else(|| PeerError::Unreachable {
            node,
            reason: "stream closed".into(),
        })?;
        writer.commit().map_err(|e| peer_error(node, e))
    }
}
