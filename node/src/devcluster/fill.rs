//! Metadata-only fill, for tests and benchmarks of the control plane at
//! scale (never for a real cluster): synthetic manifests (no shard files
//! behind them) and audit entries put into the state of every node of a
//! stopped cluster, identically, so the replicas stay the same. The log
//! does not hold them: a node that joins later must get them from a
//! snapshot (the caller must make the log compact before one joins). Scrub
//! would find the objects' files missing, so callers keep scrub from
//! running.

use std::path::PathBuf;

use crate::meta::audit::AuditRecord;
use crate::meta::Writes;
use crate::meta::{
    Command, Digest, MetaStore, ObjectId, ObjectManifest, SegmentManifest, ShardLocation,
    UploadRecord,
};

/// sled's cache while filling (the nodes are stopped: the fill is the only
/// user of the machine's memory).
const FILL_CACHE_BYTES: u64 = 256 << 20;

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
        retention: None,
        ingested_by: String::new(),
        etag: String::new(),
    }
}

/// The key of synthetic object `i`.
pub fn synthetic_key(i: u64) -> String {
    format!("synthetic/{i:09}")
}

/// What a metadata-only fill adds.
#[derive(Debug, Clone, Default)]
pub struct Fill {
    /// The bucket (which must exist).
    pub bucket: String,
    /// Synthetic objects `from..to` of the bucket.
    pub objects: std::ops::Range<u64>,
    /// Audit entries appended after them (stat records of synthetic
    /// objects, chained as the log chains any entry).
    pub audit: u64,
    /// Objects from this one on are ingested now; those before it in
    /// September 2026 (so a bucket's 30-day policy has made them due).
    /// `None`: all in September 2026.
    pub recent_from: Option<u64>,
}

/// Adds synthetic objects `0..count` of `bucket` (which must exist) to the
/// state of every stopped node in `data_dirs`. The commands are applied to
/// the first node's state through the state machine's own `apply`; the
/// state then goes to the others as a snapshot install would carry it
/// (every key but the Raft bookkeeping). The nodes must have applied the
/// same entries before they stopped.
pub fn fill_metadata(data_dirs: &[PathBuf], bucket: &str, count: u64) -> anyhow::Result<()> {
    fill(
        data_dirs,
        &Fill {
            bucket: bucket.into(),
            objects: 0..count,
            audit: 0,
            recent_from: None,
        },
    )
}

/// Adds what `fill` says to the state of every stopped node in
/// `data_dirs`, as [`fill_metadata`] does.
pub fn fill(data_dirs: &[PathBuf], fill: &Fill) -> anyhow::Result<()> {
    let Some((first, others)) = data_dirs.split_first() else {
        return Ok(());
    };
    let db = crate::meta::database::open(&first.join("meta"), FILL_CACHE_BYTES)?;
    let source = crate::raft::state_machine::state_tree(&db)?;
    let store = MetaStore::new(source.clone());
    let recent_from = fill.recent_from.unwrap_or(u64::MAX);
    apply_fill(&store, &fill.bucket, fill.objects.clone(), recent_from)?;
    apply_audit(&store, &fill.bucket, fill.audit)?;
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
    let db = crate::meta::database::open(&dir.join("meta"), FILL_CACHE_BYTES)?;
    let target = crate::raft::state_machine::state_tree(&db)?;
    let mut batch = Writes::default();
    let mut pending = 0;
    for kv in source.iter() {
        let (k, v) = kv?;
        if k.starts_with(b"raft/") {
            continue;
        }
        batch.insert(k, v);
        pending += 1;
        if pending == 10_000 {
            target.apply_batch(std::mem::take(&mut batch).into())?;
            pending = 0;
        }
    }
    target.apply_batch(batch.into())?;
    db.flush()?;
    Ok(())
}

fn apply(store: &MetaStore, command: &Command, batch: &mut Writes) -> anyhow::Result<()> {
    store
        .apply(command, batch)?
        .map_err(|e| anyhow::anyhow!("synthetic fill refused: {e}"))
}

fn apply_fill(
    store: &MetaStore,
    bucket: &str,
    objects: std::ops::Range<u64>,
    recent_from: u64,
) -> anyhow::Result<()> {
    let now = crate::meta::now_ms();
    let manifest = |i: u64| {
        let mut m = synthetic_manifest(bucket, i);
        if i >= recent_from {
            m.created_ms = now;
        }
        m
    };
    let apply = |command: &Command, batch: &mut Writes| apply(store, command, batch);
    // Uploads are independent of each other: a thousand per batch. Each
    // commit reads the counters the one before it wrote: one per batch.
    let mut from = objects.start;
    while from < objects.end {
        let chunk = from..objects.end.min(from + 1000);
        from = chunk.end;
        let mut batch = Writes::default();
        for i in chunk.clone() {
            let manifest = manifest(i);
            let upload = UploadRecord {
                object_id: manifest.object_id,
                bucket: bucket.into(),
                key: manifest.key.clone(),
                coordinator: 1,
                started_ms: manifest.created_ms,
                touched_ms: manifest.created_ms,
                session: None,
            };
            apply(&Command::BeginUpload { upload }, &mut batch)?;
        }
        store.tree().apply_batch(batch.into())?;
        for i in chunk {
            let mut batch = Writes::default();
            let create = Command::CreateObject {
                manifest: Box::new(manifest(i)),
                audit: None,
            };
            apply(&create, &mut batch)?;
            store.tree().apply_batch(batch.into())?;
            // Writing far faster than the disk takes it can stall sled (its
            // I/O threads all wait on its log while a file truncation waits
            // for one of them): a flush per hundred keeps the backlog short.
            if i % 100 == 99 {
                store.tree().flush()?;
            }
        }
    }
    Ok(())
}

/// Appends `count` stat records of synthetic objects of `bucket` to the
/// audit log, a thousand per batch (each append reads the head the one
/// before it wrote).
fn apply_audit(store: &MetaStore, bucket: &str, count: u64) -> anyhow::Result<()> {
    let mut done = 0;
    while done < count {
        let n = (count - done).min(1000);
        let records = (done..done + n)
            .map(|i| AuditRecord {
                time_ms: 1_790_000_000_000 + i,
                node: 1 + i % 6,
                principal: "synthetic".into(),
                action: "stat".into(),
                bucket: bucket.into(),
                key: synthetic_key(i % 1_000_000),
                object_sha256: format!("{:064x}", i % 1_000_000),
                outcome: "ok".into(),
            })
            .collect();
        let mut batch = Writes::default();
        apply(store, &Command::AppendAudit { records }, &mut batch)?;
        store.tree().apply_batch(batch.into())?;
        done += n;
    }
    Ok(())
}
