//! What can go wrong with an object call, and which failures are worth
//! another node.

use std::error::Error as _;
use std::io;

use tonic::{Code, Status};

use crate::channel::ClientError;

/// Errors from the object API.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The node refused or failed the call, or the transport broke.
    #[error("{}", describe_status(.0))]
    Rpc(Status),
    /// The bytes do not hash to the SHA-256 they should have.
    #[error("integrity check failed: expected SHA-256 {expected}, got {actual}")]
    Integrity {
        /// The SHA-256 the bytes should have (lowercase hex).
        expected: String,
        /// The SHA-256 of the bytes actually sent or received (lowercase hex).
        actual: String,
    },
    /// Reading the upload source or writing the download target failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// No endpoint could be reached.
    #[error(transparent)]
    Connect(#[from] ClientError),
    /// The node broke the protocol (for example a download without its
    /// object info first).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The caller's arguments were refused before anything was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Every byte of an upload was sent, but the node's answer was lost (it
    /// died, or the link did): the object is either stored whole or absent,
    /// and a `stat` tells which.
    #[error(
        "the upload of {bucket}/{key} was sent whole but the answer was lost ({reason}); \
         its outcome is unknown: stat it to see whether it was stored (it is there whole or absent)"
    )]
    OutcomeUnknown {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Bytes sent.
        size: u64,
        /// SHA-256 of the bytes sent (lowercase hex).
        sha256: String,
        /// What was seen.
        reason: String,
    },
}

impl From<Status> for ObjectError {
    fn from(status: Status) -> Self {
        ObjectError::Rpc(status)
    }
}

impl ObjectError {
    /// The gRPC status code, when the error came from a call.
    pub fn code(&self) -> Option<Code> {
        match self {
            ObjectError::Rpc(status) => Some(status.code()),
            _ => None,
        }
    }
}

/// The canonical gRPC name of a status code, as in `NOT_FOUND`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `CODE: message`, followed by the transport causes of a locally made
/// status (tonic's own messages, such as "transport error", say little alone).
pub(super) fn describe_status(status: &Status) -> String {
    let mut text = code_name(status.code()).to_string();
    if !status.message().is_empty() {
        text.push_str(": ");
        text.push_str(status.message());
    }
    let mut cause = status.source();
    while let Some(err) = cause {
        let part = err.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = err.source();
    }
    text
}

/// Whether a failed call may be repeated on another endpoint: the node said
/// it is unavailable, or the status was made on this side from a transport
/// failure (statuses a node sends carry no source error).
pub(super) fn is_retryable(status: &Status) -> bool {
    status.code() == Code::Unavailable
        || status.source().is_some()
        // The generated client's wording when the channel cannot send at all.
        || (status.code() == Code::Unknown && status.message().starts_with("Service was not ready"))
}
