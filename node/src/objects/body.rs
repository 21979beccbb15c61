//! An upload's bytes as the write path takes them: pulled from the
//! client's stream into stripe-sized buffers of stored bytes, hashed (a
//! SHA-256 that can be stopped and resumed at a part's end) and, with a
//! data key, sealed chunk by chunk.

use futures::{Stream, StreamExt};
use md5::Digest as _;

use super::ObjectError;
use crate::crypto::{DataKey, CHUNK_BYTES};
use crate::meta::HashState;

/// The object's bytes, as the client sends them.
pub trait PutBody: Stream<Item = Result<Vec<u8>, ObjectError>> + Unpin + Send {}
impl<T: Stream<Item = Result<Vec<u8>, ObjectError>> + Unpin + Send> PutBody for T {}

/// Pulls the body into stripe-sized buffers of stored bytes, hashing the
/// object's bytes as it goes and, with a data key, sealing them chunk by
/// chunk first.
pub(super) struct Body<S> {
    stream: S,
    pending: Vec<u8>,
    pos: usize,
    /// SHA-256 of the object's bytes so far (a resumed upload's included).
    pub(super) hasher: HashState,
    /// Object bytes taken from this stream.
    pub(super) size: u64,
    /// Object bytes that may still be taken before the body pauses (a
    /// part's end); the stream goes on after [`Body::allow`].
    allowed: u64,
    /// The data key and the next chunk's index, when encrypting.
    seal: Option<(DataKey, u64)>,
    /// A sealed chunk being handed out, and how far.
    sealed: Vec<u8>,
    sealed_pos: usize,
    /// The client's stream has ended.
    pub(super) ended: bool,
    /// MD5 of the object's bytes, when the client expects one (S3's ETag).
    pub(super) md5: Option<Md5Beside>,
}

impl<S: PutBody> Body<S> {
    pub(super) fn new(stream: S, key: Option<DataKey>) -> Self {
        Self::resume(stream, key, 0, HashState::default())
    }

    /// A body that goes on after `hasher.bytes()` object bytes stored
    /// before, whose next sealed chunk is `chunk`.
    pub(super) fn resume(stream: S, key: Option<DataKey>, chunk: u64, hasher: HashState) -> Self {
        Self {
            stream,
            pending: Vec::new(),
            pos: 0,
            hasher,
            size: 0,
            allowed: u64::MAX,
            seal: key.map(|k| (k, chunk)),
            sealed: Vec::new(),
            sealed_pos: 0,
            ended: false,
            md5: None,
        }
    }

    /// Also takes the MD5 of the object's bytes.
    pub(super) fn with_md5(mut self) -> Self {
        self.md5 = Some(Md5Beside::start());
        self
    }

    /// Lets `bytes` more object bytes be taken, then pauses again.
    pub(super) fn allow(&mut self, bytes: u64) {
        self.allowed = bytes;
    }

    /// Fills `buf` with up to `want` object bytes; fewer only at the end
    /// (of the stream, or of what is allowed).
    async fn fill_plain(&mut self, buf: &mut Vec<u8>, want: usize) -> Result<(), ObjectError> {
        buf.clear();
        let want = want.min(usize::try_from(self.allowed).unwrap_or(usize::MAX));
        while buf.len() < want && !self.ended {
            if self.pos == self.pending.len() {
                match self.stream.next().await {
                    Some(Ok(chunk)) => {
                        self.pending = chunk;
                        self.pos = 0;
                        continue;
                    }
                    Some(Err(e)) => return Err(e),
                    None => {
                        self.ended = true;
                        break;
                    }
                }
            }
            let take = (want - buf.len()).min(self.pending.len() - self.pos);
            buf.extend_from_slice(&self.pending[self.pos..self.pos + take]);
            self.pos += take;
        }
        self.hasher.update(&buf[..]);
        if let Some(md5) = &mut self.md5 {
            md5.update(buf);
        }
        self.size += buf.len() as u64;
        self.allowed -= buf.len() as u64;
        Ok(())
    }

    /// Fills `buf` with up to `want` stored bytes; fewer only at the end.
    pub(super) async fn fill(&mut self, buf: &mut Vec<u8>, want: usize) -> Result<(), ObjectError> {
        if self.seal.is_none() {
            return self.fill_plain(buf, want).await;
        }
        buf.clear();
        while buf.len() < want {
            if self.sealed_pos == self.sealed.len() {
                let mut chunk = std::mem::take(&mut self.sealed);
                self.fill_plain(&mut chunk, CHUNK_BYTES as usize).await?;
                self.sealed_pos = 0;
                if chunk.is_empty() {
                    self.sealed = chunk;
                    break;
                }
                if let Some((key, index)) = &mut self.seal {
                    key.seal(*index, &mut chunk);
                    *index += 1;
                }
                self.sealed = chunk;
            }
            let take = (want - buf.len()).min(self.sealed.len() - self.sealed_pos);
            buf.extend_from_slice(&self.sealed[self.sealed_pos..self.sealed_pos + take]);
            self.sealed_pos += take;
        }
        Ok(())
    }
}

/// Chunks an [`Md5Beside`] thread may be behind by (4 MiB): then the
/// body waits for it.
const MD5_QUEUE: usize = 64;

/// The MD5 of an upload's bytes, taken on a thread of its own beside the
/// write path's SHA-256, sealing and encoding rather than after them: S3's
/// ETag is one more pass over every byte (about a fifth of an S3 PUT's
/// time here when taken in line). In line only if no thread can be
/// started.
pub(super) enum Md5Beside {
    Thread {
        chunks: std::sync::mpsc::SyncSender<Vec<u8>>,
        done: std::thread::JoinHandle<[u8; 16]>,
    },
    Inline(md5::Md5),
}

impl Md5Beside {
    fn start() -> Self {
        let (chunks, queue) = std::sync::mpsc::sync_channel::<Vec<u8>>(MD5_QUEUE);
        let thread = std::thread::Builder::new()
            .name("upload-md5".into())
            .spawn(move || {
                let mut md5 = md5::Md5::new();
                for chunk in queue {
                    md5.update(&chunk);
                }
                <[u8; 16]>::from(md5.finalize())
            });
        match thread {
            Ok(done) => Md5Beside::Thread { chunks, done },
            Err(e) => {
                tracing::warn!(error = %e, "no thread for an upload's MD5: taken in line");
                Md5Beside::Inline(md5::Md5::new())
            }
        }
    }

    /// Takes `bytes`, the next of the object's bytes.
    fn update(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Md5Beside::Thread { chunks, .. } = self {
            // Sent unless the thread is gone, which `finish` reports.
            let _ = chunks.send(bytes.to_vec());
        } else if let Md5Beside::Inline(md5) = self {
            md5.update(bytes);
        }
    }

    /// The MD5 of every byte taken; `None` if its thread failed.
    pub(super) fn finish(self) -> Option<[u8; 16]> {
        match self {
            Md5Beside::Thread { chunks, done } => {
                drop(chunks);
                done.join().ok()
            }
            Md5Beside::Inline(md5) => Some(md5.finalize().into()),
        }
    }
}

#[cfg(test)]
mod md5_tests {
    use super::*;

    #[test]
    fn the_md5_beside_is_the_md5_of_the_bytes_in_order() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let want = <[u8; 16]>::from(md5::Md5::digest(&data));
        for mut beside in [Md5Beside::start(), Md5Beside::Inline(md5::Md5::new())] {
            // More chunks than the queue holds, of uneven sizes.
            for chunk in data.chunks(7_777) {
                beside.update(chunk);
            }
            assert_eq!(beside.finish(), Some(want));
        }
    }
}
