//! Deterministic writes: every replica applies a command to the same state
//! and reaches the same decision. One file per domain: cluster membership
//! and buckets, objects and uploads, principals and access.

mod access;
mod audit;
mod cluster;
mod epochs;
mod health;
mod objects;
mod retention;
mod sessions;

use super::{MetaStore, StoreError};
use crate::meta::Writes;
use crate::meta::{Command, MetaError};

impl MetaStore {
    /// Checks `command` against the current state and, if it is allowed,
    /// adds its writes to `batch`. Deterministic: every replica reaches the
    /// same decision. A refused command adds nothing.
    pub fn apply(
        &self,
        command: &Command,
        batch: &mut Writes,
    ) -> Result<Result<(), MetaError>, StoreError> {
        match command {
            Command::InitCluster { .. }
            | Command::AddNode { .. }
            | Command::RemoveNode { .. }
            | Command::SetNodeState { .. }
            | Command::CreateBucket { .. }
            | Command::DeleteBucket { .. } => self.apply_cluster(command, batch),
            Command::BeginUpload { .. }
            | Command::TouchUpload { .. }
            | Command::AbortUpload { .. }
            | Command::CreateObject { .. }
            | Command::UpdateShards { .. }
            | Command::RewrapKeys { .. }
            | Command::DeleteObject { .. }
            | Command::ExpireObjects { .. } => self.apply_objects(command, batch),
            Command::ClaimUpload { .. } | Command::RecordPart { .. } => {
                self.apply_sessions(command, batch)
            }
            Command::AppendAudit { .. }
            | Command::SealAudit { .. }
            | Command::RequestCheckpoint
            | Command::RecordCheckpoint { .. } => self.apply_audit(command, batch),
            Command::CreatePrincipal { .. }
            | Command::DeletePrincipal { .. }
            | Command::Grant { .. }
            | Command::Revoke { .. }
            | Command::CreateToken { .. }
            | Command::RevokeToken { .. }
            | Command::CreateS3Key { .. }
            | Command::RevokeS3Key { .. } => self.apply_access(command, batch),
            Command::CreateRetention { .. }
            | Command::SetBucketRetention { .. }
            | Command::ExtendRetention { .. }
            | Command::PlaceHold { .. }
            | Command::ReleaseHold { .. }
            | Command::RecordReceipts { .. } => self.apply_retention(command, batch),
            Command::CreateEpoch { .. }
            | Command::RetireEpoch { .. }
            | Command::DestroyEpoch { .. } => self.apply_epochs(command, batch),
        }
    }
}

/// A command handed to the wrong domain: a bug in [`MetaStore::apply`]'s
/// dispatch, refused the same way on every replica.
fn misrouted(domain: &str) -> MetaError {
    MetaError::FailedPrecondition(format!("command misrouted to the {domain} domain"))
}
