//! Master key rotation: every object's data key re-wrapped under the
//! current master key, so that older master keys can be retired. The
//! objects' bytes are not touched: only the 32-byte data keys change hands.

use super::ObjectError;
use crate::crypto::{DataKey, Keyring};
use crate::meta::{Command, KeyRewrap};
use crate::raft::Cluster;

/// Data keys re-wrapped per Raft proposal.
const REWRAPS_PER_PROPOSAL: usize = 256;
/// Manifests read at a time: memory is one page, however many objects.
const PAGE: usize = 1000;

/// What a rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// The master key every data key is now wrapped with.
    pub current_key_id: String,
    /// Data keys re-wrapped by this run.
    pub rewrapped: u64,
    /// Encrypted objects still wrapped by another key afterwards (written
    /// meanwhile by a node with an older key file; run again).
    pub remaining: u64,
    /// Objects stored without encryption (by an insecure cluster).
    pub unencrypted: u64,
}

/// Re-wraps every data key not under the current master key of this
/// node's key file.
pub async fn rotate_keys(cluster: &Cluster) -> Result<RotationReport, ObjectError> {
    let keyring = Keyring::new(cluster.config().security.master_key_file.clone());
    cluster.linearizable_read().await?;
    let keys = keyring.keys()?;
    let current = keys.current();
    let mut batch = Vec::new();
    let mut rewrapped = 0u64;
    let mut cursor = None;
    loop {
        let (page, next) = cluster.meta().objects_page(cursor.as_ref(), PAGE)?;
        for m in page {
            let Some(enc) = &m.encryption else {
                continue;
            };
            if enc.key.key_id == current.id {
                continue;
            }
            let key = DataKey::unwrap(m.object_id, &enc.key, &keys)?;
            batch.push(KeyRewrap {
                bucket: m.bucket.clone(),
                key: m.key.clone(),
                object_id: m.object_id,
                from_key_id: enc.key.key_id.clone(),
                wrapped: key.wrap(current),
            });
            if batch.len() == REWRAPS_PER_PROPOSAL {
                rewrapped += batch.len() as u64;
                cluster
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
        rewrapped += batch.len() as u64;
        cluster
            .propose(Command::RewrapKeys { rewraps: batch })
            .await?;
    }
    cluster.linearizable_read().await?;
    let mut report = RotationReport {
        current_key_id: current.id.clone(),
        rewrapped,
        ..RotationReport::default()
    };
    let mut cursor = None;
    loop {
        let (page, next) = cluster.meta().objects_page(cursor.as_ref(), PAGE)?;
        for m in page {
            match &m.encryption {
                None => report.unencrypted += 1,
                Some(enc) if enc.key.key_id != current.id => report.remaining += 1,
                Some(_) => {}
            }
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    tracing::info!(
        key_id = report.current_key_id,
        rewrapped = report.rewrapped,
        remaining = report.remaining,
        "master key rotation done"
    );
    Ok(report)
}
