//! Object manifests: what the cluster knows about each stored object.
//!
//! An object's bytes are cut into stripes of `data × block_size` bytes;
//! stripes are grouped into segments of `segment_stripes` stripes (the last
//! may be shorter); each segment has one placement of `data + parity` shard
//! files, recorded with the digest of each file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::ids::{Digest, ObjectId};

/// Where one shard file of a segment is, and its digest.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardLocation {
    /// The node holding it; `None` when the shard was never written or is
    /// lost (the segment is degraded).
    pub node: Option<u64>,
    /// The file's digest (see `shards`).
    pub digest: Option<Digest>,
    /// A block of this file failed its check (or the file could not be
    /// read) on a read or a scrub. The file stays in place — its other
    /// blocks still serve reads, tried after healthy shards — and repair
    /// rebuilds it, so a bad block costs one block, not the whole file.
    #[serde(default)]
    pub damaged: bool,
}

impl ShardLocation {
    /// No shard file: never written, or lost.
    pub fn missing() -> Self {
        Self {
            node: None,
            digest: None,
            damaged: false,
        }
    }

    /// A healthy shard file on `node` with `digest`.
    pub fn at(node: u64, digest: Digest) -> Self {
        Self {
            node: Some(node),
            digest: Some(digest),
            damaged: false,
        }
    }

    /// Whether this shard counts towards the segment's redundancy: present
    /// and not known to be damaged.
    pub fn is_sound(&self) -> bool {
        self.node.is_some() && !self.damaged
    }
}

/// One segment: a run of stripes with one placement.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentManifest {
    /// Object bytes in this segment.
    pub bytes: u64,
    /// `data + parity` entries, by shard index.
    pub shards: Vec<ShardLocation>,
}

impl SegmentManifest {
    /// Shard files this segment lacks or holds damaged.
    pub fn missing(&self) -> usize {
        self.shards.iter().filter(|s| !s.is_sound()).count()
    }
}

/// Everything the cluster records about one object.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectManifest {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Random id naming its shard files.
    pub object_id: ObjectId,
    /// Bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the whole object.
    pub sha256: String,
    /// As given at upload.
    pub content_type: String,
    /// User metadata given at upload.
    pub metadata: BTreeMap<String, String>,
    /// Data shards per stripe.
    pub data: u32,
    /// Parity shards per stripe.
    pub parity: u32,
    /// Bytes of one shard of a full stripe.
    pub block_size: u32,
    /// Stripes in every segment but the last.
    pub segment_stripes: u32,
    /// Unix milliseconds (chosen by the coordinator).
    pub created_ms: u64,
    /// Segments in order.
    pub segments: Vec<SegmentManifest>,
    /// How the stored bytes are encrypted; `None` for objects written by
    /// an insecure cluster without a master key file.
    #[serde(default)]
    pub encryption: Option<super::ObjectEncryption>,
    /// How long it is kept: set when the object is committed, from its
    /// bucket's policy (what a proposer puts here is replaced), and only
    /// lengthened afterwards.
    pub retention: Option<super::ObjectRetention>,
    /// The principal that ingested it: set when the object is committed,
    /// from the commit's audit record (what a proposer puts here is
    /// replaced).
    pub ingested_by: String,
    /// The entity tag S3 clients were given: the lowercase hex MD5 of the
    /// bytes for an object stored by an S3 PutObject; empty for objects
    /// stored through gRPC (S3 then shows the SHA-256, whose 64 digits no
    /// S3 tool mistakes for an MD5).
    pub etag: String,
}

/// Where one stripe lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StripeRef {
    /// Segment index.
    pub segment: u32,
    /// Stripe index within the segment (= block index in its shard files).
    pub stripe: u32,
    /// Object offset of the stripe's first byte.
    pub offset: u64,
    /// Object bytes in the stripe.
    pub bytes: u64,
}

impl ObjectManifest {
    /// Object bytes in a full stripe.
    pub fn stripe_bytes(&self) -> u64 {
        self.data as u64 * self.block_size as u64
    }

    /// Object bytes in a full segment.
    pub fn segment_bytes(&self) -> u64 {
        self.stripe_bytes()
            .saturating_mul(self.segment_stripes as u64)
    }

    /// Bytes stored in the shard files: the object's bytes, or with
    /// encryption its sealed chunks.
    pub fn stored_size(&self) -> u64 {
        match &self.encryption {
            Some(e) => e.stored_len(self.size),
            None => self.size,
        }
    }

    /// Total stripes.
    pub fn stripes(&self) -> u64 {
        self.stored_size().div_ceil(self.stripe_bytes().max(1))
    }

    /// Shard files missing over all segments.
    pub fn missing_shards(&self) -> usize {
        self.segments.iter().map(SegmentManifest::missing).sum()
    }

    /// The stripes that hold stored bytes `[start, end)`, in order, made
    /// one at a time as they are read (an object's stripes are never all
    /// in memory at once).
    pub fn stripes_for(
        &self,
        start: u64,
        end: u64,
    ) -> impl Iterator<Item = StripeRef> + Send + 'static {
        let stripe_bytes = self.stripe_bytes().max(1);
        let size = self.stored_size();
        let end = end.min(size);
        let per_segment = self.segment_stripes.max(1) as u64;
        let globals = if start >= end {
            0..0
        } else {
            start / stripe_bytes..end.div_ceil(stripe_bytes)
        };
        globals.map(move |global| {
            let offset = global * stripe_bytes;
            StripeRef {
                segment: (global / per_segment) as u32,
                stripe: (global % per_segment) as u32,
                offset,
                bytes: stripe_bytes.min(size - offset),
            }
        })
    }
}

/// Keys: valid UTF-8 (guaranteed by the type), 1–1024 bytes, no NUL.
pub fn validate_key(key: &str) -> Result<(), super::MetaError> {
    if key.is_empty() {
        return Err(super::MetaError::InvalidArgument(
            "object key must not be empty".into(),
        ));
    }
    if key.len() > 1024 {
        return Err(super::MetaError::InvalidArgument(format!(
            "object key is {} bytes; at most 1024 are allowed",
            key.len()
        )));
    }
    if key.contains('\0') {
        return Err(super::MetaError::InvalidArgument(
            "object key must not contain NUL".into(),
        ));
    }
    Ok(())
}

/// Most user metadata entries an object may carry.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// Most bytes of user metadata, keys and values together.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// Longest content type, in bytes.
pub const MAX_CONTENT_TYPE_BYTES: usize = 256;

/// Checks an object's content type and user metadata against the limits
/// above: they travel in its manifest, so in the Raft log, every node's
/// state and every snapshot.
pub fn validate_attributes(
    content_type: &str,
    metadata: &BTreeMap<String, String>,
) -> Result<(), super::MetaError> {
    let invalid = |m: String| Err(super::MetaError::InvalidArgument(m));
    if content_type.len() > MAX_CONTENT_TYPE_BYTES {
        return invalid(format!(
            "content type is {} bytes; at most {MAX_CONTENT_TYPE_BYTES} are allowed",
            content_type.len()
        ));
    }
    if metadata.len() > MAX_METADATA_ENTRIES {
        return invalid(format!(
            "metadata has {} entries; at most {MAX_METADATA_ENTRIES} are allowed",
            metadata.len()
        ));
    }
    let bytes: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_METADATA_BYTES {
        return invalid(format!(
            "metadata is {bytes} bytes (keys and values); at most {MAX_METADATA_BYTES} are allowed"
        ));
    }
    if metadata.keys().any(|k| k.is_empty()) {
        return invalid("metadata keys must not be empty".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_refused_past_their_limits_only() {
        let entries = |n: usize, value: usize| -> BTreeMap<String, String> {
            (0..n)
                .map(|i| (format!("k{i:02}"), "v".repeat(value)))
                .collect()
        };
        let at_limit = entries(64, 128 - 3);
        assert_eq!(
            at_limit
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>(),
            MAX_METADATA_BYTES
        );
        assert!(validate_attributes(&"t".repeat(256), &at_limit).is_ok());
        let refused = [
            ("type", "t".repeat(257), BTreeMap::new()),
            ("entries", String::new(), entries(65, 1)),
            ("bytes", String::new(), entries(64, 128 - 2)),
            (
                "empty key",
                String::new(),
                [(String::new(), "v".into())].into(),
            ),
        ];
        for (what, content_type, metadata) in refused {
            assert!(
                matches!(
                    validate_attributes(&content_type, &metadata),
                    Err(super::super::MetaError::InvalidArgument(_))
                ),
                "{what}"
            );
        }
    }

    fn manifest(size: u64, data: u32, block: u32, per_segment: u32) -> ObjectManifest {
        ObjectManifest {
            bucket: "b".into(),
            key: "k".into(),
            object_id: ObjectId([7; 16]),
            size,
            sha256: String::new(),
            content_type: String::new(),
            metadata: BTreeMap::new(),
            data,
            parity: 2,
            block_size: block,
            segment_stripes: per_segment,
            created_ms: 0,
            segments: Vec::new(),
            encryption: None,
            retention: None,
            ingested_by: String::new(),
            etag: String::new(),
        }
    }

    #[test]
    fn stripe_ranges() {
        // 4 x 10-byte blocks: 40-byte stripes, 3 stripes per segment.
        let m = manifest(250, 4, 10, 3);
        assert_eq!(m.stripes(), 7);
        let all: Vec<_> = m.stripes_for(0, u64::MAX).collect();
        assert_eq!(all.len(), 7);
        assert_eq!(
            all[6],
            StripeRef {
                segment: 2,
                stripe: 0,
                offset: 240,
                bytes: 10
            }
        );
        assert_eq!(
            all[3],
            StripeRef {
                segment: 1,
                stripe: 0,
                offset: 120,
                bytes: 40
            }
        );
        let some = m.stripes_for(39, 41);
        assert_eq!(some.map(|s| s.offset).collect::<Vec<_>>(), vec![0, 40]);
        assert_eq!(m.stripes_for(250, 300).count(), 0);
        assert_eq!(m.stripes_for(10, 10).count(), 0);
        assert_eq!(manifest(0, 4, 10, 3).stripes_for(0, 1).count(), 0);
    }

    #[test]
    fn keys() {
        assert!(validate_key("a").is_ok());
        assert!(
            validate_key("../../etc/passwd").is_ok(),
            "keys never become paths"
        );
        assert!(validate_key(&"x".repeat(1024)).is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key(&"x".repeat(1025)).is_err());
        assert!(validate_key("a\0b").is_err());
    }

    #[test]
    fn object_id_serialises_as_hex() {
        let id = ObjectId([0xab; 16]);
        let json = serde_json::to_string(&id).expect("json");
        assert_eq!(json, format!("\"{}\"", "ab".repeat(16)));
        assert_eq!(serde_json::from_str::<ObjectId>(&json).expect("back"), id);
        assert!(serde_json::from_str::<ObjectId>("\"abcd\"").is_err());
    }
}
