//! Healing figures: repair after a node is wiped, and scrub passes.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::json;
use tresor_node::devcluster::LocalCluster;
use tresor_proto::v1 as pb;

use super::*;
use crate::demo::{counter, in_pass, worker};

pub(super) async fn status(endpoint: &str) -> anyhow::Result<pb::StatusResponse> {
    Ok(tresor_client::admin(endpoint)
        .await?
        .status(pb::StatusRequest { local: false })
        .await
        .map_err(|s| anyhow!("status: {}", s.message()))?
        .into_inner())
}

/// Healing figures on the local cluster: wipe a node, add a fresh one in
/// its zone, time repair to full redundancy; then one scrub pass per node.
pub(super) async fn heal(cluster: &mut LocalCluster, json_out: bool) -> anyhow::Result<()> {
    let first = cluster.nodes[0].endpoint();
    let s = status(&first).await?;
    let leader = s.leader_id.ok_or_else(|| anyhow!("no leader"))?;
    let victim = s
        .nodes
        .iter()
        .filter(|n| n.id != leader && n.shards > 0)
        .max_by_key(|n| n.shards)
        .map(|n| (n.id, n.zone.clone(), n.shards))
        .ok_or_else(|| anyhow!("no node holds shards"))?;
    let leader_ep = cluster
        .node(leader)
        .map(|n| n.endpoint())
        .ok_or_else(|| anyhow!("leader not local"))?;
    eprintln!(
        "healing: adding a node to zone {}, wiping node {} ({} shard files)",
        victim.1, victim.0, victim.2
    );
    let index = cluster.define_node(&victim.1)?;
    let fresh = cluster.nodes[index].config.clone();
    cluster
        .start_node(fresh.node_id, Duration::from_secs(30))
        .await?;
    let mut admin = tresor_client::admin(&leader_ep).await?;
    admin
        .add_node(pb::AddNodeRequest {
            id: fresh.node_id,
            addr: fresh.advertised_addr(),
            zone: fresh.zone.clone(),
            capacity: 0,
        })
        .await
        .map_err(|s| anyhow!("add node: {}", s.message()))?;
    let victim_dir = cluster
        .node(victim.0)
        .map(|n| n.config.data_dir.clone())
        .ok_or_else(|| anyhow!("victim not local"))?;
    if let Some(n) = cluster.node_mut(victim.0) {
        n.kill();
    }
    std::fs::remove_dir_all(&victim_dir)?;
    admin
        .remove_node(pb::RemoveNodeRequest {
            id: victim.0,
            force: true,
        })
        .await
        .map_err(|s| anyhow!("remove node: {}", s.message()))?;
    let degraded = status(&leader_ep).await?.degraded_segments;
    let before = counter(&worker(&leader_ep, "repair").await?, "bytes_rebuilt");
    let started = Instant::now();
    admin
        .run_worker(pb::RunWorkerRequest {
            name: "repair".into(),
        })
        .await
        .map_err(|s| anyhow!("repair: {}", s.message()))?;
    let deadline = started + Duration::from_secs(1800);
    loop {
        if status(&leader_ep).await?.degraded_segments == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "repair did not finish within 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let repair_time = started.elapsed();
    let rebuilt = counter(&worker(&leader_ep, "repair").await?, "bytes_rebuilt") - before;

    eprintln!("scrubbing every node once");
    let mut scrubs = Vec::new();
    let live: Vec<(u64, String)> = cluster
        .nodes
        .iter_mut()
        .filter_map(|n| n.is_running().then(|| (n.config.node_id, n.endpoint())))
        .collect();
    for (_, ep) in &live {
        let w = worker(ep, "scrub").await?;
        scrubs.push((counter(&w, "passes"), counter(&w, "bytes_checked")));
        tresor_client::admin(ep)
            .await?
            .run_worker(pb::RunWorkerRequest {
                name: "scrub".into(),
            })
            .await
            .map_err(|s| anyhow!("scrub: {}", s.message()))?;
    }
    let mut rates = Vec::new();
    for ((id, ep), (passes, bytes_before)) in live.iter().zip(scrubs) {
        let deadline = Instant::now() + Duration::from_secs(1800);
        let w = loop {
            let w = worker(ep, "scrub").await?;
            if counter(&w, "passes") > passes && !in_pass(&w) {
                break w;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "scrub on node {id} did not finish"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let bytes = counter(&w, "bytes_checked") - bytes_before;
        let ms = counter(&w, "last_pass_ms_taken").max(1);
        rates.push((*id, bytes, bytes as f64 / 1e6 / (ms as f64 / 1000.0)));
    }
    let repair_mb_s = rebuilt as f64 / 1e6 / repair_time.as_secs_f64();
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "repair": {
                    "degraded_segments_before": degraded,
                    "shard_bytes_rebuilt": rebuilt,
                    "seconds_to_full_redundancy": repair_time.as_secs_f64(),
                    "mb_per_s": repair_mb_s,
                },
                "scrub": rates.iter().map(|(id, bytes, rate)| json!({"node": id, "bytes": bytes, "mb_per_s": rate})).collect::<Vec<_>>(),
            }))?
        );
    } else {
        println!(
            "repair after wiping node {}: {degraded} degraded segments, {} MiB of shards rebuilt in {:.1} s ({repair_mb_s:.0} MB/s) until full redundancy",
            victim.0,
            rebuilt / MIB as u64,
            repair_time.as_secs_f64()
        );
        for (id, bytes, rate) in &rates {
            println!(
                "scrub node {id}: {} MiB verified at {rate:.0} MB/s",
                bytes / MIB as u64
            );
        }
    }
    Ok(())
}
