//! Key epochs: created, retired and destroyed by command, and counted as
//! objects come, go and move between them.

use super::super::keys::*;
use super::super::{decode, encode, MetaStore, StoreError};
use super::misrouted;
use crate::meta::{epoch_of, Command, KeyEpoch, MetaError, ObjectId, Writes};

impl MetaStore {
    pub(super) fn apply_epochs(
        &self,
        command: &Command,
        batch: &mut Writes,
    ) -> Result<Result<(), MetaError>, StoreError> {
        match command {
            Command::CreateEpoch { epoch } => {
                if self
                    .tree()
                    .contains_key(epoch_key(EPOCH_PREFIX, epoch.id))?
                    || self
                        .tree()
                        .contains_key(epoch_key(EPOCH_GONE_PREFIX, epoch.id))?
                {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "key epoch {:016x} exists",
                        epoch.id
                    ))));
                }
                let fresh = KeyEpoch {
                    live: 0,
                    first_deletion_ms: None,
                    retiring: false,
                    destroyed_ms: None,
                    ..epoch.clone()
                };
                batch.insert(epoch_key(EPOCH_PREFIX, fresh.id), encode(&fresh));
                batch.insert(
                    epoch_class_key(&fresh.class),
                    fresh.id.to_be_bytes().to_vec(),
                );
            }
            Command::RetireEpoch { id } => {
                let Some(mut epoch) = self.epoch_in(*id, batch)? else {
                    return Ok(Err(MetaError::NotFound(format!(
                        "no live key epoch {id:016x}"
                    ))));
                };
                epoch.retiring = true;
                self.leave_class(&epoch, batch)?;
                batch.insert(epoch_key(EPOCH_PREFIX, *id), encode(&epoch));
            }
            Command::DestroyEpoch { id, now_ms } => {
                let Some(mut epoch) = self.epoch_in(*id, batch)? else {
                    // Destroyed already (a retried proposal), or never was.
                    return Ok(Ok(()));
                };
                if epoch.live > 0 {
                    return Ok(Err(MetaError::FailedPrecondition(format!(
                        "key epoch {id:016x} still wraps {} objects' keys",
                        epoch.live
                    ))));
                }
                self.leave_class(&epoch, batch)?;
                epoch.destroyed_ms = Some(*now_ms);
                batch.remove(epoch_key(EPOCH_PREFIX, *id));
                batch.remove(epoch_key(EPOCH_DIRTY_PREFIX, *id));
                batch.insert(epoch_key(EPOCH_GONE_PREFIX, *id), encode(&epoch));
            }
            _ => return Ok(Err(misrouted("epochs"))),
        }
        Ok(Ok(()))
    }

    /// The live epoch `id` as `batch` leaves it.
    fn epoch_in(&self, id: u64, batch: &Writes) -> Result<Option<KeyEpoch>, StoreError> {
        let key = epoch_key(EPOCH_PREFIX, id);
        match batch.get(&key) {
            Some(Some(v)) => decode(&key, v).map(Some),
            Some(None) => Ok(None),
            None => self.get(&key),
        }
    }

    fn leave_class(&self, epoch: &KeyEpoch, batch: &mut Writes) -> Result<(), StoreError> {
        let class = epoch_class_key(&epoch.class);
        let current = match batch.get(&class) {
            Some(v) => v.cloned(),
            None => self.tree().get(&class)?,
        };
        if current.as_deref() == Some(&epoch.id.to_be_bytes()[..]) {
            batch.remove(class);
        }
        Ok(())
    }

    /// Why an object wrapped by `key_id` cannot join its epoch now, if it
    /// cannot: the epoch was destroyed (or never existed).
    pub(super) fn epoch_refusal(
        &self,
        key_id: &str,
        batch: &Writes,
    ) -> Result<Option<MetaError>, StoreError> {
        let Some(id) = epoch_of(key_id) else {
            return Ok(None);
        };
        Ok(match self.epoch_in(id, batch)? {
            Some(_) => None,
            None => Some(MetaError::FailedPrecondition(format!(
                "key epoch {id:016x} of the object's data key was destroyed meanwhile"
            ))),
        })
    }

    /// Counts object `object` (named `name`) into the epoch of `key_id`.
    pub(super) fn epoch_gain(
        &self,
        key_id: &str,
        object: &ObjectId,
        name: &[u8],
        batch: &mut Writes,
    ) -> Result<(), StoreError> {
        let Some(id) = epoch_of(key_id) else {
            return Ok(());
        };
        if let Some(mut epoch) = self.epoch_in(id, batch)? {
            epoch.live += 1;
            batch.insert(epoch_key(EPOCH_PREFIX, id), encode(&epoch));
            batch.insert(epoch_object_key(id, object), name.to_vec());
        }
        Ok(())
    }

    /// Counts object `object` out of the epoch of `key_id`: deleted at
    /// `deleted_ms` (the epoch must then go), or moved (`None`).
    pub(super) fn epoch_lose(
        &self,
        key_id: &str,
        object: &ObjectId,
        deleted_ms: Option<u64>,
        batch: &mut Writes,
    ) -> Result<(), StoreError> {
        let Some(id) = epoch_of(key_id) else {
            return Ok(());
        };
        batch.remove(epoch_object_key(id, object));
        if let Some(mut epoch) = self.epoch_in(id, batch)? {
            epoch.live = epoch.live.saturating_sub(1);
            if let Some(at) = deleted_ms {
                epoch.first_deletion_ms.get_or_insert(at);
                batch.insert(epoch_key(EPOCH_DIRTY_PREFIX, id), Vec::new());
            }
            batch.insert(epoch_key(EPOCH_PREFIX, id), encode(&epoch));
        }
        Ok(())
    }
}
