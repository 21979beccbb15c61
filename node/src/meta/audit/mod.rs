//! The audit log: an append-only, hash-chained record of every access and
//! change. Its head, its unsealed tail and the index of its sealed
//! segments live in the replicated state; sealed segments are objects of
//! the reserved bucket [`AUDIT_BUCKET`] (see [`sealed`]).
//!
//! Entries are proposed in batches ([`AuditRecord`]s without sequence or
//! hashes); the state machine numbers them and chains them, so every
//! replica computes the same chain: `hash = SHA-256(prev_hash ‖ canonical
//! entry)`, where the canonical entry is the JSON of the entry's fields in
//! a fixed order, without `hash`. Changing any stored entry breaks the
//! chain at that entry; [`verify_chain`] finds the first break.

pub mod anchor;
mod sealed;

pub use anchor::StoredCheckpoint;

pub use sealed::{
    decode_segment, encode_segment, is_reserved_bucket, segment_key, Field, SealedSegment, Summary,
    AUDIT_BUCKET, MAX_SEGMENT_BYTES,
};

use serde::{Deserialize, Serialize};

/// What a node submits for one audited event.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix milliseconds, when the node saw the event.
    pub time_ms: u64,
    /// The node that served the call.
    pub node: u64,
    /// Who made the call (until authentication exists: the peer address).
    pub principal: String,
    /// `put`, `get`, `stat`, `list`, `delete`, or an admin action.
    pub action: String,
    /// Bucket, when the call names one.
    pub bucket: String,
    /// Key or prefix, when the call names one.
    pub key: String,
    /// SHA-256 of the object concerned, when known.
    pub object_sha256: String,
    /// `ok` or the gRPC code of the refusal, lowercased.
    pub outcome: String,
}

/// One entry of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// The event.
    pub record: AuditRecord,
    /// Hash of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256(prev_hash ‖ canonical entry), lowercase hex.
    pub hash: String,
}

/// The hash before the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl AuditEntry {
    /// The entry in the form custody bundles carry it (and check its hash
    /// in: one definition of the chain's hash for the cluster and for
    /// offline verifiers).
    pub fn custody(&self) -> tresor_client::custody::CustodyEntry {
        let r = &self.record;
        tresor_client::custody::CustodyEntry {
            seq: self.seq,
            time_ms: r.time_ms,
            node: r.node,
            principal: r.principal.clone(),
            action: r.action.clone(),
            bucket: r.bucket.clone(),
            key: r.key.clone(),
            object_sha256: r.object_sha256.clone(),
            outcome: r.outcome.clone(),
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
        }
    }

    /// The hash its fields and `prev_hash` give:
    /// SHA-256(prev_hash ‖ the JSON of its fields in a fixed order).
    pub fn computed_hash(&self) -> String {
        self.custody().computed_hash()
    }
}

/// Chains `record` after an entry with `prev_hash` at position `seq`.
pub fn chain(seq: u64, record: AuditRecord, prev_hash: &str) -> AuditEntry {
    let mut entry = AuditEntry {
        seq,
        record,
        prev_hash: prev_hash.to_string(),
        hash: String::new(),
    };
    entry.hash = entry.computed_hash();
    entry
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The first entry that does not verify.
    pub seq: u64,
    /// Why.
    pub reason: String,
}

/// Checks entries one after the other: each must follow the previous one's
/// hash, have the next sequence number, and hash to what it says. Holds
/// only the last hash, so a log of any length is checked in bounded memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainWalker {
    next_seq: u64,
    prev: String,
}

impl Default for ChainWalker {
    fn default() -> Self {
        Self {
            next_seq: 1,
            prev: GENESIS_HASH.to_string(),
        }
    }
}

impl ChainWalker {
    /// Takes the next entry, or says where the chain breaks.
    pub fn push(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        if entry.seq != self.next_seq {
            return Err(ChainBreak {
                seq: self.next_seq,
                reason: format!("entry {} is missing (found {})", self.next_seq, entry.seq),
            });
        }
        if entry.prev_hash != self.prev {
            return Err(ChainBreak {
                seq: entry.seq,
                reason: "prev_hash does not match the previous entry".into(),
            });
        }
        let recomputed = chain(entry.seq, entry.record.clone(), &entry.prev_hash);
        if recomputed.hash != entry.hash {
            return Err(ChainBreak {
                seq: entry.seq,
                reason: "contents do not match the entry's hash".into(),
            });
        }
        self.prev = entry.hash.clone();
        self.next_seq += 1;
        Ok(())
    }

    /// Entries checked so far.
    pub fn count(&self) -> u64 {
        self.next_seq - 1
    }

    /// The sequence number the next entry must have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The hash of the last entry checked (the genesis hash before any).
    pub fn head_hash(&self) -> &str {
        &self.prev
    }
}

/// Walks entries in order from the first; returns the count and head hash,
/// or the first break.
pub fn verify_chain<I: IntoIterator<Item = AuditEntry>>(
    entries: I,
) -> Result<(u64, String), ChainBreak> {
    let mut walker = ChainWalker::default();
    for entry in entries {
        walker.push(&entry)?;
    }
    Ok((walker.count(), walker.prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> AuditRecord {
        AuditRecord {
            time_ms: i,
            node: 1,
            principal: "127.0.0.1:5000".into(),
            action: "get".into(),
            bucket: "footage".into(),
            key: format!("k{i}"),
            object_sha256: String::new(),
            outcome: "ok".into(),
        }
    }

    fn log(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|i| {
                let e = chain(i, record(i), &prev);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies_with_its_head() {
        let entries = log(5);
        let head = entries[4].hash.clone();
        assert_eq!(verify_chain(entries), Ok((5, head)));
        assert_eq!(verify_chain(Vec::new()), Ok((0, GENESIS_HASH.to_string())));
    }

    #[test]
    fn any_change_names_the_entry() {
        let mut changed = log(5);
        changed[2].record.outcome = "permission_denied".into();
        assert_eq!(verify_chain(changed).map_err(|b| b.seq), Err(3));

        // Rewriting the entry's own hash moves the break to the next one.
        let mut rehashed = log(5);
        rehashed[2].record.key = "other".into();
        rehashed[2] = chain(
            3,
            rehashed[2].record.clone(),
            &rehashed[2].prev_hash.clone(),
        );
        assert_eq!(verify_chain(rehashed).map_err(|b| b.seq), Err(4));

        let mut dropped = log(5);
        dropped.remove(1);
        assert_eq!(verify_chain(dropped).map_err(|b| b.seq), Err(2));
    }
}
