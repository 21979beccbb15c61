//! Orphan collection, on every node: delete shard files that no manifest
//! references on this node, that belong to no upload in progress, and that
//! are older than the grace period; then give back the space of deleted
//! small shards by compacting mostly dead pack files.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use super::{StatusHandle, Worker, WorkerError};
use crate::raft::Cluster;
use crate::shards::ShardStore;

counters! {
    /// What orphan collection has found.
    GcCounters => Gc {
        /// Orphan shard files deleted since the node started.
        orphans_deleted,
        /// Shard files kept in the last pass.
        shard_files,
        /// Bytes of the shard files kept in the last pass.
        shard_bytes,
        /// Pack files compacted away since the node started.
        packs_compacted,
        /// Bytes those pack files gave back.
        pack_bytes_freed,
    }
}

/// The orphan collector.
pub struct OrphanCollector {
    cluster: Arc<Cluster>,
    store: Arc<ShardStore>,
    grace: Duration,
    interval: Duration,
}

impl OrphanCollector {
    /// Collects files older than `grace`, every `interval`.
    pub fn new(
        cluster: Arc<Cluster>,
        store: Arc<ShardStore>,
        grace: Duration,
        interval: Duration,
    ) -> Self {
        Self {
            cluster,
            store,
            grace,
            interval,
        }
    }

    async fn collect(&mut self, status: &StatusHandle<GcCounters>) -> Result<(), WorkerError> {
        // List first, then read the metadata linearizably: a file listed
        // here whose manifest committed before the read is seen as
        // referenced.
        let store = self.store.clone();
        let files = tokio::task::spawn_blocking(move || store.list()).await??;
        self.cluster.linearizable_read().await?;
        let me = self.cluster.config().node_id;
        let now = SystemTime::now();
        let (mut kept, mut deleted, mut bytes) = (0u64, 0u64, 0u64);
        for (n, (id, len, modified)) in files.into_iter().enumerate() {
            // Each file costs a manifest read: let other tasks (Raft's
            // heartbeats among them) run between thousands of them.
            if n % 1000 == 999 {
                tokio::task::yield_now().await;
            }
            let old = now
                .duration_since(modified)
                .is_ok_and(|age| age >= self.grace);
            // An upload in progress, then the file's object and where its
            // manifest puts that shard — in this order: a commit removes
            // the upload record and places the object in one batch, so a
            // file whose upload is gone by the first read is placed by the
            // second if it was committed (the other order could see
            // neither, and delete a file a manifest just took).
            let uploading = self.cluster.meta().upload(&id.object_id)?.is_some();
            let referenced =
                || -> Result<bool, WorkerError> { Ok(self.cluster.meta().is_placed(me, &id)?) };
            if uploading || !old || referenced()? {
                kept += 1;
                bytes += len;
                continue;
            }
            let store = self.store.clone();
            match tokio::task::spawn_blocking(move || store.delete(&id)).await {
                Ok(Ok(_)) => {
                    deleted += 1;
                    tracing::info!(shard = %id, "orphan shard file deleted");
                }
                Ok(Err(e)) => tracing::warn!(shard = %id, error = %e, "cannot delete orphan"),
                Err(e) => return Err(e.into()),
            }
        }
        let store = self.store.clone();
        let compacted = tokio::task::spawn_blocking(move || store.compact()).await??;
        status.count(|c| {
            c.orphans_deleted += deleted;
            c.shard_files = kept;
            c.shard_bytes = bytes;
            c.packs_compacted += compacted.packs_removed;
            c.pack_bytes_freed += compacted.bytes_freed;
        });
        status.progress(format!(
            "{kept} shard files kept, {deleted} orphans deleted, {} pack files compacted this pass",
            compacted.packs_removed
        ));
        Ok(())
    }
}

impl Worker for OrphanCollector {
    type Counters = GcCounters;

    fn name(&self) -> &'static str {
        "gc"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn pass<'a>(
        &'a mut self,
        status: &'a StatusHandle<GcCounters>,
    ) -> BoxFuture<'a, Result<(), WorkerError>> {
        Box::pin(self.collect(status))
    }
}
