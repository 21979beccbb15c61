//! Running a node: open its data dir, start Raft, serve gRPC and HTTP until
//! told to stop.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::config::NodeConfig;
use crate::raft::log_store::LogStore;
use crate::raft::network::{NetworkFactory, PeerContact};
use crate::raft::state_machine::StateMachine;
use crate::raft::Cluster;
use crate::workers::Counters;

mod grpc;
mod http;
mod storage;

use storage::raft_failure;
pub use storage::restart_when_writable;

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data dir cannot be used.
    #[error("data_dir {path}: {message}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The metadata store failed to open.
    #[error("cannot open metadata store in {path}: {source}")]
    Store {
        /// Its directory.
        path: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// The state machine's snapshot files cannot be used.
    #[error("cannot open the metadata snapshots: {0}")]
    Snapshots(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} (field `{field}`): {source}")]
    Bind {
        /// The config field.
        field: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Raft could not start.
    #[error("raft: {0}")]
    Raft(String),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The node's CA, certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The node's certificate cannot be used to call other nodes.
    #[error("TLS: {0}")]
    Credentials(#[from] tresor_client::ClientError),
    /// The metadata store failed under Raft (a full or failing disk): the
    /// node stopped serving. [`restart_when_writable`] brings it back.
    #[error("metadata storage failed: {0}")]
    StorageFailed(String),
}

/// Loads the node's TLS material and makes its certificate the identity of
/// every outgoing connection of this process (Raft, shard transfer,
/// forwarding to the leader, checks of new nodes). `None` when `insecure`,
/// which is logged loudly.
/// The TLS of the gRPC port and of the S3 port (none: `insecure`).
type PortsTls = (
    Option<tonic::transport::ServerTlsConfig>,
    Option<Arc<rustls::ServerConfig>>,
);

fn transport_security(config: &NodeConfig) -> Result<PortsTls, ServeError> {
    if config.security.insecure {
        tracing::warn!(
            node_id = config.node_id,
            "INSECURE: security.insecure = true. The gRPC port is PLAINTEXT with NO \
             AUTHENTICATION: anyone who can reach it can read, write and delete every \
             object and change the cluster. Never run this in production."
        );
        return Ok((None, None));
    }
    let tls = crate::tls::NodeTls::load(&config.security, config.node_id)?;
    tresor_client::set_default_credentials(tls.credentials()?);
    let s3 = match config.s3_listen {
        Some(_) => Some(tls.s3_server_config()?),
        None => None,
    };
    Ok((Some(tls.server_config()), s3))
}

/// Written into a data dir on first start, so the dir can never be used by a
/// node with another id.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct DataDirIdentity {
    node_id: u64,
    /// Random, made with the dir: tells a wiped and recreated dir apart.
    #[serde(default)]
    incarnation: String,
}

const IDENTITY_FILE: &str = "node.json";

fn check_data_dir(config: &NodeConfig) -> Result<String, ServeError> {
    let dir = &config.data_dir;
    let fail = |message: String| ServeError::DataDir {
        path: dir.clone(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create: {e}")))?;
    let path = dir.join(IDENTITY_FILE);
    let mut identity = match std::fs::read(&path) {
        Ok(bytes) => {
            let found: DataDirIdentity = serde_json::from_slice(&bytes).map_err(|e| {
                fail(format!(
                    "{IDENTITY_FILE} is unreadable ({e}); is this a tresor data dir?"
                ))
            })?;
            if found.node_id != config.node_id {
                return Err(fail(format!(
                    "belongs to node {}, but the config says node_id = {}",
                    found.node_id, config.node_id
                )));
            }
            found
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DataDirIdentity {
            node_id: config.node_id,
            incarnation: String::new(),
        },
        Err(e) => return Err(fail(format!("cannot read {IDENTITY_FILE}: {e}"))),
    };
    if identity.incarnation.is_empty() {
        identity.incarnation = uuid::Uuid::new_v4().to_string();
        let bytes = serde_json::to_vec(&identity).map_err(|e| fail(e.to_string()))?;
        write_durably(&path, &bytes)
            .map_err(|e| fail(format!("cannot write {IDENTITY_FILE}: {e}")))?;
    }
    Ok(identity.incarnation)
}

/// Writes a small file so that it survives a crash: temp file, fsync,
/// rename, fsync of the directory.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

fn fs_capacity(dir: &Path) -> u64 {
    nix::sys::statvfs::statvfs(dir)
        .map(|s| s.blocks().saturating_mul(s.fragment_size()))
        .unwrap_or(0)
}

/// Runs a node until `shutdown` resolves, then stops Raft and flushes.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.validate()?;
    crate::crash::arm_from_env();
    tresor_client::channel::set_source_ip(config.source_ip);
    let (tls, s3_tls) = transport_security(&config)?;
    let incarnation = check_data_dir(&config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            field: "listen",
            addr: config.listen,
            source,
        })?;
    let http_listener = match config.http_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind {
                    field: "http_listen",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };
    let s3_listener = match config.s3_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind {
                    field: "s3_listen",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };

    let meta_dir = config.data_dir.join("meta");
    let db = crate::meta::database::open(&meta_dir, config.meta.cache_bytes).map_err(|source| {
        ServeError::Store {
            path: meta_dir.clone(),
            source,
        }
    })?;
    let store_err = |source| ServeError::Store {
        path: meta_dir.clone(),
        source,
    };
    let log_store = LogStore::open(&db).map_err(store_err)?;
    let state_machine = StateMachine::open(&db, &config.data_dir.join("snapshots"))
        .map_err(|e| ServeError::Snapshots(e.to_string()))?;
    let meta = state_machine.meta();
    let committed = log_store.committed_index();
    let contact = PeerContact::default();

    // The receipt signer (insecure clusters have none: their receipts are
    // unsigned); a bad one stops the start here.
    let signer = match (&config.security.signer_cert, &config.security.signer_key) {
        (Some(cert), Some(key)) if !config.security.insecure => {
            Some(Arc::new(crate::tls::ReceiptSigner::load(cert, key)?))
        }
        _ => None,
    };
    let raft_config = crate::raft::raft_config("tresor", &config.raft)
        .map_err(|e| ServeError::Raft(e.to_string()))?;
    let raft = crate::raft::Raft::new(
        config.node_id,
        Arc::new(raft_config),
        NetworkFactory::new(config.node_id, contact.clone(), meta.clone()),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| ServeError::Raft(e.to_string()))?;

    let store = Arc::new(
        crate::shards::ShardStore::open_with(
            &config.data_dir,
            config.shards.packed_shard_bytes as usize,
        )
        .map_err(|e| ServeError::DataDir {
            path: config.data_dir.clone(),
            message: format!("cannot open the shard store: {e}"),
        })?,
    );
    // Nothing is being written at start, so every temporary shard file is
    // left over from a crash.
    match store.clean_tmp(std::time::Duration::ZERO) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            removed = n,
            "removed unfinished shard files left by a crash"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot clean unfinished shard files"),
    }
    let capacity = config
        .capacity
        .unwrap_or_else(|| fs_capacity(&config.data_dir));
    let cluster = Arc::new(Cluster::new(
        config.clone(),
        raft.clone(),
        meta,
        contact,
        committed,
        capacity,
        incarnation.clone(),
    ));
    tracing::info!(
        node_id = config.node_id,
        zone = config.zone,
        listen = %config.listen,
        data_dir = %config.data_dir.display(),
        "node serving"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let epochs = Arc::new(
        crate::crypto::EpochKeys::open(
            config.data_dir.join(crate::crypto::epochs::DIR_NAME),
            crate::crypto::Keyring::new(config.security.master_key_file.clone()),
        )
        .map_err(|e| ServeError::DataDir {
            path: config.data_dir.clone(),
            message: e.to_string(),
        })?,
    );
    let plane = Arc::new(crate::objects::DataPlane::new(
        cluster.clone(),
        config.data.clone(),
        epochs,
        signer,
    ));
    let metrics = crate::metrics::Metrics::new(config.node_id);
    let workers = Arc::new(spawn_workers(&config, &cluster, &plane, &store, &stop_rx));
    spawn_gauges(
        cluster.clone(),
        workers.clone(),
        store.clone(),
        metrics.clone(),
        stop_rx.clone(),
    );
    if let Some(listener) = http_listener {
        http::spawn(listener, store.clone(), metrics.clone(), stop_rx.clone());
    }

    // One audit sink and one set of admission limits for every API of the
    // node: refusals merge across them, and uploads and downloads count
    // against one limit whichever port they came through.
    let audit = crate::api::audit::AuditSink::spawn(cluster.clone());
    let admission = crate::api::admission::Admission::new(&config.admission);
    if let Some(listener) = s3_listener {
        let gateway = crate::api::s3::S3Gateway::new(
            plane.clone(),
            metrics.clone(),
            audit.clone(),
            admission.clone(),
        );
        tokio::spawn(crate::api::s3::serve(
            gateway,
            listener,
            s3_tls,
            config.s3.max_connections as usize,
            stop_rx.clone(),
        ));
    }
    let mut stop = stop_rx;
    let grpc_shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let grpc = tokio::spawn(grpc::serve_grpc(
        cluster,
        plane,
        store,
        workers,
        metrics,
        (audit, admission),
        listener,
        tls,
        grpc_shutdown,
    ));
    // A failed metadata store stops the node as if told to: peers and
    // clients find it gone (a new leader is elected if it led, liveness
    // marks it down) instead of a node that answers and does nothing.
    let failed = tokio::select! {
        _ = shutdown => None,
        reason = raft_failure(raft.clone()) => Some(reason),
    };
    if let Some(reason) = &failed {
        tracing::error!(
            node_id = config.node_id,
            reason,
            "metadata storage failed: this node stops serving, and starts again once the disk takes writes"
        );
    }
    tracing::info!(node_id = config.node_id, "stopping");
    let _ = stop_tx.send(true);
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft did not shut down cleanly");
    }
    let served = match tokio::time::timeout(std::time::Duration::from_secs(5), grpc).await {
        Ok(Ok(r)) => r.map_err(ServeError::from),
        Ok(Err(e)) => Err(ServeError::Raft(format!("gRPC task failed: {e}"))),
        Err(_) => Ok(()),
    };
    if let Err(e) = db.flush_async().await {
        tracing::error!(error = %e, "final flush failed");
    }
    tracing::info!(node_id = config.node_id, "stopped");
    match failed {
        Some(reason) => Err(ServeError::StorageFailed(reason)),
        None => served,
    }
}

/// How often the leader looks for key epochs to destroy, and every node
/// makes its epoch key files follow the state.
const SHRED_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the leader issues the receipts deletions left due.
const RECEIPT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

fn spawn_workers(
    config: &NodeConfig,
    cluster: &Arc<Cluster>,
    plane: &Arc<crate::objects::DataPlane>,
    store: &Arc<crate::shards::ShardStore>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> crate::workers::Workers {
    use crate::workers::{
        AuditSealer, EpochKeySync, Liveness, OrphanCollector, ReceiptIssuer, Repairer,
        RetentionExpiry, Scrubber, Shredder, UploadExpiry, Workers,
    };
    use std::time::Duration;
    let h = &config.healing;
    let workers = Workers::default();
    workers.spawn(
        Liveness::new(cluster.clone(), Duration::from_secs(h.down_after_secs)),
        stop.clone(),
    );
    workers.spawn(
        Scrubber::new(
            plane.clone(),
            store.clone(),
            Duration::from_secs(h.scrub_interval_secs),
            h.scrub_bytes_per_sec,
        ),
        stop.clone(),
    );
    workers.spawn(
        Repairer::new(
            plane.clone(),
            Duration::from_secs(h.repair_interval_secs),
            Duration::from_secs(h.rebuild_after_secs),
            h.repair_bytes_per_sec,
        ),
        stop.clone(),
    );
    workers.spawn(
        OrphanCollector::new(
            cluster.clone(),
            store.clone(),
            Duration::from_secs(h.orphan_grace_secs),
            Duration::from_secs(h.gc_interval_secs),
        ),
        stop.clone(),
    );
    workers.spawn(
        UploadExpiry::new(
            cluster.clone(),
            Duration::from_secs(h.upload_expiry_secs),
            Duration::from_secs(h.session_expiry_secs),
            Duration::from_secs(5),
        ),
        stop.clone(),
    );
    workers.spawn(
        RetentionExpiry::new(
            plane.clone(),
            Duration::from_secs(config.retention.expiry_interval_secs),
            config.retention.expiry_objects_per_sec,
        ),
        stop.clone(),
    );
    workers.spawn(
        ReceiptIssuer::new(plane.clone(), RECEIPT_INTERVAL),
        stop.clone(),
    );
    workers.spawn(
        Shredder::new(
            plane.clone(),
            Duration::from_secs(config.retention.shred_delay_secs),
            SHRED_INTERVAL,
        ),
        stop.clone(),
    );
    workers.spawn(
        EpochKeySync::new(plane.clone(), SHRED_INTERVAL),
        stop.clone(),
    );
    workers.spawn(
        AuditSealer::new(
            plane.clone(),
            config.audit.seal_entries,
            Duration::from_secs(config.audit.seal_after_secs),
            Duration::from_secs(config.audit.checkpoint_secs),
            Duration::from_secs(5),
        ),
        stop.clone(),
    );
    workers
}

/// Refreshes the gauges that are read from state rather than counted as
/// things happen, every two seconds.
fn spawn_gauges(
    cluster: Arc<Cluster>,
    workers: Arc<crate::workers::Workers>,
    store: Arc<crate::shards::ShardStore>,
    metrics: crate::metrics::Metrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut store_was_healthy = true;
        loop {
            let health = store.health();
            let healthy = health.is_ok();
            metrics.set_shard_store(healthy, store.free_bytes().unwrap_or(0));
            match &health {
                Err(e) if store_was_healthy => {
                    tracing::error!(error = %e, "shard storage takes no new files: shards go to other nodes until this is fixed")
                }
                Ok(_) if !store_was_healthy => {
                    tracing::info!("shard storage takes new files again")
                }
                _ => {}
            }
            store_was_healthy = healthy;
            let m = cluster.raft().metrics().borrow().clone();
            let own = cluster.config().node_id;
            metrics.set_raft(
                m.current_term,
                m.current_leader,
                cluster.commit_index(),
                m.last_applied.map(|l| l.index).unwrap_or(0),
                m.current_leader == Some(own),
            );
            if let Ok(health) = cluster.meta().health() {
                metrics.set_degraded(&health.degraded);
            }
            for w in workers.list() {
                match w.counters {
                    Counters::Repair(c) => metrics.repair_progress(
                        c.segments_repaired_this_pass,
                        c.segments_to_repair,
                        c.bytes_rebuilt,
                    ),
                    Counters::Scrub(c) => metrics.scrub_progress(
                        c.files_checked,
                        c.files_total,
                        c.bytes_checked,
                        c.errors_found,
                    ),
                    Counters::Gc(c) => metrics.set_shards(c.shard_files, c.shard_bytes),
                    Counters::Expiry(c) => metrics.expiry_progress(c.objects_expired, c.held_due),
                    Counters::Receipts(c) => {
                        metrics.receipts_progress(c.receipts_issued, c.receipts_due)
                    }
                    Counters::EpochKeys(c) => {
                        metrics.epoch_keys_progress(c.keys_destroyed, c.keys_held, c.keys_missing)
                    }
                    Counters::Liveness(_)
                    | Counters::Uploads(_)
                    | Counters::Seal(_)
                    | Counters::Shred(_) => {}
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, id: u64) -> NodeConfig {
        NodeConfig::parse(&format!(
            "node_id = {id}\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = {:?}\n[security]\ninsecure = true\n",
            dir.display().to_string()
        ))
        .expect("config")
    }

    #[test]
    fn data_dir_keeps_its_node_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        check_data_dir(&config(dir.path(), 4)).expect("first start");
        check_data_dir(&config(dir.path(), 4)).expect("restart");
        let err = check_data_dir(&config(dir.path(), 5)).expect_err("another id");
        assert!(err.to_string().contains("belongs to node 4"), "{err}");
    }
}
