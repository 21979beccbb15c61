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

mod download;
mod error;
mod failover;
mod resumable;
#[cfg(test)]
mod tests;
mod upload;

pub use error::{code_name, ObjectError};
pub use resumable::{OnResume, OnSession, ResumablePut, ResumeOptions, UploadSession};
pub use upload::{PutOptions, PutResult};

use error::*;
use failover::*;

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};

use tonic::Status;
use tresor_proto::v1::objects_client::ObjectsClient;
use tresor_proto::v1::{DeleteRequest, GetRequest, ListRequest, StatRequest};

pub use tresor_proto::v1::ObjectInfo;

use crate::channel::{self, Credentials, Transport};

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
    async fn unary<T, F, Fut>(&self, call: F) -> Result<T, ObjectError>
    where
        F: FnMut(ObjectsClient<Transport>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.unary_on(objects_client, call).await
    }

    /// Runs a unary call of the service `make` builds on a channel, with
    /// failover.
    async fn unary_on<C, T, F, Fut>(
        &self,
        make: fn(Transport) -> C,
        mut call: F,
    ) -> Result<T, ObjectError>
    where
        F: FnMut(C) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut failover = self.failover();
        while let Some(channel) = failover.next_channel().await {
            match bounded(CALL_TIMEOUT, "from the node", call(make(channel))).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if is_retryable(&status) => failover.failed(status.into()),
                Err(status) => return Err(status.into()),
            }
        }
        Err(failover.into_error())
    }
}
