//! The control plane's operations on this node: initialise a cluster,
//! propose metadata commands through Raft, change membership, and describe
//! the cluster. The admin API is a thin layer over this.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers};

use crate::config::{validate_host_port, validate_zone, NodeConfig};
use crate::meta::{now_ms, Bucket, Command, MetaError, MetaStore, NodeRecord, NodeState};
use crate::raft::network::PeerContact;
use crate::raft::voters::{choose_voters, Candidate};
use crate::raft::{NodeId, Raft};
use tresor_proto::internal::v1::raft_client::RaftClient;

/// How long a new learner may take to catch up before `add` gives up waiting.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
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
pub struct CaughtUp(());

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
const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a linearizable read or a proposal keeps retrying while the
/// cluster elects a leader (elections take about two election timeouts).
const RETRY_WINDOW: Duration = Duration::from_secs(8);
/// How long one attempt at a proposal may take, forwarded or on the leader:
/// a leader that lost its quorum never answers, and a caller must not wait
/// for ever. Past it the outcome is unknown, and callers that care (the
/// write path) find out which way it went.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a membership change may take to commit.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(30);

/// This node's handle on the control plane.
pub struct Cluster {
    leader_raft_client: tokio::sync::Mutex<Option<(String, RaftClient<tonic::transport::Channel>)>>,
    config: NodeConfig,
    raft: Raft,
    meta: MetaStore,
    contact: PeerContact,
    committed: Arc<AtomicU64>,
    capacity: u64,
    incarnation: String,
}

fn raft_write_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ClusterError {
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
            leader_raft_client: tokio::sync::Mutex::new(None),
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

    /// The current leader and its address, if known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics().borrow().clone();
        let id = metrics.current_leader?;
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())?;
        Some((id, addr))
    }

    /// Whether this node is the leader: it believes so, and it is still a
    /// voter of the membership it leads. A leader that committed its own
    /// removal can go on believing it leads a cluster it is no longer part
    /// of; it must not act as leader (liveness, repair, expiry).
    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        let me = self.config.node_id;
        metrics.current_leader == Some(me)
            && metrics
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == me)
    }

    /// Whether this node has been removed from the cluster (its record says
    /// so, or the membership no longer names it once it had joined).
    pub fn is_removed(&self) -> bool {
        let me = self.config.node_id;
        self.meta
            .node(me)
            .ok()
            .flatten()
            .is_some_and(|n| n.state == NodeState::Removed)
    }

    fn own_record(&self) -> NodeRecord {
        NodeRecord {
            id: self.config.node_id,
            addr: self.config.advertised_addr(),
            zone: self.config.zone.clone(),
            capacity: self.capacity,
            state: NodeState::Active,
            added_ms: now_ms(),
            state_since_ms: now_ms(),
            incarnation: self.incarnation.clone(),
        }
    }

    /// A Raft-service client to the current leader (cached).
    async fn leader_client(
        &self,
    ) -> Result<(NodeId, RaftClient<tonic::transport::Channel>), ClusterError> {
        let Some((leader, addr)) = self.leader() else {
            return Err(ClusterError::NotLeader { leader: None });
        };
        let mut cached = self.leader_raft_client.lock().await;
        if let Some((a, c)) = cached.as_ref() {
            if *a == addr {
                return Ok((leader, c.clone()));
            }
        }
        let channel = tresor_client::connect_lazy(&addr)
            .map_err(|e| ClusterError::Unavailable(format!("leader {leader}: {e}")))?;
        let client = RaftClient::new(channel)
            .max_decoding_message_size(tresor_client::channel::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(tresor_client::channel::MAX_MESSAGE_BYTES);
        *cached = Some((addr, client.clone()));
        Ok((leader, client))
    }

    /// Waits until this node's state machine reflects every write committed
    /// before the call: on the leader by confirming leadership with a quorum,
    /// on a follower by asking the leader for its read index and waiting to
    /// apply up to it. Reads of the local metadata after this are
    /// linearizable.
    pub async fn linearizable_read(&self) -> Result<CaughtUp, ClusterError> {
        // A leader change or a slow heartbeat round fails one attempt; a
        // few quick retries hide that from clients.
        let deadline = std::time::Instant::now() + RETRY_WINDOW;
        loop {
            match self.linearizable_read_once().await {
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "linearizable read retry");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                done => return done.map(|()| CaughtUp(())),
            }
        }
    }

    async fn linearizable_read_once(&self) -> Result<(), ClusterError> {
        if self.is_leader() {
            return tokio::time::timeout(READ_INDEX_TIMEOUT, self.raft.ensure_linearizable())
                .await
                .map_err(|_| {
                    ClusterError::Unavailable(
                        "leadership could not be confirmed in time (no quorum?)".into(),
                    )
                })?
                .map(|_| ())
                .map_err(|e| {
                    ClusterError::Unavailable(format!("leadership could not be confirmed: {e}"))
                });
        }
        let (leader, mut client) = self.leader_client().await?;
        let index = tokio::time::timeout(
            READ_INDEX_TIMEOUT,
            client.read_index(tresor_proto::internal::v1::ReadIndexRequest {}),
        )
        .await
        .map_err(|_| {
            ClusterError::Unavailable(format!(
                "leader {leader} did not answer a read index in time"
            ))
        })?
        .map_err(|s| {
            ClusterError::Unavailable(format!(
                "leader {leader} refused a read index: {}",
                s.message()
            ))
        })?
        .into_inner()
        .index;
        self.raft
            .wait(Some(READ_INDEX_TIMEOUT))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|e| {
                ClusterError::Unavailable(format!("this node did not catch up for a read: {e}"))
            })?;
        Ok(())
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

    async fn forward_proposal(&self, command: &Command) -> Result<(), ClusterError> {
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

    /// Adds a node as a learner, then rebalances voters.
    pub async fn add_node(&self, mut record: NodeRecord) -> Result<NodeView, ClusterError> {
        if record.id == 0 {
            return Err(MetaError::InvalidArgument("node id must be at least 1".into()).into());
        }
        validate_zone(&record.zone)
            .map_err(|r| MetaError::InvalidArgument(format!("invalid zone: {r}")))?;
        validate_host_port(&record.addr)
            .map_err(|r| MetaError::InvalidArgument(format!("invalid address: {r}")))?;
        if !self.is_leader() {
            return Err(ClusterError::NotLeader {
                leader: self.leader(),
            });
        }
        if let Some(existing) = self.meta.node(record.id)? {
            return Err(MetaError::AlreadyExists(format!(
                "node id {} is already in use{} (ids are never reused)",
                record.id,
                if existing.state == NodeState::Removed {
                    " by a removed node"
                } else {
                    ""
                }
            ))
            .into());
        }
        self.check_newcomer(&mut record).await?;
        record.state = NodeState::Active;
        record.added_ms = now_ms();
        record.state_since_ms = record.added_ms;
        self.propose(Command::AddNode {
            node: record.clone(),
        })
        .await?;
        let add = self
            .raft
            .add_learner(record.id, BasicNode::new(record.addr.clone()), true);
        match tokio::time::timeout(CATCH_UP_TIMEOUT, add).await {
            Err(_) => {
                return Err(ClusterError::Unavailable(format!(
                    "node {} was added as a learner but did not catch up within {} s",
                    record.id,
                    CATCH_UP_TIMEOUT.as_secs()
                )))
            }
            Ok(r) => {
                r.map_err(raft_write_error)?;
            }
        }
        self.rebalance_voters(None).await?;
        tracing::info!(
            node_id = record.id,
            addr = record.addr,
            zone = record.zone,
            "node added"
        );
        let view = self.view().await?;
        view.nodes
            .into_iter()
            .find(|n| n.record.id == record.id)
            .ok_or_else(|| {
                ClusterError::Unavailable(format!("node {} vanished while being added", record.id))
            })
    }

    /// Asks the node at `record.addr` who it is, so an operator's typo cannot
    /// add the wrong machine or a node of another cluster.
    async fn check_newcomer(&self, record: &mut NodeRecord) -> Result<(), ClusterError> {
        let mut client = tresor_client::admin(&record.addr)
            .await
            .map_err(|e| ClusterError::Unavailable(format!("cannot reach the new node: {e}")))?;
        let info = tokio::time::timeout(
            Duration::from_secs(5),
            client.node_info(tresor_proto::v1::NodeInfoRequest {}),
        )
        .await
        .map_err(|_| {
            ClusterError::Unavailable(format!("node at {} did not answer in time", record.addr))
        })?
        .map_err(|s| {
            ClusterError::Unavailable(format!(
                "node at {} did not answer: {}",
                record.addr,
                s.message()
            ))
        })?
        .into_inner();
        if info.node_id != record.id {
            return Err(MetaError::InvalidArgument(format!(
                "the node at {} has id {} in its config, not {}",
                record.addr, info.node_id, record.id
            ))
            .into());
        }
        if info.zone != record.zone {
            return Err(MetaError::InvalidArgument(format!(
                "the node at {} is in zone {:?} by its config, not {:?}",
                record.addr, info.zone, record.zone
            ))
            .into());
        }
        let ours = self.meta.cluster_id()?.unwrap_or_default();
        if info.initialized && info.cluster_id != ours {
            return Err(MetaError::FailedPrecondition(format!(
                "the node at {} already belongs to another cluster ({}); give it an empty data_dir",
                record.addr,
                if info.cluster_id.is_empty() {
                    "unknown"
                } else {
                    &info.cluster_id
                }
            ))
            .into());
        }
        if record.capacity == 0 {
            record.capacity = info.capacity;
        }
        record.incarnation = info.incarnation;
        Ok(())
    }

    /// Shard files the manifests place on each node.
    pub fn shards_per_node(&self) -> Result<std::collections::HashMap<NodeId, u64>, ClusterError> {
        let mut counts = std::collections::HashMap::new();
        for m in self.meta.all_objects()? {
            for seg in &m.segments {
                for node in seg.shards.iter().filter_map(|l| l.node) {
                    *counts.entry(node).or_default() += 1;
                }
            }
        }
        Ok(counts)
    }

    /// Marks a node draining: repair moves its shards to other nodes.
    pub async fn drain_node(&self, id: NodeId) -> Result<(), ClusterError> {
        if !self.is_leader() {
            return Err(ClusterError::NotLeader {
                leader: self.leader(),
            });
        }
        match self.meta.node(id)? {
            None => return Err(MetaError::NotFound(format!("no node with id {id}")).into()),
            Some(n) if n.state == NodeState::Removed => {
                return Err(MetaError::NotFound(format!("node {id} is removed")).into())
            }
            Some(_) => {}
        }
        self.propose(Command::SetNodeState {
            id,
            state: NodeState::Draining,
            since_ms: now_ms(),
        })
        .await?;
        tracing::info!(node_id = id, "node draining");
        Ok(())
    }

    /// Removes a node from the cluster, voter, learner or leader.
    pub async fn remove_node(&self, id: NodeId, force: bool) -> Result<(), ClusterError> {
        if !self.is_leader() {
            return Err(ClusterError::NotLeader {
                leader: self.leader(),
            });
        }
        let Some(record) = self.meta.node(id)? else {
            return Err(MetaError::NotFound(format!("no node with id {id}")).into());
        };
        let holds = self.shards_per_node()?.get(&id).copied().unwrap_or(0);
        if holds > 0 && !force && record.state != NodeState::Removed {
            return Err(MetaError::FailedPrecondition(format!(
                "node {id} still holds {holds} shard file(s); drain it first (`tresor-node nodes drain --id {id}`), \
                 or remove it with --force to have them rebuilt from the other shards"
            ))
            .into());
        }
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let in_membership = membership.membership().get_node(&id).is_some();
        if record.state == NodeState::Removed && !in_membership {
            return Err(MetaError::NotFound(format!("node {id} is already removed")).into());
        }
        let voters: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
        if voters.len() == 1 && voters.contains(&id) {
            return Err(MetaError::FailedPrecondition(format!(
                "node {id} is the cluster's only voter; add another node first"
            ))
            .into());
        }
        if record.state != NodeState::Removed {
            self.propose(Command::RemoveNode { id }).await?;
        }
        let changed = async {
            self.rebalance_voters(Some(id)).await?;
            let still_member = self
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&id)
                .is_some();
            if still_member {
                let mut gone = BTreeSet::new();
                gone.insert(id);
                self.change_membership(ChangeMembers::RemoveNodes(gone), false)
                    .await?;
            }
            Ok::<(), ClusterError>(())
        }
        .await;
        if let Err(e) = changed {
            // A leader removing itself may lose leadership before it hears
            // the change commit; what it knows of the membership decides.
            let voter = self
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == id);
            if voter || id != self.config.node_id {
                return Err(e);
            }
            tracing::warn!(node_id = id, error = %e, "removed myself; the change's last step was not confirmed here");
        }
        tracing::info!(node_id = id, "node removed");
        Ok(())
    }

    /// Recomputes the voter set over the members that are not removed
    /// (and not `leaving`), and commits it if it changed. A voter that
    /// loses its seat stays a learner unless it is `leaving`.
    async fn rebalance_voters(&self, leaving: Option<NodeId>) -> Result<(), ClusterError> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let current: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
        let records = self.meta.nodes()?;
        let candidates: Vec<Candidate<'_>> = records
            .iter()
            .filter(|r| r.state != NodeState::Removed && Some(r.id) != leaving)
            .filter(|r| membership.membership().get_node(&r.id).is_some())
            .map(|r| Candidate {
                id: r.id,
                zone: &r.zone,
            })
            .collect();
        let wanted = choose_voters(&candidates, &current);
        if wanted.is_empty() || wanted == current {
            return Ok(());
        }
        tracing::info!(?current, ?wanted, "changing voters");
        self.change_membership(ChangeMembers::ReplaceAllVoters(wanted), leaving.is_none())
            .await
    }

    /// Commits a membership change, waiting at most [`MEMBERSHIP_TIMEOUT`].
    /// A leader that removes itself may never hear its own change commit;
    /// past the bound the caller is told the outcome is unknown, and
    /// `status` shows the membership as it is.
    async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, BasicNode>,
        retain: bool,
    ) -> Result<(), ClusterError> {
        match tokio::time::timeout(
            MEMBERSHIP_TIMEOUT,
            self.raft.change_membership(change, retain),
        )
        .await
        {
            Ok(done) => done.map(|_| ()).map_err(raft_write_error),
            Err(_) => Err(ClusterError::Unavailable(format!(
                "the membership change did not commit within {MEMBERSHIP_TIMEOUT:?}; \
                 its outcome is unknown: check `tresor-node status`"
            ))),
        }
    }

    /// Creates a bucket.
    pub async fn create_bucket(
        &self,
        name: &str,
        data: u32,
        parity: u32,
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

    /// The cluster as seen from here. On the leader, it includes how long ago
    /// each node was last heard from.
    pub async fn view(&self) -> Result<ClusterView, ClusterError> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let leader_here = metrics.current_leader == Some(self.config.node_id);
        let nodes = self
            .meta
            .nodes()?
            .into_iter()
            .filter(|r| r.state != NodeState::Removed)
            .map(|record| {
                let role = if voters.contains(&record.id) {
                    Role::Voter
                } else if membership.get_node(&record.id).is_some() {
                    Role::Learner
                } else {
                    Role::None
                };
                let last_contact_ms = if leader_here && record.id != self.config.node_id {
                    self.contact.since(record.id).map(|d| d.as_millis() as u64)
                } else {
                    None
                };
                NodeView {
                    record,
                    role,
                    last_contact_ms,
                }
            })
            .collect();
        Ok(ClusterView {
            cluster_id: self.meta.cluster_id()?.unwrap_or_default(),
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            commit_index: self.committed.load(Ordering::Relaxed),
            nodes,
            reporter_id: self.config.node_id,
            applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: metrics.snapshot.map(|l| l.index),
            purged_index: metrics.purged.map(|l| l.index),
        })
    }
}
