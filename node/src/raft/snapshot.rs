//! Snapshot files: the state machine's key/value pairs in a simple
//! length-prefixed framing (`u32 len, key, u32 len, value`, big-endian),
//! written from the tree and read back into a tree one pair at a time —
//! never the whole state in memory, however large it is.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

/// Bytes written to the tree per batch while a snapshot is loaded. Small:
/// sled frees the pages a batch replaces only when the batch is done, so
/// a batch of a few MiB held a few hundred MiB of garbage at its peak.
const LOAD_BATCH_BYTES: usize = 64 << 10;
/// Batches loaded between two flushes (1 MiB).
const FLUSH_EVERY_BATCHES: u64 = 16;

/// Malformed snapshot bytes.
#[derive(Debug, thiserror::Error)]
#[error("malformed snapshot: {0}")]
pub struct SnapshotFormatError(&'static str);

impl From<SnapshotFormatError> for io::Error {
    fn from(e: SnapshotFormatError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Key/value pairs of the state machine's tree, as carried in snapshots.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn write_pair(out: &mut impl Write, k: &[u8], v: &[u8]) -> io::Result<()> {
    out.write_all(&(k.len() as u32).to_be_bytes())?;
    out.write_all(k)?;
    out.write_all(&(v.len() as u32).to_be_bytes())?;
    out.write_all(v)
}

/// Frames key/value pairs in memory (small states: tests, fuzzing).
pub fn encode_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        // Writing to a Vec cannot fail.
        let _ = write_pair(&mut out, k, v);
    }
    out
}

/// Inverse of [`encode_pairs`]; refuses truncated or trailing bytes.
pub fn decode_pairs(bytes: &[u8]) -> Result<Pairs, SnapshotFormatError> {
    let mut reader = PairReader::new(bytes);
    let mut pairs = Vec::new();
    loop {
        match reader.next_pair() {
            Ok(Some(pair)) => pairs.push(pair),
            Ok(None) => return Ok(pairs),
            Err(_) => return Err(SnapshotFormatError("truncated")),
        }
    }
}

/// Reads framed pairs one at a time.
pub struct PairReader<R> {
    input: R,
}

impl<R: Read> PairReader<R> {
    /// Pairs from `input`.
    pub fn new(input: R) -> Self {
        Self { input }
    }

    /// Fills `buf`; `Ok(false)` at a clean end before its first byte.
    fn fill(&mut self, buf: &mut [u8], at_boundary: bool) -> io::Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) if got == 0 && at_boundary => return Ok(false),
                Ok(0) => return Err(SnapshotFormatError("truncated field").into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn field(&mut self, at_boundary: bool) -> io::Result<Option<Vec<u8>>> {
        let mut len = [0u8; 4];
        if !self.fill(&mut len, at_boundary)? {
            return Ok(None);
        }
        let len = u32::from_be_bytes(len) as usize;
        // Read in steps, so a forged length costs what the input holds,
        // not what it claims.
        let mut field = Vec::with_capacity(len.min(64 * 1024));
        let mut chunk = [0u8; 8192];
        while field.len() < len {
            let want = (len - field.len()).min(chunk.len());
            self.fill(&mut chunk[..want], false)?;
            field.extend_from_slice(&chunk[..want]);
        }
        Ok(Some(field))
    }

    /// The next pair; `None` at the end.
    pub fn next_pair(&mut self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let Some(k) = self.field(true)? else {
            return Ok(None);
        };
        let v = self
            .field(false)?
            .ok_or(SnapshotFormatError("truncated pair"))?;
        Ok(Some((k, v)))
    }
}

/// Writes `pairs` to a new file at `path` and makes it durable; returns
/// its length. Memory: one pair and a write buffer.
pub fn dump(
    pairs: impl Iterator<Item = io::Result<(sled::IVec, sled::IVec)>>,
    path: &Path,
) -> io::Result<u64> {
    let file = File::create(path)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    for pair in pairs {
        let (k, v) = pair?;
        write_pair(&mut out, &k, &v)?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    file.metadata().map(|m| m.len())
}

/// Fills the empty `tree` from the snapshot file at `path`, in batches,
/// skipping the keys `skip`; flushes it. A key found twice keeps its later
/// value. Returns the pairs read. Memory: one batch.
pub fn load(path: &Path, tree: &sled::Tree, skip: &[&[u8]]) -> io::Result<u64> {
    let mut pairs = PairReader::new(BufReader::with_capacity(1 << 20, File::open(path)?));
    let mut batch = sled::Batch::default();
    let (mut in_batch, mut loaded, mut batches) = (0usize, 0u64, 0u64);
    while let Some((k, v)) = pairs.next_pair()? {
        if skip.contains(&k.as_slice()) {
            continue;
        }
        in_batch += k.len() + v.len();
        batch.insert(k, v);
        loaded += 1;
        if in_batch >= LOAD_BATCH_BYTES {
            tree.apply_batch(std::mem::take(&mut batch))
                .map_err(io::Error::other)?;
            in_batch = 0;
            batches += 1;
            // Writing far faster than the disk takes it can stall sled for
            // good (its I/O threads all wait on its log while a file
            // truncation waits for one of them): flushing every 1 MiB keeps
            // its backlog short.
            if batches % FLUSH_EVERY_BATCHES == 0 {
                tree.flush().map_err(io::Error::other)?;
            }
        }
    }
    tree.apply_batch(batch).map_err(io::Error::other)?;
    tree.flush().map_err(io::Error::other)?;
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_framing_round_trips_and_refuses_truncation() {
        let pairs = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"".to_vec(), vec![0u8; 300]),
            (b"node/\x00\x01".to_vec(), b"".to_vec()),
        ];
        let bytes = encode_pairs(&pairs);
        assert_eq!(decode_pairs(&bytes).expect("decodes"), pairs);
        for cut in 1..bytes.len() {
            let prefix = &bytes[..cut];
            if let Ok(decoded) = decode_pairs(prefix) {
                // Only cuts on a pair boundary decode, and then to a prefix.
                assert!(pairs.starts_with(&decoded), "cut at {cut}");
                assert!(decoded.len() < pairs.len());
            }
        }
        // A forged length is an error, not an allocation.
        let mut forged = u32::MAX.to_be_bytes().to_vec();
        forged.extend_from_slice(b"abc");
        assert!(decode_pairs(&forged).is_err());
    }

    #[test]
    fn a_tree_dumps_to_a_file_and_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path().join("db")).expect("sled");
        let from = db.open_tree("a").expect("tree");
        for i in 0u32..10_000 {
            from.insert(i.to_be_bytes(), vec![i as u8; (i % 97) as usize])
                .expect("insert");
        }
        from.insert(b"skip me", b"x".to_vec()).expect("insert");
        let path = dir.path().join("snap");
        let pairs = from.iter().map(|kv| kv.map_err(io::Error::other));
        let len = dump(pairs, &path).expect("dump");
        assert_eq!(len, std::fs::metadata(&path).expect("file").len());
        let to = db.open_tree("b").expect("tree");
        assert_eq!(load(&path, &to, &[b"skip me"]).expect("load"), 10_000);
        assert_eq!(to.len(), 10_000);
        from.remove(b"skip me").expect("remove");
        assert!(from
            .iter()
            .zip(to.iter())
            .all(|(a, b)| a.expect("a") == b.expect("b")));
    }
}
