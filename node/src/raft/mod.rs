//! Raft: openraft's type configuration, the sled-backed log store and state
//! machine, and the transport over tonic.

// openraft's StorageError is large and is the error type its storage traits
// require; boxing it in our helpers would only move the cost around.
#![allow(clippy::result_large_err)]

mod clock;
mod cluster;
pub mod log_store;
mod membership;
pub mod network;
mod reads;
pub mod service;
pub mod snapshot;
mod snapshot_send;
pub mod state_machine;
pub mod voters;

pub use cluster::{CaughtUp, Cluster, ClusterError, ClusterView, NodeView, Role};

use crate::meta::{Command, CommandResult};

openraft::declare_raft_types!(
    /// tresor's Raft types: metadata commands in, command results out.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of a node.
pub type Raft = openraft::Raft<TypeConfig>;

/// Node ids.
pub type NodeId = u64;

/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<NodeId>;

/// Largest snapshot chunk sent in one message.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;

/// Builds openraft's config from the node's tuning.
pub fn raft_config(
    cluster: &str,
    tuning: &crate::config::RaftTuning,
) -> Result<openraft::Config, openraft::ConfigError> {
    openraft::Config {
        cluster_name: cluster.to_string(),
        heartbeat_interval: tuning.heartbeat_ms,
        election_timeout_min: tuning.election_timeout_min_ms,
        election_timeout_max: tuning.election_timeout_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(tuning.snapshot_after_entries),
        max_in_snapshot_log_to_keep: tuning.keep_entries_after_snapshot,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        install_snapshot_timeout: 10_000,
        ..Default::default()
    }
    .validate()
}

#[cfg(test)]
mod suite {
    //! openraft's own storage test suite against our sled log store and
    //! state machine.

    use openraft::testing::{StoreBuilder, Suite};

    use super::log_store::LogStore;
    use super::state_machine::StateMachine;
    use super::{StorageError, TypeConfig};

    struct SledBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = sled::open(dir.path()).expect("sled opens");
            let log = LogStore::open(&db).expect("log store");
            let sm = StateMachine::open(&db, &dir.path().join("snapshots")).expect("state machine");
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(SledBuilder).expect("storage suite passes");
    }
}
