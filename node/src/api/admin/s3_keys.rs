//! S3 access keys of principals: made, listed and revoked by admins.

use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;

use super::{AdminService, Audited};
use crate::api::auth::Action;
use crate::api::{meta_status, object_status, store_status, to_status};
use crate::meta::{validate_principal_name, Command, MetaError};
use crate::raft::ClusterError;

impl AdminService {
    pub(super) async fn create_s3_key(
        &self,
        request: Request<pb::CreateS3KeyRequest>,
    ) -> Result<Response<pb::CreateS3KeyResponse>, Status> {
        let check = |req: &pb::CreateS3KeyRequest| {
            validate_principal_name(&req.principal).map_err(meta_status)
        };
        let run = async |req: pb::CreateS3KeyRequest| {
            let principal = req.principal;
            let made = self.plane.new_s3_key(&principal).map_err(object_status);
            let result = match made {
                Err(status) => Err(status),
                Ok((key, secret)) => {
                    let id = key.id.clone();
                    match self
                        .cluster
                        .propose(Command::CreateS3Key { key: key.clone() })
                        .await
                    {
                        // A retried proposal whose first attempt committed finds its own.
                        Err(e @ ClusterError::Meta(MetaError::AlreadyExists(_))) => {
                            match self.cluster.meta().s3_key(&id) {
                                Ok(Some(k)) if k == key => Ok(()),
                                _ => Err(e),
                            }
                        }
                        other => other,
                    }
                    .map_err(to_status)
                    .map(|()| pb::CreateS3KeyResponse {
                        access_key_id: id,
                        secret_access_key: secret,
                        principal: principal.clone(),
                    })
                }
            };
            let detail = match &result {
                Ok(r) => format!("{principal} s3 key {}", r.access_key_id),
                Err(_) => format!("{principal} s3 key"),
            };
            (Audited::new("s3-key create", "", detail), result)
        };
        self.change(
            request,
            Action::CreateS3Key,
            check,
            async |mut leader, r| leader.create_s3_key(r).await,
            run,
        )
        .await
    }

    pub(super) async fn list_s3_keys(
        &self,
        request: Request<pb::ListS3KeysRequest>,
    ) -> Result<Response<pb::ListS3KeysResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::ListS3Keys, None, "")
            .await?;
        self.catch_up(&caller).await?;
        let keys = self.cluster.meta().s3_keys().map_err(store_status)?;
        Ok(Response::new(pb::ListS3KeysResponse {
            keys: keys
                .into_iter()
                .map(|k| pb::S3KeyInfo {
                    access_key_id: k.id,
                    principal: k.principal,
                    created_ms: k.created_ms,
                })
                .collect(),
        }))
    }

    pub(super) async fn revoke_s3_key(
        &self,
        request: Request<pb::RevokeS3KeyRequest>,
    ) -> Result<Response<pb::RevokeS3KeyResponse>, Status> {
        let run = async |req: pb::RevokeS3KeyRequest| {
            let id = req.access_key_id;
            let owner = self.cluster.meta().s3_key(&id).ok().flatten();
            let result = self
                .cluster
                .propose(Command::RevokeS3Key { id: id.clone() })
                .await
                .map_err(to_status)
                .map(|()| pb::RevokeS3KeyResponse {});
            let detail = match owner {
                Some(k) => format!("{} s3 key {id}", k.principal),
                None => format!("s3 key {id}"),
            };
            (Audited::new("s3-key revoke", "", detail), result)
        };
        self.change(
            request,
            Action::RevokeS3Key,
            |_| Ok(()),
            async |mut leader, r| leader.revoke_s3_key(r).await,
            run,
        )
        .await
    }
}
