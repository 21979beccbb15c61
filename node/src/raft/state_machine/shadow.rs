//! A snapshot of one applied index, dumped while applies go on.
//!
//! sled has no point-in-time view of a tree, and dumping a national-scale
//! state takes seconds: with applies waiting for the dump (as they did),
//! every commit stalled for as long — past the 10 s proposal deadline on a
//! busy machine. Instead, from the moment a dump begins (between two
//! applies) until it ends, each apply first keeps, in a side tree, the
//! value every key it changes had when the dump began (or that it did not
//! exist), once per key. The dump then writes:
//!
//! 1. every pair of the live tree, taking the kept value instead when its
//!    key has one (read *after* the live value: a key is kept before it is
//!    changed, so a changed value read means its keeping is visible);
//!    keys created since the start are left out;
//! 2. every kept value of a key that existed at the start — these are the
//!    keys removed since, which the walk of the live tree may have missed.
//!    A key written in both passes is written with the same value twice,
//!    and loading a snapshot lets the later pair win.
//!
//! Memory: one pair. The side tree is on disk (sled's cache), holds one
//! entry per key changed during the dump, and is cleared when a dump
//! begins and ends.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sled::IVec;

use crate::meta::Writes;

/// Keys changed since a dump began, with their values at its start.
pub(super) struct Shadow {
    before: sled::Tree,
    recording: AtomicBool,
    /// Keys the dump leaves out (the Raft bookkeeping, which the snapshot's
    /// meta carries).
    skip: &'static [&'static [u8]],
}

/// The kept value: absent, or present with its bytes.
const ABSENT: u8 = 0;
const PRESENT: u8 = 1;

fn tagged(value: Option<IVec>) -> Vec<u8> {
    match value {
        None => vec![ABSENT],
        Some(v) => {
            let mut out = Vec::with_capacity(v.len() + 1);
            out.push(PRESENT);
            out.extend_from_slice(&v);
            out
        }
    }
}

fn untagged(kept: &[u8]) -> io::Result<Option<IVec>> {
    match kept.split_first() {
        Some((&ABSENT, [])) => Ok(None),
        Some((&PRESENT, v)) => Ok(Some(IVec::from(v))),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed kept value in the snapshot side tree",
        )),
    }
}

impl Shadow {
    /// The side tree in `db`, emptied (a dump a crash cut short left it).
    pub(super) fn open(db: &sled::Db, skip: &'static [&'static [u8]]) -> sled::Result<Arc<Self>> {
        let before = db.open_tree("sm_shadow")?;
        before.clear()?;
        Ok(Arc::new(Self {
            before,
            recording: AtomicBool::new(false),
            skip,
        }))
    }

    /// From now on (between two applies), changes keep their earlier
    /// values.
    pub(super) fn begin(&self) -> sled::Result<()> {
        self.before.clear()?;
        self.recording.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Stops keeping values and frees the side tree. A keep racing with
    /// this may leave an entry; [`Shadow::begin`] clears again.
    pub(super) fn end(&self) {
        self.recording.store(false, Ordering::SeqCst);
        if let Err(e) = self.before.clear() {
            tracing::warn!(error = %e, "the snapshot side tree is cleared at the next dump");
        }
    }

    /// Called by an apply before `writes` reach `tree`: while a dump runs,
    /// keeps each key's value unless it was kept already.
    pub(super) fn keep(&self, tree: &sled::Tree, writes: &Writes) -> sled::Result<()> {
        if !self.recording.load(Ordering::SeqCst) {
            return Ok(());
        }
        for key in writes.keys() {
            if self.skip.contains(&key) || self.before.contains_key(key)? {
                continue;
            }
            self.before.insert(key, tagged(tree.get(key)?))?;
        }
        Ok(())
    }

    /// The pairs of `tree` as they were when [`Shadow::begin`] was called,
    /// read while applies go on (see the module text). Call on a blocking
    /// thread; the side tree must stay recording until the iterator ends.
    pub(super) fn as_at_begin<'a>(
        &'a self,
        tree: &'a sled::Tree,
    ) -> impl Iterator<Item = io::Result<(IVec, IVec)>> + 'a {
        let live = tree.iter().filter_map(move |kv| {
            let pair = (|| {
                let (k, v) = kv.map_err(io::Error::other)?;
                if self.skip.contains(&k.as_ref()) {
                    return Ok(None);
                }
                match self.before.get(&k).map_err(io::Error::other)? {
                    Some(kept) => Ok(untagged(&kept)?.map(|old| (k, old))),
                    None => Ok(Some((k, v))),
                }
            })();
            pair.transpose()
        });
        // Created lazily: walked after the live tree.
        let removed = std::iter::once(()).flat_map(move |()| {
            self.before.iter().filter_map(|kv| {
                let pair = (|| {
                    let (k, kept) = kv.map_err(io::Error::other)?;
                    Ok(untagged(&kept)?.map(|old| (k, old)))
                })();
                pair.transpose()
            })
        });
        live.chain(removed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const SKIP: &[&[u8]] = &[b"raft/applied"];

    fn key(i: u32) -> Vec<u8> {
        format!("k{i:06}").into_bytes()
    }

    /// What an apply does: keep, then write.
    fn apply(shadow: &Shadow, tree: &sled::Tree, writes: Writes) {
        shadow.keep(tree, &writes).expect("keep");
        tree.apply_batch(writes.into()).expect("batch");
    }

    /// Changes a few keys the way entries do: rewrite, remove, create,
    /// and the bookkeeping key every time.
    fn churn(shadow: &Shadow, tree: &sled::Tree, round: u32, keys: u32) {
        let mut w = Writes::default();
        let x = round.wrapping_mul(2_654_435_761) % keys;
        w.insert(key(x), format!("rewritten in round {round}").into_bytes());
        w.remove(key((x + 7) % keys));
        w.insert(key(keys + round), b"created after the start".to_vec());
        w.insert(b"raft/applied".to_vec(), round.to_be_bytes().to_vec());
        apply(shadow, tree, w);
    }

    /// The pairs of `tree` but the bookkeeping key.
    fn contents(tree: &sled::Tree) -> BTreeMap<Vec<u8>, Vec<u8>> {
        tree.iter()
            .map(|kv| kv.expect("kv"))
            .filter(|(k, _)| !SKIP.contains(&k.as_ref()))
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    /// The dump equals the tree at `begin` although keys are rewritten,
    /// removed and created before and while it walks the tree (the walk
    /// pauses now and then so that changes land behind and ahead of it).
    #[test]
    fn the_dump_is_the_tree_at_begin_while_writes_go_on() {
        const KEYS: u32 = 20_000;
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let tree = db.open_tree("state").expect("tree");
        for i in 0..KEYS {
            tree.insert(key(i), format!("value {i}").into_bytes())
                .expect("insert");
        }
        tree.insert(b"raft/applied", b"0".to_vec()).expect("insert");
        let shadow = Shadow::open(&db, SKIP).expect("shadow");
        // Changes before a dump are part of it.
        churn(&shadow, &tree, 0, KEYS);
        let expected = contents(&tree);
        shadow.begin().expect("begin");
        // Changes after the start, before the walk, are not.
        for round in 1..200 {
            churn(&shadow, &tree, round, KEYS);
        }
        let done = std::sync::atomic::AtomicBool::new(false);
        let dumped = std::thread::scope(|s| {
            let walker = s.spawn(|| {
                let mut dumped = BTreeMap::new();
                for (n, pair) in shadow.as_at_begin(&tree).enumerate() {
                    let (k, v) = pair.expect("pair");
                    dumped.insert(k.to_vec(), v.to_vec());
                    if n % 500 == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
                done.store(true, Ordering::SeqCst);
                dumped
            });
            let mut round = 200;
            while !done.load(Ordering::SeqCst) && round < 200_000 {
                churn(&shadow, &tree, round, KEYS);
                round += 1;
            }
            assert!(round > 1_000, "the walk ended before writes overlapped it");
            walker.join().expect("walker")
        });
        shadow.end();
        assert_eq!(dumped.len(), expected.len());
        assert!(
            dumped == expected,
            "the dump differs from the tree at begin"
        );
        assert_ne!(contents(&tree), expected, "the writes went on");
        // Not recording any more: a change keeps nothing.
        churn(&shadow, &tree, 300_000, KEYS);
        assert!(shadow.before.is_empty());
    }

    #[test]
    fn kept_values_round_trip_and_garbage_is_refused() {
        assert_eq!(untagged(&tagged(None)).expect("absent"), None);
        let v = IVec::from(&b"value"[..]);
        assert_eq!(
            untagged(&tagged(Some(v.clone()))).expect("present"),
            Some(v)
        );
        assert!(untagged(&[]).is_err());
        assert!(untagged(&[ABSENT, 1]).is_err());
        assert!(untagged(&[7]).is_err());
    }
}
