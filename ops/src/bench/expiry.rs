//! `tresor-ops bench expiry`: how fast retention expiry deletes, and what
//! it costs the ingest beside it. On a local six-node cluster, fills a
//! bucket whose policy deletes after 30 days with `--objects` synthetic
//! manifests (metadata only), `--due-percent` of them ingested long enough
//! ago to be due, under a legal hold on the whole bucket. Times 64 MiB puts
//! by one client while the hold keeps the due objects (expiry passes look
//! at them and skip them), releases the hold, times the same puts while
//! expiry deletes, then once more after it is done; reports the deletes per
//! second and the put throughput during expiry as a ratio of the mean of
//! the two phases around it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::json;
use tresor_client::{Client, PutOptions};
use tresor_node::config::{HealingTuning, RetentionTuning};
use tresor_node::devcluster::fill::Fill;
use tresor_node::devcluster::LocalClusterSpec;
use tresor_proto::v1 as pb;

use crate::demo::{counter, worker};

/// Bytes of each timed put.
const PUT_BYTES: usize = 64 << 20;
/// Puts timed before and after expiry.
const PUTS_AROUND: usize = 8;
/// Longest wait for expiry to finish.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(1800);

/// What to run.
pub struct ExpiryOptions {
    /// Objects in the cluster.
    pub objects: u64,
    /// Of them, this percentage is due.
    pub due_percent: u64,
    /// The nodes' `[retention] expiry_objects_per_sec`.
    pub rate: u64,
    /// JSON instead of a table.
    pub json: bool,
    /// Keep the local cluster here.
    pub dir: Option<PathBuf>,
}

/// Runs the benchmark on a local cluster and prints its report.
pub async fn run(opts: ExpiryOptions) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new()
        .prefix("tresor-expiry-")
        .tempdir()?;
    let dir = opts
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let spec = LocalClusterSpec {
        http: false,
        // The synthetic objects have no files: scrub would report them.
        healing: HealingTuning {
            scrub_interval_secs: 365 * 24 * 3600,
            ..HealingTuning::default()
        },
        retention: RetentionTuning {
            expiry_interval_secs: 1,
            expiry_objects_per_sec: opts.rate,
            shred_delay_secs: 2,
        },
        ..LocalClusterSpec::default()
    };
    let (endpoints, local) = super::cluster_for(None, &dir, spec).await?;
    let mut cluster = local.ok_or_else(|| anyhow!("no local cluster"))?;
    let result = expiry(&opts, &endpoints, &mut cluster).await;
    cluster.stop_all(Duration::from_secs(10)).await;
    result
}

async fn expiry(
    opts: &ExpiryOptions,
    endpoints: &[String],
    cluster: &mut tresor_node::devcluster::LocalCluster,
) -> anyhow::Result<()> {
    let mut admin = tresor_client::admin(&endpoints[0]).await?;
    admin
        .create_retention(pb::CreateRetentionRequest {
            name: "bodycam-raw".into(),
            keep_min_ms: None,
            delete_after_ms: Some(30 * 86_400_000),
        })
        .await
        .map_err(|s| anyhow!("create policy: {}", s.message()))?;
    for (name, retention) in [("synthetic", "bodycam-raw"), ("bench", "")] {
        admin
            .create_bucket(pb::CreateBucketRequest {
                name: name.into(),
                data: 4,
                parity: 2,
                retention: retention.into(),
            })
            .await
            .map_err(|s| anyhow!("create bucket {name}: {}", s.message()))?;
    }
    let hold = |place: bool| {
        let endpoint = endpoints[0].clone();
        async move {
            let mut admin = tresor_client::admin(&endpoint).await?;
            let answer = match place {
                true => admin
                    .place_hold(pb::PlaceHoldRequest {
                        case_id: "bench".into(),
                        bucket: "synthetic".into(),
                        target: Some(pb::place_hold_request::Target::Prefix(String::new())),
                        reason: "baseline".into(),
                    })
                    .await
                    .map(|_| ()),
                false => admin
                    .release_hold(pb::ReleaseHoldRequest {
                        case_id: "bench".into(),
                        bucket: "synthetic".into(),
                        target: Some(pb::release_hold_request::Target::Prefix(String::new())),
                    })
                    .await
                    .map(|_| ()),
            };
            answer.map_err(|s| anyhow!("hold: {}", s.message()))
        }
    };
    hold(true).await?;
    let due = opts.objects * opts.due_percent.min(100) / 100;
    let fill = Fill {
        bucket: "synthetic".into(),
        objects: 0..opts.objects,
        audit: 0,
        recent_from: Some(due),
    };
    super::stopped::fill_stopped(cluster, fill).await?;
    let leader = super::heal::status(&endpoints[0])
        .await?
        .leader_id
        .ok_or_else(|| anyhow!("no leader"))?;
    let leader_ep = cluster
        .node(leader)
        .map(|n| n.endpoint())
        .ok_or_else(|| anyhow!("leader not local"))?;
    let client = Client::connect(endpoints).await?;
    let data = tresor_node::devcluster::pattern(PUT_BYTES, 7);
    let (client, data) = (&client, &data);
    let mut n = 0;
    let mut put = move || {
        n += 1;
        let key = format!("clip-{n}");
        async move {
            client
                .put(
                    "bench",
                    &key,
                    std::io::Cursor::new(data.as_slice()),
                    PutOptions::default(),
                )
                .await
                .map_err(|e| anyhow!("put {key}: {e}"))
        }
    };

    let before = Instant::now();
    for _ in 0..PUTS_AROUND {
        put().await?;
    }
    let before_mbs = (PUTS_AROUND * PUT_BYTES) as f64 / 1e6 / before.elapsed().as_secs_f64();
    let held = counter(&worker(&leader_ep, "retention-expiry").await?, "held_due");

    let expired_at_start = counter(
        &worker(&leader_ep, "retention-expiry").await?,
        "objects_expired",
    );
    hold(false).await?;
    let started = Instant::now();
    let (mut during_puts, mut during_time) = (0usize, Duration::ZERO);
    let took = loop {
        let expired = counter(
            &worker(&leader_ep, "retention-expiry").await?,
            "objects_expired",
        ) - expired_at_start;
        if expired >= due {
            break started.elapsed();
        }
        if started.elapsed() > EXPIRY_TIMEOUT {
            return Err(anyhow!(
                "expiry did only {expired} of {due} in {EXPIRY_TIMEOUT:?}"
            ));
        }
        let t = Instant::now();
        put().await?;
        during_time += t.elapsed();
        during_puts += 1;
    };
    let during_mbs = (during_puts * PUT_BYTES) as f64 / 1e6 / during_time.as_secs_f64().max(1e-9);

    let after = Instant::now();
    for _ in 0..PUTS_AROUND {
        put().await?;
    }
    let after_mbs = (PUTS_AROUND * PUT_BYTES) as f64 / 1e6 / after.elapsed().as_secs_f64();
    let per_s = due as f64 / took.as_secs_f64();
    let ratio = during_mbs / ((before_mbs + after_mbs) / 2.0);
    if opts.json {
        println!(
            "{}",
            json!({
                "objects": opts.objects,
                "due": due,
                "held_due_seen": held,
                "rate_limit_per_s": opts.rate,
                "expired_per_s": per_s,
                "expiry_s": took.as_secs_f64(),
                "put_64mib_mb_per_s_before": before_mbs,
                "put_64mib_mb_per_s_during": during_mbs,
                "puts_during": during_puts,
                "put_64mib_mb_per_s_after": after_mbs,
                "during_over_around": ratio,
            })
        );
    } else {
        println!(
            "{} objects, {due} due (a hold kept {held} of them for the baseline); \
             expiry limit {}/s",
            opts.objects, opts.rate
        );
        println!(
            "expiry: {due} deleted in {:.1} s = {per_s:.0} objects/s",
            took.as_secs_f64()
        );
        println!(
            "64 MiB puts, 1 client: {before_mbs:.0} MB/s before, {during_mbs:.0} MB/s during \
             expiry ({during_puts} puts), {after_mbs:.0} MB/s after: during / around = {ratio:.2}"
        );
    }
    Ok(())
}
