//! Crashes and restarts: nothing committed is lost, laggards catch up.

use tresor_node::config::RaftTuning;
use tresor_proto::v1 as pb;
use tresor_tests::{cluster, fast_raft, spec, wait_for, Harness, SETTLE_TIMEOUT};

async fn create_buckets(
    h: &Harness,
    via: u64,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        h.create_bucket(via, &name, 4, 2).await?;
        names.push(name);
    }
    Ok(names)
}

#[tokio::test]
async fn killed_leader_is_replaced_and_catches_up_after_restart() -> anyhow::Result<()> {
    let mut h = cluster!(3)?;
    h.form().await?;
    let old_leader = h.leader().await?;
    let mut names = create_buckets(&h, old_leader, "before", 3).await?;

    h.kill(old_leader);
    let new_leader = h.leader().await?;
    assert_ne!(new_leader, old_leader);
    names.extend(create_buckets(&h, new_leader, "during", 3).await?);

    h.restart(old_leader).await?;
    h.wait_for_buckets(old_leader, &names).await?;
    let status = wait_for(
        "restarted node follows the new leader",
        SETTLE_TIMEOUT,
        || async {
            let s = h.local_status(old_leader).await?;
            Ok((s.leader_id == Some(new_leader)).then_some(s))
        },
    )
    .await?;
    assert_eq!(status.nodes.len(), 3);
    // And the restarted node can take writes again (forwarded).
    h.create_bucket(old_leader, "after", 2, 1).await?;
    Ok(())
}

async fn whole_cluster_restart(kill: bool) -> anyhow::Result<()> {
    let mut h = cluster!(3)?;
    h.form().await?;
    let leader = h.leader().await?;
    let names = create_buckets(&h, leader, "kept", 5).await?;
    let before = h.local_status(leader).await?;

    if kill {
        for id in h.ids() {
            h.kill(id);
        }
    } else {
        h.stop_all().await;
    }
    h.start_all().await?;
    let leader = h.leader().await?;
    for id in h.ids() {
        h.wait_for_buckets(id, &names).await?;
        let after = h.local_status(id).await?;
        assert_eq!(after.cluster_id, before.cluster_id);
        let ids = |s: &pb::StatusResponse| {
            s.nodes
                .iter()
                .map(|n| (n.id, n.addr.clone(), n.zone.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&after), ids(&before), "node {id} lost members");
    }
    h.create_bucket(leader, "after-restart", 4, 2).await?;
    Ok(())
}

#[tokio::test]
async fn graceful_whole_cluster_restart_keeps_everything() -> anyhow::Result<()> {
    whole_cluster_restart(false).await
}

#[tokio::test]
async fn killed_whole_cluster_keeps_everything_committed() -> anyhow::Result<()> {
    whole_cluster_restart(true).await
}

#[tokio::test]
async fn node_behind_a_purged_log_catches_up_by_snapshot() -> anyhow::Result<()> {
    let mut spec = spec(3, 3);
    spec.raft = RaftTuning {
        snapshot_after_entries: 10,
        keep_entries_after_snapshot: 0,
        ..fast_raft()
    };
    let mut h = cluster!(spec = spec)?;
    h.form().await?;
    let leader = h.leader().await?;
    let laggard = h
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    let behind_at = h.local_status(laggard).await?.applied_index;
    h.kill(laggard);

    let names = create_buckets(&h, leader, "while-down", 40).await?;
    // The leader's log must no longer hold what the laggard needs, or this
    // test would not exercise snapshot transfer.
    let purged = wait_for("leader purges its log", SETTLE_TIMEOUT, || async {
        let s = h.local_status(leader).await?;
        Ok(s.purged_index.filter(|p| *p > behind_at + 1))
    })
    .await?;
    assert!(purged > behind_at);

    h.restart(laggard).await?;
    h.wait_for_buckets(laggard, &names).await?;
    let s = h.local_status(laggard).await?;
    let snapshot = s.snapshot_index.expect("laggard installed a snapshot");
    assert!(
        snapshot > behind_at,
        "snapshot at {snapshot}, laggard was at {behind_at}"
    );
    Ok(())
}
