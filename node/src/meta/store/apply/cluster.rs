//! Cluster membership and buckets.

use super::super::keys::*;
use super::super::{encode, MetaStore, StoreError};
use super::health::Tally;
use super::misrouted;
use crate::meta::Writes;
use crate::meta::{Command, Grant, MetaError, NodeState, Principal, Role, BOOTSTRAP_ADMIN};

impl MetaStore {
    pub(super) fn apply_cluster(
        &self,
        command: &Command,
        batch: &mut Writes,
    ) -> Result<Result<(), MetaError>, StoreError> {
        match command {
            Command::InitCluster { cluster_id, node } => {
                if let Some(existing) = self.cluster_id()? {
                    return Ok(Err(MetaError::FailedPrecondition(format!(
                        "cluster {existing} is already initialised"
                    ))));
                }
                batch.insert(CLUSTER_ID, encode(cluster_id));
                batch.insert(node_key(node.id), encode(node));
                // Every cluster starts with an administrator, in the same
                // entry, so there is never a cluster nobody may operate.
                let admin = Grant {
                    principal: BOOTSTRAP_ADMIN.to_string(),
                    role: Role::Admin,
                    bucket: None,
                };
                batch.insert(
                    principal_key(BOOTSTRAP_ADMIN),
                    encode(&Principal {
                        name: BOOTSTRAP_ADMIN.to_string(),
                        created_ms: node.added_ms,
                    }),
                );
                batch.insert(grant_key(&admin), encode(&admin));
            }
            Command::AddNode { node } => {
                if let Some(existing) = self.node(node.id)? {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "node id {} is already in use{} (ids are never reused)",
                        node.id,
                        if existing.state == NodeState::Removed {
                            " by a removed node"
                        } else {
                            ""
                        }
                    ))));
                }
                if let Some(other) = self
                    .nodes()?
                    .into_iter()
                    .find(|n| n.state != NodeState::Removed && n.addr == node.addr)
                {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "address {} already belongs to node {}",
                        node.addr, other.id
                    ))));
                }
                // Shards recorded on this id before it existed (never in a
                // real cluster: ids come before placements) now count.
                let mut tally = Tally::default();
                self.node_state_changed(node.id, NodeState::Removed, node.state, &mut tally)?;
                self.write_tally(tally, batch)?;
                batch.insert(node_key(node.id), encode(node));
            }
            Command::RemoveNode { id } => {
                let Some(mut node) = self.node(*id)? else {
                    return Ok(Err(MetaError::NotFound(format!("no node with id {id}"))));
                };
                let mut tally = Tally::default();
                self.node_state_changed(*id, node.state, NodeState::Removed, &mut tally)?;
                self.write_tally(tally, batch)?;
                node.state = NodeState::Removed;
                batch.insert(node_key(*id), encode(&node));
            }
            Command::CreateBucket { bucket } => {
                if self.bucket(&bucket.name)?.is_some() {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "bucket {} already exists",
                        bucket.name
                    ))));
                }
                if let Some(name) = &bucket.retention {
                    if self.retention_policy(name)?.is_none() {
                        return Ok(Err(MetaError::NotFound(format!(
                            "no retention policy named {name}"
                        ))));
                    }
                }
                batch.insert(bucket_key(&bucket.name), encode(bucket));
            }
            Command::DeleteBucket { name } => {
                if let Err(refusal) = self.check_bucket_empty(name)? {
                    return Ok(Err(refusal));
                }
                for grant in self.grants()? {
                    if grant.bucket.as_deref() == Some(name.as_str()) {
                        batch.remove(grant_key(&grant));
                    }
                }
                batch.remove(bucket_key(name));
            }
            Command::SetNodeState {
                id,
                state,
                since_ms,
            } => {
                let Some(mut node) = self.node(*id)? else {
                    return Ok(Err(MetaError::NotFound(format!("no node with id {id}"))));
                };
                if node.state == NodeState::Removed || *state == NodeState::Removed {
                    return Ok(Err(MetaError::FailedPrecondition(format!(
                        "node {id}: a removed node's state cannot change"
                    ))));
                }
                if node.state != *state {
                    let mut tally = Tally::default();
                    self.node_state_changed(*id, node.state, *state, &mut tally)?;
                    self.write_tally(tally, batch)?;
                    node.state = *state;
                    node.state_since_ms = *since_ms;
                    batch.insert(node_key(*id), encode(&node));
                }
            }
            _ => return Ok(Err(misrouted("cluster"))),
        }
        Ok(Ok(()))
    }
}

impl MetaStore {
    /// Whether bucket `name` exists and may go: no object, no upload in
    /// progress, no legal hold in it.
    fn check_bucket_empty(&self, name: &str) -> Result<Result<(), MetaError>, StoreError> {
        if self.bucket(name)?.is_none() {
            return Ok(Err(MetaError::NotFound(format!("no bucket named {name}"))));
        }
        let not_empty = |what: &str| {
            Ok(Err(MetaError::FailedPrecondition(format!(
                "bucket {name} is not empty: {what}"
            ))))
        };
        if let Some(o) = self.objects(name, "", None, 1)?.first() {
            return not_empty(&format!("it holds objects ({} first)", o.key));
        }
        let mut after = None;
        loop {
            let page = self.uploads(after.as_ref(), 1000)?;
            if page.iter().any(|u| u.bucket == name) {
                return not_empty("an upload into it is in progress");
            }
            match page.last() {
                Some(last) if page.len() == 1000 => after = Some(last.object_id),
                _ => break,
            }
        }
        let mut by_key = HOLD_KEY_PREFIX.to_vec();
        by_key.extend_from_slice(name.as_bytes());
        by_key.push(0);
        for prefix in [by_key, prefix_holds_prefix(name)] {
            if self.tree().scan_prefix(&prefix).next().is_some() {
                return not_empty("a legal hold covers keys in it");
            }
        }
        Ok(Ok(()))
    }
}
