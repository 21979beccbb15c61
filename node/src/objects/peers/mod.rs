//! The boundary to shard files on the nodes that hold them (this node
//! included): one interface, [`ShardPeers`] — open a shard file for
//! writing, read a block, delete, stat — with one error type and every
//! timeout of that traffic in one place ([`timeouts`], applied by
//! [`Peers`] and [`Target`], whatever the transport). `grpc` speaks the
//! internal Shards service; tests use the in-process `local` transport, so
//! the write, read and repair paths are tested without processes.

mod grpc;
#[cfg(test)]
pub(super) mod local;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use grpc::{epoch_key_from_proto, epoch_key_to_proto, GrpcPeers};

use crate::crypto::WrappedEpochKey;
use crate::meta::{Digest, ObjectId};
use crate::shards::ShardId;

/// Every wait on a peer, in one place.
pub mod timeouts {
    use std::time::Duration;

    /// Opening a shard file for writing.
    pub const OPEN: Duration = Duration::from_secs(10);
    /// Taking one block of a file being written: a node slower than this
    /// counts as failed for that file.
    pub const SEND: Duration = Duration::from_secs(30);
    /// Making a written file durable (fsync, rename) and answering its digest.
    pub const COMMIT: Duration = Duration::from_secs(120);
    /// Reading one block: slower counts as lost for that stripe, and parity
    /// stands in.
    pub const READ_BLOCK: Duration = Duration::from_secs(10);
    /// Deleting one shard file, or every file of an object.
    pub const DELETE: Duration = Duration::from_secs(10);
    /// Looking at one shard file.
    pub const STAT: Duration = Duration::from_secs(5);
    /// Storing or fetching one epoch key (a small file, fsynced).
    pub const EPOCH_KEY: Duration = Duration::from_secs(5);
}

/// Why a call to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The node could not be reached, or the stream to it broke.
    #[error("node {node} unreachable: {reason}")]
    Unreachable {
        /// The node.
        node: u64,
        /// What the transport said.
        reason: String,
    },
    /// The node did not answer in time.
    #[error("node {node} did not {what} within {after:?}")]
    TimedOut {
        /// The node.
        node: u64,
        /// What it was asked to do.
        what: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// The node holds no committed file for the shard.
    #[error("node {node} has no such shard file")]
    NotFound {
        /// The node.
        node: u64,
    },
    /// The node holds the file but it failed its checks, could not be read,
    /// or the answer was not what was asked for (a block of the wrong size).
    #[error("node {node}: shard file damaged: {reason}")]
    Corrupt {
        /// The node.
        node: u64,
        /// What is wrong.
        reason: String,
    },
    /// The node refused the request (full disk, a committed file in the
    /// way, a request it found invalid) or failed to carry it out.
    #[error("node {node} refused: {reason}")]
    Refused {
        /// The node.
        node: u64,
        /// Its reason.
        reason: String,
    },
}

impl PeerError {
    /// The holder confirmed its file missing or bad (rather than being
    /// unreachable or slow): damage, to be reported for repair.
    pub fn is_damage(&self) -> bool {
        matches!(self, PeerError::NotFound { .. } | PeerError::Corrupt { .. })
    }
}

/// Shard files on other nodes, as a transport sees them. Implementations
/// do not time out: [`Peers`] and [`Target`] do.
#[async_trait]
pub trait ShardPeers: Send + Sync {
    /// Opens shard file `shard` on `node` for writing, in blocks of
    /// `block_size` bytes (the last may be shorter). With `replace`, the
    /// commit replaces a committed file of this shard; without, it never
    /// overwrites one.
    async fn open(
        &self,
        node: u64,
        shard: ShardId,
        block_size: u32,
        replace: bool,
    ) -> Result<Box<dyn ShardSink>, PeerError>;

    /// Block `block` of shard file `shard` on `node`, checked by the holder
    /// against its hash and the file against `digest`.
    async fn read_block(
        &self,
        node: u64,
        shard: ShardId,
        block: u32,
        digest: Digest,
    ) -> Result<Bytes, PeerError>;

    /// Deletes shard file `shard` on `node`; false if it was not there.
    async fn delete(&self, node: u64, shard: ShardId) -> Result<bool, PeerError>;

    /// Deletes every shard file of `object` on `node`; how many there were.
    async fn delete_object(&self, node: u64, object: ObjectId) -> Result<u32, PeerError>;

    /// The length of `node`'s committed file for `shard`, if it has one.
    async fn stat(&self, node: u64, shard: ShardId) -> Result<Option<u64>, PeerError>;

    /// Stores an epoch key on `node`; whether its file changed.
    async fn put_epoch_key(&self, node: u64, key: WrappedEpochKey) -> Result<bool, PeerError>;

    /// `node`'s copy of epoch key `epoch`, if it has one.
    async fn get_epoch_key(
        &self,
        node: u64,
        epoch: u64,
    ) -> Result<Option<WrappedEpochKey>, PeerError>;
}

/// One shard file being written on one node.
#[async_trait]
pub trait ShardSink: Send {
    /// Appends the next block.
    async fn send(&mut self, block: Bytes) -> Result<(), PeerError>;

    /// Makes the file durable; its digest, for the manifest.
    async fn commit(self: Box<Self>) -> Result<Digest, PeerError>;
}

/// Runs `call` on `node` for at most `after`.
async fn timed<T>(
    node: u64,
    what: &'static str,
    after: Duration,
    call: impl std::future::Future<Output = Result<T, PeerError>>,
) -> Result<T, PeerError> {
    tokio::time::timeout(after, call)
        .await
        .map_err(|_| PeerError::TimedOut { node, what, after })?
}

/// The shard peers the data paths use: a transport with the timeouts of
/// [`timeouts`] applied.
#[derive(Clone)]
pub struct Peers {
    transport: Arc<dyn ShardPeers>,
}

impl Peers {
    /// Peers reached through `transport`.
    pub fn new(transport: Arc<dyn ShardPeers>) -> Self {
        Self { transport }
    }

    /// Opens a shard file on `node` for writing.
    pub async fn open(
        &self,
        node: u64,
        shard: ShardId,
        block_size: u32,
        replace: bool,
    ) -> Result<Target, PeerError> {
        let sink = timed(
            node,
            "open a shard file",
            timeouts::OPEN,
            self.transport.open(node, shard, block_size, replace),
        )
        .await?;
        Ok(Target {
            node,
            sink,
            failed: None,
        })
    }

    /// Block `block` of `shard` on `node`, which must be `len` bytes long.
    pub async fn read_block(
        &self,
        node: u64,
        shard: ShardId,
        block: u32,
        digest: Digest,
        len: usize,
    ) -> Result<Bytes, PeerError> {
        let data = timed(
            node,
            "send a block",
            timeouts::READ_BLOCK,
            self.transport.read_block(node, shard, block, digest),
        )
        .await?;
        if data.len() != len {
            return Err(PeerError::Corrupt {
                node,
                reason: format!("sent {} bytes of block {block}, expected {len}", data.len()),
            });
        }
        Ok(data)
    }

    /// Deletes `shard` on `node`; false if it was not there.
    pub async fn delete(&self, node: u64, shard: ShardId) -> Result<bool, PeerError> {
        timed(
            node,
            "delete a shard file",
            timeouts::DELETE,
            self.transport.delete(node, shard),
        )
        .await
    }

    /// Deletes every shard file of `object` on `node`.
    pub async fn delete_object(&self, node: u64, object: ObjectId) -> Result<u32, PeerError> {
        timed(
            node,
            "delete an object's shard files",
            timeouts::DELETE,
            self.transport.delete_object(node, object),
        )
        .await
    }

    /// The length of `node`'s committed file for `shard`, if any.
    pub async fn stat(&self, node: u64, shard: ShardId) -> Result<Option<u64>, PeerError> {
        timed(
            node,
            "look at a shard file",
            timeouts::STAT,
            self.transport.stat(node, shard),
        )
        .await
    }

    /// Stores an epoch key on `node`; whether its file changed.
    pub async fn put_epoch_key(&self, node: u64, key: WrappedEpochKey) -> Result<bool, PeerError> {
        timed(
            node,
            "store an epoch key",
            timeouts::EPOCH_KEY,
            self.transport.put_epoch_key(node, key),
        )
        .await
    }

    /// `node`'s copy of epoch key `epoch`, if it has one.
    pub async fn get_epoch_key(
        &self,
        node: u64,
        epoch: u64,
    ) -> Result<Option<WrappedEpochKey>, PeerError> {
        timed(
            node,
            "send an epoch key",
            timeouts::EPOCH_KEY,
            self.transport.get_epoch_key(node, epoch),
        )
        .await
    }
}

/// One node receiving one shard file. The first failure sticks: later
/// blocks are not sent, and the commit reports it.
pub struct Target {
    /// The node.
    pub node: u64,
    sink: Box<dyn ShardSink>,
    failed: Option<PeerError>,
}

impl Target {
    /// Sends the next block, unless the file already failed.
    pub async fn send(&mut self, block: Bytes) {
        if self.failed.is_some() {
            return;
        }
        let node = self.node;
        if let Err(e) = timed(node, "take a block", timeouts::SEND, self.sink.send(block)).await {
            self.failed = Some(e);
        }
    }

    /// Whether a block failed to reach the node.
    pub fn failed(&self) -> Option<&PeerError> {
        self.failed.as_ref()
    }

    /// Makes the file durable: its node and digest.
    pub async fn commit(self) -> Result<(u64, Digest), PeerError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let node = self.node;
        let digest = timed(
            node,
            "commit a shard file",
            timeouts::COMMIT,
            self.sink.commit(),
        )
        .await?;
        Ok((node, digest))
    }
}
