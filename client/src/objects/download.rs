//! Downloads: ranges, SHA-256 checked against the stat, and files that
//! appear whole or not at all.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tresor_proto::v1::objects_client::ObjectsClient;
use tresor_proto::v1::{get_response, GetRequest};

use crate::channel::Transport;

use super::*;

impl Client {
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

    /// Streams a `Get` into `sink`, with failover while nothing has been
    /// written yet.
    pub(super) async fn download<W>(
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

/// What one download delivered.
pub(super) struct Download {
    pub(super) info: ObjectInfo,
    pub(super) bytes: u64,
    /// SHA-256 of the bytes received, when they are the whole object.
    pub(super) whole_object_sha256: Option<String>,
}

/// One attempt at a download; `written` counts bytes handed to `sink`, so
/// the caller knows whether a retry is still safe.
pub(super) async fn download_from<W>(
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
    let (info, announced) =
        match bounded(STREAM_STALL_TIMEOUT, "in a download", stream.message()).await? {
            Some(message) => match message.msg {
                Some(get_response::Msg::Info(info)) => (info, message.range),
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
    if let Some(range) = announced {
        if (range.offset, range.length) != (offset, expected) {
            return Err(ObjectError::Protocol(format!(
                "the node announced bytes {}+{} of {} for a request of {offset}+{expected}",
                range.offset, range.length, info.size
            )));
        }
    }
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
pub(super) struct PartialFile {
    pub(super) path: PathBuf,
    pub(super) target: PathBuf,
    pub(super) persisted: bool,
}

impl PartialFile {
    pub(super) async fn create(
        target: &Path,
    ) -> Result<(PartialFile, tokio::fs::File), ObjectError> {
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
    pub(super) async fn persist(mut self) -> Result<(), ObjectError> {
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
