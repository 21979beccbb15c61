//! Signed audit checkpoints, and the proofs that anchor a custody bundle's
//! audit entries to one.
//!
//! A checkpoint states the cluster's audit history up to the end of its
//! `segments`-th sealed segment: the last entry's number and chain hash,
//! and the root of the history tree over those segments (see
//! [`crate::merkle`]). The cluster makes one at least hourly while the log
//! grows, and on demand (`tresor-node audit checkpoint`), signed like a
//! receipt. Published (given to a court, a supervisory authority, a
//! notary), it fixes the history: every later bundle can prove that its
//! entries are in it, and no one — the cluster included — can later show a
//! different entry at the same place without the published root failing.

use serde::{Deserialize, Serialize};

use crate::merkle::{self, Hash};
use crate::receipt::{verify_signed, ReceiptError, SignedReceipt};

/// What a checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointBody {
    /// Format (1).
    pub version: u32,
    /// The cluster.
    pub cluster_id: String,
    /// Sealed segments covered: the history tree's size.
    pub segments: u64,
    /// The last audit entry covered.
    pub last_seq: u64,
    /// Its chain hash, hex.
    pub last_hash: String,
    /// Root of the history tree over the segments, hex.
    pub root: String,
    /// When it was signed, Unix milliseconds.
    pub made_ms: u64,
}

/// A signed checkpoint, as written to a file: the same three strings as a
/// receipt.
pub type SignedCheckpoint = SignedReceipt;

/// Checks `checkpoint`'s signature against the CA in `ca_pem`; returns
/// what it states.
pub fn verify_checkpoint(
    checkpoint: &SignedCheckpoint,
    ca_pem: &str,
) -> Result<CheckpointBody, ReceiptError> {
    if checkpoint.signature.is_empty() || checkpoint.certificate.is_empty() {
        return Err(ReceiptError::Unsigned);
    }
    let body: CheckpointBody = serde_json::from_str(&checkpoint.body)
        .map_err(|e| ReceiptError::Malformed(format!("checkpoint body: {e}")))?;
    verify_signed(
        &checkpoint.body,
        &checkpoint.signature,
        &checkpoint.certificate,
        ca_pem,
        body.made_ms,
    )?;
    Ok(body)
}

/// A bundle's proof that its entries are in a checkpoint's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// The signed checkpoint.
    pub checkpoint: SignedCheckpoint,
    /// Per sealed segment holding some of the bundle's entries.
    pub segments: Vec<SegmentProof>,
}

/// One sealed segment's place in the history, and its entries' places in
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentProof {
    /// Its leaf index in the history tree, from 0.
    pub ordinal: u64,
    /// Its first entry.
    pub first_seq: u64,
    /// Its last entry.
    pub last_seq: u64,
    /// Root of the tree over its entries' chain hashes, hex.
    pub root: String,
    /// Chain hash of its last entry, hex.
    pub last_hash: String,
    /// Inclusion path of its leaf to the checkpoint's root, hex.
    pub path: Vec<String>,
    /// The bundle's entries in it.
    pub entries: Vec<EntryProof>,
}

/// An entry's inclusion path to its segment's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryProof {
    /// The entry.
    pub seq: u64,
    /// Hex hashes, deepest first.
    pub path: Vec<String>,
}

/// What an anchor proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorReport {
    /// The checkpoint the entries are anchored to.
    pub checkpoint: CheckpointBody,
    /// Entries proven to be in its history (all those it covers).
    pub anchored: usize,
    /// Entries after it: in the cluster's signed bundle, not yet in a
    /// checkpoint.
    pub after: usize,
}

/// Why an anchor does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AnchorError(pub String);

fn hashes(hex: &[String]) -> Option<Vec<Hash>> {
    hex.iter().map(|h| merkle::from_hex(h)).collect()
}

/// Checks `anchor` for `entries` (sequence number and chain hash, which
/// the caller has checked against the entries' fields) of a bundle of
/// cluster `cluster_id`: the checkpoint's signature, each segment's path
/// to its root, each entry's path to its segment's root, and that every
/// entry the checkpoint covers is proven. With `published`, the checkpoint
/// must state the same history.
pub fn verify_anchor(
    anchor: &Anchor,
    entries: &[(u64, &str)],
    cluster_id: &str,
    ca_pem: &str,
    published: Option<&SignedCheckpoint>,
) -> Result<AnchorReport, AnchorError> {
    let fail = AnchorError;
    let checkpoint = verify_checkpoint(&anchor.checkpoint, ca_pem)
        .map_err(|e| fail(format!("the checkpoint does not verify: {e}")))?;
    if checkpoint.cluster_id != cluster_id {
        return Err(fail(format!(
            "the checkpoint is of cluster {}, not the bundle's {cluster_id}",
            checkpoint.cluster_id
        )));
    }
    if let Some(published) = published {
        let theirs = verify_checkpoint(published, ca_pem)
            .map_err(|e| fail(format!("the published checkpoint does not verify: {e}")))?;
        if (
            theirs.cluster_id.as_str(),
            theirs.segments,
            theirs.root.as_str(),
        ) != (cluster_id, checkpoint.segments, checkpoint.root.as_str())
        {
            return Err(fail(format!(
                "the bundle is anchored to the checkpoint of {} segments (entry {}), not to the \
                 published one of {} segments (entry {}): export it with `--checkpoint {}`",
                checkpoint.segments,
                checkpoint.last_seq,
                theirs.segments,
                theirs.last_seq,
                theirs.segments
            )));
        }
    }
    let root = merkle::from_hex(&checkpoint.root)
        .ok_or_else(|| fail("the checkpoint's root is not a hash".into()))?;
    let by_seq: std::collections::BTreeMap<u64, &str> = entries.iter().copied().collect();
    let mut proven = std::collections::BTreeSet::new();
    for s in &anchor.segments {
        let at = |why: &str| {
            fail(format!(
                "sealed segment {} ({}..={}): {why}",
                s.ordinal, s.first_seq, s.last_seq
            ))
        };
        let (Some(seg_root), Some(last_hash), Some(path)) = (
            merkle::from_hex(&s.root),
            merkle::from_hex(&s.last_hash),
            hashes(&s.path),
        ) else {
            return Err(at("a hash is not 64 hex digits"));
        };
        if s.last_seq < s.first_seq || s.last_seq > checkpoint.last_seq {
            return Err(at("its range is not inside the checkpoint's"));
        }
        let leaf = merkle::segment_leaf(s.first_seq, s.last_seq, &seg_root, &last_hash);
        if merkle::root_from_path(&leaf, s.ordinal, checkpoint.segments, &path) != Some(root) {
            return Err(at("its path does not lead to the checkpoint's root"));
        }
        let size = s.last_seq - s.first_seq + 1;
        for p in &s.entries {
            let fail_entry = |why: &str| fail(format!("audit entry {}: {why}", p.seq));
            let Some(entry_hash) = by_seq.get(&p.seq).copied() else {
                return Err(fail_entry("proven but not in the bundle"));
            };
            if p.seq < s.first_seq || p.seq > s.last_seq {
                return Err(fail_entry("not in the segment its proof names"));
            }
            let (Some(hash), Some(path)) = (merkle::from_hex(entry_hash), hashes(&p.path)) else {
                return Err(fail_entry("a hash is not 64 hex digits"));
            };
            let leaf = merkle::entry_leaf(&hash);
            if merkle::root_from_path(&leaf, p.seq - s.first_seq, size, &path) != Some(seg_root) {
                return Err(fail_entry(
                    "its path does not lead to its segment's root: not the entry the cluster \
                     sealed there",
                ));
            }
            if p.seq == s.last_seq && entry_hash != s.last_hash {
                return Err(fail_entry("its hash is not the segment's last"));
            }
            proven.insert(p.seq);
        }
    }
    let mut after = 0;
    for (seq, _) in entries {
        if *seq > checkpoint.last_seq {
            after += 1;
        } else if !proven.contains(seq) {
            return Err(fail(format!(
                "audit entry {seq} is before the checkpoint's end (entry {}) but has no proof",
                checkpoint.last_seq
            )));
        }
    }
    Ok(AnchorReport {
        anchored: proven.len(),
        after,
        checkpoint,
    })
}
