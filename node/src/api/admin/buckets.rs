//! Buckets.

use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;

use super::convert::*;
use super::{AdminService, Audited};
use crate::api::auth::{visible_buckets, Action};
use crate::api::{store_status, to_status};
use crate::meta::validate_bucket_name;

impl AdminService {
    pub(super) async fn create_bucket(
        &self,
        request: Request<pb::CreateBucketRequest>,
    ) -> Result<Response<pb::CreateBucketResponse>, Status> {
        // Validated here too, so bad input is refused without a round trip.
        let check = |req: &pb::CreateBucketRequest| {
            if crate::meta::audit::is_reserved_bucket(&req.name) {
                return Err(Status::invalid_argument(format!(
                    "bucket names starting with \"tresor.\" are kept for the cluster: {:?}",
                    req.name
                )));
            }
            validate_bucket_name(&req.name)
                .and_then(|_| crate::meta::validate_scheme(req.data, req.parity))
                .map_err(|e| to_status(e.into()))
        };
        let run = async |req: pb::CreateBucketRequest| {
            let result = self
                .cluster
                .create_bucket(
                    &req.name,
                    req.data,
                    req.parity,
                    Some(req.retention).filter(|r| !r.is_empty()),
                )
                .await
                .map_err(to_status)
                .map(|bucket| pb::CreateBucketResponse {
                    bucket: Some(bucket_pb(&bucket)),
                });
            (Audited::new("bucket create", req.name, ""), result)
        };
        self.change(
            request,
            Action::CreateBucket,
            check,
            async |mut leader, r| leader.create_bucket(r).await,
            run,
        )
        .await
    }

    pub(super) async fn delete_bucket(
        &self,
        request: Request<pb::DeleteBucketRequest>,
    ) -> Result<Response<pb::DeleteBucketResponse>, Status> {
        let check = |req: &pb::DeleteBucketRequest| {
            validate_bucket_name(&req.name).map_err(|e| to_status(e.into()))
        };
        let run = async |req: pb::DeleteBucketRequest| {
            let result = self
                .cluster
                .delete_bucket(&req.name)
                .await
                .map_err(to_status)
                .map(|()| pb::DeleteBucketResponse {});
            (Audited::new("bucket delete", req.name, ""), result)
        };
        self.change(
            request,
            Action::DeleteBucket,
            check,
            async |mut leader, r| leader.delete_bucket(r).await,
            run,
        )
        .await
    }

    pub(super) async fn list_buckets(
        &self,
        request: Request<pb::ListBucketsRequest>,
    ) -> Result<Response<pb::ListBucketsResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::ListBuckets, None, "")
            .await?;
        let visible = self.auth.grants(&caller)?.and_then(|g| visible_buckets(&g));
        let buckets = self.cluster.meta().buckets().map_err(store_status)?;
        Ok(Response::new(pb::ListBucketsResponse {
            buckets: buckets
                .iter()
                .filter(|b| visible.as_ref().is_none_or(|v| v.contains(&b.name)))
                .map(bucket_pb)
                .collect(),
        }))
    }
}
