//! Mapping of internal errors to gRPC status codes, in one place.

use tonic::Status;

use crate::meta::{MetaError, StoreError};
use crate::raft::ClusterError;
use crate::shards::ShardError;

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

/// A refusal of the replicated model (validation, state).
pub fn meta_status(e: MetaError) -> Status {
    to_status(ClusterError::Meta(e))
}

/// This node's metadata store failed to read: the same call through
/// another node may succeed.
pub fn store_status(e: StoreError) -> Status {
    Status::internal(format!("node storage error: {e}"))
}

/// A blocking task of the handler failed (panicked or was cancelled).
pub fn task_status(e: tokio::task::JoinError) -> Status {
    Status::internal(format!("a task of this call failed: {e}"))
}

/// A shard store error of a write, delete or listing.
pub fn shard_status(e: ShardError) -> Status {
    match e {
        ShardError::NotFound(_) => Status::not_found(e.to_string()),
        ShardError::Corrupt { .. } => Status::data_loss(e.to_string()),
        ShardError::InvalidWrite(_) => Status::invalid_argument(e.to_string()),
        ShardError::OutOfRange { .. } => Status::out_of_range(e.to_string()),
        ShardError::Io(ref io) if io.kind() == std::io::ErrorKind::StorageFull => {
            Status::resource_exhausted(e.to_string())
        }
        other => Status::unavailable(other.to_string()),
    }
}

/// A failure to read a committed shard file is damage to that shard — a
/// file turned into a directory, an unreadable sector — whatever the
/// operating system's reason: the reader reports it for repair.
pub fn shard_read_status(e: ShardError) -> Status {
    match e {
        ShardError::Io(io) => Status::data_loss(format!("shard file unreadable: {io}")),
        other => shard_status(other),
    }
}

/// The gRPC status a client sees for an object operation's error.
pub fn object_status(e: crate::objects::ObjectError) -> Status {
    use crate::objects::ObjectError;
    match e {
        ObjectError::InvalidArgument(m) => Status::invalid_argument(m),
        ObjectError::NotFound(m) => Status::not_found(m),
        ObjectError::AlreadyExists(m) => Status::already_exists(m),
        ObjectError::FailedPrecondition(m) => Status::failed_precondition(m),
        ObjectError::PermissionDenied(m) => Status::permission_denied(m),
        ObjectError::Unavailable(m) => Status::unavailable(m),
        ObjectError::Cancelled(m) => Status::cancelled(m),
        ObjectError::OutOfRange(m) => Status::out_of_range(m),
        ObjectError::ResourceExhausted(m) => Status::resource_exhausted(m),
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

/// Whether `status` is tonic refusing a message over the size limit (tonic
/// says `OUT_OF_RANGE`, with this wording, and only there).
pub fn is_over_size_limit(status: &Status) -> bool {
    status.code() == tonic::Code::OutOfRange
        && status.message().contains("message length too large")
}

/// A response carrying tonic's refusal of an oversized request message,
/// rewritten to `RESOURCE_EXHAUSTED` as gRPC specifies (a client must not
/// mistake it for a range error, or retry it unchanged). Every other
/// response passes as it is.
pub fn over_size_as_resource_exhausted<B>(
    mut response: tonic::codegen::http::Response<B>,
) -> tonic::codegen::http::Response<B> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    if is_over_size_limit(&status) {
        let exhausted = Status::resource_exhausted(format!(
            "{}: send object bytes in messages of 1 MiB or less",
            status.message()
        ));
        if exhausted.add_header(response.headers_mut()).is_err() {
            tracing::warn!("could not rewrite an oversized message's refusal");
        }
    }
    response
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
