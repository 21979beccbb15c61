//! Principals, their roles and their tokens.

use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;

use super::convert::*;
use super::AdminService;
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
        let caller = self
            .auth
            .check(&request, Action::CreatePrincipal, None, "")
            .await?;
        validate_principal_name(&request.get_ref().name).map_err(meta_status)?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .create_principal(self.forwarded(request.into_inner(), &caller))
                .await;
        }
        let principal = Principal {
            name: request.into_inner().name,
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
        .map_err(to_status);
        self.audit_change(
            caller.name(),
            "principal create",
            "",
            &principal.name,
            &result,
        )
        .await;
        result?;
        Ok(Response::new(pb::CreatePrincipalResponse {
            principal: Some(principal_pb(&principal, &[], &[])),
        }))
    }

    pub(super) async fn delete_principal(
        &self,
        request: Request<pb::DeletePrincipalRequest>,
    ) -> Result<Response<pb::DeletePrincipalResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::DeletePrincipal, None, "")
            .await?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .delete_principal(self.forwarded(request.into_inner(), &caller))
                .await;
        }
        let name = request.into_inner().name;
        let result = self
            .cluster
            .propose(Command::DeletePrincipal { name: name.clone() })
            .await
            .map_err(to_status);
        self.audit_change(caller.name(), "principal delete", "", &name, &result)
            .await;
        result?;
        Ok(Response::new(pb::DeletePrincipalResponse {}))
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
        let caller = self.auth.check(&request, Action::Grant, None, "").await?;
        let grant = grant_of(
            &request.get_ref().principal,
            &request.get_ref().role,
            &request.get_ref().bucket,
        )?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .grant(self.forwarded(request.into_inner(), &caller))
                .await;
        }
        let result = self
            .cluster
            .propose(Command::Grant {
                grant: grant.clone(),
            })
            .await
            .map_err(to_status);
        self.audit_grant(&caller, "grant", &grant, &result).await;
        result?;
        Ok(Response::new(pb::GrantResponse {}))
    }

    pub(super) async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let caller = self.auth.check(&request, Action::Revoke, None, "").await?;
        let grant = grant_of(
            &request.get_ref().principal,
            &request.get_ref().role,
            &request.get_ref().bucket,
        )?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .revoke(self.forwarded(request.into_inner(), &caller))
                .await;
        }
        let result = self
            .cluster
            .propose(Command::Revoke {
                grant: grant.clone(),
            })
            .await
            .map_err(to_status);
        self.audit_grant(&caller, "revoke", &grant, &result).await;
        result?;
        Ok(Response::new(pb::RevokeResponse {}))
    }

    pub(super) async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::CreateToken, None, "")
            .await?;
        validate_principal_name(&request.get_ref().principal).map_err(meta_status)?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .create_token(self.forwarded(request.into_inner(), &caller))
                .await;
        }
        let principal = request.into_inner().principal;
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
        self.audit_change(caller.name(), "token create", "", &detail, &result)
            .await;
        result?;
        Ok(Response::new(pb::CreateTokenResponse {
            id: token.id,
            token: text,
            principal,
        }))
    }

    pub(super) async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::RevokeToken, None, "")
            .await?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .revoke_token(self.forwarded(request.into_inner(), &caller))
                .await;
        }
        let id = request.into_inner().id;
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
        self.audit_change(caller.name(), "token revoke", "", &detail, &result)
            .await;
        result?;
        Ok(Response::new(pb::RevokeTokenResponse {}))
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
