//! Sending a snapshot to a peer in chunks, with a deadline for the last
//! one that grows with the snapshot.
//!
//! openraft's own chunk loop gives every chunk the same deadline
//! (`install_snapshot_timeout`), but the receiver answers the last chunk
//! only once it has loaded the whole snapshot into a new state tree: at a
//! million objects (~1 GB) that takes minutes on a busy machine, the
//! deadline expires, the last chunk is sent again while the first is still
//! loading, and after a few tries the whole snapshot is sent again from the
//! start — a node that never catches up. Here the last chunk may take
//! [`LOAD_SECS_PER_MIB`] per MiB of snapshot on top, and is never resent:
//! if it fails, openraft starts a new stream later.

use std::io::SeekFrom;
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError,
};
use openraft::network::{RPCOption, RaftNetwork};
use openraft::raft::{InstallSnapshotRequest, SnapshotResponse};
use openraft::{Snapshot, StorageError, StorageIOError, Vote};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::network::PeerClient;
use super::{NodeId, TypeConfig, SNAPSHOT_CHUNK_BYTES};

/// Seconds per MiB of snapshot the receiver may take to load it (it loads
/// at tens of MiB/s; this allows a disk or CPU ten times slower).
pub const LOAD_SECS_PER_MIB: u64 = 1;

/// Tries per chunk but the last before the stream is given up.
const CHUNK_TRIES: u32 = 3;

type SendError = StreamingError<TypeConfig, Fatal<NodeId>>;

/// The deadline of the chunk that completes a snapshot of `size` bytes,
/// when other chunks have `per_chunk`.
pub fn last_chunk_deadline(per_chunk: Duration, size: u64) -> Duration {
    per_chunk + Duration::from_secs(size.div_ceil(1024 * 1024) * LOAD_SECS_PER_MIB)
}

/// A failure to send a chunk that may pass: openraft backs off and tries
/// again.
fn transient(
    e: RPCError<NodeId, openraft::BasicNode, RaftError<NodeId, InstallSnapshotError>>,
) -> SendError {
    match e {
        RPCError::Timeout(t) => t.into(),
        RPCError::Unreachable(u) => u.into(),
        RPCError::Network(n) => n.into(),
        other => NetworkError::new(&other).into(),
    }
}

impl PeerClient {
    /// Sends `snapshot` to the peer in chunks of `option`'s size, each with
    /// `option`'s deadline but the last (see the module docs); returns the
    /// peer's vote once it has installed it (or a higher vote).
    pub(super) async fn stream_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        mut snapshot: Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, SendError> {
        let signature = snapshot.meta.signature();
        let storage = |e: std::io::Error| -> SendError {
            StorageError::from(StorageIOError::read_snapshot(Some(signature.clone()), &e)).into()
        };
        let file = &mut snapshot.snapshot;
        let size = file.seek(SeekFrom::End(0)).await.map_err(storage)?;
        let chunk = option
            .snapshot_chunk_size()
            .unwrap_or(SNAPSHOT_CHUNK_BYTES as usize)
            .max(1) as u64;
        let mut cancel = std::pin::pin!(cancel);
        let (mut offset, mut tries) = (0u64, 0u32);
        loop {
            let n = chunk.min(size - offset);
            let mut data = vec![0u8; n as usize];
            file.seek(SeekFrom::Start(offset)).await.map_err(storage)?;
            file.read_exact(&mut data).await.map_err(storage)?;
            let done = offset + n == size;
            let ttl = match done {
                true => last_chunk_deadline(option.hard_ttl(), size),
                false => option.hard_ttl(),
            };
            let request = InstallSnapshotRequest {
                vote,
                meta: snapshot.meta.clone(),
                offset,
                data,
                done,
            };
            let sent = tokio::select! {
                closed = &mut cancel => return Err(closed.into()),
                sent = self.install_snapshot(request, RPCOption::new(ttl)) => sent,
            };
            match sent {
                Ok(response) => {
                    if done || response.vote > vote {
                        return Ok(SnapshotResponse::new(response.vote));
                    }
                    offset += n;
                    tries = 0;
                }
                Err(RPCError::RemoteError(RemoteError {
                    target,
                    target_node,
                    source,
                })) => match source {
                    RaftError::Fatal(fatal) => {
                        return Err(RemoteError {
                            target,
                            target_node,
                            source: fatal,
                        }
                        .into())
                    }
                    // The peer lost track of this stream (it restarted, or
                    // began another): from the start, within the tries.
                    RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m)) => {
                        tries += 1;
                        if tries >= CHUNK_TRIES {
                            return Err(NetworkError::new(&m).into());
                        }
                        offset = 0;
                    }
                },
                Err(e) => {
                    tries += 1;
                    if done || tries >= CHUNK_TRIES {
                        return Err(transient(e));
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(tries))).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_chunk_may_take_a_second_per_mib_more() {
        let ten = Duration::from_secs(10);
        assert_eq!(last_chunk_deadline(ten, 0), ten);
        assert_eq!(last_chunk_deadline(ten, 1), ten + Duration::from_secs(1));
        // A million objects' snapshot (~940 MB) gets a quarter of an hour.
        assert_eq!(
            last_chunk_deadline(ten, 937_434_792),
            ten + Duration::from_secs(895)
        );
    }
}
