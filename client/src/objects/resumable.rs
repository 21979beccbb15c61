//! Resumable uploads: a session the cluster keeps, parts it makes durable
//! one by one, and a file upload that survives cut links and lost nodes by
//! asking any node how far the session got and sending the rest from
//! there.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tresor_proto::v1 as pb;
use tresor_proto::v1::upload_parts_request::Msg;

use super::upload::{normalize_sha256, read_full};
use super::*;

/// Attempts of one file upload (the first and its resumptions).
const ATTEMPTS: u32 = 10;
/// The wait before the first resumption; doubled each time, up to
/// [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

/// A resumable upload session, as a node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadSession {
    /// Names the session in every later call.
    pub upload_id: String,
    /// Bucket of the object it will make.
    pub bucket: String,
    /// Key of the object it will make.
    pub key: String,
    /// Bytes per part; every part but the last has exactly this many.
    pub part_bytes: u64,
    /// Bytes durably stored: the offset to send from.
    pub durable_bytes: u64,
    /// Parts durably stored.
    pub parts: u32,
    /// The object's last (short) part is stored: only completing remains.
    pub finished: bool,
    /// The principal that created it.
    pub principal: String,
}

impl From<pb::UploadInfo> for UploadSession {
    fn from(i: pb::UploadInfo) -> Self {
        Self {
            upload_id: i.upload_id,
            bucket: i.bucket,
            key: i.key,
            part_bytes: i.part_bytes,
            durable_bytes: i.durable_bytes,
            parts: i.parts,
            finished: i.finished,
            principal: i.principal,
        }
    }
}

/// A file stored through a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResumablePut {
    /// The stored object.
    #[serde(flatten)]
    pub stored: PutResult,
    /// The session that made it.
    pub upload_id: String,
    /// Bytes sent over the network, those sent again after a cut included.
    pub bytes_sent: u64,
    /// How many times the upload was resumed.
    pub resumes: u32,
}

/// Told the session as soon as it exists (to note its id for `--resume`).
pub type OnSession = Arc<dyn Fn(&UploadSession) + Send + Sync>;
/// Told the offset an upload resumes from, and why it had to.
pub type OnResume = Arc<dyn Fn(u64, &str) + Send + Sync>;

/// How a file upload through a session goes.
#[derive(Clone, Default)]
pub struct ResumeOptions {
    /// Continue this session instead of creating one.
    pub upload_id: Option<String>,
    /// See [`OnSession`].
    pub on_session: Option<OnSession>,
    /// See [`OnResume`].
    pub on_resume: Option<OnResume>,
}

impl fmt::Debug for ResumeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResumeOptions")
            .field("upload_id", &self.upload_id)
            .finish_non_exhaustive()
    }
}

/// Whether an attempt that failed this way is worth resuming.
fn resumable(err: &ObjectError) -> bool {
    match err {
        ObjectError::Rpc(status) => matches!(
            status.code(),
            Code::Unavailable
                | Code::Cancelled
                | Code::DeadlineExceeded
                | Code::Unknown
                | Code::Aborted
                | Code::Internal
                | Code::ResourceExhausted
                // The session moved on meanwhile (another call of ours, cut
                // off, still recorded a part): ask again where it stands.
                | Code::FailedPrecondition
        ),
        ObjectError::Connect(_) => true,
        _ => false,
    }
}

/// Hashes what it reads.
struct Hashing<'a, R> {
    inner: R,
    hasher: &'a mut Sha256,
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<'_, R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            this.hasher.update(&buf.filled()[before..]);
        }
        polled
    }
}

impl Client {
    /// Opens a resumable upload of `bucket/key` (content type, metadata and
    /// expected SHA-256 from `opts`).
    pub async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        opts: &PutOptions,
    ) -> Result<UploadSession, ObjectError> {
        check_names(bucket, key)?;
        let expected = opts
            .expected_sha256
            .as_deref()
            .map(normalize_sha256)
            .transpose()?;
        let request = pb::CreateUploadRequest {
            header: Some(pb::PutHeader {
                bucket: bucket.to_string(),
                key: key.to_string(),
                content_type: opts.content_type.clone().unwrap_or_default(),
                metadata: opts.metadata.clone(),
                expected_sha256: expected.unwrap_or_default(),
            }),
        };
        // A retry after a lost answer may leave a second session: it holds
        // nothing and expires.
        let info = self
            .unary_on(uploads_client, |mut rpc| {
                let request = request.clone();
                async move { rpc.create_upload(request).await }
            })
            .await?;
        Ok(info.into())
    }

    /// Where session `upload_id` stands.
    pub async fn get_upload(&self, upload_id: &str) -> Result<UploadSession, ObjectError> {
        let request = pb::UploadRef {
            upload_id: upload_id.to_string(),
        };
        let info = self
            .unary_on(uploads_client, |mut rpc| {
                let request = request.clone();
                async move { rpc.get_upload(request).await }
            })
            .await?;
        Ok(info.into())
    }

    /// Ends session `upload_id` without an object; its stored parts are
    /// deleted.
    pub async fn abort_upload(&self, upload_id: &str) -> Result<(), ObjectError> {
        let request = pb::UploadRef {
            upload_id: upload_id.to_string(),
        };
        self.unary_on(uploads_client, |mut rpc| {
            let request = request.clone();
            async move { rpc.abort_upload(request).await }
        })
        .await?;
        Ok(())
    }

    /// Commits session `upload_id` as its object: `size` bytes whose
    /// SHA-256 is `sha256` (lowercase hex), as the client sent them.
    pub async fn complete_upload(
        &self,
        upload_id: &str,
        size: u64,
        sha256: &str,
    ) -> Result<PutResult, ObjectError> {
        let request = pb::CompleteUploadRequest {
            upload_id: upload_id.to_string(),
            size,
            expected_sha256: sha256.to_string(),
        };
        let stored = self
            .unary_on(uploads_client, |mut rpc| {
                let request = request.clone();
                async move { rpc.complete_upload(request).await }
            })
            .await?;
        Ok(PutResult {
            bucket: stored.bucket,
            key: stored.key,
            size: stored.size,
            sha256: stored.sha256,
        })
    }

    /// One `UploadParts` call through the current endpoint: sends what
    /// `reader` yields — the object's bytes from `session.durable_bytes` —
    /// and ends the object where the reader ends. Returns the durable
    /// offset the node reached. `progress` is told the offset of the bytes
    /// sent so far. Never more than one part ahead of what the node made
    /// durable, so a cut costs at most one part sent again.
    pub async fn upload_parts<R: AsyncRead + Unpin + Send>(
        &self,
        session: &UploadSession,
        reader: R,
        progress: Option<Progress>,
    ) -> Result<u64, ObjectError> {
        self.send_parts(session, reader, progress).await.0
    }

    /// [`Client::upload_parts`], also returning the bytes it sent.
    async fn send_parts<R: AsyncRead + Unpin + Send>(
        &self,
        session: &UploadSession,
        mut reader: R,
        progress: Option<Progress>,
    ) -> (Result<u64, ObjectError>, u64) {
        let offset = session.durable_bytes;
        let ahead = session.part_bytes.max(CHUNK_BYTES as u64);
        let (tx, rx) = mpsc::channel(UPLOAD_QUEUE);
        let header = pb::UploadPartsRequest {
            msg: Some(Msg::Header(pb::UploadPartsHeader {
                upload_id: session.upload_id.clone(),
                offset,
            })),
        };
        if tx.send(header).await.is_err() {
            let closed = ObjectError::Protocol("upload queue closed before it started".into());
            return (Err(closed), 0);
        }
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        let cancel = request.cancellation_handle();
        let mut rpc = uploads_client(self.current().channel);
        let answer = bounded(CALL_TIMEOUT, "to UploadParts", rpc.upload_parts(request)).await;
        let mut acks = match answer {
            Ok(acks) => acks.into_inner(),
            Err(status) => return (Err(status.into()), 0),
        };
        let mut sent = 0u64;
        let (durable_tx, mut durable_rx) = tokio::sync::watch::channel(offset);
        let outcome = {
            let pump = async {
                loop {
                    // At most one part past what is durable is in flight.
                    while offset + sent + CHUNK_BYTES as u64
                        > *durable_rx.borrow_and_update() + ahead
                    {
                        match tokio::time::timeout(COMMIT_WAIT_TIMEOUT, durable_rx.changed()).await
                        {
                            Ok(Ok(())) => {}
                            // The answers ended: their end says how.
                            Ok(Err(_)) => return Ok(()),
                            Err(_) => {
                                return Err(ObjectError::Rpc(Status::deadline_exceeded(format!(
                                    "no part made durable within {COMMIT_WAIT_TIMEOUT:?}"
                                ))))
                            }
                        }
                    }
                    let mut chunk = vec![0u8; CHUNK_BYTES];
                    let filled = read_full(&mut reader, &mut chunk)
                        .await
                        .map_err(|e| ObjectError::Io(io_context(e, "reading upload data")))?;
                    let msg = if filled == 0 {
                        Msg::Finish(true)
                    } else {
                        chunk.truncate(filled);
                        Msg::Data(chunk)
                    };
                    let message = pb::UploadPartsRequest { msg: Some(msg) };
                    match tokio::time::timeout(STREAM_STALL_TIMEOUT, tx.send(message)).await {
                        Ok(Ok(())) => {}
                        // The node ended the call; its answer says why.
                        Ok(Err(_)) => return Ok(()),
                        Err(_) => {
                            return Err(ObjectError::Rpc(Status::deadline_exceeded(format!(
                                "the node took no upload data for {STREAM_STALL_TIMEOUT:?}"
                            ))))
                        }
                    }
                    if filled == 0 {
                        return Ok(());
                    }
                    sent += filled as u64;
                    if let Some(progress) = &progress {
                        progress(offset + sent);
                    }
                }
            };
            let answers = async {
                while let Some(ack) = acks.message().await? {
                    durable_tx.send_replace(ack.durable_bytes);
                }
                Ok::<_, Status>(())
            };
            tokio::pin!(pump);
            tokio::pin!(answers);
            let mut pumped = false;
            loop {
                tokio::select! {
                    p = &mut pump, if !pumped => match p {
                        Ok(()) => pumped = true,
                        Err(e) => break Err(e),
                    },
                    a = &mut answers => break match a {
                        Ok(()) if pumped => Ok(()),
                        Ok(()) => Err(ObjectError::Protocol(
                            "the node ended the upload before the data did".into(),
                        )),
                        Err(status) => Err(status.into()),
                    },
                    _ = tokio::time::sleep(COMMIT_WAIT_TIMEOUT), if pumped => {
                        break Err(ObjectError::Rpc(Status::deadline_exceeded(format!(
                            "no answer to the upload's last part within {COMMIT_WAIT_TIMEOUT:?}"
                        ))));
                    }
                }
            }
        };
        if outcome.is_err() {
            cancel.cancel();
        }
        let durable = *durable_rx.borrow();
        (outcome.map(|()| durable), sent)
    }

    /// Uploads the file at `path` as `bucket/key` through a resumable
    /// session: cut links, lost nodes and a lost leader cost the part in
    /// flight, not the upload. After a failure it waits (backing off),
    /// moves to the next endpoint, asks how far the session got and sends
    /// the rest. The stored object is checked against the file's size and
    /// SHA-256.
    pub async fn put_file_resumable(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        opts: PutOptions,
        resume: ResumeOptions,
    ) -> Result<ResumablePut, ObjectError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| io_context(e, path.display()))?
            .len();
        let mut session = match &resume.upload_id {
            Some(id) => self.get_upload(id).await?,
            None => self.create_upload(bucket, key, &opts).await?,
        };
        if (session.bucket.as_str(), session.key.as_str()) != (bucket, key) {
            return Err(ObjectError::InvalidArgument(format!(
                "upload {} is of {}/{}, not {bucket}/{key}",
                session.upload_id, session.bucket, session.key
            )));
        }
        if let Some(on_session) = &resume.on_session {
            on_session(&session);
        }
        let id = session.upload_id.clone();
        let (mut bytes_sent, mut resumes) = (0u64, 0u32);
        let mut backoff = BACKOFF_FIRST;
        let mut sha256 = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                self.next_endpoint().await;
                match self.get_upload(&id).await {
                    Ok(s) => session = s,
                    Err(e) if resumable(&e) => continue,
                    Err(e) => return Err(e),
                }
            }
            if session.durable_bytes > size {
                return Err(ObjectError::InvalidArgument(format!(
                    "upload {id} holds {} bytes, more than the file's {size}: not this file",
                    session.durable_bytes
                )));
            }
            let mut hasher = Sha256::new();
            let mut file = tokio::fs::File::open(path)
                .await
                .map_err(|e| io_context(e, path.display()))?;
            hash_prefix(&mut file, session.durable_bytes, &mut hasher).await?;
            let durable = if session.durable_bytes == size {
                Ok(size)
            } else {
                let reader = Hashing {
                    inner: &mut file,
                    hasher: &mut hasher,
                };
                let (durable, sent) = self
                    .send_parts(&session, reader, opts.progress.clone())
                    .await;
                bytes_sent += sent;
                durable
            };
            match durable {
                Ok(d) if d == size => {
                    sha256 = Some(hex::encode(hasher.finalize()));
                    break;
                }
                Ok(d) => {
                    let why = format!("the node stopped at {d} of {size} bytes");
                    self.resuming(&resume, d, &why, &mut resumes);
                }
                Err(e) if resumable(&e) => {
                    let why = e.to_string();
                    self.resuming(&resume, session.durable_bytes, &why, &mut resumes);
                }
                Err(e) => return Err(e),
            }
        }
        let Some(sha256) = sha256 else {
            return Err(ObjectError::Rpc(Status::unavailable(format!(
                "upload {id} did not finish in {ATTEMPTS} attempts; resume it later"
            ))));
        };
        let stored = self
            .complete_checked(&id, bucket, key, size, &sha256)
            .await?;
        Ok(ResumablePut {
            stored,
            upload_id: id,
            bytes_sent,
            resumes,
        })
    }

    fn resuming(&self, resume: &ResumeOptions, from: u64, why: &str, resumes: &mut u32) {
        *resumes += 1;
        if let Some(on_resume) = &resume.on_resume {
            on_resume(from, why);
        }
    }

    /// Completes the session; if an earlier answer was lost and the session
    /// is gone, the object stored under the key decides.
    async fn complete_checked(
        &self,
        id: &str,
        bucket: &str,
        key: &str,
        size: u64,
        sha256: &str,
    ) -> Result<PutResult, ObjectError> {
        let mut lost = false;
        let mut backoff = BACKOFF_FIRST;
        for _ in 0..ATTEMPTS {
            match self.complete_upload(id, size, sha256).await {
                Ok(stored) => return check_stored(stored, size, sha256),
                Err(ObjectError::Rpc(s)) if s.code() == Code::NotFound && lost => {
                    let info = self.stat(bucket, key).await?;
                    let stored = PutResult {
                        bucket: info.bucket,
                        key: info.key,
                        size: info.size,
                        sha256: info.sha256,
                    };
                    return check_stored(stored, size, sha256);
                }
                Err(e) if resumable(&e) => lost = true,
                Err(e) => return Err(e),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        Err(ObjectError::OutcomeUnknown {
            bucket: bucket.to_string(),
            key: key.to_string(),
            size,
            sha256: sha256.to_string(),
            reason: format!("completing upload {id} got no answer"),
        })
    }
}

/// The stored object, if it is what was sent.
fn check_stored(stored: PutResult, size: u64, sha256: &str) -> Result<PutResult, ObjectError> {
    if stored.size != size || !stored.sha256.eq_ignore_ascii_case(sha256) {
        return Err(ObjectError::Integrity {
            expected: format!("{sha256} ({size} bytes sent)"),
            actual: format!("{} ({} bytes stored)", stored.sha256, stored.size),
        });
    }
    Ok(stored)
}

/// Hashes the first `len` bytes of `file` into `hasher`, leaving the file
/// positioned after them.
async fn hash_prefix(
    file: &mut tokio::fs::File,
    len: u64,
    hasher: &mut Sha256,
) -> Result<(), ObjectError> {
    file.seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(|e| io_context(e, "rewinding the upload file"))?;
    let mut left = len;
    let mut buf = vec![0u8; CHUNK_BYTES];
    while left > 0 {
        let want = (left as usize).min(buf.len());
        let got = read_full(file, &mut buf[..want])
            .await
            .map_err(|e| io_context(e, "reading the upload file"))?;
        if got == 0 {
            return Err(ObjectError::InvalidArgument(
                "the file is shorter than what the upload already holds".into(),
            ));
        }
        hasher.update(&buf[..got]);
        left -= got as u64;
    }
    Ok(())
}
