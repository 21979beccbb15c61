//! Principals, grants, tokens and S3 access keys.

use super::super::keys::*;
use super::super::{encode, MetaStore, StoreError};
use super::misrouted;
use crate::meta::Writes;
use crate::meta::{is_s3_key_id, validate_principal_name, Command, MetaError, Role};

impl MetaStore {
    pub(super) fn apply_access(
        &self,
        command: &Command,
        batch: &mut Writes,
    ) -> Result<Result<(), MetaError>, StoreError> {
        match command {
            Command::CreatePrincipal { principal } => {
                if let Err(e) = validate_principal_name(&principal.name) {
                    return Ok(Err(e));
                }
                if self.principal(&principal.name)?.is_some() {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "principal {} already exists",
                        principal.name
                    ))));
                }
                batch.insert(principal_key(&principal.name), encode(principal));
            }
            Command::DeletePrincipal { name } => {
                if self.principal(name)?.is_none() {
                    return Ok(Err(no_principal(name)));
                }
                let grants = self.grants_of(name)?;
                if grants
                    .iter()
                    .any(|g| g.role == Role::Admin && g.bucket.is_none())
                    && !self.other_cluster_admin(name)?
                {
                    return Ok(Err(last_admin(name)));
                }
                for g in &grants {
                    batch.remove(grant_key(g));
                }
                for t in self.tokens()?.iter().filter(|t| t.principal == *name) {
                    batch.remove(token_key(&t.id));
                }
                for k in self.s3_keys()?.iter().filter(|k| k.principal == *name) {
                    batch.remove(s3_key_key(&k.id));
                }
                batch.remove(principal_key(name));
            }
            Command::Grant { grant } => {
                if self.principal(&grant.principal)?.is_none() {
                    return Ok(Err(no_principal(&grant.principal)));
                }
                if let Some(bucket) = &grant.bucket {
                    if self.bucket(bucket)?.is_none() {
                        return Ok(Err(MetaError::NotFound(format!(
                            "no bucket named {bucket} (a grant can only name an existing bucket)"
                        ))));
                    }
                }
                batch.insert(grant_key(grant), encode(grant));
            }
            Command::Revoke { grant } => {
                if !self.tree().contains_key(grant_key(grant))? {
                    if self.principal(&grant.principal)?.is_none() {
                        return Ok(Err(no_principal(&grant.principal)));
                    }
                    return Ok(Err(MetaError::NotFound(format!(
                        "{} does not hold role {}{}",
                        grant.principal,
                        grant.role,
                        match &grant.bucket {
                            Some(b) => format!(" on bucket {b}"),
                            None => " on all buckets".to_string(),
                        }
                    ))));
                }
                if grant.role == Role::Admin
                    && grant.bucket.is_none()
                    && !self.other_cluster_admin(&grant.principal)?
                {
                    return Ok(Err(last_admin(&grant.principal)));
                }
                batch.remove(grant_key(grant));
            }
            Command::CreateToken { token } => {
                if !is_lower_hex(&token.id, 16) || !is_lower_hex(&token.secret_sha256, 64) {
                    return Ok(Err(MetaError::InvalidArgument(
                        "a token needs a 16-digit hex id and a 64-digit hex secret hash".into(),
                    )));
                }
                if self.principal(&token.principal)?.is_none() {
                    return Ok(Err(no_principal(&token.principal)));
                }
                if self.token(&token.id)?.is_some() {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "token id {} is in use",
                        token.id
                    ))));
                }
                batch.insert(token_key(&token.id), encode(token));
            }
            Command::RevokeToken { id } => {
                if self.token(id)?.is_none() {
                    return Ok(Err(MetaError::NotFound(format!(
                        "no token with id {id} (revoked already?)"
                    ))));
                }
                batch.remove(token_key(id));
            }
            Command::CreateS3Key { key } => {
                if !is_s3_key_id(&key.id) {
                    return Ok(Err(MetaError::InvalidArgument(format!(
                        "an S3 access key id is TRS and 17 upper-case letters or digits, not {:?}",
                        key.id
                    ))));
                }
                if self.principal(&key.principal)?.is_none() {
                    return Ok(Err(no_principal(&key.principal)));
                }
                if self.s3_key(&key.id)?.is_some() {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "S3 access key id {} is in use",
                        key.id
                    ))));
                }
                batch.insert(s3_key_key(&key.id), encode(key));
            }
            Command::RevokeS3Key { id } => {
                if self.s3_key(id)?.is_none() {
                    return Ok(Err(MetaError::NotFound(format!(
                        "no S3 access key {id} (revoked already?)"
                    ))));
                }
                batch.remove(s3_key_key(id));
            }
            _ => return Ok(Err(misrouted("access"))),
        }
        Ok(Ok(()))
    }
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn no_principal(name: &str) -> MetaError {
    MetaError::NotFound(format!(
        "no principal named {name} (create it with `tresor-node principal create {name}`)"
    ))
}

fn last_admin(name: &str) -> MetaError {
    MetaError::FailedPrecondition(format!(
        "{name} is the only principal with role admin on all buckets; \
         grant admin to another principal first, or nobody could administer the cluster"
    ))
}
