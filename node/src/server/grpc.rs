//! The node's one gRPC server: every service on one port, built in one
//! place, so transport security is switched on for all of them at once —
//! TLS (unless `insecure`), connection limits and timeouts, and
//! [`MemberGuard`] in front of the internal services (Raft, Shards).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tresor_client::channel::MAX_MESSAGE_BYTES;
use tresor_proto::internal::v1::raft_server::RaftServer;
use tresor_proto::internal::v1::shards_server::ShardsServer;
use tresor_proto::v1::admin_server::AdminServer;
use tresor_proto::v1::objects_server::ObjectsServer;
use tresor_proto::v1::uploads_server::UploadsServer;

use crate::api::admission::Admission;
use crate::api::{admin, audit, connections, objects, shards, uploads, MemberGuard};
use crate::objects::DataPlane;
use crate::raft::service::RaftService;
use crate::raft::Cluster;
use crate::shards::ShardStore;

/// Serves every gRPC service of the node on `listener` until `shutdown`,
/// over TLS with `tls` (plaintext without: `insecure`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve_grpc(
    cluster: Arc<Cluster>,
    plane: Arc<DataPlane>,
    store: Arc<ShardStore>,
    workers: Arc<crate::workers::Workers>,
    metrics: crate::metrics::Metrics,
    (audit, admission): (audit::AuditSink, Admission),
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
    health_reporter
        .set_serving::<UploadsServer<uploads::UploadsService>>()
        .await;
    // Reflection shows the public services, to anyone: the internal ones
    // (Raft, Shards) are for member nodes only and are not advertised.
    // Both versions, as older tools speak only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tresor_proto::PUBLIC_FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let disabled = |e: tonic_reflection::server::Error| {
        tracing::error!(error = %e, "reflection service disabled");
    };
    let reflection_v1 = reflection().build_v1().map_err(disabled).ok();
    let reflection_v1alpha = reflection().build_v1alpha().map_err(disabled).ok();
    let admin = AdminServer::new(admin::AdminService::new(
        plane.clone(),
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
    let epochs = plane.epochs().clone();
    let objects_service = objects::ObjectsService::new(
        plane.clone(),
        metrics.clone(),
        audit.clone(),
        admission.clone(),
    );
    let objects = ObjectsServer::new(objects_service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let uploads = UploadsServer::new(uploads::UploadsService::new(
        plane, metrics, audit, admission,
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let shards = ShardsServer::new(shards::ShardsService::new(store, epochs))
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
        .layer(tower::util::MapResponseLayer::new(
            crate::api::status::over_size_as_resource_exhausted::<tonic::body::Body>,
        ))
        .add_service(health_service)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(admin)
        .add_service(raft)
        .add_service(objects)
        .add_service(uploads)
        .add_service(shards);
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
