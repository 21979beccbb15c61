//! gRPC services, thin: validate, call the control plane, map errors.
//!
//! [`serve_grpc`] is the one place where the node's gRPC server is built,
//! so transport security is switched on here for every service at once:
//! TLS on the one port (unless `insecure`), and [`MemberGuard`] in front of
//! the internal services (Raft, Shards).

pub mod admin;
pub mod connections;
pub mod objects;
pub mod shards;
mod status;

pub use status::{object_status, outcome_of, to_status};

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tresor_client::channel::MAX_MESSAGE_BYTES;
use tresor_proto::internal::v1::raft_server::RaftServer;
use tresor_proto::v1::admin_server::AdminServer;

use crate::cluster::Cluster;
use crate::meta::{MetaStore, NodeState};
use crate::objects::DataPlane;
use crate::raft::service::RaftService;
use crate::shards::ShardStore;
use crate::tls::{peer_identity, PeerIdentity};
use tresor_proto::internal::v1::shards_server::ShardsServer;
use tresor_proto::v1::objects_server::ObjectsServer;

/// How long a removed node's certificate still opens the internal services.
pub const REMOVAL_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Lets only member nodes call the internal services (Raft, Shards): the
/// caller must present a node certificate (checked against the cluster CA
/// by TLS) naming a current member: a node in this node's Raft membership
/// (which still holds a node while its removal is being committed), or in
/// its node registry and not removed. A node whose registry is still empty
/// has not joined a cluster yet (it is being added), so it accepts any node
/// certificate. Bearer tokens are never accepted here. With `insecure`
/// everything passes.
///
/// A removed node stays accepted for [`REMOVAL_GRACE`] after its removal:
/// a removed leader goes on leading until it is stopped or hears of a newer
/// term, and must be able to finish the call that removed it (its audit
/// record, for one). After that its certificate opens nothing.
#[derive(Clone)]
pub struct MemberGuard {
    meta: MetaStore,
    raft: crate::raft::Raft,
    insecure: bool,
}

impl MemberGuard {
    /// A guard reading membership from `raft` and the registry in `meta`.
    pub fn new(meta: MetaStore, raft: crate::raft::Raft, insecure: bool) -> Self {
        Self {
            meta,
            raft,
            insecure,
        }
    }

    fn in_raft_membership(&self, id: u64) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some()
    }

    /// `Ok` if the caller of `request` may use the internal services.
    pub fn check<T>(&self, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
        if self.insecure {
            return Ok(());
        }
        let refused = |status: tonic::Status| {
            tracing::warn!(
                remote = ?request.remote_addr(),
                reason = status.message(),
                "internal RPC refused"
            );
            Err(status)
        };
        let id = match peer_identity(request) {
            Some(PeerIdentity::Node(id)) => id,
            Some(PeerIdentity::Client(_)) => {
                return refused(tonic::Status::permission_denied(
                    "internal RPCs need a member node's certificate, not a client certificate",
                ))
            }
            None if request.peer_certs().is_some() => {
                return refused(tonic::Status::permission_denied(
                    "internal RPCs need a member node's certificate; this certificate names no tresor node",
                ))
            }
            None => {
                return refused(tonic::Status::unauthenticated(
                    "internal RPCs need a member node's certificate; none was presented",
                ))
            }
        };
        let unavailable = |e: crate::meta::StoreError| {
            tonic::Status::unavailable(format!("cannot read the node registry: {e}"))
        };
        if self.in_raft_membership(id) {
            return Ok(());
        }
        match self.meta.node(id).map_err(unavailable)? {
            Some(record) if record.state != NodeState::Removed => Ok(()),
            Some(record)
                if crate::meta::now_ms().saturating_sub(record.state_since_ms)
                    < REMOVAL_GRACE.as_millis() as u64 =>
            {
                Ok(())
            }
            Some(_) => refused(tonic::Status::permission_denied(format!(
                "node {id} was removed from this cluster"
            ))),
            None if self.meta.nodes().map_err(unavailable)?.is_empty() => Ok(()),
            None => refused(tonic::Status::permission_denied(format!(
                "node {id} is not a member of this cluster"
            ))),
        }
    }
}

impl tonic::service::Interceptor for MemberGuard {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.check(&request)?;
        Ok(request)
    }
}

/// Serves every gRPC service of the node on `listener` until `shutdown`,
/// over TLS with `tls` (plaintext without: `insecure`).
#[allow(clippy::too_many_arguments)]
pub async fn serve_grpc(
    cluster: Arc<Cluster>,
    plane: Arc<DataPlane>,
    store: Arc<ShardStore>,
    workers: Arc<crate::workers::Workers>,
    metrics: crate::metrics::Metrics,
    listener: TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let guard = MemberGuard::new(
        cluster.meta().clone(),
        cluster.raft().clone(),
        tls.is_none(),
    );
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AdminServer<admin::AdminService>>()
        .await;
    health_reporter
        .set_serving::<ObjectsServer<objects::ObjectsService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tresor_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| {
            tracing::error!(error = %e, "reflection service disabled");
        })
        .ok();
    let audit = crate::audit::AuditSink::spawn(cluster.clone());
    let admin = AdminServer::new(admin::AdminService::new(
        cluster.clone(),
        workers,
        audit.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let raft = RaftServer::new(RaftService::new(
        cluster.raft().clone(),
        cluster.config().node_id,
        cluster.incarnation().to_string(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let raft = InterceptedService::new(raft, guard.clone());
    let objects = ObjectsServer::new(objects::ObjectsService::new(plane, metrics, audit))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let shards = ShardsServer::new(shards::ShardsService::new(store))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let shards = InterceptedService::new(shards, guard);
    let incoming = connections::incoming(listener, connections::ConnectionLimits::default());
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        // Applies to connections from `serve_with_incoming_shutdown` too:
        // tonic wraps each accepted stream in the TLS handshake, and the
        // verified client certificates reach requests as `peer_certs()`.
        server = server.tls_config(tls)?;
    }
    let router = server
        .initial_stream_window_size(8 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .tcp_nodelay(true)
        // Pings find dead peers (a black-holed link keeps a TCP connection
        // open for ever) and keep live ones inside the idle timeout.
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_service(admin)
        .add_service(raft)
        .add_service(objects)
        .add_service(shards);
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
