//! Small objects: their shards are packed into shared files on each node
//! instead of one file per shard, and they keep every guarantee of the
//! large ones — read back exactly, survive the loss of a zone, never on
//! disk in plaintext, and rebuilt by healing when a node loses its packs.

use tresor_node::config::ShardTuning;
use tresor_tests::{cluster, files_under, spec, wait_for, Harness, HEAL_TIMEOUT};

const MARKER: &[u8] = b"SMALL-CLIP-CANARY-";

/// A recognisable small object of `len` bytes.
fn clip(len: usize, seed: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(format!("SMALL-CLIP-CANARY-{seed:04}-{i:06}|").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Files under `dir` whose path has a component named `name`.
fn files_in(h: &Harness, id: u64, name: &str) -> Vec<std::path::PathBuf> {
    files_under(&h.data_dir(id).join(name))
}

async fn read_all(h: &Harness, via: u64, objects: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    for (key, data) in objects {
        let (_, back) = h.get(via, "footage", key, None, None).await?;
        assert!(&back == data, "{key} read back through node {via}");
    }
    Ok(())
}

#[tokio::test]
async fn small_objects_are_packed_and_keep_every_guarantee() -> anyhow::Result<()> {
    let mut s = spec(6, 3);
    s.shards = ShardTuning::default();
    let mut h = cluster!(spec = s)?;
    h.form().await?;
    let leader = h.leader().await?;
    h.create_bucket(leader, "footage", 4, 2).await?;
    let shards_before: usize = h.ids().iter().map(|id| h.shard_files(*id).len()).sum();
    let mut objects = Vec::new();
    for i in 0..48usize {
        // 1 KiB to 64 KiB, and a few odd sizes.
        let len = 1024 * (1 + (i * 7) % 64) + (i % 5) * 111;
        let key = format!("cam-{i:03}/thumb.jpg");
        let data = clip(len, i);
        h.put(1 + (i as u64 % 6), "footage", &key, &data).await?;
        objects.push((key, data));
    }
    read_all(&h, 3, &objects).await?;

    // Not a file per shard: no new shard files, a pack file per node.
    let shards_after: usize = h.ids().iter().map(|id| h.shard_files(*id).len()).sum();
    assert_eq!(
        shards_after, shards_before,
        "small shards must not be files"
    );
    for id in h.ids() {
        let packs = files_in(&h, id, "packs");
        assert!(
            packs
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "pack")),
            "node {id} has no pack file: {packs:?}"
        );
    }

    // Encrypted at rest: no plaintext anywhere on any node's disk.
    let mut searched = 0;
    for id in h.ids() {
        for file in files_under(&h.data_dir(id)) {
            let bytes = std::fs::read(&file)?;
            searched += bytes.len();
            assert!(!contains(&bytes, MARKER), "plaintext in {}", file.display());
        }
    }
    assert!(searched > objects.iter().map(|(_, d)| d.len()).sum::<usize>());

    // A whole zone lost: everything still reads.
    let zone: Vec<u64> = h
        .ids()
        .into_iter()
        .filter(|id| h.zone(*id) == h.zone(1))
        .collect();
    assert_eq!(zone.len(), 2);
    for id in &zone {
        h.kill(*id);
    }
    let via = h
        .ids()
        .into_iter()
        .find(|id| !zone.contains(id))
        .expect("a survivor");
    read_all(&h, via, &objects).await?;
    for id in &zone {
        h.restart(*id).await?;
    }

    // A node loses its pack files: scrub finds every shard it held gone,
    // repair rebuilds them, and a second scrub finds nothing wrong.
    let victim = 5;
    let leader = h.leader().await?;
    h.stop(victim).await;
    for file in files_in(&h, victim, "packs") {
        if file.extension().is_some_and(|e| e == "pack") {
            std::fs::remove_file(&file)?;
        }
    }
    h.restart(victim).await?;
    let (_, errors) = h.scrub_everywhere(&[victim]).await?;
    assert!(
        errors >= objects.len() as u64 / 2,
        "scrub found {errors} lost shards"
    );
    wait_for("losses reported", HEAL_TIMEOUT, || async {
        Ok((h.status(leader).await?.degraded_segments > 0).then_some(()))
    })
    .await?;
    h.run_worker(leader, "repair").await?;
    h.wait_fully_redundant(leader).await?;
    let (_, errors) = h.scrub_everywhere(&h.ids()).await?;
    assert_eq!(errors, 0, "repair restored every shard");
    read_all(&h, victim, &objects).await?;
    Ok(())
}
