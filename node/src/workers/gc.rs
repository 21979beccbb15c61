//! Orphan collection, on every node: delete shard files that no manifest
//! references on this node, that belong to no upload in progress, and that
//! are older than the grace period.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use super::{StatusHandle, Worker};
use crate::raft::Cluster;
use crate::shards::ShardStore;

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

    async fn collect(&mut self, status: &StatusHandle) -> Result<(), String> {
        // List first, then read the metadata linearizably: a file listed
        // here whose manifest committed before the read is seen as
        // referenced.
        let store = self.store.clone();
        let files = tokio::task::spawn_blocking(move || store.list())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        self.cluster
            .linearizable_read()
            .await
            .map_err(|e| e.to_string())?;
        let me = self.cluster.config().node_id;
        let now = SystemTime::now();
        let (mut kept, mut deleted, mut bytes) = (0u64, 0u64, 0u64);
        for (id, len, modified) in files {
            let old = now
                .duration_since(modified)
                .is_ok_and(|age| age >= self.grace);
            let referenced = self
                .cluster
                .meta()
                .object_by_id(&id.object_id)
                .map_err(|e| e.to_string())?
                .and_then(|m| m.segments.get(id.segment as usize).cloned())
                .and_then(|s| s.shards.get(id.index as usize).cloned())
                .is_some_and(|l| l.node == Some(me));
            let uploading = || -> Result<bool, String> {
                Ok(self
                    .cluster
                    .meta()
                    .upload(&id.object_id)
                    .map_err(|e| e.to_string())?
                    .is_some())
            };
            if referenced || !old || uploading()? {
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
                Err(e) => return Err(e.to_string()),
            }
        }
        status.add("orphans_deleted", deleted);
        status.set("shard_files", kept);
        status.set("shard_bytes", bytes);
        status.progress(format!(
            "{kept} shard files kept, {deleted} orphans deleted this pass"
        ));
        Ok(())
    }
}

impl Worker for OrphanCollector {
    fn name(&self) -> &'static str {
        "gc"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn pass<'a>(&'a mut self, status: &'a StatusHandle) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.collect(status))
    }
}
