//! The node's audit sink: collects audit records from every request and
//! commits them to the replicated audit log in batches, so auditing costs
//! one Raft round per batch rather than per call. A caller that must not
//! proceed unaudited (a read, before its data is sent) waits for its
//! record's commit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::refusals::{Refusals, REFUSAL_INTERVAL};
use crate::meta::audit::AuditRecord;
use crate::meta::{now_ms, Command};
use crate::raft::Cluster;

/// Most records in one batch.
const BATCH: usize = 512;
/// How long a batch waits for company after its first record.
const LINGER: Duration = Duration::from_millis(2);

type Pending = (AuditRecord, oneshot::Sender<Result<(), String>>);

/// Hands audit records to the batching task.
#[derive(Clone)]
pub struct AuditSink {
    node: u64,
    tx: mpsc::Sender<Pending>,
    /// Refused calls of the current interval (see [`Refusals`]).
    refusals: Arc<Refusals>,
    /// Refusals a caller may have per interval before it is refused at
    /// once.
    refusal_limit: u64,
}

impl AuditSink {
    /// Starts the batching task for `cluster`'s node, and the task that
    /// records the refusals of each interval.
    pub fn spawn(cluster: Arc<Cluster>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Pending>(4096);
        let node = cluster.config().node_id;
        let refusals = Arc::new(Refusals::default());
        let refusal_limit = cluster.config().admission.max_refusals_per_sec as u64;
        {
            let (refusals, tx) = (refusals.clone(), tx.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(REFUSAL_INTERVAL);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    for record in refusals.drain(node) {
                        // Nobody waits for these: the refused calls have
                        // been answered.
                        let (done, _) = oneshot::channel();
                        if tx.send((record, done)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + LINGER;
                while batch.len() < BATCH {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(p)) => batch.push(p),
                        _ => break,
                    }
                }
                let (records, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let result = cluster
                    .propose(Command::AppendAudit { records })
                    .await
                    .map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::error!(error = %e, "audit batch not committed");
                }
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        });
        Self {
            node,
            tx,
            refusals,
            refusal_limit,
        }
    }

    /// Records a read before its answer is sent: if the record cannot be
    /// committed, the answer is withheld (`Unavailable`). A refusal is
    /// counted with its caller's others of this interval instead.
    pub async fn before<T>(
        &self,
        principal: &str,
        action: &str,
        (bucket, key): (&str, &str),
        sha: &str,
        result: Result<T, tonic::Status>,
    ) -> Result<T, tonic::Status> {
        let outcome = super::outcome_of(&result);
        if let Err(status) = &result {
            if is_refusal(status) {
                self.refused(principal, action, bucket, key, &outcome);
                return result;
            }
        }
        match self
            .record(principal, action, bucket, key, sha, &outcome)
            .await
        {
            Ok(()) => result,
            Err(e) => Err(tonic::Status::unavailable(format!(
                "the {action} could not be recorded in the audit log ({e}); it is not served"
            ))),
        }
    }

    /// Records a call after the fact (a change already made cannot be
    /// undone by a record that fails, which is logged loudly instead); a
    /// refusal is counted with its caller's others of this interval.
    pub async fn after<T>(
        &self,
        principal: &str,
        action: &str,
        (bucket, key): (&str, &str),
        sha: &str,
        result: &Result<T, tonic::Status>,
    ) {
        let outcome = super::outcome_of(result);
        if let Err(status) = result {
            if is_refusal(status) {
                self.refused(principal, action, bucket, key, &outcome);
                return;
            }
        }
        if let Err(e) = self
            .record(principal, action, bucket, key, sha, &outcome)
            .await
        {
            tracing::error!(action, bucket, key, outcome, error = %e, "AUDIT RECORD LOST");
        }
    }

    /// Counts a refused call of `caller` (the principal, or
    /// `anonymous@IP`): on record with the others of this interval.
    pub fn refused(&self, caller: &str, action: &str, bucket: &str, key: &str, outcome: &str) {
        self.refusals.count(caller, action, bucket, key, outcome);
    }

    /// Whether `caller` has had its limit of refusals this interval: its
    /// calls are then refused at once.
    pub fn refusing(&self, caller: &str) -> bool {
        self.refusals.of(caller) >= self.refusal_limit
    }

    /// Records an event and waits until it is committed.
    #[allow(clippy::too_many_arguments)]
    pub async fn record(
        &self,
        principal: &str,
        action: &str,
        bucket: &str,
        key: &str,
        object_sha256: &str,
        outcome: &str,
    ) -> Result<(), String> {
        let record = AuditRecord {
            time_ms: now_ms(),
            node: self.node,
            principal: principal.to_string(),
            action: action.to_string(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            object_sha256: object_sha256.to_string(),
            outcome: outcome.to_string(),
        };
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((record, tx))
            .await
            .map_err(|_| "audit sink stopped".to_string())?;
        rx.await.map_err(|_| "audit sink stopped".to_string())?
    }
}

/// Whether a failed call was refused at the door (no or bad credentials,
/// no role, over a limit): such refusals are on record merged.
pub fn is_refusal(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
            | tonic::Code::ResourceExhausted
    )
}
