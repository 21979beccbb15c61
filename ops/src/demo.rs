//! The newcomer's tour, step by step, narrated on stdout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tresor_node::dev::{wait_for_members, LocalCluster, LocalClusterSpec, NodeLauncher};
use tresor_proto::v1 as pb;

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

async fn status(endpoint: &str) -> anyhow::Result<pb::StatusResponse> {
    Ok(tresor_client::admin(endpoint)
        .await?
        .status(pb::StatusRequest { local: false })
        .await
        .map_err(|s| anyhow!("status: {}", s.message()))?
        .into_inner())
}

fn show(s: &pb::StatusResponse) {
    println!(
        "    leader: node {}  term {}  commit index {}",
        s.leader_id
            .map(|l| l.to_string())
            .unwrap_or_else(|| "none".into()),
        s.term,
        s.commit_index
    );
    for n in &s.nodes {
        println!(
            "    node {:>2}  {:<5} {:<8} {}",
            n.id, n.zone, n.role, n.addr
        );
    }
}

/// Waits until a node other than those in `gone` answers with a leader that
/// is not in `gone`.
async fn new_leader(
    endpoints: &[(u64, String)],
    gone: &[u64],
    timeout: Duration,
) -> anyhow::Result<(u64, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        for (_, endpoint) in endpoints.iter().filter(|(id, _)| !gone.contains(id)) {
            let Ok(mut admin) = tresor_client::admin(endpoint).await else {
                continue;
            };
            let Ok(s) = admin.status(pb::StatusRequest { local: true }).await else {
                continue;
            };
            let Some(leader) = s.into_inner().leader_id.filter(|l| !gone.contains(l)) else {
                continue;
            };
            if let Some((_, ep)) = endpoints.iter().find(|(i, _)| *i == leader) {
                return Ok((leader, ep.clone()));
            }
        }
        if Instant::now() >= deadline {
            bail!("no new leader within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the tour; stops every node before returning, success or not.
pub async fn run(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let temp;
    let dir = match dir {
        Some(d) => d,
        None => {
            temp = tempfile::Builder::new().prefix("tresor-demo-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let launcher = NodeLauncher {
        program: std::env::current_exe().context("cannot find own executable")?,
        args: vec!["node".into(), "serve".into()],
    };
    let mut cluster = LocalCluster::create(&dir, LocalClusterSpec::default(), launcher)?;
    let result = tour(&mut cluster).await;
    step(9, "Shutting every node down cleanly.");
    cluster.stop_all(Duration::from_secs(10)).await;
    match &result {
        Ok(()) => println!(
            "\nDemo finished: the cluster kept its metadata through the loss of a whole zone."
        ),
        Err(_) => println!("\nDemo failed; node logs are in {}", dir.display()),
    }
    result
}

async fn tour(cluster: &mut LocalCluster) -> anyhow::Result<()> {
    step(
        1,
        "Starting six tresor nodes on 127.0.0.1, two in each of three zones (dc1, dc2, dc3).",
    );
    cluster.start_all(Duration::from_secs(30)).await?;
    step(
        2,
        "Forming a Raft cluster: node 1 initialises it, the others join; five of six vote.",
    );
    cluster.form(Duration::from_secs(60)).await?;
    let endpoints: Vec<(u64, String)> = cluster
        .nodes
        .iter()
        .map(|n| (n.config.node_id, n.endpoint()))
        .collect();
    let first = endpoints[0].1.clone();
    show(&status(&first).await?);

    step(3, "Creating bucket `footage` with a 4+2 erasure scheme (through node 3; it forwards to the leader).");
    let mut admin = tresor_client::admin(&endpoints[2].1).await?;
    admin
        .create_bucket(pb::CreateBucketRequest {
            name: "footage".into(),
            data: 4,
            parity: 2,
        })
        .await
        .map_err(|s| anyhow!("create bucket: {}", s.message()))?;
    println!("    created: footage (4 data + 2 parity shards per stripe)");

    let before = status(&first).await?;
    let leader = before.leader_id.ok_or_else(|| anyhow!("no leader"))?;
    let leader_zone = before
        .nodes
        .iter()
        .find(|n| n.id == leader)
        .map(|n| n.zone.clone())
        .ok_or_else(|| anyhow!("leader not listed"))?;
    let zone_nodes: Vec<u64> = before
        .nodes
        .iter()
        .filter(|n| n.zone == leader_zone)
        .map(|n| n.id)
        .collect();

    step(4, &format!("Losing zone {leader_zone} (nodes {zone_nodes:?}), which holds the leader: kill -9 both."));
    for id in &zone_nodes {
        if let Some(n) = cluster.node_mut(*id) {
            n.kill();
        }
    }
    let started = Instant::now();
    let (new_leader, new_endpoint) =
        new_leader(&endpoints, &zone_nodes, Duration::from_secs(30)).await?;
    println!(
        "    node {new_leader} was elected leader {} ms after the loss",
        started.elapsed().as_millis()
    );

    step(
        5,
        "Writing while the zone is gone: creating bucket `footage-eu`.",
    );
    tresor_client::admin(&new_endpoint)
        .await?
        .create_bucket(pb::CreateBucketRequest {
            name: "footage-eu".into(),
            data: 4,
            parity: 2,
        })
        .await
        .map_err(|s| anyhow!("create bucket during outage: {}", s.message()))?;
    println!("    committed by the voters that are left (a majority of five)");

    step(
        6,
        &format!("Bringing zone {leader_zone} back: the nodes restart on their data and catch up."),
    );
    for id in &zone_nodes {
        cluster.start_node(*id, Duration::from_secs(30)).await?;
    }
    let ids: Vec<u64> = endpoints.iter().map(|(id, _)| *id).collect();
    wait_for_members(&new_endpoint, &ids, Duration::from_secs(60)).await?;

    step(7, "Checking every node has both buckets.");
    let deadline = Instant::now() + Duration::from_secs(30);
    for (id, endpoint) in &endpoints {
        loop {
            let names: Vec<String> = tresor_client::admin(endpoint)
                .await?
                .list_buckets(pb::ListBucketsRequest {})
                .await
                .map_err(|s| anyhow!("list on node {id}: {}", s.message()))?
                .into_inner()
                .buckets
                .into_iter()
                .map(|b| b.name)
                .collect();
            if names.iter().any(|n| n == "footage") && names.iter().any(|n| n == "footage-eu") {
                println!("    node {id}: {}", names.join(", "));
                break;
            }
            if Instant::now() >= deadline {
                bail!("node {id} did not catch up: has {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    step(8, "The cluster now:");
    show(&status(&new_endpoint).await?);
    Ok(())
}
