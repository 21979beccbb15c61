//! Deletion receipts: after a deletion commits (a user's or an expiry) and
//! the key epoch that wrapped the object's data key is destroyed, the
//! leader removes the object's shard files from every holder, counts
//! them, signs the receipt the commit left due and records it through Raft.
//! A leader lost on the way leaves the receipt due: the next leader does
//! it again (removing files is idempotent; recording a receipt no longer
//! due changes nothing).

use futures::future::join_all;

use super::{DataPlane, ObjectError};
use crate::meta::{epoch_of, now_ms, Command, ObjectId, ReceiptDue, RecordedReceipt};

/// What one batch of receipts did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptsIssued {
    /// Receipts signed and recorded.
    pub receipts: u64,
    /// Shard files the holders removed for them.
    pub shard_files: u64,
    /// Receipts left due: their key epoch is not destroyed yet.
    pub waiting: u64,
}

impl DataPlane {
    /// Issues the receipts `due`: removes each object's shard files on its
    /// holders (those unreachable are named in the receipt; garbage
    /// collection removes their files later), signs with the cluster's
    /// signer (none: unsigned, on an insecure cluster) and records them in
    /// one commit.
    pub async fn issue_receipts(
        &self,
        due: Vec<(ObjectId, ReceiptDue)>,
    ) -> Result<ReceiptsIssued, ObjectError> {
        let mut issued = ReceiptsIssued::default();
        let mut receipts = Vec::with_capacity(due.len());
        for (object, mut due) in due {
            // The receipt states the key is destroyed: it waits until the
            // epoch that wrapped it is (see `objects/shred.rs`).
            if let Some(epoch) = due.body.key_epoch.as_deref().and_then(epoch_of) {
                match self.cluster.meta().destroyed_epoch(epoch)? {
                    Some(gone) => due.body.key_destroyed_ms = gone.destroyed_ms,
                    None => {
                        issued.waiting += 1;
                        continue;
                    }
                }
            }
            let removals = due
                .holders
                .iter()
                .map(|&node| async move { (node, self.peers.delete_object(node, object).await) });
            let mut body = due.body;
            for (node, removed) in join_all(removals).await {
                match removed {
                    Ok(n) => body.shard_files_removed += u64::from(n),
                    Err(e) => {
                        tracing::warn!(node, %object, error = %e, "could not remove shard files for a receipt");
                        body.holders_unreached.push(node);
                    }
                }
            }
            body.issued_ms = now_ms();
            let signed = match &self.signer {
                Some(s) => s.sign(&body),
                None => crate::tls::unsigned(&body),
            }
            .map_err(ObjectError::Internal)?;
            let signed =
                serde_json::to_string(&signed).map_err(|e| ObjectError::Internal(e.to_string()))?;
            issued.shard_files += body.shard_files_removed;
            receipts.push(RecordedReceipt {
                object_id: object,
                signed,
            });
        }
        issued.receipts = receipts.len() as u64;
        if !receipts.is_empty() {
            self.cluster
                .propose(Command::RecordReceipts { receipts })
                .await?;
        }
        Ok(issued)
    }
}
