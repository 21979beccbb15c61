//! Deletion receipts: on the leader, every few seconds, issues the
//! receipts that deletions left due (see `objects/receipts.rs`), in
//! batches of 100 per commit, at most 1,000 per pass; what is left waits
//! for the next pass.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{StatusHandle, Worker, WorkerError};
use crate::meta::ObjectId;
use crate::objects::DataPlane;

counters! {
    /// What receipt issuing has done.
    ReceiptCounters => Receipts {
        /// Receipts signed and recorded since the node started.
        receipts_issued,
        /// Shard files removed for them.
        shard_files_removed,
        /// Receipts due when the last pass ended (at most 10,000 counted).
        receipts_due,
        /// Batches that failed and are retried on a later pass.
        failed,
    }
}

/// Receipts per commit.
const BATCH: usize = 100;
/// Receipts per pass, at most.
const PER_PASS: usize = 1_000;
/// How many due receipts the status counts, at most.
const DUE_COUNTED: usize = 10_000;

/// The receipt issuing worker.
pub struct ReceiptIssuer {
    plane: Arc<DataPlane>,
    interval: Duration,
}

impl ReceiptIssuer {
    /// Issues due receipts every `interval`, signed by the plane's signer
    /// (none on an insecure cluster: unsigned).
    pub fn new(plane: Arc<DataPlane>, interval: Duration) -> Self {
        Self { plane, interval }
    }

    async fn issue(&mut self, status: &StatusHandle<ReceiptCounters>) -> Result<(), WorkerError> {
        let cluster = self.plane.cluster().clone();
        if !cluster.is_leader() {
            status.progress("not the leader: the leader issues receipts");
            return Ok(());
        }
        let meta = cluster.meta();
        let (mut done, mut after): (usize, Option<ObjectId>) = (0, None);
        let outcome = loop {
            if done >= PER_PASS {
                break Ok(());
            }
            let page = meta.receipts_due(after.as_ref(), BATCH)?;
            let Some(last) = page.last().map(|(id, _)| *id) else {
                break Ok(());
            };
            let asked = page.len();
            match self.plane.issue_receipts(page).await {
                Ok(issued) => {
                    status.count(|c| {
                        c.receipts_issued += issued.receipts;
                        c.shard_files_removed += issued.shard_files;
                    });
                    done += asked;
                    after = Some(last);
                }
                Err(e) => {
                    status.count(|c| c.failed += 1);
                    break Err(WorkerError::from(e));
                }
            }
        };
        let due = meta.receipts_due_count(DUE_COUNTED)? as u64;
        status.count(|c| c.receipts_due = due);
        status.progress(format!("{done} receipt(s) issued this pass, {due} due"));
        outcome
    }
}

impl Worker for ReceiptIssuer {
    type Counters = ReceiptCounters;

    fn name(&self) -> &'static str {
        "receipts"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn pass<'a>(
        &'a mut self,
        status: &'a StatusHandle<ReceiptCounters>,
    ) -> BoxFuture<'a, Result<(), WorkerError>> {
        Box::pin(self.issue(status))
    }
}
