//! Membership changes: adding a node (checked first), draining, removing,
//! and keeping the voters spread over zones. Each waits for its own commit
//! with a bound and reports what it knows.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};

use super::cluster::{
    raft_write_error, Cluster, ClusterError, NodeView, CAUGHT_UP_LAG, MEMBERSHIP_TIMEOUT,
};
use super::voters::{choose_voters, Candidate};
use super::NodeId;
use crate::config::{validate_host_port, validate_zone};
use crate::meta::{now_ms, Command, MetaError, NodeRecord, NodeState};

impl Cluster {
    /// Adds a node as a learner, then rebalances voters.
    pub async fn add_node(&self, mut record: NodeRecord) -> Result<NodeView, ClusterError> {
        if record.id == 0 {
            return Err(MetaError::InvalidArgument("node id must be at least 1".into()).into());
        }
        validate_zone(&record.zone)
            .map_err(|r| MetaError::InvalidArgument(format!("invalid zone: {r}")))?;
        validate_host_port(&record.addr)
            .map_err(|r| MetaError::InvalidArgument(format!("invalid address: {r}")))?;
        if !self.is_leader() {
            return Err(ClusterError::NotLeader {
                leader: self.leader(),
            });
        }
        if let Some(existing) = self.meta.node(record.id)? {
            return Err(MetaError::AlreadyExists(format!(
                "node id {} is already in use{} (ids are never reused)",
                record.id,
                if existing.state == NodeState::Removed {
                    " by a removed node"
                } else {
                    ""
                }
            ))
            .into());
        }
        self.check_newcomer(&mut record).await?;
        record.state = NodeState::Active;
        record.added_ms = now_ms();
        record.state_since_ms = record.added_ms;
        self.propose(Command::AddNode {
            node: record.clone(),
        })
        .await?;
        let wait = Duration::from_secs(self.config.raft.add_wait_secs);
        let still = || {
            ClusterError::Unavailable(format!(
                "node {} is added and still catching up after {} s (a large state takes \
                 minutes); the leader gives it a vote once it has — see `status`",
                record.id,
                wait.as_secs()
            ))
        };
        let deadline = tokio::time::Instant::now() + wait;
        {
            let _one = self.membership_changes.lock().await;
            let add = self
                .raft
                .add_learner(record.id, BasicNode::new(record.addr.clone()), true);
            tokio::time::timeout_at(deadline, add)
                .await
                .map_err(|_| still())?
                .map_err(raft_write_error)?;
        }
        // openraft calls a learner caught up thousands of entries behind; a
        // vote waits until it is within `CAUGHT_UP_LAG`.
        while !caught_up(&self.raft.metrics().borrow(), record.id) {
            if tokio::time::Instant::now() >= deadline {
                return Err(still());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.rebalance_voters(None).await?;
        tracing::info!(
            node_id = record.id,
            addr = record.addr,
            zone = record.zone,
            "node added"
        );
        let view = self.view().await?;
        view.nodes
            .into_iter()
            .find(|n| n.record.id == record.id)
            .ok_or_else(|| {
                ClusterError::Unavailable(format!("node {} vanished while being added", record.id))
            })
    }

    /// Asks the node at `record.addr` who it is, so an operator's typo cannot
    /// add the wrong machine or a node of another cluster.
    pub(super) async fn check_newcomer(&self, record: &mut NodeRecord) -> Result<(), ClusterError> {
        let mut client = tresor_client::admin(&record.addr)
            .await
            .map_err(|e| ClusterError::Unavailable(format!("cannot reach the new node: {e}")))?;
        let info = tokio::time::timeout(
            Duration::from_secs(5),
            client.node_info(tresor_proto::v1::NodeInfoRequest {}),
        )
        .await
        .map_err(|_| {
            ClusterError::Unavailable(format!("node at {} did not answer in time", record.addr))
        })?
        .map_err(|s| match s.code() {
            // A node of our CA turns our node certificate away only once
            // it belongs to a cluster: another one.
            tonic::Code::Unauthenticated => MetaError::FailedPrecondition(format!(
                "the node at {} belongs to another cluster ({}); give it an empty data_dir",
                record.addr,
                s.message()
            ))
            .into(),
            _ => ClusterError::Unavailable(format!(
                "node at {} did not answer: {}",
                record.addr,
                s.message()
            )),
        })?
        .into_inner();
        if info.node_id != record.id {
            return Err(MetaError::InvalidArgument(format!(
                "the node at {} has id {} in its config, not {}",
                record.addr, info.node_id, record.id
            ))
            .into());
        }
        if info.zone != record.zone {
            return Err(MetaError::InvalidArgument(format!(
                "the node at {} is in zone {:?} by its config, not {:?}",
                record.addr, info.zone, record.zone
            ))
            .into());
        }
        let ours = self.meta.cluster_id()?.unwrap_or_default();
        if info.initialized && info.cluster_id != ours {
            return Err(MetaError::FailedPrecondition(format!(
                "the node at {} already belongs to another cluster ({}); give it an empty data_dir",
                record.addr,
                if info.cluster_id.is_empty() {
                    "unknown"
                } else {
                    &info.cluster_id
                }
            ))
            .into());
        }
        if record.capacity == 0 {
            record.capacity = info.capacity;
        }
        record.incarnation = info.incarnation;
        Ok(())
    }

    /// Marks a node draining: repair moves its shards to other nodes.
    pub async fn drain_node(&self, id: NodeId) -> Result<(), ClusterError> {
        if !self.is_leader() {
            return Err(ClusterError::NotLeader {
                leader: self.leader(),
            });
        }
        match self.meta.node(id)? {
            None => return Err(MetaError::NotFound(format!("no node with id {id}")).into()),
            Some(n) if n.state == NodeState::Removed => {
                return Err(MetaError::NotFound(format!("node {id} is removed")).into())
            }
            Some(_) => {}
        }
        self.propose(Command::SetNodeState {
            id,
            state: NodeState::Draining,
            since_ms: now_ms(),
        })
        .await?;
        tracing::info!(node_id = id, "node draining");
        Ok(())
    }

    /// Removes a node from the cluster, voter, learner or leader.
    pub async fn remove_node(&self, id: NodeId, force: bool) -> Result<(), ClusterError> {
        if !self.is_leader() {
            return Err(ClusterError::NotLeader {
                leader: self.leader(),
            });
        }
        let Some(record) = self.meta.node(id)? else {
            return Err(MetaError::NotFound(format!("no node with id {id}")).into());
        };
        let holds = self
            .meta
            .health()?
            .shards_per_node
            .get(&id)
            .copied()
            .unwrap_or(0);
        if holds > 0 && !force && record.state != NodeState::Removed {
            return Err(MetaError::FailedPrecondition(format!(
                "node {id} still holds {holds} shard file(s); drain it first (`tresor-node nodes drain --id {id}`), \
                 or remove it with --force to have them rebuilt from the other shards"
            ))
            .into());
        }
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let in_membership = membership.membership().get_node(&id).is_some();
        if record.state == NodeState::Removed && !in_membership {
            return Err(MetaError::NotFound(format!("node {id} is already removed")).into());
        }
        let voters: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
        if voters.len() == 1 && voters.contains(&id) {
            return Err(MetaError::FailedPrecondition(format!(
                "node {id} is the cluster's only voter; add another node first"
            ))
            .into());
        }
        if record.state != NodeState::Removed {
            self.propose(Command::RemoveNode { id }).await?;
        }
        let changed = async {
            self.rebalance_voters(Some(id)).await?;
            let still_member = self
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&id)
                .is_some();
            if still_member {
                let mut gone = BTreeSet::new();
                gone.insert(id);
                self.change_membership(ChangeMembers::RemoveNodes(gone), false)
                    .await?;
            }
            Ok::<(), ClusterError>(())
        }
        .await;
        if let Err(e) = changed {
            // A leader removing itself may lose leadership before it hears
            // the change commit; what it knows of the membership decides.
            if self.voters_now().contains(&id) || id != self.config.node_id {
                return Err(e);
            }
            tracing::warn!(node_id = id, error = %e, "removed myself; the change's last step was not confirmed here");
        }
        tracing::info!(node_id = id, "node removed");
        Ok(())
    }

    /// Recomputes the voter set over the members that are not removed
    /// (and not `leaving`), and commits it if it changed. A voter that
    /// loses its seat stays a learner unless it is `leaving`. A learner is
    /// a candidate only once caught up.
    pub(super) async fn rebalance_voters(
        &self,
        leaving: Option<NodeId>,
    ) -> Result<(), ClusterError> {
        // The voters are read and changed under one hold: another change
        // of this node's cannot slip in between.
        let _one = self.membership_changes.lock().await;
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let current: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
        let records = self.meta.nodes()?;
        let metrics = self.raft.metrics().borrow().clone();
        let candidates: Vec<Candidate<'_>> = records
            .iter()
            .filter(|r| r.state != NodeState::Removed && Some(r.id) != leaving)
            .filter(|r| membership.membership().get_node(&r.id).is_some())
            // A learner still catching up would hold back every commit.
            .filter(|r| current.contains(&r.id) || caught_up(&metrics, r.id))
            .map(|r| Candidate {
                id: r.id,
                zone: &r.zone,
            })
            .collect();
        let wanted = choose_voters(&candidates, &current);
        if wanted.is_empty() || wanted == current {
            return Ok(());
        }
        tracing::info!(?current, ?wanted, "changing voters");
        self.change_membership_held(ChangeMembers::ReplaceAllVoters(wanted), leaving.is_none())
            .await
    }

    /// On the leader: gives a vote to learners that have caught up where
    /// the zone quotas want one (a node whose `nodes add` answered before
    /// it caught up). Whether the voters changed.
    pub async fn seat_caught_up_learners(&self) -> Result<bool, ClusterError> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.config.node_id) {
            return Ok(false);
        }
        let membership = metrics.membership_config.membership();
        if !membership.learner_ids().any(|id| caught_up(&metrics, id)) {
            return Ok(false);
        }
        let before = self.voters_now();
        self.rebalance_voters(None).await?;
        Ok(self.voters_now() != before)
    }

    /// The voters as this node's Raft knows them now.
    fn voters_now(&self) -> BTreeSet<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// Commits a membership change, waiting at most [`MEMBERSHIP_TIMEOUT`].
    /// A leader that removes itself may never hear its own change commit;
    /// past the bound the caller is told the outcome is unknown, and
    /// `status` shows the membership as it is.
    pub(super) async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, BasicNode>,
        retain: bool,
    ) -> Result<(), ClusterError> {
        let _one = self.membership_changes.lock().await;
        self.change_membership_held(change, retain).await
    }

    /// [`Cluster::change_membership`], with `membership_changes` held by
    /// the caller.
    async fn change_membership_held(
        &self,
        change: ChangeMembers<NodeId, BasicNode>,
        retain: bool,
    ) -> Result<(), ClusterError> {
        match tokio::time::timeout(
            MEMBERSHIP_TIMEOUT,
            self.raft.change_membership(change, retain),
        )
        .await
        {
            Ok(done) => done.map(|_| ()).map_err(raft_write_error),
            Err(_) => Err(ClusterError::Unavailable(format!(
                "the membership change did not commit within {MEMBERSHIP_TIMEOUT:?}; \
                 its outcome is unknown: check `tresor-node status`"
            ))),
        }
    }
}

/// Whether `id` is within [`CAUGHT_UP_LAG`] entries of the leader's log,
/// as the leader's replication metrics say (false elsewhere).
fn caught_up(metrics: &openraft::RaftMetrics<NodeId, BasicNode>, id: NodeId) -> bool {
    let last = metrics.last_log_index.unwrap_or(0);
    metrics
        .replication
        .as_ref()
        .and_then(|r| r.get(&id))
        .and_then(|matched| matched.as_ref())
        .is_some_and(|m| m.index + CAUGHT_UP_LAG >= last)
}
