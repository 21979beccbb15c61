//! How a refusal of the object layer reads to an S3 client: one mapping
//! from the gRPC code the native API answers to the S3 error code tools
//! act on (retry, give up, report), the message kept.

use s3s::{S3Error, S3ErrorCode};
use tonic::{Code, Status};

/// What a missing thing is called in S3 terms for this call.
#[derive(Debug, Clone, Copy)]
pub(super) enum Missing {
    /// The call names an object: `NoSuchKey`, or `NoSuchBucket` when the
    /// bucket itself is gone.
    Key { bucket_exists: bool },
    /// The call names only a bucket.
    Bucket,
}

/// `status` as an S3 error. `AlreadyExists` on a write is
/// `PreconditionFailed` (412): tresor's objects are immutable, so a write
/// to a key in use (or ever used: tombstones keep deleted evidence ids)
/// behaves as S3's conditional write with `If-None-Match: *` does when the
/// key exists, which tools report and do not retry.
pub(super) fn s3_error(status: Status, missing: Missing) -> S3Error {
    let message = status.message().to_string();
    let code = match status.code() {
        Code::NotFound => match missing {
            Missing::Key {
                bucket_exists: true,
            } => S3ErrorCode::NoSuchKey,
            _ => S3ErrorCode::NoSuchBucket,
        },
        Code::AlreadyExists => match missing {
            Missing::Bucket => S3ErrorCode::BucketAlreadyOwnedByYou,
            Missing::Key { .. } => S3ErrorCode::PreconditionFailed,
        },
        Code::InvalidArgument if is_digest_mismatch(&message) => S3ErrorCode::BadDigest,
        Code::InvalidArgument => S3ErrorCode::InvalidArgument,
        // Retention, a legal hold, or a bucket that is not empty: what S3's
        // Object Lock answers for a locked object.
        Code::FailedPrecondition | Code::PermissionDenied => S3ErrorCode::AccessDenied,
        Code::Unauthenticated => S3ErrorCode::InvalidAccessKeyId,
        Code::ResourceExhausted => S3ErrorCode::SlowDown,
        Code::Unavailable => S3ErrorCode::ServiceUnavailable,
        Code::OutOfRange => S3ErrorCode::InvalidRange,
        Code::Cancelled => S3ErrorCode::IncompleteBody,
        Code::DeadlineExceeded => S3ErrorCode::RequestTimeout,
        _ => S3ErrorCode::InternalError,
    };
    S3Error::with_message(code, message)
}

fn is_digest_mismatch(message: &str) -> bool {
    ["MD5 mismatch", "SHA-256 mismatch", "checksum mismatch"]
        .iter()
        .any(|m| message.starts_with(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_tools_act_on() {
        let key = Missing::Key {
            bucket_exists: true,
        };
        let cases = [
            (Status::not_found("x"), key, S3ErrorCode::NoSuchKey),
            (
                Status::not_found("x"),
                Missing::Key {
                    bucket_exists: false,
                },
                S3ErrorCode::NoSuchBucket,
            ),
            (
                Status::already_exists("x"),
                key,
                S3ErrorCode::PreconditionFailed,
            ),
            (
                Status::already_exists("x"),
                Missing::Bucket,
                S3ErrorCode::BucketAlreadyOwnedByYou,
            ),
            (
                Status::invalid_argument("MD5 mismatch: ..."),
                key,
                S3ErrorCode::BadDigest,
            ),
            (
                Status::invalid_argument("bad key"),
                key,
                S3ErrorCode::InvalidArgument,
            ),
            (
                Status::resource_exhausted("busy"),
                key,
                S3ErrorCode::SlowDown,
            ),
            (
                Status::permission_denied("no"),
                key,
                S3ErrorCode::AccessDenied,
            ),
            (Status::out_of_range("past"), key, S3ErrorCode::InvalidRange),
            (Status::data_loss("gone"), key, S3ErrorCode::InternalError),
        ];
        for (status, missing, want) in cases {
            let got = s3_error(status.clone(), missing);
            assert_eq!(got.code(), &want, "{status:?}");
            assert_eq!(got.message(), Some(status.message()));
        }
    }
}
