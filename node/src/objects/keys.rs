//! What the master key guards besides data: rotation, and S3 secrets.
//!
//! Master key rotation. The master key wraps the epoch keys in every
//! node's epoch key files (and, for objects stored before key epochs, data
//! keys directly): rotation re-wraps each live epoch key under the current
//! master key on every node, and moves data keys still wrapped by a master
//! key into an epoch, so that older master keys can be retired. The
//! objects' bytes are not touched.

use futures::future::join_all;

use super::epochs::blocking;
use super::{DataPlane, ObjectError};
use crate::crypto::{new_s3_credentials, open_s3_secret, seal_s3_secret, DataKey, WrappedEpochKey};
use crate::meta::{epoch_of, is_s3_key_id, now_ms, Command, KeyRewrap, S3Key};

/// Data keys re-wrapped per Raft proposal.
const REWRAPS_PER_PROPOSAL: usize = 256;
/// Manifests or epochs read at a time: memory is one page, however many.
const PAGE: usize = 1000;

/// What a rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// The master key every epoch key is now wrapped with.
    pub current_key_id: String,
    /// Epoch key copies (one per epoch and node) and data keys re-wrapped
    /// by this run.
    pub rewrapped: u64,
    /// Left under another key afterwards: epoch key copies on nodes that
    /// could not be reached (they fetch the new wrapping from a peer once
    /// their master keys no longer open their own), and data keys written
    /// meanwhile by a node with an older key file; run again.
    pub remaining: u64,
    /// Objects stored without encryption (by an insecure cluster).
    pub unencrypted: u64,
}

impl DataPlane {
    /// Re-wraps every live epoch key under the current master key of this
    /// node's key file, on every node, and every data key still wrapped by
    /// a master key into an epoch.
    pub async fn rotate_keys(&self) -> Result<RotationReport, ObjectError> {
        self.cluster.linearizable_read().await?;
        let keys = self.keyring.keys()?;
        let current = keys.current().id.clone();
        let mut report = RotationReport {
            current_key_id: current.clone(),
            ..RotationReport::default()
        };
        let holders = self.key_holders()?;
        let mut after = None;
        loop {
            let page = self.cluster.meta().live_epochs(after, PAGE)?;
            let Some(last) = page.last().map(|e| e.id) else {
                break;
            };
            for epoch in page {
                // This node's copy goes through the same check and write
                // as every other node's.
                let key = self.epoch_key(epoch.id).await?;
                let wrapped = WrappedEpochKey::wrap(&key, keys.current());
                let epochs = self.epochs.clone();
                let own = wrapped.clone();
                let changed = blocking(move || epochs.store(&own)).await?;
                report.rewrapped += u64::from(changed);
                let stores = holders.iter().map(|&node| {
                    let wrapped = wrapped.clone();
                    async move { (node, self.peers.put_epoch_key(node, wrapped).await) }
                });
                for (node, stored) in join_all(stores).await {
                    match stored {
                        Ok(changed) => report.rewrapped += u64::from(changed),
                        Err(e) => {
                            tracing::warn!(node, error = %e, "epoch key not re-wrapped on a node");
                            report.remaining += 1;
                        }
                    }
                }
            }
            after = Some(last);
        }
        self.rewrap_master_wrapped(&mut report).await?;
        tracing::info!(
            key_id = report.current_key_id,
            rewrapped = report.rewrapped,
            remaining = report.remaining,
            "master key rotation done"
        );
        Ok(report)
    }

    /// Moves data keys wrapped directly by a master key into epochs.
    async fn rewrap_master_wrapped(&self, report: &mut RotationReport) -> Result<(), ObjectError> {
        let keys = self.keyring.keys()?;
        let mut batch = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = self.cluster.meta().objects_page(cursor.as_ref(), PAGE)?;
            for m in page {
                let Some(enc) = &m.encryption else {
                    report.unencrypted += 1;
                    continue;
                };
                if epoch_of(&enc.key.key_id).is_some() {
                    continue;
                }
                let key = DataKey::unwrap(m.object_id, &enc.key, &keys)?;
                let policy = match &m.retention {
                    Some(r) => self.cluster.meta().retention_policy(&r.policy)?,
                    None => None,
                };
                let epoch = self.epoch_for(policy.as_ref()).await?;
                batch.push(KeyRewrap {
                    bucket: m.bucket.clone(),
                    key: m.key.clone(),
                    object_id: m.object_id,
                    from_key_id: enc.key.key_id.clone(),
                    wrapped: key.wrap_epoch(&epoch),
                });
                if batch.len() == REWRAPS_PER_PROPOSAL {
                    report.rewrapped += batch.len() as u64;
                    self.cluster
                        .propose(Command::RewrapKeys {
                            rewraps: std::mem::take(&mut batch),
                        })
                        .await?;
                }
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        if !batch.is_empty() {
            report.rewrapped += batch.len() as u64;
            self.cluster
                .propose(Command::RewrapKeys { rewraps: batch })
                .await?;
        }
        Ok(())
    }
}

/// An S3 access key opened for a signature check.
#[derive(Debug, Clone)]
pub struct S3Credential {
    /// Whom the key acts for.
    pub principal: String,
    /// The secret it signs with.
    pub secret: String,
}

impl DataPlane {
    /// A new S3 access key for `principal`, its secret sealed by the current
    /// master key, and the secret in plain (to be shown once). Not yet
    /// stored: propose `Command::CreateS3Key` with it.
    pub fn new_s3_key(&self, principal: &str) -> Result<(S3Key, String), ObjectError> {
        if !self.keyring.enabled() {
            return Err(ObjectError::FailedPrecondition(
                "S3 keys are kept sealed by the master key, and this node has no master key \
                 file (security.master_key_file)"
                    .into(),
            ));
        }
        let keys = self.keyring.keys()?;
        let (id, secret) = new_s3_credentials();
        let key = S3Key {
            secret: seal_s3_secret(&keys, &id, &secret),
            id,
            principal: principal.to_string(),
            created_ms: now_ms(),
        };
        Ok((key, secret))
    }

    /// The principal and secret of S3 access key `id`, from this node's
    /// state (`None`: no such key, or revoked).
    pub fn s3_credential(&self, id: &str) -> Result<Option<S3Credential>, ObjectError> {
        if !is_s3_key_id(id) {
            return Ok(None);
        }
        let Some(key) = self.cluster.meta().s3_key(id)? else {
            return Ok(None);
        };
        let keys = self.keyring.keys()?;
        Ok(Some(S3Credential {
            secret: open_s3_secret(&keys, id, &key.secret)?,
            principal: key.principal,
        }))
    }
}
