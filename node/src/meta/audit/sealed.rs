//! Sealed segments: runs of the audit chain moved out of the replicated
//! state into ordinary objects of the reserved bucket [`AUDIT_BUCKET`]
//! (erasure-coded, encrypted at rest, scrubbed and healed like footage).
//!
//! The replicated state keeps, per segment, a [`SealedSegment`]: its range
//! of sequence numbers, the hashes where it starts and ends, the object's
//! SHA-256 and a small [`Summary`] (time range and a Bloom filter over the
//! buckets, keys and principals it names) that lets a filtered `audit log`
//! skip segments without reading them. Per entry that costs about a byte of
//! state instead of the entry itself.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AuditEntry;
use crate::meta::codec::{self, CodecError};

/// The bucket the sealed segments are stored in. Clients may read it with
/// the audit role; only the cluster writes it, and nothing deletes from it.
pub const AUDIT_BUCKET: &str = "tresor.audit";

/// Bucket names the cluster keeps for itself.
const RESERVED_PREFIX: &str = "tresor.";

/// Largest sealed segment object a reader accepts: far above what the
/// largest `seal_entries` produces, so a reader's memory stays bounded even
/// if the bucket held something else.
pub const MAX_SEGMENT_BYTES: u64 = 256 * 1024 * 1024;

/// Whether `bucket` is reserved for the cluster (`tresor.*`).
pub fn is_reserved_bucket(bucket: &str) -> bool {
    bucket.starts_with(RESERVED_PREFIX)
}

/// The object key of the segment holding entries `first..=last`: zero
/// padded, so keys list in log order.
pub fn segment_key(first: u64, last: u64) -> String {
    format!("segment/{first:020}-{last:020}")
}

/// The bytes of a sealed segment object: the entries, in the store's own
/// encoding (format byte, then postcard).
pub fn encode_segment(entries: &[AuditEntry]) -> Vec<u8> {
    codec::encode(&entries)
}

/// The entries of a sealed segment object.
pub fn decode_segment(bytes: &[u8]) -> Result<Vec<AuditEntry>, CodecError> {
    codec::decode(bytes)
}

/// What the replicated state keeps of a sealed segment.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSegment {
    /// First entry in the segment.
    pub first_seq: u64,
    /// Last entry in the segment.
    pub last_seq: u64,
    /// Hash of the entry before the first (the genesis hash for entry 1).
    pub prev_hash: String,
    /// Hash of the last entry: where the chain goes on.
    pub last_hash: String,
    /// The object's key in [`AUDIT_BUCKET`].
    pub key: String,
    /// SHA-256 of the object's bytes, lowercase hex (as its manifest says).
    pub sha256: String,
    /// What a filtered read needs to skip the segment.
    pub summary: Summary,
    /// Its place among the sealed segments, from 0: its leaf in the
    /// history tree that checkpoints sign.
    pub ordinal: u64,
    /// Root of the Merkle tree over its entries' chain hashes (hex; see
    /// [`super::anchor`]).
    pub root: String,
}

/// What a sealed segment is about: its time range, and a Bloom filter over
/// the buckets, keys and principals its entries name (no false negatives;
/// about 2 % false positives at the size chosen).
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Earliest `time_ms` of an entry.
    pub min_time_ms: u64,
    /// Latest `time_ms` of an entry.
    pub max_time_ms: u64,
    /// Bits probed per value.
    pub probes: u8,
    /// The filter's bits.
    pub bits: Vec<u8>,
}

/// A field a filtered read can ask about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The bucket named.
    Bucket,
    /// The key or prefix named.
    Key,
    /// Who made the call.
    Principal,
}

impl Field {
    fn tag(self) -> u8 {
        match self {
            Field::Bucket => b'b',
            Field::Key => b'k',
            Field::Principal => b'p',
        }
    }
}

/// Filter bits per distinct value: with six probes, about 2 % false
/// positives.
const BITS_PER_VALUE: usize = 10;
const PROBES: u8 = 6;
const MIN_BITS: usize = 1024;

/// Two independent 64-bit hashes of `(field, value)`, from SHA-256 so that
/// every version and every node computes the same filter forever.
fn hashes(field: Field, value: &str) -> (u64, u64) {
    let mut h = Sha256::new();
    h.update([field.tag()]);
    h.update(value.as_bytes());
    let d = h.finalize();
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&d[..8]);
    b.copy_from_slice(&d[8..16]);
    // An odd step visits distinct bits for any power-of-two-free size.
    (u64::from_le_bytes(a), u64::from_le_bytes(b) | 1)
}

impl Summary {
    /// The summary of `entries`.
    pub fn of(entries: &[AuditEntry]) -> Self {
        let mut values = std::collections::BTreeSet::new();
        for e in entries {
            values.insert(hashes(Field::Bucket, &e.record.bucket));
            values.insert(hashes(Field::Key, &e.record.key));
            values.insert(hashes(Field::Principal, &e.record.principal));
        }
        let bits = (values.len() * BITS_PER_VALUE).max(MIN_BITS).div_ceil(8) * 8;
        let mut summary = Summary {
            min_time_ms: entries.iter().map(|e| e.record.time_ms).min().unwrap_or(0),
            max_time_ms: entries.iter().map(|e| e.record.time_ms).max().unwrap_or(0),
            probes: PROBES,
            bits: vec![0; bits / 8],
        };
        for (a, b) in values {
            let bits: Vec<usize> = summary.probe(a, b).collect();
            for bit in bits {
                summary.bits[bit / 8] |= 1 << (bit % 8);
            }
        }
        summary
    }

    fn probe(&self, a: u64, b: u64) -> impl Iterator<Item = usize> + '_ {
        let m = (self.bits.len() * 8) as u64;
        (0..self.probes as u64)
            .map(move |i| (a.wrapping_add(i.wrapping_mul(b)) % m.max(1)) as usize)
    }

    /// Whether an entry naming `value` in `field` may be in the segment
    /// (`false` is certain).
    pub fn may_contain(&self, field: Field, value: &str) -> bool {
        if self.bits.is_empty() {
            return true;
        }
        let (a, b) = hashes(field, value);
        self.probe(a, b)
            .all(|bit| self.bits[bit / 8] & (1 << (bit % 8)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::audit::{chain, AuditRecord, GENESIS_HASH};

    fn entries(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|i| {
                let record = AuditRecord {
                    time_ms: 1_000 + i,
                    node: 1,
                    principal: format!("officer-{}", i % 7),
                    action: "get".into(),
                    bucket: "bodycam-raw".into(),
                    key: format!("cam-{i:05}.mp4"),
                    object_sha256: String::new(),
                    outcome: "ok".into(),
                };
                let e = chain(i, record, &prev);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn summary_never_misses_and_rarely_lies() {
        let log = entries(5_000);
        let s = Summary::of(&log);
        assert_eq!((s.min_time_ms, s.max_time_ms), (1_001, 6_000));
        for e in &log {
            assert!(s.may_contain(Field::Key, &e.record.key));
            assert!(s.may_contain(Field::Principal, &e.record.principal));
            assert!(s.may_contain(Field::Bucket, &e.record.bucket));
        }
        let false_positives = (0..10_000)
            .filter(|i| s.may_contain(Field::Key, &format!("absent-{i}")))
            .count();
        assert!(false_positives < 500, "{false_positives} of 10,000");
        // A key is not a principal: the fields are kept apart.
        assert!(!(0..100).all(|i| s.may_contain(Field::Principal, &format!("cam-{i:05}.mp4"))));
        // About a byte and a quarter per distinct value.
        assert!(
            s.bits.len() <= 5_010 * BITS_PER_VALUE / 8 + 8,
            "{}",
            s.bits.len()
        );
    }

    #[test]
    fn segment_bytes_round_trip_and_keys_sort_in_log_order() {
        let log = entries(50);
        let bytes = encode_segment(&log);
        assert_eq!(decode_segment(&bytes).expect("decodes"), log);
        assert!(decode_segment(&bytes[..bytes.len() - 1]).is_err());
        assert!(segment_key(9, 10) < segment_key(10, 11));
        assert!(is_reserved_bucket(AUDIT_BUCKET));
        assert!(!is_reserved_bucket("tresor-footage"));
    }
}
