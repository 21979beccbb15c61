//! The life of an upload in the replicated state, beside the write path
//! that streams its bytes: kept alive while it runs, abandoned when it
//! fails before its commit, settled (committed or aborted, never left in
//! doubt) when the answer to its commit was lost.

use std::time::Duration;

use super::DataPlane;
use crate::meta::{now_ms, Command, MetaError, ObjectId, SegmentManifest};
use crate::raft::ClusterError;

/// How long a coordinator keeps trying to learn whether a commit whose
/// answer was lost went through, before it reports the outcome unknown.
const SETTLE_WINDOW: Duration = Duration::from_secs(60);
/// An upload in progress shows it is alive this often (a fraction of the
/// shortest expiry a config may set), so the leader never expires it.
const TOUCH_EVERY: Duration = Duration::from_secs(20);

/// How an upload whose commit answer was lost ended.
pub(super) enum Settled {
    /// The manifest is committed: the object exists.
    Committed,
    /// The upload is aborted: its manifest can never commit.
    Aborted,
    /// Neither could be established in time.
    Unknown(String),
}

/// The nodes holding shard files of `segments`.
fn used_nodes(segments: &[SegmentManifest]) -> Vec<u64> {
    segments
        .iter()
        .flat_map(|s| s.shards.iter().filter_map(|l| l.node))
        .collect()
}

/// Aborts the keep-alive task of an upload when the upload ends, however
/// it ends.
pub(super) struct KeepAlive(pub(super) tokio::task::JoinHandle<()>);

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Touches the upload's record every [`TOUCH_EVERY`], so the leader does
/// not expire an upload that is slow but alive.
pub(super) async fn keep_alive(cluster: std::sync::Arc<crate::raft::Cluster>, object: ObjectId) {
    loop {
        tokio::time::sleep(TOUCH_EVERY).await;
        let touched = cluster
            .propose(Command::TouchUpload {
                object_id: object,
                touched_ms: now_ms(),
            })
            .await;
        if let Err(e) = touched {
            tracing::warn!(%object, error = %e, "could not show the upload is alive");
        }
    }
}

pub(super) fn delete_shards_of(plane: &DataPlane, object: ObjectId, segments: &[SegmentManifest]) {
    plane.delete_shards(object, used_nodes(segments));
}

impl DataPlane {
    /// Ends an upload that will not be committed (no `CreateObject` was
    /// proposed for it): its shards are deleted now, and its record is
    /// aborted in the background (if that fails it expires).
    pub(super) fn abandon_upload(&self, object: ObjectId, segments: &[SegmentManifest]) {
        delete_shards_of(self, object, segments);
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            if let Err(e) = cluster
                .propose(Command::AbortUpload {
                    object_id: object,
                    audit: None,
                    if_touched_ms: None,
                })
                .await
            {
                tracing::debug!(%object, error = %e, "upload record left to expire");
            }
        });
    }

    /// Learns whether the upload's manifest was committed, by aborting the
    /// upload: the abort either commits (from then on the manifest never
    /// can) or is refused because the manifest is there. Retries through
    /// leader changes for up to [`SETTLE_WINDOW`].
    pub(super) async fn settle_upload(&self, object: ObjectId) -> Settled {
        let deadline = tokio::time::Instant::now() + SETTLE_WINDOW;
        loop {
            match self
                .cluster
                .propose(Command::AbortUpload {
                    object_id: object,
                    audit: None,
                    if_touched_ms: None,
                })
                .await
            {
                // Aborted now, or before (by expiry, or by a first attempt
                // of this proposal): either way it can never commit.
                Ok(()) | Err(ClusterError::Meta(MetaError::NotFound(_))) => {
                    return Settled::Aborted
                }
                Err(ClusterError::Meta(MetaError::AlreadyExists(_))) => {
                    tracing::info!(%object, "commit answer was lost, but the object is committed");
                    return Settled::Committed;
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Settled::Unknown(e.to_string())
                }
                Err(e) => {
                    tracing::debug!(%object, error = %e, "cannot settle the upload yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
