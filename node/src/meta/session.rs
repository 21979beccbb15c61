//! Resumable upload sessions, as the replicated state keeps them: what the
//! object will be, which writer may add parts, the parts made durable so
//! far (each one segment of the object) and the SHA-256 of their bytes,
//! stopped after the last durable part so that any node can go on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;

use super::{ObjectEncryption, SegmentManifest};

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_INIT: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A SHA-256 that can be stored and resumed on another node: the state
/// after every whole 64-byte block, and the bytes of the block begun. The
/// compression is `sha2`'s; only the message padding is done here.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashState {
    state: [u32; 8],
    /// Bytes hashed, the tail included.
    bytes: u64,
    /// The bytes of the block begun (fewer than 64).
    tail: Vec<u8>,
}

impl Default for HashState {
    fn default() -> Self {
        Self {
            state: SHA256_INIT,
            bytes: 0,
            tail: Vec::new(),
        }
    }
}

impl HashState {
    /// Bytes hashed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Hashes `data` after what was hashed before.
    pub fn update(&mut self, mut data: &[u8]) {
        self.bytes += data.len() as u64;
        // A state read from the network or disk with a bad tail is made
        // harmless rather than trusted: the digest is then wrong, and the
        // object's check against it fails.
        self.tail.truncate(63);
        if !self.tail.is_empty() {
            let take = (64 - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < 64 {
                return;
            }
            let block = std::mem::take(&mut self.tail);
            self.compress(&block);
        }
        let whole = data.len() / 64 * 64;
        self.compress(&data[..whole]);
        self.tail.extend_from_slice(&data[whole..]);
    }

    /// Runs the compression over `blocks`, a whole number of 64-byte blocks.
    fn compress(&mut self, blocks: &[u8]) {
        for block in blocks.chunks_exact(64) {
            let block: &GenericArray<u8, U64> = GenericArray::from_slice(block);
            sha2::compress256(&mut self.state, std::slice::from_ref(block));
        }
    }

    /// The digest of everything hashed (the state is left as it is).
    pub fn finish(&self) -> [u8; 32] {
        let mut state = self.clone();
        let bits = self.bytes.wrapping_mul(8);
        let mut pad = vec![0x80u8];
        let used = (self.tail.len().min(63) + 1) % 64;
        pad.resize(1 + (120 - used) % 64, 0);
        pad.extend_from_slice(&bits.to_be_bytes());
        state.update(&pad);
        let mut out = [0u8; 32];
        for (word, bytes) in state.state.iter().zip(out.chunks_exact_mut(4)) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// What a resumable upload will commit, and how far it has come.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSession {
    /// The principal that created it: the only one that may add to,
    /// complete or abort it.
    pub principal: String,
    /// As given at creation.
    pub content_type: String,
    /// As given at creation.
    pub metadata: BTreeMap<String, String>,
    /// Lowercase hex SHA-256 the object must have, if given at creation.
    pub expected_sha256: Option<String>,
    /// Object bytes per part: one part is one segment of the object.
    pub part_bytes: u64,
    /// Data shards per stripe (the bucket's scheme at creation).
    pub data: u32,
    /// Parity shards per stripe.
    pub parity: u32,
    /// Bytes of one shard block.
    pub block_size: u32,
    /// Stripes per part.
    pub segment_stripes: u32,
    /// The data key, wrapped by the master key until the commit wraps it
    /// by the epoch of the object's retention class.
    pub encryption: Option<ObjectEncryption>,
    /// The parts made durable, in order.
    pub parts: Vec<SegmentManifest>,
    /// SHA-256 of the durable parts' object bytes; its byte count is the
    /// durable offset.
    pub hash: HashState,
    /// A part shorter than `part_bytes` was stored: the object ends there.
    pub finished: bool,
    /// The writer that may record the next part (a random id each
    /// `UploadParts` call claims), so a writer cut off but still running
    /// cannot record a part after another has taken over.
    pub writer: u64,
}

impl UploadSession {
    /// Object bytes durably stored.
    pub fn durable_bytes(&self) -> u64 {
        self.hash.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn a_resumed_hash_equals_sha256_of_the_whole() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for cut in [0, 1, 55, 56, 63, 64, 65, 119, 128, 4096, 4999, 5000] {
            for len in [0, 1, 55, 56, 64, 100, 5000] {
                let whole = &data[..len.max(cut).min(data.len())];
                let cut = cut.min(whole.len());
                let mut first = HashState::default();
                first.update(&whole[..cut]);
                // As stored and read back on another node.
                let text = serde_json::to_vec(&first).expect("encode");
                let mut resumed: HashState = serde_json::from_slice(&text).expect("decode");
                for piece in whole[cut..].chunks(37) {
                    resumed.update(piece);
                }
                assert_eq!(resumed.bytes(), whole.len() as u64);
                assert_eq!(
                    resumed.finish(),
                    <[u8; 32]>::from(Sha256::digest(whole)),
                    "{} bytes cut at {cut}",
                    whole.len()
                );
            }
        }
    }
}
