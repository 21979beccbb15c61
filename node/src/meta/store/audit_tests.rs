//! Sealing the audit log: only the tail's oldest entries, only as the log
//! holds them, only into an object that exists with the recorded digest.

use super::tests::{bare_manifest, begin_upload, run, store};
use super::*;
use crate::meta::audit::{
    encode_segment, segment_key, verify_chain, AuditRecord, SealedSegment, StoredCheckpoint,
    Summary, AUDIT_BUCKET,
};
use crate::meta::{Bucket, Command, MetaError, ObjectId, ObjectManifest};

fn append(s: &MetaStore, n: u64) {
    let records = (0..n)
        .map(|i| AuditRecord {
            time_ms: 1_000 + i,
            node: 1,
            principal: "officer-1".into(),
            action: "get".into(),
            bucket: "footage".into(),
            key: format!("clip-{i}"),
            object_sha256: String::new(),
            outcome: "ok".into(),
        })
        .collect();
    run(s, Command::AppendAudit { records }).expect("append");
}

/// Stores the segment object of entries `first..=last` (its manifest only:
/// the apply looks at nothing else) and returns the index record.
fn segment_object(s: &MetaStore, first: u64, last: u64) -> SealedSegment {
    let entries = s
        .audit_entries(first, (last - first + 1) as usize)
        .expect("entries");
    let bytes = encode_segment(&entries);
    let segment = SealedSegment {
        first_seq: first,
        last_seq: last,
        prev_hash: entries[0].prev_hash.clone(),
        last_hash: entries[entries.len() - 1].hash.clone(),
        key: segment_key(first, last),
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        summary: Summary::of(&entries),
        ordinal: s.audit_segments().expect("segments"),
        root: crate::meta::audit::anchor::segment_root(&entries)
            .expect("hashes")
            .expect("entries"),
    };
    if s.bucket(AUDIT_BUCKET).expect("bucket").is_none() {
        let bucket = Bucket {
            name: AUDIT_BUCKET.into(),
            data: 4,
            parity: 2,
            created_ms: 0,
            retention: None,
        };
        run(s, Command::CreateBucket { bucket }).expect("bucket");
    }
    let manifest = ObjectManifest {
        size: bytes.len() as u64,
        sha256: segment.sha256.clone(),
        ..bare_manifest(AUDIT_BUCKET, &segment.key, ObjectId(rand::random()))
    };
    begin_upload(s, &manifest);
    let create = Command::CreateObject {
        manifest: Box::new(manifest),
        audit: None,
    };
    run(s, create).expect("object");
    segment
}

#[test]
fn sealing_moves_the_oldest_entries_out_and_keeps_the_chain() {
    let (_d, s) = store();
    append(&s, 25);
    let all = s.audit_entries(1, 100).expect("entries");
    let head = s.audit_head().expect("head");
    let first = segment_object(&s, 1, 10);
    let seal = Command::SealAudit {
        segment: first.clone(),
    };
    run(&s, seal.clone()).expect("sealed");
    assert_eq!(s.audit_tail_start().expect("start"), 11);
    assert_eq!(s.audit_entries(1, 100).expect("tail")[0].seq, 11);
    assert_eq!(s.audit_head().expect("head"), head, "the head stays");
    // A retried proposal is a no-op; sealing the same entries again with
    // another record is refused.
    run(&s, seal).expect("retry");
    let mut other = first.clone();
    other.key = "elsewhere".into();
    let refused = run(&s, Command::SealAudit { segment: other });
    assert!(matches!(refused, Err(MetaError::FailedPrecondition(_))));

    // Not from the tail's start, past the head, wrong hashes, no object.
    let second = segment_object(&s, 11, 20);
    let mut gap = second.clone();
    gap.first_seq = 12;
    let mut past = second.clone();
    past.last_seq = 40;
    let mut rehashed = second.clone();
    rehashed.last_hash = "00".repeat(32);
    let mut absent = second.clone();
    absent.key = segment_key(11, 21);
    let mut altered = second.clone();
    altered.sha256 = "11".repeat(32);
    for bad in [gap, past, rehashed, absent, altered] {
        let refused = run(&s, Command::SealAudit { segment: bad });
        assert!(
            matches!(refused, Err(MetaError::FailedPrecondition(_))),
            "{refused:?}"
        );
        assert_eq!(s.audit_tail_start().expect("start"), 11);
    }
    run(&s, Command::SealAudit { segment: second }).expect("second");

    // The index and the tail together are the whole log, in order.
    let sealed = s.sealed_segments(0, 10).expect("index");
    assert_eq!(
        sealed
            .iter()
            .map(|g| (g.first_seq, g.last_seq))
            .collect::<Vec<_>>(),
        vec![(1, 10), (11, 20)]
    );
    assert_eq!(s.sealed_segments(10, 10).expect("index")[0].first_seq, 11);
    assert_eq!(s.sealed_segments(15, 10).expect("index")[0].first_seq, 11);
    assert!(s.sealed_segments(20, 10).expect("index").is_empty());
    let tail = s.audit_entries(1, 100).expect("tail");
    assert_eq!(tail.len(), 5);
    let mut whole = all[..20].to_vec();
    whole.extend(tail);
    assert_eq!(whole, all);
    assert_eq!(verify_chain(whole).expect("chain"), head);
    // New entries chain on after the head as before.
    append(&s, 1);
    let last = s.audit_entries(26, 1).expect("new");
    assert_eq!(last[0].prev_hash, head.1);
}

/// The signed form of a checkpoint body (no signature: the state machine
/// checks what it states, the leader's signer signs).
fn stated(s: &MetaStore, segments: u64, last_seq: u64, root: &str) -> StoredCheckpoint {
    let last = s
        .sealed_segment_of(last_seq)
        .expect("read")
        .map(|g| g.last_hash)
        .unwrap_or_default();
    let body = tresor_client::anchor::CheckpointBody {
        version: 1,
        cluster_id: s.cluster_id().expect("id").unwrap_or_default(),
        segments,
        last_seq,
        last_hash: last,
        root: root.into(),
        made_ms: 7,
    };
    StoredCheckpoint {
        segments,
        last_seq,
        root: root.into(),
        made_ms: 7,
        signed: serde_json::to_string(&tresor_client::receipt::SignedReceipt {
            body: serde_json::to_string(&body).expect("body"),
            signature: String::new(),
            certificate: String::new(),
        })
        .expect("json"),
    }
}

#[test]
fn sealing_grows_the_history_tree_that_checkpoints_state() {
    use tresor_client::merkle::{self, Tree};
    let (_d, s) = store();
    append(&s, 35);
    let mut leaves = Vec::new();
    for (first, last) in [(1, 10), (11, 20), (21, 30)] {
        let segment = segment_object(&s, first, last);
        // The root must be the entries' own, and the place the next one.
        let mut wrong_root = segment.clone();
        wrong_root.root = "00".repeat(32);
        let mut wrong_place = segment.clone();
        wrong_place.ordinal += 1;
        for bad in [wrong_root, wrong_place] {
            let refused = run(&s, Command::SealAudit { segment: bad });
            assert!(matches!(refused, Err(MetaError::FailedPrecondition(_))));
            assert_eq!(s.audit_tail_start().expect("start"), first);
        }
        let entries = s.audit_entries(first, 10).expect("entries");
        let root = crate::meta::audit::anchor::segment_tree(&entries)
            .expect("hashes")
            .root()
            .expect("entries");
        assert_eq!(merkle::to_hex(&root), segment.root);
        let last_hash = merkle::from_hex(&segment.last_hash).expect("hash");
        leaves.push(merkle::segment_leaf(first, last, &root, &last_hash));
        run(&s, Command::SealAudit { segment }).expect("sealed");
        // The state's history tree is the tree over the segments so far,
        // for every earlier size too.
        let tree = Tree::new(leaves.clone());
        for size in 1..=leaves.len() as u64 {
            let want = Tree::new(leaves[..size as usize].to_vec()).root();
            assert_eq!(Some(s.history_root(size).expect("root")), want);
            for i in 0..size {
                let path = s.history_path(i, size).expect("path");
                assert_eq!(
                    merkle::root_from_path(&leaves[i as usize], i, size, &path),
                    want
                );
            }
        }
        assert_eq!(s.audit_segments().expect("count"), leaves.len() as u64);
        assert_eq!(
            Some(s.history_root(leaves.len() as u64).expect("root")),
            tree.root()
        );
    }

    // A checkpoint must state the state's root, the right last entry.
    let root2 = merkle::to_hex(&s.history_root(2).expect("root"));
    for bad in [
        stated(&s, 2, 20, &"00".repeat(32)),
        stated(&s, 2, 19, &root2),
        stated(&s, 3, 20, &root2),
        stated(&s, 4, 30, &root2),
    ] {
        let refused = run(&s, Command::RecordCheckpoint { checkpoint: bad });
        assert!(
            matches!(refused, Err(MetaError::FailedPrecondition(_))),
            "{refused:?}"
        );
    }
    let mut inconsistent = stated(&s, 2, 20, &root2);
    inconsistent.signed = inconsistent.signed.replace(&root2, &"11".repeat(32));
    let refused = run(
        &s,
        Command::RecordCheckpoint {
            checkpoint: inconsistent,
        },
    );
    assert!(matches!(refused, Err(MetaError::FailedPrecondition(_))));
    assert_eq!(s.latest_checkpoint().expect("read"), None);
    let good = stated(&s, 2, 20, &root2);
    run(
        &s,
        Command::RecordCheckpoint {
            checkpoint: good.clone(),
        },
    )
    .expect("recorded");
    assert_eq!(s.checkpoint(2).expect("read"), Some(good.clone()));
    assert_eq!(s.latest_checkpoint().expect("read"), Some(good));

    // Asking for a checkpoint remembers the head then.
    assert_eq!(s.checkpoint_wanted().expect("read"), 0);
    run(&s, Command::RequestCheckpoint).expect("asked");
    assert_eq!(s.checkpoint_wanted().expect("read"), 35);
}
