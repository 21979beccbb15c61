//! Data-plane faults: lost nodes, a lost zone, corrupt and swapped shard
//! files, too many losses, a coordinator killed mid-upload, a node down
//! during a put. The promise under test: reads return the right bytes or a
//! clear error, and nothing partial ever becomes visible.

use std::path::PathBuf;
use std::time::Duration;

use tresor_proto::v1 as pb;
use tresor_tests::{cluster, files_under, header, pattern, sha256_hex, wait_for, Harness};

const SHARD: usize = 4096;
const STRIPE: usize = 4 * SHARD;

/// The shard files of one object, found by the object's id prefix in names.
fn files_of(h: &Harness, object_files_before: &[(u64, PathBuf)]) -> Vec<(u64, PathBuf)> {
    let mut out = Vec::new();
    for id in h.ids() {
        for f in h.shard_files(id) {
            if !object_files_before.iter().any(|(_, p)| *p == f) {
                out.push((id, f));
            }
        }
    }
    out
}

fn all_files(h: &Harness) -> Vec<(u64, PathBuf)> {
    files_of(h, &[])
}

/// Uploads and returns the new shard files, one per node.
async fn put_tracked(h: &Harness, key: &str, data: &[u8]) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let before = all_files(h);
    h.put(1, "footage", key, data).await?;
    let files = files_of(h, &before);
    assert_eq!(files.len(), 6, "one shard file per node");
    Ok(files)
}

async fn assert_reads_back(h: &Harness, via: u64, key: &str, data: &[u8]) -> anyhow::Result<()> {
    let (info, got) = h.get(via, "footage", key, None, None).await?;
    assert_eq!(info.sha256, sha256_hex(data));
    assert!(got == data, "{key} read through node {via} differs");
    Ok(())
}

#[tokio::test]
async fn any_two_nodes_or_a_whole_zone_can_be_lost() -> anyhow::Result<()> {
    let mut h = cluster!(data, shard = SHARD as u32)?;
    let objects: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("cam/{i}"), pattern(5 * STRIPE + 333 * i, i as u64)))
        .collect();
    for (key, data) in &objects {
        h.put(2, "footage", key, data).await?;
    }
    // Two nodes of different zones (m = 2).
    h.kill(2);
    h.kill(3);
    for (key, data) in &objects {
        assert_reads_back(&h, 1, key, data).await?;
    }
    h.restart(2).await?;
    h.restart(3).await?;
    // Both nodes of zone dc1 (nodes 1 and 4).
    h.kill(1);
    h.kill(4);
    for (key, data) in &objects {
        assert_reads_back(&h, 5, key, data).await?;
    }
    Ok(())
}

#[tokio::test]
async fn more_losses_than_parity_is_unavailable_never_wrong_bytes() -> anyhow::Result<()> {
    let h = cluster!(data, shard = SHARD as u32)?;
    let data = pattern(3 * STRIPE + 17, 5);
    let files = put_tracked(&h, "fragile", &data).await?;
    // m = 2 files gone: still correct.
    std::fs::remove_file(&files[0].1)?;
    std::fs::remove_file(&files[1].1)?;
    assert_reads_back(&h, 3, "fragile", &data).await?;
    // m + 1 gone: Unavailable, with no data message before the error.
    std::fs::remove_file(&files[2].1)?;
    let err = h
        .get(3, "footage", "fragile", None, None)
        .await
        .expect_err("too many lost");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    Ok(())
}

#[tokio::test]
async fn flipped_and_swapped_shard_files_are_detected_and_rebuilt() -> anyhow::Result<()> {
    let h = cluster!(data, shard = SHARD as u32)?;
    let data = pattern(4 * STRIPE + 99, 11);
    let files = put_tracked(&h, "evidence", &data).await?;
    // Flip a byte inside the first block of two files (header is 64 bytes).
    tresor_tests::flip_byte(&files[0].1, 64 + 10)?;
    tresor_tests::flip_byte(&files[3].1, 64 + SHARD as u64 + 1)?;
    for via in 1..=6 {
        assert_reads_back(&h, via, "evidence", &data).await?;
    }

    // The holders confirmed those files bad, so the reads reported them
    // for repair: their locations are cleared in the manifest.
    tresor_tests::wait_for(
        "bad shards reported",
        tresor_tests::SETTLE_TIMEOUT,
        || async {
            Ok((h.stat(1, "footage", "evidence").await?.missing_shards == 2).then_some(()))
        },
    )
    .await?;
    assert_reads_back(&h, 4, "evidence", &data).await?;

    // Replace a shard file of a fresh object with a valid-looking shard of
    // another object on the same node: the header and digest give it away.
    let fresh = pattern(4 * STRIPE + 99, 13);
    let fresh_files = put_tracked(&h, "evidence-2", &fresh).await?;
    let other = pattern(4 * STRIPE + 99, 12);
    let other_files = put_tracked(&h, "other", &other).await?;
    let (node, target) = &fresh_files[1];
    let (_, donor) = other_files
        .iter()
        .find(|(n, _)| n == node)
        .expect("the other object has a file on the same node");
    std::fs::copy(donor, target)?;
    assert_reads_back(&h, 2, "evidence-2", &fresh).await?;
    assert_reads_back(&h, 2, "other", &other).await?;
    Ok(())
}

#[tokio::test]
async fn a_put_with_one_node_down_succeeds_degraded() -> anyhow::Result<()> {
    let mut h = cluster!(data, shard = SHARD as u32)?;
    h.kill(6);
    let data = pattern(6 * STRIPE + 1, 3);
    let put = h.put(1, "footage", "while-down", &data).await?;
    assert_eq!(put.sha256, sha256_hex(&data));
    let info = h.stat(2, "footage", "while-down").await?;
    assert_eq!(
        info.missing_shards, 1,
        "the segment is recorded as degraded"
    );
    assert_reads_back(&h, 3, "while-down", &data).await?;
    // And it still survives one more loss (k + 1 were written).
    h.kill(5);
    assert_reads_back(&h, 3, "while-down", &data).await?;
    Ok(())
}

#[tokio::test]
async fn killing_the_coordinator_mid_upload_leaves_nothing_visible() -> anyhow::Result<()> {
    let mut h = cluster!(data, shard = SHARD as u32)?;
    let data = pattern(20 * STRIPE, 8);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::PutRequest>(4);
    let mut client = h.objects(4).await?;
    let upload = tokio::spawn(async move {
        client
            .put(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tx.send(pb::PutRequest {
        msg: Some(pb::put_request::Msg::Header(header(
            "footage",
            "interrupted",
        ))),
    })
    .await?;
    // Half the object, then the coordinator dies.
    for chunk in data[..10 * STRIPE].chunks(STRIPE) {
        tx.send(pb::PutRequest {
            msg: Some(pb::put_request::Msg::Data(chunk.to_vec())),
        })
        .await?;
    }
    // Killed once shard files are being written, not before the upload
    // reached the nodes.
    wait_for(
        "shard files of the upload in flight",
        Duration::from_secs(30),
        || {
            let writing = h.ids().iter().any(|id| {
                !files_under(&h.data_dir(*id).join("shards-tmp")).is_empty()
                    || !h.shard_files(*id).is_empty()
            });
            async move { Ok(writing.then_some(())) }
        },
    )
    .await?;
    h.kill(4);
    let outcome = tokio::time::timeout(Duration::from_secs(30), upload).await??;
    assert!(
        outcome.is_err(),
        "an upload whose coordinator died must not succeed"
    );
    drop(tx);

    for via in [1, 2, 3] {
        let err = h
            .stat(via, "footage", "interrupted")
            .await
            .expect_err("nothing visible");
        assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    }
    // A retry through another node succeeds.
    h.put(2, "footage", "interrupted", &data).await?;
    assert_reads_back(&h, 3, "interrupted", &data).await?;
    Ok(())
}
