//! Crypto-shredding: once an object is deleted, the epoch key that wrapped
//! its data key must go. The leader moves the epoch's other objects to a
//! new epoch (re-wrapping their data keys, never touching their bytes),
//! then commits the epoch destroyed; every node then destroys its copy of
//! the key ([`DataPlane::sync_epoch_keys`]). A deleted object's receipt is
//! issued only after that commit.

use std::time::{Duration, SystemTime};

use super::epochs::blocking;
use super::{DataPlane, ObjectError};
use crate::crypto::{DataKey, EpochKey};
use crate::meta::{epoch_key_id, now_ms, Command, KeyEpoch, KeyRewrap, MetaError};
use crate::raft::ClusterError;

/// Data keys re-wrapped per Raft proposal.
const REWRAPS_PER_PROPOSAL: usize = 256;
/// Dirty epochs looked at per pass.
const EPOCHS_PER_PASS: usize = 100;
/// Live epochs read at a time when syncing.
const PAGE: usize = 1000;

/// What one shredding pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shredded {
    /// Epochs committed destroyed.
    pub destroyed: u64,
    /// Data keys moved to a new epoch first.
    pub rewrapped: u64,
    /// Dirty epochs left for a later pass (too recent, or over budget).
    pub waiting: u64,
}

/// What one sync of this node's epoch key files did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EpochSync {
    /// Key files destroyed: their epochs were destroyed, or never committed.
    pub destroyed: u64,
    /// Keys fetched from peers: this node lacked them.
    pub fetched: u64,
    /// Live epochs whose key this node still lacks (no peer gave it).
    pub missing: u64,
    /// Key files this node holds after the sync.
    pub held: u64,
}

impl DataPlane {
    /// Destroys the epochs one of whose objects was deleted at least
    /// `delay` ago, moving their other objects to a new epoch first; at
    /// most `budget` data keys are moved per pass, the rest wait.
    pub async fn shred(&self, delay: Duration, budget: u64) -> Result<Shredded, ObjectError> {
        let mut out = Shredded::default();
        let now = now_ms();
        let delay_ms = delay.as_millis() as u64;
        for epoch in self.cluster.meta().dirty_epochs(EPOCHS_PER_PASS)? {
            let recent = epoch
                .first_deletion_ms
                .is_some_and(|t| t.saturating_add(delay_ms) > now);
            if recent || out.rewrapped >= budget {
                out.waiting += 1;
                continue;
            }
            if epoch.live > 0 {
                if !epoch.retiring {
                    self.cluster
                        .propose(Command::RetireEpoch { id: epoch.id })
                        .await?;
                }
                let target = self.class_epoch_key(&epoch.class).await?;
                out.rewrapped += self
                    .move_objects(&epoch, &target, budget - out.rewrapped)
                    .await?;
            }
            match self
                .cluster
                .propose(Command::DestroyEpoch {
                    id: epoch.id,
                    now_ms: now_ms(),
                })
                .await
            {
                Ok(()) => {
                    out.destroyed += 1;
                    let epochs = self.epochs.clone();
                    let id = epoch.id;
                    blocking(move || epochs.destroy(id)).await?;
                    tracing::info!(epoch = format!("{:016x}", epoch.id), "key epoch destroyed");
                }
                // Objects still in it (committed meanwhile, or over budget):
                // a later pass moves them.
                Err(ClusterError::Meta(MetaError::FailedPrecondition(_))) => out.waiting += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Re-wraps the data keys of `from`'s objects under `to`, at most
    /// about `budget` of them.
    async fn move_objects(
        &self,
        from: &KeyEpoch,
        to: &EpochKey,
        budget: u64,
    ) -> Result<u64, ObjectError> {
        let old = self.epoch_key(from.id).await?;
        let from_key_id = epoch_key_id(from.id);
        let meta = self.cluster.meta();
        let (mut moved, mut after) = (0u64, None);
        while moved < budget {
            let page = meta.epoch_objects(from.id, after.as_ref(), REWRAPS_PER_PROPOSAL)?;
            let Some(last) = page.last().map(|o| o.object_id) else {
                break;
            };
            let mut rewraps = Vec::with_capacity(page.len());
            for o in page {
                let Some(m) = meta.object(&o.bucket, &o.key)? else {
                    continue;
                };
                let Some(enc) = m.encryption.as_ref().filter(|_| m.object_id == o.object_id) else {
                    continue;
                };
                if enc.key.key_id != from_key_id {
                    continue;
                }
                let key = DataKey::unwrap_epoch(m.object_id, &enc.key, &old)?;
                rewraps.push(KeyRewrap {
                    bucket: o.bucket,
                    key: o.key,
                    object_id: o.object_id,
                    from_key_id: from_key_id.clone(),
                    wrapped: key.wrap_epoch(to),
                });
            }
            moved += rewraps.len() as u64;
            if !rewraps.is_empty() {
                self.cluster
                    .propose(Command::RewrapKeys { rewraps })
                    .await?;
            }
            after = Some(last);
        }
        Ok(moved)
    }

    /// Makes this node's epoch key files follow the replicated state:
    /// destroys the keys of destroyed epochs (and files of epochs never
    /// committed, once older than `unknown_grace`), and fetches from peers
    /// the keys of live epochs this node lacks or cannot open.
    pub async fn sync_epoch_keys(&self, unknown_grace: Duration) -> Result<EpochSync, ObjectError> {
        let mut out = EpochSync::default();
        let meta = self.cluster.meta();
        let epochs = self.epochs.clone();
        let files = blocking(move || epochs.list()).await?;
        out.held = files.len() as u64;
        for (id, written) in files {
            if meta.epoch(id)?.is_some() {
                continue;
            }
            let stale = SystemTime::now()
                .duration_since(written)
                .is_ok_and(|age| age > unknown_grace);
            if meta.destroyed_epoch(id)?.is_some() || stale {
                let epochs = self.epochs.clone();
                if blocking(move || epochs.destroy(id)).await? {
                    out.destroyed += 1;
                    out.held -= 1;
                }
            }
        }
        // Which keys this node can open, judged without decrypting: the
        // file is there and names a master key of this node's key file.
        let masters: Option<std::collections::HashSet<String>> = self
            .epochs
            .master_keys()
            .ok()
            .map(|k| k.ids().map(str::to_string).collect());
        let mut after = None;
        loop {
            let page = meta.live_epochs(after, PAGE)?;
            let Some(last) = page.last().map(|e| e.id) else {
                break;
            };
            for epoch in page {
                let epochs = self.epochs.clone();
                let id = epoch.id;
                let held = blocking(move || epochs.wrapped(id)).await.ok().flatten();
                let had_file = held.is_some();
                let usable = held.is_some_and(|w| {
                    masters
                        .as_ref()
                        .is_none_or(|m| m.contains(&w.master_key_id))
                });
                if usable {
                    continue;
                }
                match self.fetch_epoch_key(id).await? {
                    Some(_) => {
                        out.fetched += 1;
                        out.held += u64::from(!had_file);
                    }
                    None => out.missing += 1,
                }
            }
            after = Some(last);
        }
        Ok(out)
    }
}
