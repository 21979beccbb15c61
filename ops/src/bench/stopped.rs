//! Driving a stopped or restarting local cluster for the benches: its
//! status with a deadline, waiting for it to settle, and a metadata-only
//! fill of its stopped nodes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use tresor_node::devcluster::fill::Fill;
use tresor_node::devcluster::LocalCluster;
use tresor_proto::v1 as pb;

use super::CALL_TIMEOUT;

/// Longest wait for the cluster to settle (stop, restart, sealing).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(900);

/// Status of the cluster as `endpoint` sees it (`local`: its own indexes).
pub(super) async fn status(endpoint: &str, local: bool) -> anyhow::Result<pb::StatusResponse> {
    let mut admin = tresor_client::admin(endpoint).await?;
    let s = tokio::time::timeout(CALL_TIMEOUT, admin.status(pb::StatusRequest { local }))
        .await
        .map_err(|_| anyhow!("status: no answer within {CALL_TIMEOUT:?}"))??;
    Ok(s.into_inner())
}

/// Waits until `ready` says yes, polling every half second, at most
/// [`SETTLE_TIMEOUT`].
pub(super) async fn settle<F, Fut>(what: &str, mut ready: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let started = Instant::now();
    loop {
        // A node that is restarting or electing answers with an error.
        if ready().await.unwrap_or(false) {
            return Ok(());
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            return Err(anyhow!("{what}: not within {SETTLE_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Stops the local cluster once every node has applied the same entries,
/// adds `fill` to every node's state, and starts it again; returns the
/// leader's applied index after the restart (the log before it does not
/// hold the fill).
pub(crate) async fn fill_stopped(cluster: &mut LocalCluster, fill: Fill) -> anyhow::Result<u64> {
    let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.endpoint()).collect();
    settle("every node applied the same entries", || async {
        let commit = status(&nodes[0], false).await?.commit_index;
        for n in &nodes {
            if status(n, true).await?.applied_index != commit {
                return Ok(false);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(status(&nodes[0], false).await?.commit_index == commit)
    })
    .await?;
    cluster.stop_all(Duration::from_secs(30)).await;
    let dirs: Vec<PathBuf> = cluster
        .nodes
        .iter()
        .map(|n| n.config.data_dir.clone())
        .collect();
    let started = Instant::now();
    let (objects, audit) = (fill.objects.clone(), fill.audit);
    tokio::task::spawn_blocking(move || tresor_node::devcluster::fill::fill(&dirs, &fill))
        .await??;
    eprintln!(
        "metadata-only fill of objects {objects:?} and {audit} audit entries on {} nodes: {:.0} s",
        nodes.len(),
        started.elapsed().as_secs_f64()
    );
    cluster.start_all(SETTLE_TIMEOUT).await?;
    settle("a leader after the restart", || async {
        Ok(status(&nodes[0], false).await?.leader_id.is_some())
    })
    .await?;
    Ok(status(&nodes[0], false).await?.applied_index)
}
