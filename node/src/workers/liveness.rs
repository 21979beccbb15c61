//! Liveness, run by the leader: a node not heard from for `down_after` is
//! marked `down` (placement stops choosing it); a down node heard from again
//! is marked `active`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use super::{StatusHandle, Worker, WorkerError};
use crate::meta::{now_ms, Command, NodeState};
use crate::raft::Cluster;

counters! {
    /// What liveness has seen.
    LivenessCounters => Liveness {
        /// Node state changes made since the node started.
        state_changes,
        /// Nodes down at the last pass.
        nodes_down,
    }
}

/// The liveness worker.
pub struct Liveness {
    cluster: Arc<Cluster>,
    down_after: Duration,
    /// When this node last became leader: nodes never heard from count
    /// from then, so a new leader does not mark everyone down at once.
    leading_since: Option<Instant>,
    /// This node's removal has been logged.
    removal_told: bool,
}

impl Liveness {
    /// Marks nodes down after `down_after` of silence.
    pub fn new(cluster: Arc<Cluster>, down_after: Duration) -> Self {
        Self {
            cluster,
            down_after,
            leading_since: None,
            removal_told: false,
        }
    }

    async fn check(&mut self, status: &StatusHandle<LivenessCounters>) -> Result<(), WorkerError> {
        if self.cluster.is_removed() {
            if !self.removal_told {
                self.removal_told = true;
                tracing::warn!(
                    node_id = self.cluster.config().node_id,
                    "this node has been removed from the cluster: it takes no leader work \
                     and receives no new data; stop it and wipe its data dir"
                );
            }
            self.leading_since = None;
            status.progress("removed from the cluster");
            return Ok(());
        }
        if !self.cluster.is_leader() {
            self.leading_since = None;
            status.progress("not the leader; the leader watches liveness");
            return Ok(());
        }
        let since = *self.leading_since.get_or_insert_with(Instant::now);
        let own = self.cluster.config().node_id;
        let nodes = self.cluster.meta().nodes()?;
        let mut down = 0;
        for node in nodes
            .iter()
            .filter(|n| n.id != own && n.state != NodeState::Removed)
        {
            let silent = self
                .cluster
                .contact()
                .since(node.id)
                .unwrap_or_else(|| since.elapsed());
            let next = match node.state {
                NodeState::Active if silent > self.down_after => Some(NodeState::Down),
                NodeState::Down if silent < self.down_after => Some(NodeState::Active),
                _ => None,
            };
            if next == Some(NodeState::Down) || (node.state == NodeState::Down && next.is_none()) {
                down += 1;
            }
            if let Some(state) = next {
                tracing::warn!(
                    node_id = node.id,
                    silent_ms = silent.as_millis() as u64,
                    state = state.as_str(),
                    "node liveness changed"
                );
                self.cluster
                    .propose(Command::SetNodeState {
                        id: node.id,
                        state,
                        since_ms: now_ms(),
                    })
                    .await?;
                status.count(|c| c.state_changes += 1);
            }
        }
        status.count(|c| c.nodes_down = down);
        if self.cluster.seat_caught_up_learners().await? {
            tracing::info!("a learner that caught up was given a vote");
        }
        status.progress(format!("{down} node(s) down"));
        Ok(())
    }
}

impl Worker for Liveness {
    type Counters = LivenessCounters;

    fn name(&self) -> &'static str {
        "liveness"
    }

    fn interval(&self) -> Duration {
        (self.down_after / 4).clamp(Duration::from_millis(200), Duration::from_secs(5))
    }

    fn pass<'a>(
        &'a mut self,
        status: &'a StatusHandle<LivenessCounters>,
    ) -> BoxFuture<'a, Result<(), WorkerError>> {
        Box::pin(self.check(status))
    }
}
