//! Full disks. Every node's data dir is a tmpfs of its own, so the test can
//! take a node's free space away and give it back (needs root to mount;
//! skipped with a message otherwise).
//!
//! - One node's disk nearly full: it takes no new shard files, uploads are
//!   placed around it (nothing degraded, nothing lost), and it takes shards
//!   again once space returns.
//! - The leader's disk completely full, metadata store included: Raft's
//!   writes fail, the node stops serving (a new leader is elected, liveness
//!   marks it down) and starts again by itself once space returns, catches
//!   up, and every object reads back right through it.

use std::time::{Duration, Instant};

use tresor_node::config::DataTuning;
use tresor_tests::disk::fill;
use tresor_tests::{cluster, pattern, sha256_hex, spec, wait_for, Harness};

const SHARD: usize = 4096;
const TMPFS_BYTES: u64 = 256 * 1024 * 1024;
const WAIT: Duration = Duration::from_secs(60);

async fn tmpfs_cluster(nodes: usize) -> anyhow::Result<Option<Harness>> {
    let mut s = spec(nodes, 3);
    s.data = DataTuning {
        shard_bytes: SHARD as u32,
        segment_bytes: 64 * 4 * SHARD as u64,
        ..Default::default()
    };
    s.healing.down_after_secs = 3;
    s.http = true;
    let Some(mut h) = cluster!(tmpfs = TMPFS_BYTES, spec = s)? else {
        return Ok(None);
    };
    h.form().await?;
    let leader = h.leader().await?;
    h.create_bucket(leader, "footage", 4, 2).await?;
    Ok(Some(h))
}

/// Puts `count` objects named `<prefix>/<n>` through `via` in turn and
/// returns their keys and SHA-256s.
async fn put_many(
    h: &Harness,
    via: &[u64],
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for n in 0..count {
        let key = format!("{prefix}/{n}");
        let data = pattern(3 * 4 * SHARD + 17 * n, n as u64 + prefix.len() as u64 * 97);
        let node = via[n % via.len()];
        let stored = h
            .put(node, "footage", &key, &data)
            .await
            .map_err(|s| anyhow::anyhow!("put {key} via {node}: {:?} {}", s.code(), s.message()))?;
        anyhow::ensure!(stored.sha256 == sha256_hex(&data), "{key}: wrong SHA-256");
        out.push((key, stored.sha256));
    }
    Ok(out)
}

/// The status line and body of node `id`'s `/health`.
async fn health(h: &Harness, id: u64) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = h
        .http_addr(id)
        .ok_or_else(|| anyhow::anyhow!("node {id} has no HTTP port"))?;
    let ask = async {
        let mut conn = tokio::net::TcpStream::connect(&addr).await?;
        conn.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
            .await?;
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await?;
        anyhow::Ok(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), ask).await??;
    let status = answer.lines().next().unwrap_or_default().to_string();
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok(format!("{status} {body}"))
}

async fn read_all(h: &Harness, via: u64, objects: &[(String, String)]) -> anyhow::Result<()> {
    for (key, sum) in objects {
        let (_, bytes) = h
            .get(via, "footage", key, None, None)
            .await
            .map_err(|s| anyhow::anyhow!("get {key} via {via}: {:?} {}", s.code(), s.message()))?;
        anyhow::ensure!(
            sha256_hex(&bytes) == *sum,
            "{key} read back wrong via {via}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn nearly_full_node_is_placed_around_and_used_again_once_space_returns() -> anyhow::Result<()>
{
    let Some(mut h) = tmpfs_cluster(7).await? else {
        return Ok(());
    };
    let leader = h.leader().await?;
    let full = *h.ids().iter().find(|id| **id != leader).unwrap_or(&leader);
    let others: Vec<u64> = h.ids().into_iter().filter(|id| *id != full).collect();

    // Less free than the shard store keeps in reserve, more than the
    // metadata store needs: shards refused, Raft unaffected.
    assert!(health(&h, full).await?.contains("200"), "healthy before");
    let filler = fill(&h.data_dir(full), 16 * 1024 * 1024)?;
    let unhealthy = health(&h, full).await?;
    assert!(
        unhealthy.contains("503") && unhealthy.contains("reserve"),
        "{unhealthy}"
    );
    let files_before = h.shard_files(full).len();
    let while_full = put_many(&h, &h.ids(), "full", 14).await?;
    for (key, _) in &while_full {
        let info = h.stat(leader, "footage", key).await?;
        assert_eq!(
            info.missing_shards, 0,
            "{key} was written degraded: {info:?}"
        );
    }
    assert_eq!(
        h.shard_files(full).len(),
        files_before,
        "a node short of space took shard files"
    );
    read_all(&h, full, &while_full).await?;

    std::fs::remove_file(&filler)?;
    assert!(
        health(&h, full).await?.contains("200"),
        "healthy once space returned"
    );
    let after = put_many(&h, &others, "after", 14).await?;
    let taken = h.shard_files(full).len() - files_before;
    eprintln!(
        "nearly full node {full}: {} puts placed around it, none degraded; {taken} shard files taken once space returned",
        while_full.len()
    );
    assert!(taken > 0, "the node took no shards after space returned");
    read_all(&h, full, &after).await?;
    h.stop_all().await;
    Ok(())
}

#[tokio::test]
async fn full_leader_disk_stops_the_leader_and_it_rejoins_when_space_returns() -> anyhow::Result<()>
{
    let Some(mut h) = tmpfs_cluster(6).await? else {
        return Ok(());
    };
    let leader = h.leader().await?;
    let others: Vec<u64> = h.ids().into_iter().filter(|id| *id != leader).collect();
    let mut objects = put_many(&h, &h.ids(), "before", 6).await?;

    let filler = fill(&h.data_dir(leader), 0)?;
    let filled_at = Instant::now();
    // Writes make the leader append to its log, which fails; the ones
    // caught in that may fail, and are not counted.
    let probes = std::sync::atomic::AtomicU64::new(0);
    let new_leader = wait_for("a leader other than the full one", WAIT, || async {
        let n = probes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data = pattern(4 * SHARD, 5000 + n);
        let _ = h
            .put(others[0], "footage", &format!("probe/{n}"), &data)
            .await;
        let status = h.status(others[1]).await?;
        Ok(status.leader_id.filter(|l| *l != leader))
    })
    .await?;
    let probes = probes.into_inner();
    let stepped_down_after = filled_at.elapsed();
    assert!(
        h.local_status(leader).await.is_err(),
        "the node with the full disk still answers"
    );
    assert!(
        h.logs().contains("metadata storage failed"),
        "the node did not say why it stopped"
    );
    wait_for("the full node marked down", WAIT, || async {
        let status = h.status(new_leader).await?;
        Ok(status
            .nodes
            .iter()
            .any(|n| n.id == leader && n.state == "down")
            .then_some(()))
    })
    .await?;
    objects.extend(put_many(&h, &others, "during", 6).await?);

    std::fs::remove_file(&filler)?;
    let freed_at = Instant::now();
    wait_for("the node serving again", WAIT, || async {
        Ok(h.local_status(leader).await.is_ok().then_some(()))
    })
    .await?;
    let back_after = freed_at.elapsed();
    h.leader().await?;
    objects.extend(put_many(&h, &[leader], "after", 4).await?);
    read_all(&h, leader, &objects).await?;
    let via = h.leader().await?;
    h.run_worker(via, "repair").await?;
    h.wait_fully_redundant(via).await?;
    eprintln!(
        "full leader disk: node {leader} stopped serving and {new_leader} led after {stepped_down_after:?} \
         ({probes} probe puts); serving again {back_after:?} after space returned; {} objects read back right \
         through it; full redundancy restored",
        objects.len()
    );
    h.stop_all().await;
    Ok(())
}

#[tokio::test]
async fn node_whose_shard_directory_vanished_is_repaired_around() -> anyhow::Result<()> {
    let Some(mut h) = tmpfs_cluster(7).await? else {
        return Ok(());
    };
    let leader = h.leader().await?;
    let objects = put_many(&h, &h.ids(), "v", 8).await?;
    let gone = *h
        .ids()
        .iter()
        .filter(|id| **id != leader)
        .max_by_key(|id| h.shard_files(**id).len())
        .unwrap_or(&leader);
    let lost = h.shard_files(gone).len();
    std::fs::remove_dir_all(h.data_dir(gone).join("shards"))?;

    // Reads still right (the other shards suffice) and report what they
    // could not find; scrub and repair do the rest.
    let others: Vec<u64> = h.ids().into_iter().filter(|id| *id != gone).collect();
    read_all(&h, others[0], &objects).await?;
    h.scrub_everywhere(&h.ids()).await?;
    h.run_worker(leader, "repair").await?;
    h.wait_fully_redundant(leader).await?;
    assert!(
        !h.data_dir(gone).join("shards").exists(),
        "the shard directory was recreated behind the operator's back"
    );
    let more = put_many(&h, &h.ids(), "w", 6).await?;
    for (key, _) in &more {
        let info = h.stat(leader, "footage", key).await?;
        assert_eq!(info.missing_shards, 0, "{key} written degraded: {info:?}");
    }
    read_all(&h, gone, &objects).await?;
    eprintln!(
        "vanished shard directory on node {gone}: {lost} shard files lost, all rebuilt on other nodes; \
         new uploads placed around it"
    );
    h.stop_all().await;
    Ok(())
}
