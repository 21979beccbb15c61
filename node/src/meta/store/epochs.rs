//! Reads of key epochs: the live ones, the destroyed ones, the one a class
//! uses, those the shredder must attend to, and the objects of each.

use super::keys::*;
use super::{decode, MetaStore, StoreError};
use crate::meta::{KeyEpoch, ObjectId};

/// An object whose data key an epoch wraps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochObject {
    /// Its id.
    pub object_id: ObjectId,
    /// Its bucket.
    pub bucket: String,
    /// Its key.
    pub key: String,
}

impl MetaStore {
    /// The live (not destroyed) epoch `id`.
    pub fn epoch(&self, id: u64) -> Result<Option<KeyEpoch>, StoreError> {
        self.get(&epoch_key(EPOCH_PREFIX, id))
    }

    /// The record of epoch `id` if it was destroyed.
    pub fn destroyed_epoch(&self, id: u64) -> Result<Option<KeyEpoch>, StoreError> {
        self.get(&epoch_key(EPOCH_GONE_PREFIX, id))
    }

    /// The epoch new objects of `class` use, if there is one.
    pub fn class_epoch(&self, class: &str) -> Result<Option<KeyEpoch>, StoreError> {
        let Some(id) = self.tree().get(epoch_class_key(class))? else {
            return Ok(None);
        };
        let Ok(id) = <[u8; 8]>::try_from(&id[..]) else {
            return Ok(None);
        };
        Ok(self.epoch(u64::from_be_bytes(id))?.filter(|e| !e.retiring))
    }

    /// Up to `limit` live epochs with ids after `after`, in id order.
    pub fn live_epochs(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<KeyEpoch>, StoreError> {
        self.epoch_page(EPOCH_PREFIX, after, limit)
    }

    /// Up to `limit` live epochs one of whose objects was deleted.
    pub fn dirty_epochs(&self, limit: usize) -> Result<Vec<KeyEpoch>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree().scan_prefix(EPOCH_DIRTY_PREFIX) {
            let (k, _) = kv?;
            if out.len() >= limit {
                break;
            }
            let Ok(id) = <[u8; 8]>::try_from(&k[EPOCH_DIRTY_PREFIX.len()..]) else {
                continue;
            };
            if let Some(e) = self.epoch(u64::from_be_bytes(id))? {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn epoch_page(
        &self,
        prefix: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<KeyEpoch>, StoreError> {
        let after = after.map(|id| epoch_key(prefix, id));
        let mut out = Vec::new();
        for kv in self.range_after(prefix, after).take(limit) {
            let (k, v) = kv?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Up to `limit` objects whose data keys epoch `id` wraps, in object id
    /// order after `after`.
    pub fn epoch_objects(
        &self,
        id: u64,
        after: Option<&ObjectId>,
        limit: usize,
    ) -> Result<Vec<EpochObject>, StoreError> {
        let prefix = epoch_key(EPOCH_OBJECT_PREFIX, id);
        let after = after.map(|object| epoch_object_key(id, object));
        let mut out = Vec::new();
        for kv in self.range_after(&prefix, after).take(limit) {
            let (k, v) = kv?;
            let Ok(object) = <[u8; 16]>::try_from(&k[prefix.len()..]) else {
                continue;
            };
            let mut parts = v.splitn(2, |b| *b == 0);
            let (Some(bucket), Some(key)) = (parts.next(), parts.next()) else {
                continue;
            };
            out.push(EpochObject {
                object_id: ObjectId(object),
                bucket: String::from_utf8_lossy(bucket).into_owned(),
                key: String::from_utf8_lossy(key).into_owned(),
            });
        }
        Ok(out)
    }
}
