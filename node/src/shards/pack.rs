//! Pack files: small shard files appended to shared files instead of each
//! taking a file (an inode and at least one disk block) of its own.
//!
//! A packed shard is the exact image a loose shard file would hold (same
//! header, blocks, block hashes and footer, same digest), written after a
//! 40-byte record header into the active pack file and fsynced; its
//! location then goes into a small sled index, flushed before the commit
//! returns. Nothing is acknowledged before both are on disk.
//!
//! ```text
//! pack file:      record*
//! record:         "TRPACKR1" | object id [u8; 16] | segment u32 LE
//!                 | shard index u32 LE | image length u64 LE | image
//! index (sled):   i/<object id><segment BE><index BE> → pack u64 | offset u64
//!                 | length u64 | committed Unix ms u64   (offset: the image's)
//!                 l/<pack BE>  → live image bytes u64
//! ```
//!
//! Deleting a packed shard removes its index entry; the bytes stay until
//! [`Packs::compact`] copies a mostly dead pack's live records into the
//! active pack and removes the file. Records are self-describing, so a pack
//! can be read without its index (forensics).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{sync_dir, ObjectId, ShardError, ShardId};

const RECORD_MAGIC: &[u8; 8] = b"TRPACKR1";
const RECORD_HEADER: u64 = 40;
/// A pack file takes no new records past this size.
pub(super) const PACK_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// sled's cache for the index: locations of packed shards.
const INDEX_CACHE_BYTES: u64 = 8 * 1024 * 1024;
const INDEX_PREFIX: &[u8] = b"i/";
const LIVE_PREFIX: &[u8] = b"l/";

/// Where a packed shard's image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Location {
    pub pack: u64,
    pub offset: u64,
    pub len: u64,
    pub committed_ms: u64,
}

impl Location {
    fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&self.pack.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.len.to_le_bytes());
        b[24..32].copy_from_slice(&self.committed_ms.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> io::Result<Location> {
        if b.len() != 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("pack index entry of {} bytes, expected 32", b.len()),
            ));
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        Ok(Location {
            pack: u(0),
            offset: u(8),
            len: u(16),
            committed_ms: u(24),
        })
    }

    fn modified(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.committed_ms)
    }
}

fn index_key(id: &ShardId) -> Vec<u8> {
    [INDEX_PREFIX, &id.to_key_bytes()].concat()
}

fn id_of_key(k: &[u8]) -> Option<ShardId> {
    ShardId::from_key_bytes(k.strip_prefix(INDEX_PREFIX)?)
}

fn live_key(pack: u64) -> Vec<u8> {
    let mut k = LIVE_PREFIX.to_vec();
    k.extend_from_slice(&pack.to_be_bytes());
    k
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The pack file being appended to.
struct Active {
    number: u64,
    /// `None` until the first append, and after a failed write (the next
    /// append starts a new pack rather than write after unknown bytes).
    file: Option<File>,
    len: u64,
}

/// What a compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Live records copied out of mostly dead packs.
    pub records_moved: u64,
    /// Pack files removed.
    pub packs_removed: u64,
    /// Bytes of disk given back.
    pub bytes_freed: u64,
}

/// The pack files of one node and their index.
pub(super) struct Packs {
    dir: PathBuf,
    /// A pack takes no new records past this size.
    file_bytes: u64,
    db: sled::Db,
    index: sled::Tree,
    /// Appends, deletes and moves: one at a time, so the live-byte counts
    /// stay exact and records never interleave.
    active: Mutex<Active>,
}

impl std::fmt::Debug for Packs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packs").field("dir", &self.dir).finish()
    }
}

fn sled_io(e: sled::Error) -> io::Error {
    io::Error::other(format!("pack index: {e}"))
}

impl Packs {
    /// Opens (creating) the packs under `dir`; new records go to a new
    /// pack file, after the highest numbered one.
    pub(super) fn open(dir: &Path, file_bytes: u64) -> io::Result<Packs> {
        fs::create_dir_all(dir)?;
        let db = sled::Config::new()
            .path(dir.join("index"))
            .cache_capacity(INDEX_CACHE_BYTES)
            .open()
            .map_err(sled_io)?;
        let index = db.open_tree("packs").map_err(sled_io)?;
        let mut highest = 0;
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            if let Some(n) = name.to_str().and_then(pack_number) {
                highest = highest.max(n);
            }
        }
        Ok(Packs {
            dir: dir.to_path_buf(),
            file_bytes,
            db,
            index,
            active: Mutex::new(Active {
                number: highest,
                file: None,
                len: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Active> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file of pack `n`.
    pub(super) fn path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:016x}.pack"))
    }

    /// Where the packed image of `id` is, if it is packed.
    pub(super) fn locate(&self, id: &ShardId) -> io::Result<Option<Location>> {
        match self.index.get(index_key(id)).map_err(sled_io)? {
            Some(v) => Location::decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Appends `image` as the shard `id` and makes it durable: record
    /// fsynced, then index flushed. Refuses a shard packed already unless
    /// `replace` (repair rebuilding it), in which case the old record
    /// becomes dead bytes.
    pub(super) fn append(
        &self,
        id: &ShardId,
        image: &[u8],
        replace: bool,
    ) -> Result<(), ShardError> {
        let mut active = self.lock();
        let old = self.locate(id)?;
        if old.is_some() && !replace {
            return Err(ShardError::InvalidWrite(format!(
                "shard {id} is already committed; refusing to overwrite it"
            )));
        }
        let location = self.write_record(&mut active, id, image)?;
        self.set(id, old, Some(location))?;
        self.db.flush().map_err(sled_io)?;
        Ok(())
    }

    /// Writes one record at the end of the active pack (starting a new
    /// pack when it is full or unusable) and fsyncs it.
    fn write_record(
        &self,
        active: &mut Active,
        id: &ShardId,
        image: &[u8],
    ) -> io::Result<Location> {
        // A pack file removed under a running node (an operator's
        // mistake, a lost directory) must not take new records into an
        // unlinked inode: start a new pack instead.
        let removed = active.file.is_some() && !self.path(active.number).is_file();
        if active.file.is_none() || active.len >= self.file_bytes || removed {
            active.number += 1;
            let path = self.path(active.number);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            sync_dir(&self.dir)?;
            active.file = Some(file);
            active.len = 0;
        }
        let mut record = Vec::with_capacity(RECORD_HEADER as usize + image.len());
        record.extend_from_slice(RECORD_MAGIC);
        record.extend_from_slice(&id.object_id.0);
        record.extend_from_slice(&id.segment.to_le_bytes());
        record.extend_from_slice(&id.index.to_le_bytes());
        record.extend_from_slice(&(image.len() as u64).to_le_bytes());
        record.extend_from_slice(image);
        let at = active.len;
        let written = match &active.file {
            Some(file) => file
                .write_all_at(&record, at)
                .and_then(|()| file.sync_data()),
            None => Err(io::Error::other("no active pack")),
        };
        if let Err(e) = written {
            active.file = None;
            return Err(e);
        }
        crate::crash::point("shard::pack_before_index");
        active.len += record.len() as u64;
        Ok(Location {
            pack: active.number,
            offset: at + RECORD_HEADER,
            len: image.len() as u64,
            committed_ms: now_ms(),
        })
    }

    /// Moves `id` from `old` to `new` in the index, keeping the live-byte
    /// counts of both packs. Called with the lock held.
    fn set(&self, id: &ShardId, old: Option<Location>, new: Option<Location>) -> io::Result<()> {
        let mut batch = sled::Batch::default();
        let mut adjust = |pack: u64, delta: i64| -> io::Result<()> {
            let key = live_key(pack);
            let now = match self.index.get(&key).map_err(sled_io)? {
                Some(v) => u64::from_le_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
                None => 0,
            };
            batch.insert(key, &now.saturating_add_signed(delta).to_le_bytes());
            Ok(())
        };
        match (old, new) {
            (Some(o), Some(n)) if o.pack == n.pack => adjust(o.pack, n.len as i64 - o.len as i64)?,
            (o, n) => {
                if let Some(o) = o {
                    adjust(o.pack, -(o.len as i64))?;
                }
                if let Some(n) = n {
                    adjust(n.pack, n.len as i64)?;
                }
            }
        }
        match new {
            Some(n) => batch.insert(index_key(id), &n.encode()),
            None => batch.remove(index_key(id)),
        }
        self.index.apply_batch(batch).map_err(sled_io)
    }

    /// Forgets the packed copy of `id`; whether there was one. Not flushed:
    /// a delete lost to a crash leaves an orphan for collection.
    pub(super) fn remove(&self, id: &ShardId) -> io::Result<bool> {
        let _active = self.lock();
        let Some(old) = self.locate(id)? else {
            return Ok(false);
        };
        self.set(id, Some(old), None)?;
        Ok(true)
    }

    /// Forgets every packed shard of `object`; how many.
    pub(super) fn remove_object(&self, object: &ObjectId) -> io::Result<usize> {
        let mut prefix = INDEX_PREFIX.to_vec();
        prefix.extend_from_slice(&object.0);
        let mut removed = 0;
        for kv in self.index.scan_prefix(&prefix) {
            let (k, _) = kv.map_err(sled_io)?;
            if let Some(id) = id_of_key(&k) {
                if self.remove(&id)? {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Every packed shard: id, image length, commit time.
    pub(super) fn list(&self) -> io::Result<Vec<(ShardId, u64, SystemTime)>> {
        let mut out = Vec::new();
        for kv in self.index.scan_prefix(INDEX_PREFIX) {
            let (k, v) = kv.map_err(sled_io)?;
            if let Some(id) = id_of_key(&k) {
                let at = Location::decode(&v)?;
                out.push((id, at.len, at.modified()));
            }
        }
        Ok(out)
    }

    /// Packs other than the active one whose live bytes are under half
    /// their size: their live records are copied to the active pack and
    /// the files removed; packs with nothing live are removed at once.
    pub(super) fn compact(&self) -> io::Result<Compaction> {
        let mut report = Compaction::default();
        let active_number = self.lock().number;
        let mut sparse = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(n) = entry.file_name().to_str().and_then(pack_number) else {
                continue;
            };
            // Only packs older than the active one: a newer pack may have
            // been started since, its first record not yet counted.
            if n >= active_number {
                continue;
            }
            let size = entry.metadata()?.len();
            let live = self.live_bytes(n)?;
            if live == 0 {
                report.bytes_freed += self.drop_pack(n)?;
                report.packs_removed += 1;
            } else if live.saturating_mul(2) < size {
                sparse.push(n);
            }
        }
        if sparse.is_empty() {
            return Ok(report);
        }
        for kv in self.index.scan_prefix(INDEX_PREFIX) {
            let (k, v) = kv.map_err(sled_io)?;
            let (Some(id), Ok(at)) = (id_of_key(&k), Location::decode(&v)) else {
                continue;
            };
            if sparse.contains(&at.pack) && self.move_record(&id, at)? {
                report.records_moved += 1;
            }
        }
        self.db.flush().map_err(sled_io)?;
        for n in sparse {
            if self.live_bytes(n)? == 0 {
                report.bytes_freed += self.drop_pack(n)?;
                report.packs_removed += 1;
            }
        }
        Ok(report)
    }

    /// Copies one live record into the active pack, unless it changed
    /// meanwhile; whether it moved.
    fn move_record(&self, id: &ShardId, at: Location) -> io::Result<bool> {
        let mut image = vec![0u8; at.len as usize];
        File::open(self.path(at.pack))?.read_exact_at(&mut image, at.offset)?;
        let mut active = self.lock();
        if self.locate(id)? != Some(at) {
            return Ok(false);
        }
        let mut moved = self.write_record(&mut active, id, &image)?;
        moved.committed_ms = at.committed_ms;
        self.set(id, Some(at), Some(moved))?;
        Ok(true)
    }

    fn live_bytes(&self, pack: u64) -> io::Result<u64> {
        Ok(match self.index.get(live_key(pack)).map_err(sled_io)? {
            Some(v) => u64::from_le_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
            None => 0,
        })
    }

    /// Removes pack `n`'s file and its count; the bytes given back.
    fn drop_pack(&self, n: u64) -> io::Result<u64> {
        let path = self.path(n);
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        sync_dir(&self.dir)?;
        self.index.remove(live_key(n)).map_err(sled_io)?;
        tracing::info!(pack = n, bytes = size, "pack file compacted away");
        Ok(size)
    }
}

/// `<16 hex digits>.pack` → the number.
fn pack_number(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".pack")?;
    (hex.len() == 16).then_some(())?;
    u64::from_str_radix(hex, 16).ok()
}
