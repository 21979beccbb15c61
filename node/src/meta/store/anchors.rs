//! Reads of the audit history's anchoring: the history tree over the
//! sealed segments (its perfect subtrees, see
//! [`crate::meta::audit::anchor`]) and the signed checkpoints of it.

use tresor_client::merkle::{self, Hash, Perfect};

use super::keys::*;
use super::{MetaStore, StoreError};
use crate::meta::audit::{SealedSegment, StoredCheckpoint};

impl Perfect for MetaStore {
    type Error = StoreError;

    fn perfect(&self, height: u32, index: u64) -> Result<Hash, StoreError> {
        let key = mmr_key(height, index);
        let value = self.tree().get(&key)?.ok_or_else(|| {
            StoreError::BadIndex(format!(
                "the history tree has no node at height {height}, index {index}"
            ))
        })?;
        <[u8; 32]>::try_from(value.as_ref()).map_err(|_| {
            StoreError::BadIndex(format!(
                "the history tree's node at height {height}, index {index} is not 32 bytes"
            ))
        })
    }
}

impl MetaStore {
    /// The last sealed segment, if any.
    pub fn last_sealed(&self) -> Result<Option<SealedSegment>, StoreError> {
        match self.tree().scan_prefix(AUDIT_SEALED_PREFIX).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                Ok(Some(super::decode(&k, &v)?))
            }
            None => Ok(None),
        }
    }

    /// How many segments are sealed: the history tree's size.
    pub fn audit_segments(&self) -> Result<u64, StoreError> {
        Ok(self.last_sealed()?.map_or(0, |s| s.ordinal + 1))
    }

    /// The sealed segment holding entry `seq`, if it is sealed.
    pub fn sealed_segment_of(&self, seq: u64) -> Result<Option<SealedSegment>, StoreError> {
        Ok(self
            .sealed_segments(seq.saturating_sub(1), 1)?
            .into_iter()
            .find(|s| s.first_seq <= seq && seq <= s.last_seq))
    }

    /// The history root over the first `segments` sealed segments (≥ 1).
    pub fn history_root(&self, segments: u64) -> Result<Hash, StoreError> {
        merkle::root(self, segments)
    }

    /// The inclusion path of segment `ordinal` in the history tree of
    /// `segments` segments.
    pub fn history_path(&self, ordinal: u64, segments: u64) -> Result<Vec<Hash>, StoreError> {
        merkle::path(self, ordinal, segments)
    }

    /// The checkpoint of `segments` segments, if one was made.
    pub fn checkpoint(&self, segments: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.get(&checkpoint_key(segments))
    }

    /// The latest checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        match self.tree().scan_prefix(AUDIT_CHECKPOINT_PREFIX).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                Ok(Some(super::decode(&k, &v)?))
            }
            None => Ok(None),
        }
    }

    /// The last audit entry a checkpoint was asked to cover (0: none).
    pub fn checkpoint_wanted(&self) -> Result<u64, StoreError> {
        Ok(self.get::<u64>(AUDIT_CHECKPOINT_WANTED)?.unwrap_or(0))
    }
}
