//! The Raft state machine over the metadata tree.
//!
//! Each log entry is applied as one sled batch that also moves the
//! last-applied log id (and, for membership entries, the membership), so the
//! data and the index that covers it can never disagree. Batches are flushed
//! before `apply` returns.
//!
//! Snapshots are files (`snapshots.rs`): the tree dumped pair by pair as
//! it was at one applied index while applies go on (`shadow.rs`), sent by
//! openraft in chunks of [`super::SNAPSHOT_CHUNK_BYTES`], installed
//! by loading a fresh tree and swapping it in. At no point is the whole
//! state in memory.

mod shadow;
mod snapshots;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, Snapshot, SnapshotMeta, StorageIOError, StoredMembership,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use snapshots::SnapshotBuilder;

use super::{NodeId, StorageError, TypeConfig};
use crate::meta::{CommandResult, MetaStore, Writes};
use shadow::Shadow;

const APPLIED: &[u8] = b"raft/applied";
const MEMBERSHIP: &[u8] = b"raft/membership";
/// In the snapshot tree: the current snapshot's meta and file name.
const SNAPSHOT_META: &[u8] = b"meta";
const SNAPSHOT_SEQ: &[u8] = b"seq";
/// In the snapshot tree: the name of the tree holding the state.
const ACTIVE_TREE: &[u8] = b"active_tree";
/// The state's tree until a snapshot is installed; then `sm-<n>`.
const FIRST_TREE: &str = "sm";
/// Keys of the state tree a snapshot's meta carries, not its pairs.
const BOOKKEEPING: &[&[u8]] = &[APPLIED, MEMBERSHIP];

type Membership = StoredMembership<NodeId, openraft::BasicNode>;

/// The state machine: the metadata tree plus the current snapshot.
#[derive(Clone)]
pub struct StateMachine {
    db: sled::Db,
    meta: MetaStore,
    snapshots: sled::Tree,
    /// Where snapshot files live.
    dir: PathBuf,
    /// The file a snapshot being received is written to.
    receiving: Arc<Mutex<Option<PathBuf>>>,
    /// Earlier values of the keys changed while a snapshot is dumped.
    shadow: Arc<Shadow>,
    /// Held by a snapshot build from its start until its snapshot is
    /// current: an install waits for it rather than swap the tree under it.
    building: Arc<tokio::sync::Mutex<()>>,
}

fn sm_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::read_state_machine(&e),
    }
}

fn sm_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::write_state_machine(&e),
    }
}

fn snap_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::write_snapshot(None, &e),
    }
}

fn to_stored<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    Ok(crate::meta::codec::encode(value))
}

fn from_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    crate::meta::codec::decode(bytes).map_err(sm_read)
}

/// The current snapshot: its meta and the name of its file in the
/// snapshot directory.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    file: String,
}

/// Opening the state machine failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// sled failed.
    #[error("metadata store: {0}")]
    Sled(#[from] sled::Error),
    /// The snapshot directory could not be prepared.
    #[error("snapshot directory: {0}")]
    Dir(#[from] std::io::Error),
}

/// The name of the tree holding the state, as the snapshot tree records it.
fn active_tree_name(snapshots: &sled::Tree) -> Result<String, sled::Error> {
    Ok(match snapshots.get(ACTIVE_TREE)? {
        Some(name) => String::from_utf8_lossy(&name).into_owned(),
        None => FIRST_TREE.to_string(),
    })
}

/// The tree holding the replicated state in a stopped node's metadata
/// database (for offline inspection: forensics, and tests that alter a
/// stored value).
pub fn state_tree(db: &sled::Db) -> Result<sled::Tree, sled::Error> {
    let name = active_tree_name(&db.open_tree("sm_snapshot")?)?;
    db.open_tree(name.as_bytes())
}

impl StateMachine {
    /// Opens the state machine's trees in `db`, with snapshot files under
    /// `dir`. Leftovers of a snapshot install or build that did not finish
    /// (a tree being loaded, a file being written) are removed.
    pub fn open(db: &sled::Db, dir: &Path) -> Result<Self, OpenError> {
        std::fs::create_dir_all(dir)?;
        let snapshots = db.open_tree("sm_snapshot")?;
        let active = active_tree_name(&snapshots)?;
        for name in db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            if (name == FIRST_TREE || name.starts_with("sm-")) && name != active {
                db.drop_tree(name.as_bytes())?;
            }
        }
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(Self {
            db: db.clone(),
            meta: MetaStore::new(db.open_tree(active.as_bytes())?),
            snapshots,
            dir: dir.to_path_buf(),
            receiving: Arc::default(),
            shadow: Shadow::open(db, BOOKKEEPING)?,
            building: Arc::default(),
        })
    }

    /// Read access to the metadata for the API.
    pub fn meta(&self) -> MetaStore {
        self.meta.clone()
    }

    fn tree(&self) -> sled::Tree {
        self.meta.tree()
    }

    fn read<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.tree().get(key).map_err(sm_read)? {
            Some(v) => Ok(Some(from_stored(&v)?)),
            None => Ok(None),
        }
    }

    /// A number not used before by this node, for file and tree names.
    fn next_seq(&self) -> Result<u64, StorageError> {
        Ok(self
            .snapshots
            .update_and_fetch(SNAPSHOT_SEQ, |old| {
                let n = old
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                Some((n + 1).to_be_bytes().to_vec())
            })
            .map_err(snap_err)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), StorageError> {
        // Stored as an `Option`: `None` when a snapshot of an empty state
        // was installed.
        let applied = self.read::<Option<LogId<NodeId>>>(APPLIED)?.flatten();
        let membership = self.read(MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let tree = self.tree();
        for entry in entries {
            let mut batch = Writes::default();
            batch.insert(APPLIED, to_stored(&Some(entry.log_id))?);
            let result = match &entry.payload {
                EntryPayload::Blank => CommandResult(Ok(())),
                EntryPayload::Normal(command) => {
                    let outcome =
                        self.meta
                            .apply(command, &mut batch)
                            .map_err(|e| StorageError::IO {
                                source: StorageIOError::apply(entry.log_id, &e),
                            })?;
                    CommandResult(outcome)
                }
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                    batch.insert(MEMBERSHIP, to_stored(&stored)?);
                    CommandResult(Ok(()))
                }
            };
            self.shadow.keep(&tree, &batch).map_err(sm_write)?;
            tree.apply_batch(batch.into()).map_err(sm_write)?;
            results.push(result);
        }
        self.db.flush_async().await.map_err(sm_write)?;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.prepare_snapshot().await
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        self.receive_snapshot().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        self.install(meta, snapshot).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        self.current_snapshot().await
    }
}
