//! Forming the cluster and changing its membership; status.

use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;

use super::convert::*;
use super::{AdminService, Audited};
use crate::api::auth::Action;
use crate::api::{store_status, to_status};
use crate::meta::{NodeRecord, NodeState};

impl AdminService {
    pub(super) async fn init(
        &self,
        request: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        let caller = self.auth.check(&request, Action::Init, None, "").await?;
        let result = self.cluster.init().await.map_err(to_status);
        if result.is_ok() {
            self.audit_change(caller.name(), "init", "", "", &result)
                .await;
        }
        let cluster_id = result?;
        Ok(Response::new(pb::InitResponse {
            cluster_id,
            node_id: self.cluster.config().node_id,
        }))
    }

    pub(super) async fn node_info(
        &self,
        request: Request<pb::NodeInfoRequest>,
    ) -> Result<Response<pb::NodeInfoResponse>, Status> {
        self.auth
            .check(&request, Action::NodeInfo, None, "")
            .await?;
        let config = self.cluster.config();
        let cluster_id = self
            .cluster
            .meta()
            .cluster_id()
            .map_err(store_status)?
            .unwrap_or_default();
        Ok(Response::new(pb::NodeInfoResponse {
            node_id: config.node_id,
            addr: config.advertised_addr(),
            zone: config.zone.clone(),
            capacity: self.cluster.capacity(),
            cluster_id,
            initialized: self.cluster.is_initialized().await,
            incarnation: self.cluster.incarnation().to_string(),
        }))
    }

    pub(super) async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::AddNodeResponse>, Status> {
        let run = async |req: pb::AddNodeRequest| {
            let record = NodeRecord {
                id: req.id,
                addr: req.addr,
                zone: req.zone,
                capacity: req.capacity,
                state: NodeState::Active,
                added_ms: 0,
                state_since_ms: 0,
                incarnation: String::new(),
            };
            let subject = format!("node {}", record.id);
            let result = self.cluster.add_node(record).await.map_err(to_status);
            let result = result.map(|view| pb::AddNodeResponse {
                node: Some(node_status(&view)),
            });
            (Audited::new("nodes add", subject, ""), result)
        };
        self.change(
            request,
            Action::AddNode,
            |_| Ok(()),
            async |mut leader, r| leader.add_node(r).await,
            run,
        )
        .await
    }

    pub(super) async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let run = async |req: pb::RemoveNodeRequest| {
            let result = self
                .cluster
                .remove_node(req.id, req.force)
                .await
                .map_err(to_status);
            let action = if req.force {
                "nodes remove --force"
            } else {
                "nodes remove"
            };
            let subject = format!("node {}", req.id);
            let result = result.map(|()| pb::RemoveNodeResponse {});
            (Audited::new(action, subject, ""), result)
        };
        self.change(
            request,
            Action::RemoveNode,
            |_| Ok(()),
            async |mut leader, r| leader.remove_node(r).await,
            run,
        )
        .await
    }

    pub(super) async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let caller = self.auth.check(&request, Action::Status, None, "").await?;
        // The leader's view says how recently each node was heard from; ask
        // it when it can be reached, else answer from here.
        if !request.get_ref().local {
            if let Ok(Some(mut leader)) = self.leader_client(request.metadata()).await {
                if let Ok(response) = leader
                    .status(self.forwarded(pb::StatusRequest { local: false }, &caller))
                    .await
                {
                    return Ok(response);
                }
            }
        }
        let view = self.cluster.view().await.map_err(to_status)?;
        let mut response = status_response(view);
        let health = self.cluster.meta().health().map_err(store_status)?;
        response.degraded_segments = health.degraded.values().sum();
        response.degraded_by_missing = health
            .degraded
            .into_iter()
            .map(|(k, v)| (k as u64, v))
            .collect();
        for n in &mut response.nodes {
            n.shards = health.shards_per_node.get(&n.id).copied().unwrap_or(0);
        }
        response.repair = self.repair_progress();
        let meta = self.cluster.meta();
        response.audit_entries = meta.audit_head().map_err(store_status)?.0;
        response.audit_unsealed = (response.audit_entries + 1)
            .saturating_sub(meta.audit_tail_start().map_err(store_status)?);
        Ok(Response::new(response))
    }

    pub(super) async fn drain_node(
        &self,
        request: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        let run = async |req: pb::DrainNodeRequest| {
            let result = self
                .cluster
                .drain_node(req.id)
                .await
                .map_err(to_status)
                .map(|()| pb::DrainNodeResponse {});
            (
                Audited::new("nodes drain", format!("node {}", req.id), ""),
                result,
            )
        };
        self.change(
            request,
            Action::DrainNode,
            |_| Ok(()),
            async |mut leader, r| leader.drain_node(r).await,
            run,
        )
        .await
    }
}
