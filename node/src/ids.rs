//! The names shared by the metadata and the shard files: an object's id, a
//! shard file's id and a file's digest. Raw bytes in memory and on the
//! wire; hex only at the edges (file names, JSON values, logs).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Random 16-byte object id; shard files are named after it, never after keys.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub [u8; 16]);

impl ObjectId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// From 16 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(bytes).ok().map(Self)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Hex in human-readable formats (JSON), raw bytes in binary ones.
impl Serialize for ObjectId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for ObjectId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return <[u8; 16]>::deserialize(d).map(Self);
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(String::deserialize(d)?, &mut bytes)
            .map_err(|_| serde::de::Error::custom("object id must be 32 hex digits"))?;
        Ok(Self(bytes))
    }
}

/// Names one shard file: shard `index` of segment `segment` of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId {
    /// The object.
    pub object_id: ObjectId,
    /// The segment of the object, from 0.
    pub segment: u32,
    /// The shard's index in the stripes' `k + m` shards: data shards first.
    pub index: u32,
}

impl ShardId {
    /// Object id, segment and index in 24 bytes (numbers big-endian), so
    /// that as keys the shards of an object sort together and in order.
    pub fn to_key_bytes(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..16].copy_from_slice(&self.object_id.0);
        b[16..20].copy_from_slice(&self.segment.to_be_bytes());
        b[20..].copy_from_slice(&self.index.to_be_bytes());
        b
    }

    /// From [`Self::to_key_bytes`]; `None` unless exactly 24 bytes.
    pub fn from_key_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 24 {
            return None;
        }
        Some(ShardId {
            object_id: ObjectId::from_slice(&b[..16])?,
            segment: u32::from_be_bytes(b[16..20].try_into().ok()?),
            index: u32::from_be_bytes(b[20..].try_into().ok()?),
        })
    }
}

/// Shown as the file name: `<object id in hex>.<segment>.<index>`.
impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.object_id, self.segment, self.index)
    }
}

/// The SHA-256 digest of a whole shard file, as the manifest records it
/// (the `shards` module defines what is hashed).
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// From 32 bytes (as they come off the wire).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Hex in human-readable formats (JSON), raw bytes in binary ones.
impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return <[u8; 32]>::deserialize(d).map(Self);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(String::deserialize(d)?, &mut bytes)
            .map_err(|_| serde::de::Error::custom("digest must be 64 hex digits"))?;
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_in_json_and_refuse_other_lengths() {
        let d = Digest([0xab; 32]);
        let json = serde_json::to_string(&d).expect("encodes");
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<Digest>(&json).expect("decodes"), d);
        assert!(serde_json::from_str::<Digest>("\"abab\"").is_err());
        let o = ObjectId([7; 16]);
        let json = serde_json::to_string(&o).expect("encodes");
        assert_eq!(serde_json::from_str::<ObjectId>(&json).expect("decodes"), o);
        assert!(serde_json::from_str::<ObjectId>(&format!("\"{}\"", "07".repeat(17))).is_err());
        assert_eq!(Digest::from_slice(&[1; 31]), None);
        assert_eq!(
            ShardId {
                object_id: o,
                segment: 3,
                index: 5
            }
            .to_string(),
            format!("{}.3.5", "07".repeat(16))
        );
    }
}
