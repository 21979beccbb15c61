//! Outgoing Raft RPCs over tonic, and the record of when each peer last answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;
use tresor_proto::internal::v1::raft_client::RaftClient;
use tresor_proto::internal::v1::RaftPayload;

use super::{NodeId, TypeConfig};

/// When each peer last answered one of our Raft RPCs. On the leader this is
/// how recently each follower was heard from.
#[derive(Default, Clone)]
pub struct PeerContact {
    last: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

impl PeerContact {
    fn touch(&self, peer: NodeId) {
        if let Ok(mut last) = self.last.lock() {
            last.insert(peer, Instant::now());
        }
    }

    /// Time since `peer` last answered, if it ever did.
    pub fn since(&self, peer: NodeId) -> Option<Duration> {
        self.last.lock().ok()?.get(&peer).map(|t| t.elapsed())
    }
}

/// Creates a [`PeerClient`] per target node.
pub struct NetworkFactory {
    own_id: NodeId,
    contact: PeerContact,
    meta: crate::meta::MetaStore,
}

impl NetworkFactory {
    /// A factory for node `own_id`, recording peer contact in `contact`.
    /// `meta` tells each peer's recorded incarnation.
    pub fn new(own_id: NodeId, contact: PeerContact, meta: crate::meta::MetaStore) -> Self {
        Self {
            own_id,
            contact,
            meta,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient {
            own_id: self.own_id,
            target,
            addr: node.addr.clone(),
            client: None,
            contact: self.contact.clone(),
            meta: self.meta.clone(),
        }
    }
}

/// Raft RPCs to one peer.
pub struct PeerClient {
    own_id: NodeId,
    target: NodeId,
    addr: String,
    client: Option<RaftClient<Channel>>,
    contact: PeerContact,
    meta: crate::meta::MetaStore,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, E>>;

impl PeerClient {
    fn client(&mut self) -> Result<RaftClient<Channel>, Unreachable> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let channel = tresor_client::connect_lazy(&self.addr).map_err(|e| Unreachable::new(&e))?;
        let client = RaftClient::new(channel)
            .max_decoding_message_size(tresor_client::channel::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(tresor_client::channel::MAX_MESSAGE_BYTES);
        self.client = Some(client.clone());
        Ok(client)
    }

    async fn call<Req, Resp, E>(
        &mut self,
        kind: RPCTypes,
        request: &Req,
        data: Vec<u8>,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let json =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let target_incarnation = self
            .meta
            .node(self.target)
            .ok()
            .flatten()
            .map(|n| n.incarnation)
            .unwrap_or_default();
        let payload = RaftPayload {
            json,
            data,
            target_incarnation,
        };
        let mut client = self.client().map_err(RPCError::Unreachable)?;
        let ttl = option.hard_ttl();
        let call = async {
            match kind {
                RPCTypes::Vote => client.vote(payload).await,
                RPCTypes::AppendEntries => client.append_entries(payload).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(payload).await,
            }
        };
        let response = match tokio::time::timeout(ttl, call).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action: kind,
                    id: self.own_id,
                    target: self.target,
                    timeout: ttl,
                }))
            }
            Ok(Err(status)) => {
                // Transport failures and refusals by the peer's gRPC layer:
                // openraft backs off and retries.
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        self.contact.touch(self.target);
        let result: Result<Resp, E> = serde_json::from_slice(&response.json)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                BasicNode {
                    addr: self.addr.clone(),
                },
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        self.call(RPCTypes::AppendEntries, &rpc, Vec::new(), &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        let data = std::mem::take(&mut rpc.data);
        self.call(RPCTypes::InstallSnapshot, &rpc, data, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        self.call(RPCTypes::Vote, &rpc, Vec::new(), &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: openraft::Vote<NodeId>,
        snapshot: openraft::Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = openraft::error::ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<
        openraft::raft::SnapshotResponse<NodeId>,
        openraft::error::StreamingError<TypeConfig, openraft::error::Fatal<NodeId>>,
    > {
        self.stream_snapshot(vote, snapshot, cancel, option).await
    }
}
