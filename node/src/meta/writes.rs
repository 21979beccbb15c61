//! The writes of one Raft entry, gathered before they reach the tree as one
//! sled batch. Unlike `sled::Batch`, the keys can be read back: the state
//! machine keeps the earlier value of every key an entry changes while a
//! snapshot is being dumped, so the dump is of one applied index although
//! applies go on meanwhile.

use std::collections::BTreeMap;

use sled::IVec;

/// Inserts and removals, the last per key winning, applied atomically.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Writes {
    changes: BTreeMap<IVec, Option<IVec>>,
}

impl Writes {
    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: impl Into<IVec>, value: impl Into<IVec>) {
        self.changes.insert(key.into(), Some(value.into()));
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: impl Into<IVec>) {
        self.changes.insert(key.into(), None);
    }

    /// What this batch does to `key`: `None` if nothing, `Some(None)` if
    /// it removes it, `Some(Some(value))` if it sets it.
    pub fn get(&self, key: &[u8]) -> Option<Option<&IVec>> {
        self.changes.get(key).map(|v| v.as_ref())
    }

    /// The keys written or removed.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.changes.keys().map(|k| k.as_ref())
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl From<Writes> for sled::Batch {
    fn from(writes: Writes) -> Self {
        let mut batch = sled::Batch::default();
        for (key, value) in writes.changes {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_write_per_key_wins_and_keys_read_back() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let tree = db.open_tree("t").expect("tree");
        tree.insert(b"gone", b"x".to_vec()).expect("insert");
        let mut w = Writes::default();
        w.insert(b"a".to_vec(), b"1".to_vec());
        w.insert(b"a".to_vec(), b"2".to_vec());
        w.remove(b"gone".to_vec());
        w.insert(b"b".to_vec(), b"3".to_vec());
        assert_eq!(w.keys().collect::<Vec<_>>(), vec![&b"a"[..], b"b", b"gone"]);
        tree.apply_batch(w.into()).expect("batch");
        assert_eq!(tree.get(b"a").expect("get").as_deref(), Some(&b"2"[..]));
        assert_eq!(tree.get(b"b").expect("get").as_deref(), Some(&b"3"[..]));
        assert!(tree.get(b"gone").expect("get").is_none());
    }
}
