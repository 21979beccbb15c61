//! Adding and removing nodes; voters stay min(5, n) and spread over zones;
//! a node whose catch-up outlasts `nodes add` gets its vote once caught up.

use std::collections::BTreeMap;

use std::time::{Duration, Instant};

use tresor_node::config::RaftTuning;
use tresor_proto::v1 as pb;
use tresor_tests::{cluster, fast_raft, spec, wait_for, Harness, SETTLE_TIMEOUT};

fn roles(status: &pb::StatusResponse) -> BTreeMap<u64, String> {
    status
        .nodes
        .iter()
        .map(|n| (n.id, n.role.clone()))
        .collect()
}

fn voters_per_zone(status: &pb::StatusResponse) -> BTreeMap<String, usize> {
    let mut zones = BTreeMap::new();
    for n in status.nodes.iter().filter(|n| n.role == "voter") {
        *zones.entry(n.zone.clone()).or_default() += 1;
    }
    zones
}

async fn remove(h: &Harness, via: u64, id: u64) -> Result<(), tonic::Status> {
    h.admin(via)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?
        .remove_node(pb::RemoveNodeRequest { id, force: false })
        .await
        .map(|_| ())
}

async fn status_via(h: &Harness, id: u64) -> anyhow::Result<pb::StatusResponse> {
    Ok(h.admin(id)
        .await?
        .status(pb::StatusRequest { local: false })
        .await?
        .into_inner())
}

#[tokio::test]
async fn six_nodes_over_three_zones_keep_five_spread_voters() -> anyhow::Result<()> {
    let mut h = cluster!(6, zones = 3)?;
    h.form().await?;
    let leader = h.leader().await?;
    let status = h.local_status(leader).await?;
    let spread = voters_per_zone(&status);
    assert_eq!(spread.values().sum::<usize>(), 5);
    assert!(
        spread.values().all(|v| *v >= 1 && *v <= 2),
        "voters {spread:?}"
    );
    assert_eq!(
        roles(&status).values().filter(|r| *r == "learner").count(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn add_node_then_remove_learner_voter_and_leader() -> anyhow::Result<()> {
    let mut h = cluster!(5, zones = 3)?;
    h.form().await?;
    let leader = h.leader().await?;

    // Add a sixth node through a follower: it joins as a learner.
    let follower = h
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    let new_id = h.spawn_new_node("dc3").await?;
    let added = h.add_node(follower, new_id).await?;
    assert_eq!(added.id, new_id);
    assert_eq!(added.role, "learner");
    h.create_bucket(leader, "after-add", 2, 1).await?;
    h.wait_for_buckets(new_id, &["after-add".to_string()])
        .await?;

    // Remove the learner: gone from the list, voters unchanged.
    remove(&h, follower, new_id).await?;
    let status = status_via(&h, leader).await?;
    assert!(!roles(&status).contains_key(&new_id));
    assert_eq!(voters_per_zone(&status).values().sum::<usize>(), 5);
    h.stop(new_id).await;

    // Add another learner, then remove a voter that is not the leader: the
    // learner takes the seat, so there are still five voters.
    let learner = h.spawn_new_node("dc1").await?;
    h.add_node(leader, learner).await?;
    let voter = h
        .local_status(leader)
        .await?
        .nodes
        .iter()
        .find(|n| n.role == "voter" && n.id != leader)
        .map(|n| n.id)
        .expect("a non-leader voter");
    remove(&h, leader, voter).await?;
    h.stop(voter).await;
    let status = wait_for("learner promoted", SETTLE_TIMEOUT, || async {
        let s = status_via(&h, leader).await?;
        Ok((roles(&s).get(&learner).map(String::as_str) == Some("voter")).then_some(s))
    })
    .await?;
    assert_eq!(voters_per_zone(&status).values().sum::<usize>(), 5);
    assert!(!roles(&status).contains_key(&voter));

    // Remove the leader itself: a new leader is elected among the rest and
    // the cluster keeps accepting writes.
    remove(&h, leader, leader).await?;
    h.stop(leader).await;
    let new_leader = h.leader().await?;
    assert_ne!(new_leader, leader);
    h.create_bucket(new_leader, "after-leader-removal", 4, 2)
        .await?;
    let status = status_via(&h, new_leader).await?;
    assert!(!roles(&status).contains_key(&leader));
    assert_eq!(voters_per_zone(&status).values().sum::<usize>(), 4);

    // Removed ids are never reused.
    let err = h
        .add_node(new_leader, voter)
        .await
        .expect_err("id of a removed node");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err}");
    Ok(())
}

#[tokio::test]
async fn a_node_still_catching_up_gets_its_vote_once_caught_up() -> anyhow::Result<()> {
    // Snapshots often and no log kept behind them: the new node catches
    // up from a snapshot, whose loading it is told to stretch to 4 s.
    let mut s = spec(3, 3);
    s.raft = RaftTuning {
        snapshot_after_entries: 50,
        keep_entries_after_snapshot: 0,
        add_wait_secs: 1,
        ..fast_raft()
    };
    let mut h = cluster!(spec = s)?;
    h.form().await?;
    let leader = h.leader().await?;
    h.create_bucket(leader, "footage", 2, 1).await?;
    for i in 0..60 {
        h.put(leader, "footage", &format!("clip-{i}"), b"clip")
            .await?;
    }
    let applied = h.local_status(leader).await?.applied_index;
    wait_for("the leader compacts its log", SETTLE_TIMEOUT, || async {
        let s = h.local_status(leader).await?;
        Ok(s.purged_index.filter(|p| *p + 60 > applied))
    })
    .await?;
    let new = h
        .spawn_new_node_armed("dc1", Some("snapshot::before_load=sleep(4000)"))
        .await?;
    let asked = Instant::now();
    let answer = h.add_node(leader, new).await;
    let refused = answer.expect_err("the new node cannot have caught up within 1 s");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("still catching up"),
        "{}",
        refused.message()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "add waited {:?}",
        asked.elapsed()
    );
    // Four nodes in three zones: four voters, the newcomer among them once
    // it has caught up.
    wait_for("the new node gets its vote", SETTLE_TIMEOUT, || async {
        let status = status_via(&h, leader).await?;
        Ok((roles(&status).get(&new).map(String::as_str) == Some("voter")).then_some(()))
    })
    .await?;
    let status = status_via(&h, new).await?;
    assert_eq!(voters_per_zone(&status).values().sum::<usize>(), 4);
    Ok(())
}
