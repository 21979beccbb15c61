//! kill -9 at chosen points of an upload (crash points, armed through
//! `FAILPOINTS`; see `tresor_node::crash`): the coordinator dies right after
//! recording the upload, after its first segment is durable, just before
//! the manifest commit, and just after it; a shard target dies between
//! fsync and rename. Each time: nothing partial is visible, the client's
//! key is not poisoned, orphaned shard files are collected, and an object
//! whose commit happened reads back whole.

use std::time::Duration;

use tresor_node::config::DataTuning;
use tresor_tests::{cluster, pattern, sha256_hex, spec, wait_for, Harness};

const SHARD: usize = 4096;
const STRIPE: usize = 4 * SHARD;
const WAIT: Duration = Duration::from_secs(60);

async fn crash_cluster() -> anyhow::Result<Harness> {
    let mut s = spec(6, 3);
    // Two stripes per segment: the test object spans three segments.
    s.data = DataTuning {
        shard_bytes: SHARD as u32,
        segment_bytes: 2 * STRIPE as u64,
        ..Default::default()
    };
    s.healing.orphan_grace_secs = 1;
    s.healing.gc_interval_secs = 1;
    let mut h = cluster!(spec = s)?;
    h.form().await?;
    let leader = h.leader().await?;
    h.create_bucket(leader, "footage", 4, 2).await?;
    Ok(h)
}

fn shard_file_count(h: &Harness) -> usize {
    h.ids().iter().map(|id| h.shard_files(*id).len()).sum()
}

/// Puts `data` through `via`, armed to die at `point`, and waits for the
/// process to be gone; returns what the client saw.
async fn put_into_crash(
    h: &mut Harness,
    via: u64,
    point: &str,
    key: &str,
    data: &[u8],
) -> anyhow::Result<String> {
    h.restart_armed(via, Some(point)).await?;
    let seen = match h.put(via, "footage", key, data).await {
        Ok(r) => format!("acknowledged {}", r.sha256),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    };
    wait_for("the armed node to die", WAIT, || {
        let running = h.is_running(via);
        async move { Ok((!running).then_some(())) }
    })
    .await?;
    Ok(seen)
}

#[tokio::test]
async fn coordinator_killed_at_each_step_of_an_upload_leaves_nothing_partial() -> anyhow::Result<()>
{
    let mut h = crash_cluster().await?;
    let leader = h.leader().await?;
    let via = *h.ids().iter().find(|id| **id != leader).unwrap_or(&leader);
    let other = *h
        .ids()
        .iter()
        .find(|id| **id != leader && **id != via)
        .unwrap_or(&leader);
    let points = [
        ("put::after_begin_upload", false),
        ("put::after_segment", false),
        ("put::before_commit", false),
        ("put::after_commit", true),
    ];
    for (n, (point, commits)) in points.into_iter().enumerate() {
        let before = shard_file_count(&h);
        let key = format!("crash/{n}");
        let data = pattern(5 * STRIPE + 99, 300 + n as u64);
        let seen = put_into_crash(&mut h, via, point, &key, &data).await?;
        assert!(
            !seen.starts_with("acknowledged"),
            "{point}: acknowledged by a dead node: {seen}"
        );
        h.restart_armed(via, None).await?;
        h.leader().await?;

        let stat = h.stat(other, "footage", &key).await;
        if commits {
            let info = stat.map_err(|s| anyhow::anyhow!("{point}: committed object gone: {s}"))?;
            let (_, back) = h
                .get(other, "footage", &key, None, None)
                .await
                .map_err(|s| anyhow::anyhow!("{point}: unreadable: {s}"))?;
            assert_eq!(sha256_hex(&back), sha256_hex(&data), "{point}: wrong bytes");
            assert_eq!(info.missing_shards, 0, "{point}: {info:?}");
            let retry = h.put(other, "footage", &key, &data).await;
            assert_eq!(
                retry.map(|_| ()).map_err(|s| s.code()),
                Err(tonic::Code::AlreadyExists),
                "{point}: a retry of a committed object"
            );
        } else {
            let code = stat.map(|_| ()).map_err(|s| s.code());
            assert_eq!(
                code,
                Err(tonic::Code::NotFound),
                "{point}: a partial object is visible"
            );
            // The restarted coordinator aborts its upload, and GC then
            // takes every file the upload wrote.
            wait_for("orphans of the killed upload collected", WAIT, || async {
                Ok((shard_file_count(&h) == before).then_some(()))
            })
            .await?;
            // The key is free: the retry through another node succeeds.
            let stored = h
                .put(other, "footage", &key, &data)
                .await
                .map_err(|s| anyhow::anyhow!("{point}: retry refused: {s}"))?;
            assert_eq!(stored.sha256, sha256_hex(&data));
        }
        eprintln!(
            "crash at {point}: client saw {seen:?}; afterwards {}",
            if commits {
                "whole and readable"
            } else {
                "absent, orphans collected, retry stored"
            }
        );
    }
    Ok(())
}

#[tokio::test]
async fn shard_target_killed_between_fsync_and_rename_is_repaired() -> anyhow::Result<()> {
    let mut h = crash_cluster().await?;
    let leader = h.leader().await?;
    let ids = h.ids();
    let target = *ids.iter().find(|id| **id != leader).unwrap_or(&leader);
    let via = *ids
        .iter()
        .find(|id| **id != leader && **id != target)
        .unwrap_or(&leader);
    h.restart_armed(target, Some("shard::before_rename"))
        .await?;
    let data = pattern(5 * STRIPE + 7, 404);
    let stored = h
        .put(via, "footage", "crash/target", &data)
        .await
        .map_err(|s| anyhow::anyhow!("one dead target of six failed the upload: {s}"))?;
    assert_eq!(stored.sha256, sha256_hex(&data));
    wait_for("the armed target to die", WAIT, || {
        let running = h.is_running(target);
        async move { Ok((!running).then_some(())) }
    })
    .await?;
    let (_, back) = h
        .get(via, "footage", "crash/target", None, None)
        .await
        .map_err(|s| anyhow::anyhow!("read with a target dead: {s}"))?;
    assert_eq!(sha256_hex(&back), stored.sha256);
    h.restart_armed(target, None).await?;
    let leader = h.leader().await?;
    h.run_worker(leader, "repair").await?;
    h.wait_fully_redundant(leader).await?;
    let (_, back) = h
        .get(target, "footage", "crash/target", None, None)
        .await
        .map_err(|s| anyhow::anyhow!("read after repair: {s}"))?;
    assert_eq!(sha256_hex(&back), stored.sha256);
    Ok(())
}

#[tokio::test]
async fn a_commit_whose_answer_is_lost_is_settled_not_cleaned_up() -> anyhow::Result<()> {
    let mut h = crash_cluster().await?;
    let leader = h.leader().await?;
    let via = *h.ids().iter().find(|id| **id != leader).unwrap_or(&leader);
    // The manifest commits, the coordinator is told it failed: it must
    // learn that it committed (its abort is refused) and keep the shards.
    h.restart_armed(via, Some("put::commit_answer_lost"))
        .await?;
    let data = pattern(5 * STRIPE + 3, 505);
    let stored = h
        .put(via, "footage", "lost-answer", &data)
        .await
        .map_err(|s| anyhow::anyhow!("a committed put was reported failed: {s}"))?;
    assert_eq!(stored.sha256, sha256_hex(&data));
    h.restart_armed(via, None).await?;
    let (info, back) = h
        .get(leader, "footage", "lost-answer", None, None)
        .await
        .map_err(|s| anyhow::anyhow!("visible but unreadable: {s}"))?;
    assert_eq!(sha256_hex(&back), stored.sha256);
    assert_eq!(info.missing_shards, 0);
    Ok(())
}
