//! This node's handle on the control plane: initialise a cluster, propose
//! metadata commands through Raft (forwarded to the leader when this node
//! is not it). Reads and views of the cluster are in `reads`, membership
//! changes in `membership`; the admin API is a thin layer over all three.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::BasicNode;

use super::network::PeerContact;
use super::{NodeId, Raft};
use crate::config::NodeConfig;
use crate::meta::{now_ms, Bucket, Command, MetaError, MetaStore, NodeRecord};
use tresor_proto::internal::v1::raft_client::RaftClient;

/// Log entries a learner may lag behind the leader's last and still count
/// as caught up (be given a vote).
pub(super) const CAUGHT_UP_LAG: u64 = 100;
/// How long `init` waits for the new single-node cluster to elect itself.
const INIT_LEADER_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a control-plane operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Refused by validation or by the state machine.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// This node is not the leader; the caller should ask `leader`.
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's id and address, when known.
        leader: Option<(NodeId, String)>,
    },
    /// The cluster cannot serve the request now (no leader, a node is
    /// unreachable, a wait ran out); retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// Local storage failed.
    #[error("storage: {0}")]
    Storage(String),
}

impl From<crate::meta::StoreError> for ClusterError {
    fn from(e: crate::meta::StoreError) -> Self {
        ClusterError::Storage(e.to_string())
    }
}

/// Membership role of a node as seen in the Raft config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Votes.
    Voter,
    /// Receives the log, does not vote.
    Learner,
    /// Not in the Raft membership (removed).
    None,
}

impl Role {
    /// Name shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Voter => "voter",
            Role::Learner => "learner",
            Role::None => "none",
        }
    }
}

/// One node in a cluster view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The stored record.
    pub record: NodeRecord,
    /// Raft role.
    pub role: Role,
    /// Milliseconds since the leader last heard from it (leader's view only).
    pub last_contact_ms: Option<u64>,
}

/// Proof that, at some point of the current request, this node's state
/// reflected every write committed before that point: what
/// [`Cluster::linearizable_read`] returns and what linearizable reads of
/// the data plane take, so a request that has caught up once (to check its
/// caller's grants) does not do it again to read a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUp(pub(super) ());

/// The cluster as this node sees it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// Empty before `init`.
    pub cluster_id: String,
    /// Current leader, if known.
    pub leader_id: Option<NodeId>,
    /// Raft term.
    pub term: u64,
    /// Highest committed log index known here.
    pub commit_index: u64,
    /// Every node not removed, by id.
    pub nodes: Vec<NodeView>,
    /// This node.
    pub reporter_id: NodeId,
    /// This node's last applied index.
    pub applied_index: u64,
    /// This node's latest snapshot index.
    pub snapshot_index: Option<u64>,
    /// This node's highest purged log index.
    pub purged_index: Option<u64>,
}

/// How long a linearizable read may wait for the leader and for this node
/// to catch up.
pub(super) const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a linearizable read or a proposal keeps retrying while the
/// cluster elects a leader (elections take about two election timeouts).
pub(super) const RETRY_WINDOW: Duration = Duration::from_secs(8);
/// How long one attempt at a proposal may take, forwarded or on the leader:
/// a leader that lost its quorum never answers, and a caller must not wait
/// for ever. Past it the outcome is unknown, and callers that care (the
/// write path) find out which way it went.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a membership change may take to commit.
pub(super) const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(30);

/// This node's handle on the control plane.
pub struct Cluster {
    /// Held through each membership change this node makes (openraft
    /// refuses a second while one is in flight: an AddNode and the
    /// background seating of a caught-up learner would race).
    pub(super) membership_changes: tokio::sync::Mutex<()>,
    pub(super) leader_raft_client:
        tokio::sync::Mutex<Option<(String, RaftClient<tonic::transport::Channel>)>>,
    /// Raft-service clients to the voters, by address, for clock reads.
    pub(super) voter_clients: tokio::sync::Mutex<
        std::collections::HashMap<String, RaftClient<tonic::transport::Channel>>,
    >,
    pub(super) config: NodeConfig,
    pub(super) raft: Raft,
    pub(super) meta: MetaStore,
    pub(super) contact: PeerContact,
    pub(super) committed: Arc<AtomicU64>,
    pub(super) capacity: u64,
    pub(super) incarnation: String,
}

pub(super) fn raft_write_error(
    e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ClusterError::NotLeader {
            leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => ClusterError::Meta(
            MetaError::FailedPrecondition(format!("membership change refused: {e}")),
        ),
        RaftError::Fatal(f) => ClusterError::Unavailable(format!("raft stopped: {f}")),
    }
}

impl Cluster {
    /// Wraps a running Raft instance.
    pub fn new(
        config: NodeConfig,
        raft: Raft,
        meta: MetaStore,
        contact: PeerContact,
        committed: Arc<AtomicU64>,
        capacity: u64,
        incarnation: String,
    ) -> Self {
        Self {
            membership_changes: tokio::sync::Mutex::new(()),
            leader_raft_client: tokio::sync::Mutex::new(None),
            voter_clients: Default::default(),
            config,
            raft,
            meta,
            contact,
            committed,
            capacity,
            incarnation,
        }
    }

    /// This node's config.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Highest committed log index known here.
    pub fn commit_index(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// When each peer last answered this node's Raft RPCs.
    pub fn contact(&self) -> &PeerContact {
        &self.contact
    }

    /// Random id of this node's data dir.
    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// Bytes this node offers for shards.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The replicated metadata (local copy).
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// The Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Whether this node has Raft state (is or was part of a cluster).
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(true)
    }

    /// Makes this node the first voter of a new cluster; returns its id.
    pub async fn init(&self) -> Result<String, ClusterError> {
        if self.is_initialized().await {
            let cluster = self
                .meta
                .cluster_id()?
                .unwrap_or_else(|| "(not yet known here)".into());
            return Err(MetaError::FailedPrecondition(format!(
                "node {} is already part of cluster {cluster}",
                self.config.node_id
            ))
            .into());
        }
        let id = self.config.node_id;
        let mut members = BTreeMap::new();
        members.insert(id, BasicNode::new(self.config.advertised_addr()));
        self.raft.initialize(members).await.map_err(|e| match e {
            RaftError::APIError(InitializeError::NotAllowed(e)) => {
                ClusterError::Meta(MetaError::FailedPrecondition(format!(
                    "node {id} is already part of a cluster: {e}"
                )))
            }
            other => ClusterError::Unavailable(format!("cannot initialise: {other}")),
        })?;
        self.raft
            .wait(Some(INIT_LEADER_TIMEOUT))
            .current_leader(id, "init: single voter elects itself")
            .await
            .map_err(|e| {
                ClusterError::Unavailable(format!("new cluster did not elect a leader: {e}"))
            })?;
        let cluster_id = uuid::Uuid::new_v4().to_string();
        self.propose(Command::InitCluster {
            cluster_id: cluster_id.clone(),
            node: self.own_record(),
        })
        .await?;
        tracing::info!(node_id = id, cluster_id, "initialised new cluster");
        Ok(cluster_id)
    }

    /// Proposes a command through Raft and waits for its result. On a
    /// follower the command is forwarded to the leader.
    pub async fn propose(&self, command: Command) -> Result<(), ClusterError> {
        let deadline = std::time::Instant::now() + RETRY_WINDOW;
        loop {
            let result = if self.is_leader() {
                match tokio::time::timeout(PROPOSE_TIMEOUT, self.raft.client_write(command.clone()))
                    .await
                {
                    Ok(Ok(response)) => return response.data.0.map_err(ClusterError::Meta),
                    Ok(Err(e)) => Err(raft_write_error(e)),
                    Err(_) => Err(ClusterError::Unavailable(format!(
                        "the proposal was not committed within {PROPOSE_TIMEOUT:?} (no quorum?)"
                    ))),
                }
            } else {
                match tokio::time::timeout(PROPOSE_TIMEOUT, self.forward_proposal(&command)).await {
                    Ok(result) => result,
                    Err(_) => Err(ClusterError::Unavailable(format!(
                        "the leader did not answer a proposal within {PROPOSE_TIMEOUT:?}"
                    ))),
                }
            };
            match result {
                Err(e @ ClusterError::NotLeader { .. }) | Err(e @ ClusterError::Unavailable(_))
                    if std::time::Instant::now() < deadline =>
                {
                    tracing::debug!(error = %e, "proposal retry");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    pub(super) async fn forward_proposal(&self, command: &Command) -> Result<(), ClusterError> {
        let (leader, mut client) = self.leader_client().await?;
        let json = serde_json::to_vec(command)
            .map_err(|e| ClusterError::Storage(format!("cannot encode command: {e}")))?;
        let reply = client
            .propose(tresor_proto::internal::v1::RaftPayload {
                json,
                data: Vec::new(),
                target_incarnation: String::new(),
            })
            .await
            .map_err(|s| ClusterError::Unavailable(format!("leader {leader}: {}", s.message())))?
            .into_inner();
        let result: crate::meta::CommandResult =
            serde_json::from_slice(&reply.json).map_err(|e| {
                ClusterError::Unavailable(format!("leader {leader} answered garbage: {e}"))
            })?;
        result.0.map_err(ClusterError::Meta)
    }

    /// Creates a bucket.
    pub async fn create_bucket(
        &self,
        name: &str,
        data: u32,
        parity: u32,
        retention: Option<String>,
    ) -> Result<Bucket, ClusterError> {
        crate::meta::validate_bucket_name(name)?;
        crate::meta::validate_scheme(data, parity)?;
        if self.meta.bucket(name)?.is_some() {
            return Err(MetaError::AlreadyExists(format!("bucket {name} already exists")).into());
        }
        let bucket = Bucket {
            name: name.to_string(),
            data,
            parity,
            created_ms: now_ms(),
            retention,
        };
        match self
            .propose(Command::CreateBucket {
                bucket: bucket.clone(),
            })
            .await
        {
            Ok(()) => Ok(bucket),
            // A retried proposal whose first attempt committed finds its own bucket.
            Err(e @ ClusterError::Meta(MetaError::AlreadyExists(_))) => {
                match self.meta.bucket(name)? {
                    Some(existing) if existing == bucket => Ok(bucket),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes the empty bucket `name` (see `Command::DeleteBucket`). A
    /// retry whose first attempt committed finds the bucket gone:
    /// `NotFound`, as for any bucket not there.
    pub async fn delete_bucket(&self, name: &str) -> Result<(), ClusterError> {
        crate::meta::validate_bucket_name(name)?;
        self.propose(Command::DeleteBucket {
            name: name.to_string(),
        })
        .await
    }
}
