//! Encryption at rest: what a stolen disk reveals (nothing), what altered
//! stored bytes produce (the right bytes rebuilt, or a clear error), what a
//! delete leaves (no key), and master key rotation.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tresor_node::config::NodeConfig;
use tresor_node::crypto::MasterKeys;
use tresor_proto::v1 as pb;
use tresor_tests::{cluster, sha256_hex, Harness};

const SHARD: usize = 4096;
const STRIPE: usize = 4 * SHARD;

/// Recognisable footage: a marker line repeated with a counter, so any
/// 24-byte window of it found on disk means plaintext leaked.
fn canary_footage(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("BODYCAM-CANARY-FRAME-{i:08}|").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

const MARKER: &[u8] = b"BODYCAM-CANARY-FRAME-";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Shard files of node `id` whose names start with `object` (hex id).
fn object_files(h: &Harness, object: &str) -> Vec<(u64, PathBuf)> {
    h.ids()
        .into_iter()
        .flat_map(|id| {
            h.shard_files(id)
                .into_iter()
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(object))
                })
                .map(move |p| (id, p))
        })
        .collect()
}

/// The object id (hex) of the shard files that appeared since `before`.
fn new_object_id(h: &Harness, before: &[PathBuf]) -> String {
    let mut ids: Vec<String> = h
        .ids()
        .into_iter()
        .flat_map(|id| h.shard_files(id))
        .filter(|p| !before.contains(p))
        .filter_map(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('.').next())
                .map(str::to_string)
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one new object: {ids:?}");
    ids.remove(0)
}

fn all_shard_files(h: &Harness) -> Vec<PathBuf> {
    h.ids()
        .into_iter()
        .flat_map(|id| h.shard_files(id))
        .collect()
}

/// Flips a byte in block `block` of a shard file and rewrites that block's
/// SHA-256 in the trailer to match, as an attacker with the disk would.
fn tamper_block_and_its_hash(path: &Path, block: u32, at: usize) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(path)?;
    let block_size = u32::from_le_bytes(bytes[36..40].try_into()?) as usize;
    let footer = bytes.len() - 16;
    let count = u32::from_le_bytes(bytes[footer..footer + 4].try_into()?) as usize;
    let last_len = u32::from_le_bytes(bytes[footer + 4..footer + 8].try_into()?) as usize;
    let start = 64 + block as usize * block_size;
    let len = if block as usize + 1 == count {
        last_len
    } else {
        block_size
    };
    bytes[start + at] ^= 0x5a;
    let hash = Sha256::digest(&bytes[start..start + len]);
    let trailer = footer - 32 * count + 32 * block as usize;
    bytes[trailer..trailer + 32].copy_from_slice(&hash);
    std::fs::write(path, &bytes)?;
    Ok(())
}

fn master_key_file(h: &Harness) -> anyhow::Result<PathBuf> {
    let config = NodeConfig::load(&h.config_path(1))?;
    config
        .security
        .master_key_file
        .ok_or_else(|| anyhow::anyhow!("test cluster has no master key file"))
}

async fn rotate(h: &Harness, via: u64) -> anyhow::Result<pb::RotateKeysResponse> {
    Ok(h.admin(via)
        .await?
        .rotate_keys(pb::RotateKeysRequest {})
        .await?
        .into_inner())
}

#[tokio::test]
async fn no_plaintext_on_any_disk() -> anyhow::Result<()> {
    let h = cluster!(data, shard = SHARD as u32)?;
    let data = canary_footage(3 * STRIPE + 1234);
    h.put(1, "footage", "cam-17/2026-11-26.mp4", &data).await?;
    let (_, back) = h
        .get(4, "footage", "cam-17/2026-11-26.mp4", None, None)
        .await?;
    assert!(back == data, "reads back");
    // The search itself works: the bytes we read back are full of it.
    assert!(contains(&back, MARKER));
    let mut searched = 0;
    for id in h.ids() {
        for file in tresor_tests::files_under(&h.data_dir(id)) {
            let bytes = std::fs::read(&file)?;
            searched += bytes.len();
            assert!(
                !contains(&bytes, MARKER),
                "plaintext footage found in {}",
                file.display()
            );
        }
    }
    assert!(searched > data.len(), "searched {searched} bytes");
    Ok(())
}

#[tokio::test]
async fn altered_segment_with_matching_checksum_never_reads_back_altered() -> anyhow::Result<()> {
    let h = cluster!(data, shard = SHARD as u32)?;
    let data = canary_footage(4 * STRIPE + 99);
    let before = all_shard_files(&h);
    h.put(1, "footage", "evidence", &data).await?;
    let object = new_object_id(&h, &before);
    let files = object_files(&h, &object);
    assert_eq!(files.len(), 6);
    // One data shard altered, its block hash rewritten to match: rebuilt.
    let data_shard = files
        .iter()
        .find(|(_, p)| p.to_string_lossy().ends_with(".0.1"))
        .expect("data shard 1");
    tamper_block_and_its_hash(&data_shard.1, 0, 7)?;
    for via in h.ids() {
        let (info, got) = h.get(via, "footage", "evidence", None, None).await?;
        assert_eq!(info.sha256, sha256_hex(&data));
        assert!(got == data, "read through node {via} differs");
    }
    // Three of six altered the same way: more than parity can cover. The
    // read must fail with a clear error, never hand out altered bytes.
    for (_, p) in files.iter().filter(|(_, p)| {
        let name = p.to_string_lossy();
        name.ends_with(".0.0") || name.ends_with(".0.2") || name.ends_with(".0.3")
    }) {
        tamper_block_and_its_hash(p, 0, 3)?;
    }
    match h.get(2, "footage", "evidence", None, None).await {
        Ok((_, got)) => assert!(got == data, "altered bytes were returned"),
        Err(status) => assert!(
            matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::DataLoss
            ),
            "{status}"
        ),
    }
    Ok(())
}

#[tokio::test]
async fn delete_destroys_the_data_key() -> anyhow::Result<()> {
    let mut h = cluster!(data, shard = SHARD as u32)?;
    let data = canary_footage(2 * STRIPE + 5);
    let before = all_shard_files(&h);
    h.put(1, "footage", "to-be-deleted", &data).await?;
    let object = new_object_id(&h, &before);
    // Keep copies of the shard files, as a thief or a failed delete would.
    let keep = tempfile::tempdir()?;
    let mut kept = Vec::new();
    for (i, (_, p)) in object_files(&h, &object).iter().enumerate() {
        let copy = keep.path().join(format!("{i}"));
        std::fs::copy(p, &copy)?;
        kept.push(copy);
    }
    assert_eq!(kept.len(), 6);
    let leader = h.leader().await?;
    let mut client = h.objects(leader).await?;
    client
        .delete(pb::DeleteRequest {
            bucket: "footage".into(),
            key: "to-be-deleted".into(),
        })
        .await?;
    let gone = h
        .stat(2, "footage", "to-be-deleted")
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    // Let every replica apply the delete, then look at each node's state.
    h.put(1, "footage", "marker", b"x").await?;
    for id in h.ids() {
        tresor_tests::wait_for(
            "marker replicated",
            tresor_tests::SETTLE_TIMEOUT,
            || async { Ok(h.stat(id, "footage", "marker").await.ok().map(|_| ())) },
        )
        .await?;
    }
    h.stop_all().await;
    let raw_id = hex::decode(&object)?;
    for id in h.ids() {
        let db = sled::open(h.data_dir(id).join("meta"))?;
        let tree = tresor_node::raft::state_machine::state_tree(&db)?;
        let mut tombstones = 0;
        for item in tree.iter() {
            let (k, v) = item?;
            if k.starts_with(b"audit") {
                continue; // the audit log names the key that was deleted, by design
            }
            if k.starts_with(b"tomb/") {
                // The tombstone names the object, by design, and has no
                // field that could hold a key (`meta::Tombstone`).
                tombstones += 1;
                continue;
            }
            if k.starts_with(b"receipt/") || k.starts_with(b"receiptdue/") {
                // So does its deletion receipt (due or issued), by design;
                // no field of it could hold a key (`ReceiptBody`).
                continue;
            }
            assert!(
                !contains(&k, object.as_bytes())
                    && !contains(&v, object.as_bytes())
                    && !contains(&k, &raw_id)
                    && !contains(&v, &raw_id),
                "node {id}'s state still mentions object {object}: {}",
                String::from_utf8_lossy(&k)
            );
            assert!(
                !contains(&v, b"to-be-deleted"),
                "node {id}'s state still holds the deleted manifest"
            );
        }
        assert_eq!(tombstones, 1, "node {id}: the delete's tombstone");
    }
    // The leftover shard files are ciphertext: no footage in them.
    for copy in &kept {
        assert!(!contains(&std::fs::read(copy)?, MARKER));
    }
    Ok(())
}

#[tokio::test]
async fn rotation_rewraps_every_key_and_retires_the_old_one() -> anyhow::Result<()> {
    let h = cluster!(data, shard = SHARD as u32)?;
    let keys = master_key_file(&h)?;
    let original = std::fs::read_to_string(&keys)?;
    let old_id = MasterKeys::parse(&original)
        .map_err(anyhow::Error::msg)?
        .current()
        .id
        .clone();
    let before_data = canary_footage(3 * STRIPE + 17);
    h.put(1, "footage", "before", &before_data).await?;

    // A new current key; objects written from now on use it.
    let new_line = MasterKeys::new_line("k-rotated").map_err(anyhow::Error::msg)?;
    std::fs::write(&keys, format!("{original}{new_line}"))?;
    let after_data = canary_footage(2 * STRIPE + 3);
    h.put(2, "footage", "after", &after_data).await?;

    // Before rotation the old key is still needed: without it the old
    // object cannot be read (the check below would pass vacuously otherwise).
    std::fs::write(&keys, &new_line)?;
    let err = h
        .get(3, "footage", "before", None, None)
        .await
        .expect_err("old key missing");
    assert_eq!(err.code(), tonic::Code::Internal, "{err}");
    assert!(
        err.message().contains("encryption at rest unavailable")
            && !err.message().contains(&old_id),
        "the refusal is clear and names no key: {err}"
    );
    std::fs::write(&keys, format!("{original}{new_line}"))?;

    let leader = h.leader_among(&h.ids()).await?;
    let report = rotate(&h, leader).await?;
    assert_eq!(report.current_key_id, "k-rotated");
    assert!(report.rewrapped >= 1, "{report:?}");
    assert_eq!(report.remaining, 0, "{report:?}");
    // Idempotent: nothing left to do.
    assert_eq!(rotate(&h, leader).await?.rewrapped, 0);

    // Retire the old key everywhere: every object still reads back.
    std::fs::write(&keys, &new_line)?;
    for via in h.ids() {
        for (key, data) in [("before", &before_data), ("after", &after_data)] {
            let (_, got) = h.get(via, "footage", key, None, None).await?;
            assert!(got == *data, "{key} through node {via} differs");
        }
        let (_, part) = h
            .get(via, "footage", "before", Some(STRIPE as u64 - 3), Some(10))
            .await?;
        assert_eq!(part, before_data[STRIPE - 3..STRIPE + 7]);
    }
    Ok(())
}
