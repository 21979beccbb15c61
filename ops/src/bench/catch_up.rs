//! The last figure of `bench scale`: how long a node added to the filled
//! local cluster takes to catch up (from a snapshot), and its memory then.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use tresor_node::devcluster::LocalCluster;
use tresor_proto::v1 as pb;

use super::{current_rss, CALL_TIMEOUT};

/// How a node added at the end caught up.
#[derive(Debug, Clone, Copy)]
pub(super) struct CaughtUp {
    /// Seconds from `nodes add` to the leader's commit index.
    pub secs: f64,
    /// Its RSS then.
    pub rss: u64,
    /// The snapshot it installed (its size), if it kept one.
    pub snapshot_bytes: Option<u64>,
}

/// Adds a node to the local cluster and times its catch-up to the
/// leader's commit index at the time it was added.
pub(super) async fn catch_up(
    cluster: &mut LocalCluster,
    endpoints: &[String],
) -> anyhow::Result<CaughtUp> {
    let index = cluster.define_node("dc1")?;
    let id = cluster.nodes[index].config.node_id;
    cluster.start_node(id, Duration::from_secs(30)).await?;
    let node = &cluster.nodes[index];
    let mut admin = tresor_client::admin(&endpoints[0]).await?;
    let target = admin
        .status(pb::StatusRequest { local: false })
        .await?
        .into_inner()
        .commit_index;
    let started = Instant::now();
    let added = admin
        .add_node(pb::AddNodeRequest {
            id,
            addr: node.config.listen.to_string(),
            zone: node.config.zone.clone(),
            capacity: 0,
        })
        .await;
    match added {
        Ok(_) => {}
        // Added, and still loading its snapshot: timed below.
        Err(s) if s.code() == tonic::Code::Unavailable && s.message().contains("catching up") => {}
        Err(s) => return Err(anyhow!("nodes add: {}", s.message())),
    }
    let mut own = tresor_client::admin(&node.endpoint()).await?;
    loop {
        // A node busy loading a snapshot may not answer in time: ask again.
        let applied =
            tokio::time::timeout(CALL_TIMEOUT, own.status(pb::StatusRequest { local: true }))
                .await
                .ok()
                .and_then(|r| r.ok())
                .map_or(0, |r| r.into_inner().applied_index);
        if applied >= target {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(anyhow!("node {id} did not catch up within 10 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let rss = node.pid().and_then(current_rss).unwrap_or(0);
    Ok(CaughtUp {
        secs,
        rss,
        snapshot_bytes: latest_snapshot_bytes(&node.config.data_dir),
    })
}

/// The size of the newest snapshot file a node keeps.
pub(super) fn latest_snapshot_bytes(data_dir: &std::path::Path) -> Option<u64> {
    std::fs::read_dir(data_dir.join("snapshots"))
        .ok()?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
        .filter_map(|e| e.metadata().ok())
        .max_by_key(|m| m.modified().ok())
        .map(|m| m.len())
}
