//! Mapping of internal errors to gRPC status codes, in one place.

use tonic::Status;

use crate::meta::MetaError;
use crate::raft::ClusterError;

/// The gRPC status a client sees for `e`.
pub fn to_status(e: ClusterError) -> Status {
    match e {
        ClusterError::Meta(MetaError::AlreadyExists(m)) => Status::already_exists(m),
        ClusterError::Meta(MetaError::NotFound(m)) => Status::not_found(m),
        ClusterError::Meta(MetaError::InvalidArgument(m)) => Status::invalid_argument(m),
        ClusterError::Meta(MetaError::FailedPrecondition(m)) => Status::failed_precondition(m),
        ClusterError::NotLeader { leader } => Status::unavailable(match leader {
            Some((id, addr)) => format!("not the leader; leader is node {id} at {addr}"),
            None => "no leader elected at the moment; retry shortly".to_string(),
        }),
        ClusterError::Unavailable(m) => Status::unavailable(m),
        ClusterError::Storage(m) => Status::internal(format!("node storage error: {m}")),
    }
}

/// The gRPC status a client sees for an object operation's error.
pub fn object_status(e: crate::objects::ObjectError) -> Status {
    use crate::objects::ObjectError;
    match e {
        ObjectError::InvalidArgument(m) => Status::invalid_argument(m),
        ObjectError::NotFound(m) => Status::not_found(m),
        ObjectError::AlreadyExists(m) => Status::already_exists(m),
        ObjectError::Unavailable(m) => Status::unavailable(m),
        ObjectError::Cancelled(m) => Status::cancelled(m),
        ObjectError::DataLoss(m) => Status::data_loss(m),
        ObjectError::Internal(m) => Status::internal(m),
    }
}

/// `ok`, or the refusal's gRPC code in lowercase words, as metrics and the
/// audit log record outcomes.
pub fn outcome_of<T>(result: &Result<T, Status>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(s) => snake_case(&format!("{:?}", s.code())),
    }
}

/// `PermissionDenied` → `permission_denied`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_snake_case_code_names() {
        assert_eq!(outcome_of::<()>(&Ok(())), "ok");
        assert_eq!(
            outcome_of::<()>(&Err(Status::permission_denied("x"))),
            "permission_denied"
        );
        assert_eq!(outcome_of::<()>(&Err(Status::not_found("x"))), "not_found");
        assert_eq!(
            outcome_of::<()>(&Err(Status::unauthenticated("x"))),
            "unauthenticated"
        );
    }
}
