//! Scrub, on every node: read every local shard file that a manifest
//! references here, verify every block's hash and the file's digest, and
//! report a damaged, missing or unreadable file for repair (it is marked
//! damaged; its good blocks keep serving until it is rebuilt).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{StatusHandle, Worker, WorkerError};
use crate::objects::DataPlane;
use crate::shards::{ShardError, ShardStore};

/// Shard files read from the index at a time.
const PAGE: usize = 1000;

counters! {
    /// What scrub has checked.
    ScrubCounters => Scrub {
        /// Passes completed.
        passes,
        /// Shard files to check in the current or last pass.
        files_total,
        /// Shard files checked in the current or last pass.
        files_checked,
        /// Bytes verified since the node started.
        bytes_checked,
        /// Bad shard files found since the node started.
        errors_found,
    }
}

/// The scrub worker.
pub struct Scrubber {
    plane: Arc<DataPlane>,
    store: Arc<ShardStore>,
    interval: Duration,
    bytes_per_sec: u64,
}

impl Scrubber {
    /// Scrubs `store` every `interval`, at most `bytes_per_sec`.
    pub fn new(
        plane: Arc<DataPlane>,
        store: Arc<ShardStore>,
        interval: Duration,
        bytes_per_sec: u64,
    ) -> Self {
        Self {
            plane,
            store,
            interval,
            bytes_per_sec,
        }
    }

    async fn scrub(&mut self, status: &StatusHandle<ScrubCounters>) -> Result<(), WorkerError> {
        let cluster = self.plane.cluster().clone();
        cluster.linearizable_read().await?;
        let me = cluster.config().node_id;
        let meta = cluster.meta();
        let total = meta
            .health()?
            .shards_per_node
            .get(&me)
            .copied()
            .unwrap_or(0);
        status.count(|c| {
            c.files_total = total;
            c.files_checked = 0;
        });
        let mut limiter = status.limiter(self.bytes_per_sec);
        let (mut checked, mut bad) = (0u64, 0u64);
        let mut after = None;
        loop {
            // This node's files only, a page of manifests at a time: never
            // every manifest at once.
            let (page, next) = meta.placed_on(me, after.as_ref(), PAGE)?;
            let last_page = next.is_none();
            after = next;
            for placed in page {
                let id = placed.shard;
                let store = self.store.clone();
                let verdict = match placed.digest {
                    None => Err("manifest digest missing".to_string()),
                    Some(expected) => {
                        let checked = tokio::task::spawn_blocking(move || {
                            store.open_reader(&id, &expected)?.verify_all()
                        })
                        .await?;
                        match checked {
                            Ok(bytes) => Ok(bytes),
                            // A file that cannot be read (an I/O error, a
                            // directory in its place) serves no read
                            // either: it is damage.
                            Err(e @ ShardError::Io(_)) => Err(format!("unreadable: {e}")),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                };
                match verdict {
                    Ok(bytes) => {
                        status.count(|c| c.bytes_checked += bytes);
                        limiter.consume(bytes).await;
                    }
                    Err(reason) => {
                        bad += 1;
                        status.count(|c| c.errors_found += 1);
                        tracing::error!(shard = %id, reason, "scrub found a bad shard");
                        if let Some(m) = meta.object_by_id(&id.object_id)? {
                            self.plane
                                .report_bad_shard(&m, id.segment, id.index as usize);
                        }
                    }
                }
                checked += 1;
                status.count(|c| c.files_checked = checked);
                status.progress(format!("{checked}/{total} shard files checked, {bad} bad"));
            }
            if last_page {
                break;
            }
        }
        status.count(|c| c.passes += 1);
        Ok(())
    }
}

impl Worker for Scrubber {
    type Counters = ScrubCounters;

    fn name(&self) -> &'static str {
        "scrub"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn pass<'a>(
        &'a mut self,
        status: &'a StatusHandle<ScrubCounters>,
    ) -> BoxFuture<'a, Result<(), WorkerError>> {
        Box::pin(self.scrub(status))
    }
}
