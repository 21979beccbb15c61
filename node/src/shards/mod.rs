//! The local shard store: the files holding this node's shards.
//!
//! On each node a segment's shard is one plain file (never a sled value)
//! holding the node's shard of every stripe of the segment, in order, in
//! blocks that each carry a SHA-256 hash; `file` owns that format. This
//! module owns where the files live and their life cycle: written under a
//! temporary name in `shards-tmp`, fsynced once, renamed into `shards`,
//! directory fsynced; listed for scrub and garbage collection; deleted with
//! their object. File names come from ids only, never from object keys.
//! Small shards are the same images appended to shared pack files instead
//! (`pack`), so they cost no inode or disk block each.
//!
//! Everything here is blocking `std::fs`; async code calls it through
//! `spawn_blocking`.

mod file;
mod format;
mod pack;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use crate::ids::{Digest, ObjectId, ShardId};
pub use file::{ShardReader, ShardWriter};
pub use pack::Compaction;

use pack::Packs;
use std::sync::Arc;

/// Committed shard files, under two-level fan-out: `shards/ab/<object>.<segment>.<index>`.
const SHARDS_DIR: &str = "shards";

/// Shard files being written.
const TMP_DIR: &str = "shards-tmp";

/// Pack files of small shards and their index.
const PACKS_DIR: &str = "packs";

/// Shard files up to this many bytes are packed by default.
pub const DEFAULT_PACKED_SHARD_BYTES: usize = crate::config::DEFAULT_PACKED_SHARD_BYTES as usize;

/// Free bytes a node keeps on its shard file system: below this it takes
/// no new shard files, so a file being written is not cut short by a full
/// disk and the metadata store beside it keeps room to work.
pub const MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

/// Parses a committed file's name; `None` for anything that is not
/// exactly what `Display` writes (so that every listed file is found
/// again by `ShardStore::path`).
fn shard_from_file_name(name: &str) -> Option<ShardId> {
    let mut parts = name.split('.');
    let (object, segment, index) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let mut object_id = [0u8; 16];
    hex::decode_to_slice(object, &mut object_id).ok()?;
    let id = ShardId {
        object_id: ObjectId(object_id),
        segment: segment.parse().ok()?,
        index: index.parse().ok()?,
    };
    (id.to_string() == name).then_some(id)
}

/// Errors of the shard store.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// There is no committed file for this shard.
    #[error("shard {0} not found")]
    NotFound(ShardId),
    /// The file exists but is damaged, or is not what the manifest recorded.
    #[error("shard {shard} is corrupt: {reason}")]
    Corrupt {
        /// The shard asked for.
        shard: ShardId,
        /// What is wrong.
        reason: String,
    },
    /// A block past the end of the shard was asked for.
    #[error("shard {shard} has {count} blocks, block {block} asked for")]
    OutOfRange {
        /// The shard read.
        shard: ShardId,
        /// The block asked for.
        block: u32,
        /// Blocks in the shard.
        count: u32,
    },
    /// The caller broke the writing rules (block sizes, order, overwriting
    /// a committed file, using a writer after a failure).
    #[error("invalid shard write: {0}")]
    InvalidWrite(String),
    /// The disk failed.
    #[error("shard store: {0}")]
    Io(#[from] io::Error),
}

impl ShardError {
    fn corrupt(shard: ShardId, reason: impl Into<String>) -> ShardError {
        ShardError::Corrupt {
            shard,
            reason: reason.into(),
        }
    }
}

/// The shard files of one node, under its data dir.
#[derive(Clone, Debug)]
pub struct ShardStore {
    shards: PathBuf,
    tmp: PathBuf,
    packs: Arc<Packs>,
    /// Shard images up to this many bytes go into pack files.
    pack_max: usize,
}

impl ShardStore {
    /// Uses `<data_dir>/shards` for committed files and `<data_dir>/shards-tmp`
    /// for files being written, creating both and the 256 fan-out
    /// directories (`shards/00` … `shards/ff`) so that a commit only ever
    /// fsyncs the one directory it renames into.
    pub fn open(data_dir: &Path) -> io::Result<ShardStore> {
        Self::open_with(data_dir, DEFAULT_PACKED_SHARD_BYTES)
    }

    /// Like [`Self::open`], packing shard files of up to `pack_max` bytes
    /// (none with 0) into `<data_dir>/packs`.
    pub fn open_with(data_dir: &Path, pack_max: usize) -> io::Result<ShardStore> {
        Self::open_inner(data_dir, pack_max, pack::PACK_FILE_BYTES)
    }

    fn open_inner(
        data_dir: &Path,
        pack_max: usize,
        pack_file_bytes: u64,
    ) -> io::Result<ShardStore> {
        let store = ShardStore {
            shards: data_dir.join(SHARDS_DIR),
            tmp: data_dir.join(TMP_DIR),
            packs: Arc::new(Packs::open(&data_dir.join(PACKS_DIR), pack_file_bytes)?),
            pack_max,
        };
        fs::create_dir_all(&store.tmp)?;
        fs::create_dir_all(&store.shards)?;
        for byte in 0..=u8::MAX {
            match fs::create_dir(store.fan_out_dir(byte)) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        sync_dir(&store.shards)?;
        sync_dir(data_dir)?;
        Ok(store)
    }

    /// Where the committed file of `id` lives (whether or not it exists):
    /// `shards/<first byte of the object id in hex>/<id>`.
    pub fn path(&self, id: &ShardId) -> PathBuf {
        self.fan_out_dir(id.object_id.0[0]).join(id.to_string())
    }

    /// Starts a shard file under a temporary name in `shards-tmp`, with
    /// blocks of `block_size` bytes (the last may be shorter).
    /// Refused, before anything is written, when the store cannot take a
    /// file: its directories are gone (a lost mount must not fill another
    /// disk) or its file system has less than [`MIN_FREE_BYTES`] free. The
    /// coordinator then places the shard elsewhere.
    pub fn create(&self, id: ShardId, block_size: u32) -> Result<ShardWriter, ShardError> {
        self.check_writable(&id)?;
        ShardWriter::start(
            id,
            block_size,
            &self.tmp,
            self.path(&id),
            self.packs.clone(),
            self.pack_max,
        )
    }

    fn check_writable(&self, id: &ShardId) -> Result<(), ShardError> {
        let fan_out = self.fan_out_dir(id.object_id.0[0]);
        if !fan_out.is_dir() {
            return Err(ShardError::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("shard directory {} is missing", fan_out.display()),
            )));
        }
        self.health().map(|_| ())
    }

    /// Bytes free for new files on this store's file system.
    pub fn free_bytes(&self) -> io::Result<u64> {
        nix::sys::statvfs::statvfs(&self.tmp)
            .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
            .map_err(io::Error::from)
    }

    /// Whether this store takes new files, with the bytes free on its file
    /// system: an error says why not (directories gone, less than
    /// [`MIN_FREE_BYTES`] free).
    pub fn health(&self) -> Result<u64, ShardError> {
        for dir in [&self.tmp, &self.shards] {
            if !dir.is_dir() {
                return Err(ShardError::Io(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("shard directory {} is missing", dir.display()),
                )));
            }
        }
        let free = self.free_bytes()?;
        if free < MIN_FREE_BYTES {
            return Err(ShardError::Io(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("{free} bytes free, less than the {MIN_FREE_BYTES} kept in reserve"),
            )));
        }
        Ok(free)
    }

    /// Opens the committed file of `id` and checks its header (names `id`),
    /// footer and size, and that the digest of header, block hashes and
    /// footer equals `expected` (the manifest's). Blocks are verified as
    /// they are read.
    pub fn open_reader(&self, id: &ShardId, expected: &Digest) -> Result<ShardReader, ShardError> {
        // A packed shard's pack may be compacted away between the lookup
        // and the open: then its new place is looked up once more.
        for _ in 0..2 {
            let Some(at) = self.packs.locate(id)? else {
                return ShardReader::open(*id, &self.path(id), expected);
            };
            match File::open(self.packs.path(at.pack)) {
                Ok(file) => return ShardReader::open_image(*id, file, at.offset, at.len, expected),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ShardError::NotFound(*id))
    }

    /// Where the image of committed shard `id` is on disk: its file and
    /// the offset of the image in it (0 for a file of its own). For
    /// inspecting, and for tests that damage stored bytes.
    pub fn image_at(&self, id: &ShardId) -> io::Result<Option<(PathBuf, u64)>> {
        if let Some(at) = self.packs.locate(id)? {
            return Ok(Some((self.packs.path(at.pack), at.offset)));
        }
        let path = self.path(id);
        Ok(path.is_file().then_some((path, 0)))
    }

    /// Copies the live shards out of mostly dead pack files and removes
    /// those files (for garbage collection, after deletes).
    pub fn compact(&self) -> io::Result<Compaction> {
        self.packs.compact()
    }

    /// Deletes every committed shard file of an object and fsyncs the
    /// directory; returns how many were removed.
    pub fn delete_object(&self, object_id: &ObjectId) -> io::Result<usize> {
        let dir = self.fan_out_dir(object_id.0[0]);
        let mut removed = 0;
        for entry in read_dir_or_empty(&dir)? {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().and_then(shard_from_file_name) else {
                continue;
            };
            if id.object_id != *object_id {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                // Someone else deleted it first: it is gone either way.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if removed > 0 {
            sync_dir(&dir)?;
        }
        removed += self.packs.remove_object(object_id)?;
        tracing::debug!(object = %object_id, removed, "shard files deleted");
        Ok(removed)
    }

    /// The length of the committed file of `id`, if there is one.
    pub fn stat(&self, id: &ShardId) -> io::Result<Option<u64>> {
        if let Some(at) = self.packs.locate(id)? {
            return Ok(Some(at.len));
        }
        match fs::metadata(self.path(id)) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            // A directory in the file's place is no shard file.
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes one committed shard file (directory fsynced); false if it
    /// was not there.
    pub fn delete(&self, id: &ShardId) -> io::Result<bool> {
        if self.packs.remove(id)? {
            return Ok(true);
        }
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    sync_dir(dir)?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every committed shard file: its id, file length and modification
    /// time, for scrub and garbage collection. Files whose names do not
    /// parse, or that sit in the wrong fan-out directory, are skipped.
    pub fn list(&self) -> io::Result<Vec<(ShardId, u64, SystemTime)>> {
        let mut out = self.packs.list()?;
        for byte in 0..=u8::MAX {
            for entry in read_dir_or_empty(&self.fan_out_dir(byte))? {
                let entry = entry?;
                let Some(id) = entry.file_name().to_str().and_then(shard_from_file_name) else {
                    continue;
                };
                if id.object_id.0[0] != byte {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    // Deleted while we were listing.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if meta.is_file() {
                    out.push((id, meta.len(), meta.modified()?));
                }
            }
        }
        Ok(out)
    }

    /// Removes temporary files not modified for `age` or longer: those left
    /// by crashed writes. `age` must exceed the longest pause of a live
    /// write (a writer touches its file at every block). Returns how many
    /// were removed.
    pub fn clean_tmp(&self, age: Duration) -> io::Result<usize> {
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in fs::read_dir(&self.tmp)? {
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            // A modification time in the future counts as fresh.
            let stale = now
                .duration_since(meta.modified()?)
                .is_ok_and(|idle| idle >= age);
            if !meta.is_file() || !stale {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if removed > 0 {
            tracing::info!(removed, "stale temporary shard files removed");
        }
        Ok(removed)
    }

    fn fan_out_dir(&self, first_byte: u8) -> PathBuf {
        self.shards.join(hex::encode([first_byte]))
    }
}

/// The entries of `dir`, none if it does not exist.
fn read_dir_or_empty(dir: &Path) -> io::Result<impl Iterator<Item = io::Result<fs::DirEntry>>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(Some(entries).into_iter().flatten()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None.into_iter().flatten()),
        Err(e) => Err(e),
    }
}

/// Makes the directory's entries (a rename, a new or removed file) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod pack_tests;
#[cfg(test)]
mod tests;
