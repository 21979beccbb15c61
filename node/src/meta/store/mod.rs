//! The metadata's sled tree: reads for the API, deterministic writes for the
//! state machine.
//!
//! Keys: `cluster_id`; `node/<id as 8 big-endian bytes>`; `bucket/<name>`;
//! `principal/<name>`; `grant/<principal>\0<role>\0<bucket or empty>`;
//! `token/<id>`. Values are JSON. The Raft state machine keeps its own bookkeeping keys
//! (applied log id, membership) in the same tree so that they change in the
//! same atomic batch as the data they cover.

mod anchors;
mod apply;
mod epochs;
mod holds;
mod keys;
mod reads;
mod receipts;

pub use epochs::EpochObject;
pub use holds::{DueObject, HoldFilter};
pub use reads::{ObjectCursor, PlacedShard};
pub use receipts::StoredReceipt;
#[cfg(test)]
mod audit_tests;
#[cfg(test)]
mod epoch_tests;
#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;

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
        source: crate::meta::codec::CodecError,
    },
    /// An index entry does not have the shape its index gives it.
    #[error("metadata store: bad index entry: {0}")]
    BadIndex(String),
}

/// Read and apply access to the metadata tree. Clones share the tree, and
/// see it replaced as a whole when a snapshot is installed.
#[derive(Clone)]
pub struct MetaStore {
    tree: Arc<RwLock<sled::Tree>>,
}

pub(super) fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    crate::meta::codec::decode(value).map_err(|source| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    crate::meta::codec::encode(value)
}

impl MetaStore {
    /// Wraps the state machine's tree.
    pub fn new(tree: sled::Tree) -> Self {
        Self {
            tree: Arc::new(RwLock::new(tree)),
        }
    }

    /// The tree as it is now (for the state machine's bookkeeping keys). A
    /// read that holds it sees one tree throughout, even across a swap.
    pub fn tree(&self) -> sled::Tree {
        self.tree
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the tree for every clone of this store (a snapshot was
    /// installed into `tree`); returns the one it replaces.
    pub fn swap(&self, tree: sled::Tree) -> sled::Tree {
        let mut slot = self
            .tree
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::replace(&mut slot, tree)
    }

    pub(super) fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.tree().get(key)? {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    /// The pairs under `prefix` in key order, from just after the key
    /// `after` or from the first: the paging every listing uses.
    pub(super) fn range_after(
        &self,
        prefix: &[u8],
        after: Option<Vec<u8>>,
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>> {
        let start = match after {
            Some(mut k) => {
                k.push(0);
                k
            }
            None => prefix.to_vec(),
        };
        let prefix = prefix.to_vec();
        self.tree()
            .range(start..)
            .take_while(move |kv| kv.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .map(|kv| kv.map_err(StoreError::from))
    }

    pub(super) fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        self.tree()
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }
}
