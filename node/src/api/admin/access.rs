//! Principals, their roles and their tokens.

use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;

use super::convert::*;
use super::{AdminService, Audited};
use crate::api::auth::{new_token, Action};
use crate::api::{meta_status, store_status, to_status};
use crate::meta::{
    now_ms, validate_bucket_name, validate_principal_name, Command, Grant, MetaError, Principal,
    Role, Token,
};
use crate::raft::ClusterError;

impl AdminService {
    pub(super) async fn create_principal(
        &self,
        request: Request<pb::CreatePrincipalRequest>,
    ) -> Result<Response<pb::CreatePrincipalResponse>, Status> {
        let check = |req: &pb::CreatePrincipalRequest| {
            validate_principal_name(&req.name).map_err(meta_status)
        };
        let run = async |req: pb::CreatePrincipalRequest| {
            let principal = Principal {
                name: req.name,
                created_ms: now_ms(),
            };
            let result = match self
                .cluster
                .propose(Command::CreatePrincipal {
                    principal: principal.clone(),
                })
                .await
            {
                // A retried proposal whose first attempt committed finds its own.
                Err(e @ ClusterError::Meta(MetaError::AlreadyExists(_))) => {
                    match self.cluster.meta().principal(&principal.name) {
                        Ok(Some(p)) if p == principal => Ok(()),
                        _ => Err(e),
                    }
                }
                other => other,
            }
            .map_err(to_status)
            .map(|()| pb::CreatePrincipalResponse {
                principal: Some(principal_pb(&principal, &[], &[])),
            });
            (Audited::new("principal create", "", principal.name), result)
        };
        self.change(
            request,
            Action::CreatePrincipal,
            check,
            async |mut leader, r| leader.create_principal(r).await,
            run,
        )
        .await
    }

    pub(super) async fn delete_principal(
        &self,
        request: Request<pb::DeletePrincipalRequest>,
    ) -> Result<Response<pb::DeletePrincipalResponse>, Status> {
        let run = async |req: pb::DeletePrincipalRequest| {
            let result = self
                .cluster
                .propose(Command::DeletePrincipal {
                    name: req.name.clone(),
                })
                .await
                .map_err(to_status)
                .map(|()| pb::DeletePrincipalResponse {});
            (Audited::new("principal delete", "", req.name), result)
        };
        self.change(
            request,
            Action::DeletePrincipal,
            |_| Ok(()),
            async |mut leader, r| leader.delete_principal(r).await,
            run,
        )
        .await
    }

    pub(super) async fn list_principals(
        &self,
        request: Request<pb::ListPrincipalsRequest>,
    ) -> Result<Response<pb::ListPrincipalsResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::ListPrincipals, None, "")
            .await?;
        self.catch_up(&caller).await?;
        let meta = self.cluster.meta();
        let grants = meta.grants().map_err(store_status)?;
        let tokens = meta.tokens().map_err(store_status)?;
        let principals = meta
            .principals()
            .map_err(store_status)?
            .iter()
            .map(|p| {
                let g: Vec<Grant> = grants
                    .iter()
                    .filter(|g| g.principal == p.name)
                    .cloned()
                    .collect();
                let t: Vec<Token> = tokens
                    .iter()
                    .filter(|t| t.principal == p.name)
                    .cloned()
                    .collect();
                principal_pb(p, &g, &t)
            })
            .collect();
        Ok(Response::new(pb::ListPrincipalsResponse { principals }))
    }

    pub(super) async fn grant(
        &self,
        request: Request<pb::GrantRequest>,
    ) -> Result<Response<pb::GrantResponse>, Status> {
        let check = |r: &pb::GrantRequest| grant_of(&r.principal, &r.role, &r.bucket).map(drop);
        let run = async |r: pb::GrantRequest| {
            let grant = match grant_of(&r.principal, &r.role, &r.bucket) {
                Ok(g) => g,
                Err(e) => return (Audited::new("grant", "", r.principal), Err(e)),
            };
            let result = self
                .cluster
                .propose(Command::Grant {
                    grant: grant.clone(),
                })
                .await
                .map_err(to_status)
                .map(|()| pb::GrantResponse {});
            (Audited::grant("grant", &grant), result)
        };
        self.change(
            request,
            Action::Grant,
            check,
            async |mut leader, r| leader.grant(r).await,
            run,
        )
        .await
    }

    pub(super) async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let check = |r: &pb::RevokeRequest| grant_of(&r.principal, &r.role, &r.bucket).map(drop);
        let run = async |r: pb::RevokeRequest| {
            let grant = match grant_of(&r.principal, &r.role, &r.bucket) {
                Ok(g) => g,
                Err(e) => return (Audited::new("revoke", "", r.principal), Err(e)),
            };
            let result = self
                .cluster
                .propose(Command::Revoke {
                    grant: grant.clone(),
                })
                .await
                .map_err(to_status)
                .map(|()| pb::RevokeResponse {});
            (Audited::grant("revoke", &grant), result)
        };
        self.change(
            request,
            Action::Revoke,
            check,
            async |mut leader, r| leader.revoke(r).await,
            run,
        )
        .await
    }

    pub(super) async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let check = |req: &pb::CreateTokenRequest| {
            validate_principal_name(&req.principal).map_err(meta_status)
        };
        let run = async |req: pb::CreateTokenRequest| {
            let principal = req.principal;
            let (token, text) = new_token(&principal);
            let result = match self
                .cluster
                .propose(Command::CreateToken {
                    token: token.clone(),
                })
                .await
            {
                // A retried proposal whose first attempt committed finds its own.
                Err(e @ ClusterError::Meta(MetaError::AlreadyExists(_))) => {
                    match self.cluster.meta().token(&token.id) {
                        Ok(Some(t)) if t == token => Ok(()),
                        _ => Err(e),
                    }
                }
                other => other,
            }
            .map_err(to_status);
            let detail = format!("{principal} token {}", token.id);
            let result = result.map(|()| pb::CreateTokenResponse {
                id: token.id,
                token: text,
                principal,
            });
            (Audited::new("token create", "", detail), result)
        };
        self.change(
            request,
            Action::CreateToken,
            check,
            async |mut leader, r| leader.create_token(r).await,
            run,
        )
        .await
    }

    pub(super) async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let run = async |req: pb::RevokeTokenRequest| {
            let id = req.id;
            let owner = self
                .cluster
                .meta()
                .token(&id)
                .ok()
                .flatten()
                .map(|t| t.principal);
            let result = self
                .cluster
                .propose(Command::RevokeToken { id: id.clone() })
                .await
                .map_err(to_status);
            let detail = match owner {
                Some(p) => format!("{p} token {id}"),
                None => format!("token {id}"),
            };
            let result = result.map(|()| pb::RevokeTokenResponse {});
            (Audited::new("token revoke", "", detail), result)
        };
        self.change(
            request,
            Action::RevokeToken,
            |_| Ok(()),
            async |mut leader, r| leader.revoke_token(r).await,
            run,
        )
        .await
    }
}

/// Checks the fields of a grant or revoke request.
fn grant_of(principal: &str, role: &str, bucket: &Option<String>) -> Result<Grant, Status> {
    validate_principal_name(principal).map_err(meta_status)?;
    let role = Role::parse(role).map_err(meta_status)?;
    if let Some(b) = bucket {
        validate_bucket_name(b).map_err(meta_status)?;
    }
    Ok(Grant {
        principal: principal.to_string(),
        role,
        bucket: bucket.clone(),
    })
}
