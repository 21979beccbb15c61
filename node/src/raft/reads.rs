//! Reading the control plane: who leads, whether this node may serve a
//! linearizable read (and the proof that it caught up), and views of the
//! whole cluster for status.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::cluster::{
    CaughtUp, Cluster, ClusterError, ClusterView, NodeView, Role, READ_INDEX_TIMEOUT, RETRY_WINDOW,
};
use super::NodeId;
use crate::meta::{now_ms, NodeRecord, NodeState};
use tresor_proto::internal::v1::raft_client::RaftClient;

impl Cluster {
    /// The current leader and its address, if known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics().borrow().clone();
        let id = metrics.current_leader?;
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())?;
        Some((id, addr))
    }

    /// Whether this node is the leader: it believes so, and it is still a
    /// voter of the membership it leads. A leader that committed its own
    /// removal can go on believing it leads a cluster it is no longer part
    /// of; it must not act as leader (liveness, repair, expiry).
    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        let me = self.config.node_id;
        metrics.current_leader == Some(me)
            && metrics
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == me)
    }

    /// Whether this node has been removed from the cluster (its record says
    /// so, or the membership no longer names it once it had joined).
    pub fn is_removed(&self) -> bool {
        let me = self.config.node_id;
        self.meta
            .node(me)
            .ok()
            .flatten()
            .is_some_and(|n| n.state == NodeState::Removed)
    }

    pub(super) fn own_record(&self) -> NodeRecord {
        NodeRecord {
            id: self.config.node_id,
            addr: self.config.advertised_addr(),
            zone: self.config.zone.clone(),
            capacity: self.capacity,
            state: NodeState::Active,
            added_ms: now_ms(),
            state_since_ms: now_ms(),
            incarnation: self.incarnation.clone(),
        }
    }

    /// A Raft-service client to the current leader (cached).
    pub(super) async fn leader_client(
        &self,
    ) -> Result<(NodeId, RaftClient<tonic::transport::Channel>), ClusterError> {
        let Some((leader, addr)) = self.leader() else {
            return Err(ClusterError::NotLeader { leader: None });
        };
        let mut cached = self.leader_raft_client.lock().await;
        if let Some((a, c)) = cached.as_ref() {
            if *a == addr {
                return Ok((leader, c.clone()));
            }
        }
        let channel = tresor_client::connect_lazy(&addr)
            .map_err(|e| ClusterError::Unavailable(format!("leader {leader}: {e}")))?;
        let client = RaftClient::new(channel)
            .max_decoding_message_size(tresor_client::channel::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(tresor_client::channel::MAX_MESSAGE_BYTES);
        *cached = Some((addr, client.clone()));
        Ok((leader, client))
    }

    /// Waits until this node's state machine reflects every write committed
    /// before the call: on the leader by confirming leadership with a quorum,
    /// on a follower by asking the leader for its read index and waiting to
    /// apply up to it. Reads of the local metadata after this are
    /// linearizable.
    pub async fn linearizable_read(&self) -> Result<CaughtUp, ClusterError> {
        // A leader change or a slow heartbeat round fails one attempt; a
        // few quick retries hide that from clients.
        let deadline = std::time::Instant::now() + RETRY_WINDOW;
        loop {
            match self.linearizable_read_once().await {
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "linearizable read retry");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                done => return done.map(|()| CaughtUp(())),
            }
        }
    }

    pub(super) async fn linearizable_read_once(&self) -> Result<(), ClusterError> {
        if self.is_leader() {
            return tokio::time::timeout(READ_INDEX_TIMEOUT, self.raft.ensure_linearizable())
                .await
                .map_err(|_| {
                    ClusterError::Unavailable(
                        "leadership could not be confirmed in time (no quorum?)".into(),
                    )
                })?
                .map(|_| ())
                .map_err(|e| {
                    ClusterError::Unavailable(format!("leadership could not be confirmed: {e}"))
                });
        }
        let (leader, mut client) = self.leader_client().await?;
        let index = tokio::time::timeout(
            READ_INDEX_TIMEOUT,
            client.read_index(tresor_proto::internal::v1::ReadIndexRequest {}),
        )
        .await
        .map_err(|_| {
            ClusterError::Unavailable(format!(
                "leader {leader} did not answer a read index in time"
            ))
        })?
        .map_err(|s| {
            ClusterError::Unavailable(format!(
                "leader {leader} refused a read index: {}",
                s.message()
            ))
        })?
        .into_inner()
        .index;
        self.raft
            .wait(Some(READ_INDEX_TIMEOUT))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|e| {
                ClusterError::Unavailable(format!("this node did not catch up for a read: {e}"))
            })?;
        Ok(())
    }

    /// The cluster as seen from here. On the leader, it includes how long ago
    /// each node was last heard from.
    pub async fn view(&self) -> Result<ClusterView, ClusterError> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let leader_here = metrics.current_leader == Some(self.config.node_id);
        let nodes = self
            .meta
            .nodes()?
            .into_iter()
            .filter(|r| r.state != NodeState::Removed)
            .map(|record| {
                let role = if voters.contains(&record.id) {
                    Role::Voter
                } else if membership.get_node(&record.id).is_some() {
                    Role::Learner
                } else {
                    Role::None
                };
                let last_contact_ms = if leader_here && record.id != self.config.node_id {
                    self.contact.since(record.id).map(|d| d.as_millis() as u64)
                } else {
                    None
                };
                NodeView {
                    record,
                    role,
                    last_contact_ms,
                }
            })
            .collect();
        Ok(ClusterView {
            cluster_id: self.meta.cluster_id()?.unwrap_or_default(),
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            commit_index: self.committed.load(Ordering::Relaxed),
            nodes,
            reporter_id: self.config.node_id,
            applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: metrics.snapshot.map(|l| l.index),
            purged_index: metrics.purged.map(|l| l.index),
        })
    }
}
