//! The shard file format: what a shard file (or a packed image) holds.
//!
//! All integers little-endian:
//!
//! ```text
//! header, 64 bytes:  "TRSHARD1" | version u32 = 1 | object id [u8; 16]
//!                    | segment u32 | shard index u32 | block_size u32 | zeros
//! blocks:            block i at 64 + i * block_size; all block_size bytes
//!                    long except the last, which may be shorter (never empty)
//! trailer:           SHA-256 of each block, 32 bytes each, in order
//! footer, 16 bytes:  block_count u32 | last_block_len u32 | "TRSHEND1"
//! ```
//!
//! The file digest is SHA-256(header ‖ block hashes ‖ footer). The manifest
//! records it, so any change on disk, even one that rewrites a block's hash
//! too, is caught when the file is opened against the manifest's digest;
//! the block hashes then catch damage to a block when it is read.

use super::{ObjectId, ShardId};

/// The SHA-256 hash of one block.
pub(super) type BlockHash = [u8; 32];

pub(super) const MAGIC: &[u8; 8] = b"TRSHARD1";
pub(super) const END_MAGIC: &[u8; 8] = b"TRSHEND1";
pub(super) const VERSION: u32 = 1;
pub(super) const HEADER_LEN: usize = 64;
pub(super) const FOOTER_LEN: usize = 16;
pub(super) const HASH_LEN: usize = 32;

/// The first 64 bytes of a shard file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) id: ShardId,
    pub(super) block_size: u32,
}

impl Header {
    pub(super) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..28].copy_from_slice(&self.id.object_id.0);
        b[28..32].copy_from_slice(&self.id.segment.to_le_bytes());
        b[32..36].copy_from_slice(&self.id.index.to_le_bytes());
        b[36..40].copy_from_slice(&self.block_size.to_le_bytes());
        b
    }

    /// The header, or why these bytes are not one.
    pub(super) fn parse(b: &[u8; HEADER_LEN]) -> Result<Header, String> {
        if &b[0..8] != MAGIC {
            return Err("bad header magic: not a shard file".into());
        }
        let version = le_u32(&b[8..12]);
        if version != VERSION {
            return Err(format!("unknown format version {version}"));
        }
        if b[40..].iter().any(|&x| x != 0) {
            return Err("header padding is not zero".into());
        }
        let mut object_id = [0u8; 16];
        object_id.copy_from_slice(&b[12..28]);
        let header = Header {
            id: ShardId {
                object_id: ObjectId(object_id),
                segment: le_u32(&b[28..32]),
                index: le_u32(&b[32..36]),
            },
            block_size: le_u32(&b[36..40]),
        };
        if header.block_size == 0 {
            return Err("block size 0".into());
        }
        Ok(header)
    }
}

/// The last 16 bytes of a shard file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Footer {
    pub(super) block_count: u32,
    pub(super) last_block_len: u32,
}

impl Footer {
    pub(super) fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        b[0..4].copy_from_slice(&self.block_count.to_le_bytes());
        b[4..8].copy_from_slice(&self.last_block_len.to_le_bytes());
        b[8..16].copy_from_slice(END_MAGIC);
        b
    }

    pub(super) fn parse(b: &[u8; FOOTER_LEN]) -> Result<Footer, String> {
        if &b[8..16] != END_MAGIC {
            return Err("bad footer magic: file truncated or overwritten".into());
        }
        Ok(Footer {
            block_count: le_u32(&b[0..4]),
            last_block_len: le_u32(&b[4..8]),
        })
    }

    /// Bytes of block data, if the footer is consistent with `block_size`
    /// (a last block of 1..=block_size bytes, none when there are no
    /// blocks).
    pub(super) fn data_len(&self, block_size: u32) -> Result<u64, String> {
        let (count, last) = (u64::from(self.block_count), u64::from(self.last_block_len));
        if count == 0 {
            return match last {
                0 => Ok(0),
                _ => Err(format!("no blocks but a last block of {last} bytes")),
            };
        }
        if last == 0 || last > u64::from(block_size) {
            return Err(format!(
                "last block of {last} bytes with a block size of {block_size}"
            ));
        }
        // At most (2^32 - 2) * (2^32 - 1) + 2^32: fits in a u64.
        Ok((count - 1) * u64::from(block_size) + last)
    }
}

pub(super) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}
