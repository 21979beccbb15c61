//! Regressions from the fault campaign: acknowledged footage lost to orphan
//! collection during a slow upload; visible-but-unreadable objects after a
//! leader was killed mid-commit; whole shard files condemned for one bad
//! block; a client's retry after its coordinator and the leader died.
//!
//! Each test prints what it ran (cycles, acknowledged, lost, unreadable) so
//! a run's figures can be quoted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tresor_node::config::{DataTuning, HealingTuning};
use tresor_proto::v1 as pb;
use tresor_tests::calls::{outcome_unknown, put_once};
use tresor_tests::{cluster, flip_byte, header, pattern, sha256_hex, spec, wait_for, Harness};

const SHARD: usize = 4096;
const STRIPE: usize = 4 * SHARD;
const WAIT: Duration = Duration::from_secs(60);
const PUT_WITHIN: Duration = Duration::from_secs(90);

/// A formed six-node, three-zone cluster with small shards and segments of
/// `segment_stripes` stripes, bucket `footage` (4+2).
async fn fault_cluster(
    segment_stripes: u64,
    tune: impl FnOnce(&mut HealingTuning),
) -> anyhow::Result<Harness> {
    fault_cluster_of(6, segment_stripes, tune).await
}

async fn fault_cluster_of(
    nodes: usize,
    segment_stripes: u64,
    tune: impl FnOnce(&mut HealingTuning),
) -> anyhow::Result<Harness> {
    let mut s = spec(nodes, 3);
    s.data = DataTuning {
        shard_bytes: SHARD as u32,
        segment_bytes: segment_stripes * STRIPE as u64,
        ..Default::default()
    };
    tune(&mut s.healing);
    cluster!(data, spec = s)
}

#[tokio::test]
async fn upload_slower_than_the_orphan_grace_period_is_kept_whole() -> anyhow::Result<()> {
    // Collection every second of files a second old: without the upload
    // record, the first segments of this upload would be taken while it is
    // still sending the rest.
    let h = fault_cluster(4, |t| {
        t.orphan_grace_secs = 1;
        t.gc_interval_secs = 1;
    })
    .await?;
    let data = pattern(24 * STRIPE + 123, 77);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::PutRequest>(2);
    let mut client = h.objects(2).await?;
    let upload = tokio::spawn(async move {
        client
            .put(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tx.send(pb::PutRequest {
        msg: Some(pb::put_request::Msg::Header(header("footage", "slow"))),
    })
    .await?;
    // A slow client: one stripe every 200 ms, about five seconds in all,
    // with collection passes running meanwhile.
    let started = Instant::now();
    for chunk in data.chunks(STRIPE) {
        tx.send(pb::PutRequest {
            msg: Some(pb::put_request::Msg::Data(chunk.to_vec())),
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(tx);
    let stored = tokio::time::timeout(WAIT, upload).await???.into_inner();
    let took = started.elapsed();
    assert_eq!(stored.sha256, sha256_hex(&data));
    let gc = h.worker(1, "gc").await?;
    assert!(
        tresor_tests::counter(&gc, "passes") >= 1 || gc.last_pass_ms.is_some(),
        "collection ran during the upload"
    );
    // Reads after more collection passes: every byte still there.
    for via in [1, 4, 6] {
        h.run_worker(via, "gc").await?;
    }
    for via in [3, 5] {
        let (_, back) = h.get(via, "footage", "slow", None, None).await?;
        assert!(
            back == data,
            "slow upload read back wrong through node {via}"
        );
    }
    eprintln!(
        "slow upload: {} bytes over {took:?}, grace 1 s; read back whole",
        data.len()
    );
    Ok(())
}

/// Offset of block `block` in a shard file (after its 64-byte header).
fn block_offset(block: u64) -> u64 {
    64 + block * SHARD as u64
}

#[tokio::test]
async fn one_bad_block_in_each_of_m_plus_one_files_is_recovered_block_by_block(
) -> anyhow::Result<()> {
    let mut h = fault_cluster(1 << 20, |t| {
        t.repair_interval_secs = 3600;
        t.orphan_grace_secs = 1;
        t.gc_interval_secs = 1;
    })
    .await?;
    let data = pattern(6 * STRIPE + 500, 31);
    h.put(1, "footage", "clip", &data).await?;
    // One segment: each node holds one shard file of it. Damage block 0 of
    // the first file, block 1 of the second, block 2 of the third: three
    // files (more than m = 2), but never more than one block per stripe.
    let mut damaged = Vec::new();
    for (block, node) in [1u64, 2, 3].into_iter().enumerate() {
        let files = h.shard_files(node);
        anyhow::ensure!(files.len() == 1, "node {node} holds {files:?}");
        flip_byte(&files[0], block_offset(block as u64) + 17)?;
        damaged.push(files[0].clone());
    }
    // Every read is right, not only the first (the first reports damage).
    for round in 0..3 {
        for via in [4, 5, 6, 1] {
            let (_, back) = h.get(via, "footage", "clip", None, None).await?;
            assert!(back == data, "read {round} through node {via} was wrong");
        }
        let (_, range) = h
            .get(
                2,
                "footage",
                "clip",
                Some(STRIPE as u64 + 7),
                Some(3 * STRIPE as u64),
            )
            .await?;
        assert!(
            range[..] == data[STRIPE + 7..4 * STRIPE + 7],
            "range read {round}"
        );
    }
    // Scrub finds all three.
    let leader = h.leader().await?;
    let (checked, errors) = h.scrub_everywhere(&h.ids()).await?;
    assert_eq!(checked, 6, "one shard file per node");
    assert_eq!(errors, 3, "scrub finds each damaged file");
    let s = h.status(leader).await?;
    assert_eq!(
        s.degraded_segments, 1,
        "the damaged segment is counted degraded"
    );
    // Repair restores full redundancy: every file verifies again.
    h.run_worker(leader, "repair").await?;
    h.wait_fully_redundant(leader).await?;
    let (checked, errors) = h.scrub_everywhere(&h.ids()).await?;
    assert_eq!((checked, errors), (6, 0), "repaired files verify");
    // Collection passes delete nothing good.
    for id in h.ids() {
        h.run_worker(id, "gc").await?;
    }
    wait_for("collection passes", WAIT, || async {
        for id in h.ids() {
            let w = h.worker(id, "gc").await?;
            if tresor_tests::counter(&w, "passes") == 0 && w.last_pass_ms.is_none() {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;
    let total: usize = h.ids().iter().map(|id| h.shard_files(*id).len()).sum();
    assert_eq!(total, 6, "six shard files, none collected");
    for via in h.ids() {
        let (_, back) = h.get(via, "footage", "clip", None, None).await?;
        assert!(back == data, "read after repair through node {via}");
    }
    Ok(())
}

/// What happened to each upload of a kill loop, by key.
#[derive(Default)]
struct Ledger {
    /// Keys whose put was acknowledged, with their bytes' SHA-256.
    acked: BTreeMap<String, String>,
    /// Keys whose put failed, with the data's SHA-256 and the error.
    failed: BTreeMap<String, (String, String)>,
}

/// Runs `cycles` kill -9 cycles while `writers` tasks put small objects
/// through random nodes; `victim` picks the node to kill given the leader.
/// Then checks every outcome: acknowledged objects read back right, failed
/// ones are absent or whole and right, nothing is visible but unreadable.
async fn kill_loop(
    h: &mut Harness,
    cycles: usize,
    writers: usize,
    victim: impl Fn(u64, usize) -> u64,
) -> anyhow::Result<()> {
    let endpoints: Vec<String> = h.ids().iter().map(|id| h.endpoint(*id)).collect();
    let credentials = h.credentials().clone();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (endpoints, credentials) = (endpoints.clone(), credentials.clone());
        let (ledger, stop, done) = (ledger.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            // Bounded: the loop ends when told, or after this many puts.
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                let key = format!("w{w}/{n}");
                let data = pattern(
                    SHARD + (n * 997 + w * 131) % (3 * STRIPE),
                    (w * 7919 + n) as u64,
                );
                let endpoint = &endpoints[(n * 5 + w * 3) % endpoints.len()];
                let outcome = put_once(endpoint, &credentials, &key, &data, PUT_WITHIN).await;
                let sum = sha256_hex(&data);
                if let Ok(mut l) = ledger.lock() {
                    match outcome {
                        Ok(()) => {
                            l.acked.insert(key, sum);
                        }
                        Err(e) => {
                            l.failed.insert(key, (sum, e));
                        }
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    let started = Instant::now();
    let mut recoveries = Vec::new();
    for cycle in 0..cycles {
        // Let some puts through before each kill.
        let before = done.load(Ordering::Relaxed);
        wait_for("puts between kills", WAIT, || async {
            Ok((done.load(Ordering::Relaxed) >= before + writers as u64).then_some(()))
        })
        .await?;
        let leader = h.leader().await?;
        let dead = victim(leader, cycle);
        h.kill(dead);
        let killed_at = Instant::now();
        let survivors: Vec<u64> = h.ids().into_iter().filter(|id| *id != dead).collect();
        h.leader_among(&survivors).await?;
        recoveries.push(killed_at.elapsed());
        h.restart(dead).await?;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t).await??;
    }
    let ledger = std::mem::take(&mut *ledger.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    h.leader().await?;
    let via = h.ids();
    let mut lost = Vec::new();
    for (i, (key, sum)) in ledger.acked.iter().enumerate() {
        let node = via[i % via.len()];
        match h.get(node, "footage", key, None, None).await {
            Ok((info, back)) if info.sha256 == *sum && sha256_hex(&back) == *sum => {}
            Ok((info, _)) => lost.push(format!("{key}: read back as {}", info.sha256)),
            Err(s) => lost.push(format!("{key}: {:?} {}", s.code(), s.message())),
        }
    }
    let (mut absent, mut whole, mut unreadable) = (0, 0, Vec::new());
    let mut definite_but_stored = Vec::new();
    for (i, (key, (sum, why))) in ledger.failed.iter().enumerate() {
        let node = via[i % via.len()];
        match h.stat(node, "footage", key).await {
            Err(s) if s.code() == tonic::Code::NotFound => absent += 1,
            Err(s) => unreadable.push(format!("{key}: stat {:?} {}", s.code(), s.message())),
            Ok(_) => match h.get(node, "footage", key, None, None).await {
                Ok((_, back)) if sha256_hex(&back) == *sum => {
                    whole += 1;
                    // Only a lost answer may hide a stored object: an error
                    // the coordinator itself gave means "not stored".
                    if !outcome_unknown(why) {
                        definite_but_stored.push(format!("{key}: {why}"));
                    }
                }
                Ok(_) => unreadable.push(format!("{key}: visible with other bytes")),
                Err(s) => {
                    unreadable.push(format!("{key}: visible, {:?} {}", s.code(), s.message()))
                }
            },
        }
    }
    let worst = recoveries.iter().max().copied().unwrap_or_default();
    eprintln!(
        "kill loop: {cycles} cycles in {:?}; {} acknowledged, {} lost; {} failed: {absent} absent, \
         {whole} complete and correct, {} visible but unreadable; new leader within {worst:?} at worst",
        started.elapsed(),
        ledger.acked.len(),
        lost.len(),
        ledger.failed.len(),
        unreadable.len()
    );
    assert!(lost.is_empty(), "acknowledged objects lost: {lost:?}");
    assert!(
        definite_but_stored.is_empty(),
        "puts refused by a live coordinator were stored after all: {definite_but_stored:?}"
    );
    assert!(
        unreadable.is_empty(),
        "failed puts left visible damage: {unreadable:?}"
    );
    assert!(
        ledger.acked.len() >= cycles,
        "too few puts got through to mean anything"
    );
    Ok(())
}

#[tokio::test]
async fn leader_killed_during_small_uploads_through_followers_loses_nothing() -> anyhow::Result<()>
{
    let mut h = fault_cluster(1 << 20, |_| {}).await?;
    kill_loop(&mut h, 30, 6, |leader, _| leader).await
}

#[tokio::test]
async fn random_node_killed_during_uploads_loses_nothing() -> anyhow::Result<()> {
    let mut h = fault_cluster(1 << 20, |_| {}).await?;
    // A fixed, varied sequence: the leader every third cycle, else others.
    kill_loop(&mut h, 30, 6, |leader, cycle| {
        if cycle % 3 == 0 {
            leader
        } else {
            let other = 1 + ((cycle * 7 + 3) % 6) as u64;
            if other == leader {
                1 + (other % 6)
            } else {
                other
            }
        }
    })
    .await
}

#[tokio::test]
async fn coordinator_and_leader_killed_mid_upload_then_the_retry_succeeds() -> anyhow::Result<()> {
    // Eight nodes: with two of them dead, six remain for a 4+2 retry.
    let mut h = fault_cluster_of(8, 64, |t| {
        t.orphan_grace_secs = 1;
        t.gc_interval_secs = 1;
    })
    .await?;
    let leader = h.leader().await?;
    let coordinator = h
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let others: Vec<u64> = h
        .ids()
        .into_iter()
        .filter(|id| *id != leader && *id != coordinator)
        .collect();
    let mut endpoints = vec![h.endpoint(coordinator)];
    endpoints.extend(others.iter().map(|id| h.endpoint(*id)));
    let client = tresor_client::Client::connect_with(&endpoints, h.credentials()).await?;

    // 12 MiB of footage; segments of 64 stripes (1 MiB): several segments
    // are durable before the cut.
    let data = pattern(12 << 20, 4242);
    let (mut writer, reader) = tokio::io::duplex(256 * 1024);
    let first = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .put("footage", "bodycam-7", reader, Default::default())
                .await
        })
    };
    use tokio::io::AsyncWriteExt;
    writer.write_all(&data[..8 << 20]).await?;
    wait_for("segments of the first attempt on disk", WAIT, || async {
        let files: usize = h.ids().iter().map(|id| h.shard_files(*id).len()).sum();
        Ok((files >= 3 * 6).then_some(()))
    })
    .await?;
    h.kill(coordinator);
    h.kill(leader);
    drop(writer);
    let failed = tokio::time::timeout(WAIT, first).await??;
    assert!(failed.is_err(), "the cut-off attempt cannot have succeeded");
    let partial = h.stat(others[0], "footage", "bodycam-7").await;
    assert_eq!(
        partial.map(|i| i.size).map_err(|s| s.code()),
        Err(tonic::Code::NotFound),
        "nothing of the cut-off attempt is visible"
    );

    // The retry, through the client's failover, from a file.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bodycam-7.mp4");
    std::fs::write(&path, &data)?;
    let stored = client
        .put_file("footage", "bodycam-7", &path, Default::default())
        .await?;
    assert_eq!(stored.sha256, sha256_hex(&data));
    let (_, back) = h.get(others[1], "footage", "bodycam-7", None, None).await?;
    assert!(back == data, "retried upload reads back whole");

    // The dead attempt's shard files are collected once its coordinator is
    // back (it aborts the uploads it was running when it died).
    h.restart(coordinator).await?;
    h.restart(leader).await?;
    let info = h.stat(others[0], "footage", "bodycam-7").await?;
    // Stored bytes: the footage sealed in 64 KiB chunks, 16 bytes of tag
    // each (encryption at rest), cut into segments of 64 stripes.
    let stored = info.size + 16 * info.size.div_ceil(64 * 1024);
    let segment_bytes = (64 * STRIPE) as u64;
    let recorded = stored.div_ceil(segment_bytes) * 6 - info.missing_shards as u64;
    wait_for("orphans of the cut-off attempt collected", WAIT, || async {
        let files: usize = h.ids().iter().map(|id| h.shard_files(*id).len()).sum();
        Ok((files as u64 == recorded).then_some(()))
    })
    .await?;
    let (_, back) = h
        .get(coordinator, "footage", "bodycam-7", None, None)
        .await?;
    assert!(back == data, "still whole after collection");
    Ok(())
}
