//! gRPC services, thin: validate, call the control plane, map errors.
//!
//! [`grpc_server`] is the one place where the node's gRPC server is built,
//! so transport security is switched on here for every service at once.

pub mod admin;
pub mod objects;
pub mod shards;
mod status;

pub use status::{object_status, outcome_of, to_status};

use std::sync::Arc;

use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tresor_client::channel::MAX_MESSAGE_BYTES;
use tresor_proto::internal::v1::raft_server::RaftServer;
use tresor_proto::v1::admin_server::AdminServer;

use crate::cluster::Cluster;
use crate::objects::DataPlane;
use crate::raft::service::RaftService;
use crate::shards::ShardStore;
use tresor_proto::internal::v1::shards_server::ShardsServer;
use tresor_proto::v1::objects_server::ObjectsServer;

/// Serves every gRPC service of the node on `listener` until `shutdown`.
pub async fn serve_grpc(
    cluster: Arc<Cluster>,
    plane: Arc<DataPlane>,
    store: Arc<ShardStore>,
    workers: Arc<crate::workers::Workers>,
    metrics: crate::metrics::Metrics,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
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
    let objects = ObjectsServer::new(objects::ObjectsService::new(plane, metrics, audit))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let shards = ShardsServer::new(shards::ShardsService::new(store))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // The server's own tcp_nodelay applies only to listeners it binds; set
    // it on every accepted socket, or Nagle's algorithm meets delayed ACKs
    // and small responses stall for 40 ms.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.and_then(|stream| {
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    });
    let router = tonic::transport::Server::builder()
        .initial_stream_window_size(8 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .tcp_nodelay(true)
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
