//! Leader election and metadata replication.

use tresor_tests::{cluster, wait_for, SETTLE_TIMEOUT};

/// Every node's own view names the same leader, and exactly one node
/// believes it leads.
async fn assert_exactly_one_leader(h: &mut tresor_tests::Harness) -> anyhow::Result<u64> {
    let leader = h.leader().await?;
    let mut self_leaders = 0;
    for id in h.running_ids() {
        let status = h.local_status(id).await?;
        assert_eq!(
            status.leader_id,
            Some(leader),
            "node {id} names another leader"
        );
        if status.leader_id == Some(status.reporter_id) {
            self_leaders += 1;
        }
    }
    assert_eq!(self_leaders, 1, "exactly one node must believe it leads");
    Ok(leader)
}

async fn one_leader_and_buckets_everywhere(nodes: usize) -> anyhow::Result<()> {
    let mut h = cluster!(nodes)?;
    h.form().await?;
    let leader = assert_exactly_one_leader(&mut h).await?;
    let status = h.local_status(leader).await?;
    let voters = status.nodes.iter().filter(|n| n.role == "voter").count();
    assert_eq!(voters, nodes.min(5));

    // A bucket created through each node (followers forward to the leader)
    // becomes visible on every node.
    let mut names = Vec::new();
    for id in h.ids() {
        let name = format!("via-node-{id}");
        let b = h.create_bucket(id, &name, 4, 2).await?;
        assert_eq!((b.name.as_str(), b.data, b.parity), (name.as_str(), 4, 2));
        names.push(name);
    }
    for id in h.ids() {
        h.wait_for_buckets(id, &names).await?;
    }
    // Every node agrees on the cluster id and the member list.
    let cluster_id = status.cluster_id.clone();
    assert!(!cluster_id.is_empty());
    for id in h.ids() {
        let s = wait_for("node sees all members", SETTLE_TIMEOUT, || async {
            let s = h.local_status(id).await?;
            Ok((s.nodes.len() == nodes).then_some(s))
        })
        .await?;
        assert_eq!(s.cluster_id, cluster_id);
    }
    Ok(())
}

#[tokio::test]
async fn three_nodes_elect_one_leader_and_replicate_buckets() -> anyhow::Result<()> {
    one_leader_and_buckets_everywhere(3).await
}

#[tokio::test]
async fn five_nodes_elect_one_leader_and_replicate_buckets() -> anyhow::Result<()> {
    one_leader_and_buckets_everywhere(5).await
}

#[tokio::test]
async fn leader_reports_recent_contact_with_every_follower() -> anyhow::Result<()> {
    let mut h = cluster!(3)?;
    h.form().await?;
    let leader = h.leader().await?;
    // Status through a follower is answered with the leader's view.
    let follower = h
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let status = h
        .admin(follower)
        .await?
        .status(tresor_proto::v1::StatusRequest { local: false })
        .await?
        .into_inner();
    assert_eq!(status.reporter_id, leader);
    for n in &status.nodes {
        if n.id == leader {
            assert_eq!(n.last_contact_ms, None);
        } else {
            let ms = n.last_contact_ms.expect("followers have been heard from");
            assert!(ms < 5_000, "node {} last heard {ms} ms ago", n.id);
        }
        assert_eq!(n.state, "active");
    }
    Ok(())
}
