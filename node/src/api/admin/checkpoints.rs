//! Signed checkpoints of the audit history: made on demand (the leader's
//! sealer seals the tail and signs one) or fetched as made, to publish.

use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;

use super::AdminService;
use crate::api::auth::Action;
use crate::api::{store_status, to_status};
use crate::meta::audit::StoredCheckpoint;
use crate::meta::{Command, NodeState};

/// How long a request for a new checkpoint waits for the sealer: below
/// the CLI's default deadline (60 s).
const CHECKPOINT_WAIT: Duration = Duration::from_secs(45);

fn checkpoint_pb(c: StoredCheckpoint) -> pb::AuditCheckpointResponse {
    pb::AuditCheckpointResponse {
        checkpoint_json: c.signed,
        segments: c.segments,
        last_seq: c.last_seq,
        root: c.root,
    }
}

impl AdminService {
    pub(super) async fn audit_checkpoint(
        &self,
        request: Request<pb::AuditCheckpointRequest>,
    ) -> Result<Response<pb::AuditCheckpointResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::AuditCheckpoint, None, "")
            .await?;
        self.catch_up(&caller).await?;
        let meta = self.cluster.meta();
        let segments = request.into_inner().segments;
        if segments > 0 {
            return match meta.checkpoint(segments).map_err(store_status)? {
                Some(c) => Ok(Response::new(checkpoint_pb(c))),
                None => Err(Status::not_found(format!(
                    "no checkpoint was made of {segments} sealed segments"
                ))),
            };
        }
        if self.plane.signer().is_none() {
            return Err(Status::failed_precondition(
                "this cluster has no signer (insecure = true): its checkpoints would prove nothing",
            ));
        }
        let active = meta
            .nodes()
            .map_err(store_status)?
            .iter()
            .filter(|n| n.state == NodeState::Active)
            .count();
        if active < 2 {
            return Err(Status::failed_precondition(format!(
                "checkpoints cover sealed audit segments, and sealing needs at least two active \
                 nodes ({active} now)"
            )));
        }
        let result = self.request_checkpoint().await;
        let detail = match &result {
            Ok(c) => format!(
                "{} segments to entry {}, root {}",
                c.segments, c.last_seq, c.root
            ),
            Err(_) => String::new(),
        };
        self.audit_change(caller.name(), "audit checkpoint", "", &detail, &result)
            .await;
        Ok(Response::new(checkpoint_pb(result?)))
    }

    /// Asks the leader's sealer for a checkpoint of the log as it is now
    /// and waits for it.
    async fn request_checkpoint(&self) -> Result<StoredCheckpoint, Status> {
        self.cluster
            .propose(Command::RequestCheckpoint)
            .await
            .map_err(to_status)?;
        let meta = self.cluster.meta();
        self.cluster.linearizable_read().await.map_err(to_status)?;
        let wanted = meta.checkpoint_wanted().map_err(store_status)?;
        let deadline = Instant::now() + CHECKPOINT_WAIT;
        loop {
            if let Some(c) = meta.latest_checkpoint().map_err(store_status)? {
                if c.last_seq >= wanted {
                    return Ok(c);
                }
            }
            if Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "no checkpoint covering entry {wanted} within {}s: see `tresor-node workers` \
                     (audit-seal) on the leader",
                    CHECKPOINT_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
