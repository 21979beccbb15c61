//! `tresor-ops bench scale`: how a cluster behaves as its metadata grows.
//! Fills a bucket with real 4 KiB puts (and, with `--audit`, stat calls
//! until the audit log holds that many entries) and, at each decade of
//! objects, measures put rate and p99, `status` and list-page latency,
//! node memory, metadata bytes per object, disk bytes and shard files per
//! object, and the latest snapshot's size; at the end, how long a node
//! added to the cluster takes to catch up. Figures come from real calls;
//! with `--metadata-only-above N`, objects past N (and the `--audit`
//! entries) are synthetic manifests and records written into the stopped
//! local nodes' state (no shard files behind them), and each row past N
//! times a burst of real puts on the filled cluster. Such rows are marked
//! in the table and the JSON (`metadata_only_objects`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::json;
use tresor_client::{Client, Credentials, PutOptions};
use tresor_node::config::HealingTuning;
use tresor_node::devcluster::fill::Fill;
use tresor_node::devcluster::{LocalCluster, LocalClusterSpec};
use tresor_proto::v1 as pb;
use tresor_proto::v1::objects_client::ObjectsClient;

use super::catch_up::{catch_up, latest_snapshot_bytes, CaughtUp};
use super::stopped::{fill_stopped, settle, status};
use super::{current_rss, percentile, CALL_TIMEOUT};

/// Bytes of each object.
const OBJECT_BYTES: usize = 4096;
/// Real puts timed at each metadata-only row.
const BURST: usize = 2_000;

/// What to run.
pub struct ScaleOptions {
    /// Existing cluster endpoints; a local six-node cluster when absent
    /// (memory and disk are only measured on a local one).
    pub endpoint: Option<String>,
    /// Objects to reach.
    pub objects: usize,
    /// Audit entries to reach (stat calls after the puts), 0 for none.
    pub audit: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// JSON instead of a table.
    pub json: bool,
    /// Keep the local cluster here.
    pub dir: Option<PathBuf>,
    /// The local nodes' `[shards] packed_shard_bytes` (their default when
    /// absent; 0 stores every shard as a file of its own).
    pub packed_shard_bytes: Option<u64>,
    /// Objects past this many, and the audit entries, are metadata-only
    /// (local cluster only).
    pub metadata_only_above: Option<usize>,
}

/// The figures at one step.
struct Step {
    objects: usize,
    /// Of `objects`, those that are synthetic manifests.
    metadata_only_objects: usize,
    audit_entries: u64,
    put_obj_per_s: f64,
    put_p99_ms: f64,
    status_ms: f64,
    list_page_ms: f64,
    /// Largest resident memory of a node, bytes (local cluster only).
    node_rss: Option<u64>,
    /// Node 1's metadata directory (Raft log and state) per object.
    meta_bytes_per_object: Option<f64>,
    /// Shard files and packs of all nodes, per object.
    disk_bytes_per_object: Option<f64>,
    /// Shard files (not packs) of all nodes, per object.
    shard_files_per_object: Option<f64>,
    /// Node 1's latest snapshot file.
    snapshot_bytes: Option<u64>,
}

/// Bytes of disk allocated, and files, under `dir`.
fn usage(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => {
                    // Allocated, not apparent, size: a 1 KiB file takes a
                    // whole block of the file system.
                    bytes += std::os::unix::fs::MetadataExt::blocks(&m) * 512;
                    files += 1;
                }
                Err(_) => {}
            }
        }
    }
    (bytes, files)
}

/// A raw Objects client whose every call has a deadline.
async fn objects_client(
    endpoint: &str,
    credentials: &Credentials,
) -> anyhow::Result<ObjectsClient<tresor_client::Transport>> {
    let channel = tresor_client::connect_with(endpoint, credentials).await?;
    Ok(ObjectsClient::new(
        tresor_client::channel::transport_with_deadline(channel, credentials, CALL_TIMEOUT),
    ))
}

/// Median milliseconds of five runs of `call`.
async fn median_ms<F, Fut>(mut call: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        tokio::time::timeout(CALL_TIMEOUT, call())
            .await
            .map_err(|_| anyhow!("no answer within {CALL_TIMEOUT:?}"))??;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[2])
}

/// Puts objects `from..to` with `clients` clients; returns obj/s and p99.
async fn put_range(
    credentials: &Credentials,
    endpoints: &[String],
    clients: usize,
    from: usize,
    to: usize,
) -> anyhow::Result<(f64, f64)> {
    let next = Arc::new(AtomicUsize::new(from));
    let data = Arc::new(tresor_node::devcluster::pattern(OBJECT_BYTES, 4));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let endpoint = endpoints[c % endpoints.len()].clone();
        let (next, data, credentials) = (next.clone(), data.clone(), credentials.clone());
        tasks.push(tokio::spawn(async move {
            let client = Client::connect_with(&[endpoint], &credentials).await?;
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to {
                    return anyhow::Ok(latencies);
                }
                let key = format!("obj/{i:010}");
                let t = Instant::now();
                client
                    .put(
                        "scale",
                        &key,
                        std::io::Cursor::new(data.as_slice()),
                        PutOptions::default(),
                    )
                    .await
                    .map_err(|e| anyhow!("put {key}: {e}"))?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by(|a, b| a.total_cmp(b));
    Ok((
        (to - from) as f64 / started.elapsed().as_secs_f64(),
        percentile(&all, 99.0),
    ))
}

/// Stat calls (each an audit entry) until `count` are made.
async fn stats(
    credentials: &Credentials,
    endpoints: &[String],
    clients: usize,
    count: u64,
) -> anyhow::Result<()> {
    let left = Arc::new(AtomicUsize::new(count as usize));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let endpoint = endpoints[c % endpoints.len()].clone();
        let (left, credentials) = (left.clone(), credentials.clone());
        tasks.push(tokio::spawn(async move {
            let mut objects = objects_client(&endpoint, &credentials).await?;
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let stat = objects.stat(pb::StatRequest {
                    bucket: "scale".into(),
                    key: "obj/0000000000".into(),
                });
                tokio::time::timeout(CALL_TIMEOUT, stat)
                    .await
                    .map_err(|_| anyhow!("stat: no answer within {CALL_TIMEOUT:?}"))??;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn measure_step(
    endpoints: &[String],
    local: Option<&LocalCluster>,
    (objects, metadata_only_objects): (usize, usize),
    rate: (f64, f64),
) -> anyhow::Result<Step> {
    let mut admin = tresor_client::admin(&endpoints[0]).await?;
    let status_ms = median_ms(|| {
        let mut admin = admin.clone();
        async move {
            admin.status(pb::StatusRequest { local: false }).await?;
            Ok(())
        }
    })
    .await?;
    let credentials = (*tresor_client::default_credentials()).clone();
    let client = objects_client(&endpoints[0], &credentials).await?;
    let middle = format!("obj/{:010}", (objects - metadata_only_objects) / 2);
    let list_page_ms = median_ms(|| {
        let mut client = client.clone();
        let token = middle.clone();
        async move {
            client
                .list(pb::ListRequest {
                    bucket: "scale".into(),
                    page_size: 1000,
                    page_token: token,
                    ..Default::default()
                })
                .await?;
            Ok(())
        }
    })
    .await?;
    let audit_entries = audit_head(&mut admin).await?;
    let mut step = Step {
        objects,
        metadata_only_objects,
        audit_entries,
        put_obj_per_s: rate.0,
        put_p99_ms: rate.1,
        status_ms,
        list_page_ms,
        node_rss: None,
        meta_bytes_per_object: None,
        disk_bytes_per_object: None,
        shard_files_per_object: None,
        snapshot_bytes: None,
    };
    if let Some(cluster) = local {
        let per = |x: u64| x as f64 / objects.max(1) as f64;
        step.node_rss = cluster
            .nodes
            .iter()
            .filter_map(|n| n.pid().and_then(current_rss))
            .max();
        let first = &cluster.nodes[0].config.data_dir;
        step.meta_bytes_per_object = Some(per(usage(&first.join("meta")).0));
        // Shard files and packs hold the real objects only.
        let per = |x: u64| x as f64 / (objects - metadata_only_objects).max(1) as f64;
        let (mut bytes, mut files) = (0, 0);
        for n in &cluster.nodes {
            let (b, f) = usage(&n.config.data_dir.join("shards"));
            let (p, _) = usage(&n.config.data_dir.join("packs"));
            bytes += b + p;
            files += f;
        }
        step.disk_bytes_per_object = Some(per(bytes));
        step.shard_files_per_object = Some(per(files));
        step.snapshot_bytes = latest_snapshot_bytes(first);
    }
    Ok(step)
}

/// Waits until the sealer has moved the filled audit entries out of the
/// replicated state (at most two segments' worth left in the tail).
async fn wait_sealed(endpoint: &str) -> anyhow::Result<()> {
    eprintln!("waiting for the audit log to be sealed");
    let limit = 2 * tresor_node::config::AuditTuning::default().seal_entries;
    settle("the audit log sealed", || async {
        Ok(status(endpoint, false).await?.audit_unsealed <= limit)
    })
    .await
}

/// The audit log's head: entries recorded so far.
async fn audit_head(admin: &mut tresor_client::AdminClient) -> anyhow::Result<u64> {
    let s = tokio::time::timeout(
        CALL_TIMEOUT,
        admin.status(pb::StatusRequest { local: false }),
    )
    .await
    .map_err(|_| anyhow!("status: no answer within {CALL_TIMEOUT:?}"))??
    .into_inner();
    Ok(s.audit_entries)
}

/// Runs the scale benchmark and prints its growth table.
pub async fn run(opts: ScaleOptions) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new().prefix("tresor-scale-").tempdir()?;
    let dir = opts
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let mut spec = LocalClusterSpec {
        http: false,
        ..LocalClusterSpec::default()
    };
    if let Some(bytes) = opts.packed_shard_bytes {
        spec.shards.packed_shard_bytes = bytes;
    }
    if opts.metadata_only_above.is_some() {
        if opts.endpoint.is_some() {
            return Err(anyhow!(
                "--metadata-only-above needs the local cluster (no --endpoint)"
            ));
        }
        // The synthetic objects have no files: scrub would report them.
        spec.healing = HealingTuning {
            scrub_interval_secs: 365 * 24 * 3600,
            ..HealingTuning::default()
        };
    }
    let (endpoints, mut local) = super::cluster_for(opts.endpoint.as_deref(), &dir, spec).await?;
    let result = scale(&opts, &endpoints, &mut local).await;
    if let Some(mut cluster) = local {
        cluster.stop_all(Duration::from_secs(10)).await;
    }
    result
}

async fn scale(
    opts: &ScaleOptions,
    endpoints: &[String],
    local: &mut Option<LocalCluster>,
) -> anyhow::Result<()> {
    let mut admin = tresor_client::admin(&endpoints[0]).await?;
    if let Err(s) = admin
        .create_bucket(pb::CreateBucketRequest {
            name: "scale".into(),
            data: 4,
            parity: 2,
            retention: String::new(),
        })
        .await
    {
        if s.code() != tonic::Code::AlreadyExists {
            return Err(anyhow!("create bucket scale: {}", s.message()));
        }
    }
    let credentials = (*tresor_client::default_credentials()).clone();
    let mut marks: Vec<usize> = std::iter::successors(Some(1_000usize), |n| n.checked_mul(10))
        .take_while(|n| *n < opts.objects)
        .collect();
    marks.push(opts.objects);
    let clients = opts.clients.max(1);
    let real_limit = opts.metadata_only_above.unwrap_or(usize::MAX);
    let mut steps = Vec::new();
    // Real objects put, synthetic objects filled, the log index from which
    // the log holds what was filled.
    let (mut real, mut synthetic, mut filled_at) = (0, 0, None);
    for mark in marks {
        let real_to = mark.min(real_limit).max(real);
        let mut rate = (0.0, 0.0);
        if real < real_to {
            eprintln!("putting objects {real}..{real_to} (4 KiB, {clients} clients)");
            rate = put_range(&credentials, endpoints, clients, real, real_to).await?;
            real = real_to;
        }
        let synthetic_to = mark.saturating_sub(real);
        if synthetic < synthetic_to {
            let cluster = local
                .as_mut()
                .ok_or_else(|| anyhow!("a metadata-only fill needs the local cluster"))?;
            let last = synthetic_to + real >= opts.objects;
            let audit = if last {
                opts.audit.saturating_sub(audit_head(&mut admin).await?)
            } else {
                0
            };
            let fill = Fill {
                bucket: "scale".into(),
                objects: synthetic as u64..synthetic_to as u64,
                audit,
                recent_from: None,
            };
            filled_at = Some(fill_stopped(cluster, fill).await?);
            synthetic = synthetic_to;
            admin = tresor_client::admin(&endpoints[0]).await?;
            if audit > 0 {
                wait_sealed(&endpoints[0]).await?;
            }
            eprintln!("timing {BURST} real puts on the filled cluster");
            rate = put_range(&credentials, endpoints, clients, real, real + BURST).await?;
            real += BURST;
        }
        steps.push(
            measure_step(
                endpoints,
                local.as_ref(),
                (real + synthetic, synthetic),
                rate,
            )
            .await?,
        );
    }
    let head = audit_head(&mut admin).await?;
    if opts.audit > head {
        eprintln!(
            "stat calls until the audit log holds {} entries",
            opts.audit
        );
        stats(&credentials, endpoints, clients, opts.audit - head).await?;
        steps.push(
            measure_step(
                endpoints,
                local.as_ref(),
                (real + synthetic, synthetic),
                (0.0, 0.0),
            )
            .await?,
        );
    }
    let caught_up = match local.as_mut() {
        Some(cluster) => {
            if let Some(at) = filled_at {
                // A joining node must get the fill from a snapshot: puts
                // until the leader's log no longer reaches back before it.
                eprintln!("putting until the leader's log is compacted past the fill");
                for round in 0.. {
                    let leader = status(&endpoints[0], false)
                        .await?
                        .leader_id
                        .and_then(|l| cluster.node(l).map(|n| n.endpoint()))
                        .ok_or_else(|| anyhow!("no leader"))?;
                    let purged = status(&leader, true).await?.purged_index;
                    if purged.is_some_and(|p| p > at) {
                        break;
                    }
                    if round == 20 {
                        return Err(anyhow!("the log was not compacted past the fill"));
                    }
                    put_range(&credentials, endpoints, clients, real, real + 1_000).await?;
                    real += 1_000;
                }
            }
            eprintln!("adding a node and timing its catch-up");
            match catch_up(cluster, endpoints).await {
                Ok(c) => Some(c),
                // The rows measured so far are still worth printing.
                Err(e) => {
                    eprintln!("the new node did not catch up: {e:#}");
                    None
                }
            }
        }
        None => None,
    };
    print(opts.json, &steps, caught_up)
}

fn print(json_out: bool, steps: &[Step], caught_up: Option<CaughtUp>) -> anyhow::Result<()> {
    if json_out {
        let doc = json!({
            "object_bytes": OBJECT_BYTES,
            "steps": steps.iter().map(|s| json!({
                "objects": s.objects,
                "metadata_only_objects": s.metadata_only_objects,
                "audit_entries": s.audit_entries,
                "put_obj_per_s": s.put_obj_per_s,
                "put_p99_ms": s.put_p99_ms,
                "status_ms": s.status_ms,
                "list_page_ms": s.list_page_ms,
                "node_rss_bytes": s.node_rss,
                "meta_bytes_per_object": s.meta_bytes_per_object,
                "disk_bytes_per_object": s.disk_bytes_per_object,
                "shard_files_per_object": s.shard_files_per_object,
                "snapshot_bytes": s.snapshot_bytes,
            })).collect::<Vec<_>>(),
            "new_node_catch_up": caught_up.map(|c| json!({
                "seconds": c.secs,
                "rss_bytes": c.rss,
                "snapshot_bytes": c.snapshot_bytes,
            })),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into());
    let mib = |v: Option<u64>| {
        v.map(|x| format!("{:.0}", x as f64 / 1048576.0))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "{:>9} {:>9} {:>9} {:>7} {:>8} {:>9} {:>9} {:>8} {:>9} {:>9} {:>7} {:>8}",
        "OBJECTS",
        "META-ONLY",
        "AUDIT",
        "PUT/s",
        "p99 ms",
        "status ms",
        "list ms",
        "RSS MiB",
        "meta B/o",
        "disk B/o",
        "files/o",
        "snap MiB"
    );
    for s in steps {
        println!(
            "{:>9} {:>9} {:>9} {:>7.0} {:>8.1} {:>9.1} {:>9.1} {:>8} {:>9} {:>9} {:>7} {:>8}",
            s.objects,
            s.metadata_only_objects,
            s.audit_entries,
            s.put_obj_per_s,
            s.put_p99_ms,
            s.status_ms,
            s.list_page_ms,
            mib(s.node_rss),
            opt(s.meta_bytes_per_object),
            opt(s.disk_bytes_per_object),
            s.shard_files_per_object
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into()),
            mib(s.snapshot_bytes),
        );
    }
    if let Some(c) = caught_up {
        let objects = steps.last().map_or(0, |s| s.objects).max(1);
        match c.snapshot_bytes {
            Some(bytes) => println!(
                "a node added at the end caught up in {:.1} s from a {:.0} MiB snapshot ({:.0} B/object), RSS {:.0} MiB",
                c.secs,
                bytes as f64 / 1048576.0,
                bytes as f64 / objects as f64,
                c.rss as f64 / 1048576.0
            ),
            None => println!(
                "a node added at the end caught up in {:.1} s (from the log), RSS {:.0} MiB",
                c.secs,
                c.rss as f64 / 1048576.0
            ),
        }
    }
    Ok(())
}
