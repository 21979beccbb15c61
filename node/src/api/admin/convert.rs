//! Protobuf messages made from the model, for the admin answers.

use tresor_proto::v1 as pb;

use crate::meta::audit::AuditEntry;
use crate::meta::{Bucket, Grant, Principal, RetentionPolicy, Token};
use crate::raft::{ClusterView, NodeView};

pub(super) fn node_status(view: &NodeView) -> pb::NodeStatus {
    pb::NodeStatus {
        id: view.record.id,
        addr: view.record.addr.clone(),
        zone: view.record.zone.clone(),
        role: view.role.as_str().to_string(),
        state: view.record.state.as_str().to_string(),
        last_contact_ms: view.last_contact_ms,
        capacity: view.record.capacity,
        shards: 0,
    }
}

pub(super) fn status_response(view: ClusterView) -> pb::StatusResponse {
    pb::StatusResponse {
        cluster_id: view.cluster_id,
        leader_id: view.leader_id,
        term: view.term,
        commit_index: view.commit_index,
        nodes: view.nodes.iter().map(node_status).collect(),
        reporter_id: view.reporter_id,
        applied_index: view.applied_index,
        snapshot_index: view.snapshot_index,
        purged_index: view.purged_index,
        degraded_segments: 0,
        degraded_by_missing: Default::default(),
        repair: None,
        audit_entries: 0,
        audit_unsealed: 0,
    }
}

pub(super) fn bucket_pb(b: &Bucket) -> pb::Bucket {
    pb::Bucket {
        name: b.name.clone(),
        data: b.data,
        parity: b.parity,
        created_ms: b.created_ms,
        retention: b.retention.clone().unwrap_or_default(),
    }
}

pub(super) fn policy_pb(p: &RetentionPolicy) -> pb::RetentionPolicy {
    pb::RetentionPolicy {
        name: p.name.clone(),
        keep_min_ms: p.keep_min_ms,
        delete_after_ms: p.delete_after_ms,
        created_ms: p.created_ms,
    }
}

pub(super) fn principal_pb(p: &Principal, grants: &[Grant], tokens: &[Token]) -> pb::Principal {
    pb::Principal {
        name: p.name.clone(),
        created_ms: p.created_ms,
        grants: grants
            .iter()
            .map(|g| pb::RoleGrant {
                role: g.role.as_str().to_string(),
                bucket: g.bucket.clone(),
            })
            .collect(),
        tokens: tokens
            .iter()
            .map(|t| pb::TokenInfo {
                id: t.id.clone(),
                created_ms: t.created_ms,
            })
            .collect(),
    }
}

pub(super) fn entry_pb(e: &AuditEntry) -> pb::AuditEntry {
    let r = &e.record;
    pb::AuditEntry {
        seq: e.seq,
        time_ms: r.time_ms,
        node: r.node,
        principal: r.principal.clone(),
        action: r.action.clone(),
        bucket: r.bucket.clone(),
        key: r.key.clone(),
        object_sha256: r.object_sha256.clone(),
        outcome: r.outcome.clone(),
        prev_hash: e.prev_hash.clone(),
        hash: e.hash.clone(),
    }
}
