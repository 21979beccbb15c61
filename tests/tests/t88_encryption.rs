//! Encryption at rest: what a stolen disk reveals (nothing), what altered
//! stored bytes produce (the right bytes rebuilt, or a clear error), what a
//! delete leaves (no key), and master key rotation.

use std::path::{Path, PathBuf};
use std::time::Duration;

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
        let db = tresor_node::meta::database::open(&h.data_dir(id).join("meta"), 1 << 20)?;
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

/// Every file under every node's data dir, read whole.
fn every_file(h: &Harness) -> Vec<(PathBuf, Vec<u8>)> {
    h.ids()
        .into_iter()
        .flat_map(|id| tresor_tests::files_under(&h.data_dir(id)))
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}

fn epoch_key_file(h: &Harness, id: u64, epoch: u64) -> PathBuf {
    h.data_dir(id)
        .join(tresor_node::crypto::epochs::DIR_NAME)
        .join(format!("{epoch:016x}.key"))
}

/// Provable crypto-shredding: after a delete and the shredding window, no
/// byte of any node's data dir — Raft log, state, snapshots, sled's free
/// pages, epoch key files — opens the deleted object's data key, even with
/// the master key; an object that shared its key epoch is moved to a new
/// one and still reads back.
#[tokio::test]
async fn deleted_footage_is_crypto_shredded() -> anyhow::Result<()> {
    use tresor_node::crypto::{DataKey, WrappedEpochKey};
    let mut h = cluster!(data, shard = SHARD as u32)?;
    let doomed = canary_footage(2 * STRIPE + 9);
    let kept = canary_footage(STRIPE + 77);
    h.put(1, "footage", "doomed", &doomed).await?;
    h.put(2, "footage", "kept", &kept).await?;

    // The manifests as a node's state holds them (read with the node
    // stopped), as someone with a copy of its disk would.
    h.wait_caught_up(6).await?;
    h.stop(6).await;
    let (gone_wrapped, gone_id, kept_key_id) = {
        let db = tresor_node::meta::database::open(&h.data_dir(6).join("meta"), 1 << 20)?;
        let meta =
            tresor_node::meta::MetaStore::new(tresor_node::raft::state_machine::state_tree(&db)?);
        let doomed = meta.object("footage", "doomed")?.expect("doomed stored");
        let kept = meta.object("footage", "kept")?.expect("kept stored");
        let wrapped = doomed.encryption.expect("encrypted").key;
        (
            wrapped,
            doomed.object_id,
            kept.encryption.expect("encrypted").key.key_id,
        )
    };
    h.restart(6).await?;
    let epoch = tresor_node::meta::epoch_of(&gone_wrapped.key_id)
        .expect("a data key is wrapped by an epoch key, not the master key");
    let masters = MasterKeys::load(&master_key_file(&h)?).map_err(anyhow::Error::msg)?;
    let epoch_file = std::fs::read_to_string(epoch_key_file(&h, 1, epoch))?;
    let epoch_key = WrappedEpochKey::parse(&epoch_file)
        .map_err(anyhow::Error::msg)?
        .open(&masters)?;
    let data_key = DataKey::unwrap_epoch(gone_id, &gone_wrapped, &epoch_key)?;
    // The search works: before the delete the epoch key is on every node.
    for id in h.ids() {
        assert!(
            epoch_key_file(&h, id, epoch).exists(),
            "node {id} has the key"
        );
    }

    let mut client = h.objects(1).await?;
    client
        .delete(pb::DeleteRequest {
            bucket: "footage".into(),
            key: "doomed".into(),
        })
        .await?;
    // The test cluster's shredding delay is one second; the window is that
    // plus a pass of the leader's shredder and of every node's key sync.
    tresor_tests::wait_for(
        "the epoch key destroyed on every node",
        Duration::from_secs(60),
        || async {
            let left: Vec<u64> = h
                .ids()
                .into_iter()
                .filter(|&id| epoch_key_file(&h, id, epoch).exists())
                .collect();
            Ok(left.is_empty().then_some(()))
        },
    )
    .await?;

    // Every byte of every node's data dir: neither the epoch key (raw, in
    // hex, or as its key file wraps it) nor the data key is anywhere, and
    // no epoch key left on any node — nor any master key — opens the
    // deleted object's wrapped data key.
    let raw_epoch = epoch_key.expose();
    let raw_data = data_key.expose();
    let file_line = epoch_file.trim_end().as_bytes().to_vec();
    let sealed = WrappedEpochKey::parse(&epoch_file)
        .map_err(anyhow::Error::msg)?
        .sealed;
    let needles: [(&str, Vec<u8>); 6] = [
        ("epoch key", raw_epoch.to_vec()),
        ("epoch key in hex", hex::encode(raw_epoch).into_bytes()),
        ("wrapped epoch key", sealed.clone()),
        ("epoch key file", file_line),
        ("data key", raw_data.to_vec()),
        ("data key in hex", hex::encode(raw_data).into_bytes()),
    ];
    let files = every_file(&h);
    assert!(files.len() > 20, "searched {} files", files.len());
    for (path, bytes) in &files {
        for (what, needle) in &needles {
            assert!(
                !contains(bytes, needle),
                "{what} of the deleted object found in {}",
                path.display()
            );
        }
    }
    let mut opened = 0;
    for id in h.ids() {
        let dir = h.data_dir(id).join(tresor_node::crypto::epochs::DIR_NAME);
        for entry in std::fs::read_dir(&dir)? {
            let text = std::fs::read_to_string(entry?.path())?;
            let other = WrappedEpochKey::parse(&text)
                .map_err(anyhow::Error::msg)?
                .open(&masters)?;
            opened += 1;
            let mut relabelled = gone_wrapped.clone();
            relabelled.key_id = other.key_id();
            assert!(
                DataKey::unwrap_epoch(gone_id, &relabelled, &other).is_err(),
                "epoch key {} on node {id} opens the deleted object's key",
                other.key_id()
            );
        }
    }
    assert!(opened >= h.ids().len(), "every node holds live epoch keys");
    assert!(
        DataKey::unwrap(gone_id, &gone_wrapped, &masters).is_err(),
        "the master key alone opens the deleted object's key"
    );

    // The receipt says so, once the key is gone.
    let receipt = tresor_tests::wait_for("the receipt", Duration::from_secs(30), || async {
        let mut admin = h.admin(2).await?;
        let got = admin
            .get_receipt(pb::GetReceiptRequest {
                bucket: "footage".into(),
                key: "doomed".into(),
            })
            .await;
        Ok(got.ok().and_then(|r| r.into_inner().receipt))
    })
    .await?;
    let body =
        tresor_client::receipt::SignedReceipt::from_json(&receipt.receipt_json)?.parsed_body()?;
    assert_eq!(
        body.key_epoch.as_deref(),
        Some(gone_wrapped.key_id.as_str())
    );
    assert!(
        body.data_key_removed && body.key_destroyed_ms.is_some(),
        "{body:?}"
    );
    // The object that shared the epoch (unless the test crossed midnight
    // UTC: epochs of objects kept without end are per day) was moved to a
    // new one before the key went, and reads back through every node.
    if kept_key_id != gone_wrapped.key_id {
        eprintln!("kept and doomed were stored in different epochs");
    }
    for via in h.ids() {
        let (_, back) = h.get(via, "footage", "kept", None, None).await?;
        assert!(back == kept, "kept through node {via} differs");
    }
    Ok(())
}

/// Crypto-shredding under faults: a node that is down when an epoch is
/// destroyed destroys its copy once it is back; a node that lost its epoch
/// key files still reads (fetching the keys from its peers) and gets them
/// back on disk; nothing is lost meanwhile.
#[tokio::test]
async fn shredding_survives_a_node_down_and_a_node_without_key_files() -> anyhow::Result<()> {
    let mut h = cluster!(data, shard = SHARD as u32)?;
    let doomed = canary_footage(STRIPE + 5);
    let kept = canary_footage(2 * STRIPE + 11);
    h.put(1, "footage", "doomed", &doomed).await?;
    h.put(1, "footage", "kept", &kept).await?;
    // The epoch both share: the only key file every node has (a test
    // straddling midnight UTC may see two; then take the doomed one's by
    // elimination after the delete).
    let keys_of = |h: &Harness, id: u64| -> Vec<PathBuf> {
        let dir = h.data_dir(id).join(tresor_node::crypto::epochs::DIR_NAME);
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "key"));
        files.sort();
        files
    };
    let before: Vec<PathBuf> = keys_of(&h, 5);
    assert!(!before.is_empty(), "node 5 holds the epoch key");

    h.stop(5).await;
    h.objects(2)
        .await?
        .delete(pb::DeleteRequest {
            bucket: "footage".into(),
            key: "doomed".into(),
        })
        .await?;
    // Destroyed on the running nodes; node 5's copy is still on its disk.
    let gone = tresor_tests::wait_for(
        "the epoch destroyed on the running nodes",
        Duration::from_secs(60),
        || async {
            let names = |id| -> Vec<std::ffi::OsString> {
                keys_of(&h, id)
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
                    .collect()
            };
            let gone: Vec<PathBuf> = before
                .iter()
                .filter(|p| {
                    let name = p.file_name().map(|n| n.to_os_string());
                    [1u64, 2, 3, 4, 6]
                        .iter()
                        .all(|&id| !names(id).iter().any(|n| Some(n) == name.as_ref()))
                })
                .cloned()
                .collect();
            Ok((!gone.is_empty()).then_some(gone))
        },
    )
    .await?;
    for path in &gone {
        assert!(
            path.exists(),
            "node 5 was down: its copy {} is still there",
            path.display()
        );
    }
    h.restart(5).await?;
    tresor_tests::wait_for(
        "node 5 destroys its copy once back",
        Duration::from_secs(60),
        || async { Ok(gone.iter().all(|p| !p.exists()).then_some(())) },
    )
    .await?;

    // Node 4 loses every epoch key file: it still reads, and gets them back.
    h.stop(4).await;
    for path in keys_of(&h, 4) {
        std::fs::remove_file(path)?;
    }
    h.restart(4).await?;
    let (_, back) = h.get(4, "footage", "kept", None, None).await?;
    assert!(back == kept, "kept through node 4 differs");
    tresor_tests::wait_for(
        "node 4 holds the live epoch keys again",
        Duration::from_secs(60),
        || async {
            let (four, one) = (keys_of(&h, 4), keys_of(&h, 1));
            Ok((four
                .iter()
                .map(|p| p.file_name())
                .eq(one.iter().map(|p| p.file_name())))
            .then_some(()))
        },
    )
    .await?;
    for via in h.ids() {
        let (_, back) = h.get(via, "footage", "kept", None, None).await?;
        assert!(back == kept, "kept through node {via} differs");
    }
    Ok(())
}
