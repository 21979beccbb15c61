//! The encoding of everything the node stores — metadata values, Raft log
//! entries and the Raft bookkeeping — : a format byte, then the value in
//! postcard (compact, binary, field order fixed by the types). Object ids
//! and digests are raw bytes here (hex only in human-readable formats).
//! There are no deployments of earlier formats: a value in another format
//! is refused, not converted.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The format byte of values written by this version.
pub const FORMAT: u8 = 7;

/// A stored value that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value is empty or in another format.
    #[error("stored value in format {found:?}, expected {FORMAT}")]
    Format {
        /// The first byte, if any.
        found: Option<u8>,
    },
    /// The bytes do not decode as the expected type.
    #[error("stored value malformed: {0}")]
    Malformed(#[from] postcard::Error),
}

/// `value` as stored bytes.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our types have known lengths and no untagged or flattened parts, the
    // only things postcard refuses; writing to a Vec cannot run out of room.
    postcard::to_extend(value, vec![FORMAT]).expect("stored values serialise")
}

/// The value stored as `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => Ok(postcard::from_bytes(rest)?),
        other => Err(CodecError::Format {
            found: other.map(|(b, _)| *b),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{
        Digest, ObjectEncryption, ObjectId, ObjectManifest, SegmentManifest, ShardLocation,
        WrappedKey,
    };

    /// A 4+2 body-camera clip as the write path records it.
    fn clip() -> ObjectManifest {
        ObjectManifest {
            bucket: "bodycam-raw".into(),
            key: "station-0412/cam-00731/2026-12-01T08-15-02Z.mp4".into(),
            object_id: ObjectId([0x5a; 16]),
            size: 48_213_504,
            sha256: "ab".repeat(32),
            content_type: "video/mp4".into(),
            metadata: [("officer".to_string(), "7731".to_string())].into(),
            data: 4,
            parity: 2,
            block_size: 1 << 20,
            segment_stripes: 256,
            created_ms: 1_796_112_902_000,
            segments: vec![SegmentManifest {
                bytes: 48_213_504,
                shards: (1..=6)
                    .map(|n| ShardLocation::at(n, Digest([n as u8; 32])))
                    .collect(),
            }],
            encryption: Some(ObjectEncryption {
                chunk_bytes: 65_536,
                key: WrappedKey {
                    key_id: "k1".into(),
                    nonce: "00".repeat(12),
                    sealed: "11".repeat(48),
                },
            }),
            retention: None,
            ingested_by: String::new(),
            etag: String::new(),
        }
    }

    #[test]
    fn values_round_trip_and_other_formats_are_refused() {
        let m = clip();
        let bytes = encode(&m);
        assert_eq!(decode::<ObjectManifest>(&bytes).expect("decodes"), m);
        assert!(matches!(
            decode::<ObjectManifest>(&bytes[..bytes.len() - 3]),
            Err(CodecError::Malformed(_))
        ));
        let json = serde_json::to_vec(&m).expect("json");
        assert!(matches!(
            decode::<ObjectManifest>(&json),
            Err(CodecError::Format { found: Some(b'{') })
        ));
        assert!(matches!(
            decode::<ObjectManifest>(&[]),
            Err(CodecError::Format { found: None })
        ));
    }

    #[test]
    fn a_due_receipt_round_trips_with_and_without_its_key_epoch() {
        // Postcard has no field names: a field skipped when empty would
        // shift every later one (the holders were read from the wrong
        // bytes once).
        for epoch in [None, Some("e:0123456789abcdef".to_string())] {
            let due = crate::meta::ReceiptDue {
                body: tresor_client::receipt::ReceiptBody {
                    version: 1,
                    cluster_id: "c".into(),
                    bucket: "footage".into(),
                    key: "k".into(),
                    object_id: "00".repeat(16),
                    size: 1,
                    sha256: "ab".repeat(32),
                    ingested_ms: 1,
                    ingested_by: "ingest".into(),
                    deleted_ms: 2,
                    deleted_by: "admin".into(),
                    reason: "deleted by admin".into(),
                    audit_seq: 3,
                    shard_files_removed: 0,
                    holders_unreached: vec![],
                    data_key_removed: epoch.is_some(),
                    key_epoch: epoch.clone(),
                    key_destroyed_ms: None,
                    issued_ms: 0,
                },
                holders: vec![1, 2, 3],
            };
            let back: crate::meta::ReceiptDue = decode(&encode(&due)).expect("decodes");
            assert_eq!(back, due);
        }
    }

    #[test]
    fn a_manifest_is_less_than_half_its_json() {
        let m = clip();
        let (binary, json) = (
            encode(&m).len(),
            serde_json::to_vec(&m).expect("json").len(),
        );
        println!("manifest of a 4+2 clip: {binary} bytes stored, {json} as JSON");
        assert!(binary * 2 < json, "{binary} vs {json}");
    }
}
