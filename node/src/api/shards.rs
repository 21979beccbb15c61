//! The internal `tresor.internal.v1.Shards` service: this node's shard files
//! for the write and read paths of any coordinating node.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tresor_proto::internal::v1::shards_server::Shards;
use tresor_proto::internal::v1::{self as ipb, shard_write, shard_write_reply};

use super::{shard_read_status, shard_status, task_status};
use crate::crypto::{CryptoError, EpochKeys};
use crate::objects::{epoch_key_from_proto, epoch_key_to_proto};
use crate::shards::{Digest, ObjectId, ShardError, ShardId, ShardStore, ShardWriter};

/// How long a single-shard delete may wait for its turn on this node:
/// well under the caller's deadline for it (`objects::timeouts::DELETE`),
/// so a delete its caller saw time out is never carried out later.
const DELETE_STILL_WANTED: std::time::Duration = std::time::Duration::from_secs(3);

/// Largest block accepted (the config allows shards of up to 4 MiB).
const MAX_BLOCK: u32 = 4 * 1024 * 1024;
/// How long a shard write may wait for the coordinator's next message
/// before it is abandoned (its temporary file removed): a coordinator that
/// stalls must not pin a file, a task and its buffers for ever.
const STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Serves the local shard store and this node's epoch key files.
pub struct ShardsService {
    store: Arc<ShardStore>,
    epochs: Arc<EpochKeys>,
}

impl ShardsService {
    /// Serves `store` and `epochs`.
    pub fn new(store: Arc<ShardStore>, epochs: Arc<EpochKeys>) -> Self {
        Self { store, epochs }
    }
}

fn epoch_key_status(e: CryptoError) -> Status {
    match e {
        CryptoError::EpochKeyFile { .. } => Status::internal(e.to_string()),
        _ => Status::failed_precondition(format!("epoch key refused: {e}")),
    }
}

/// The coordinator's next message, or an error if it stalls.
async fn next_message(
    inbound: &mut Streaming<ipb::ShardWrite>,
) -> Result<Option<shard_write::Msg>, Status> {
    match tokio::time::timeout(STALL_TIMEOUT, inbound.message()).await {
        Ok(m) => Ok(m?.and_then(|m| m.msg)),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no message from the coordinator for {STALL_TIMEOUT:?}; shard write abandoned"
        ))),
    }
}

fn shard_id(r: Option<&ipb::ShardRef>) -> Result<ShardId, Status> {
    let r = r.ok_or_else(|| Status::invalid_argument("shard reference missing"))?;
    let object_id = ObjectId::from_slice(&r.object_id)
        .ok_or_else(|| Status::invalid_argument("object id must be 16 bytes"))?;
    Ok(ShardId {
        object_id,
        segment: r.segment,
        index: r.index,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ShardError> + Send + 'static,
) -> Result<T, Status> {
    blocking_as(f, shard_status).await
}

/// Runs `f` off the async workers, mapping its error with `status`.
async fn blocking_as<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ShardError> + Send + 'static,
    status: fn(ShardError) -> Status,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(task_status)?
        .map_err(status)
}

/// Receives one shard file: open, blocks, commit.
async fn receive(
    store: Arc<ShardStore>,
    mut inbound: Streaming<ipb::ShardWrite>,
    tx: &mpsc::Sender<Result<ipb::ShardWriteReply, Status>>,
) -> Result<(), Status> {
    let first = next_message(&mut inbound).await?;
    let Some(shard_write::Msg::Open(open)) = first else {
        return Err(Status::invalid_argument(
            "a shard write must start with `open`",
        ));
    };
    let id = shard_id(open.shard.as_ref())?;
    if open.block_size == 0 || open.block_size > MAX_BLOCK {
        return Err(Status::invalid_argument(format!(
            "block size {} out of range 1..={MAX_BLOCK}",
            open.block_size
        )));
    }
    let block_size = open.block_size;
    let replace = open.replace;
    let s = store.clone();
    let mut writer: ShardWriter = blocking(move || {
        let writer = s.create(id, block_size)?;
        Ok(if replace { writer.replacing() } else { writer })
    })
    .await?;
    let ready = ipb::ShardWriteReply {
        msg: Some(shard_write_reply::Msg::Ready(true)),
    };
    tx.send(Ok(ready))
        .await
        .map_err(|_| Status::cancelled("coordinator went away"))?;
    loop {
        match next_message(&mut inbound).await? {
            Some(shard_write::Msg::Block(data)) => {
                writer = blocking(move || {
                    writer.append_block(&data)?;
                    Ok(writer)
                })
                .await?;
            }
            Some(shard_write::Msg::Commit(true)) => {
                let digest = blocking(move || writer.commit()).await?;
                let reply = ipb::ShardWriteReply {
                    msg: Some(shard_write_reply::Msg::Committed(digest.0.to_vec())),
                };
                let _ = tx.send(Ok(reply)).await;
                return Ok(());
            }
            Some(_) => {
                return Err(Status::invalid_argument(
                    "unexpected message in a shard write",
                ))
            }
            // Dropping the writer removes the temporary file.
            None => {
                return Err(Status::cancelled(
                    "shard write ended without commit; nothing kept",
                ))
            }
        }
    }
}

#[tonic::async_trait]
impl Shards for ShardsService {
    type WriteShardStream = ReceiverStream<Result<ipb::ShardWriteReply, Status>>;

    async fn write_shard(
        &self,
        request: Request<Streaming<ipb::ShardWrite>>,
    ) -> Result<Response<Self::WriteShardStream>, Status> {
        let (tx, rx) = mpsc::channel(2);
        let store = self.store.clone();
        let inbound = request.into_inner();
        tokio::spawn(async move {
            if let Err(status) = receive(store, inbound, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn read_block(
        &self,
        request: Request<ipb::ReadBlockRequest>,
    ) -> Result<Response<ipb::ReadBlockReply>, Status> {
        let req = request.into_inner();
        let id = shard_id(req.shard.as_ref())?;
        let digest = Digest::from_slice(&req.digest)
            .ok_or_else(|| Status::invalid_argument("digest must be 32 bytes"))?;
        let store = self.store.clone();
        let block = req.block;
        let data = blocking_as(
            move || store.open_reader(&id, &digest)?.read_block(block),
            shard_read_status,
        )
        .await;
        if let Err(status) = &data {
            if status.code() == tonic::Code::DataLoss {
                tracing::error!(
                    object = %id.object_id,
                    segment = id.segment,
                    shard = id.index,
                    block,
                    error = status.message(),
                    "corrupt shard"
                );
            }
        }
        Ok(Response::new(ipb::ReadBlockReply { data: data?.into() }))
    }

    async fn delete_shard(
        &self,
        request: Request<ipb::ShardRef>,
    ) -> Result<Response<ipb::DeleteObjectShardsReply>, Status> {
        let id = shard_id(Some(request.get_ref()))?;
        let store = self.store.clone();
        // A delete that waited here longer than its caller waits for the
        // answer is not carried out: the caller has given up on it and may
        // have written the shard anew meanwhile (a resumed upload's part).
        let received = std::time::Instant::now();
        let deleted = tokio::task::spawn_blocking(move || {
            if received.elapsed() > DELETE_STILL_WANTED {
                return Err(std::io::Error::other(
                    "the delete waited too long; its caller has given up",
                ));
            }
            store.delete(&id)
        })
        .await
        .map_err(task_status)?
        .map_err(|e| Status::internal(format!("deleting a shard: {e}")))?;
        Ok(Response::new(ipb::DeleteObjectShardsReply {
            deleted: deleted as u32,
        }))
    }

    async fn stat_shard(
        &self,
        request: Request<ipb::ShardRef>,
    ) -> Result<Response<ipb::StatShardReply>, Status> {
        let id = shard_id(Some(request.get_ref()))?;
        let store = self.store.clone();
        let bytes = tokio::task::spawn_blocking(move || store.stat(&id))
            .await
            .map_err(task_status)?
            .map_err(|e| Status::internal(format!("looking at a shard file: {e}")))?;
        Ok(Response::new(ipb::StatShardReply {
            exists: bytes.is_some(),
            bytes: bytes.unwrap_or(0),
        }))
    }

    async fn delete_object_shards(
        &self,
        request: Request<ipb::DeleteObjectShardsRequest>,
    ) -> Result<Response<ipb::DeleteObjectShardsReply>, Status> {
        let object_id = ObjectId::from_slice(&request.get_ref().object_id)
            .ok_or_else(|| Status::invalid_argument("object id must be 16 bytes"))?;
        let store = self.store.clone();
        let deleted = tokio::task::spawn_blocking(move || store.delete_object(&object_id))
            .await
            .map_err(task_status)?
            .map_err(|e| Status::internal(format!("deleting shards: {e}")))?;
        Ok(Response::new(ipb::DeleteObjectShardsReply {
            deleted: deleted as u32,
        }))
    }

    async fn put_epoch_key(
        &self,
        request: Request<ipb::EpochKeyFile>,
    ) -> Result<Response<ipb::PutEpochKeyReply>, Status> {
        let key = epoch_key_from_proto(request.into_inner()).map_err(Status::invalid_argument)?;
        let epochs = self.epochs.clone();
        let changed = tokio::task::spawn_blocking(move || epochs.store(&key))
            .await
            .map_err(task_status)?
            .map_err(epoch_key_status)?;
        Ok(Response::new(ipb::PutEpochKeyReply { changed }))
    }

    async fn get_epoch_key(
        &self,
        request: Request<ipb::GetEpochKeyRequest>,
    ) -> Result<Response<ipb::EpochKeyFile>, Status> {
        let epoch = request.get_ref().epoch;
        let epochs = self.epochs.clone();
        let key = tokio::task::spawn_blocking(move || epochs.wrapped(epoch))
            .await
            .map_err(task_status)?
            .map_err(epoch_key_status)?
            .ok_or_else(|| Status::not_found(format!("no key of epoch {epoch:016x} here")))?;
        Ok(Response::new(epoch_key_to_proto(&key)))
    }
}
