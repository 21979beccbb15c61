//! The one cluster harness every integration test uses.
//!
//! It starts real node processes (the `tresor-test-node` binary of this
//! package, which is the `tresor-node` command line) on 127.0.0.1 with free
//! ports and a temporary directory, and can kill -9, restart and stop them.
//! Every wait is bounded: [`wait_for`] polls a condition until a deadline and
//! fails with the last thing it saw.
//!
//! Tests get the binary with [`cluster!`], which expands where cargo sets
//! `CARGO_BIN_EXE_tresor-test-node`.
//!
//! Clusters are secure by default: TLS, client certificates, encryption at
//! rest. One CA serves the whole test process ([`process_pki`]), because
//! cargo runs the tests of one binary as threads of one process, and the
//! process-wide default credentials of `tresor_client` (set to the CA and
//! the `admin` client certificate) must fit every cluster in it. The CLI
//! binaries get the same credentials through `TRESOR_CA`, `TRESOR_CERT` and
//! `TRESOR_KEY`. [`insecure_spec`] makes a plaintext cluster.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tresor_client::Credentials;
use tresor_node::config::RaftTuning;
use tresor_node::devcluster::{LocalCluster, LocalClusterSpec, NodeLauncher};
use tresor_proto::v1 as pb;

pub use tresor_node::devcluster::{pattern, zone_of, DevSecurity, ADMIN_PRINCIPAL};

pub mod calls;
mod cli;
mod data;
pub mod disk;
pub mod history;
pub mod net;
mod pki;
pub mod s3;

pub use data::{
    counter, data_cluster, data_cluster_with, files_under, flip_byte, header, in_pass, sha256_hex,
    HEAL_TIMEOUT,
};
pub use pki::{process_ca_dir, process_pki, ProcessPki};

/// How long a node process may take to start answering.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the cluster may take to elect, replicate or reconfigure.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Raft timing for tests: fast elections so failures heal in well under a
/// second, slow enough not to flap on a loaded two-core machine.
pub fn fast_raft() -> RaftTuning {
    RaftTuning {
        heartbeat_ms: 100,
        election_timeout_min_ms: 600,
        election_timeout_max_ms: 1200,
        ..RaftTuning::default()
    }
}

/// Starts node processes (not yet a cluster; call `form`) inside an async
/// test; use as `cluster!(3)` or `cluster!(6, zones = 3)`
/// or `cluster!(spec)` for a full [`LocalClusterSpec`].
#[macro_export]
macro_rules! cluster {
    (spec = $spec:expr) => {
        $crate::Harness::new(env!("CARGO_BIN_EXE_tresor-test-node"), $spec).await
    };
    (tmpfs = $bytes:expr, spec = $spec:expr) => {
        $crate::Harness::with_tmpfs(env!("CARGO_BIN_EXE_tresor-test-node"), $spec, $bytes).await
    };
    (data, shard = $bytes:expr) => {
        $crate::data_cluster(env!("CARGO_BIN_EXE_tresor-test-node"), $bytes).await
    };
    (data, spec = $spec:expr) => {
        $crate::data_cluster_with(env!("CARGO_BIN_EXE_tresor-test-node"), $spec).await
    };
    (network, spec = $spec:expr) => {
        $crate::Harness::with_network(env!("CARGO_BIN_EXE_tresor-test-node"), $spec).await
    };
    ($nodes:expr) => {
        $crate::cluster!($nodes, zones = $nodes)
    };
    ($nodes:expr, zones = $zones:expr) => {
        $crate::Harness::new(
            env!("CARGO_BIN_EXE_tresor-test-node"),
            $crate::spec($nodes, $zones),
        )
        .await
    };
}

/// A test spec: `nodes` nodes over `zones` zones, fast Raft, no HTTP port,
/// secure with the process CA (an unusable CA shows up as an error of
/// [`Harness::new`]).
pub fn spec(nodes: usize, zones: usize) -> LocalClusterSpec {
    let security = match process_pki() {
        Ok(pki) => DevSecurity::Ca(pki.dir.clone()),
        Err(e) => DevSecurity::Ca(PathBuf::from(format!("/nonexistent/test-ca ({e})"))),
    };
    LocalClusterSpec {
        nodes,
        zones,
        raft: fast_raft(),
        http: false,
        // The S3 port only where a test speaks S3 (`t56_s3`).
        s3: false,
        data: Default::default(),
        healing: Default::default(),
        audit: Default::default(),
        // Key epochs are destroyed a second after a deletion, so receipts
        // (issued after that) come within test timeouts.
        retention: tresor_node::config::RetentionTuning {
            shred_delay_secs: 1,
            ..Default::default()
        },
        // Every shard its own file, so fault tests can damage exactly one
        // shard on disk; `t82_small_objects` runs with packing.
        shards: tresor_node::config::ShardTuning {
            packed_shard_bytes: 0,
        },
        security,
        admission: Default::default(),
    }
}

/// Like [`spec`], but plaintext and unauthenticated (`insecure = true`).
/// Talk to it with [`Harness::credentials`] (none), not the process
/// default.
pub fn insecure_spec(nodes: usize, zones: usize) -> LocalClusterSpec {
    LocalClusterSpec {
        security: DevSecurity::Insecure,
        ..spec(nodes, zones)
    }
}

/// Polls `check` every 50 ms until it returns `Ok(Some(v))`, or fails after
/// `timeout` with the last error or "not yet" it reported.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match tokio::time::timeout(timeout, check()).await {
            Ok(Ok(Some(v))) => return Ok(v),
            Ok(Ok(None)) => "condition not met".to_string(),
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => "check itself timed out".to_string(),
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A cluster of node processes in a temporary directory.
pub struct Harness {
    cluster: LocalCluster,
    credentials: Credentials,
    network: Option<net::Network>,
    /// Unmounted after the nodes (in `cluster`) are killed.
    _mounts: Vec<disk::Tmpfs>,
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    /// Lays out and starts `spec.nodes` processes (not yet a cluster).
    pub async fn new(binary: &str, spec: LocalClusterSpec) -> anyhow::Result<Self> {
        Self::start(binary, spec, false, None)
            .await?
            .context("started without a tmpfs")
    }

    /// Like [`Harness::new`], with a proxy in front of every node so the
    /// test can cut, delay and black-hole links between nodes
    /// ([`Harness::net`]). Nodes added later are not proxied.
    pub async fn with_network(binary: &str, spec: LocalClusterSpec) -> anyhow::Result<Self> {
        Self::start(binary, spec, true, None)
            .await?
            .context("started without a tmpfs")
    }

    /// Like [`Harness::new`], with every node's data dir on a tmpfs of its
    /// own of `bytes` (see [`disk`]), so a test can fill a node's disk.
    /// `None` (the reason printed) where this process may not mount.
    pub async fn with_tmpfs(
        binary: &str,
        spec: LocalClusterSpec,
        bytes: u64,
    ) -> anyhow::Result<Option<Self>> {
        Self::start(binary, spec, false, Some(bytes)).await
    }

    async fn start(
        binary: &str,
        spec: LocalClusterSpec,
        proxied: bool,
        tmpfs: Option<u64>,
    ) -> anyhow::Result<Option<Self>> {
        // Sets the process-wide default credentials before anything connects.
        process_pki()?;
        let mut dir = Some(tempfile::Builder::new().prefix("tresor-test-").tempdir()?);
        // For debugging: keep the nodes' files and logs after the test.
        let path = match std::env::var_os("TRESOR_KEEP_TEST_DIRS") {
            Some(_) => {
                let kept = dir.take().map(|d| d.keep()).unwrap_or_default();
                eprintln!("keeping test dir {}", kept.display());
                kept
            }
            None => dir
                .as_ref()
                .map(|d| d.path().to_path_buf())
                .unwrap_or_default(),
        };
        let launcher = NodeLauncher {
            program: PathBuf::from(binary),
            args: vec!["serve".into()],
        };
        let mut cluster = LocalCluster::create(&path, spec, launcher)?;
        let network = if proxied {
            let nodes: Vec<_> = cluster
                .nodes
                .iter()
                .map(|n| (n.config.node_id, n.config.listen))
                .collect();
            let network = net::Network::start(&nodes)?;
            for node in &mut cluster.nodes {
                let id = node.config.node_id;
                let proxy = network.proxy(id).context("every node has a proxy")?;
                let source = net::Network::source_ip(id)?;
                node.update_config(|c| {
                    c.advertise = Some(proxy.to_string());
                    c.source_ip = Some(source);
                })?;
            }
            Some(network)
        } else {
            None
        };
        let mut mounts = Vec::new();
        if let Some(bytes) = tmpfs {
            for node in &cluster.nodes {
                match disk::Tmpfs::mount(&node.config.data_dir, bytes)? {
                    Some(mount) => mounts.push(mount),
                    None => return Ok(None),
                }
            }
        }
        if let Err(e) = cluster.start_all(START_TIMEOUT).await {
            return Err(e.context(logs_of(&cluster)));
        }
        let credentials = cluster.credentials().clone();
        Ok(Some(Self {
            cluster,
            credentials,
            network,
            _mounts: mounts,
            _dir: dir,
        }))
    }

    /// The link-fault table of a cluster started with
    /// [`Harness::with_network`].
    pub fn net(&self) -> anyhow::Result<&net::Network> {
        self.network
            .as_ref()
            .context("this cluster was started without proxies (Harness::with_network)")
    }

    /// What the harness presents to this cluster: the CA and the `admin`
    /// client certificate (nothing for an insecure cluster).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Directory of this cluster's CA (`ca.pem`, `ca.key`); `None` when
    /// insecure.
    pub fn ca_dir(&self) -> Option<PathBuf> {
        self.cluster.ca_dir().map(Path::to_path_buf)
    }

    /// Initialises the cluster on node 1 and adds every other node.
    pub async fn form(&mut self) -> anyhow::Result<()> {
        let formed = self.cluster.form(SETTLE_TIMEOUT).await;
        formed.map_err(|e| e.context(logs_of(&self.cluster)))
    }

    /// Starts and forms in one step.
    pub async fn formed(binary: &str, spec: LocalClusterSpec) -> anyhow::Result<Self> {
        let mut h = Self::new(binary, spec).await?;
        h.form().await?;
        Ok(h)
    }

    /// The ids of all defined nodes.
    pub fn ids(&self) -> Vec<u64> {
        self.cluster
            .nodes
            .iter()
            .map(|n| n.config.node_id)
            .collect()
    }

    /// The ids of nodes whose process is running.
    pub fn running_ids(&mut self) -> Vec<u64> {
        self.cluster
            .nodes
            .iter_mut()
            .filter_map(|n| n.is_running().then_some(n.config.node_id))
            .collect()
    }

    /// gRPC endpoint of node `id`.
    pub fn endpoint(&self, id: u64) -> String {
        self.cluster
            .node(id)
            .map(|n| n.endpoint())
            .unwrap_or_default()
    }

    /// The S3 endpoint URL of node `id` (empty: it serves no S3 port).
    pub fn s3_endpoint(&self, id: u64) -> String {
        self.cluster
            .node(id)
            .and_then(|n| n.s3_endpoint())
            .unwrap_or_default()
    }

    /// `host:port` of node `id`.
    pub fn addr(&self, id: u64) -> String {
        self.cluster
            .node(id)
            .map(|n| n.config.advertised_addr())
            .unwrap_or_default()
    }

    /// `host:port` of node `id`'s HTTP port, if it has one.
    pub fn http_addr(&self, id: u64) -> Option<String> {
        self.cluster
            .node(id)?
            .config
            .http_listen
            .map(|a| a.to_string())
    }

    /// Zone of node `id`.
    pub fn zone(&self, id: u64) -> String {
        self.cluster
            .node(id)
            .map(|n| n.config.zone.clone())
            .unwrap_or_default()
    }

    /// Data directory of node `id`.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.cluster
            .node(id)
            .map(|n| n.config.data_dir.clone())
            .unwrap_or_default()
    }

    /// Config file of node `id`.
    pub fn config_path(&self, id: u64) -> PathBuf {
        self.cluster
            .node(id)
            .map(|n| n.config_path.clone())
            .unwrap_or_default()
    }

    /// The harness's directory.
    pub fn dir(&self) -> PathBuf {
        self.cluster.dir().to_path_buf()
    }

    /// An admin client to node `id`, with [`Harness::credentials`].
    pub async fn admin(&self, id: u64) -> anyhow::Result<tresor_client::AdminClient> {
        Ok(tresor_client::admin_with(&self.endpoint(id), &self.credentials).await?)
    }

    /// The underlying local cluster.
    pub fn local_cluster(&mut self) -> &mut LocalCluster {
        &mut self.cluster
    }

    /// What node `id` presents when it calls other nodes: the CA its config
    /// trusts and its node certificate.
    pub fn node_credentials(&self, id: u64) -> anyhow::Result<Credentials> {
        let node = self
            .cluster
            .node(id)
            .with_context(|| format!("no node {id}"))?;
        let sec = &node.config.security;
        Ok(Credentials::from_files(
            sec.ca.as_deref(),
            sec.cert.as_deref(),
            sec.key.as_deref(),
            None,
        )?)
    }

    /// Defines and starts a new node (next unused id) in `zone` whose CA
    /// and certificate come from the CA in `ca_dir` (made if absent)
    /// instead of the cluster's; not added to the cluster. Returns its id.
    pub async fn spawn_foreign_node(&mut self, zone: &str, ca_dir: &Path) -> anyhow::Result<u64> {
        let index = self.cluster.define_node_with_ca(zone, ca_dir)?;
        let id = self.cluster.nodes[index].config.node_id;
        self.cluster.start_node(id, START_TIMEOUT).await?;
        Ok(id)
    }

    /// `audit verify` on node `id`: its copy of the audit log checked.
    pub async fn audit_verify(&self, id: u64) -> anyhow::Result<pb::AuditVerifyResponse> {
        Ok(self
            .admin(id)
            .await?
            .audit_verify(pb::AuditVerifyRequest {})
            .await?
            .into_inner())
    }

    /// Node `id`'s own view of the cluster (not forwarded to the leader).
    pub async fn local_status(&self, id: u64) -> anyhow::Result<pb::StatusResponse> {
        Ok(self
            .admin(id)
            .await?
            .status(pb::StatusRequest { local: true })
            .await
            .map_err(|s| anyhow!("status of node {id}: {s}"))?
            .into_inner())
    }

    /// Waits until node `id` has applied everything the leader had
    /// committed when asked (an acknowledged write is on a majority, not
    /// necessarily on `id` yet).
    pub async fn wait_caught_up(&mut self, id: u64) -> anyhow::Result<()> {
        let leader = self.leader().await?;
        let target = self.local_status(leader).await?.commit_index;
        wait_for(&format!("node {id} catches up"), SETTLE_TIMEOUT, || async {
            Ok((self.local_status(id).await?.applied_index >= target).then_some(()))
        })
        .await
    }

    /// SIGKILL node `id`.
    pub fn kill(&mut self, id: u64) {
        if let Some(n) = self.cluster.node_mut(id) {
            n.kill();
        }
    }

    /// SIGTERM node `id` and wait for it to exit.
    pub async fn stop(&mut self, id: u64) {
        if let Some(n) = self.cluster.node_mut(id) {
            n.stop(Duration::from_secs(10)).await;
        }
    }

    /// Starts node `id` again on its data dir and waits until it answers.
    pub async fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let started = self.cluster.start_node(id, START_TIMEOUT).await;
        started.map_err(|e| e.context(logs_of(&self.cluster)))
    }

    /// Stops node `id` and starts it again with crash point `point` armed
    /// (`FAILPOINTS=<point>=return`; see `tresor_node::crash`), or with
    /// none when `point` is `None`.
    pub async fn restart_armed(&mut self, id: u64, point: Option<&str>) -> anyhow::Result<()> {
        self.stop(id).await;
        if let Some(n) = self.cluster.node_mut(id) {
            n.env = point
                .map(|p| vec![("FAILPOINTS".into(), format!("{p}=return").into())])
                .unwrap_or_default();
        }
        self.restart(id).await
    }

    /// Stops node `id` and starts it again with its wall clock `offset_ms`
    /// off (ahead when positive; `TRESOR_CLOCK_OFFSET_MS`, read by builds
    /// with crash points).
    pub async fn restart_with_clock_offset(
        &mut self,
        id: u64,
        offset_ms: i64,
    ) -> anyhow::Result<()> {
        self.stop(id).await;
        if let Some(n) = self.cluster.node_mut(id) {
            n.env = vec![(
                "TRESOR_CLOCK_OFFSET_MS".into(),
                offset_ms.to_string().into(),
            )];
        }
        self.restart(id).await
    }

    /// Whether node `id`'s process is alive.
    pub fn is_running(&mut self, id: u64) -> bool {
        self.cluster.node_mut(id).is_some_and(|n| n.is_running())
    }

    /// SIGTERM every node.
    pub async fn stop_all(&mut self) {
        self.cluster.stop_all(Duration::from_secs(10)).await;
    }

    /// Starts every stopped node.
    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        self.cluster.start_all(START_TIMEOUT).await
    }

    /// Defines and starts a new node (next unused id) in `zone`, without
    /// adding it to the cluster; returns its id.
    pub async fn spawn_new_node(&mut self, zone: &str) -> anyhow::Result<u64> {
        self.spawn_new_node_armed(zone, None).await
    }

    /// Like [`Harness::spawn_new_node`], with `FAILPOINTS=<failpoints>`
    /// when given (e.g. `snapshot::before_load=sleep(4000)`).
    pub async fn spawn_new_node_armed(
        &mut self,
        zone: &str,
        failpoints: Option<&str>,
    ) -> anyhow::Result<u64> {
        let index = self.cluster.define_node(zone)?;
        if let Some(points) = failpoints {
            self.cluster.nodes[index].env = vec![("FAILPOINTS".into(), points.into())];
        }
        let id = self.cluster.nodes[index].config.node_id;
        self.cluster.start_node(id, START_TIMEOUT).await?;
        Ok(id)
    }

    /// Asks node `via` to add node `id`.
    pub async fn add_node(&self, via: u64, id: u64) -> Result<pb::NodeStatus, tonic::Status> {
        let mut admin = self
            .admin(via)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let r = admin
            .add_node(pb::AddNodeRequest {
                id,
                addr: self.addr(id),
                zone: self.zone(id),
                capacity: 0,
            })
            .await?;
        r.into_inner()
            .node
            .ok_or_else(|| tonic::Status::internal("empty answer"))
    }

    /// Waits until every running node agrees on one leader that is itself
    /// running and says it leads; returns its id.
    pub async fn leader(&mut self) -> anyhow::Result<u64> {
        let running = self.running_ids();
        self.leader_among(&running).await
    }

    /// Like [`Harness::leader`], asking only the nodes `ids`.
    pub async fn leader_among(&self, ids: &[u64]) -> anyhow::Result<u64> {
        wait_for("one agreed leader", SETTLE_TIMEOUT, || {
            self.agreed_leader(ids)
        })
        .await
    }

    async fn agreed_leader(&self, running: &[u64]) -> anyhow::Result<Option<u64>> {
        let mut leaders = Vec::new();
        for id in running {
            let status = self.local_status(*id).await?;
            leaders.push(status.leader_id);
        }
        let Some(Some(first)) = leaders.first().copied() else {
            return Ok(None);
        };
        if !running.contains(&first) || leaders.iter().any(|l| *l != Some(first)) {
            return Ok(None);
        }
        // The one every node names must also name itself.
        let own = self.local_status(first).await?;
        Ok((own.leader_id == Some(first) && own.reporter_id == first).then_some(first))
    }

    /// Creates a bucket through node `via`.
    pub async fn create_bucket(
        &self,
        via: u64,
        name: &str,
        data: u32,
        parity: u32,
    ) -> Result<pb::Bucket, tonic::Status> {
        let mut admin = self
            .admin(via)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let r = admin
            .create_bucket(pb::CreateBucketRequest {
                name: name.into(),
                data,
                parity,
                retention: String::new(),
            })
            .await?;
        r.into_inner()
            .bucket
            .ok_or_else(|| tonic::Status::internal("empty answer"))
    }

    /// Bucket names node `id` has locally.
    pub async fn bucket_names(&self, id: u64) -> anyhow::Result<Vec<String>> {
        let r = self
            .admin(id)
            .await?
            .list_buckets(pb::ListBucketsRequest {})
            .await
            .map_err(|s| anyhow!("list buckets on node {id}: {s}"))?;
        Ok(r.into_inner().buckets.into_iter().map(|b| b.name).collect())
    }

    /// Waits until node `id` lists every bucket in `names`.
    pub async fn wait_for_buckets(&self, id: u64, names: &[String]) -> anyhow::Result<()> {
        wait_for(&format!("buckets on node {id}"), SETTLE_TIMEOUT, || async {
            let have = self.bucket_names(id).await?;
            Ok(names.iter().all(|n| have.contains(n)).then_some(()))
        })
        .await
    }

    /// The tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        logs_of(&self.cluster)
    }
}

fn logs_of(cluster: &LocalCluster) -> String {
    let mut out = String::from("node logs (last lines):\n");
    for node in &cluster.nodes {
        let text = std::fs::read_to_string(&node.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(15)..];
        out.push_str(&format!(
            "--- node {} ---\n{}\n",
            node.config.node_id,
            tail.join("\n")
        ));
    }
    out
}
