//! Key epochs on the data paths: which epoch key wraps a new object's data
//! key, opening a new epoch (its key on a majority of the nodes before the
//! epoch is committed), finding a key this node lacks, and unwrapping a
//! manifest's data key.

use futures::future::join_all;

use super::{DataPlane, ObjectError};
use crate::crypto::{CryptoError, DataKey, EpochKey};
use crate::meta::{
    epoch_class, epoch_of, now_ms, Command, KeyEpoch, NodeState, ObjectId, RetentionPolicy,
    WrappedKey,
};

/// Runs an epoch key file operation off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CryptoError> + Send + 'static,
) -> Result<T, ObjectError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ObjectError::Internal(format!("epoch key task: {e}")))?
        .map_err(ObjectError::from)
}

impl DataPlane {
    /// Members other than this node that may hold epoch keys.
    pub(super) fn key_holders(&self) -> Result<Vec<u64>, ObjectError> {
        let own = self.cluster.config().node_id;
        Ok(self
            .cluster
            .meta()
            .nodes()?
            .into_iter()
            .filter(|n| n.state != NodeState::Removed && n.id != own)
            .map(|n| n.id)
            .collect())
    }

    /// The key of live epoch `id`: this node's copy, or one fetched from a
    /// peer (and kept) when this node has none or its master keys no longer
    /// open its copy.
    pub async fn epoch_key(&self, id: u64) -> Result<EpochKey, ObjectError> {
        let epochs = self.epochs.clone();
        let own = tokio::task::spawn_blocking(move || epochs.key(id))
            .await
            .map_err(|e| ObjectError::Internal(format!("epoch key task: {e}")))?;
        let unusable = match own {
            Ok(Some(key)) => return Ok(key),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(epoch = format!("{id:016x}"), error = %e, "own copy of an epoch key unusable; asking peers");
                Some(e)
            }
        };
        match (self.fetch_epoch_key(id).await?, unusable) {
            (Some(key), _) => Ok(key),
            // This node's copy is there but its master keys do not open
            // it (a retired master key): that, not the peers, is the cause.
            (None, Some(e)) => Err(e.into()),
            (None, None) => Err(ObjectError::Unavailable(format!(
                "no reachable node has the key of epoch {id:016x}"
            ))),
        }
    }

    /// Fetches epoch key `id` from the first peer that has it, and keeps it.
    pub async fn fetch_epoch_key(&self, id: u64) -> Result<Option<EpochKey>, ObjectError> {
        for node in self.key_holders()? {
            let wrapped = match self.peers.get_epoch_key(node, id).await {
                Ok(Some(w)) if w.id == id => w,
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(node, error = %e, "epoch key not fetched");
                    continue;
                }
            };
            let epochs = self.epochs.clone();
            match blocking(move || {
                epochs.store(&wrapped)?;
                epochs.key(id)
            })
            .await
            {
                Ok(Some(key)) => return Ok(Some(key)),
                Ok(None) => continue,
                Err(e) => tracing::warn!(node, error = %e, "an epoch key from a peer was refused"),
            }
        }
        Ok(None)
    }

    /// The data key of `object`, wrapped as `wrapped`.
    pub async fn data_key(
        &self,
        object: ObjectId,
        wrapped: &WrappedKey,
    ) -> Result<DataKey, ObjectError> {
        Ok(match epoch_of(&wrapped.key_id) {
            Some(id) => DataKey::unwrap_epoch(object, wrapped, &self.epoch_key(id).await?)?,
            None => DataKey::unwrap(object, wrapped, &self.keyring.keys()?)?,
        })
    }

    /// The epoch key that wraps the data keys of objects stored now under
    /// `policy`: their class's live epoch, or a new one.
    pub async fn epoch_for(
        &self,
        policy: Option<&RetentionPolicy>,
    ) -> Result<EpochKey, ObjectError> {
        let now = now_ms();
        let delete_at = policy
            .and_then(|p| p.delete_after_ms)
            .map(|d| now.saturating_add(d));
        self.class_epoch_key(&epoch_class(delete_at, now)).await
    }

    /// The key of `class`'s live epoch, or of a new one for it.
    pub async fn class_epoch_key(&self, class: &str) -> Result<EpochKey, ObjectError> {
        if let Some(e) = self.cluster.meta().class_epoch(class)? {
            return self.epoch_key(e.id).await;
        }
        let _one_at_a_time = self.opening_epoch.lock().await;
        if let Some(e) = self.cluster.meta().class_epoch(class)? {
            return self.epoch_key(e.id).await;
        }
        self.open_epoch(class).await
    }

    /// Opens a new epoch for `class`: a new key, stored here and on the
    /// other members — committed only once a majority of the members hold
    /// it, so losing fewer nodes than that never loses an epoch key (the
    /// others fetch it from them).
    async fn open_epoch(&self, class: &str) -> Result<EpochKey, ObjectError> {
        let epochs = self.epochs.clone();
        let (key, wrapped) = blocking(move || epochs.create()).await?;
        let holders = self.key_holders()?;
        let stores = holders.iter().map(|&node| {
            let wrapped = wrapped.clone();
            async move { (node, self.peers.put_epoch_key(node, wrapped).await) }
        });
        let mut copies = 1usize;
        for (node, stored) in join_all(stores).await {
            match stored {
                Ok(_) => copies += 1,
                Err(e) => tracing::warn!(node, error = %e, "epoch key not stored on a node"),
            }
        }
        let members = holders.len() + 1;
        let needed = members / 2 + 1;
        if copies < needed {
            let epochs = self.epochs.clone();
            let id = key.id;
            let _ = blocking(move || epochs.destroy(id)).await;
            return Err(ObjectError::Unavailable(format!(
                "a new key epoch reached {copies} of {members} nodes, {needed} needed; retry"
            )));
        }
        self.cluster
            .propose(Command::CreateEpoch {
                epoch: KeyEpoch {
                    id: key.id,
                    class: class.to_string(),
                    created_ms: now_ms(),
                    live: 0,
                    first_deletion_ms: None,
                    retiring: false,
                    destroyed_ms: None,
                },
            })
            .await?;
        tracing::info!(
            epoch = format!("{:016x}", key.id),
            class,
            copies,
            "key epoch opened"
        );
        Ok(key)
    }
}
