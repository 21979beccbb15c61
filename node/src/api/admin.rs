//! The `tresor.v1.Admin` service. Calls that need the leader are forwarded to
//! it by whichever node receives them.

use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;
use tresor_proto::v1::admin_server::Admin;

use super::audit::AuditSink;
use super::auth::{new_token, visible_buckets, Action, Authorizer, Caller, PRINCIPAL_HEADER};
use super::{meta_status, outcome_of, store_status, to_status};
use crate::meta::audit::{verify_chain, AuditEntry};
use crate::meta::{
    now_ms, validate_bucket_name, validate_principal_name, Bucket, Command, Grant, MetaError,
    NodeRecord, NodeState, Principal, Role, Token,
};
use crate::raft::{Cluster, ClusterError, ClusterView, NodeView};
use crate::workers::{cluster_health, Workers};

/// Marks a request forwarded by another node, so it is never forwarded twice.
const FORWARDED_BY: &str = "tresor-forwarded-by";

/// Admin API of one node.
pub struct AdminService {
    cluster: Arc<Cluster>,
    workers: Arc<Workers>,
    audit: AuditSink,
    auth: Authorizer,
}

impl AdminService {
    /// Serves `cluster`, whose node runs `workers`, auditing changes to `audit`.
    pub fn new(cluster: Arc<Cluster>, workers: Arc<Workers>, audit: AuditSink) -> Self {
        let auth = Authorizer::new(cluster.clone(), audit.clone());
        Self {
            cluster,
            workers,
            audit,
            auth,
        }
    }

    /// Records an admin change executed on this node: `subject` goes in the
    /// entry's bucket field, `detail` in its key field.
    async fn audit_change<T>(
        &self,
        principal: &str,
        action: &str,
        subject: &str,
        detail: &str,
        result: &Result<T, Status>,
    ) {
        let outcome = outcome_of(result);
        if let Err(e) = self
            .audit
            .record(principal, action, subject, detail, "", &outcome)
            .await
        {
            tracing::error!(action, subject, detail, outcome, error = %e, "AUDIT RECORD LOST");
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

    /// A call to pass on to the leader on behalf of `caller`, who was
    /// authenticated here.
    fn forwarded<T>(&self, message: T, caller: &Caller) -> Request<T> {
        let mut request = Request::new(message);
        if let Ok(v) = self.cluster.config().node_id.to_string().parse() {
            request.metadata_mut().insert(FORWARDED_BY, v);
        }
        if let Some(Ok(v)) = caller.forwarded_name().map(str::parse) {
            request.metadata_mut().insert(PRINCIPAL_HEADER, v);
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

    async fn node_info(
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

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::AddNodeResponse>, Status> {
        let caller = self.auth.check(&request, Action::AddNode, None, "").await?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .add_node(self.forwarded(request.into_inner(), &caller))
                .await;
        }
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
        self.audit_change(caller.name(), "nodes add", &subject, "", &result)
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
        let caller = self
            .auth
            .check(&request, Action::RemoveNode, None, "")
            .await?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .remove_node(self.forwarded(request.into_inner(), &caller))
                .await;
        }
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
        let subject = format!("node {}", req.id);
        self.audit_change(caller.name(), action, &subject, "", &result)
            .await;
        result?;
        Ok(Response::new(pb::RemoveNodeResponse {}))
    }

    async fn status(
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
        let health = cluster_health(&self.cluster).map_err(store_status)?;
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
        let caller = self
            .auth
            .check(&request, Action::CreateBucket, None, "")
            .await?;
        // Validate here too, so bad input is refused without a round trip.
        let req = request.get_ref();
        validate_bucket_name(&req.name)
            .and_then(|_| crate::meta::validate_scheme(req.data, req.parity))
            .map_err(|e| to_status(e.into()))?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .create_bucket(self.forwarded(request.into_inner(), &caller))
                .await;
        }
        let req = request.into_inner();
        let result = self
            .cluster
            .create_bucket(&req.name, req.data, req.parity)
            .await
            .map_err(to_status);
        self.audit_change(caller.name(), "bucket create", &req.name, "", &result)
            .await;
        let bucket = result?;
        Ok(Response::new(pb::CreateBucketResponse {
            bucket: Some(bucket_pb(&bucket)),
        }))
    }

    async fn list_buckets(
        &self,
        request: Request<pb::ListBucketsRequest>,
    ) -> Result<Response<pb::ListBucketsResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::ListBuckets, None, "")
            .await?;
        let visible = self.auth.grants(&caller)?.and_then(|g| visible_buckets(&g));
        let buckets = self.cluster.meta().buckets().map_err(store_status)?;
        Ok(Response::new(pb::ListBucketsResponse {
            buckets: buckets
                .iter()
                .filter(|b| visible.as_ref().is_none_or(|v| v.contains(&b.name)))
                .map(bucket_pb)
                .collect(),
        }))
    }

    async fn workers(
        &self,
        request: Request<pb::WorkersRequest>,
    ) -> Result<Response<pb::WorkersResponse>, Status> {
        self.auth.check(&request, Action::Workers, None, "").await?;
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
        self.auth
            .check(&request, Action::RunWorker, None, "")
            .await?;
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
        let caller = self
            .auth
            .check(&request, Action::DrainNode, None, "")
            .await?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .drain_node(self.forwarded(request.into_inner(), &caller))
                .await;
        }
        let id = request.into_inner().id;
        let result = self.cluster.drain_node(id).await.map_err(to_status);
        let subject = format!("node {id}");
        self.audit_change(caller.name(), "nodes drain", &subject, "", &result)
            .await;
        result?;
        Ok(Response::new(pb::DrainNodeResponse {}))
    }

    async fn audit_log(
        &self,
        request: Request<pb::AuditLogRequest>,
    ) -> Result<Response<pb::AuditLogResponse>, Status> {
        // Filtered to one bucket, the log is that bucket's business: an
        // audit grant on the bucket suffices.
        let bucket = Some(request.get_ref().bucket.clone()).filter(|b| !b.is_empty());
        let caller = self
            .auth
            .check(&request, Action::AuditLog, bucket.as_deref(), "")
            .await?;
        let req = request.into_inner();
        self.catch_up(&caller).await?;
        let limit = match req.limit {
            0 => 1000,
            n => n.min(100_000) as usize,
        };
        let meta = self.cluster.meta();
        let mut out = Vec::new();
        let mut next = req.after_seq.saturating_add(1);
        'pages: loop {
            let page = meta.audit_entries(next, 10_000).map_err(store_status)?;
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
        request: Request<pb::AuditVerifyRequest>,
    ) -> Result<Response<pb::AuditVerifyResponse>, Status> {
        self.auth
            .check(&request, Action::AuditVerify, None, "")
            .await?;
        let meta = self.cluster.meta();
        let mut entries = Vec::new();
        let mut next = 1;
        loop {
            let page = meta.audit_entries(next, 10_000).map_err(store_status)?;
            let Some(last) = page.last() else { break };
            next = last.seq + 1;
            entries.extend(page);
        }
        let node_id = self.cluster.config().node_id;
        let (head_seq, head_hash) = meta.audit_head().map_err(store_status)?;
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

    async fn create_principal(
        &self,
        request: Request<pb::CreatePrincipalRequest>,
    ) -> Result<Response<pb::CreatePrincipalResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::CreatePrincipal, None, "")
            .await?;
        validate_principal_name(&request.get_ref().name).map_err(meta_status)?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .create_principal(self.forwarded(request.into_inner(), &caller))
                .await;
        }
        let principal = Principal {
            name: request.into_inner().name,
            created_ms: now_ms(),
        };
        let result = match self
            .cluster
            .propose(Command::CreatePrincipal {
                principal: principal.clone(),
            })
            .await
        {
            // A retried proposal whose first attempt committed finds its own.
            Err(e @ ClusterError::Meta(MetaError::AlreadyExists(_))) => {
                match self.cluster.meta().principal(&principal.name) {
                    Ok(Some(p)) if p == principal => Ok(()),
                    _ => Err(e),
                }
            }
            other => other,
        }
        .map_err(to_status);
        self.audit_change(
            caller.name(),
            "principal create",
            "",
            &principal.name,
            &result,
        )
        .await;
        result?;
        Ok(Response::new(pb::CreatePrincipalResponse {
            principal: Some(principal_pb(&principal, &[], &[])),
        }))
    }

    async fn delete_principal(
        &self,
        request: Request<pb::DeletePrincipalRequest>,
    ) -> Result<Response<pb::DeletePrincipalResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::DeletePrincipal, None, "")
            .await?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .delete_principal(self.forwarded(request.into_inner(), &caller))
                .await;
        }
        let name = request.into_inner().name;
        let result = self
            .cluster
            .propose(Command::DeletePrincipal { name: name.clone() })
            .await
            .map_err(to_status);
        self.audit_change(caller.name(), "principal delete", "", &name, &result)
            .await;
        result?;
        Ok(Response::new(pb::DeletePrincipalResponse {}))
    }

    async fn list_principals(
        &self,
        request: Request<pb::ListPrincipalsRequest>,
    ) -> Result<Response<pb::ListPrincipalsResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::ListPrincipals, None, "")
            .await?;
        self.catch_up(&caller).await?;
        let meta = self.cluster.meta();
        let grants = meta.grants().map_err(store_status)?;
        let tokens = meta.tokens().map_err(store_status)?;
        let principals = meta
            .principals()
            .map_err(store_status)?
            .iter()
            .map(|p| {
                let g: Vec<Grant> = grants
                    .iter()
                    .filter(|g| g.principal == p.name)
                    .cloned()
                    .collect();
                let t: Vec<Token> = tokens
                    .iter()
                    .filter(|t| t.principal == p.name)
                    .cloned()
                    .collect();
                principal_pb(p, &g, &t)
            })
            .collect();
        Ok(Response::new(pb::ListPrincipalsResponse { principals }))
    }

    async fn grant(
        &self,
        request: Request<pb::GrantRequest>,
    ) -> Result<Response<pb::GrantResponse>, Status> {
        let caller = self.auth.check(&request, Action::Grant, None, "").await?;
        let grant = grant_of(
            &request.get_ref().principal,
            &request.get_ref().role,
            &request.get_ref().bucket,
        )?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .grant(self.forwarded(request.into_inner(), &caller))
                .await;
        }
        let result = self
            .cluster
            .propose(Command::Grant {
                grant: grant.clone(),
            })
            .await
            .map_err(to_status);
        self.audit_grant(&caller, "grant", &grant, &result).await;
        result?;
        Ok(Response::new(pb::GrantResponse {}))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let caller = self.auth.check(&request, Action::Revoke, None, "").await?;
        let grant = grant_of(
            &request.get_ref().principal,
            &request.get_ref().role,
            &request.get_ref().bucket,
        )?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .revoke(self.forwarded(request.into_inner(), &caller))
                .await;
        }
        let result = self
            .cluster
            .propose(Command::Revoke {
                grant: grant.clone(),
            })
            .await
            .map_err(to_status);
        self.audit_grant(&caller, "revoke", &grant, &result).await;
        result?;
        Ok(Response::new(pb::RevokeResponse {}))
    }

    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::CreateToken, None, "")
            .await?;
        validate_principal_name(&request.get_ref().principal).map_err(meta_status)?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .create_token(self.forwarded(request.into_inner(), &caller))
                .await;
        }
        let principal = request.into_inner().principal;
        let (token, text) = new_token(&principal);
        let result = match self
            .cluster
            .propose(Command::CreateToken {
                token: token.clone(),
            })
            .await
        {
            // A retried proposal whose first attempt committed finds its own.
            Err(e @ ClusterError::Meta(MetaError::AlreadyExists(_))) => {
                match self.cluster.meta().token(&token.id) {
                    Ok(Some(t)) if t == token => Ok(()),
                    _ => Err(e),
                }
            }
            other => other,
        }
        .map_err(to_status);
        let detail = format!("{principal} token {}", token.id);
        self.audit_change(caller.name(), "token create", "", &detail, &result)
            .await;
        result?;
        Ok(Response::new(pb::CreateTokenResponse {
            id: token.id,
            token: text,
            principal,
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::RevokeToken, None, "")
            .await?;
        if let Some(mut leader) = self.leader_client(request.metadata()).await? {
            return leader
                .revoke_token(self.forwarded(request.into_inner(), &caller))
                .await;
        }
        let id = request.into_inner().id;
        let owner = self
            .cluster
            .meta()
            .token(&id)
            .ok()
            .flatten()
            .map(|t| t.principal);
        let result = self
            .cluster
            .propose(Command::RevokeToken { id: id.clone() })
            .await
            .map_err(to_status);
        let detail = match owner {
            Some(p) => format!("{p} token {id}"),
            None => format!("token {id}"),
        };
        self.audit_change(caller.name(), "token revoke", "", &detail, &result)
            .await;
        result?;
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn rotate_keys(
        &self,
        request: Request<pb::RotateKeysRequest>,
    ) -> Result<Response<pb::RotateKeysResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::KeysRotate, None, "")
            .await?;
        // Not forwarded: the contacted node's key file names the new key,
        // and its proposals reach the leader by themselves.
        let result = crate::objects::rotate_keys(&self.cluster)
            .await
            .map_err(crate::api::object_status);
        let detail = match &result {
            Ok(r) => format!("to {} ({} re-wrapped)", r.current_key_id, r.rewrapped),
            Err(_) => String::new(),
        };
        self.audit_change(caller.name(), "keys rotate", "", &detail, &result)
            .await;
        let r = result?;
        Ok(Response::new(pb::RotateKeysResponse {
            current_key_id: r.current_key_id,
            rewrapped: r.rewrapped,
            remaining: r.remaining,
            unencrypted: r.unencrypted,
        }))
    }
}

impl AdminService {
    /// Makes sure this node caught up during the request: the authorizer
    /// did unless it answered from local state.
    async fn catch_up(&self, caller: &Caller) -> Result<(), Status> {
        if caller.caught_up().is_none() {
            self.cluster.linearizable_read().await.map_err(to_status)?;
        }
        Ok(())
    }

    /// Records a grant or revocation: the bucket it concerns (if one) in
    /// the entry's bucket field, `<principal> <role>` in its key field.
    async fn audit_grant<T>(
        &self,
        caller: &Caller,
        action: &str,
        grant: &Grant,
        result: &Result<T, Status>,
    ) {
        let detail = format!("{} {}", grant.principal, grant.role);
        let bucket = grant.bucket.as_deref().unwrap_or("");
        self.audit_change(caller.name(), action, bucket, &detail, result)
            .await;
    }
}

/// Checks the fields of a grant or revoke request.
fn grant_of(principal: &str, role: &str, bucket: &Option<String>) -> Result<Grant, Status> {
    validate_principal_name(principal).map_err(meta_status)?;
    let role = Role::parse(role).map_err(meta_status)?;
    if let Some(b) = bucket {
        validate_bucket_name(b).map_err(meta_status)?;
    }
    Ok(Grant {
        principal: principal.to_string(),
        role,
        bucket: bucket.clone(),
    })
}

fn principal_pb(p: &Principal, grants: &[Grant], tokens: &[Token]) -> pb::Principal {
    pb::Principal {
        name: p.name.clone(),
        created_ms: p.created_ms,
        grants: grants
            .iter()
            .map(|g| pb::RoleGrant {
                role: g.role.as_str().to_string(),
                bucket: g.bucket.clone(),
            })
            .collect(),
        tokens: tokens
            .iter()
            .map(|t| pb::TokenInfo {
                id: t.id.clone(),
                created_ms: t.created_ms,
            })
            .collect(),
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
