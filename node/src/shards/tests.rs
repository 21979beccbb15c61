//! The shard store's file life cycle: write, commit, read, damage, list.

use super::*;
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::os::unix::fs::FileExt;
use tempfile::TempDir;

const BS: u32 = 1000;

fn shard(first: u8, fill: u8, segment: u32, index: u32) -> ShardId {
    let mut object_id = [fill; 16];
    object_id[0] = first;
    ShardId {
        object_id: ObjectId(object_id),
        segment,
        index,
    }
}

/// Blocks of the given sizes whose bytes differ from block to block.
fn blocks(sizes: &[usize], seed: u8) -> Vec<Vec<u8>> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            (0..n)
                .map(|j| (j as u8).wrapping_mul(31) ^ (i as u8).wrapping_add(seed))
                .collect()
        })
        .collect()
}

fn store() -> (TempDir, ShardStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open_with(dir.path(), 0).unwrap();
    (dir, store)
}

fn write(store: &ShardStore, id: ShardId, blocks: &[Vec<u8>]) -> Digest {
    let mut w = store.create(id, BS).unwrap();
    for b in blocks {
        w.append_block(b).unwrap();
    }
    w.commit().unwrap()
}

fn tmp_files(store: &ShardStore) -> usize {
    fs::read_dir(&store.tmp).unwrap().count()
}

#[track_caller]
fn assert_corrupt<T: fmt::Debug>(result: Result<T, ShardError>, reason_has: &str) {
    match result {
        Err(ShardError::Corrupt { reason, .. }) => {
            assert!(
                reason.contains(reason_has),
                "reason {reason:?} lacks {reason_has:?}"
            )
        }
        other => panic!("expected Corrupt ({reason_has}), got {other:?}"),
    }
}

/// Offset of block `i`'s hash in the trailer of a file of `data_len` block bytes.
fn hash_offset(data_len: u64, i: u64) -> u64 {
    64 + data_len + 32 * i
}

#[test]
fn round_trip_with_short_last_block() {
    let (_dir, store) = store();
    let id = shard(0xab, 1, 3, 5);
    let data = blocks(&[1000, 1000, 1000, 357], 0);
    let mut w = store.create(id, BS).unwrap();
    for b in &data {
        w.append_block(b).unwrap();
    }
    assert_eq!(w.bytes_written(), 3357);
    assert_eq!(tmp_files(&store), 1);
    let digest = w.commit().unwrap();
    assert_eq!(tmp_files(&store), 0);

    let r = store.open_reader(&id, &digest).unwrap();
    assert_eq!((r.block_count(), r.block_size()), (4, BS));
    for (i, b) in data.iter().enumerate() {
        assert_eq!(&r.read_block(i as u32).unwrap(), b);
    }
    assert_eq!(r.verify_all().unwrap(), 3357);
    assert!(matches!(
        r.read_block(4),
        Err(ShardError::OutOfRange {
            block: 4,
            count: 4,
            ..
        })
    ));
}

#[test]
fn round_trip_full_last_block_and_single_block() {
    let (_dir, store) = store();
    for (index, sizes) in [vec![1000, 1000], vec![1000], vec![1]]
        .into_iter()
        .enumerate()
    {
        let id = shard(7, 7, 0, index as u32);
        let data = blocks(&sizes, index as u8);
        let digest = write(&store, id, &data);
        let r = store.open_reader(&id, &digest).unwrap();
        assert_eq!(r.block_count() as usize, data.len());
        for (i, b) in data.iter().enumerate() {
            assert_eq!(&r.read_block(i as u32).unwrap(), b);
        }
    }
}

#[test]
fn file_layout_is_the_documented_format() {
    let (_dir, store) = store();
    let id = shard(0xab, 0xcd, 0x0102_0304, 9);
    let data = blocks(&[1000, 200], 0);
    let digest = write(&store, id, &data);
    let bytes = fs::read(store.path(&id)).unwrap();
    assert_eq!(bytes.len(), 64 + 1200 + 2 * 32 + 16);

    assert_eq!(&bytes[0..8], b"TRSHARD1");
    assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
    assert_eq!(&bytes[12..28], &id.object_id.0);
    assert_eq!(&bytes[28..32], &[4, 3, 2, 1]);
    assert_eq!(&bytes[32..36], &9u32.to_le_bytes());
    assert_eq!(&bytes[36..40], &BS.to_le_bytes());
    assert!(bytes[40..64].iter().all(|&b| b == 0));
    assert_eq!(&bytes[64..1064], &data[0][..]);
    assert_eq!(&bytes[1064..1264], &data[1][..]);
    assert_eq!(&bytes[1264..1296], &Sha256::digest(&data[0])[..]);
    assert_eq!(&bytes[1296..1328], &Sha256::digest(&data[1])[..]);
    assert_eq!(&bytes[1328..1332], &2u32.to_le_bytes());
    assert_eq!(&bytes[1332..1336], &200u32.to_le_bytes());
    assert_eq!(&bytes[1336..1344], b"TRSHEND1");

    let mut h = Sha256::new();
    h.update(&bytes[..64]);
    h.update(&bytes[1264..]);
    assert_eq!(digest, Digest(h.finalize().into()));
}

#[test]
fn zero_blocks() {
    let (_dir, store) = store();
    let id = shard(0, 0, 0, 0);
    let digest = write(&store, id, &[]);
    assert_eq!(fs::metadata(store.path(&id)).unwrap().len(), 80);
    let r = store.open_reader(&id, &digest).unwrap();
    assert_eq!(r.block_count(), 0);
    assert_eq!(r.verify_all().unwrap(), 0);
    assert!(matches!(
        r.read_block(0),
        Err(ShardError::OutOfRange { .. })
    ));
}

#[test]
fn flipped_block_byte_fails_its_block_hash() {
    let (_dir, store) = store();
    let id = shard(1, 2, 0, 0);
    let data = blocks(&[1000, 1000, 10], 0);
    let digest = write(&store, id, &data);
    flip_byte(&store.path(&id), 64 + 1000 + 5);

    // The digest covers header and hashes only: the damage shows on reading.
    let r = store.open_reader(&id, &digest).unwrap();
    assert_eq!(r.read_block(0).unwrap(), data[0]);
    assert_corrupt(r.read_block(1), "block 1 does not match its hash");
    assert_eq!(r.read_block(2).unwrap(), data[2]);
    assert_corrupt(r.verify_all(), "block 1");
}

#[test]
fn flipped_block_with_rewritten_hash_fails_the_digest() {
    let (_dir, store) = store();
    let id = shard(1, 2, 0, 0);
    let data = blocks(&[1000, 1000, 10], 0);
    let digest = write(&store, id, &data);
    let path = store.path(&id);
    flip_byte(&path, 64 + 1000 + 5);
    let mut forged = data[1].clone();
    forged[5] ^= 0x01;
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&Sha256::digest(&forged), hash_offset(2010, 1))
        .unwrap();

    assert_corrupt(
        store.open_reader(&id, &digest),
        "differs from the manifest's",
    );
}

#[test]
fn wrong_expected_digest() {
    let (_dir, store) = store();
    let id = shard(1, 2, 0, 0);
    let mut digest = write(&store, id, &blocks(&[1000, 3], 0));
    digest.0[31] ^= 0x80;
    assert_corrupt(
        store.open_reader(&id, &digest),
        "differs from the manifest's",
    );
}

#[test]
fn truncated_file() {
    let (_dir, store) = store();
    let id = shard(1, 2, 0, 0);
    let digest = write(&store, id, &blocks(&[1000, 1000, 10], 0));
    let path = store.path(&id);
    let bytes = fs::read(&path).unwrap();
    let len = bytes.len();
    for cut in [
        0,
        1,
        63,
        64,
        79,
        80,
        1064,
        len - 40,
        len - 17,
        len - 16,
        len - 1,
    ] {
        fs::write(&path, &bytes[..cut]).unwrap();
        assert!(
            matches!(
                store.open_reader(&id, &digest),
                Err(ShardError::Corrupt { .. })
            ),
            "cut at {cut}"
        );
    }

    // Truncated under an open reader: corrupt, not a disk error.
    fs::write(&path, &bytes).unwrap();
    let r = store.open_reader(&id, &digest).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(500)
        .unwrap();
    assert_corrupt(r.read_block(1), "runs past the end");
}

#[test]
fn another_shards_file_in_its_place() {
    let (_dir, store) = store();
    let mine = shard(1, 2, 0, 0);
    let other = shard(1, 2, 0, 1);
    let digest = write(&store, mine, &blocks(&[1000, 10], 0));
    write(&store, other, &blocks(&[1000, 10], 1));
    fs::copy(store.path(&other), store.path(&mine)).unwrap();
    assert_corrupt(store.open_reader(&mine, &digest), "header names shard");

    // The same shard written elsewhere with other bytes: only the digest tells.
    let (_dir2, elsewhere) = self::store();
    write(&elsewhere, mine, &blocks(&[1000, 10], 2));
    fs::copy(elsewhere.path(&mine), store.path(&mine)).unwrap();
    assert_corrupt(
        store.open_reader(&mine, &digest),
        "differs from the manifest's",
    );
}

#[test]
fn garbage_and_forged_files() {
    let (_dir, store) = store();
    let id = shard(1, 2, 0, 0);
    let path = store.path(&id);
    let any_digest = Digest([0u8; 32]);

    for len in [0usize, 10, 80, 5000] {
        let garbage: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        fs::write(&path, &garbage).unwrap();
        assert_corrupt(store.open_reader(&id, &any_digest), "");
    }

    let header = file_header(id, BS);
    let forged = |count: u32, last: u32, body: usize| {
        let mut f = header.to_vec();
        f.resize(64 + body, 0);
        f.extend_from_slice(&count.to_le_bytes());
        f.extend_from_slice(&last.to_le_bytes());
        f.extend_from_slice(b"TRSHEND1");
        f
    };
    // A huge block count must be refused from the file length, before
    // anything is allocated for it.
    fs::write(&path, forged(u32::MAX, BS, 32)).unwrap();
    assert_corrupt(store.open_reader(&id, &any_digest), "file is");
    fs::write(&path, forged(u32::MAX, u32::MAX, 0)).unwrap();
    assert_corrupt(store.open_reader(&id, &any_digest), "last block");
    fs::write(&path, forged(0, 5, 0)).unwrap();
    assert_corrupt(store.open_reader(&id, &any_digest), "no blocks");
    fs::write(&path, forged(1, 0, 32)).unwrap();
    assert_corrupt(store.open_reader(&id, &any_digest), "last block of 0");

    let mut bad_version = forged(0, 0, 0);
    bad_version[8] = 2;
    fs::write(&path, bad_version).unwrap();
    assert_corrupt(store.open_reader(&id, &any_digest), "version 2");

    let mut zero_block_size = forged(0, 0, 0);
    zero_block_size[36..40].fill(0);
    fs::write(&path, zero_block_size).unwrap();
    assert_corrupt(store.open_reader(&id, &any_digest), "block size 0");
}

#[test]
fn missing_file_is_not_found() {
    let (_dir, store) = store();
    let id = shard(1, 2, 0, 0);
    assert!(matches!(
        store.open_reader(&id, &Digest([0; 32])),
        Err(ShardError::NotFound(got)) if got == id
    ));
}

#[test]
fn dropped_writer_leaves_nothing() {
    let (_dir, store) = store();
    let id = shard(1, 2, 0, 0);
    let mut w = store.create(id, BS).unwrap();
    w.append_block(&[1; 1000]).unwrap();
    w.append_block(&[2; 10]).unwrap();
    assert_eq!(tmp_files(&store), 1);
    drop(w);
    assert_eq!(tmp_files(&store), 0);
    assert!(!store.path(&id).exists());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn commit_never_overwrites() {
    let (_dir, store) = store();
    let id = shard(1, 2, 0, 0);
    let first = blocks(&[1000, 10], 0);
    let digest = write(&store, id, &first);

    let mut w = store.create(id, BS).unwrap();
    w.append_block(&[9; 1000]).unwrap();
    assert!(matches!(w.commit(), Err(ShardError::InvalidWrite(_))));
    assert_eq!(tmp_files(&store), 0);

    let r = store.open_reader(&id, &digest).unwrap();
    assert_eq!(r.read_block(0).unwrap(), first[0]);
    assert_eq!(r.verify_all().unwrap(), 1010);
}

#[test]
fn invalid_writes_are_refused() {
    let (_dir, store) = store();
    let id = shard(1, 2, 0, 0);
    assert!(matches!(
        store.create(id, 0),
        Err(ShardError::InvalidWrite(_))
    ));

    let mut w = store.create(id, BS).unwrap();
    let refused = |r: Result<(), ShardError>| matches!(r, Err(ShardError::InvalidWrite(_)));
    assert!(refused(w.append_block(&[0; 1001])));
    assert!(refused(w.append_block(&[])));
    w.append_block(&[1; 1000]).unwrap();
    w.append_block(&[2; 500]).unwrap();
    assert!(refused(w.append_block(&[3; 1000])));
    assert!(refused(w.append_block(&[3; 500])));
    assert_eq!(w.bytes_written(), 1500);

    // Refused blocks left no trace: the file holds what was accepted.
    let digest = w.commit().unwrap();
    let r = store.open_reader(&id, &digest).unwrap();
    assert_eq!(r.block_count(), 2);
    assert_eq!(r.read_block(1).unwrap(), vec![2; 500]);
}

#[test]
fn delete_object_removes_only_its_files() {
    let (_dir, store) = store();
    let a = [
        shard(0xab, 1, 0, 0),
        shard(0xab, 1, 0, 3),
        shard(0xab, 1, 1, 0),
    ];
    let b = shard(0xab, 2, 0, 0); // same fan-out directory
    let c = shard(0x01, 1, 0, 0);
    for id in a.iter().chain([&b, &c]) {
        write(&store, *id, &blocks(&[10], 0));
    }
    assert_eq!(store.delete_object(&a[0].object_id).unwrap(), 3);
    let mut left: Vec<ShardId> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|(id, ..)| id)
        .collect();
    left.sort_by_key(|id| id.object_id);
    assert_eq!(left, vec![c, b]);
    assert_eq!(store.delete_object(&a[0].object_id).unwrap(), 0);
    assert_eq!(store.delete_object(&ObjectId([0x55; 16])).unwrap(), 0);
}

#[test]
fn list_reports_committed_files_and_skips_strangers() {
    let (dir, store) = store();
    let ids = [
        shard(0xab, 1, 0, 0),
        shard(0xab, 1, 12, 4),
        shard(0x00, 9, 0, 1),
    ];
    let mut want = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        write(&store, *id, &blocks(&vec![1000; n + 1], 0));
        want.push((*id, 64 + 1000 * (n as u64 + 1) + 32 * (n as u64 + 1) + 16));
    }
    // A writer in flight is not listed.
    let _pending = store.create(shard(0xab, 3, 0, 0), BS).unwrap();

    let hexa = ids[0].object_id.to_hex();
    let shards = dir.path().join("shards");
    for stranger in [
        "ab/README".to_string(),
        format!("ab/{hexa}.1"),
        format!("ab/{hexa}.1.2.3"),
        format!("ab/{hexa}.01.2"),
        format!("ab/{hexa}.+1.2"),
        format!("ab/{}.1.2", hexa.to_uppercase()),
        format!("cd/{hexa}.1.2"), // right name, wrong fan-out directory
    ] {
        fs::write(shards.join(stranger), b"x").unwrap();
    }
    fs::create_dir(shards.join(format!("ab/{hexa}.7.7"))).unwrap();
    fs::create_dir(shards.join("zz")).unwrap();

    let mut got: Vec<(ShardId, u64)> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|(id, len, _)| (id, len))
        .collect();
    got.sort_by_key(|(id, _)| (id.object_id, id.segment, id.index));
    want.sort_by_key(|(id, _)| (id.object_id, id.segment, id.index));
    assert_eq!(got, want);
}

#[test]
fn paths_and_names_come_from_ids() {
    let (dir, store) = store();
    let id = shard(0xab, 0x0f, 3, 7);
    let name = format!("ab{}.3.7", "0f".repeat(15));
    assert_eq!(id.to_string(), name);
    assert_eq!(
        store.path(&id),
        dir.path().join("shards").join("ab").join(&name)
    );
    assert_eq!(shard_from_file_name(&name), Some(id));
    assert_eq!(
        shard_from_file_name(&format!("{}.4294967295.0", "00".repeat(16))),
        Some(ShardId {
            object_id: ObjectId([0; 16]),
            segment: u32::MAX,
            index: 0
        })
    );
    for bad in [
        "",
        "..",
        "ab.1.2",
        &format!("{}.4294967296.0", "00".repeat(16)),
    ] {
        assert_eq!(shard_from_file_name(bad), None, "{bad:?}");
    }
}

#[test]
fn clean_tmp_removes_only_stale_files() {
    let (_dir, store) = store();
    let stale = store.tmp.join("crashed.tmp");
    fs::write(&stale, b"partial").unwrap();
    File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let id = shard(1, 2, 0, 0);
    let mut live = store.create(id, BS).unwrap();
    live.append_block(&[1; 100]).unwrap();

    assert_eq!(store.clean_tmp(Duration::from_secs(600)).unwrap(), 1);
    assert!(!stale.exists());
    assert_eq!(tmp_files(&store), 1);
    let digest = live.commit().unwrap();
    assert!(store.open_reader(&id, &digest).is_ok());
    assert_eq!(store.clean_tmp(Duration::from_secs(600)).unwrap(), 0);
}

#[test]
fn reopening_a_store_keeps_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let id = shard(1, 2, 0, 0);
    let digest = write(
        &ShardStore::open_with(dir.path(), 0).unwrap(),
        id,
        &blocks(&[10], 0),
    );
    let store = ShardStore::open_with(dir.path(), 0).unwrap();
    assert_eq!(
        store
            .open_reader(&id, &digest)
            .unwrap()
            .verify_all()
            .unwrap(),
        10
    );
}

fn flip_byte(path: &Path, offset: u64) {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x01;
    file.write_all_at(&b, offset).unwrap();
}

fn file_header(id: ShardId, block_size: u32) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[0..8].copy_from_slice(b"TRSHARD1");
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    h[12..28].copy_from_slice(&id.object_id.0);
    h[28..32].copy_from_slice(&id.segment.to_le_bytes());
    h[32..36].copy_from_slice(&id.index.to_le_bytes());
    h[36..40].copy_from_slice(&block_size.to_le_bytes());
    h
}
