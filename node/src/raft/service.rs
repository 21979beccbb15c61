//! Incoming Raft RPCs: the `tresor.internal.v1.Raft` gRPC service.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};
use tresor_proto::internal::v1::raft_server::Raft as RaftRpc;
use tresor_proto::internal::v1::{
    ClockReply, ClockRequest, RaftPayload, ReadIndexReply, ReadIndexRequest,
};

use super::{NodeId, Raft, TypeConfig};

/// Hands peers' Raft messages to the local openraft instance.
pub struct RaftService {
    raft: Raft,
    node_id: NodeId,
    incarnation: String,
    warned: std::sync::atomic::AtomicBool,
}

impl RaftService {
    /// Serves `raft` of node `node_id`, whose data dir is `incarnation`.
    pub fn new(raft: Raft, node_id: NodeId, incarnation: String) -> Self {
        Self {
            raft,
            node_id,
            incarnation,
            warned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Refuses Raft traffic meant for another incarnation of this node id:
    /// a node whose data dir was wiped has lost its log and vote, and must
    /// not rejoin as if nothing happened (it could vote twice in a term).
    fn check_incarnation(&self, payload: &RaftPayload) -> Result<(), Status> {
        let expected = &payload.target_incarnation;
        if expected.is_empty() || *expected == self.incarnation {
            return Ok(());
        }
        let message = format!(
            "node {id} lost its state: the cluster knows node {id} with data dir {expected}, this data dir is {own}. \
             Remove node {id} (`tresor-node nodes remove --id {id} --force`) and add this machine as a new node with a new id",
            id = self.node_id,
            own = self.incarnation,
        );
        if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::error!("{message}");
        }
        Err(Status::failed_precondition(message))
    }
}

fn decode<T: DeserializeOwned>(payload: &RaftPayload) -> Result<T, Status> {
    serde_json::from_slice(&payload.json)
        .map_err(|e| Status::invalid_argument(format!("malformed Raft message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let json = serde_json::to_vec(value)
        .map_err(|e| Status::internal(format!("cannot encode Raft reply: {e}")))?;
    Ok(Response::new(RaftPayload {
        json,
        data: Vec::new(),
        target_incarnation: String::new(),
    }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check_incarnation(request.get_ref())?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request.get_ref())?;
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.check_incarnation(request.get_ref())?;
        let rpc: VoteRequest<NodeId> = decode(request.get_ref())?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let payload = request.into_inner();
        self.check_incarnation(&payload)?;
        let mut rpc: InstallSnapshotRequest<TypeConfig> = decode(&payload)?;
        rpc.data = payload.data;
        encode(&self.raft.install_snapshot(rpc).await)
    }

    async fn read_index(
        &self,
        _request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexReply>, Status> {
        let (read_log_id, _applied) = self
            .raft
            .get_read_log_id()
            .await
            .map_err(|e| Status::unavailable(format!("cannot serve a read index: {e}")))?;
        Ok(Response::new(ReadIndexReply {
            index: read_log_id.map(|l| l.index).unwrap_or(0),
        }))
    }

    async fn clock(&self, _request: Request<ClockRequest>) -> Result<Response<ClockReply>, Status> {
        Ok(Response::new(ClockReply {
            now_ms: crate::meta::now_ms(),
        }))
    }

    async fn propose(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let command: crate::meta::Command = decode(request.get_ref())?;
        match self.raft.client_write(command).await {
            Ok(response) => encode(&response.data),
            Err(openraft::error::RaftError::APIError(
                openraft::error::ClientWriteError::ForwardToLeader(f),
            )) => Err(Status::unavailable(format!(
                "not the leader (leader: {:?}); retry",
                f.leader_id
            ))),
            Err(e) => Err(Status::unavailable(format!("cannot commit: {e}"))),
        }
    }
}
