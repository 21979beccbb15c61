//! Cluster time: a wall-clock time that a majority of the voters' clocks
//! have reached. Decisions that must never come early — an object expiring,
//! a delete checked against its `keep_until` — use it rather than one
//! node's clock, so a minority of nodes whose clocks run ahead (the leader
//! among them) cannot bring them forward. A clock that runs behind only
//! delays them.

use std::time::Duration;

use tonic::transport::Channel;
use tresor_proto::internal::v1::raft_client::RaftClient;
use tresor_proto::internal::v1::ClockRequest;

use super::cluster::{Cluster, ClusterError};
use super::NodeId;
use crate::meta::now_ms;

/// How long a voter has to answer for its clock.
const CLOCK_TIMEOUT: Duration = Duration::from_secs(2);

/// The latest time a majority of `clocks` (one per voter of `voters`) have
/// reached: the majority-th largest. With fewer clocks than a majority,
/// none.
pub(super) fn majority_time(mut clocks: Vec<u64>, voters: usize) -> Option<u64> {
    let majority = voters / 2 + 1;
    if clocks.len() < majority {
        return None;
    }
    clocks.sort_unstable_by(|a, b| b.cmp(a));
    clocks.get(majority - 1).copied()
}

impl Cluster {
    /// Unix milliseconds that a majority of the voters' clocks have reached
    /// (this node's own clock among them when it votes). Unavailable when
    /// fewer than a majority answer within two seconds.
    pub async fn cluster_time(&self) -> Result<u64, ClusterError> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let me = self.config.node_id;
        let voters: Vec<(NodeId, String)> = membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
            .collect();
        let mut clocks = Vec::with_capacity(voters.len());
        let mut asks = Vec::new();
        for (id, addr) in &voters {
            if *id == me {
                clocks.push(now_ms());
                continue;
            }
            let mut client = self.voter_client(addr).await?;
            asks.push(async move {
                let asked = tokio::time::timeout(CLOCK_TIMEOUT, client.clock(ClockRequest {}));
                match asked.await {
                    Ok(Ok(reply)) => Some(reply.into_inner().now_ms),
                    _ => None,
                }
            });
        }
        clocks.extend(futures::future::join_all(asks).await.into_iter().flatten());
        majority_time(clocks, voters.len()).ok_or_else(|| {
            ClusterError::Unavailable(
                "fewer than a majority of voters told their clocks: no cluster time".into(),
            )
        })
    }

    async fn voter_client(&self, addr: &str) -> Result<RaftClient<Channel>, ClusterError> {
        let mut cached = self.voter_clients.lock().await;
        if let Some(c) = cached.get(addr) {
            return Ok(c.clone());
        }
        let channel = tresor_client::connect_lazy(addr)
            .map_err(|e| ClusterError::Unavailable(format!("voter at {addr}: {e}")))?;
        let client = RaftClient::new(channel);
        // Voters come and go rarely; a stale address is only a few bytes.
        cached.insert(addr.to_string(), client.clone());
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::majority_time;

    #[test]
    fn one_clock_ahead_of_three_does_not_move_cluster_time() {
        let real = 1_000_000;
        assert_eq!(
            majority_time(vec![real + 86_400_000, real, real - 5], 3),
            Some(real)
        );
        // Two of five ahead: still the third.
        assert_eq!(
            majority_time(vec![real + 9, real + 8, real, real - 1, real - 2], 5),
            Some(real)
        );
    }

    #[test]
    fn too_few_clocks_give_no_time() {
        assert_eq!(majority_time(vec![5], 3), None);
        assert_eq!(majority_time(vec![5, 6], 3), Some(5));
        assert_eq!(majority_time(vec![7], 1), Some(7));
    }
}
