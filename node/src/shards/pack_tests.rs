//! Packed small shards: the same images and digests as loose files, no
//! file per shard, damage caught, space given back by compaction, and the
//! commit rules (never overwrite, replace on repair) across both forms.

use super::*;
use std::os::unix::fs::FileExt;

const BS: u32 = 1000;

fn shard(n: u8) -> ShardId {
    ShardId {
        object_id: ObjectId([n; 16]),
        segment: 0,
        index: u32::from(n % 6),
    }
}

fn blocks(total: usize, seed: u8) -> Vec<Vec<u8>> {
    let bytes: Vec<u8> = (0..total)
        .map(|j| (j as u8).wrapping_mul(31) ^ seed)
        .collect();
    bytes.chunks(BS as usize).map(<[u8]>::to_vec).collect()
}

fn write(
    store: &ShardStore,
    id: ShardId,
    blocks: &[Vec<u8>],
    replace: bool,
) -> Result<Digest, ShardError> {
    let mut w = store.create(id, BS)?;
    if replace {
        w = w.replacing();
    }
    for b in blocks {
        w.append_block(b)?;
    }
    w.commit()
}

fn read_all(store: &ShardStore, id: ShardId, digest: &Digest) -> Result<Vec<u8>, ShardError> {
    let r = store.open_reader(&id, digest)?;
    let mut out = Vec::new();
    for i in 0..r.block_count() {
        out.extend(r.read_block(i)?);
    }
    Ok(out)
}

/// Shard files under the fan-out directories.
fn loose_files(dir: &Path) -> usize {
    (0..=u8::MAX)
        .map(|b| {
            fs::read_dir(dir.join(SHARDS_DIR).join(hex::encode([b])))
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum()
}

fn packs_on_disk(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir.join(PACKS_DIR))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.extension().is_some_and(|e| e == "pack"));
    out.sort();
    out
}

#[test]
fn small_shards_are_packed_with_the_digest_a_file_would_have() {
    let dir = tempfile::tempdir().unwrap();
    let packed = ShardStore::open(dir.path()).unwrap();
    let loose_dir = tempfile::tempdir().unwrap();
    let loose = ShardStore::open_with(loose_dir.path(), 0).unwrap();
    let mut digests = Vec::new();
    for n in 1..=20u8 {
        let data = blocks(1000 + 700 * n as usize, n);
        let d = write(&packed, shard(n), &data, false).unwrap();
        assert_eq!(
            d,
            write(&loose, shard(n), &data, false).unwrap(),
            "same image"
        );
        digests.push((shard(n), d, data.concat()));
    }
    // No file per shard: one pack file holds them all.
    assert_eq!(loose_files(dir.path()), 0);
    assert_eq!(packs_on_disk(dir.path()).len(), 1);
    assert_eq!(packed.list().unwrap().len(), 20);
    for (id, d, data) in &digests {
        assert_eq!(&read_all(&packed, *id, d).unwrap(), data);
        assert!(packed.stat(id).unwrap().is_some());
    }
    // A large shard is still a file of its own.
    let big = blocks(DEFAULT_PACKED_SHARD_BYTES + 10, 9);
    let id = shard(99);
    let d = write(&packed, id, &big, false).unwrap();
    assert!(packed.path(&id).is_file());
    assert_eq!(read_all(&packed, id, &d).unwrap(), big.concat());
    // Reopened, the store still finds everything.
    drop(packed);
    let packed = ShardStore::open(dir.path()).unwrap();
    for (id, d, data) in &digests {
        assert_eq!(&read_all(&packed, *id, d).unwrap(), data);
    }
}

#[test]
fn damage_in_a_pack_is_caught_and_commits_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).unwrap();
    let data = blocks(3500, 1);
    let id = shard(1);
    let d = write(&store, id, &data, false).unwrap();
    let refused = write(&store, id, &blocks(3500, 2), false);
    assert!(
        matches!(refused, Err(ShardError::InvalidWrite(_))),
        "{refused:?}"
    );
    assert_eq!(read_all(&store, id, &d).unwrap(), data.concat());

    // One flipped byte in the block data: that block's read fails.
    let pack = &packs_on_disk(dir.path())[0];
    let at = store.packs.locate(&id).unwrap().unwrap();
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pack)
        .unwrap();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, at.offset + 64 + 1500).unwrap();
    file.write_all_at(&[b[0] ^ 1], at.offset + 64 + 1500)
        .unwrap();
    let reader = store.open_reader(&id, &d).unwrap();
    assert!(matches!(
        reader.read_block(1),
        Err(ShardError::Corrupt { .. })
    ));
    assert!(reader.read_block(0).is_ok());

    // Repair rebuilds it in place; the damaged record is dead bytes.
    let d2 = write(&store, id, &data, true).unwrap();
    assert_eq!(d2, d);
    assert_eq!(read_all(&store, id, &d).unwrap(), data.concat());

    // Loose and packed never both hold a shard: replacing either way
    // leaves one copy.
    let loose_dir = tempfile::tempdir().unwrap();
    let mixed = ShardStore::open_with(loose_dir.path(), 0).unwrap();
    write(&mixed, id, &data, false).unwrap();
    drop(mixed);
    let mixed = ShardStore::open(loose_dir.path()).unwrap();
    assert!(matches!(
        write(&mixed, id, &data, false),
        Err(ShardError::InvalidWrite(_))
    ));
    write(&mixed, id, &data, true).unwrap();
    assert!(
        !mixed.path(&id).exists(),
        "the packed copy replaced the file"
    );
    assert_eq!(mixed.list().unwrap().len(), 1);
    assert!(mixed.delete(&id).unwrap());
    assert!(matches!(
        mixed.open_reader(&id, &d),
        Err(ShardError::NotFound(_))
    ));
    assert!(!mixed.delete(&id).unwrap());
}

#[test]
fn compaction_gives_back_the_space_of_deleted_shards() {
    let dir = tempfile::tempdir().unwrap();
    // Small pack files, so a few shards fill several.
    let store = ShardStore::open_inner(dir.path(), DEFAULT_PACKED_SHARD_BYTES, 20_000).unwrap();
    let mut kept = Vec::new();
    for n in 1..=60u8 {
        let data = blocks(4000, n);
        let d = write(&store, shard(n), &data, false).unwrap();
        if n % 4 == 0 {
            kept.push((shard(n), d, data.concat()));
        }
    }
    let before: u64 = packs_on_disk(dir.path())
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    let packs_before = packs_on_disk(dir.path()).len();
    assert!(packs_before >= 10, "{packs_before} packs");
    for n in 1..=60u8 {
        if n % 4 != 0 {
            assert!(store.delete(&shard(n)).unwrap());
        }
    }
    store.delete_object(&ObjectId([8; 16])).unwrap();
    kept.retain(|(id, _, _)| id.object_id != ObjectId([8; 16]));
    let report = store.compact().unwrap();
    let after: u64 = packs_on_disk(dir.path())
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        report.packs_removed as usize >= packs_before / 2,
        "{report:?}"
    );
    assert!(after * 2 < before, "{after} of {before} bytes left");
    assert_eq!(
        report.bytes_freed + after,
        before + report.records_moved * (40 + 4000 + 64 + 16 + 4 * 32)
    );
    // Every live shard reads back, from wherever it is now.
    assert_eq!(store.list().unwrap().len(), kept.len());
    for (id, d, data) in &kept {
        assert_eq!(&read_all(&store, *id, d).unwrap(), data);
    }
    store.compact().unwrap();
    for (id, d, data) in &kept {
        assert_eq!(&read_all(&store, *id, d).unwrap(), data);
    }
}

#[test]
fn a_pack_removed_under_a_running_store_takes_no_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).unwrap();
    let data = blocks(2000, 3);
    write(&store, shard(1), &data, false).unwrap();
    for pack in packs_on_disk(dir.path()) {
        fs::remove_file(pack).unwrap();
    }
    let d = write(&store, shard(2), &data, false).unwrap();
    assert_eq!(read_all(&store, shard(2), &d).unwrap(), data.concat());
    assert_eq!(packs_on_disk(dir.path()).len(), 1, "a new pack was started");
}
