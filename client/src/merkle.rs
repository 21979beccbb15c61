//! The Merkle trees that anchor audit entries to signed checkpoints: the
//! tree shape and hashes of RFC 9162 (Certificate Transparency v2), §2.1,
//! with SHA-256.
//!
//! Two levels: each sealed audit segment has a tree over its entries'
//! chain hashes ([`entry_leaf`]); the cluster's history is a tree over the
//! sealed segments ([`segment_leaf`]), whose root a checkpoint signs. An
//! entry is in a checkpoint's history if its leaf leads to its segment's
//! root by one inclusion path and the segment's leaf leads to the
//! checkpoint's root by another ([`root_from_path`]).
//!
//! A tree of `n` leaves is made of *perfect* subtrees: the one at height
//! `h` and index `i` covers leaves `i·2^h .. (i+1)·2^h`. Everything here
//! needs only those ([`Perfect`]), so the cluster can keep the history's
//! perfect subtrees in its state (two per segment) and answer any proof
//! with a few lookups, and a segment's tree is built once per read.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The hash of a leaf holding `data`: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The leaf of an audit entry in its segment's tree: the leaf hash of its
/// chain hash (32 bytes, raw).
pub fn entry_leaf(chain_hash: &Hash) -> Hash {
    leaf_hash(chain_hash)
}

/// The leaf of a sealed segment in the history tree: its range, its
/// tree's root and the chain hash of its last entry.
pub fn segment_leaf(first_seq: u64, last_seq: u64, root: &Hash, last_hash: &Hash) -> Hash {
    let mut data = Vec::with_capacity(80);
    data.extend_from_slice(&first_seq.to_be_bytes());
    data.extend_from_slice(&last_seq.to_be_bytes());
    data.extend_from_slice(root);
    data.extend_from_slice(last_hash);
    leaf_hash(&data)
}

/// Where the hashes of a tree's perfect subtrees come from.
pub trait Perfect {
    /// The error of a lookup.
    type Error;
    /// The hash of the perfect subtree at `height` and `index` (height 0:
    /// the leaves).
    fn perfect(&self, height: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// The largest power of two below `n` (`n` ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The root of the tree over leaves `start..end` (RFC 9162's MTH), from
/// perfect subtrees. `start` must be a multiple of the largest power of two
/// not above `end - start`, as every range of the recursion is.
fn subtree<P: Perfect>(p: &P, start: u64, end: u64) -> Result<Hash, P::Error> {
    let n = end - start;
    if n.is_power_of_two() {
        let height = n.trailing_zeros();
        return p.perfect(height, start >> height);
    }
    let k = split(n);
    let left = subtree(p, start, start + k)?;
    let right = subtree(p, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root of a tree of `size` leaves (`size` ≥ 1).
pub fn root<P: Perfect>(p: &P, size: u64) -> Result<Hash, P::Error> {
    subtree(p, 0, size.max(1))
}

/// The inclusion path of leaf `index` in a tree of `size` leaves (RFC
/// 9162's PATH), deepest sibling first.
pub fn path<P: Perfect>(p: &P, index: u64, size: u64) -> Result<Vec<Hash>, P::Error> {
    let mut out = Vec::new();
    let (mut start, mut end) = (0, size);
    // Walk down from the root, keeping the sibling at each split.
    let mut siblings = Vec::new();
    while end - start > 1 {
        let k = split(end - start);
        if index < start + k {
            siblings.push(subtree(p, start + k, end)?);
            end = start + k;
        } else {
            siblings.push(subtree(p, start, start + k)?);
            start += k;
        }
    }
    while let Some(s) = siblings.pop() {
        out.push(s);
    }
    Ok(out)
}

/// The root an inclusion `path` leads to from `leaf` at `index` in a tree
/// of `size` leaves (RFC 9162 §2.1.3.2), or `None` if the path cannot be
/// one of such a tree (wrong length, index out of range).
pub fn root_from_path(leaf: &Hash, index: u64, size: u64, path: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// A whole tree in memory: every perfect subtree of some leaves (about
/// twice as many hashes as leaves). For a sealed segment, whose size the
/// configuration bounds.
#[derive(Debug, Clone)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// The tree over `leaves` (leaf hashes, in order).
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        loop {
            let below = &levels[levels.len() - 1];
            if below.len() < 2 {
                break;
            }
            let up = below
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(up);
        }
        Self { levels }
    }

    /// Its leaves.
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// Its root; `None` for no leaves.
    pub fn root(&self) -> Option<Hash> {
        (self.size() > 0).then(|| root(self, self.size()).unwrap_or([0; 32]))
    }

    /// The inclusion path of leaf `index`; `None` if out of range.
    pub fn path(&self, index: u64) -> Option<Vec<Hash>> {
        (index < self.size()).then(|| path(self, index, self.size()).unwrap_or_default())
    }
}

/// A lookup outside the tree (not reachable from [`root`] or [`path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfTree;

impl Perfect for Tree {
    type Error = OutOfTree;

    fn perfect(&self, height: u32, index: u64) -> Result<Hash, OutOfTree> {
        self.levels
            .get(height as usize)
            .and_then(|l| l.get(index as usize))
            .copied()
            .ok_or(OutOfTree)
    }
}

/// The perfect subtrees a tree of `size - 1` leaves completes when leaf
/// `size - 1` (hash `leaf`) is appended: `(height, index, hash)` from the
/// leaf up, each computed from its left sibling (looked up in `p`) and the
/// one below. What the cluster stores per sealed segment.
pub fn appended<P: Perfect>(
    p: &P,
    size: u64,
    leaf: Hash,
) -> Result<Vec<(u32, u64, Hash)>, P::Error> {
    let mut out = Vec::new();
    let (mut index, mut hash, mut height) = (size - 1, leaf, 0u32);
    out.push((0, index, hash));
    while index & 1 == 1 {
        let left = p.perfect(height, index - 1)?;
        hash = node_hash(&left, &hash);
        index >>= 1;
        height += 1;
        out.push((height, index, hash));
    }
    Ok(out)
}

/// Lowercase hex of a hash.
pub fn to_hex(h: &Hash) -> String {
    hex::encode(h)
}

/// A hash from 64 hex digits; `None` if it is not one.
pub fn from_hex(s: &str) -> Option<Hash> {
    let bytes = hex::decode(s).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// RFC 9162's MTH, straight from its definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn roots_and_paths_are_rfc_9162s_for_every_size_to_70() {
        for n in 1..=70u64 {
            let l = leaves(n);
            let tree = Tree::new(l.clone());
            let root = tree.root().expect("non-empty");
            assert_eq!(root, mth(&l), "size {n}");
            for i in 0..n {
                let p = tree.path(i).expect("in range");
                assert_eq!(root_from_path(&l[i as usize], i, n, &p), Some(root));
                // Another leaf or index does not lead to the root (the size comes
                // from what is signed, not from the path).
                let other = leaf_hash(b"other");
                assert_ne!(root_from_path(&other, i, n, &p), Some(root));
                if n > 1 {
                    assert_ne!(
                        root_from_path(&l[i as usize], (i + 1) % n, n, &p),
                        Some(root),
                        "size {n} index {i}"
                    );
                }
            }
            assert!(tree.path(n).is_none());
        }
    }

    #[test]
    fn a_changed_or_truncated_path_fails() {
        let l = leaves(37);
        let tree = Tree::new(l.clone());
        let root = tree.root().expect("non-empty");
        let p = tree.path(20).expect("in range");
        for j in 0..p.len() {
            let mut bad = p.clone();
            bad[j][0] ^= 1;
            assert_ne!(root_from_path(&l[20], 20, 37, &bad), Some(root));
        }
        assert_ne!(
            root_from_path(&l[20], 20, 37, &p[..p.len() - 1]),
            Some(root)
        );
        let mut longer = p.clone();
        longer.push(root);
        assert_eq!(root_from_path(&l[20], 20, 37, &longer), None);
        assert_eq!(root_from_path(&l[20], 37, 37, &p), None);
    }

    /// Perfect subtrees kept as the cluster keeps them: appended one leaf
    /// at a time.
    #[derive(Default)]
    struct Appended(HashMap<(u32, u64), Hash>);

    impl Perfect for Appended {
        type Error = (u32, u64);
        fn perfect(&self, height: u32, index: u64) -> Result<Hash, (u32, u64)> {
            self.0.get(&(height, index)).copied().ok_or((height, index))
        }
    }

    #[test]
    fn appending_keeps_what_every_earlier_size_needs() {
        let l = leaves(45);
        let mut kept = Appended::default();
        for (i, leaf) in l.iter().enumerate() {
            for (h, idx, hash) in appended(&kept, i as u64 + 1, *leaf).expect("siblings kept") {
                kept.0.insert((h, idx), hash);
            }
            let size = i as u64 + 1;
            // Every size so far: its root, and every leaf's path to it.
            for n in [1, size / 2 + 1, size] {
                let r = root(&kept, n).expect("all subtrees kept");
                assert_eq!(r, mth(&l[..n as usize]));
                for j in 0..n {
                    let p = path(&kept, j, n).expect("all subtrees kept");
                    assert_eq!(root_from_path(&l[j as usize], j, n, &p), Some(r));
                }
            }
        }
        // Two hashes kept per leaf at most.
        assert!(kept.0.len() <= 2 * l.len());
    }

    #[test]
    fn hex_round_trips() {
        let h = leaf_hash(b"x");
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex("00"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
