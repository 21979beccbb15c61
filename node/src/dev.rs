//! A local cluster of real node processes on 127.0.0.1, for `tresor-node dev`,
//! `tresor-ops demo` and the integration-test harness.
//!
//! Each node is a child process with its own config file, data dir and log
//! file under one directory. Children are started with `--watch-stdin`, so
//! they stop by themselves if this process dies without stopping them.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tresor_proto::v1 as pb;

use crate::config::{DataTuning, HealingTuning, NodeConfig, RaftTuning};
use crate::raft::voters::MAX_VOTERS;

/// How to start a node process: a program and the arguments that make it
/// serve (`--config FILE` is appended).
#[derive(Debug, Clone)]
pub struct NodeLauncher {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before `--config FILE`.
    pub args: Vec<OsString>,
}

impl NodeLauncher {
    /// This very executable, run as `<exe> serve`.
    pub fn current_exe_serve() -> anyhow::Result<Self> {
        Ok(Self {
            program: std::env::current_exe().context("cannot find own executable")?,
            args: vec!["serve".into()],
        })
    }
}

/// Deterministic, incompressible bytes (xorshift64) standing in for video in
/// demos, benchmarks and tests; the same `seed` gives the same bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// One node process of a local cluster.
pub struct LocalNode {
    /// Its config, as written to `config_path`.
    pub config: NodeConfig,
    /// Where the config file is.
    pub config_path: PathBuf,
    /// Where its stdout and stderr go.
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl LocalNode {
    /// The node's gRPC endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.config.listen)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the process (again, on the same data dir, if it ran before).
    pub fn spawn(&mut self, launcher: &NodeLauncher) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("node {} is already running", self.config.node_id);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("cannot open {}", self.log_path.display()))?;
        let child = Command::new(&launcher.program)
            .args(&launcher.args)
            .arg("--config")
            .arg(&self.config_path)
            .arg("--watch-stdin")
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", launcher.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(
            node_id = self.config.node_id,
            "node did not stop in time; killing it"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Shape of a local cluster.
#[derive(Debug, Clone)]
pub struct LocalClusterSpec {
    /// Number of nodes.
    pub nodes: usize,
    /// Number of zones; node `i` (from 1) is in zone `dc{(i-1) % zones + 1}`.
    pub zones: usize,
    /// Raft timing for every node.
    pub raft: RaftTuning,
    /// Whether nodes serve `/health` on an HTTP port.
    pub http: bool,
    /// Stripe and segment sizes.
    pub data: DataTuning,
    /// Liveness and healing timing.
    pub healing: HealingTuning,
}

impl Default for LocalClusterSpec {
    fn default() -> Self {
        Self {
            nodes: 6,
            zones: 3,
            raft: RaftTuning {
                heartbeat_ms: 100,
                election_timeout_min_ms: 500,
                election_timeout_max_ms: 1000,
                ..RaftTuning::default()
            },
            http: true,
            data: DataTuning::default(),
            healing: HealingTuning::default(),
        }
    }
}

/// Zone of node `id` in a spec with `zones` zones.
pub fn zone_of(id: u64, zones: usize) -> String {
    format!("dc{}", (id as usize - 1) % zones.max(1) + 1)
}

/// A set of node processes under one directory.
pub struct LocalCluster {
    dir: PathBuf,
    launcher: NodeLauncher,
    /// The nodes, node 1 first.
    pub nodes: Vec<LocalNode>,
    spec: LocalClusterSpec,
    next_id: u64,
}

impl LocalCluster {
    /// Lays out configs for `spec.nodes` nodes under `dir` (created if
    /// missing) with free ports. Nothing is started yet.
    pub fn create(
        dir: &Path,
        spec: LocalClusterSpec,
        launcher: NodeLauncher,
    ) -> anyhow::Result<Self> {
        if spec.nodes == 0 {
            bail!("a cluster needs at least one node");
        }
        if spec.zones == 0 {
            bail!("a cluster needs at least one zone");
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut cluster = Self {
            dir: dir.to_path_buf(),
            launcher,
            nodes: Vec::new(),
            spec: spec.clone(),
            next_id: 1,
        };
        for _ in 0..spec.nodes {
            let zone = zone_of(cluster.next_id, spec.zones);
            cluster.define_node(&zone)?;
        }
        Ok(cluster)
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the config of a new node (next unused id) in `zone`; returns
    /// its index in `nodes`. Not started.
    pub fn define_node(&mut self, zone: &str) -> anyhow::Result<usize> {
        let id = self.next_id;
        self.next_id += 1;
        let port = free_port()?;
        let http_listen = if self.spec.http {
            Some(format!("127.0.0.1:{}", free_port()?).parse()?)
        } else {
            None
        };
        let config = NodeConfig {
            node_id: id,
            zone: zone.to_string(),
            listen: format!("127.0.0.1:{port}").parse()?,
            data_dir: self.dir.join(format!("node-{id}")),
            advertise: None,
            http_listen,
            capacity: None,
            raft: self.spec.raft.clone(),
            data: self.spec.data.clone(),
            healing: self.spec.healing.clone(),
            security: crate::config::SecurityConfig {
                insecure: true,
                ..Default::default()
            },
        };
        config.validate()?;
        let config_path = self.dir.join(format!("node-{id}.toml"));
        std::fs::write(&config_path, toml::to_string(&config)?)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        self.nodes.push(LocalNode {
            log_path: self.dir.join(format!("node-{id}.log")),
            config,
            config_path,
            child: None,
        });
        Ok(self.nodes.len() - 1)
    }

    /// The node with `id`.
    pub fn node(&self, id: u64) -> Option<&LocalNode> {
        self.nodes.iter().find(|n| n.config.node_id == id)
    }

    /// The node with `id`, mutable.
    pub fn node_mut(&mut self, id: u64) -> Option<&mut LocalNode> {
        self.nodes.iter_mut().find(|n| n.config.node_id == id)
    }

    /// Starts node `id`'s process and waits until it answers.
    pub async fn start_node(&mut self, id: u64, timeout: Duration) -> anyhow::Result<()> {
        let launcher = self.launcher.clone();
        let node = self.node_mut(id).ok_or_else(|| anyhow!("no node {id}"))?;
        node.spawn(&launcher)?;
        let endpoint = node.endpoint();
        wait_until_answers(&endpoint, timeout)
            .await
            .with_context(|| format!("node {id} did not start; see {}", node.log_path.display()))
    }

    /// Starts every node that is not running.
    pub async fn start_all(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let launcher = self.launcher.clone();
        for node in &mut self.nodes {
            if !node.is_running() {
                node.spawn(&launcher)?;
            }
        }
        for node in &self.nodes {
            wait_until_answers(&node.endpoint(), timeout)
                .await
                .with_context(|| {
                    format!(
                        "node {} did not start; see {}",
                        node.config.node_id,
                        node.log_path.display()
                    )
                })?;
        }
        Ok(())
    }

    /// Initialises the cluster on the first node and adds every other node
    /// through it, then waits until all are members with a leader.
    pub async fn form(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let first = self
            .nodes
            .first()
            .ok_or_else(|| anyhow!("no nodes"))?
            .endpoint();
        let mut admin = tresor_client::admin(&first).await?;
        admin
            .init(pb::InitRequest {})
            .await
            .map_err(|s| anyhow!("init: {}", s.message()))?;
        for node in self.nodes.iter().skip(1) {
            admin
                .add_node(pb::AddNodeRequest {
                    id: node.config.node_id,
                    addr: node.config.advertised_addr(),
                    zone: node.config.zone.clone(),
                    capacity: 0,
                })
                .await
                .map_err(|s| anyhow!("adding node {}: {}", node.config.node_id, s.message()))?;
        }
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.config.node_id).collect();
        wait_for_members(&first, &ids, timeout).await?;
        Ok(())
    }

    /// Writes `endpoints` (one URL per line, node 1 first) into the dir.
    pub fn write_endpoints(&self) -> anyhow::Result<PathBuf> {
        let text: String = self.nodes.iter().map(|n| n.endpoint() + "\n").collect();
        let path = self.dir.join("endpoints");
        crate::server::write_durably(&path, text.as_bytes())?;
        Ok(path)
    }

    /// Stops every node with SIGTERM (SIGKILL after `grace`).
    pub async fn stop_all(&mut self, grace: Duration) {
        let stops = self.nodes.iter_mut().map(|n| n.stop(grace));
        futures::future::join_all(stops).await;
    }
}

/// Polls a node's `NodeInfo` until it answers or `timeout` passes.
pub async fn wait_until_answers(endpoint: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last_error = match tresor_client::admin(endpoint).await {
            Ok(mut admin) => match admin.node_info(pb::NodeInfoRequest {}).await {
                Ok(_) => return Ok(()),
                Err(s) => s.message().to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!("{endpoint} did not answer within {timeout:?}: {last_error}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `status` on `endpoint` until there is a leader, every id in `ids`
/// is a member, and `min(5, n)` of them vote.
pub async fn wait_for_members(
    endpoint: &str,
    ids: &[u64],
    timeout: Duration,
) -> anyhow::Result<pb::StatusResponse> {
    let deadline = Instant::now() + timeout;
    let want_voters = ids.len().min(MAX_VOTERS);
    loop {
        let mut last = String::from("no answer");
        if let Ok(mut admin) = tresor_client::admin(endpoint).await {
            match admin.status(pb::StatusRequest { local: false }).await {
                Ok(r) => {
                    let status = r.into_inner();
                    let members = ids.iter().all(|id| {
                        status
                            .nodes
                            .iter()
                            .any(|n| n.id == *id && (n.role == "voter" || n.role == "learner"))
                    });
                    let voters = status.nodes.iter().filter(|n| n.role == "voter").count();
                    if status.leader_id.is_some() && members && voters == want_voters {
                        return Ok(status);
                    }
                    last = format!(
                        "leader {:?}, {} nodes, {voters} voters",
                        status.leader_id,
                        status.nodes.len()
                    );
                }
                Err(s) => last = s.message().to_string(),
            }
        }
        if Instant::now() >= deadline {
            bail!("cluster did not settle within {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
