//! Deterministic writes: every replica applies a command to the same state
//! and reaches the same decision. One file per domain: cluster membership
//! and buckets, objects and uploads, principals and access.

mod access;
mod cluster;
mod health;
mod objects;

use super::keys::*;
use super::{encode, MetaStore, StoreError};
use crate::meta::{Command, MetaError};

impl MetaStore {
    /// Adds `records` to the hash-chained audit log, after its head.
    pub(super) fn append_audit<'a>(
        &self,
        records: impl Iterator<Item = &'a crate::meta::audit::AuditRecord>,
        batch: &mut sled::Batch,
    ) -> Result<(), StoreError> {
        let (mut seq, mut prev) = self.audit_head()?;
        let mut appended = false;
        for record in records {
            seq += 1;
            let entry = crate::meta::audit::chain(seq, record.clone(), &prev);
            let mut k = AUDIT_PREFIX.to_vec();
            k.extend_from_slice(&seq.to_be_bytes());
            prev = entry.hash.clone();
            batch.insert(k, encode(&entry));
            appended = true;
        }
        if appended {
            batch.insert(AUDIT_HEAD, encode(&(seq, prev)));
        }
        Ok(())
    }

    /// Checks `command` against the current state and, if it is allowed,
    /// adds its writes to `batch`. Deterministic: every replica reaches the
    /// same decision. A refused command adds nothing.
    pub fn apply(
        &self,
        command: &Command,
        batch: &mut sled::Batch,
    ) -> Result<Result<(), MetaError>, StoreError> {
        match command {
            Command::InitCluster { .. }
            | Command::AddNode { .. }
            | Command::RemoveNode { .. }
            | Command::SetNodeState { .. }
            | Command::CreateBucket { .. } => self.apply_cluster(command, batch),
            Command::BeginUpload { .. }
            | Command::TouchUpload { .. }
            | Command::AbortUpload { .. }
            | Command::CreateObject { .. }
            | Command::UpdateShards { .. }
            | Command::RewrapKeys { .. }
            | Command::DeleteObject { .. } => self.apply_objects(command, batch),
            Command::AppendAudit { records } => {
                self.append_audit(records.iter(), batch)?;
                Ok(Ok(()))
            }
            Command::CreatePrincipal { .. }
            | Command::DeletePrincipal { .. }
            | Command::Grant { .. }
            | Command::Revoke { .. }
            | Command::CreateToken { .. }
            | Command::RevokeToken { .. } => self.apply_access(command, batch),
        }
    }
}

/// A command handed to the wrong domain: a bug in [`MetaStore::apply`]'s
/// dispatch, refused the same way on every replica.
fn misrouted(domain: &str) -> MetaError {
    MetaError::FailedPrecondition(format!("command misrouted to the {domain} domain"))
}
