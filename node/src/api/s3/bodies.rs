//! Object bytes in and out of the S3 port: an upload's body checked
//! against the checksums its client declared (in headers, or in trailers
//! after the body, as current AWS SDKs send them) before the data plane
//! sees its end, and a download's bytes handed to the HTTP response with
//! their exact length.

use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use s3s::checksum::ChecksumHasher;
use s3s::dto::{Checksum, PutObjectInput, StreamingBlob, UploadPartInput};
use s3s::stream::{ByteStream, RemainingLength};
use s3s::TrailingHeaders;

use crate::api::objects::{broken_upload, PUT_STALL_TIMEOUT};
use crate::objects::{ObjectError, ObjectStream};

/// The checksum algorithms S3 clients send, by header name.
const CHECKSUM_HEADERS: [&str; 5] = [
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
];

/// The checksums an S3 input carries in its headers (PutObject and
/// UploadPart name them alike).
macro_rules! checksums_of {
    ($input:expr) => {
        Checksum {
            checksum_crc32: $input.checksum_crc32.clone(),
            checksum_crc32c: $input.checksum_crc32c.clone(),
            checksum_crc64nvme: $input.checksum_crc64nvme.clone(),
            checksum_sha1: $input.checksum_sha1.clone(),
            checksum_sha256: $input.checksum_sha256.clone(),
            ..Default::default()
        }
    };
}

/// The checksums an upload must match: given in its headers, or promised
/// in its trailers.
pub(super) struct Declared {
    given: Checksum,
    promised: Vec<String>,
    trailers: Option<TrailingHeaders>,
}

impl Declared {
    /// What a PutObject (and its `x-amz-trailer` header) declares.
    pub(super) fn of(
        input: &PutObjectInput,
        headers: &http::HeaderMap,
        trailers: Option<TrailingHeaders>,
    ) -> Self {
        Self::given(checksums_of!(input), headers, trailers)
    }

    /// What an UploadPart (and its `x-amz-trailer` header) declares.
    pub(super) fn of_part(
        input: &UploadPartInput,
        headers: &http::HeaderMap,
        trailers: Option<TrailingHeaders>,
    ) -> Self {
        Self::given(checksums_of!(input), headers, trailers)
    }

    /// The SHA-256 given in a header, as lowercase hex, for the write path
    /// to check (it hashes every byte anyway): this body need not hash
    /// them a second time. `INVALID_ARGUMENT` if it is not 32 bytes of
    /// base64.
    pub(super) fn take_sha256(&mut self) -> Result<Option<String>, tonic::Status> {
        let Some(value) = self.given.checksum_sha256.take() else {
            return Ok(None);
        };
        base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .map(|b| Some(hex::encode(b)))
            .ok_or_else(|| {
                tonic::Status::invalid_argument(format!(
                    "x-amz-checksum-sha256 must be the base64 of 32 bytes, not {value:?}"
                ))
            })
    }

    fn given(
        given: Checksum,
        headers: &http::HeaderMap,
        trailers: Option<TrailingHeaders>,
    ) -> Self {
        let promised = headers
            .get_all("x-amz-trailer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| CHECKSUM_HEADERS.contains(&v.as_str()))
            .collect();
        Self {
            given,
            promised,
            trailers,
        }
    }

    fn wants(&self, header: &str) -> bool {
        self.promised.iter().any(|p| p == header) || self.given_value(header).is_some()
    }

    fn given_value(&self, header: &str) -> Option<&String> {
        let g = &self.given;
        match header {
            "x-amz-checksum-crc32" => g.checksum_crc32.as_ref(),
            "x-amz-checksum-crc32c" => g.checksum_crc32c.as_ref(),
            "x-amz-checksum-crc64nvme" => g.checksum_crc64nvme.as_ref(),
            "x-amz-checksum-sha1" => g.checksum_sha1.as_ref(),
            "x-amz-checksum-sha256" => g.checksum_sha256.as_ref(),
            _ => None,
        }
    }

    fn hasher(&self) -> ChecksumHasher {
        use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
        ChecksumHasher {
            crc32: self.wants("x-amz-checksum-crc32").then(Crc32::new),
            crc32c: self.wants("x-amz-checksum-crc32c").then(Crc32c::new),
            crc64nvme: self.wants("x-amz-checksum-crc64nvme").then(Crc64Nvme::new),
            sha1: self.wants("x-amz-checksum-sha1").then(Sha1::new),
            sha256: self.wants("x-amz-checksum-sha256").then(Sha256::new),
        }
    }

    /// Compares what the body hashed to with what was declared: the
    /// first mismatch, or a promised trailer that never came.
    fn check(&self, computed: Checksum) -> Result<(), ObjectError> {
        let computed_value = |header: &str| match header {
            "x-amz-checksum-crc32" => computed.checksum_crc32.clone(),
            "x-amz-checksum-crc32c" => computed.checksum_crc32c.clone(),
            "x-amz-checksum-crc64nvme" => computed.checksum_crc64nvme.clone(),
            "x-amz-checksum-sha1" => computed.checksum_sha1.clone(),
            "x-amz-checksum-sha256" => computed.checksum_sha256.clone(),
            _ => None,
        };
        for header in CHECKSUM_HEADERS {
            if !self.wants(header) {
                continue;
            }
            let expected = match self.given_value(header) {
                Some(v) => Some(v.clone()),
                None => self.trailers.as_ref().and_then(|t| {
                    t.read(|h| {
                        h.get(header)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    })
                    .flatten()
                }),
            };
            let Some(expected) = expected else {
                return Err(ObjectError::InvalidArgument(format!(
                    "the upload promised a {header} trailer and sent none; nothing was stored"
                )));
            };
            let got = computed_value(header).unwrap_or_default();
            if got != expected.trim() {
                return Err(ObjectError::InvalidArgument(format!(
                    "checksum mismatch: {header} given {expected}, the bytes received have {got}; \
                     nothing was stored"
                )));
            }
        }
        Ok(())
    }
}

/// The upload's bytes as the data plane takes them: cut off after
/// [`PUT_STALL_TIMEOUT`] without data, and ended by an error instead of
/// its end when a declared checksum does not match (so nothing commits).
pub(super) fn checked_body(
    body: Option<StreamingBlob>,
    declared: Declared,
) -> impl Stream<Item = Result<Vec<u8>, ObjectError>> + Send + Unpin {
    let hasher = declared.hasher();
    let state = (body, Some((hasher, declared)));
    Box::pin(futures::stream::unfold(
        state,
        |(mut body, mut end)| async move {
            let next = match body.as_mut() {
                Some(b) => match tokio::time::timeout(PUT_STALL_TIMEOUT, b.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        let stalled = ObjectError::Cancelled(format!(
                            "upload stalled: no data for {PUT_STALL_TIMEOUT:?}; nothing was stored"
                        ));
                        return Some((Err(stalled), (None, None)));
                    }
                },
                None => None,
            };
            match next {
                Some(Ok(bytes)) => {
                    if let Some((hasher, _)) = end.as_mut() {
                        hasher.update(&bytes);
                    }
                    Some((Ok(Vec::from(bytes)), (body, end)))
                }
                Some(Err(e)) => {
                    let broken = broken_upload(tonic::Status::cancelled(e.to_string()));
                    Some((Err(broken), (None, None)))
                }
                None => {
                    let (hasher, declared) = end.take()?;
                    match declared.check(hasher.finalize()) {
                        Ok(()) => None,
                        Err(e) => Some((Err(e), (None, None))),
                    }
                }
            }
        },
    ))
}

/// `Content-MD5`'s 16 bytes.
pub(super) fn content_md5(value: &str) -> Result<[u8; 16], tonic::Status> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| {
            tonic::Status::invalid_argument(format!(
                "Content-MD5 must be the base64 of 16 bytes, not {value:?}"
            ))
        })
}

/// A download's bytes, with the length the response announces.
pub(super) struct Download {
    /// In a mutex only to be `Sync`, as response bodies must be: it is
    /// never contended.
    bytes: std::sync::Mutex<ObjectStream>,
    remaining: u64,
    /// Held until the last byte is sent.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Download {
    pub(super) fn blob(
        bytes: ObjectStream,
        length: u64,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> StreamingBlob {
        StreamingBlob::new(Self {
            bytes: std::sync::Mutex::new(bytes),
            remaining: length,
            _permit: permit,
        })
    }
}

impl Stream for Download {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let bytes = self
            .bytes
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match bytes.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Bytes::from(chunk))))
            }
            // The response is cut short: the client sees fewer bytes than
            // announced, never wrong ones.
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl ByteStream for Download {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(usize::try_from(self.remaining).unwrap_or(usize::MAX))
    }
}
