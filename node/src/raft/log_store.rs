//! The Raft log and vote in sled.
//!
//! Tree `raft_log`: entries keyed by index (8 big-endian bytes), JSON values.
//! Tree `raft_state`: `vote`, `committed`, `purged`. Every call that openraft
//! requires to be durable (vote, append, truncate, purge) flushes sled — an
//! fsync — before it reports completion.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, RaftLogReader, StorageIOError, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{NodeId, StorageError, TypeConfig};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

/// sled-backed Raft log store. Cheap to clone: clones share the trees.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    state: sled::Tree,
    committed_index: Arc<AtomicU64>,
}

fn io_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::read_logs(&e),
    }
}

fn io_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::write_logs(&e),
    }
}

fn to_stored<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    Ok(crate::meta::codec::encode(value))
}

fn from_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    crate::meta::codec::decode(bytes).map_err(io_read)
}

impl LogStore {
    /// Opens the log trees of `db`.
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        let store = Self {
            db: db.clone(),
            log: db.open_tree("raft_log")?,
            state: db.open_tree("raft_state")?,
            committed_index: Arc::new(AtomicU64::new(0)),
        };
        if let Ok(Some(Some(c))) = store.get::<Option<LogId<NodeId>>>(COMMITTED) {
            store.committed_index.store(c.index, Ordering::Relaxed);
        }
        Ok(store)
    }

    /// The highest index known committed, as last reported by openraft.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed_index.clone()
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.state.get(key).map_err(io_read)? {
            Some(v) => Ok(Some(from_stored(&v)?)),
            None => Ok(None),
        }
    }

    async fn flush(&self) -> Result<(), StorageError> {
        self.db.flush_async().await.map_err(io_write)?;
        Ok(())
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => Bound::Included(index_key(i)),
            Bound::Excluded(&i) => Bound::Excluded(index_key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(index_key(i)),
            Bound::Excluded(&i) => Bound::Excluded(index_key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.log
            .range::<[u8; 8], _>((start, end))
            .map(|kv| {
                let (_, v) = kv.map_err(io_read)?;
                from_stored(&v)
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get(PURGED)?;
        let last_log_id = match self.log.last().map_err(io_read)? {
            Some((_, v)) => Some(from_stored::<Entry<TypeConfig>>(&v)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.state
            .insert(VOTE, to_stored(vote)?)
            .map_err(|e| StorageError::IO {
                source: StorageIOError::write_vote(&e),
            })?;
        self.flush().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        // Not flushed: openraft does not require it, and losing it only means
        // re-applying entries that are still in the log.
        self.state
            .insert(COMMITTED, to_stored(&committed)?)
            .map_err(io_write)?;
        if let Some(c) = committed {
            self.committed_index.store(c.index, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.get::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            batch.insert(&index_key(entry.log_id.index), to_stored(&entry)?);
        }
        self.log.apply_batch(batch).map_err(io_write)?;
        match self.db.flush_async().await {
            Ok(_) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_write(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for kv in self.log.range(index_key(log_id.index)..) {
            let (k, _) = kv.map_err(io_read)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(io_write)?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        // Record the purge point first: a crash between the two steps leaves
        // entries that are merely ignored, never a gap that is not recorded.
        self.state
            .insert(PURGED, to_stored(&log_id)?)
            .map_err(io_write)?;
        self.flush().await?;
        let mut batch = sled::Batch::default();
        for kv in self.log.range(..=index_key(log_id.index)) {
            let (k, _) = kv.map_err(io_read)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(io_write)?;
        self.flush().await
    }
}
