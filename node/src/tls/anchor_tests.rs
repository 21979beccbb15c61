//! Custody bundles anchored to a signed checkpoint, built from the
//! cluster's own trees and signed by a real signer: they verify, and the
//! cluster itself cannot show a different entry, drop a proof or swap the
//! checkpoint without the check naming it.

use tresor_client::anchor::{Anchor, CheckpointBody, EntryProof, SegmentProof, SignedCheckpoint};
use tresor_client::custody::{verify_bundle, CustodyBody, CustodyError, CustodyObject};
use tresor_client::merkle::{self, Tree};

use super::{init_ca, issue_signer_pem, ReceiptSigner, Validity, CA_CERT_FILE};
use crate::meta::audit::anchor::segment_tree;
use crate::meta::audit::{chain, AuditEntry, AuditRecord, GENESIS_HASH};

const CLIP: &str = "clip";

/// Entries 1..=25, every third naming the clip, sealed as 1..=10,
/// 11..=20, 21..=25.
fn log() -> (Vec<AuditEntry>, Vec<(u64, u64)>) {
    let mut prev = GENESIS_HASH.to_string();
    let entries = (1..=25u64)
        .map(|seq| {
            let record = AuditRecord {
                time_ms: 1_000 + seq,
                node: 1,
                principal: format!("investigator-{}", seq % 4),
                action: "get".into(),
                bucket: "footage".into(),
                key: if seq % 3 == 0 {
                    CLIP.into()
                } else {
                    format!("other-{seq}")
                },
                object_sha256: "ab".repeat(32),
                outcome: "ok".into(),
            };
            let e = chain(seq, record, &prev);
            prev = e.hash.clone();
            e
        })
        .collect();
    (entries, vec![(1, 10), (11, 20), (21, 25)])
}

fn segment(entries: &[AuditEntry], (first, last): (u64, u64)) -> &[AuditEntry] {
    &entries[first as usize - 1..last as usize]
}

fn history(entries: &[AuditEntry], ranges: &[(u64, u64)]) -> Tree {
    Tree::new(
        ranges
            .iter()
            .map(|r| {
                let seg = segment(entries, *r);
                let root = segment_tree(seg).expect("hashes").root().expect("entries");
                let last = merkle::from_hex(&seg[seg.len() - 1].hash).expect("hash");
                merkle::segment_leaf(r.0, r.1, &root, &last)
            })
            .collect(),
    )
}

/// The checkpoint of the first `segments` segments, signed by `signer`.
fn checkpoint(signer: &ReceiptSigner, cluster: &str, segments: u64) -> SignedCheckpoint {
    let (entries, ranges) = log();
    let tree = history(&entries, &ranges[..segments as usize]);
    let last = ranges[segments as usize - 1].1;
    signer
        .sign(&CheckpointBody {
            version: 1,
            cluster_id: cluster.into(),
            segments,
            last_seq: last,
            last_hash: entries[last as usize - 1].hash.clone(),
            root: merkle::to_hex(&tree.root().expect("segments")),
            made_ms: crate::meta::now_ms(),
        })
        .expect("sign")
}

/// A bundle of the clip's entries anchored to the checkpoint of the
/// first two segments.
fn bundle(signer: &ReceiptSigner) -> CustodyBody {
    let (entries, ranges) = log();
    let covered = 2;
    let tree = history(&entries, &ranges[..covered]);
    let hex = |p: Vec<merkle::Hash>| p.iter().map(merkle::to_hex).collect();
    let segments = ranges[..covered]
        .iter()
        .enumerate()
        .map(|(ordinal, r)| {
            let seg = segment(&entries, *r);
            let seg_tree = segment_tree(seg).expect("hashes");
            SegmentProof {
                ordinal: ordinal as u64,
                first_seq: r.0,
                last_seq: r.1,
                root: merkle::to_hex(&seg_tree.root().expect("entries")),
                last_hash: seg[seg.len() - 1].hash.clone(),
                path: hex(tree.path(ordinal as u64).expect("in tree")),
                entries: seg
                    .iter()
                    .filter(|e| e.record.key == CLIP)
                    .map(|e| EntryProof {
                        seq: e.seq,
                        path: hex(seg_tree.path(e.seq - r.0).expect("in segment")),
                    })
                    .collect(),
            }
        })
        .collect();
    CustodyBody {
        version: 2,
        cluster_id: "ours".into(),
        bucket: "footage".into(),
        key: CLIP.into(),
        object: Some(CustodyObject {
            object_id: "00".repeat(16),
            size: 10,
            sha256: "ab".repeat(32),
            content_type: "video/mp4".into(),
            metadata: Default::default(),
            ingested_ms: 1,
            ingested_by: "cam-gateway".into(),
            retention_policy: None,
            keep_until_ms: None,
            delete_at_ms: None,
        }),
        receipt: None,
        holds: vec![],
        entries: entries
            .iter()
            .filter(|e| e.record.key == CLIP)
            .map(|e| e.custody())
            .collect(),
        entries_complete: true,
        head_seq: 25,
        head_hash: entries[24].hash.clone(),
        anchor: Some(Anchor {
            checkpoint: checkpoint(signer, "ours", 2),
            segments,
        }),
        exported_by: "custodian".into(),
        exported_ms: crate::meta::now_ms(),
    }
}

fn anchor_error(r: Result<impl std::fmt::Debug, CustodyError>) -> String {
    match r {
        Err(CustodyError::Anchor(why)) => why,
        other => panic!("expected an anchor failure, got {other:?}"),
    }
}

#[test]
fn anchored_bundles_verify_and_every_forgery_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
    init_ca(&ours).expect("ca");
    init_ca(&theirs).expect("ca");
    let load = |ca: &std::path::Path| {
        let issued = issue_signer_pem(ca, Validity::days(1)).expect("signer");
        ReceiptSigner::from_pem(&issued.cert_pem, &issued.key_pem).expect("load")
    };
    let (signer, other) = (load(&ours), load(&theirs));
    let ca = std::fs::read_to_string(ours.join(CA_CERT_FILE)).expect("ca");
    let sign = |b: &CustodyBody| signer.sign(b).expect("sign");
    let body = bundle(&signer);
    let published = body.anchor.as_ref().expect("anchor").checkpoint.clone();

    // Clip entries 3, 6, 9 (segment 0), 12, 15, 18 (segment 1) proven; 21
    // and 24 are after the checkpoint.
    let ok = verify_bundle(&sign(&body), &ca, None, Some(&published)).expect("verifies");
    let report = ok.anchor.expect("anchored");
    assert_eq!((report.anchored, report.after), (6, 2));
    assert_eq!(
        (report.checkpoint.segments, report.checkpoint.last_seq),
        (2, 20)
    );

    // The cluster shows another entry at 15, chained and hashed correctly
    // (16 is not in the bundle, so no link betrays it): its path fails.
    let mut rewritten = body.clone();
    let i = rewritten
        .entries
        .iter()
        .position(|e| e.seq == 15)
        .expect("15");
    let (entries, _) = log();
    let mut record = entries[14].record.clone();
    record.principal = "nobody-looked".into();
    rewritten.entries[i] = chain(15, record, &entries[13].hash).custody();
    let why = anchor_error(verify_bundle(&sign(&rewritten), &ca, None, None));
    assert!(why.contains("audit entry 15"), "{why}");

    // An entry before the checkpoint's end without its proof.
    let mut dropped = body.clone();
    if let Some(a) = dropped.anchor.as_mut() {
        a.segments[0].entries.retain(|p| p.seq != 6);
    }
    let why = anchor_error(verify_bundle(&sign(&dropped), &ca, None, None));
    assert!(
        why.contains("audit entry 6") && why.contains("no proof"),
        "{why}"
    );

    // One hash of a segment's path to the checkpoint changed.
    let mut bent = body.clone();
    if let Some(a) = bent.anchor.as_mut() {
        let h = &mut a.segments[1].path[0];
        let flipped = if h.starts_with('0') { "1" } else { "0" };
        h.replace_range(0..1, flipped);
    }
    let why = anchor_error(verify_bundle(&sign(&bent), &ca, None, None));
    assert!(why.contains("sealed segment 1"), "{why}");

    // One hash of an entry's path changed.
    let mut bent = body.clone();
    if let Some(a) = bent.anchor.as_mut() {
        let h = &mut a.segments[0].entries[1].path[0];
        let flipped = if h.starts_with('0') { "1" } else { "0" };
        h.replace_range(0..1, flipped);
    }
    let why = anchor_error(verify_bundle(&sign(&bent), &ca, None, None));
    assert!(why.contains("audit entry 6"), "{why}");

    // A checkpoint signed by another cluster's signer.
    let mut foreign = body.clone();
    if let Some(a) = foreign.anchor.as_mut() {
        a.checkpoint = checkpoint(&other, "ours", 2);
    }
    let why = anchor_error(verify_bundle(&sign(&foreign), &ca, None, None));
    assert!(why.contains("checkpoint does not verify"), "{why}");

    // Another cluster's id in our own checkpoint.
    let mut elsewhere = body.clone();
    if let Some(a) = elsewhere.anchor.as_mut() {
        a.checkpoint = checkpoint(&signer, "theirs", 2);
    }
    let why = anchor_error(verify_bundle(&sign(&elsewhere), &ca, None, None));
    assert!(why.contains("cluster theirs"), "{why}");

    // Checked against another published checkpoint (three segments).
    let later = checkpoint(&signer, "ours", 3);
    let why = anchor_error(verify_bundle(&sign(&body), &ca, None, Some(&later)));
    assert!(why.contains("--checkpoint 3"), "{why}");

    // A published checkpoint altered after signing.
    let mut edited = published.clone();
    edited.body = edited.body.replace("\"segments\":2", "\"segments\":1");
    assert_ne!(edited.body, published.body);
    let why = anchor_error(verify_bundle(&sign(&body), &ca, None, Some(&edited)));
    assert!(
        why.contains("published checkpoint does not verify"),
        "{why}"
    );

    // A bundle without an anchor cannot be checked against one.
    let mut bare = body.clone();
    bare.anchor = None;
    assert!(verify_bundle(&sign(&bare), &ca, None, None).is_ok());
    let why = anchor_error(verify_bundle(&sign(&bare), &ca, None, Some(&published)));
    assert!(why.contains("no anchor"), "{why}");
}
