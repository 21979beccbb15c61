//! Anchoring audit entries to signed checkpoints.
//!
//! The chain (`hash = SHA-256(prev_hash ‖ entry)`) proves order and
//! integrity, but tying one entry to a published head that way needs every
//! entry in between. So each sealed segment also records the Merkle root
//! of its entries' chain hashes, and the replicated state keeps the
//! perfect subtrees of a second tree over the sealed segments (two hashes
//! per segment, under `audit_mmr/`). A checkpoint is the history root over
//! the first `segments` segments, signed by the cluster's signer; a custody
//! bundle carries, per entry, a path to its segment's root and, per
//! segment, a path to the checkpoint's root (both RFC 9162 inclusion
//! proofs, see [`tresor_client::merkle`]).

use serde::{Deserialize, Serialize};
use tresor_client::merkle::{self, Hash, Tree};

use super::{AuditEntry, SealedSegment};

/// A hash field that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {what} is not a SHA-256 in hex")]
pub struct BadHash {
    /// The entry (or segment's last entry).
    pub seq: u64,
    /// Which field.
    pub what: &'static str,
}

/// The Merkle tree over `entries`' chain hashes (a segment's entries, in
/// order).
pub fn segment_tree(entries: &[AuditEntry]) -> Result<Tree, BadHash> {
    let leaves = entries
        .iter()
        .map(|e| {
            merkle::from_hex(&e.hash)
                .map(|h| merkle::entry_leaf(&h))
                .ok_or(BadHash {
                    seq: e.seq,
                    what: "its hash",
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Tree::new(leaves))
}

/// The root of [`segment_tree`], hex; `None` for no entries.
pub fn segment_root(entries: &[AuditEntry]) -> Result<Option<String>, BadHash> {
    Ok(segment_tree(entries)?.root().map(|r| merkle::to_hex(&r)))
}

/// The segment's leaf in the history tree.
pub fn history_leaf(segment: &SealedSegment) -> Result<Hash, BadHash> {
    let bad = |what| BadHash {
        seq: segment.last_seq,
        what,
    };
    let root = merkle::from_hex(&segment.root).ok_or(bad("the segment's root"))?;
    let last = merkle::from_hex(&segment.last_hash).ok_or(bad("the segment's last hash"))?;
    Ok(merkle::segment_leaf(
        segment.first_seq,
        segment.last_seq,
        &root,
        &last,
    ))
}

/// A signed checkpoint as the state keeps it.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCheckpoint {
    /// Sealed segments it covers.
    pub segments: u64,
    /// Its last audit entry.
    pub last_seq: u64,
    /// The history root, hex.
    pub root: String,
    /// When it was signed, Unix milliseconds.
    pub made_ms: u64,
    /// The JSON text of its `SignedCheckpoint`.
    pub signed: String,
}
