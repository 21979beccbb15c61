//! The `tresor.v1.Admin` service. Calls that need the leader are forwarded to
//! it by whichever node receives them.

use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;
use tresor_proto::v1::admin_server::Admin;

use super::{outcome_of, to_status};
use crate::audit::{principal_of, AuditSink};
use crate::cluster::{Cluster, ClusterView, NodeView};
use crate::meta::audit::{verify_chain, AuditEntry};
use crate::meta::{Bucket, NodeRecord, NodeState};
use crate::workers::{cluster_health, Workers};

/// Marks a request forwarded by another node, so it is never forwarded twice.
const FORWARDED_BY: &str = "tresor-forwarded-by";

/// Admin API of one node.
pub struct AdminService {
    cluster: Arc<Cluster>,
    workers: Arc<Workers>,
    audit: AuditSink,
}

impl AdminService {
    /// Serves `cluster`, whose node runs `workers`, auditing changes to `audit`.
    pub fn new(cluster: Arc<Cluster>, workers: Arc<Workers>, audit: AuditSink) -> Self {
        Self {
            cluster,
            workers,
            audit,
        }
    }

    /// Records an admin change executed on this node.
    async fn audit_change<T>(
        &self,
        principal: &str,
        action: &str,
        subject: &str,
        result: &Result<T, Status>,
    ) {
        let outcome = outcome_of(result);
        if let Err(e) = self
            .audit
            .record(principal, action, subject, "", "", &outcome)
            .await
        {
            tracing::error!(action, subject, outcome, error = %e, "AUDIT RECORD LOST");
        }
    }

    fn repair_progress(&self) -> Option<pb::RepairProgress> {
        let repair = self
            .workers
            .list()
            .into_iter()
            .find(|w| w.name == "repair")?;
        let c = |k: &str| repair.counters.get(k).copied().unwrap_or(0);
        Some(pb::RepairProgress {
            segments_total: c("segments_total"),
            segments_to_repair: c("segments_to_repair"),
            segments_repaired: c("segments_repaired"),
            bytes_rebuilt: c("bytes_rebuilt"),
            state: repair.state,
            progress: repair.progress,
        })
    }

    /// `None` when this node leads; otherwise a client to the leader.
    async fn leader_client(
        &self,
        metadata: &MetadataMap,
    ) -> Result<Option<tresor_client::AdminClient>, Status> {
        if self.cluster.is_leader() {
            return Ok(None);
        }
        if metadata.contains_key(FORWARDED_BY) {
            return Err(Status::unavailable("leadership is changing; retry shortly"));
        }
        let Some((id, addr)) = self.cluster.leader() else {
            return Err(Status::unavailable(
                "no leader elected at the moment (is the cluster initialised?); retry shortly",
            ));
        };
        let client = tresor_client::admin(&addr).await.map_err(|e| {
            Status::unavailable(format!("cannot reach leader node {id} at {addr}: {e}"))
        })?;
        Ok(Some(client))
    }

    fn forwarded<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Ok(v) = self.cluster.config().node_id.to_string().parse() {
            request.metadata_mut().insert(FORWARDED_BY, v);
        }
        request
    }
}

fn node_status(view: &NodeView) -> pb::NodeStatus {
    pb::NodeStatus {
        id: view.record.id,
        addr: view.record.addr.clone(),
        zone: view.record.zone.clone(),
        role: view.role.as_str().to_string(),
        state: view.record.state.as_str().to_string(),
        last_contact_ms: view.last_contact_ms,
        capacity: view.record.capacity,
        shards: 0,
    }
}

fn status_response(view: ClusterView) -> pb::StatusResponse {
    pb::StatusResponse {
        cluster_id: view.cluster_id,
        leader_id: view.leader_id,
        term: view.term,
        commit_index: view.commit_index,
        nodes: view.nodes.iter().map(node_status).collect(),
        reporter_id: view.reporter_id,
        applied_index: view.applied_index,
        snapshot_index: view.snapshot_index,
        purged_index: view.purged_index,
        degraded_segments: 0,
        degraded_by_missing: Default::default(),
        repair: None,
    }
}

fn bucket_pb(b: &Bucket) -> pb::Bucket {
    pb::Bucket {
        name: b.name.clone(),
        data: b.data,
        parity: b.parity,
        created_ms: b.created_ms,
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn init(
        &self,
        request: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        let principal = principal_of(&request);
        let result = self.cluster.init().await.map_err(to_status);
        if result.is_ok() {
            self.audit_change(&principal, "init", "", &result).await;
        }
        let cluster_id = result?;
        Ok(Response::new(pb::InitResponse {
            cluster_id,
            node_id: self.cluster.config().node_id,
        }))
    }

    async fn node_info(
        &self,
        _request: Request<pb::NodeInfoRequest>,
    ) -> Result<Response<pb::NodeInfoResponse>, Status> {
        let config = self.cluster.config();
        let cluster_id = self
            .cluster
            .meta()
            .cluster_id()
            .map_err(|e| Status::internal(e.to_string()))?
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

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::AddNodeResponse>, Status> {
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader.add_node(self.forwarded(request.into_inner())).await;
        }
        let principal = principal_of(&request);
        let req = request.into_inner();
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
        self.audit_change(&principal, "nodes add", &subject, &result)
            .await;
        let view = result?;
        Ok(Response::new(pb::AddNodeResponse {
            node: Some(node_status(&view)),
        }))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .remove_node(self.forwarded(request.into_inner()))
                .await;
        }
        let principal = principal_of(&request);
        let req = request.into_inner();
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
        self.audit_change(&principal, action, &format!("node {}", req.id), &result)
            .await;
        result?;
        Ok(Response::new(pb::RemoveNodeResponse {}))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        // The leader's view says how recently each node was heard from; ask
        // it when it can be reached, else answer from here.
        if !request.get_ref().local {
            if let Ok(Some(mut leader)) = self.leader_client(request.metadata()).await {
                if let Ok(response) = leader
                    .status(self.forwarded(pb::StatusRequest { local: false }))
                    .await
                {
                    return Ok(response);
                }
            }
        }
        let view = self.cluster.view().await.map_err(to_status)?;
        let mut response = status_response(view);
        let health = cluster_health(&self.cluster).map_err(|e| Status::internal(e.to_string()))?;
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
        Ok(Response::new(response))
    }

    async fn create_bucket(
        &self,
        request: Request<pb::CreateBucketRequest>,
    ) -> Result<Response<pb::CreateBucketResponse>, Status> {
        // Validate here too, so bad input is refused without a round trip.
        let req = request.get_ref();
        crate::meta::validate_bucket_name(&req.name)
            .and_then(|_| crate::meta::validate_scheme(req.data, req.parity))
            .map_err(|e| to_status(e.into()))?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .create_bucket(self.forwarded(request.into_inner()))
                .await;
        }
        let principal = principal_of(&request);
        let req = request.into_inner();
        let result = self
            .cluster
            .create_bucket(&req.name, req.data, req.parity)
            .await
            .map_err(to_status);
        self.audit_change(&principal, "bucket create", &req.name, &result)
            .await;
        let bucket = result?;
        Ok(Response::new(pb::CreateBucketResponse {
            bucket: Some(bucket_pb(&bucket)),
        }))
    }

    async fn list_buckets(
        &self,
        _request: Request<pb::ListBucketsRequest>,
    ) -> Result<Response<pb::ListBucketsResponse>, Status> {
        let buckets = self
            .cluster
            .meta()
            .buckets()
            .map_err(|e| Status::internal(format!("node storage error: {e}")))?;
        Ok(Response::new(pb::ListBucketsResponse {
            buckets: buckets.iter().map(bucket_pb).collect(),
        }))
    }

    async fn workers(
        &self,
        _request: Request<pb::WorkersRequest>,
    ) -> Result<Response<pb::WorkersResponse>, Status> {
        let workers = self
            .workers
            .list()
            .into_iter()
            .map(|w| pb::WorkerInfo {
                name: w.name,
                state: w.state,
                progress: w.progress,
                counters: w.counters.into_iter().collect(),
                last_pass_ms: w.last_pass_ms,
                last_error: w.last_error.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::WorkersResponse {
            node_id: self.cluster.config().node_id,
            workers,
        }))
    }

    async fn run_worker(
        &self,
        request: Request<pb::RunWorkerRequest>,
    ) -> Result<Response<pb::RunWorkerResponse>, Status> {
        let name = request.into_inner().name;
        if !self.workers.trigger(&name) {
            return Err(Status::not_found(format!("no worker named {name:?}")));
        }
        Ok(Response::new(pb::RunWorkerResponse {}))
    }

    async fn drain_node(
        &self,
        request: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .drain_node(self.forwarded(request.into_inner()))
                .await;
        }
        let principal = principal_of(&request);
        let id = request.into_inner().id;
        let result = self.cluster.drain_node(id).await.map_err(to_status);
        self.audit_change(&principal, "nodes drain", &format!("node {id}"), &result)
            .await;
        result?;
        Ok(Response::new(pb::DrainNodeResponse {}))
    }

    async fn audit_log(
        &self,
        request: Request<pb::AuditLogRequest>,
    ) -> Result<Response<pb::AuditLogResponse>, Status> {
        let req = request.into_inner();
        self.cluster.linearizable_read().await.map_err(to_status)?;
        let limit = match req.limit {
            0 => 1000,
            n => n.min(100_000) as usize,
        };
        let meta = self.cluster.meta();
        let mut out = Vec::new();
        let mut next = req.after_seq + 1;
        'pages: loop {
            let page = meta
                .audit_entries(next, 10_000)
                .map_err(|e| Status::internal(e.to_string()))?;
            if page.is_empty() {
                break;
            }
            for e in page {
                next = e.seq + 1;
                let r = &e.record;
                let matches = (req.bucket.is_empty() || r.bucket == req.bucket)
                    && (req.key.is_empty() || r.key == req.key)
                    && (req.principal.is_empty() || r.principal == req.principal)
                    && r.time_ms >= req.since_ms;
                if matches {
                    out.push(entry_pb(&e));
                    if out.len() >= limit {
                        break 'pages;
                    }
                }
            }
        }
        Ok(Response::new(pb::AuditLogResponse { entries: out }))
    }

    async fn audit_verify(
        &self,
        _request: Request<pb::AuditVerifyRequest>,
    ) -> Result<Response<pb::AuditVerifyResponse>, Status> {
        let meta = self.cluster.meta();
        let mut entries = Vec::new();
        let mut next = 1;
        loop {
            let page = meta
                .audit_entries(next, 10_000)
                .map_err(|e| Status::internal(e.to_string()))?;
            let Some(last) = page.last() else { break };
            next = last.seq + 1;
            entries.extend(page);
        }
        let node_id = self.cluster.config().node_id;
        let (head_seq, head_hash) = meta
            .audit_head()
            .map_err(|e| Status::internal(e.to_string()))?;
        let response = match verify_chain(entries) {
            Ok((count, hash)) if count == head_seq && hash == head_hash => {
                pb::AuditVerifyResponse {
                    node_id,
                    intact: true,
                    entries: count,
                    head_hash: hash,
                    broken_seq: None,
                    reason: String::new(),
                }
            }
            Ok((count, _)) => pb::AuditVerifyResponse {
                node_id,
                intact: false,
                entries: count,
                head_hash: String::new(),
                broken_seq: Some(count + 1),
                reason: format!(
                    "the chain ends at entry {count} but its recorded head is entry {head_seq}"
                ),
            },
            Err(b) => pb::AuditVerifyResponse {
                node_id,
                intact: false,
                entries: b.seq.saturating_sub(1),
                head_hash: String::new(),
                broken_seq: Some(b.seq),
                reason: b.reason,
            },
        };
        Ok(Response::new(response))
    }
}

fn entry_pb(e: &AuditEntry) -> pb::AuditEntry {
    let r = &e.record;
    pb::AuditEntry {
        seq: e.seq,
        time_ms: r.time_ms,
        node: r.node,
        principal: r.principal.clone(),
        action: r.action.clone(),
        bucket: r.bucket.clone(),
        key: r.key.clone(),
        object_sha256: r.object_sha256.clone(),
        outcome: r.outcome.clone(),
        prev_hash: e.prev_hash.clone(),
        hash: e.hash.clone(),
    }
}
