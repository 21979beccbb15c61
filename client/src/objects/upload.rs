//! Uploads: the body streamed in chunks with its SHA-256, retried on
//! another node when that is safe, and files whose outcome is settled by
//! size and SHA-256.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use tresor_proto::v1::{put_request, PutHeader, PutRequest};

use super::*;

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

impl Client {
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
    pub(super) async fn next_endpoint(&self) {
        let mut failover = self.failover();
        let _current = failover.next().await;
        let _next = failover.next().await;
    }
}

/// Lowercase hex of a SHA-256, refusing anything that is not 64 hex digits.
pub(super) fn normalize_sha256(hex_digest: &str) -> Result<String, ObjectError> {
    let digest = hex_digest.trim();
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(digest.to_ascii_lowercase())
    } else {
        Err(ObjectError::InvalidArgument(format!(
            "{hex_digest:?} is not a SHA-256 (64 hex digits)"
        )))
    }
}

/// Why the upload body stopped early.
pub(super) enum BodyError {
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
pub(super) async fn send_body<R>(
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
pub(super) async fn read_full<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> io::Result<usize> {
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
