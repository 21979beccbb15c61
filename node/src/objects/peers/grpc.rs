//! [`ShardPeers`] over the internal Shards service: one cached client per
//! node, addressed from the replicated node table.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tresor_client::channel::MAX_MESSAGE_BYTES;
use tresor_proto::internal::v1::shards_client::ShardsClient;
use tresor_proto::internal::v1::{self as ipb, shard_write, shard_write_reply};

use super::{PeerError, ShardPeers, ShardSink};
use crate::crypto::WrappedEpochKey;
use crate::meta::{Digest, MetaStore, ObjectId};
use crate::shards::ShardId;

/// Blocks queued per file being written.
const BLOCKS_IN_FLIGHT: usize = 4;

/// Shards clients by node id; rebuilt when a node's address changes.
pub struct GrpcPeers {
    meta: MetaStore,
    clients: Mutex<HashMap<u64, (String, ShardsClient<Channel>)>>,
}

impl GrpcPeers {
    /// Peers addressed as `meta`'s node table says.
    pub fn new(meta: MetaStore) -> Self {
        Self {
            meta,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// A client for `node` (connects lazily).
    fn client(&self, node: u64) -> Result<ShardsClient<Channel>, PeerError> {
        let unreachable = |reason: String| PeerError::Unreachable { node, reason };
        let record = self
            .meta
            .node(node)
            .map_err(|e| unreachable(format!("node table unreadable: {e}")))?
            .ok_or_else(|| unreachable("not a member".into()))?;
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| unreachable("peer table poisoned".into()))?;
        if let Some((addr, client)) = clients.get(&node) {
            if *addr == record.addr {
                return Ok(client.clone());
            }
        }
        let channel =
            tresor_client::connect_lazy(&record.addr).map_err(|e| unreachable(e.to_string()))?;
        let client = ShardsClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        clients.insert(node, (record.addr, client.clone()));
        Ok(client)
    }
}

fn shard_ref(shard: ShardId) -> ipb::ShardRef {
    ipb::ShardRef {
        object_id: shard.object_id.0.to_vec(),
        segment: shard.segment,
        index: shard.index,
    }
}

/// What a holder's status means at this boundary.
fn peer_error(node: u64, s: &Status) -> PeerError {
    let reason = s.message().to_string();
    match s.code() {
        Code::NotFound => PeerError::NotFound { node },
        Code::DataLoss => PeerError::Corrupt { node, reason },
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
            PeerError::Unreachable { node, reason }
        }
        _ => PeerError::Refused { node, reason },
    }
}

#[async_trait]
impl ShardPeers for GrpcPeers {
    async fn open(
        &self,
        node: u64,
        shard: ShardId,
        block_size: u32,
        replace: bool,
    ) -> Result<Box<dyn ShardSink>, PeerError> {
        let mut client = self.client(node)?;
        let (tx, rx) = mpsc::channel(BLOCKS_IN_FLIGHT);
        let open = ipb::ShardWrite {
            msg: Some(shard_write::Msg::Open(ipb::ShardWriteOpen {
                shard: Some(shard_ref(shard)),
                block_size,
                replace,
            })),
        };
        tx.send(open).await.map_err(|_| PeerError::Unreachable {
            node,
            reason: "stream closed".into(),
        })?;
        let mut replies = client
            .write_shard(ReceiverStream::new(rx))
            .await
            .map_err(|s| peer_error(node, &s))?
            .into_inner();
        match replies.message().await.map_err(|s| peer_error(node, &s))? {
            Some(ipb::ShardWriteReply {
                msg: Some(shard_write_reply::Msg::Ready(true)),
            }) => Ok(Box::new(GrpcSink { node, tx, replies })),
            other => Err(PeerError::Refused {
                node,
                reason: format!("unexpected answer to open: {other:?}"),
            }),
        }
    }

    async fn read_block(
        &self,
        node: u64,
        shard: ShardId,
        block: u32,
        digest: Digest,
    ) -> Result<Bytes, PeerError> {
        let request = ipb::ReadBlockRequest {
            shard: Some(shard_ref(shard)),
            block,
            digest: digest.0.to_vec(),
        };
        let reply = self
            .client(node)?
            .read_block(request)
            .await
            .map_err(|s| peer_error(node, &s))?;
        Ok(reply.into_inner().data)
    }

    async fn delete(&self, node: u64, shard: ShardId) -> Result<bool, PeerError> {
        let reply = self
            .client(node)?
            .delete_shard(shard_ref(shard))
            .await
            .map_err(|s| peer_error(node, &s))?;
        Ok(reply.into_inner().deleted > 0)
    }

    async fn delete_object(&self, node: u64, object: ObjectId) -> Result<u32, PeerError> {
        let request = ipb::DeleteObjectShardsRequest {
            object_id: object.0.to_vec(),
        };
        let reply = self
            .client(node)?
            .delete_object_shards(request)
            .await
            .map_err(|s| peer_error(node, &s))?;
        Ok(reply.into_inner().deleted)
    }

    async fn stat(&self, node: u64, shard: ShardId) -> Result<Option<u64>, PeerError> {
        let reply = self
            .client(node)?
            .stat_shard(shard_ref(shard))
            .await
            .map_err(|s| peer_error(node, &s))?
            .into_inner();
        Ok(reply.exists.then_some(reply.bytes))
    }

    async fn put_epoch_key(&self, node: u64, key: WrappedEpochKey) -> Result<bool, PeerError> {
        let reply = self
            .client(node)?
            .put_epoch_key(epoch_key_to_proto(&key))
            .await
            .map_err(|s| peer_error(node, &s))?;
        Ok(reply.into_inner().changed)
    }

    async fn get_epoch_key(
        &self,
        node: u64,
        epoch: u64,
    ) -> Result<Option<WrappedEpochKey>, PeerError> {
        match self
            .client(node)?
            .get_epoch_key(ipb::GetEpochKeyRequest { epoch })
            .await
        {
            Ok(reply) => epoch_key_from_proto(reply.into_inner())
                .map(Some)
                .map_err(|reason| PeerError::Corrupt { node, reason }),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(peer_error(node, &s)),
        }
    }
}

/// An epoch key file as the internal service carries it.
pub fn epoch_key_to_proto(key: &WrappedEpochKey) -> ipb::EpochKeyFile {
    ipb::EpochKeyFile {
        epoch: key.id,
        master_key_id: key.master_key_id.clone(),
        nonce: key.nonce.to_vec(),
        sealed: key.sealed.clone(),
    }
}

/// An epoch key file from the internal service, checked for shape.
pub fn epoch_key_from_proto(key: ipb::EpochKeyFile) -> Result<WrappedEpochKey, String> {
    let nonce = <[u8; 12]>::try_from(key.nonce.as_slice())
        .map_err(|_| "an epoch key's nonce must be 12 bytes".to_string())?;
    if key.sealed.len() != 48 {
        return Err("a wrapped epoch key must be 48 bytes".into());
    }
    Ok(WrappedEpochKey {
        id: key.epoch,
        master_key_id: key.master_key_id,
        nonce,
        sealed: key.sealed,
    })
}

/// A shard file being written through a `WriteShard` stream.
struct GrpcSink {
    node: u64,
    tx: mpsc::Sender<ipb::ShardWrite>,
    replies: tonic::Streaming<ipb::ShardWriteReply>,
}

impl GrpcSink {
    async fn push(&mut self, msg: shard_write::Msg) -> Result<(), PeerError> {
        self.tx
            .send(ipb::ShardWrite { msg: Some(msg) })
            .await
            .map_err(|_| PeerError::Unreachable {
                node: self.node,
                reason: "stream to the node closed".into(),
            })
    }
}

#[async_trait]
impl ShardSink for GrpcSink {
    async fn send(&mut self, block: Bytes) -> Result<(), PeerError> {
        self.push(shard_write::Msg::Block(block)).await
    }

    async fn commit(mut self: Box<Self>) -> Result<Digest, PeerError> {
        let node = self.node;
        self.push(shard_write::Msg::Commit(true)).await?;
        let GrpcSink {
            tx, mut replies, ..
        } = *self;
        drop(tx);
        let reply = replies.message().await.map_err(|s| peer_error(node, &s))?;
        match reply.and_then(|r| r.msg) {
            Some(shard_write_reply::Msg::Committed(digest)) => Digest::from_slice(&digest)
                .ok_or_else(|| PeerError::Refused {
                    node,
                    reason: "answered a malformed digest".into(),
                }),
            other => Err(PeerError::Refused {
                node,
                reason: format!("unexpected answer to commit: {other:?}"),
            }),
        }
    }
}
