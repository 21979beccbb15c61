//! Writing and reading one shard image: a file of its own, or a record of
//! a pack file (see `format` for the bytes).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use super::format::*;
use super::pack::Packs;
use super::{sync_dir, Digest, ShardError, ShardId};

/// Block writes go straight through when at least this large; smaller ones
/// are gathered.
const WRITE_BUFFER: usize = 64 * 1024;
/// A file's bytes are handed to the disk (writeback started, not waited
/// for) every this many bytes, so its commit's fsync finds little left to
/// write instead of the whole file.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// Writes one shard file: blocks in order, then `commit`.
///
/// Dropping a writer without committing removes its temporary file (the
/// temporary file's handle deletes it), so an abandoned upload leaves
/// nothing behind; a crash leaves a file in `shards-tmp` for
/// `ShardStore::clean_tmp`.
pub struct ShardWriter {
    id: ShardId,
    header: [u8; HEADER_LEN],
    block_size: u32,
    sink: Sink,
    tmp_dir: PathBuf,
    final_path: PathBuf,
    packs: Arc<Packs>,
    /// Images up to this many bytes are packed; larger ones are files.
    pack_max: usize,
    block_hashes: Vec<BlockHash>,
    last_block_len: u32,
    data_len: u64,
    /// A write failed part-way: the file's contents are unknown, so the
    /// writer refuses to go on.
    failed: bool,
    /// Commit replaces whatever is at the final path (repair rebuilding a
    /// damaged file in place).
    replace: bool,
    /// File bytes whose writeback was started.
    written_back: u64,
}

impl fmt::Debug for ShardWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let temp_path = match &self.sink {
            Sink::Memory(_) => None,
            Sink::File(f) => Some(f.get_ref().path().to_path_buf()),
        };
        f.debug_struct("ShardWriter")
            .field("id", &self.id)
            .field("temp_path", &temp_path)
            .field("blocks", &self.block_hashes.len())
            .field("bytes", &self.data_len)
            .finish()
    }
}

impl ShardWriter {
    pub(super) fn start(
        id: ShardId,
        block_size: u32,
        tmp_dir: &Path,
        final_path: PathBuf,
        packs: Arc<Packs>,
        pack_max: usize,
    ) -> Result<ShardWriter, ShardError> {
        if block_size == 0 {
            return Err(ShardError::InvalidWrite("block size 0".into()));
        }
        let header = Header { id, block_size }.encode();
        let mut writer = ShardWriter {
            id,
            header,
            block_size,
            sink: Sink::Memory(Vec::new()),
            tmp_dir: tmp_dir.to_path_buf(),
            final_path,
            packs,
            pack_max,
            block_hashes: Vec::new(),
            last_block_len: 0,
            data_len: 0,
            failed: false,
            replace: false,
            written_back: 0,
        };
        writer.write(&header)?;
        Ok(writer)
    }

    /// Makes commit replace a committed file of this shard, or anything
    /// else in its place (a directory where the file was), instead of
    /// refusing: for repair rebuilding a damaged file where it is.
    pub fn replacing(mut self) -> Self {
        self.replace = true;
        self
    }

    /// Appends the next block: exactly `block_size` bytes, except the last
    /// block of the file, which may be shorter (but not empty). Hashes it
    /// with SHA-256 for the trailer.
    pub fn append_block(&mut self, data: &[u8]) -> Result<(), ShardError> {
        self.check_usable()?;
        if data.is_empty() {
            return Err(ShardError::InvalidWrite("empty block".into()));
        }
        if data.len() > self.block_size as usize {
            return Err(ShardError::InvalidWrite(format!(
                "block of {} bytes, block size is {}",
                data.len(),
                self.block_size
            )));
        }
        if !self.block_hashes.is_empty() && self.last_block_len < self.block_size {
            return Err(ShardError::InvalidWrite(format!(
                "block after a short block of {} bytes: only the last block may be short",
                self.last_block_len
            )));
        }
        if self.block_hashes.len() == u32::MAX as usize {
            return Err(ShardError::InvalidWrite("too many blocks".into()));
        }
        let hash: BlockHash = Sha256::digest(data).into();
        self.write(data)?;
        self.block_hashes.push(hash);
        // Checked against block_size above, which is a u32.
        self.last_block_len = data.len() as u32;
        self.data_len += data.len() as u64;
        self.start_writeback()
    }

    /// Starts the writeback of what was written since the last time, once
    /// that is [`WRITEBACK_EVERY`] bytes: `POSIX_FADV_DONTNEED` on Linux
    /// starts writing dirty pages out without waiting for them (and drops
    /// pages already written, which a shard holder does not read back
    /// soon). Only a hint: durability still comes from the commit's fsync.
    fn start_writeback(&mut self) -> Result<(), ShardError> {
        let Sink::File(file) = &mut self.sink else {
            return Ok(());
        };
        let end = HEADER_LEN as u64 + self.data_len;
        if end - self.written_back < WRITEBACK_EVERY {
            return Ok(());
        }
        if let Err(e) = file.flush() {
            self.failed = true;
            return Err(ShardError::Io(e));
        }
        let (start, len) = (self.written_back as i64, (end - self.written_back) as i64);
        let fd = file.get_ref().as_file().as_raw_fd();
        let advice = nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED;
        if let Err(e) = nix::fcntl::posix_fadvise(fd, start, len, advice) {
            tracing::debug!(shard = %self.id, error = %e, "writeback hint refused");
        }
        self.written_back = end;
        Ok(())
    }

    /// Block bytes appended so far (not counting header and trailer).
    pub fn bytes_written(&self) -> u64 {
        self.data_len
    }

    /// Writes the trailer, fsyncs the file once, renames it into place and
    /// fsyncs the directory; returns the file digest for the manifest.
    /// Never replaces a committed file: if one exists for this shard, fails
    /// with `InvalidWrite` and removes the temporary file.
    pub fn commit(mut self) -> Result<Digest, ShardError> {
        self.check_usable()?;
        let footer = Footer {
            // append_block stops at u32::MAX blocks.
            block_count: self.block_hashes.len() as u32,
            last_block_len: self.last_block_len,
        }
        .encode();
        let mut digest = Sha256::new();
        digest.update(self.header);
        for hash in std::mem::take(&mut self.block_hashes) {
            digest.update(hash);
            self.write(&hash)?;
        }
        digest.update(footer);
        self.write(&footer)?;
        let digest = Digest(digest.finalize().into());

        let ShardWriter {
            id,
            sink,
            final_path,
            data_len,
            replace,
            packs,
            ..
        } = self;
        let file = match sink {
            Sink::Memory(image) => {
                // Small: packed. A loose file of the shard counts as
                // committed too; repair replaces it with the packed copy.
                if !replace && final_path.exists() {
                    return Err(ShardError::InvalidWrite(format!(
                        "shard {id} is already committed; refusing to overwrite it"
                    )));
                }
                packs.append(&id, &image, replace)?;
                if replace && fs::symlink_metadata(&final_path).is_ok() {
                    remove_any(&final_path)?;
                }
                tracing::debug!(shard = %id, bytes = data_len, %digest, "shard packed");
                return Ok(digest);
            }
            Sink::File(file) => file,
        };
        if !replace && packs.locate(&id)?.is_some() {
            return Err(ShardError::InvalidWrite(format!(
                "shard {id} is already committed; refusing to overwrite it"
            )));
        }
        let tmp = file.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        crate::crash::point("shard::before_rename");
        if replace {
            // Whatever is in the way is the damage being repaired.
            if std::fs::symlink_metadata(&final_path).is_ok_and(|m| m.is_dir()) {
                std::fs::remove_dir_all(&final_path)?;
            }
            tmp.persist(&final_path)
                .map_err(|e| ShardError::Io(e.error))?;
        } else if let Err(e) = tmp.persist_noclobber(&final_path) {
            // Fails rather than replaces when the name exists (renameat2
            // RENAME_NOREPLACE, or link + unlink where that is missing).
            // Dropping `e` drops the temporary file, which removes it.
            return Err(match e.error.kind() {
                io::ErrorKind::AlreadyExists => ShardError::InvalidWrite(format!(
                    "shard {id} is already committed; refusing to overwrite it"
                )),
                _ => ShardError::Io(e.error),
            });
        }
        if let Some(dir) = final_path.parent() {
            sync_dir(dir)?;
        }
        if replace {
            packs.remove(&id)?;
        }
        tracing::debug!(shard = %id, bytes = data_len, %digest, "shard committed");
        Ok(digest)
    }

    fn check_usable(&self) -> Result<(), ShardError> {
        if self.failed {
            return Err(ShardError::InvalidWrite(format!(
                "shard {} writer failed earlier; start again",
                self.id
            )));
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ShardError> {
        let result = self.write_inner(bytes);
        if result.is_err() {
            self.failed = true;
        }
        result.map_err(ShardError::Io)
    }

    /// Gathers a small image in memory; past `pack_max` bytes, moves to a
    /// temporary file and goes on there.
    fn write_inner(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Sink::Memory(image) = &mut self.sink {
            if image.len() + bytes.len() <= self.pack_max {
                image.extend_from_slice(bytes);
                return Ok(());
            }
            let tmp = tempfile::Builder::new()
                .prefix(&format!("{}.", self.id))
                .suffix(".tmp")
                .tempfile_in(&self.tmp_dir)?;
            let mut file = BufWriter::with_capacity(WRITE_BUFFER, tmp);
            file.write_all(image)?;
            self.sink = Sink::File(file);
        }
        match &mut self.sink {
            Sink::File(file) => file.write_all(bytes),
            Sink::Memory(_) => Err(io::Error::other("shard writer lost its file")),
        }
    }
}

/// Where a writer's bytes go: memory while the image may still be packed,
/// a temporary file once it is too large.
enum Sink {
    Memory(Vec<u8>),
    File(BufWriter<NamedTempFile>),
}

/// Removes a file, or a directory in its place.
fn remove_any(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)?;
    } else {
        fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// An open, checked shard file whose blocks are verified as they are read.
pub struct ShardReader {
    id: ShardId,
    file: File,
    /// Where the image starts in `file` (0 for a loose file; after the
    /// record header in a pack).
    base: u64,
    block_size: u32,
    block_count: u32,
    last_block_len: u32,
    block_hashes: Vec<BlockHash>,
}

impl fmt::Debug for ShardReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardReader")
            .field("id", &self.id)
            .field("block_size", &self.block_size)
            .field("block_count", &self.block_count)
            .field("last_block_len", &self.last_block_len)
            .finish()
    }
}

impl ShardReader {
    pub(super) fn open(
        id: ShardId,
        path: &Path,
        expected: &Digest,
    ) -> Result<ShardReader, ShardError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ShardError::NotFound(id)),
            Err(e) => return Err(e.into()),
        };
        let len = file.metadata()?.len();
        Self::open_image(id, file, 0, len, expected)
    }

    /// Opens the image of `len` bytes at `base` in `file` (a pack record).
    pub(super) fn open_image(
        id: ShardId,
        file: File,
        base: u64,
        len: u64,
        expected: &Digest,
    ) -> Result<ShardReader, ShardError> {
        let corrupt = |reason: String| ShardError::corrupt(id, reason);
        if len < (HEADER_LEN + FOOTER_LEN) as u64 {
            return Err(corrupt(format!(
                "file is {len} bytes, shorter than header and footer"
            )));
        }

        let mut header = [0u8; HEADER_LEN];
        read_exact_at(&file, id, &mut header, base, "header")?;
        let parsed = Header::parse(&header).map_err(corrupt)?;
        if parsed.id != id {
            return Err(corrupt(format!("header names shard {}", parsed.id)));
        }
        let mut footer = [0u8; FOOTER_LEN];
        read_exact_at(
            &file,
            id,
            &mut footer,
            base + len - FOOTER_LEN as u64,
            "footer",
        )?;
        let footer_bytes = footer;
        let footer = Footer::parse(&footer).map_err(corrupt)?;

        // Sizes are checked against the file length before the trailer is
        // allocated, so a forged block count cannot ask for gigabytes.
        let data_len = footer.data_len(parsed.block_size).map_err(corrupt)?;
        let trailer_len = u64::from(footer.block_count) * HASH_LEN as u64;
        let want = data_len.checked_add(trailer_len + (HEADER_LEN + FOOTER_LEN) as u64);
        if want != Some(len) {
            return Err(corrupt(format!(
                "file is {len} bytes, but header and footer say {} blocks of {} bytes, \
                 the last {} bytes long",
                footer.block_count, parsed.block_size, footer.last_block_len
            )));
        }
        let mut trailer = vec![0u8; footer.block_count as usize * HASH_LEN];
        read_exact_at(
            &file,
            id,
            &mut trailer,
            base + HEADER_LEN as u64 + data_len,
            "block hashes",
        )?;

        let mut digest = Sha256::new();
        digest.update(header);
        digest.update(&trailer);
        digest.update(footer_bytes);
        let digest = Digest(digest.finalize().into());
        if digest != *expected {
            return Err(corrupt(format!(
                "file digest {} differs from the manifest's {}",
                digest, expected
            )));
        }

        let block_hashes = trailer
            .chunks_exact(HASH_LEN)
            .map(|c| {
                let mut h = [0u8; HASH_LEN];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(ShardReader {
            id,
            file,
            base,
            block_size: parsed.block_size,
            block_count: footer.block_count,
            last_block_len: footer.last_block_len,
            block_hashes,
        })
    }

    /// Number of blocks in the file.
    pub fn block_count(&self) -> u32 {
        self.block_count
    }

    /// Size of every block but the last, which may be shorter.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Reads block `i` and checks it against its hash in the trailer:
    /// `Corrupt` if it differs, `OutOfRange` if there is no block `i`.
    pub fn read_block(&self, i: u32) -> Result<Vec<u8>, ShardError> {
        let mut buf = Vec::new();
        self.read_block_into(i, &mut buf)?;
        Ok(buf)
    }

    /// Reads and verifies every block (for scrub); returns the block bytes
    /// in total.
    pub fn verify_all(&self) -> Result<u64, ShardError> {
        let mut buf = Vec::with_capacity(self.block_size as usize);
        let mut total = 0;
        for i in 0..self.block_count {
            self.read_block_into(i, &mut buf)?;
            total += buf.len() as u64;
        }
        Ok(total)
    }

    fn read_block_into(&self, i: u32, buf: &mut Vec<u8>) -> Result<(), ShardError> {
        if i >= self.block_count {
            return Err(ShardError::OutOfRange {
                shard: self.id,
                block: i,
                count: self.block_count,
            });
        }
        let len = if i + 1 == self.block_count {
            self.last_block_len
        } else {
            self.block_size
        };
        buf.clear();
        buf.resize(len as usize, 0);
        let offset = self.base + HEADER_LEN as u64 + u64::from(i) * u64::from(self.block_size);
        read_exact_at(&self.file, self.id, buf, offset, "block")?;
        let hash: BlockHash = Sha256::digest(&buf[..]).into();
        if hash != self.block_hashes[i as usize] {
            return Err(ShardError::corrupt(
                self.id,
                format!("block {i} does not match its hash"),
            ));
        }
        Ok(())
    }
}

/// `read_exact_at`, with a short read (the file shrank) reported as
/// corruption rather than as a disk error.
fn read_exact_at(
    file: &File,
    id: ShardId,
    buf: &mut [u8],
    offset: u64,
    what: &str,
) -> Result<(), ShardError> {
    file.read_exact_at(buf, offset).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ShardError::corrupt(
            id,
            format!("{what} at offset {offset} runs past the end of the file"),
        ),
        _ => ShardError::Io(e),
    })
}
