//! The replicated records of encryption at rest: what a manifest keeps of
//! an object's key and chunking. The keys themselves, and sealing and
//! opening, live in `crypto`, which uses these records.

use serde::{Deserialize, Serialize};

/// Bytes the authentication tag adds to each chunk.
pub const TAG_BYTES: u64 = 16;

/// A data key wrapped by a master key, as kept in a manifest.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// Id of the master key that wrapped it.
    pub key_id: String,
    /// Hex nonce of the wrapping.
    pub nonce: String,
    /// Hex ciphertext and tag of the data key.
    pub sealed: String,
}

/// How an object is encrypted, as kept in its manifest.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEncryption {
    /// Object bytes per sealed chunk.
    pub chunk_bytes: u32,
    /// The object's data key, wrapped.
    pub key: WrappedKey,
}

impl ObjectEncryption {
    /// Stored bytes for `plain` object bytes.
    pub fn stored_len(&self, plain: u64) -> u64 {
        // A manifest never holds 0; should one, reads fail authentication
        // instead of dividing by zero.
        plain.saturating_add(
            TAG_BYTES.saturating_mul(plain.div_ceil(self.chunk_bytes.max(1) as u64)),
        )
    }

    /// Stored bytes of one sealed chunk.
    pub fn sealed_chunk_len(&self) -> u64 {
        self.chunk_bytes as u64 + TAG_BYTES
    }
}
