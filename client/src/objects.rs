//! The object API from the client side: put, get, stat, list, delete and
//! verify, over one or more endpoints.
//!
//! Uploads stream from any `AsyncRead` in 1 MiB messages and downloads stream
//! into any `AsyncWrite`, so memory stays bounded whatever the object size. A
//! full download is checked against the object's SHA-256 before it is
//! reported as good; `get_file` only puts a file under its final name once
//! every byte has arrived, been checked and been fsynced.
//!
//! Failover: calls that can safely be repeated (everything but `put`) move to
//! the next endpoint when the current one is unreachable or answers
//! `UNAVAILABLE` before any data has been delivered to the caller. An upload
//! consumes its reader as it goes and cannot be replayed, so a failed `put`
//! is reported, never retried.

use std::collections::HashMap;
use std::error::Error as _;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use tresor_proto::v1::objects_client::ObjectsClient;
use tresor_proto::v1::{
    get_response, put_request, DeleteRequest, GetRequest, ListRequest, PutHeader, PutRequest,
    StatRequest,
};

pub use tresor_proto::v1::ObjectInfo;

use crate::channel::{self, ClientError, Credentials, Transport, MAX_MESSAGE_BYTES};

/// Bytes of object data per upload message.
const CHUNK_BYTES: usize = 1024 * 1024;

/// Upload messages read ahead of the network; bounds upload memory to a few MiB.
const UPLOAD_QUEUE: usize = 2;

/// Keys asked for per `List` page.
const LIST_PAGE_SIZE: u32 = 1000;

/// Deadline of one unary call (stat, list page, delete), sent to the node
/// as `grpc-timeout` and enforced here too.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest wait for the next message of a download, or for the node to
/// take the next message of an upload: a node or link that stalls ends the
/// transfer with `DEADLINE_EXCEEDED` instead of hanging it.
pub const STREAM_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Longest wait for a node's answer after the last byte of an upload: it
/// makes every shard file durable and commits the manifest (and, if the
/// leader is lost meanwhile, finds out whether the commit went through).
pub const COMMIT_WAIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// `call` bounded by `limit`: past it, a `DEADLINE_EXCEEDED` status saying
/// what was being waited for.
async fn bounded<T>(
    limit: std::time::Duration,
    what: &str,
    call: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(Status::deadline_exceeded(format!(
            "no answer {what} within {limit:?}"
        )))
    })
}

/// Called with the number of object bytes transferred so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

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
fn describe_status(status: &Status) -> String {
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
fn is_retryable(status: &Status) -> bool {
    status.code() == Code::Unavailable
        || status.source().is_some()
        // The generated client's wording when the channel cannot send at all.
        || (status.code() == Code::Unknown && status.message().starts_with("Service was not ready"))
}

/// Options of an upload.
#[derive(Clone, Default)]
pub struct PutOptions {
    /// MIME type stored with the object, such as `video/mp4`.
    pub content_type: Option<String>,
    /// Free-form key/value pairs stored with the object.
    pub metadata: HashMap<String, String>,
    /// Hex SHA-256 the object must have; when the bytes hash differently the
    /// upload is aborted and nothing is stored.
    pub expected_sha256: Option<String>,
    /// Called with the number of bytes sent so far.
    pub progress: Option<Progress>,
}

impl fmt::Debug for PutOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutOptions")
            .field("content_type", &self.content_type)
            .field("metadata", &self.metadata)
            .field("expected_sha256", &self.expected_sha256)
            .field("progress", &self.progress.as_ref().map(|_| "callback"))
            .finish()
    }
}

/// A stored object, as acknowledged by the node after the upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PutResult {
    /// Bucket the object is in.
    pub bucket: String,
    /// Key of the object.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the stored bytes.
    pub sha256: String,
}

/// Converts an inclusive byte range `(start, end)` (`end` absent: to the end
/// of the object) into the `offset` and `length` of a `GetRequest`. No range
/// means the whole object.
pub fn range_to_offset_length(
    range: Option<(u64, Option<u64>)>,
) -> Result<(Option<u64>, Option<u64>), ObjectError> {
    match range {
        None => Ok((None, None)),
        Some((start, None)) => Ok((Some(start), None)),
        Some((start, Some(end))) if end < start => Err(ObjectError::InvalidArgument(format!(
            "range end {end} is before its start {start}"
        ))),
        // `0..=u64::MAX` has no u64 length, but "to the end" reads the same bytes.
        Some((start, Some(end))) => Ok((Some(start), (end - start).checked_add(1))),
    }
}

/// Lowercase hex of a SHA-256, refusing anything that is not 64 hex digits.
fn normalize_sha256(hex_digest: &str) -> Result<String, ObjectError> {
    let digest = hex_digest.trim();
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(digest.to_ascii_lowercase())
    } else {
        Err(ObjectError::InvalidArgument(format!(
            "{hex_digest:?} is not a SHA-256 (64 hex digits)"
        )))
    }
}

fn check_names(bucket: &str, key: &str) -> Result<(), ObjectError> {
    if bucket.is_empty() {
        return Err(ObjectError::InvalidArgument("bucket name is empty".into()));
    }
    if key.is_empty() {
        return Err(ObjectError::InvalidArgument("key is empty".into()));
    }
    Ok(())
}

fn io_context(err: io::Error, what: impl fmt::Display) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// The endpoint in use and its channel.
#[derive(Debug, Clone)]
struct Current {
    index: usize,
    channel: Transport,
}

/// A client of the object API, connected to one of several endpoints.
///
/// Cheap to clone; clones share the endpoint in use.
#[derive(Debug, Clone)]
pub struct Client {
    endpoints: Arc<[String]>,
    current: Arc<Mutex<Current>>,
    credentials: Arc<Credentials>,
}

impl Client {
    /// Connects to the first endpoint that answers (tries each in order),
    /// with the process-wide default credentials.
    pub async fn connect(endpoints: &[String]) -> Result<Client, ObjectError> {
        Self::connect_with(endpoints, &channel::default_credentials()).await
    }

    /// Like [`Client::connect`], with `credentials` (kept for reconnects).
    pub async fn connect_with(
        endpoints: &[String],
        credentials: &Credentials,
    ) -> Result<Client, ObjectError> {
        let credentials = Arc::new(credentials.clone());
        let endpoints: Arc<[String]> = endpoints
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(|e| channel::endpoint_url_for(e, credentials.uses_tls()))
            .collect();
        let mut last_error = None;
        for (index, endpoint) in endpoints.iter().enumerate() {
            match channel::connect_with(endpoint, &credentials).await {
                Ok(channel) => {
                    let channel = channel::transport(channel, &credentials);
                    return Ok(Client {
                        current: Arc::new(Mutex::new(Current { index, channel })),
                        endpoints,
                        credentials,
                    });
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(match last_error {
            Some(err) => ObjectError::Connect(err),
            None => ObjectError::InvalidArgument("no endpoint given".into()),
        })
    }

    /// Every endpoint this client may use, in order of preference.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The endpoint calls currently go to.
    pub fn current_endpoint(&self) -> String {
        let index = self.current().index;
        self.endpoints.get(index).cloned().unwrap_or_default()
    }

    fn current(&self) -> Current {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_current(&self, index: usize, channel: Transport) {
        *self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Current { index, channel };
    }

    /// The current endpoint first, then each other one once, in order.
    fn failover(&self) -> Failover<'_> {
        let current = self.current();
        let count = self.endpoints.len();
        let others = (1..count)
            .map(|step| (current.index + step) % count)
            .collect();
        Failover {
            client: self,
            first: Some(current),
            others,
            last_error: None,
        }
    }

    /// Uploads everything `reader` yields as `bucket/key`, streamed in 1 MiB
    /// messages. The object is durably stored once this returns `Ok`. If
    /// `reader` fails, or the bytes do not hash to `expected_sha256`, the
    /// upload is reset and nothing is stored; if the connection breaks after
    /// the last byte, the outcome is unknown and [`Client::stat`] tells.
    /// Not retried on another endpoint: the reader cannot be replayed.
    pub async fn put<R>(
        &self,
        bucket: &str,
        key: &str,
        reader: R,
        opts: PutOptions,
    ) -> Result<PutResult, ObjectError>
    where
        R: AsyncRead + Unpin + Send,
    {
        check_names(bucket, key)?;
        let expected = opts
            .expected_sha256
            .as_deref()
            .map(normalize_sha256)
            .transpose()?;
        let header = PutHeader {
            bucket: bucket.to_string(),
            key: key.to_string(),
            content_type: opts.content_type.unwrap_or_default(),
            metadata: opts.metadata,
            expected_sha256: expected.clone().unwrap_or_default(),
        };

        let (tx, rx) = mpsc::channel(UPLOAD_QUEUE);
        tx.send(PutRequest {
            msg: Some(put_request::Msg::Header(header)),
        })
        .await
        .map_err(|_| ObjectError::Protocol("upload queue closed before it started".into()))?;
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        // Ending the request stream tells the node the object is complete, so
        // an upload that must not complete is reset instead.
        let cancel = request.cancellation_handle();
        let mut rpc_client = objects_client(self.current().channel);
        let rpc = rpc_client.put(request);
        let pump = send_body(reader, tx.clone(), opts.progress);
        tokio::pin!(rpc);
        tokio::pin!(pump);

        let pumped = tokio::select! {
            biased;
            answer = &mut rpc => {
                cancel.cancel();
                return match answer {
                    Err(status) => Err(status.into()),
                    Ok(_) => Err(ObjectError::Protocol(
                        "the node acknowledged the upload before it was complete".into(),
                    )),
                };
            }
            pumped = &mut pump => pumped,
        };
        let (size, sha256) = match pumped {
            Ok(sent) => sent,
            Err(BodyError::Read(err)) => {
                cancel.cancel();
                return Err(ObjectError::Io(io_context(err, "reading upload data")));
            }
            Err(BodyError::Stalled) => {
                cancel.cancel();
                return Err(ObjectError::Rpc(Status::deadline_exceeded(format!(
                    "the node took no upload data for {STREAM_STALL_TIMEOUT:?}; nothing was stored"
                ))));
            }
            // The node ended the call; its answer says why.
            Err(BodyError::Closed) => {
                return match rpc.await {
                    Err(status) => Err(status.into()),
                    Ok(_) => Err(ObjectError::Protocol(
                        "the node acknowledged the upload before it was complete".into(),
                    )),
                };
            }
        };
        if let Some(expected) = expected {
            if expected != sha256 {
                cancel.cancel();
                return Err(ObjectError::Integrity {
                    expected,
                    actual: sha256,
                });
            }
        }
        drop(tx);
        let stored = match bounded(COMMIT_WAIT_TIMEOUT, "to the finished upload", rpc).await {
            Ok(stored) => stored.into_inner(),
            // Sent whole, answer lost: the node may have committed it.
            Err(status) if is_retryable(&status) || status.code() == Code::DeadlineExceeded => {
                return Err(ObjectError::OutcomeUnknown {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    size,
                    sha256,
                    reason: describe_status(&status),
                });
            }
            Err(status) => return Err(status.into()),
        };
        if stored.size != size || !stored.sha256.eq_ignore_ascii_case(&sha256) {
            return Err(ObjectError::Integrity {
                expected: format!("{sha256} ({size} bytes sent)"),
                actual: format!("{} ({} bytes stored)", stored.sha256, stored.size),
            });
        }
        Ok(PutResult {
            bucket: stored.bucket,
            key: stored.key,
            size: stored.size,
            sha256: stored.sha256,
        })
    }

    /// Uploads the file at `path` as `bucket/key`; see [`Client::put`].
    /// A file can be read again, so a failed attempt is retried from the
    /// start through the next endpoint. An attempt whose answer was lost
    /// may have stored the object: if the retry then finds the key taken,
    /// the stored object's size and SHA-256 decide whether it is this file.
    pub async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        opts: PutOptions,
    ) -> Result<PutResult, ObjectError> {
        let attempts = self.endpoints.len().max(1) + 1;
        let mut unknown: Option<(u64, String)> = None;
        let mut last = None;
        for _ in 0..attempts {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| io_context(e, path.display()))?;
            match self.put(bucket, key, file, opts.clone()).await {
                Ok(stored) => return Ok(stored),
                Err(ObjectError::Rpc(status)) if status.code() == Code::AlreadyExists => {
                    let Some((size, sha256)) = unknown else {
                        return Err(ObjectError::Rpc(status));
                    };
                    let info = self.stat(bucket, key).await?;
                    if info.size == size && info.sha256.eq_ignore_ascii_case(&sha256) {
                        return Ok(PutResult {
                            bucket: info.bucket,
                            key: info.key,
                            size: info.size,
                            sha256: info.sha256,
                        });
                    }
                    return Err(ObjectError::Rpc(status));
                }
                Err(ObjectError::OutcomeUnknown {
                    size,
                    sha256,
                    reason,
                    ..
                }) => {
                    unknown = Some((size, sha256.clone()));
                    last = Some(ObjectError::OutcomeUnknown {
                        bucket: bucket.to_string(),
                        key: key.to_string(),
                        size,
                        sha256,
                        reason,
                    });
                }
                Err(ObjectError::Rpc(status)) if is_retryable(&status) => {
                    last = Some(ObjectError::Rpc(status));
                }
                Err(ObjectError::Connect(e)) => last = Some(ObjectError::Connect(e)),
                Err(other) => return Err(other),
            }
            self.next_endpoint().await;
        }
        Err(last.unwrap_or_else(|| ObjectError::InvalidArgument("no endpoint to try".into())))
    }

    /// Moves to the next reachable endpoint after the current one (stays
    /// on the current one when there is no other).
    async fn next_endpoint(&self) {
        let mut failover = self.failover();
        let _current = failover.next().await;
        let _next = failover.next().await;
    }

    /// Downloads `bucket/key` into `writer`; `range` is `(start,
    /// end_inclusive)`, with no end meaning to the end of the object. When
    /// the bytes received are the whole object their SHA-256 is checked
    /// against the object's: a mismatch is [`ObjectError::Integrity`] (the
    /// bytes have been written by then; use [`Client::get_file`] to keep
    /// them out of place). Returns the object's info and the bytes written.
    pub async fn get<W>(
        &self,
        bucket: &str,
        key: &str,
        range: Option<(u64, Option<u64>)>,
        mut writer: W,
        progress: Option<Progress>,
    ) -> Result<(ObjectInfo, u64), ObjectError>
    where
        W: AsyncWrite + Unpin + Send,
    {
        check_names(bucket, key)?;
        let (offset, length) = range_to_offset_length(range)?;
        let request = GetRequest {
            bucket: bucket.to_string(),
            key: key.to_string(),
            offset,
            length,
        };
        let download = self
            .download(request, &mut writer, progress.as_ref())
            .await?;
        writer
            .flush()
            .await
            .map_err(|e| io_context(e, "writing download"))?;
        if let Some(actual) = download.whole_object_sha256 {
            if !actual.eq_ignore_ascii_case(&download.info.sha256) {
                return Err(ObjectError::Integrity {
                    expected: download.info.sha256,
                    actual,
                });
            }
        }
        Ok((download.info, download.bytes))
    }

    /// Downloads `bucket/key` (or a range of it) into the file at `path`.
    /// The bytes go to a temporary file in the same directory, which is
    /// fsynced and renamed to `path` only after the download succeeded and
    /// was checked; on any error no file is left under either name. An
    /// existing file at `path` is replaced.
    pub async fn get_file(
        &self,
        bucket: &str,
        key: &str,
        range: Option<(u64, Option<u64>)>,
        path: &Path,
        progress: Option<Progress>,
    ) -> Result<(ObjectInfo, u64), ObjectError> {
        let (partial, mut file) = PartialFile::create(path).await?;
        let got = self.get(bucket, key, range, &mut file, progress).await?;
        file.sync_all()
            .await
            .map_err(|e| io_context(e, partial.path.display()))?;
        drop(file);
        partial.persist().await?;
        Ok(got)
    }

    /// The info of `bucket/key`.
    pub async fn stat(&self, bucket: &str, key: &str) -> Result<ObjectInfo, ObjectError> {
        check_names(bucket, key)?;
        let request = StatRequest {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        self.unary(|mut rpc| {
            let request = request.clone();
            async move { rpc.stat(request).await }
        })
        .await
    }

    /// Every object of `bucket` whose key starts with `prefix`, in key order
    /// (all pages).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        if bucket.is_empty() {
            return Err(ObjectError::InvalidArgument("bucket name is empty".into()));
        }
        let mut objects = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = ListRequest {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
                page_size: LIST_PAGE_SIZE,
                page_token: page_token.clone(),
            };
            let page = self
                .unary(|mut rpc| {
                    let request = request.clone();
                    async move { rpc.list(request).await }
                })
                .await?;
            objects.extend(page.objects);
            if page.next_page_token.is_empty() {
                return Ok(objects);
            }
            if page.next_page_token == page_token {
                return Err(ObjectError::Protocol(
                    "the node returned the same list page token twice".into(),
                ));
            }
            page_token = page.next_page_token;
        }
    }

    /// Deletes `bucket/key`.
    ///
    /// If a first attempt reached a node whose answer was lost, the retry on
    /// another endpoint may answer `NOT_FOUND`: the object is gone either way.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        check_names(bucket, key)?;
        let request = DeleteRequest {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        self.unary(|mut rpc| {
            let request = request.clone();
            async move { rpc.delete(request).await }
        })
        .await?;
        Ok(())
    }

    /// Reads the whole of `bucket/key`, discarding the bytes, and checks them
    /// against the object's SHA-256. Returns the object's info, the SHA-256
    /// computed here (lowercase hex) and whether the two match. A mismatch
    /// is reported in the result, not as an error.
    pub async fn verify(
        &self,
        bucket: &str,
        key: &str,
        progress: Option<Progress>,
    ) -> Result<(ObjectInfo, String, bool), ObjectError> {
        check_names(bucket, key)?;
        let request = GetRequest {
            bucket: bucket.to_string(),
            key: key.to_string(),
            offset: None,
            length: None,
        };
        let download = self
            .download(request, &mut tokio::io::sink(), progress.as_ref())
            .await?;
        let computed = download.whole_object_sha256.ok_or_else(|| {
            ObjectError::Protocol("the node did not send the whole object".into())
        })?;
        let matches = computed.eq_ignore_ascii_case(&download.info.sha256);
        Ok((download.info, computed, matches))
    }

    /// Runs a unary call with failover.
    async fn unary<T, F, Fut>(&self, mut call: F) -> Result<T, ObjectError>
    where
        F: FnMut(ObjectsClient<Transport>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut failover = self.failover();
        while let Some(rpc) = failover.next().await {
            match bounded(CALL_TIMEOUT, "from the node", call(rpc)).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if is_retryable(&status) => failover.failed(status.into()),
                Err(status) => return Err(status.into()),
            }
        }
        Err(failover.into_error())
    }

    /// Streams a `Get` into `sink`, with failover while nothing has been
    /// written yet.
    async fn download<W>(
        &self,
        request: GetRequest,
        sink: &mut W,
        progress: Option<&Progress>,
    ) -> Result<Download, ObjectError>
    where
        W: AsyncWrite + Unpin + Send,
    {
        let mut failover = self.failover();
        while let Some(mut rpc) = failover.next().await {
            let mut written = 0;
            match download_from(&mut rpc, request.clone(), sink, progress, &mut written).await {
                Ok(download) => return Ok(download),
                Err(ObjectError::Rpc(status)) if written == 0 && is_retryable(&status) => {
                    failover.failed(status.into())
                }
                Err(err) => return Err(err),
            }
        }
        Err(failover.into_error())
    }
}

fn objects_client(channel: Transport) -> ObjectsClient<Transport> {
    ObjectsClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The endpoints one call may still try.
struct Failover<'a> {
    client: &'a Client,
    first: Option<Current>,
    others: std::collections::VecDeque<usize>,
    last_error: Option<ObjectError>,
}

impl Failover<'_> {
    /// A client for the next endpoint to try, connecting to it if it is not
    /// the current one; `None` once every endpoint has had its try.
    async fn next(&mut self) -> Option<ObjectsClient<Transport>> {
        if let Some(current) = self.first.take() {
            return Some(objects_client(current.channel));
        }
        while let Some(index) = self.others.pop_front() {
            let endpoint = self.client.endpoints.get(index)?;
            match channel::connect_with(endpoint, &self.client.credentials).await {
                Ok(channel) => {
                    let channel = channel::transport(channel, &self.client.credentials);
                    self.client.set_current(index, channel.clone());
                    return Some(objects_client(channel));
                }
                Err(err) => self.failed(err.into()),
            }
        }
        None
    }

    /// Records why an attempt failed. A node's answer says more than a
    /// failure to reach another node, so it is kept over a connect error.
    fn failed(&mut self, err: ObjectError) {
        let keep_old = matches!(self.last_error, Some(ObjectError::Rpc(_)))
            && !matches!(err, ObjectError::Rpc(_));
        if !keep_old {
            self.last_error = Some(err);
        }
    }

    fn into_error(self) -> ObjectError {
        self.last_error
            .unwrap_or_else(|| ObjectError::InvalidArgument("no endpoint to try".into()))
    }
}

/// Why the upload body stopped early.
enum BodyError {
    Read(io::Error),
    /// The request stream was dropped: the call has ended.
    Closed,
    /// The node took no data for [`STREAM_STALL_TIMEOUT`].
    Stalled,
}

/// Reads `reader` to its end into upload messages of `CHUNK_BYTES`, hashing
/// as it goes. Returns the byte count and lowercase hex SHA-256. `tx` is
/// dropped on return, but the caller holds another sender, so the stream
/// ends only when the caller decides.
async fn send_body<R>(
    mut reader: R,
    tx: mpsc::Sender<PutRequest>,
    progress: Option<Progress>,
) -> Result<(u64, String), BodyError>
where
    R: AsyncRead + Unpin + Send,
{
    let mut hasher = Sha256::new();
    let mut sent = 0u64;
    loop {
        let mut chunk = vec![0u8; CHUNK_BYTES];
        let filled = read_full(&mut reader, &mut chunk)
            .await
            .map_err(BodyError::Read)?;
        if filled == 0 {
            break;
        }
        chunk.truncate(filled);
        hasher.update(&chunk);
        let message = PutRequest {
            msg: Some(put_request::Msg::Data(chunk)),
        };
        match tokio::time::timeout(STREAM_STALL_TIMEOUT, tx.send(message)).await {
            Ok(sent) => sent.map_err(|_| BodyError::Closed)?,
            Err(_) => return Err(BodyError::Stalled),
        }
        sent += filled as u64;
        if let Some(progress) = &progress {
            progress(sent);
        }
    }
    Ok((sent, hex::encode(hasher.finalize())))
}

/// Fills `buf` unless the reader ends first; returns the bytes read.
async fn read_full<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// What one download delivered.
struct Download {
    info: ObjectInfo,
    bytes: u64,
    /// SHA-256 of the bytes received, when they are the whole object.
    whole_object_sha256: Option<String>,
}

/// One attempt at a download; `written` counts bytes handed to `sink`, so
/// the caller knows whether a retry is still safe.
async fn download_from<W>(
    rpc: &mut ObjectsClient<Transport>,
    request: GetRequest,
    sink: &mut W,
    progress: Option<&Progress>,
    written: &mut u64,
) -> Result<Download, ObjectError>
where
    W: AsyncWrite + Unpin + Send,
{
    let offset = request.offset.unwrap_or(0);
    let length = request.length;
    let mut request = tonic::Request::new(request);
    // Bounds the wait for the response to start (a read's audit entry is
    // committed first); each later message is bounded by the stall timeout.
    request.set_timeout(CALL_TIMEOUT);
    let mut stream = bounded(CALL_TIMEOUT, "to a download", rpc.get(request))
        .await?
        .into_inner();
    let info = match bounded(STREAM_STALL_TIMEOUT, "in a download", stream.message()).await? {
        Some(message) => match message.msg {
            Some(get_response::Msg::Info(info)) => info,
            _ => {
                return Err(ObjectError::Protocol(
                    "the node sent data before the object's info".into(),
                ))
            }
        },
        None => {
            return Err(ObjectError::Protocol(
                "the node ended the download without sending the object's info".into(),
            ))
        }
    };
    let remaining = info.size.saturating_sub(offset);
    let expected = length.map_or(remaining, |length| length.min(remaining));
    let whole_object = offset == 0 && expected == info.size;
    let mut hasher = whole_object.then(Sha256::new);

    while let Some(message) =
        bounded(STREAM_STALL_TIMEOUT, "in a download", stream.message()).await?
    {
        match message.msg {
            Some(get_response::Msg::Data(data)) => {
                let total = *written + data.len() as u64;
                if total > expected {
                    return Err(ObjectError::Protocol(format!(
                        "the node sent more than the {expected} bytes asked for"
                    )));
                }
                if let Some(hasher) = hasher.as_mut() {
                    hasher.update(&data);
                }
                sink.write_all(&data)
                    .await
                    .map_err(|e| io_context(e, "writing download"))?;
                *written = total;
                if let Some(progress) = progress {
                    progress(total);
                }
            }
            Some(get_response::Msg::Info(_)) => {
                return Err(ObjectError::Protocol(
                    "the node sent the object's info twice".into(),
                ))
            }
            // A message kind newer than this client; nothing to write.
            None => {}
        }
    }
    if *written != expected {
        return Err(ObjectError::Protocol(format!(
            "the download ended after {} of {expected} bytes",
            *written
        )));
    }
    Ok(Download {
        info,
        bytes: *written,
        whole_object_sha256: hasher.map(|h| hex::encode(h.finalize())),
    })
}

/// A download's file under a temporary name beside its target; removed on
/// drop unless persisted.
struct PartialFile {
    path: PathBuf,
    target: PathBuf,
    persisted: bool,
}

impl PartialFile {
    async fn create(target: &Path) -> Result<(PartialFile, tokio::fs::File), ObjectError> {
        if tokio::fs::metadata(target)
            .await
            .is_ok_and(|meta| meta.is_dir())
        {
            return Err(ObjectError::InvalidArgument(format!(
                "{} is a directory; name the file to write",
                target.display()
            )));
        }
        let name = target.file_name().ok_or_else(|| {
            ObjectError::InvalidArgument(format!("{} is not a file name", target.display()))
        })?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".tresor-{}-{nanos}.part", std::process::id()));
        let path = target.with_file_name(temp_name);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| io_context(e, target.display()))?;
        let partial = PartialFile {
            path,
            target: target.to_path_buf(),
            persisted: false,
        };
        Ok((partial, file))
    }

    /// Renames the file to its target and makes the rename durable.
    async fn persist(mut self) -> Result<(), ObjectError> {
        tokio::fs::rename(&self.path, &self.target)
            .await
            .map_err(|e| io_context(e, self.target.display()))?;
        self.persisted = true;
        #[cfg(unix)]
        {
            let dir = match self.target.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let handle = tokio::fs::File::open(&dir)
                .await
                .map_err(|e| io_context(e, dir.display()))?;
            handle
                .sync_all()
                .await
                .map_err(|e| io_context(e, dir.display()))?;
        }
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.persisted {
            // Best effort: the download already failed, and a leftover
            // hidden `.part` file is harmless.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_range_is_the_whole_object() {
        assert_eq!(range_to_offset_length(None).ok(), Some((None, None)));
    }

    #[test]
    fn inclusive_range_becomes_offset_and_length() {
        assert_eq!(
            range_to_offset_length(Some((0, Some(99)))).ok(),
            Some((Some(0), Some(100)))
        );
        assert_eq!(
            range_to_offset_length(Some((5, Some(5)))).ok(),
            Some((Some(5), Some(1)))
        );
        assert_eq!(
            range_to_offset_length(Some((100, None))).ok(),
            Some((Some(100), None))
        );
        assert_eq!(
            range_to_offset_length(Some((0, Some(u64::MAX)))).ok(),
            Some((Some(0), None))
        );
        assert_eq!(
            range_to_offset_length(Some((1, Some(u64::MAX)))).ok(),
            Some((Some(1), Some(u64::MAX)))
        );
    }

    #[test]
    fn backwards_range_is_refused() {
        assert!(matches!(
            range_to_offset_length(Some((5, Some(4)))),
            Err(ObjectError::InvalidArgument(_))
        ));
    }

    #[test]
    fn sha256_is_normalized_or_refused() {
        let upper = "AB".repeat(32);
        assert_eq!(normalize_sha256(&upper).ok(), Some("ab".repeat(32)));
        assert!(normalize_sha256("abc").is_err());
        assert!(normalize_sha256(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn status_reads_code_then_message() {
        let err = ObjectError::from(Status::not_found("no object b/k"));
        assert_eq!(err.to_string(), "NOT_FOUND: no object b/k");
        assert_eq!(err.code(), Some(Code::NotFound));
        let err = ObjectError::from(Status::unavailable(""));
        assert_eq!(err.to_string(), "UNAVAILABLE");
    }

    #[test]
    fn only_unavailability_and_transport_failures_are_retried() {
        assert!(is_retryable(&Status::unavailable("too few nodes")));
        assert!(!is_retryable(&Status::not_found("no object")));
        assert!(!is_retryable(&Status::unknown("handler failed")));
        assert!(is_retryable(&Status::unknown(
            "Service was not ready: transport error"
        )));
        let local = Status::from_error(Box::new(io::Error::other("connection reset")));
        assert!(is_retryable(&local));
    }

    #[tokio::test]
    async fn upload_body_is_cut_into_chunks_and_hashed() {
        let data: Vec<u8> = (0..(2 * CHUNK_BYTES + 10)).map(|i| i as u8).collect();
        let (tx, mut rx) = mpsc::channel(8);
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen_in = seen.clone();
        let progress: Progress =
            Arc::new(move |n| seen_in.store(n, std::sync::atomic::Ordering::SeqCst));
        let sent = send_body(&data[..], tx, Some(progress)).await;
        let Ok((size, sha)) = sent else {
            panic!("upload body failed")
        };
        assert_eq!(size, data.len() as u64);
        assert_eq!(sha, hex::encode(Sha256::digest(&data)));
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), size);
        let mut sizes = Vec::new();
        while let Some(PutRequest {
            msg: Some(put_request::Msg::Data(chunk)),
        }) = rx.recv().await
        {
            sizes.push(chunk.len());
        }
        assert_eq!(sizes, vec![CHUNK_BYTES, CHUNK_BYTES, 10]);
    }

    #[tokio::test]
    async fn failed_download_leaves_no_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("video.mp4");
        let (partial, _file) = PartialFile::create(&target).await.expect("partial file");
        assert!(partial.path.exists());
        let temp = partial.path.clone();
        drop(partial);
        assert!(!temp.exists());
        assert!(!target.exists());

        let (partial, file) = PartialFile::create(&target).await.expect("partial file");
        drop(file);
        let temp = partial.path.clone();
        partial.persist().await.expect("persist");
        assert!(target.exists());
        assert!(!temp.exists());
    }
}
