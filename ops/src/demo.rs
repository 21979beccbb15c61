//! The newcomer's tour, step by step, narrated on stdout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tresor_client::{Client, Credentials, PutOptions};
use tresor_node::devcluster::{wait_for_members, LocalCluster, LocalClusterSpec, NodeLauncher};
use tresor_proto::v1 as pb;

mod lifecycle;
use lifecycle::lifecycle;

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
    // Expiry looks every 5 s (the default is a minute), so the demo's
    // 20-second policy shows within the act.
    let mut spec = LocalClusterSpec::default();
    spec.retention.expiry_interval_secs = 5;
    spec.retention.shred_delay_secs = 2;
    let mut cluster = LocalCluster::create(&dir, spec, launcher)?;
    // Every call of the tour presents the cluster's CA and admin certificate.
    tresor_client::set_default_credentials(cluster.credentials().clone());
    let result = tour(&mut cluster).await;
    step(14, "Shutting every node down cleanly.");
    cluster.stop_all(Duration::from_secs(10)).await;
    match &result {
        Ok(()) => println!(
            "\nDemo finished: footage stored across three zones, read back bit-for-bit, \
             still readable with a whole zone gone, healed after damage on disk, and \
             deleted by its retention policy with a signed receipt — except what a case holds."
        ),
        Err(_) => println!("\nDemo failed; node logs are in {}", dir.display()),
    }
    result
}

/// Generated "footage": deterministic pseudo-random bytes (incompressible,
/// like video).
fn footage(len: usize) -> Vec<u8> {
    tresor_node::devcluster::pattern(len, 0x7472_6573_6f72_2d31)
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn mb_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

/// Downloads `key` through `client` and checks it against `expected`.
async fn read_and_verify(
    client: &Client,
    key: &str,
    expected: &[u8],
    expected_sha: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut got = Vec::with_capacity(expected.len());
    let (info, bytes) = client
        .get("footage", key, None, &mut got, None)
        .await
        .map_err(|e| anyhow!("download: {e}"))?;
    let elapsed = started.elapsed();
    let actual = sha256_hex(&got);
    if got != expected || actual != expected_sha || info.sha256 != expected_sha {
        bail!("downloaded bytes differ from the upload (sha256 {actual}, expected {expected_sha})");
    }
    println!(
        "    read {} MiB in {} ms ({:.0} MB/s) through {}; SHA-256 matches: {}",
        bytes / (1024 * 1024),
        elapsed.as_millis(),
        mb_per_s(got.len(), elapsed),
        client.current_endpoint(),
        &actual[..16]
    );
    Ok(())
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

    step(
        3,
        "Security: every connection is TLS with the cluster's own CA, every call needs a certificate or a token.",
    );
    let access = cluster.create_admin_access().await?;
    if access.token.is_none() {
        bail!("the demo cluster should be secure");
    }
    println!(
        "    an admin token and S3 key were made; to use this cluster from a shell while it runs:"
    );
    for line in cluster.env_lines(&access).lines() {
        println!("      {line}");
    }
    let ca_only = Credentials::new(
        tresor_client::default_credentials()
            .ca_pem()
            .map(<[u8]>::to_vec),
        None,
        None,
    )?;
    match tresor_client::admin_with(&first, &ca_only)
        .await?
        .status(pb::StatusRequest { local: false })
        .await
    {
        Err(s) if s.code() == tonic::Code::Unauthenticated => {
            println!("    a caller with neither is refused: {}", s.message())
        }
        other => bail!("a caller without credentials was not refused: {other:?}"),
    }

    step(
        4,
        "Creating bucket `footage`: every stripe is 4 data + 2 parity shards, two per zone.",
    );
    let mut admin = tresor_client::admin(&endpoints[2].1).await?;
    admin
        .create_bucket(pb::CreateBucketRequest {
            name: "footage".into(),
            data: 4,
            parity: 2,
            retention: String::new(),
        })
        .await
        .map_err(|s| anyhow!("create bucket: {}", s.message()))?;
    println!("    created through node 3, which forwarded it to the leader");

    step(
        5,
        "Uploading 64 MiB of generated body-camera footage through node 1.",
    );
    let video = footage(64 * 1024 * 1024);
    let video_sha = sha256_hex(&video);
    let key = "unit-17/2026-11-26T08-14-03Z.mp4";
    let client = Client::connect(std::slice::from_ref(&first)).await?;
    let started = Instant::now();
    let put = client
        .put(
            "footage",
            key,
            std::io::Cursor::new(video.clone()),
            PutOptions::default(),
        )
        .await
        .map_err(|e| anyhow!("upload: {e}"))?;
    let elapsed = started.elapsed();
    println!(
        "    stored {key}: {} bytes in {} ms ({:.0} MB/s), SHA-256 {}",
        put.size,
        elapsed.as_millis(),
        mb_per_s(video.len(), elapsed),
        &put.sha256[..16]
    );
    let leaked = cluster
        .nodes
        .iter()
        .flat_map(|n| shard_files(&n.config.data_dir))
        .any(|f| std::fs::read(f).is_ok_and(|b| b.windows(64).any(|w| w == &video[..64])));
    if leaked {
        bail!("a shard file holds plaintext footage");
    }
    println!("    every shard file on disk holds only AES-256-GCM ciphertext (checked)");
    if put.sha256 != video_sha {
        bail!(
            "the cluster hashed the upload differently: {} vs {video_sha}",
            put.sha256
        );
    }
    let info = client
        .stat("footage", key)
        .await
        .map_err(|e| anyhow!("stat: {e}"))?;
    println!(
        "    {} stripes of 4 MiB, each on six nodes in three zones; shards missing: {}",
        info.stripes, info.missing_shards
    );

    step(
        6,
        "Downloading it through another node (node 5) and checking every byte.",
    );
    let reader = Client::connect(&[endpoints[4].1.clone()]).await?;
    read_and_verify(&reader, key, &video, &video_sha).await?;

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

    step(
        7,
        &format!("Losing data centre {leader_zone} (nodes {zone_nodes:?}, the Raft leader among them): kill -9 both."),
    );
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

    step(8, "Reading the footage with a whole zone gone: two of six shards of every stripe are missing, parity rebuilds them.");
    let survivor = Client::connect(std::slice::from_ref(&new_endpoint)).await?;
    read_and_verify(&survivor, key, &video, &video_sha).await?;

    step(
        9,
        "Reading a range (seeking in the video): bytes 10 MiB to 10 MiB + 999.",
    );
    let mut slice = Vec::new();
    let start = 10 * 1024 * 1024u64;
    survivor
        .get(
            "footage",
            key,
            Some((start, Some(start + 999))),
            &mut slice,
            None,
        )
        .await
        .map_err(|e| anyhow!("range read: {e}"))?;
    if slice != video[start as usize..start as usize + 1000] {
        bail!("range read returned other bytes");
    }
    println!("    1000 bytes, identical to the same slice of the original");

    step(
        10,
        &format!("Bringing zone {leader_zone} back: the nodes restart on their data and catch up."),
    );
    for id in &zone_nodes {
        cluster.start_node(*id, Duration::from_secs(30)).await?;
    }
    let ids: Vec<u64> = endpoints.iter().map(|(id, _)| *id).collect();
    wait_for_members(&new_endpoint, &ids, Duration::from_secs(60)).await?;
    let back = Client::connect(&[endpoints[zone_nodes[0] as usize - 1].1.clone()]).await?;
    read_and_verify(&back, key, &video, &video_sha).await?;

    step(
        11,
        "Healing: flipping one byte in a shard file on node 2's disk, then scrub and repair.",
    );
    heal_a_flipped_byte(cluster, &new_endpoint).await?;
    read_and_verify(&reader, key, &video, &video_sha).await?;

    step(
        12,
        "Evidence lifecycle: a bucket whose policy deletes footage 20 s after ingest; a case holds one clip.",
    );
    lifecycle(&new_endpoint).await?;

    step(13, "The cluster now:");
    show(&status(&new_endpoint).await?);
    Ok(())
}

/// Worker `name` of the node at `endpoint`.
pub(crate) async fn worker(endpoint: &str, name: &str) -> anyhow::Result<pb::WorkerInfo> {
    tresor_client::admin(endpoint)
        .await?
        .workers(pb::WorkersRequest {})
        .await
        .map_err(|s| anyhow!("workers: {}", s.message()))?
        .into_inner()
        .workers
        .into_iter()
        .find(|w| w.name == name)
        .ok_or_else(|| anyhow!("no {name} worker"))
}

/// A worker's counter (0 when it has none yet).
pub(crate) fn counter(w: &pb::WorkerInfo, name: &str) -> u64 {
    w.counters.get(name).copied().unwrap_or(0)
}

/// Whether a worker is in a pass (busy, or held back by its byte rate).
pub(crate) fn in_pass(w: &pb::WorkerInfo) -> bool {
    matches!(w.state.as_str(), "busy" | "throttled")
}

/// The shard files under a node's data dir (`shards/<xx>/<file>`).
fn shard_files(data_dir: &std::path::Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(data_dir.join("shards"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|d| d.path().is_dir())
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
}

/// Damages one shard file on node 2, lets scrub find it and repair rebuild
/// it from the other shards of its stripes.
async fn heal_a_flipped_byte(cluster: &LocalCluster, leader_endpoint: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let node = cluster.node(2).ok_or_else(|| anyhow!("no node 2"))?;
    let file = shard_files(&node.config.data_dir)
        .next()
        .ok_or_else(|| anyhow!("node 2 holds no shard file"))?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file)?;
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, 1000)?;
    f.write_all_at(&[byte[0] ^ 0xff], 1000)?;
    f.sync_all()?;
    println!("    flipped byte 1000 of {}", file.display());

    let endpoint = node.endpoint();
    let before = worker(&endpoint, "scrub").await?;
    let mut admin = tresor_client::admin(&endpoint).await?;
    admin
        .run_worker(pb::RunWorkerRequest {
            name: "scrub".into(),
        })
        .await
        .map_err(|s| anyhow!("scrub: {}", s.message()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let w = worker(&endpoint, "scrub").await?;
        if counter(&w, "passes") > counter(&before, "passes") && !in_pass(&w) {
            break w;
        }
        if Instant::now() >= deadline {
            bail!("scrub did not finish");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "    scrub on node 2 checked {} shard files and found {} bad",
        counter(&after, "files_checked"),
        counter(&after, "errors_found") - counter(&before, "errors_found")
    );
    // The report goes through Raft; wait until the cluster counts it.
    loop {
        let s = status(leader_endpoint).await?;
        if s.degraded_segments > 0 {
            println!(
                "    the cluster now counts {} degraded segment(s)",
                s.degraded_segments
            );
            break;
        }
        if Instant::now() >= deadline {
            bail!("the bad shard was not reported");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let mut leader = tresor_client::admin(leader_endpoint).await?;
    loop {
        let s = status(leader_endpoint).await?;
        if s.degraded_segments == 0 {
            break;
        }
        let _ = leader
            .run_worker(pb::RunWorkerRequest {
                name: "repair".into(),
            })
            .await;
        if Instant::now() >= deadline {
            bail!("repair did not restore full redundancy");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "    repair rebuilt it from the surviving shards of each stripe in {} ms; every segment has 4 + 2 shards again",
        started.elapsed().as_millis()
    );
    Ok(())
}
