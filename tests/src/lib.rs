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
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tresor_client::{Credentials, Transport};
use tresor_node::config::RaftTuning;
use tresor_node::dev::{LocalCluster, LocalClusterSpec, NodeLauncher};
use tresor_node::tls::{CertFiles, Subject, Validity};
use tresor_proto::v1 as pb;
use tresor_proto::v1::objects_client::ObjectsClient;

pub use tresor_node::dev::{pattern, zone_of, DevSecurity, ADMIN_PRINCIPAL};

pub mod calls;
pub mod history;
pub mod net;

/// The CA of this test process and the `admin` credentials issued by it.
pub struct ProcessPki {
    /// Directory of the CA (`ca.pem`, `ca.key`) and of issued files.
    pub dir: PathBuf,
    /// The CA certificate.
    pub ca_cert: PathBuf,
    /// The `admin` client certificate and key.
    pub admin: CertFiles,
    /// CA plus `admin` certificate.
    pub credentials: Credentials,
}

/// The CA of this test process, made on first use in a temporary directory
/// that lives as long as the process; also makes its `admin` credentials
/// the process-wide default of `tresor_client`.
pub fn process_pki() -> anyhow::Result<&'static ProcessPki> {
    static PKI: OnceLock<Result<ProcessPki, String>> = OnceLock::new();
    PKI.get_or_init(|| make_process_pki().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("cannot set up the test CA: {e}"))
}

fn make_process_pki() -> anyhow::Result<ProcessPki> {
    let dir = tempfile::Builder::new()
        .prefix("tresor-test-ca-")
        .tempdir()?
        .keep();
    let ca_cert = tresor_node::dev::ensure_ca(&dir)?;
    let admin = tresor_node::tls::issue(
        &dir,
        &dir.join("admin"),
        &Subject::Client {
            name: ADMIN_PRINCIPAL.into(),
        },
        Validity::days(30),
    )?;
    let credentials =
        Credentials::from_files(Some(&ca_cert), Some(&admin.cert), Some(&admin.key), None)?;
    tresor_client::set_default_credentials(credentials.clone());
    Ok(ProcessPki {
        dir,
        ca_cert,
        admin,
        credentials,
    })
}

/// Directory of this test process's CA.
pub fn process_ca_dir() -> anyhow::Result<PathBuf> {
    Ok(process_pki()?.dir.clone())
}

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
        data: Default::default(),
        healing: Default::default(),
        security,
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
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    /// Lays out and starts `spec.nodes` processes (not yet a cluster).
    pub async fn new(binary: &str, spec: LocalClusterSpec) -> anyhow::Result<Self> {
        Self::start(binary, spec, false).await
    }

    /// Like [`Harness::new`], with a proxy in front of every node so the
    /// test can cut, delay and black-hole links between nodes
    /// ([`Harness::net`]). Nodes added later are not proxied.
    pub async fn with_network(binary: &str, spec: LocalClusterSpec) -> anyhow::Result<Self> {
        Self::start(binary, spec, true).await
    }

    async fn start(binary: &str, spec: LocalClusterSpec, proxied: bool) -> anyhow::Result<Self> {
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
        if let Err(e) = cluster.start_all(START_TIMEOUT).await {
            return Err(e.context(logs_of(&cluster)));
        }
        let credentials = cluster.credentials().clone();
        Ok(Self {
            cluster,
            credentials,
            network,
            _dir: dir,
        })
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

    /// Credentials of client principal `name`: a certificate issued now by
    /// this cluster's CA, valid for a day.
    pub fn client_credentials(&self, name: &str) -> anyhow::Result<Credentials> {
        self.client_credentials_valid(name, Validity::days(1))
    }

    /// Like [`Harness::client_credentials`], valid for `validity` (which may
    /// lie in the past, for an expired certificate).
    pub fn client_credentials_valid(
        &self,
        name: &str,
        validity: Validity,
    ) -> anyhow::Result<Credentials> {
        let ca_dir = self.ca_dir().context("an insecure cluster has no CA")?;
        let issued =
            tresor_node::tls::issue_pem(&ca_dir, &Subject::Client { name: name.into() }, validity)?;
        let ca = std::fs::read(tresor_node::tls::ca_files(&ca_dir).cert)?;
        Ok(Credentials::new(
            Some(ca),
            Some((issued.cert_pem.into_bytes(), issued.key_pem.into_bytes())),
            None,
        )?)
    }

    /// Certificate and key files of client principal `name`, issued now by
    /// this cluster's CA into a directory of their own (for the CLIs'
    /// `TRESOR_CERT` and `TRESOR_KEY`).
    pub fn client_cert_files(&self, name: &str) -> anyhow::Result<CertFiles> {
        let ca_dir = self.ca_dir().context("an insecure cluster has no CA")?;
        let out = tempfile::Builder::new()
            .prefix("client-")
            .tempdir_in(self.cluster.dir())?
            .keep();
        Ok(tresor_node::tls::issue(
            &ca_dir,
            &out,
            &Subject::Client { name: name.into() },
            Validity::days(1),
        )?)
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
        let index = self.cluster.define_node(zone)?;
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

    /// Runs a command line program with `args` and returns (success,
    /// stdout, stderr). It gets the process CA and `admin` certificate in
    /// `TRESOR_CA`, `TRESOR_CERT` and `TRESOR_KEY`.
    pub fn cli(
        binary: &str,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<(bool, String, String)> {
        let (ok, out, err) = Self::cli_bytes(binary, args, timeout)?;
        Ok((ok, String::from_utf8_lossy(&out).into_owned(), err))
    }

    /// Like [`Harness::cli`], with stdout as raw bytes.
    pub fn cli_bytes(
        binary: &str,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<(bool, Vec<u8>, String)> {
        Self::cli_env(binary, args, &[], timeout)
    }

    /// Like [`Harness::cli_bytes`], with `env` set on top of the
    /// credentials variables; a pair with an empty value removes that
    /// variable (for example `("TRESOR_CERT", "")` to use only a token).
    pub fn cli_env(
        binary: &str,
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> anyhow::Result<(bool, Vec<u8>, String)> {
        let pki = process_pki()?;
        let mut command = std::process::Command::new(binary);
        command
            .env("TRESOR_CA", &pki.ca_cert)
            .env("TRESOR_CERT", &pki.admin.cert)
            .env("TRESOR_KEY", &pki.admin.key)
            .env_remove("TRESOR_TOKEN");
        for (key, value) in env {
            if value.is_empty() {
                command.env_remove(key);
            } else {
                command.env(key, value);
            }
        }
        let mut child = command
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot start the CLI")?;
        // Read both pipes on threads so a chatty child cannot block on a
        // full pipe while we wait for it.
        let mut stdout = child.stdout.take().context("no stdout")?;
        let mut stderr = child.stderr.take().context("no stderr")?;
        let out = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
            buf
        });
        let err = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
            buf
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{binary} {args:?} did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = out.join().unwrap_or_default();
        let err = err.join().unwrap_or_default();
        Ok((
            status.success(),
            out,
            String::from_utf8_lossy(&err).into_owned(),
        ))
    }
}

/// Raw object calls against one node, straight on the generated gRPC
/// client, so tests see exactly what the server answers.
impl Harness {
    /// An Objects client to node `id`, with [`Harness::credentials`].
    pub async fn objects(&self, id: u64) -> anyhow::Result<ObjectsClient<Transport>> {
        self.objects_with(id, &self.credentials).await
    }

    /// An Objects client to node `id` presenting `credentials`.
    pub async fn objects_with(
        &self,
        id: u64,
        credentials: &Credentials,
    ) -> anyhow::Result<ObjectsClient<Transport>> {
        let channel = tresor_client::connect_with(&self.endpoint(id), credentials).await?;
        let channel = tresor_client::channel::transport(channel, credentials);
        Ok(ObjectsClient::new(channel)
            .max_decoding_message_size(tresor_client::channel::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(tresor_client::channel::MAX_MESSAGE_BYTES))
    }

    /// Uploads `data` through node `via` in 1 MiB messages.
    pub async fn put(
        &self,
        via: u64,
        bucket: &str,
        key: &str,
        data: &[u8],
    ) -> Result<pb::PutResponse, tonic::Status> {
        self.put_with(via, header(bucket, key), data).await
    }

    /// Uploads `data` with a full header.
    pub async fn put_with(
        &self,
        via: u64,
        header: pb::PutHeader,
        data: &[u8],
    ) -> Result<pb::PutResponse, tonic::Status> {
        let mut client = self
            .objects(via)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut messages = vec![pb::PutRequest {
            msg: Some(pb::put_request::Msg::Header(header)),
        }];
        messages.extend(data.chunks(1024 * 1024).map(|c| pb::PutRequest {
            msg: Some(pb::put_request::Msg::Data(c.to_vec())),
        }));
        Ok(client
            .put(futures::stream::iter(messages))
            .await?
            .into_inner())
    }

    /// Reads `[offset, offset + length)` (or all) through node `via`.
    pub async fn get(
        &self,
        via: u64,
        bucket: &str,
        key: &str,
        offset: Option<u64>,
        length: Option<u64>,
    ) -> Result<(pb::ObjectInfo, Vec<u8>), tonic::Status> {
        let mut client = self
            .objects(via)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut stream = client
            .get(pb::GetRequest {
                bucket: bucket.into(),
                key: key.into(),
                offset,
                length,
            })
            .await?
            .into_inner();
        let info = match stream.message().await?.and_then(|m| m.msg) {
            Some(pb::get_response::Msg::Info(info)) => info,
            other => {
                return Err(tonic::Status::internal(format!(
                    "first message was {other:?}"
                )))
            }
        };
        let mut data = Vec::new();
        while let Some(m) = stream.message().await? {
            match m.msg {
                Some(pb::get_response::Msg::Data(d)) => data.extend_from_slice(&d),
                other => return Err(tonic::Status::internal(format!("unexpected {other:?}"))),
            }
        }
        Ok((info, data))
    }

    /// Stat through node `via`.
    pub async fn stat(
        &self,
        via: u64,
        bucket: &str,
        key: &str,
    ) -> Result<pb::ObjectInfo, tonic::Status> {
        let mut client = self
            .objects(via)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(client
            .stat(pb::StatRequest {
                bucket: bucket.into(),
                key: key.into(),
            })
            .await?
            .into_inner())
    }

    /// Every shard file under node `id`'s data dir.
    pub fn shard_files(&self, id: u64) -> Vec<PathBuf> {
        files_under(&self.data_dir(id).join("shards"))
    }

    /// The cluster's status as node `via` reports it.
    pub async fn status(&self, via: u64) -> anyhow::Result<pb::StatusResponse> {
        Ok(self
            .admin(via)
            .await?
            .status(pb::StatusRequest { local: false })
            .await?
            .into_inner())
    }

    /// Waits until every segment has `data + parity` healthy shards.
    pub async fn wait_fully_redundant(&self, via: u64) -> anyhow::Result<()> {
        wait_for(
            "every segment back to data + parity shards",
            HEAL_TIMEOUT,
            || async {
                let s = self.status(via).await?;
                Ok((s.degraded_segments == 0).then_some(()))
            },
        )
        .await
    }

    /// Starts a pass of worker `name` on node `id` now.
    pub async fn run_worker(&self, id: u64, name: &str) -> anyhow::Result<()> {
        self.admin(id)
            .await?
            .run_worker(pb::RunWorkerRequest { name: name.into() })
            .await?;
        Ok(())
    }

    /// Worker `name`'s status on node `id`.
    pub async fn worker(&self, id: u64, name: &str) -> anyhow::Result<pb::WorkerInfo> {
        let r = self
            .admin(id)
            .await?
            .workers(pb::WorkersRequest {})
            .await?
            .into_inner();
        r.workers
            .into_iter()
            .find(|w| w.name == name)
            .ok_or_else(|| anyhow::anyhow!("node {id} has no {name} worker"))
    }

    /// Runs one scrub pass on every node in `ids` and returns the files it
    /// checked and the errors it found, summed over them.
    pub async fn scrub_everywhere(&self, ids: &[u64]) -> anyhow::Result<(u64, u64)> {
        let mut before = Vec::new();
        for id in ids {
            let w = self.worker(*id, "scrub").await?;
            before.push((counter(&w, "passes"), counter(&w, "errors_found")));
            self.run_worker(*id, "scrub").await?;
        }
        let (mut checked, mut errors) = (0, 0);
        for (id, (passes, errors_before)) in ids.iter().zip(before) {
            let w = wait_for("scrub pass", HEAL_TIMEOUT, || async {
                let w = self.worker(*id, "scrub").await?;
                Ok((counter(&w, "passes") > passes && w.state != "running").then_some(w))
            })
            .await?;
            checked += counter(&w, "files_checked");
            errors += counter(&w, "errors_found") - errors_before;
        }
        Ok((checked, errors))
    }
}

/// How long healing waits (repair, scrub passes) may take in tests.
pub const HEAL_TIMEOUT: Duration = Duration::from_secs(60);

/// A worker's counter (0 when it has none yet).
pub fn counter(w: &pb::WorkerInfo, name: &str) -> u64 {
    w.counters.get(name).copied().unwrap_or(0)
}

/// Every file below `root`, sorted.
pub fn files_under(root: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A formed six-node, three-zone cluster of `binary` with bucket `footage`
/// (4+2) and shards of `shard_bytes`, so small test objects span several
/// stripes.
pub async fn data_cluster(binary: &str, shard_bytes: u32) -> anyhow::Result<Harness> {
    let mut s = spec(6, 3);
    s.data = tresor_node::config::DataTuning {
        shard_bytes,
        segment_bytes: 1 << 30,
    };
    let mut h = Harness::new(binary, s).await?;
    h.form().await?;
    let leader = h.leader().await?;
    h.create_bucket(leader, "footage", 4, 2).await?;
    Ok(h)
}

/// A Put header with only bucket and key.
pub fn header(bucket: &str, key: &str) -> pb::PutHeader {
    pb::PutHeader {
        bucket: bucket.into(),
        key: key.into(),
        ..Default::default()
    }
}

/// Flips every bit of the byte at `offset` in a file, in place.
pub fn flip_byte(path: &std::path::Path, offset: u64) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset)?;
    b[0] ^= 0xff;
    f.write_all_at(&b, offset)?;
    f.sync_all()?;
    Ok(())
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
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
