//! Self-healing: repair after a lost disk, scrub of corrupt files, rebuild
//! after a node stays down, drain under reads, a crash mid-repair, orphan
//! collection, and the degraded-segment gauge.

use std::time::Duration;

use tresor_node::config::{DataTuning, HealingTuning};
use tresor_proto::v1 as pb;
use tresor_tests::{cluster, header, pattern, sha256_hex, spec, wait_for, Harness, HEAL_TIMEOUT};

const SHARD: usize = 4096;
const STRIPE: usize = 4 * SHARD;

fn healing() -> HealingTuning {
    HealingTuning {
        down_after_secs: 2,
        rebuild_after_secs: 3600,
        scrub_interval_secs: 3600,
        scrub_bytes_per_sec: 1 << 30,
        repair_interval_secs: 1,
        repair_bytes_per_sec: 1 << 30,
        orphan_grace_secs: 3600,
        gc_interval_secs: 3600,
        upload_expiry_secs: 3600,
        ..Default::default()
    }
}

async fn healing_cluster(
    nodes: usize,
    tune: impl FnOnce(&mut HealingTuning),
) -> anyhow::Result<Harness> {
    let mut s = spec(nodes, 3);
    s.data = DataTuning {
        shard_bytes: SHARD as u32,
        segment_bytes: 4 * STRIPE as u64,
        ..Default::default()
    };
    s.healing = healing();
    tune(&mut s.healing);
    s.http = true;
    let mut h = cluster!(spec = s)?;
    h.form().await?;
    let leader = h.leader().await?;
    h.create_bucket(leader, "footage", 4, 2).await?;
    Ok(h)
}

/// Uploads `count` objects of a few segments each; returns them.
async fn upload(h: &Harness, count: usize) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut objects = Vec::new();
    for i in 0..count {
        let data = pattern(9 * STRIPE + 100 * i, 50 + i as u64);
        let key = format!("cam/{i}");
        h.put(1 + (i as u64 % 3), "footage", &key, &data).await?;
        objects.push((key, data));
    }
    Ok(objects)
}

async fn all_read_back(h: &Harness, via: u64, objects: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    for (key, data) in objects {
        let (info, got) = h.get(via, "footage", key, None, None).await?;
        assert_eq!(info.sha256, sha256_hex(data));
        assert!(got == *data, "{key} differs");
    }
    Ok(())
}

/// Shard locations the manifests record, over every object.
async fn recorded_locations(
    h: &Harness,
    via: u64,
    objects: &[(String, Vec<u8>)],
) -> anyhow::Result<u64> {
    let mut total = 0;
    for (key, _) in objects {
        let info = h.stat(via, "footage", key).await?;
        let segments = info.size.div_ceil(4 * STRIPE as u64);
        total += segments * 6 - info.missing_shards as u64;
    }
    Ok(total)
}

#[tokio::test]
async fn replaced_disk_is_repaired_onto_a_new_node() -> anyhow::Result<()> {
    let mut h = healing_cluster(6, |_| {}).await?;
    let objects = upload(&h, 3).await?;
    let leader = h.leader().await?;
    let victim = [3u64, 6]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a dc3 node that does not lead");
    h.kill(victim);
    std::fs::remove_dir_all(h.data_dir(victim))?;

    // Removal without --force is refused while the node holds shards.
    let mut admin = h.admin(leader).await?;
    let err = admin
        .remove_node(pb::RemoveNodeRequest {
            id: victim,
            force: false,
        })
        .await
        .expect_err("holds shards");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    admin
        .remove_node(pb::RemoveNodeRequest {
            id: victim,
            force: true,
        })
        .await?;
    assert!(h.status(leader).await?.degraded_segments > 0);

    let fresh = h.spawn_new_node("dc3").await?;
    h.add_node(leader, fresh).await?;
    h.run_worker(leader, "repair").await?;
    h.wait_fully_redundant(leader).await?;

    // Checked, not assumed: every node verifies every shard file the
    // manifests place on it, and the count matches the manifests.
    let live: Vec<u64> = h.ids().into_iter().filter(|id| *id != victim).collect();
    let (checked, errors) = h.scrub_everywhere(&live).await?;
    assert_eq!(errors, 0);
    assert_eq!(checked, recorded_locations(&h, leader, &objects).await?);
    assert_eq!(
        checked,
        3 * 3 * 6,
        "three objects of three segments, six shards each"
    );
    assert!(
        !h.shard_files(fresh).is_empty(),
        "the new node received shards"
    );
    all_read_back(&h, fresh, &objects).await
}

#[tokio::test]
async fn node_with_a_wiped_data_dir_is_kept_out() -> anyhow::Result<()> {
    let mut h = healing_cluster(3, |_| {}).await?;
    let leader = h.leader().await?;
    let victim = h
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    h.kill(victim);
    std::fs::remove_dir_all(h.data_dir(victim))?;
    h.restart(victim).await?;
    // Writes go on without it, and it never joins with an empty log.
    for i in 0..5 {
        h.create_bucket(leader, &format!("after-wipe-{i}"), 2, 1)
            .await?;
    }
    let log = h.dir().join(format!("node-{victim}.log"));
    wait_for("the wiped node explains itself", HEAL_TIMEOUT, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        Ok(text.contains("lost its state").then_some(()))
    })
    .await?;
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains("nodes remove"),
        "the message tells the operator what to do"
    );
    let info = h
        .admin(victim)
        .await?
        .node_info(pb::NodeInfoRequest {})
        .await?
        .into_inner();
    assert!(
        !info.initialized,
        "the wiped node must not have joined Raft"
    );
    assert!(h.bucket_names(victim).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn scrub_finds_every_damaged_file_and_repair_restores_all() -> anyhow::Result<()> {
    // Repair waits for the explicit trigger, so scrub alone is measured.
    let h = healing_cluster(6, |t| t.repair_interval_secs = 3600).await?;
    let objects = upload(&h, 3).await?;
    let mut files = Vec::new();
    for id in h.ids() {
        for f in h.shard_files(id) {
            files.push(f);
        }
    }
    files.sort();
    // A spread-out sample: flip, truncate, delete — at most one file per
    // node so no stripe loses more than parity covers.
    let mut damaged = 0;
    for id in h.ids() {
        let mine: Vec<_> = h.shard_files(id);
        let Some(f) = mine.get(id as usize % mine.len().max(1)) else {
            continue;
        };
        match id % 3 {
            0 => tresor_tests::flip_byte(f, 64 + 5)?,
            1 => {
                let len = std::fs::metadata(f)?.len();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(f)?
                    .set_len(len / 2)?;
            }
            _ => std::fs::remove_file(f)?,
        }
        damaged += 1;
        if damaged == 2 {
            break;
        }
    }
    let (_, errors) = h.scrub_everywhere(&h.ids()).await?;
    assert_eq!(errors, damaged, "scrub must find every damaged file");
    let leader = h.leader_among(&h.ids()).await?;
    wait_for("reports committed", HEAL_TIMEOUT, || async {
        Ok((h.status(leader).await?.degraded_segments == damaged).then_some(()))
    })
    .await?;
    h.run_worker(leader, "repair").await?;
    h.wait_fully_redundant(leader).await?;
    let (_, errors) = h.scrub_everywhere(&h.ids()).await?;
    assert_eq!(errors, 0);
    all_read_back(&h, 2, &objects).await
}

#[tokio::test]
async fn node_down_past_rebuild_after_is_rebuilt_and_survives_two_more_losses() -> anyhow::Result<()>
{
    let mut h = healing_cluster(7, |t| t.rebuild_after_secs = 3).await?;
    let objects = upload(&h, 2).await?;
    let leader = h.leader().await?;
    let s = h.status(leader).await?;
    let learners: Vec<u64> = s
        .nodes
        .iter()
        .filter(|n| n.role == "learner")
        .map(|n| n.id)
        .collect();
    assert_eq!(learners.len(), 2);
    // Stop a learner for good (so Raft keeps its five voters).
    let gone = learners[0];
    h.kill(gone);
    wait_for("node marked down", HEAL_TIMEOUT, || async {
        let s = h.status(leader).await?;
        Ok(s.nodes
            .iter()
            .any(|n| n.id == gone && n.state == "down")
            .then_some(()))
    })
    .await?;
    h.wait_fully_redundant(leader).await?;
    let s = h.status(leader).await?;
    assert_eq!(
        s.nodes.iter().find(|n| n.id == gone).map(|n| n.shards),
        Some(0)
    );
    // Two more losses (m = 2): the other learner and a voter that does not lead.
    let voter = s
        .nodes
        .iter()
        .find(|n| n.role == "voter" && n.id != leader)
        .map(|n| n.id)
        .expect("voter");
    h.kill(learners[1]);
    h.kill(voter);
    all_read_back(&h, leader, &objects).await
}

#[tokio::test]
async fn drain_under_reads_moves_every_shard_then_remove_works() -> anyhow::Result<()> {
    let mut h = healing_cluster(7, |_| {}).await?;
    let objects = upload(&h, 3).await?;
    let leader = h.leader().await?;
    let s = h.status(leader).await?;
    let target = s
        .nodes
        .iter()
        .find(|n| n.id != leader && n.shards > 0)
        .map(|n| n.id)
        .expect("a node with shards");

    let reads = {
        let objects = objects.clone();
        let endpoint = h.endpoint(leader);
        tokio::spawn(async move {
            let client = tresor_client::Client::connect(&[endpoint]).await?;
            let mut done = 0;
            let deadline = std::time::Instant::now() + HEAL_TIMEOUT;
            for round in 0..200 {
                if std::time::Instant::now() > deadline {
                    break;
                }
                let (key, data) = &objects[round % objects.len()];
                let mut got = Vec::new();
                client
                    .get("footage", key, None, &mut got, None)
                    .await
                    .map_err(|e| anyhow::anyhow!("read {key} during drain: {e}"))?;
                anyhow::ensure!(got == *data, "read {key} during drain returned other bytes");
                done += 1;
            }
            anyhow::Ok(done)
        })
    };
    h.admin(leader)
        .await?
        .drain_node(pb::DrainNodeRequest { id: target })
        .await?;
    wait_for("drained node holds no shards", HEAL_TIMEOUT, || async {
        let s = h.status(leader).await?;
        Ok((s.nodes.iter().find(|n| n.id == target).map(|n| n.shards) == Some(0)).then_some(()))
    })
    .await?;
    let done = reads.await??;
    assert!(done > 0);
    wait_for("old copies deleted", HEAL_TIMEOUT, || async {
        Ok(h.shard_files(target).is_empty().then_some(()))
    })
    .await?;
    h.admin(leader)
        .await?
        .remove_node(pb::RemoveNodeRequest {
            id: target,
            force: false,
        })
        .await?;
    h.stop(target).await;
    h.wait_fully_redundant(leader).await?;
    all_read_back(&h, leader, &objects).await
}

#[tokio::test]
async fn leader_killed_mid_repair_loses_nothing_and_repair_completes() -> anyhow::Result<()> {
    // Slow repair (64 KiB/s) so the kill lands in the middle of it.
    let mut h = healing_cluster(7, |t| {
        t.repair_bytes_per_sec = 64 * 1024;
        t.repair_interval_secs = 1;
    })
    .await?;
    let objects = upload(&h, 3).await?;
    let leader = h.leader().await?;
    let s = h.status(leader).await?;
    let victim = s
        .nodes
        .iter()
        .find(|n| n.role == "learner" && n.shards > 0)
        .map(|n| n.id)
        .expect("a learner with shards");
    h.kill(victim);
    h.admin(leader)
        .await?
        .remove_node(pb::RemoveNodeRequest {
            id: victim,
            force: true,
        })
        .await?;
    wait_for("repair under way", HEAL_TIMEOUT, || async {
        let w = h.worker(leader, "repair").await?;
        Ok(
            (tresor_tests::in_pass(&w) && tresor_tests::counter(&w, "bytes_rebuilt") > 0)
                .then_some(()),
        )
    })
    .await?;
    h.kill(leader);
    h.restart(leader).await?;
    let new_leader = h
        .leader_among(
            &h.ids()
                .into_iter()
                .filter(|i| *i != victim)
                .collect::<Vec<_>>(),
        )
        .await?;
    h.wait_fully_redundant(new_leader).await?;
    all_read_back(&h, new_leader, &objects).await
}

#[tokio::test]
async fn orphans_of_a_killed_upload_are_collected_and_referenced_shards_never() -> anyhow::Result<()>
{
    let mut h = healing_cluster(6, |t| {
        t.orphan_grace_secs = 2;
        t.gc_interval_secs = 1;
    })
    .await?;
    let objects = upload(&h, 2).await?;
    // An upload of three full segments through node 5, cut off by killing
    // it: its first segments' shard files are committed but unreferenced.
    let data = pattern(12 * STRIPE, 9);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::PutRequest>(4);
    let mut client = h.objects(5).await?;
    let upload = tokio::spawn(async move {
        client
            .put(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tx.send(pb::PutRequest {
        msg: Some(pb::put_request::Msg::Header(header("footage", "cut-off"))),
    })
    .await?;
    for chunk in data[..9 * STRIPE].chunks(STRIPE) {
        tx.send(pb::PutRequest {
            msg: Some(pb::put_request::Msg::Data(chunk.to_vec())),
        })
        .await?;
    }
    let before: usize = h.ids().iter().map(|id| h.shard_files(*id).len()).sum();
    wait_for("orphan segments on disk", HEAL_TIMEOUT, || async {
        let now: usize = h.ids().iter().map(|id| h.shard_files(*id).len()).sum();
        Ok((now >= before + 6).then_some(()))
    })
    .await?;
    h.kill(5);
    let _ = tokio::time::timeout(Duration::from_secs(30), upload).await;
    drop(tx);
    h.restart(5).await?;
    let referenced = recorded_locations(&h, 1, &objects).await?;
    wait_for("orphans collected", HEAL_TIMEOUT, || async {
        let now: usize = h.ids().iter().map(|id| h.shard_files(*id).len()).sum();
        Ok((now as u64 == referenced).then_some(()))
    })
    .await?;
    // Every referenced file is past the grace now: passes that follow must
    // keep all of them (orphan collection runs every second).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let now: usize = h.ids().iter().map(|id| h.shard_files(*id).len()).sum();
    assert_eq!(
        now as u64, referenced,
        "referenced shard files were collected"
    );
    let err = h
        .stat(1, "footage", "cut-off")
        .await
        .expect_err("never visible");
    assert_eq!(err.code(), tonic::Code::NotFound);
    all_read_back(&h, 2, &objects).await
}

/// `name{labels} value` lines of Prometheus text, as (name+labels, value).
fn parse_prometheus(text: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let kind = rest.split_whitespace().nth(1).unwrap_or("");
                anyhow::ensure!(
                    matches!(
                        kind,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ),
                    "bad TYPE line {line:?}"
                );
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| anyhow::anyhow!("bad line {line:?}"))?;
        let value: f64 = value
            .parse()
            .map_err(|_| anyhow::anyhow!("bad value in {line:?}"))?;
        out.push((series.to_string(), value));
    }
    Ok(out)
}

async fn degraded_gauge(endpoint: &str) -> anyhow::Result<f64> {
    let text = http_get(endpoint, "/metrics").await?;
    let samples = parse_prometheus(&text)?;
    Ok(samples
        .iter()
        .filter(|(s, _)| s.starts_with("tresor_degraded_segments{"))
        .map(|(_, v)| *v)
        .sum())
}

/// A minimal HTTP/1.0 GET on loopback.
async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no body"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    Ok(body.to_string())
}

#[tokio::test]
async fn metrics_parse_and_the_degraded_gauge_follows_loss_and_repair() -> anyhow::Result<()> {
    let mut h = healing_cluster(7, |t| t.rebuild_after_secs = 2).await?;
    let objects = upload(&h, 2).await?;
    let leader = h.leader().await?;
    let http = h.http_addr(leader).expect("nodes serve HTTP in this test");
    assert_eq!(http_get(&http, "/health").await?.trim(), "ok");
    let samples = parse_prometheus(&http_get(&http, "/metrics").await?)?;
    let has = |name: &str| samples.iter().any(|(s, _)| s.starts_with(name));
    for name in [
        "tresor_requests_total",
        "tresor_bytes_in_total",
        "tresor_request_duration_seconds_bucket",
        "tresor_raft_term",
        "tresor_raft_commit_index",
    ] {
        assert!(has(name), "{name} missing from /metrics");
    }
    assert_eq!(degraded_gauge(&http).await?, 0.0);
    let s = h.status(leader).await?;
    let learner = s
        .nodes
        .iter()
        .find(|n| n.role == "learner" && n.shards > 0)
        .map(|n| n.id)
        .expect("a learner with shards");
    h.kill(learner);
    wait_for("degraded gauge rises", HEAL_TIMEOUT, || async {
        Ok((degraded_gauge(&http).await? > 0.0).then_some(()))
    })
    .await?;
    wait_for("degraded gauge back to zero", HEAL_TIMEOUT, || async {
        Ok((degraded_gauge(&http).await? == 0.0).then_some(()))
    })
    .await?;
    all_read_back(&h, leader, &objects).await
}
