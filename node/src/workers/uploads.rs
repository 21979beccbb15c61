//! Upload expiry: the leader aborts an upload that has shown no progress for
//! `upload_expiry` (its coordinator died, or its client went silent), and
//! every node aborts the uploads it coordinated before it last started (a
//! restarted process has none in progress). Aborted through Raft, an
//! upload's manifest can never commit and orphan collection may take its
//! shard files. Walks the upload records in pages with a cursor, never all
//! at once.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{StatusHandle, Worker, WorkerError};
use crate::meta::audit::AuditRecord;
use crate::meta::{now_ms, Command, MetaError, ObjectId};
use crate::raft::Cluster;

counters! {
    /// What upload expiry has seen.
    UploadCounters => Uploads {
        /// Uploads aborted for silence since the node started.
        uploads_expired,
        /// Uploads in progress at the last pass.
        uploads_in_progress,
    }
}

/// Upload records read per page.
const PAGE: usize = 500;

/// The upload expiry worker.
pub struct UploadExpiry {
    cluster: Arc<Cluster>,
    expiry: Duration,
    /// The same for resumable upload sessions.
    session_expiry: Duration,
    interval: Duration,
    /// When this process started, Unix milliseconds.
    boot_ms: u64,
}

impl UploadExpiry {
    /// Aborts uploads silent for longer than `expiry` (`session_expiry`
    /// for resumable sessions), checking every `interval`.
    pub fn new(
        cluster: Arc<Cluster>,
        expiry: Duration,
        session_expiry: Duration,
        interval: Duration,
    ) -> Self {
        Self {
            cluster,
            expiry,
            session_expiry,
            interval,
            boot_ms: now_ms(),
        }
    }

    async fn expire(&mut self, status: &StatusHandle<UploadCounters>) -> Result<(), WorkerError> {
        let leader = self.cluster.is_leader();
        let me = self.cluster.config().node_id;
        self.cluster.linearizable_read().await?;
        let mut after: Option<ObjectId> = None;
        let (mut live, mut expired) = (0u64, 0u64);
        loop {
            let page = self.cluster.meta().uploads(after.as_ref(), PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(last.object_id);
            for upload in &page {
                // A single-stream upload this node coordinated before it
                // restarted is dead (a session lives on: any node resumes
                // it). Otherwise the leader's clock against the
                // coordinator's: a leader whose clock runs ahead expires
                // early by its lead, which the expiry (an hour by default)
                // dwarfs.
                let session = upload.session.is_some();
                let orphaned =
                    !session && upload.coordinator == me && upload.started_ms < self.boot_ms;
                let expiry = if session {
                    self.session_expiry
                } else {
                    self.expiry
                };
                let silent =
                    now_ms().saturating_sub(upload.touched_ms) >= expiry.as_millis() as u64;
                if !(orphaned || leader && silent) {
                    live += 1;
                    continue;
                }
                match self
                    .cluster
                    .propose(Command::AbortUpload {
                        object_id: upload.object_id,
                        audit: upload
                            .session
                            .as_ref()
                            .map(|s| expiry_record(me, upload, s)),
                        // Judged by this progress: a client that resumed
                        // meanwhile keeps its session.
                        if_touched_ms: Some(upload.touched_ms),
                    })
                    .await
                {
                    Ok(()) => {
                        expired += 1;
                        status.count(|c| c.uploads_expired += 1);
                        tracing::warn!(
                            object = %upload.object_id,
                            bucket = upload.bucket,
                            key = upload.key,
                            coordinator = upload.coordinator,
                            "upload expired: no progress; its shard files are orphans now"
                        );
                    }
                    // Committed, aborted or resumed meanwhile: not ours to
                    // expire.
                    Err(crate::raft::ClusterError::Meta(
                        MetaError::AlreadyExists(_)
                        | MetaError::NotFound(_)
                        | MetaError::FailedPrecondition(_),
                    )) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if page.len() < PAGE {
                break;
            }
        }
        status.count(|c| c.uploads_in_progress = live);
        status.progress(format!(
            "{live} upload(s) in progress, {expired} expired this pass"
        ));
        Ok(())
    }
}

/// The audit record of a resumable session's expiry: on record as the
/// session's principal's upload, aborted by the cluster.
fn expiry_record(
    node: u64,
    upload: &crate::meta::UploadRecord,
    session: &crate::meta::UploadSession,
) -> AuditRecord {
    AuditRecord {
        time_ms: now_ms(),
        node,
        principal: session.principal.clone(),
        action: "upload expire".into(),
        bucket: upload.bucket.clone(),
        key: upload.key.clone(),
        object_sha256: String::new(),
        outcome: format!(
            "ok: no progress since {}; {} bytes durable were discarded",
            upload.touched_ms,
            session.durable_bytes()
        ),
    }
}

impl Worker for UploadExpiry {
    type Counters = UploadCounters;

    fn name(&self) -> &'static str {
        "uploads"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn pass<'a>(
        &'a mut self,
        status: &'a StatusHandle<UploadCounters>,
    ) -> BoxFuture<'a, Result<(), WorkerError>> {
        Box::pin(self.expire(status))
    }
}
