//! How a node opens its metadata database — one sled `Db` holding the Raft
//! log and the state — and what keeps sled's memory near its configured
//! cache.
//!
//! **Compression.** Pages are stored zstd-compressed: sled's files held
//! ~785 bytes per small object uncompressed and ~220 compressed (400,000
//! objects loaded from a snapshot). The page cache is counted in stored,
//! compressed bytes, so `[meta] cache_bytes` holds about four times as much
//! metadata as its figure. A database written with one setting cannot be
//! opened with the other (sled refuses at open, naming it).
//!
//! **Garbage.** sled frees a page version it replaced or evicted through
//! crossbeam's epoch-based collector (`defer_destroy`), and each pin of
//! that collector frees only a few deferred objects. A stream of writes (a
//! snapshot install, a burst of applies) defers more per pin than its own
//! pins free, so the rest waits for pins that may not come: loading
//! 800,000 pairs left ~440 MiB of such garbage behind (RSS 490 MiB), freed
//! only by pinning a few hundred thousand times afterwards. One thread
//! (`sled-reclaim`, started by [`open`]) pins and flushes the collector in short bursts, so
//! the backlog is what sled defers in a few milliseconds (the same load:
//! RSS 77 MiB).

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

/// zstd level of the stored pages: level 1 stored within 5 % of level 5's
/// size and loaded faster.
const COMPRESSION_LEVEL: i32 = 1;
/// Pins per burst of the reclaiming thread.
const PINS: usize = 128;
/// Pause between bursts.
const PAUSE: Duration = Duration::from_millis(10);

/// Opens (creating) the metadata database at `path` with a page cache of
/// `cache_bytes` (stored bytes), and starts the reclaiming thread.
pub fn open(path: &Path, cache_bytes: u64) -> sled::Result<sled::Db> {
    start_reclaimer();
    sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .use_compression(true)
        .compression_factor(COMPRESSION_LEVEL)
        .open()
}

/// Starts the thread that frees sled's deferred garbage, once per process
/// (later calls do nothing).
fn start_reclaimer() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("sled-reclaim".into())
            .spawn(|| loop {
                reclaim(PINS);
                std::thread::sleep(PAUSE);
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "could not start the thread that frees sled's garbage");
        }
    });
}

/// Pins and flushes the collector `pins` times: each flush hands this
/// thread's deferred objects to the global queue and frees what the epoch
/// allows.
fn reclaim(pins: usize) {
    for _ in 0..pins {
        crossbeam_epoch::pin().flush();
    }
}
