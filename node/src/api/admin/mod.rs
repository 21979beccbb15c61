//! The `tresor.v1.Admin` service. Calls that need the leader are forwarded to
//! it by whichever node receives them.

mod access;
mod audit;
mod buckets;
mod checkpoints;
mod cluster;
mod convert;
mod custody;
mod keys;
mod receipts;
mod retention;
mod s3_keys;
mod uploads;
mod workers;

use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;
use tresor_proto::v1::admin_server::Admin;

use super::audit::AuditSink;
use super::auth::{Action, Authorizer, Caller, PRINCIPAL_HEADER};
use super::{outcome_of, to_status};
use crate::meta::Grant;
use crate::objects::DataPlane;
use crate::raft::{CaughtUp, Cluster};
use crate::workers::{Counters, Workers};

/// Marks a request forwarded by another node, so it is never forwarded twice.
const FORWARDED_BY: &str = "tresor-forwarded-by";

/// Admin API of one node.
pub struct AdminService {
    cluster: Arc<Cluster>,
    plane: Arc<DataPlane>,
    workers: Arc<Workers>,
    audit: AuditSink,
    auth: Authorizer,
}

impl AdminService {
    /// Serves the cluster of `plane`, whose node runs `workers`, auditing
    /// changes to `audit`.
    pub fn new(plane: Arc<DataPlane>, workers: Arc<Workers>, audit: AuditSink) -> Self {
        let cluster = plane.cluster().clone();
        let auth = Authorizer::new(cluster.clone(), audit.clone());
        Self {
            cluster,
            plane,
            workers,
            audit,
            auth,
        }
    }

    /// Records an admin change executed on this node: `subject` goes in the
    /// entry's bucket field, `detail` in its key field.
    async fn audit_change<T>(
        &self,
        principal: &str,
        action: &str,
        subject: &str,
        detail: &str,
        result: &Result<T, Status>,
    ) {
        let outcome = outcome_of(result);
        if let Err(e) = self
            .audit
            .record(principal, action, subject, detail, "", &outcome)
            .await
        {
            tracing::error!(action, subject, detail, outcome, error = %e, "AUDIT RECORD LOST");
        }
    }

    fn repair_progress(&self) -> Option<pb::RepairProgress> {
        let repair = self
            .workers
            .list()
            .into_iter()
            .find_map(|w| match w.counters {
                Counters::Repair(c) => Some((w.state, w.progress, c)),
                _ => None,
            });
        let (state, progress, c) = repair?;
        Some(pb::RepairProgress {
            segments_total: c.segments_total,
            segments_to_repair: c.segments_to_repair,
            segments_repaired: c.segments_repaired,
            bytes_rebuilt: c.bytes_rebuilt,
            state: state.as_str().to_string(),
            progress,
        })
    }

    /// `None` when this node leads; otherwise a client to the leader.
    async fn leader_client(
        &self,
        metadata: &MetadataMap,
    ) -> Result<Option<tresor_client::AdminClient>, Status> {
        if self.cluster.is_leader() {
            return Ok(None);
        }
        if metadata.contains_key(FORWARDED_BY) {
            return Err(Status::unavailable("leadership is changing; retry shortly"));
        }
        let Some((id, addr)) = self.cluster.leader() else {
            return Err(Status::unavailable(
                "no leader elected at the moment (is the cluster initialised?); retry shortly",
            ));
        };
        let client = tresor_client::admin(&addr).await.map_err(|e| {
            Status::unavailable(format!("cannot reach leader node {id} at {addr}: {e}"))
        })?;
        Ok(Some(client))
    }

    /// A call to pass on to the leader on behalf of `caller`, who was
    /// authenticated here.
    fn forwarded<T>(&self, message: T, caller: &Caller) -> Request<T> {
        let mut request = Request::new(message);
        if let Ok(v) = self.cluster.config().node_id.to_string().parse() {
            request.metadata_mut().insert(FORWARDED_BY, v);
        }
        if let Some(Ok(v)) = caller.forwarded_name().map(str::parse) {
            request.metadata_mut().insert(PRINCIPAL_HEADER, v);
        }
        request
    }
}

/// How a change is recorded in the audit log: `subject` goes in the
/// entry's bucket field, `detail` in its key field.
pub(super) struct Audited {
    action: &'static str,
    subject: String,
    detail: String,
}

impl Audited {
    /// `action` on `subject`, with `detail`.
    pub(super) fn new(
        action: &'static str,
        subject: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            action,
            subject: subject.into(),
            detail: detail.into(),
        }
    }

    /// A grant or revocation: the bucket it concerns (if one) as subject,
    /// `<principal> <role>` as detail.
    fn grant(action: &'static str, grant: &Grant) -> Self {
        Self::new(
            action,
            grant.bucket.as_deref().unwrap_or(""),
            format!("{} {}", grant.principal, grant.role),
        )
    }
}

impl AdminService {
    /// The shape every change to the cluster shares: authorise `action`
    /// here and `check` the request; unless this node leads, pass the call
    /// on to the leader (`forward`); otherwise carry it out (`run`, which
    /// also says how it is recorded) and record it in the audit log,
    /// whether it succeeded or not.
    async fn change<Req, Resp>(
        &self,
        request: Request<Req>,
        action: Action,
        check: impl FnOnce(&Req) -> Result<(), Status>,
        forward: impl AsyncFnOnce(
            tresor_client::AdminClient,
            Request<Req>,
        ) -> Result<Response<Resp>, Status>,
        run: impl AsyncFnOnce(Req) -> (Audited, Result<Resp, Status>),
    ) -> Result<Response<Resp>, Status> {
        let run = async move |req, _caller: String| run(req).await;
        self.change_in(request, action, |_| None, check, forward, run)
            .await
    }

    /// [`Self::change`] for a change to one bucket (named by `bucket` from
    /// the request): a grant on that bucket is enough. `run` also gets the
    /// caller's name.
    async fn change_in<Req, Resp>(
        &self,
        request: Request<Req>,
        action: Action,
        bucket: impl FnOnce(&Req) -> Option<String>,
        check: impl FnOnce(&Req) -> Result<(), Status>,
        forward: impl AsyncFnOnce(
            tresor_client::AdminClient,
            Request<Req>,
        ) -> Result<Response<Resp>, Status>,
        run: impl AsyncFnOnce(Req, String) -> (Audited, Result<Resp, Status>),
    ) -> Result<Response<Resp>, Status> {
        let bucket = bucket(request.get_ref());
        let caller = self
            .auth
            .check(&request, action, bucket.as_deref(), "")
            .await?;
        check(request.get_ref())?;
        if let Some(leader) = self.leader_client(request.metadata()).await? {
            return forward(leader, self.forwarded(request.into_inner(), &caller)).await;
        }
        let (entry, result) = run(request.into_inner(), caller.name().to_string()).await;
        self.audit_change(
            caller.name(),
            entry.action,
            &entry.subject,
            &entry.detail,
            &result,
        )
        .await;
        result.map(Response::new)
    }

    /// Makes sure this node caught up during the request: the authorizer
    /// did unless it answered from local state.
    async fn catch_up(&self, caller: &Caller) -> Result<CaughtUp, Status> {
        match caller.caught_up() {
            Some(caught_up) => Ok(caught_up),
            None => self.cluster.linearizable_read().await.map_err(to_status),
        }
    }
}

/// Every admin call, each handled in the file of its area.
#[tonic::async_trait]
impl Admin for AdminService {
    async fn init(
        &self,
        request: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        AdminService::init(self, request).await
    }

    async fn node_info(
        &self,
        request: Request<pb::NodeInfoRequest>,
    ) -> Result<Response<pb::NodeInfoResponse>, Status> {
        AdminService::node_info(self, request).await
    }

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::AddNodeResponse>, Status> {
        AdminService::add_node(self, request).await
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        AdminService::remove_node(self, request).await
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        AdminService::status(self, request).await
    }

    async fn create_bucket(
        &self,
        request: Request<pb::CreateBucketRequest>,
    ) -> Result<Response<pb::CreateBucketResponse>, Status> {
        AdminService::create_bucket(self, request).await
    }

    async fn list_buckets(
        &self,
        request: Request<pb::ListBucketsRequest>,
    ) -> Result<Response<pb::ListBucketsResponse>, Status> {
        AdminService::list_buckets(self, request).await
    }

    async fn workers(
        &self,
        request: Request<pb::WorkersRequest>,
    ) -> Result<Response<pb::WorkersResponse>, Status> {
        AdminService::workers(self, request).await
    }

    async fn run_worker(
        &self,
        request: Request<pb::RunWorkerRequest>,
    ) -> Result<Response<pb::RunWorkerResponse>, Status> {
        AdminService::run_worker(self, request).await
    }

    async fn drain_node(
        &self,
        request: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        AdminService::drain_node(self, request).await
    }

    async fn audit_log(
        &self,
        request: Request<pb::AuditLogRequest>,
    ) -> Result<Response<pb::AuditLogResponse>, Status> {
        AdminService::audit_log(self, request).await
    }

    async fn audit_verify(
        &self,
        request: Request<pb::AuditVerifyRequest>,
    ) -> Result<Response<pb::AuditVerifyResponse>, Status> {
        AdminService::audit_verify(self, request).await
    }

    async fn create_principal(
        &self,
        request: Request<pb::CreatePrincipalRequest>,
    ) -> Result<Response<pb::CreatePrincipalResponse>, Status> {
        AdminService::create_principal(self, request).await
    }

    async fn delete_principal(
        &self,
        request: Request<pb::DeletePrincipalRequest>,
    ) -> Result<Response<pb::DeletePrincipalResponse>, Status> {
        AdminService::delete_principal(self, request).await
    }

    async fn list_principals(
        &self,
        request: Request<pb::ListPrincipalsRequest>,
    ) -> Result<Response<pb::ListPrincipalsResponse>, Status> {
        AdminService::list_principals(self, request).await
    }

    async fn grant(
        &self,
        request: Request<pb::GrantRequest>,
    ) -> Result<Response<pb::GrantResponse>, Status> {
        AdminService::grant(self, request).await
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        AdminService::revoke(self, request).await
    }

    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        AdminService::create_token(self, request).await
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        AdminService::revoke_token(self, request).await
    }

    async fn delete_bucket(
        &self,
        request: Request<pb::DeleteBucketRequest>,
    ) -> Result<Response<pb::DeleteBucketResponse>, Status> {
        AdminService::delete_bucket(self, request).await
    }

    async fn create_s3_key(
        &self,
        request: Request<pb::CreateS3KeyRequest>,
    ) -> Result<Response<pb::CreateS3KeyResponse>, Status> {
        AdminService::create_s3_key(self, request).await
    }

    async fn list_s3_keys(
        &self,
        request: Request<pb::ListS3KeysRequest>,
    ) -> Result<Response<pb::ListS3KeysResponse>, Status> {
        AdminService::list_s3_keys(self, request).await
    }

    async fn revoke_s3_key(
        &self,
        request: Request<pb::RevokeS3KeyRequest>,
    ) -> Result<Response<pb::RevokeS3KeyResponse>, Status> {
        AdminService::revoke_s3_key(self, request).await
    }

    async fn rotate_keys(
        &self,
        request: Request<pb::RotateKeysRequest>,
    ) -> Result<Response<pb::RotateKeysResponse>, Status> {
        AdminService::rotate_keys(self, request).await
    }

    async fn create_retention(
        &self,
        request: Request<pb::CreateRetentionRequest>,
    ) -> Result<Response<pb::CreateRetentionResponse>, Status> {
        AdminService::create_retention(self, request).await
    }

    async fn list_retention(
        &self,
        request: Request<pb::ListRetentionRequest>,
    ) -> Result<Response<pb::ListRetentionResponse>, Status> {
        AdminService::list_retention(self, request).await
    }

    async fn set_bucket_retention(
        &self,
        request: Request<pb::SetBucketRetentionRequest>,
    ) -> Result<Response<pb::SetBucketRetentionResponse>, Status> {
        AdminService::set_bucket_retention(self, request).await
    }

    async fn extend_retention(
        &self,
        request: Request<pb::ExtendRetentionRequest>,
    ) -> Result<Response<pb::ExtendRetentionResponse>, Status> {
        AdminService::extend_retention(self, request).await
    }

    async fn place_hold(
        &self,
        request: Request<pb::PlaceHoldRequest>,
    ) -> Result<Response<pb::PlaceHoldResponse>, Status> {
        AdminService::place_hold(self, request).await
    }

    async fn release_hold(
        &self,
        request: Request<pb::ReleaseHoldRequest>,
    ) -> Result<Response<pb::ReleaseHoldResponse>, Status> {
        AdminService::release_hold(self, request).await
    }

    async fn list_holds(
        &self,
        request: Request<pb::ListHoldsRequest>,
    ) -> Result<Response<pb::ListHoldsResponse>, Status> {
        AdminService::list_holds(self, request).await
    }

    async fn list_receipts(
        &self,
        request: Request<pb::ListReceiptsRequest>,
    ) -> Result<Response<pb::ListReceiptsResponse>, Status> {
        AdminService::list_receipts(self, request).await
    }

    async fn get_receipt(
        &self,
        request: Request<pb::GetReceiptRequest>,
    ) -> Result<Response<pb::GetReceiptResponse>, Status> {
        AdminService::get_receipt(self, request).await
    }

    async fn export_custody(
        &self,
        request: Request<pb::ExportCustodyRequest>,
    ) -> Result<Response<pb::ExportCustodyResponse>, Status> {
        AdminService::export_custody(self, request).await
    }

    async fn audit_checkpoint(
        &self,
        request: Request<pb::AuditCheckpointRequest>,
    ) -> Result<Response<pb::AuditCheckpointResponse>, Status> {
        AdminService::audit_checkpoint(self, request).await
    }
    async fn list_uploads(
        &self,
        request: Request<pb::ListUploadsRequest>,
    ) -> Result<Response<pb::ListUploadsResponse>, Status> {
        AdminService::list_uploads(self, request).await
    }
}
