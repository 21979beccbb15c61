//! `tresor-ops bench`: PUT and GET throughput and latency against a cluster,
//! peak node memory, and an in-process baseline measured in the same run
//! (SHA-256 + erasure encoding + shard files with fsync, no network), so
//! every figure can be read as a ratio on a noisy machine.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use serde_json::json;
use tokio::io::{AsyncRead, ReadBuf};
use tresor_client::{Client, Credentials, PutOptions};
use tresor_node::devcluster::{LocalCluster, LocalClusterSpec, NodeLauncher};
use tresor_proto::v1 as pb;

mod catch_up;
pub mod expiry;
mod heal;
pub mod scale;
mod security;
mod stopped;
pub mod uploads;

/// Deadline of each status or measuring call a benchmark makes.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

use heal::heal;
use security::{security_cost, SECURITY_ROUNDS};

const MIB: usize = 1024 * 1024;

/// What to run.
pub struct BenchOptions {
    /// Existing cluster endpoint; a local six-node cluster when absent.
    pub endpoint: Option<String>,
    /// JSON instead of a table.
    pub json: bool,
    /// Size of the object uploaded while node memory is watched (MiB; 0 skips).
    pub big_object_mib: usize,
    /// Directory for the local cluster and the baseline's files.
    pub dir: Option<PathBuf>,
}

/// One workload's figures.
struct Row {
    op: &'static str,
    object_bytes: usize,
    clients: usize,
    objects: usize,
    mb_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// An `AsyncRead` of pseudo-random bytes generated on the fly, so a large
/// upload needs no memory on the client side either.
struct Generated {
    left: u64,
    state: u64,
}

impl Generated {
    fn new(len: u64, seed: u64) -> Self {
        Self {
            left: len,
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left) as usize / 8 * 8;
        let n = if n == 0 {
            (self.left as usize).min(buf.remaining())
        } else {
            n
        };
        let mut chunk = Vec::with_capacity(n + 8);
        while chunk.len() < n {
            let mut x = self.state;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.state = x;
            chunk.extend_from_slice(&x.to_le_bytes());
        }
        chunk.truncate(n);
        buf.put_slice(&chunk);
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted_ms.len() - 1) as f64).round() as usize;
    sorted_ms[rank.min(sorted_ms.len() - 1)]
}

/// The baseline: hash, encode 4+2 and write six shard files with one fsync
/// each, for `bytes` of data, in this process. MB/s of object data.
fn baseline(dir: &std::path::Path, bytes: usize) -> anyhow::Result<f64> {
    use sha2::Digest;
    use tresor_node::erasure::Codec;
    use tresor_node::shards::{ObjectId, ShardId, ShardStore};
    let data = tresor_node::devcluster::pattern(bytes, 99);
    let store = ShardStore::open(dir)?;
    let codec = Codec::new(4, 2)?;
    let stripe = 4 * MIB;
    let object_id = ObjectId::random();
    let started = Instant::now();
    let mut hasher = sha2::Sha256::new();
    let mut writers = (0..6)
        .map(|index| {
            store.create(
                ShardId {
                    object_id,
                    segment: 0,
                    index,
                },
                MIB as u32,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    for chunk in data.chunks(stripe) {
        hasher.update(chunk);
        let shards = codec.encode(chunk)?;
        for (w, s) in writers.iter_mut().zip(&shards) {
            w.append_block(s)?;
        }
    }
    for w in writers {
        w.commit()?;
    }
    let _ = hasher.finalize();
    let elapsed = started.elapsed();
    store.delete_object(&object_id)?;
    Ok(bytes as f64 / 1e6 / elapsed.as_secs_f64())
}

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn current_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[allow(clippy::too_many_arguments)]
async fn run_workload(
    credentials: &Credentials,
    endpoints: &[String],
    op: &'static str,
    size: usize,
    clients: usize,
    per_client: usize,
    run: &str,
) -> anyhow::Result<Row> {
    let data = Arc::new(tresor_node::devcluster::pattern(size, size as u64));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let endpoint = endpoints[c % endpoints.len()].clone();
        let data = data.clone();
        let run = run.to_string();
        let credentials = credentials.clone();
        tasks.push(tokio::spawn(async move {
            let client = Client::connect_with(&[endpoint], &credentials).await?;
            let mut latencies = Vec::new();
            for i in 0..per_client {
                let key = format!("{run}/{size}/{c}/{i}");
                let t = Instant::now();
                if op == "put" {
                    client
                        .put(
                            "bench",
                            &key,
                            std::io::Cursor::new(data.as_slice()),
                            PutOptions::default(),
                        )
                        .await
                        .map_err(|e| anyhow!("put {key}: {e}"))?;
                } else {
                    let mut sink = tokio::io::sink();
                    client
                        .get("bench", &key, None, &mut sink, None)
                        .await
                        .map_err(|e| anyhow!("get {key}: {e}"))?;
                }
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    all.sort_by(|a, b| a.total_cmp(b));
    let total = size * clients * per_client;
    Ok(Row {
        op,
        object_bytes: size,
        clients,
        objects: clients * per_client,
        mb_per_s: total as f64 / 1e6 / elapsed.as_secs_f64(),
        p50_ms: percentile(&all, 50.0),
        p99_ms: percentile(&all, 99.0),
    })
}

/// The endpoints to measure: those of `endpoint` (comma-separated, with
/// credentials from the environment as for the CLIs), or those of a local
/// six-node cluster of `spec` started in `dir`, returned with it.
pub(crate) async fn cluster_for(
    endpoint: Option<&str>,
    dir: &std::path::Path,
    spec: LocalClusterSpec,
) -> anyhow::Result<(Vec<String>, Option<LocalCluster>)> {
    if let Some(e) = endpoint {
        tresor_client::set_default_credentials(
            tresor_client::Credentials::from_env()
                .context("TRESOR_CA, TRESOR_CERT, TRESOR_KEY, TRESOR_TOKEN")?,
        );
        return Ok((e.split(',').map(|s| s.trim().to_string()).collect(), None));
    }
    eprintln!("starting a local six-node cluster in {}", dir.display());
    let launcher = NodeLauncher {
        program: std::env::current_exe().context("cannot find own executable")?,
        args: vec!["node".into(), "serve".into()],
    };
    let mut cluster = LocalCluster::create(dir, spec, launcher)?;
    tresor_client::set_default_credentials(cluster.credentials().clone());
    cluster.start_all(Duration::from_secs(30)).await?;
    cluster.form(Duration::from_secs(60)).await?;
    let endpoints = cluster.nodes.iter().map(|n| n.endpoint()).collect();
    Ok((endpoints, Some(cluster)))
}

/// Runs the benchmark and prints its report.
pub async fn run(opts: BenchOptions) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new().prefix("tresor-bench-").tempdir()?;
    let dir = opts
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    // Healing runs only when the bench starts it, unthrottled, so its
    // speed is measured rather than its configured cap.
    let spec = LocalClusterSpec {
        http: false,
        healing: tresor_node::config::HealingTuning {
            repair_interval_secs: 24 * 3600,
            repair_bytes_per_sec: 1 << 40,
            scrub_bytes_per_sec: 1 << 40,
            ..Default::default()
        },
        ..LocalClusterSpec::default()
    };
    let (endpoints, mut local) =
        cluster_for(opts.endpoint.as_deref(), &dir.join("cluster"), spec).await?;
    let mut result = measure(&opts, &dir, &endpoints, local.as_ref()).await;
    if let (Ok(()), Some(cluster)) = (&result, local.as_mut()) {
        result = heal(cluster, opts.json).await;
    }
    if let Some(mut cluster) = local {
        cluster.stop_all(Duration::from_secs(10)).await;
    }
    result
}

async fn measure(
    opts: &BenchOptions,
    dir: &std::path::Path,
    endpoints: &[String],
    local: Option<&LocalCluster>,
) -> anyhow::Result<()> {
    let mut admin = tresor_client::admin(&endpoints[0]).await?;
    let created = admin
        .create_bucket(pb::CreateBucketRequest {
            name: "bench".into(),
            data: 4,
            parity: 2,
            retention: String::new(),
        })
        .await;
    if let Err(s) = created {
        if s.code() != tonic::Code::AlreadyExists {
            return Err(anyhow!("create bucket bench: {}", s.message()));
        }
    }
    let run_id = format!(
        "run-{}",
        &tresor_node::ids::ObjectId::random().to_hex()[..8]
    );
    eprintln!("measuring the in-process baseline (SHA-256 + 4+2 encode + 6 shard files, fsync)");
    let baseline_dir = dir.join("baseline");
    std::fs::create_dir_all(&baseline_dir)?;
    let base = baseline(&baseline_dir, 256 * MIB)?;

    let creds = (*tresor_client::default_credentials()).clone();
    let mut rows = Vec::new();
    for (size, per_client) in [(MIB, 32), (64 * MIB, 4)] {
        for clients in [1, 4] {
            let run = format!("{run_id}-{clients}");
            eprintln!(
                "PUT {} MiB x {} with {clients} client(s)",
                size / MIB,
                clients * per_client
            );
            rows.push(
                run_workload(&creds, endpoints, "put", size, clients, per_client, &run).await?,
            );
            eprintln!(
                "GET {} MiB x {} with {clients} client(s)",
                size / MIB,
                clients * per_client
            );
            rows.push(
                run_workload(&creds, endpoints, "get", size, clients, per_client, &run).await?,
            );
        }
    }

    let pids: Vec<u32> = local
        .map(|c| c.nodes.iter().filter_map(|n| n.pid()).collect())
        .unwrap_or_default();
    let rss_before: u64 = pids.iter().filter_map(|p| peak_rss(*p)).max().unwrap_or(0);
    let mut big = None;
    if opts.big_object_mib > 0 {
        let bytes = (opts.big_object_mib * MIB) as u64;
        eprintln!(
            "PUT one {} MiB object while sampling node memory",
            opts.big_object_mib
        );
        let client = Client::connect(&endpoints[..1]).await?;
        let sampler_pids = pids.clone();
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let sampler = tokio::spawn(async move {
            let mut peak = 0u64;
            loop {
                for p in &sampler_pids {
                    peak = peak.max(current_rss(*p).unwrap_or(0));
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop_rx.changed() => return peak,
                }
            }
        });
        let started = Instant::now();
        client
            .put(
                "bench",
                &format!("{run_id}/big"),
                Generated::new(bytes, 7),
                PutOptions::default(),
            )
            .await
            .map_err(|e| anyhow!("big put: {e}"))?;
        let elapsed = started.elapsed();
        let _ = stop_tx.send(true);
        let sampled_peak = sampler.await.unwrap_or(0);
        let rss_after: u64 = pids.iter().filter_map(|p| peak_rss(*p)).max().unwrap_or(0);
        big = Some((bytes, elapsed, sampled_peak, rss_before, rss_after));
    }

    let security = match local {
        Some(_) => Some(security_cost(dir, endpoints, &creds, &run_id).await?),
        None => None,
    };

    if opts.json {
        let doc = json!({
            "baseline_mb_per_s": base,
            "security_cost": security.as_ref().map(|rows| rows.iter().map(|r| json!({
                "op": r.op,
                "object_bytes": 64 * MIB,
                "clients": r.clients,
                "secure_mb_per_s": r.secure,
                "insecure_mb_per_s": r.insecure,
                "ratio": r.secure / r.insecure,
            })).collect::<Vec<_>>()),
            "workloads": rows.iter().map(|r| json!({
                "op": r.op,
                "object_bytes": r.object_bytes,
                "clients": r.clients,
                "objects": r.objects,
                "mb_per_s": r.mb_per_s,
                "ratio_to_baseline": r.mb_per_s / base,
                "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms,
            })).collect::<Vec<_>>(),
            "big_object": big.map(|(bytes, elapsed, sampled, before, after)| json!({
                "bytes": bytes,
                "mb_per_s": bytes as f64 / 1e6 / elapsed.as_secs_f64(),
                "node_peak_rss_bytes_during": sampled,
                "node_peak_rss_bytes_before": before,
                "node_peak_rss_bytes_after": after,
            })),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("baseline (in-process SHA-256 + 4+2 encode + shard files with fsync): {base:.0} MB/s");
    println!(
        "{:<4} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "OP", "OBJECT", "CLIENTS", "OBJECTS", "MB/s", "×BASE", "p50 ms", "p99 ms"
    );
    for r in &rows {
        println!(
            "{:<4} {:>6}Mi {:>7} {:>7} {:>9.0} {:>9.2} {:>9.1} {:>9.1}",
            r.op,
            r.object_bytes / MIB,
            r.clients,
            r.objects,
            r.mb_per_s,
            r.mb_per_s / base,
            r.p50_ms,
            r.p99_ms
        );
    }
    if let Some(rows) = &security {
        println!("TLS + auth + encryption at rest against the same cluster insecure (plaintext, no auth, no encryption); 64 MiB objects, best of {SECURITY_ROUNDS} alternating rounds:");
        for r in rows {
            println!(
                "  {:<4} {} client(s): secure {:.0} MB/s, insecure {:.0} MB/s, ratio {:.2}",
                r.op,
                r.clients,
                r.secure,
                r.insecure,
                r.secure / r.insecure
            );
        }
    }
    if let Some((bytes, elapsed, sampled, before, after)) = big {
        println!(
            "one {} MiB PUT: {:.0} MB/s; largest node RSS during it {} MiB (peak before it {} MiB, after {} MiB)",
            bytes / MIB as u64,
            bytes as f64 / 1e6 / elapsed.as_secs_f64(),
            sampled / MIB as u64,
            before / MIB as u64,
            after / MIB as u64
        );
    }
    Ok(())
}
