//! Entry points of the fuzz targets in `node/fuzz/` (built only with the
//! `fuzzing` feature). Each takes what a node reads from its disk or the
//! network, decodes it the way the node does, and goes on to use the result
//! the way the node would. None may panic, allocate beyond the input's
//! size, or loop without end — that is what the fuzzers check — and where
//! a format has an inverse, the round trip must give the input back.

use std::path::PathBuf;
use std::sync::OnceLock;

use prost::Message;
use sha2::{Digest as _, Sha256};
use tresor_proto::internal::v1 as ipb;
use tresor_proto::v1 as pb;

use crate::erasure::Codec;
use crate::meta::Writes;
use crate::meta::{
    validate_bucket_name, validate_key, validate_principal_name, validate_scheme, Command,
    MetaStore, ObjectId, ObjectManifest,
};
use crate::raft::snapshot::{decode_pairs, encode_pairs};
use crate::raft::TypeConfig;
use crate::shards::{Digest, ShardId, ShardStore};

const HEADER_LEN: usize = 64;
const FOOTER_LEN: usize = 16;
const HASH_LEN: usize = 32;
/// Blocks read per input: enough to reach every code path.
const MAX_BLOCKS_READ: u32 = 64;

fn scratch_dir() -> PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("tresor-fuzz-{}", std::process::id()))
}

fn store() -> &'static ShardStore {
    static STORE: OnceLock<ShardStore> = OnceLock::new();
    STORE.get_or_init(|| match ShardStore::open(&scratch_dir()) {
        Ok(store) => store,
        Err(e) => panic!("the fuzz target cannot make its scratch shard store: {e}"),
    })
}

/// The digest a manifest would hold for `bytes` as a shard file — header,
/// block hashes and footer — taken where the footer says they are (zeros
/// when the file is too short for that), so inputs can get past the digest
/// check to the block reads.
fn digest_of(bytes: &[u8]) -> Digest {
    if bytes.len() < HEADER_LEN + FOOTER_LEN {
        return Digest([0; 32]);
    }
    let footer = &bytes[bytes.len() - FOOTER_LEN..];
    let count = u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]) as usize;
    let trailer_end = bytes.len() - FOOTER_LEN;
    let Some(trailer_start) = count
        .checked_mul(HASH_LEN)
        .and_then(|t| trailer_end.checked_sub(t))
        .filter(|start| *start >= HEADER_LEN)
    else {
        return Digest([0; 32]);
    };
    let mut digest = Sha256::new();
    digest.update(&bytes[..HEADER_LEN]);
    digest.update(&bytes[trailer_start..trailer_end]);
    digest.update(footer);
    Digest(digest.finalize().into())
}

/// `bytes` as a shard file on disk: opened as reads and scrub open it, its
/// blocks read and verified.
pub fn shard_file(bytes: &[u8]) {
    let mut id = ShardId {
        object_id: ObjectId([0; 16]),
        segment: 0,
        index: 0,
    };
    if bytes.len() >= 36 {
        id.object_id.0.copy_from_slice(&bytes[12..28]);
        id.segment = u32::from_le_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]);
        id.index = u32::from_le_bytes([bytes[32], bytes[33], bytes[34], bytes[35]]);
    }
    let store = store();
    let path = store.path(&id);
    if std::fs::write(&path, bytes).is_err() {
        return;
    }
    if let Ok(reader) = store.open_reader(&id, &digest_of(bytes)) {
        let count = reader.block_count();
        for i in 0..count.min(MAX_BLOCKS_READ) {
            if let Ok(block) = reader.read_block(i) {
                assert!(block.len() <= reader.block_size() as usize);
            }
        }
        assert!(
            reader.read_block(count).is_err(),
            "a block past the end was read"
        );
        if let Ok(total) = reader.verify_all() {
            assert!(total <= bytes.len() as u64);
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// `bytes` as a stored object manifest: decoded, and planned for a read
/// as the read path does.
pub fn manifest(bytes: &[u8]) {
    let Ok(m) = crate::meta::codec::decode::<ObjectManifest>(bytes) else {
        return;
    };
    let _ = (
        m.stripes(),
        m.missing_shards(),
        m.segment_bytes(),
        m.stored_size(),
    );
    if Codec::new(m.data as usize, m.parity as usize).is_err() {
        return;
    }
    let stripe_bytes = m.stripe_bytes().max(1);
    let mut last_end = 0u64;
    for s in m.stripes_for(0, u64::MAX).take(1000) {
        assert_eq!(s.offset, last_end, "stripes are not contiguous");
        assert!(s.bytes > 0 && s.bytes <= stripe_bytes);
        last_end = s.offset + s.bytes;
    }
    let again: ObjectManifest = match crate::meta::codec::decode(&crate::meta::codec::encode(&m)) {
        Ok(m) => m,
        Err(e) => panic!("a decoded manifest does not round-trip: {e}"),
    };
    assert_eq!(again, m);
}

fn meta() -> &'static MetaStore {
    static META: OnceLock<MetaStore> = OnceLock::new();
    META.get_or_init(|| {
        let db = sled::Config::new().temporary(true).open();
        match db.and_then(|db| db.open_tree("state")) {
            Ok(tree) => MetaStore::new(tree),
            Err(e) => panic!("the fuzz target cannot open a scratch store: {e}"),
        }
    })
}

/// Commands applied to an empty state, as followers apply what the leader
/// sends: each is decided deterministically, and everything it writes
/// reads back.
pub fn commands(commands: &[Command]) {
    let meta = meta();
    if meta.tree().clear().is_err() {
        return;
    }
    for command in commands {
        let stored = crate::meta::codec::encode(command);
        assert_eq!(
            crate::meta::codec::decode::<Command>(&stored).ok().as_ref(),
            Some(command),
            "a command does not round-trip through its log encoding"
        );
        let mut batch = Writes::default();
        match meta.apply(command, &mut batch) {
            Ok(_) => {
                if meta.tree().apply_batch(batch.into()).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    // Everything written is readable again.
    assert!(meta.nodes().is_ok(), "nodes unreadable after apply");
    assert!(meta.buckets().is_ok(), "buckets unreadable after apply");
    assert!(
        meta.principals().is_ok(),
        "principals unreadable after apply"
    );
    assert!(meta.grants().is_ok(), "grants unreadable after apply");
    assert!(meta.tokens().is_ok(), "tokens unreadable after apply");
    assert!(
        meta.uploads(None, 100).is_ok(),
        "uploads unreadable after apply"
    );
    assert!(
        meta.audit_head().is_ok(),
        "audit head unreadable after apply"
    );
}

/// `bytes` as Raft traffic and log records: a log entry as the log store
/// reads it, and the messages of the Raft service.
pub fn raft_message(bytes: &[u8]) {
    if let Ok(entry) = crate::meta::codec::decode::<openraft::Entry<TypeConfig>>(bytes) {
        if let openraft::EntryPayload::Normal(command) = &entry.payload {
            commands(std::slice::from_ref(command));
        }
    }
    let _ = serde_json::from_slice::<openraft::raft::AppendEntriesRequest<TypeConfig>>(bytes);
    let _ = serde_json::from_slice::<openraft::raft::VoteRequest<u64>>(bytes);
    let _ = serde_json::from_slice::<openraft::raft::InstallSnapshotRequest<TypeConfig>>(bytes);
    let _ = ipb::RaftPayload::decode(bytes);
}

/// `bytes` as a snapshot as installed: framed pairs that must round-trip.
pub fn snapshot(bytes: &[u8]) {
    if let Ok(pairs) = decode_pairs(bytes) {
        assert_eq!(
            encode_pairs(&pairs),
            bytes,
            "snapshot framing does not round-trip"
        );
    }
}

/// `bytes` (after a selector byte) as one of the public and internal
/// request messages, put through the checks the handlers make first.
pub fn request(bytes: &[u8]) {
    let Some((selector, body)) = bytes.split_first() else {
        return;
    };
    let bucket_and_key = |bucket: &str, key: &str| {
        let _ = validate_bucket_name(bucket);
        let _ = validate_key(key);
    };
    match selector % 7 {
        0 => {
            if let Ok(r) = pb::PutRequest::decode(body) {
                if let Some(pb::put_request::Msg::Header(h)) = r.msg {
                    bucket_and_key(&h.bucket, &h.key);
                    let _ = hex::decode(&h.expected_sha256);
                }
            }
        }
        1 => {
            if let Ok(r) = pb::GetRequest::decode(body) {
                bucket_and_key(&r.bucket, &r.key);
                let _ = r.offset.map(|o| r.length.map(|l| o.saturating_add(l)));
            }
        }
        2 => {
            if let Ok(r) = pb::CreateBucketRequest::decode(body) {
                let _ = validate_bucket_name(&r.name);
                let _ = validate_scheme(r.data, r.parity);
            }
        }
        3 => {
            if let Ok(r) = pb::GrantRequest::decode(body) {
                let _ = validate_principal_name(&r.principal);
                let _ = crate::meta::Role::parse(&r.role);
            }
        }
        4 => {
            if let Ok(w) = ipb::ShardWrite::decode(body) {
                if let Some(ipb::shard_write::Msg::Open(open)) = w.msg {
                    if let Some(shard) = open.shard {
                        let _ = ObjectId::from_slice(&shard.object_id);
                    }
                }
            }
        }
        5 => {
            if let Ok(r) = ipb::ReadBlockRequest::decode(body) {
                let _ = Digest::from_slice(&r.digest);
                if let Some(shard) = r.shard {
                    let _ = ObjectId::from_slice(&shard.object_id);
                }
            }
        }
        _ => {
            if let Ok(p) = ipb::RaftPayload::decode(body) {
                raft_message(&p.json);
            }
        }
    }
}
