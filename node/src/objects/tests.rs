//! The write, read and repair paths against in-process shard peers
//! (`peers::local`): real shard stores in temporary directories, with
//! chosen nodes failing mid-stream, holding corrupt files, or dying as a
//! repair target. No processes, no Raft: each test drives one path and
//! checks its exact outcome.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::body::Body;
use super::peers::local::{Fault, LocalPeers};
use super::peers::{PeerError, Peers};
use super::read::fetch_stripe;
use super::repair::rebuild_segment;
use super::segments::{write_segments, Layout};
use super::ObjectError;
use crate::erasure::Codec;
use crate::meta::{
    NodeRecord, NodeState, ObjectId, ObjectManifest, SegmentManifest, ShardLocation,
};
use crate::placement::Candidate;
use crate::rate::RateLimiter;
use crate::shards::ShardId;

const DATA: u32 = 4;
const PARITY: u32 = 2;
const BLOCK: u32 = 1024;
/// Bytes of the header before a shard file's first block.
const HEADER: u64 = 64;

/// `n` nodes in three zones.
fn nodes(n: u64) -> HashMap<u64, NodeRecord> {
    (1..=n)
        .map(|id| {
            let record = NodeRecord {
                id,
                addr: format!("in-process-{id}"),
                zone: format!("zone-{}", id % 3),
                capacity: 1 << 40,
                state: NodeState::Active,
                added_ms: 0,
                state_since_ms: 0,
                incarnation: String::new(),
            };
            (id, record)
        })
        .collect()
}

fn candidates(nodes: &HashMap<u64, NodeRecord>) -> Vec<Candidate> {
    let mut c: Vec<Candidate> = nodes
        .values()
        .filter(|n| n.state == NodeState::Active)
        .map(super::candidate)
        .collect();
    c.sort_by_key(|c| c.id);
    c
}

/// Deterministic bytes that differ from stripe to stripe.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 977) as u8).collect()
}

/// Writes `bytes` as one object through `peers`, onto `nodes`, in
/// segments of `segment_stripes` stripes; the manifest as the coordinator
/// would commit it.
async fn write(
    peers: &Peers,
    nodes: &HashMap<u64, NodeRecord>,
    bytes: &[u8],
    segment_stripes: u32,
) -> Result<ObjectManifest, ObjectError> {
    let codec = Codec::new(DATA as usize, PARITY as usize).expect("codec");
    let object = ObjectId([9; 16]);
    let chunks: Vec<Result<Vec<u8>, ObjectError>> =
        bytes.chunks(700).map(|c| Ok(c.to_vec())).collect();
    let mut body = Body::new(futures::stream::iter(chunks), None);
    let mut segments = Vec::new();
    let layout = Layout {
        object,
        first_segment: 0,
        codec: &codec,
        block_size: BLOCK,
        segment_stripes,
    };
    write_segments(
        peers,
        || Ok(candidates(nodes)),
        layout,
        &mut body,
        &mut segments,
    )
    .await?;
    Ok(ObjectManifest {
        bucket: "b".into(),
        key: "k".into(),
        object_id: object,
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
        content_type: String::new(),
        metadata: Default::default(),
        data: DATA,
        parity: PARITY,
        block_size: BLOCK,
        segment_stripes,
        created_ms: 0,
        segments,
        encryption: None,
        retention: None,
        ingested_by: String::new(),
        etag: String::new(),
    })
}

/// Reads the whole object back; the shards reported damaged on the way.
async fn read(peers: &Peers, m: &ObjectManifest) -> (Result<Vec<u8>, ObjectError>, Vec<usize>) {
    let codec = Codec::new(m.data as usize, m.parity as usize).expect("codec");
    let damaged = Mutex::new(Vec::new());
    let report = |i: usize| damaged.lock().expect("reports").push(i);
    let mut out = Vec::new();
    for s in m.stripes_for(0, m.size) {
        match fetch_stripe(peers, m, &codec, s, &report).await {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(e) => return (Err(e), damaged.into_inner().expect("reports")),
        }
    }
    (Ok(out), damaged.into_inner().expect("reports"))
}

fn shard(m: &ObjectManifest, segment: u32, index: usize) -> ShardId {
    ShardId {
        object_id: m.object_id,
        segment,
        index: index as u32,
    }
}

/// The node holding shard `index` of segment 0.
fn holder(m: &ObjectManifest, index: usize) -> u64 {
    m.segments[0].shards[index].node.expect("shard written")
}

/// Flips one byte of block `block` of shard `index` of segment 0, on disk.
fn corrupt(local: &LocalPeers, m: &ObjectManifest, index: usize, block: u64) {
    let (path, base) = local
        .store(holder(m, index))
        .image_at(&shard(m, 0, index))
        .expect("store")
        .expect("shard stored");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("shard file");
    let at = base + HEADER + block * u64::from(BLOCK) + 10;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).expect("read");
    file.write_all_at(&[byte[0] ^ 0x5a], at).expect("write");
}

/// The committed shard files on `node`.
fn files_on(local: &LocalPeers, node: u64) -> usize {
    local.store(node).list().expect("list").len()
}

fn peers(n: u64) -> (Arc<LocalPeers>, Peers) {
    let local = Arc::new(LocalPeers::new(n));
    (local.clone(), Peers::new(local))
}

#[tokio::test]
async fn a_peer_failing_mid_stream_costs_its_shard_only() {
    let (local, peers) = peers(6);
    let nodes = nodes(6);
    local.fail(3, Fault::DiesAfterBlocks(1));
    let bytes = pattern(3 * (DATA * BLOCK) as usize + 100);
    let m = write(&peers, &nodes, &bytes, 100)
        .await
        .expect("stored with one shard short");

    assert_eq!(m.segments.len(), 1);
    let shards = &m.segments[0].shards;
    let lost: Vec<usize> = (0..shards.len())
        .filter(|i| shards[*i].node.is_none())
        .collect();
    assert_eq!(
        lost.len(),
        1,
        "exactly the failing node's shard is missing: {shards:?}"
    );
    assert_eq!(shards[lost[0]], ShardLocation::missing());
    let held: BTreeSet<u64> = shards.iter().filter_map(|l| l.node).collect();
    assert_eq!(held, BTreeSet::from([1, 2, 4, 5, 6]));
    assert!(shards
        .iter()
        .filter(|l| l.node.is_some())
        .all(|l| l.digest.is_some()));
    // Nothing of the broken file is left on the failing node.
    assert_eq!(files_on(&local, 3), 0);
    let temporary = local.store(3).clean_tmp(Duration::ZERO).expect("clean");
    assert_eq!(temporary, 0, "the broken file's temporary file is removed");
    let (got, damaged) = read(&peers, &m).await;
    assert_eq!(got.expect("readable"), bytes);
    assert!(damaged.is_empty(), "{damaged:?}");
}

#[tokio::test]
async fn a_segment_with_too_few_durable_shards_is_refused() {
    let (local, peers) = peers(6);
    let nodes = nodes(6);
    local.fail(2, Fault::DiesAfterBlocks(1));
    local.fail(5, Fault::DiesBeforeCommit);
    let bytes = pattern(2 * (DATA * BLOCK) as usize);
    let result = write(&peers, &nodes, &bytes, 100).await;
    match result {
        Err(ObjectError::Unavailable(m)) => {
            assert!(m.contains("only 4 of 6 shard files of segment 0"), "{m}")
        }
        other => {
            panic!("a segment with 4 of the 5 durable shards it needs was accepted: {other:?}")
        }
    }
}

#[tokio::test]
async fn a_read_with_two_corrupt_blocks_returns_the_right_bytes_and_reports_both() {
    let (local, peers) = peers(6);
    let nodes = nodes(6);
    let bytes = pattern(2 * (DATA * BLOCK) as usize + 333);
    let m = write(&peers, &nodes, &bytes, 100).await.expect("stored");
    // Two data shards' first blocks: stripe 0 needs both parity shards.
    corrupt(&local, &m, 0, 0);
    corrupt(&local, &m, 2, 0);
    let (got, mut damaged) = read(&peers, &m).await;
    assert_eq!(got.expect("rebuilt from parity"), bytes);
    damaged.sort_unstable();
    assert_eq!(damaged, vec![0, 2], "both holders' damage is reported");

    // A third corrupt block in the same stripe is one too many: a clear
    // error, never wrong bytes.
    corrupt(&local, &m, 4, 0);
    let (got, _) = read(&peers, &m).await;
    match got {
        Err(ObjectError::Unavailable(msg)) => {
            assert!(msg.contains("only 3 of the 4 readable shards"), "{msg}")
        }
        other => panic!("expected Unavailable, got {:?}", other.map(|b| b.len())),
    }
}

#[tokio::test]
async fn an_unreachable_holder_is_not_reported_as_damage() {
    let (local, peers) = peers(6);
    let nodes = nodes(6);
    let bytes = pattern((DATA * BLOCK) as usize);
    let m = write(&peers, &nodes, &bytes, 100).await.expect("stored");
    local.fail(holder(&m, 1), Fault::Down);
    let (got, damaged) = read(&peers, &m).await;
    assert_eq!(got.expect("read around it"), bytes);
    assert!(
        damaged.is_empty(),
        "a node that is down holds no damage: {damaged:?}"
    );
    let e = peers
        .read_block(
            holder(&m, 1),
            shard(&m, 0, 1),
            0,
            m.segments[0].shards[1].digest.expect("digest"),
            BLOCK as usize,
        )
        .await
        .expect_err("down");
    assert!(matches!(e, PeerError::Unreachable { .. }), "{e:?}");
}

#[tokio::test]
async fn a_repair_whose_target_dies_commits_nothing_and_the_next_pass_succeeds() {
    let (local, peers) = peers(7);
    let mut nodes = nodes(7);
    let bytes = pattern(3 * (DATA * BLOCK) as usize + 5);
    let mut m = write(&peers, &nodes, &bytes, 100).await.expect("stored");
    // The node holding shard 2 is gone; the only node holding nothing of
    // this segment is the one repair must rebuild onto.
    let gone = holder(&m, 2);
    local.fail(gone, Fault::Down);
    nodes.get_mut(&gone).unwrap().state = NodeState::Down;
    let used: BTreeSet<u64> = m.segments[0].shards.iter().filter_map(|l| l.node).collect();
    let spare = *nodes
        .keys()
        .find(|n| !used.contains(n))
        .expect("a spare node");
    m.segments[0].shards[2] = ShardLocation::missing();

    local.fail(spare, Fault::DiesAfterBlocks(2));
    let mut limiter = RateLimiter::new(u64::MAX);
    let none = |_: usize| {};
    let result = rebuild_segment(&peers, &m, 0, &[2], &nodes, &mut limiter, &none).await;
    match result {
        Err(ObjectError::Unavailable(msg)) => {
            assert!(msg.contains("no rebuilt shard could be committed"), "{msg}")
        }
        other => panic!("a repair onto a dead target reported {other:?}"),
    }
    assert_eq!(files_on(&local, spare), 0, "nothing half-written is kept");
    assert_eq!(
        local.store(spare).clean_tmp(Duration::ZERO).expect("clean"),
        0
    );

    // The target is back: the next pass rebuilds the shard onto it.
    local.heal(spare);
    let rebuilt = rebuild_segment(&peers, &m, 0, &[2], &nodes, &mut limiter, &none)
        .await
        .expect("repaired");
    assert_eq!(rebuilt.changes.len(), 1);
    let (index, old, new) = rebuilt.changes[0].clone();
    assert_eq!((index, old), (2, ShardLocation::missing()));
    assert_eq!(new.node, Some(spare));
    assert!(rebuilt.old.is_empty());
    assert_eq!(rebuilt.written, 3 * u64::from(BLOCK) + 2);

    // The rebuilt shard is right: read with two other shards gone.
    m.segments[0].shards[2] = new;
    local.fail(holder(&m, 0), Fault::Down);
    local.fail(holder(&m, 1), Fault::Down);
    let (got, damaged) = read(&peers, &m).await;
    assert_eq!(got.expect("readable through the rebuilt shard"), bytes);
    assert!(damaged.is_empty());
}

#[tokio::test]
async fn segments_are_placed_afresh_and_all_read_back() {
    let (_local, peers) = peers(7);
    let nodes = nodes(7);
    let bytes = pattern(5 * (DATA * BLOCK) as usize + 17);
    let m = write(&peers, &nodes, &bytes, 2).await.expect("stored");
    assert_eq!(m.segments.len(), 3);
    let sizes: Vec<u64> = m
        .segments
        .iter()
        .map(|s: &SegmentManifest| s.bytes)
        .collect();
    let full = 2 * u64::from(DATA * BLOCK);
    assert_eq!(sizes, vec![full, full, bytes.len() as u64 - 2 * full]);
    assert_eq!(m.missing_shards(), 0);
    let (got, _) = read(&peers, &m).await;
    assert_eq!(got.expect("readable"), bytes);
}
