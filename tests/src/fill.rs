//! Metadata-only fill, for tests of the control plane at scale: synthetic
//! manifests (no shard files behind them) put into the state of every node
//! of a stopped cluster, identically, so the replicas stay the same. The log does not hold them: a node that
//! joins later must get them from a snapshot (the test must make the log
//! compact before one joins). Scrub would find their files missing, so
//! tests using this keep scrub from running.

use std::path::PathBuf;

use tresor_node::meta::{
    Command, Digest, MetaStore, ObjectId, ObjectManifest, SegmentManifest, ShardLocation,
    UploadRecord,
};

/// The manifest of synthetic object `i` of `bucket`: one 4 KiB segment,
/// 4+2, its six shards on nodes 1..=6.
pub fn synthetic_manifest(bucket: &str, i: u64) -> ObjectManifest {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&i.to_be_bytes());
    id[8..].copy_from_slice(b"synthetc");
    let shards = (0..6u64)
        .map(|s| ShardLocation {
            node: Some(1 + (i + s) % 6),
            digest: Some(Digest([(i % 251) as u8 ^ s as u8; 32])),
            damaged: false,
        })
        .collect();
    ObjectManifest {
        bucket: bucket.into(),
        key: synthetic_key(i),
        object_id: ObjectId(id),
        size: 4096,
        sha256: format!("{:064x}", i),
        content_type: "video/mp4".into(),
        metadata: Default::default(),
        data: 4,
        parity: 2,
        block_size: 1 << 20,
        segment_stripes: 1,
        created_ms: 1_790_000_000_000 + i,
        segments: vec![SegmentManifest {
            bytes: 4096,
            shards,
        }],
        encryption: None,
    }
}

/// The key of synthetic object `i`.
pub fn synthetic_key(i: u64) -> String {
    format!("synthetic/{i:09}")
}

/// Adds synthetic objects `0..count` of `bucket` (which must exist) to the
/// state of every stopped node in `data_dirs`. The commands are applied to
/// the first node's state through the state machine's own `apply`; the
/// state then goes to the others as a snapshot install would carry it
/// (every key but the Raft bookkeeping). The nodes must have applied the
/// same entries before they stopped.
pub fn fill_metadata(data_dirs: &[PathBuf], bucket: &str, count: u64) -> anyhow::Result<()> {
    let Some((first, others)) = data_dirs.split_first() else {
        return Ok(());
    };
    let db = sled::open(first.join("meta"))?;
    let source = tresor_node::raft::state_machine::state_tree(&db)?;
    apply_fill(&MetaStore::new(source.clone()), bucket, count)?;
    db.flush()?;
    // Two copies at a time: the machine has two cores.
    for pair in others.chunks(2) {
        std::thread::scope(|scope| {
            let copies: Vec<_> = pair
                .iter()
                .map(|dir| scope.spawn(|| copy_state(&source, dir)))
                .collect();
            copies
                .into_iter()
                .try_for_each(|c| c.join().map_err(|_| anyhow::anyhow!("copy panicked"))?)
        })?;
    }
    Ok(())
}

/// Inserts every key of `source` but the Raft bookkeeping into the state
/// of the stopped node at `dir`.
fn copy_state(source: &sled::Tree, dir: &std::path::Path) -> anyhow::Result<()> {
    let db = sled::open(dir.join("meta"))?;
    let target = tresor_node::raft::state_machine::state_tree(&db)?;
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    for kv in source.iter() {
        let (k, v) = kv?;
        if k.starts_with(b"raft/") {
            continue;
        }
        batch.insert(k, v);
        pending += 1;
        if pending == 10_000 {
            target.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    target.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

fn apply_fill(store: &MetaStore, bucket: &str, count: u64) -> anyhow::Result<()> {
    let apply = |command: &Command, batch: &mut sled::Batch| -> anyhow::Result<()> {
        store
            .apply(command, batch)?
            .map_err(|e| anyhow::anyhow!("synthetic fill refused: {e}"))
    };
    // Uploads are independent of each other: a thousand per batch. Each
    // commit reads the counters the one before it wrote: one per batch.
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let mut batch = sled::Batch::default();
        for i in chunk {
            let manifest = synthetic_manifest(bucket, *i);
            let upload = UploadRecord {
                object_id: manifest.object_id,
                bucket: bucket.into(),
                key: manifest.key.clone(),
                coordinator: 1,
                started_ms: manifest.created_ms,
                touched_ms: manifest.created_ms,
            };
            apply(&Command::BeginUpload { upload }, &mut batch)?;
        }
        store.tree().apply_batch(batch)?;
        for i in chunk {
            let mut batch = sled::Batch::default();
            let create = Command::CreateObject {
                manifest: Box::new(synthetic_manifest(bucket, *i)),
                audit: None,
            };
            apply(&create, &mut batch)?;
            store.tree().apply_batch(batch)?;
        }
    }
    Ok(())
}
