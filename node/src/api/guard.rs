//! Who may call the internal services: member nodes only.

use crate::meta::{MetaStore, NodeState};
use crate::tls::{peer_identity, PeerIdentity};

/// How long a removed node's certificate still opens the internal services.
pub const REMOVAL_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Lets only member nodes call the internal services (Raft, Shards): the
/// caller must present a node certificate (checked against the cluster CA
/// by TLS) naming a current member: a node in this node's Raft membership
/// (which still holds a node while its removal is being committed), or in
/// its node registry and not removed. A node whose registry is still empty
/// has not joined a cluster yet (it is being added), so it accepts any node
/// certificate. Bearer tokens are never accepted here. With `insecure`
/// everything passes.
///
/// A removed node stays accepted for [`REMOVAL_GRACE`] after its removal:
/// a removed leader goes on leading until it is stopped or hears of a newer
/// term, and must be able to finish the call that removed it (its audit
/// record, for one). After that its certificate opens nothing.
#[derive(Clone)]
pub struct MemberGuard {
    meta: MetaStore,
    raft: crate::raft::Raft,
    insecure: bool,
}

impl MemberGuard {
    /// A guard reading membership from `raft` and the registry in `meta`.
    pub fn new(meta: MetaStore, raft: crate::raft::Raft, insecure: bool) -> Self {
        Self {
            meta,
            raft,
            insecure,
        }
    }

    fn in_raft_membership(&self, id: u64) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some()
    }

    /// `Ok` if the caller of `request` may use the internal services.
    pub fn check<T>(&self, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
        if self.insecure {
            return Ok(());
        }
        let refused = |status: tonic::Status| {
            tracing::warn!(
                remote = ?request.remote_addr(),
                reason = status.message(),
                "internal RPC refused"
            );
            Err(status)
        };
        let id = match peer_identity(request) {
            Some(PeerIdentity::Node(id)) => id,
            Some(PeerIdentity::Client(_)) => {
                return refused(tonic::Status::permission_denied(
                    "internal RPCs need a member node's certificate, not a client certificate",
                ))
            }
            None if request.peer_certs().is_some() => {
                return refused(tonic::Status::permission_denied(
                    "internal RPCs need a member node's certificate; this certificate names no tresor node",
                ))
            }
            None => {
                return refused(tonic::Status::unauthenticated(
                    "internal RPCs need a member node's certificate; none was presented",
                ))
            }
        };
        let unavailable = |e: crate::meta::StoreError| {
            tonic::Status::unavailable(format!("cannot read the node registry: {e}"))
        };
        if self.in_raft_membership(id) {
            return Ok(());
        }
        match self.meta.node(id).map_err(unavailable)? {
            Some(record) if record.state != NodeState::Removed => Ok(()),
            Some(record)
                if crate::meta::now_ms().saturating_sub(record.state_since_ms)
                    < REMOVAL_GRACE.as_millis() as u64 =>
            {
                Ok(())
            }
            Some(_) => refused(tonic::Status::permission_denied(format!(
                "node {id} was removed from this cluster"
            ))),
            None if self.meta.nodes().map_err(unavailable)?.is_empty() => Ok(()),
            None => refused(tonic::Status::permission_denied(format!(
                "node {id} is not a member of this cluster"
            ))),
        }
    }
}

impl tonic::service::Interceptor for MemberGuard {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.check(&request)?;
        Ok(request)
    }
}
