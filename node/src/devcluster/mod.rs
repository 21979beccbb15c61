//! A local cluster of real node processes on 127.0.0.1, for `tresor-node dev`,
//! `tresor-ops demo` and the integration-test harness.
//!
//! Each node is a child process with its own config file, data dir and log
//! file under one directory. Children are started with `--watch-stdin`, so
//! they stop by themselves if this process dies without stopping them.
//!
//! Local clusters are secure by default ([`DevSecurity`]): a CA (made if
//! absent), a certificate per node and one for the bootstrap administrator
//! `admin` under `<dir>/certs`, and a master key file `<dir>/master.keys`.

mod data;
pub mod fill;
mod node;
mod pki;
mod wait;

pub use data::pattern;
pub use node::{free_port, LocalNode, NodeLauncher};
pub use pki::{ensure_ca, ADMIN_PRINCIPAL};
pub use wait::{
    wait_for_members, wait_for_members_with, wait_until_answers, wait_until_answers_with,
};

use pki::{ensure_master_keys, ensure_signer, shell_quote, DevPki};

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tresor_client::Credentials;
use tresor_proto::v1 as pb;

use crate::config::{
    AdmissionTuning, AuditTuning, DataTuning, HealingTuning, NodeConfig, RaftTuning,
    RetentionTuning, SecurityConfig, ShardTuning,
};
use crate::tls::{CertFiles, Subject, Validity};

/// The domain of dev nodes' virtual-hosted-style S3 addresses
/// (`https://<bucket>.s3.localhost:<port>/`; `*.localhost` is loopback
/// where systemd-resolved or a browser resolves names).
pub const S3_ROOT_DOMAIN: &str = "s3.localhost";

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
    /// Whether nodes serve the S3 API on a port of its own.
    pub s3: bool,
    /// Stripe and segment sizes.
    pub data: DataTuning,
    /// Liveness and healing timing.
    pub healing: HealingTuning,
    /// Audit log sealing.
    pub audit: AuditTuning,
    /// Retention expiry.
    pub retention: RetentionTuning,
    /// The nodes' shard stores.
    pub shards: ShardTuning,
    /// TLS, authentication and encryption at rest.
    pub security: DevSecurity,
    /// Uploads and downloads each node carries at once.
    pub admission: AdmissionTuning,
}

/// Security of a local cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DevSecurity {
    /// Plaintext, unauthenticated, unencrypted (`insecure = true`): for
    /// benchmarks and tests of the insecure mode only.
    Insecure,
    /// TLS with a CA of its own in `<cluster dir>/ca`, made if absent.
    #[default]
    OwnCa,
    /// TLS with the CA in this directory, made if absent (several clusters
    /// may share one CA, and so one set of client credentials).
    Ca(PathBuf),
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
            s3: true,
            data: DataTuning::default(),
            healing: HealingTuning::default(),
            audit: AuditTuning::default(),
            retention: RetentionTuning::default(),
            shards: ShardTuning::default(),
            security: DevSecurity::default(),
            admission: AdmissionTuning::default(),
        }
    }
}

/// The region a dev cluster's env file gives S3 tools (they need one to
/// sign; the cluster answers to any).
pub const DEV_REGION: &str = "us-east-1";

/// The admin credentials a dev cluster's user is given.
#[derive(Debug, Clone, Default)]
pub struct DevAccess {
    /// A bearer token (`tresor_<id>_<secret>`).
    pub token: Option<String>,
    /// An S3 access key id and its secret.
    pub s3_key: Option<(String, String)>,
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
    pki: Option<DevPki>,
    credentials: Credentials,
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
        // Absolute, so that configs, the env file and printed paths work
        // from any directory.
        let dir = std::path::absolute(dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let (pki, credentials) = match &spec.security {
            DevSecurity::Insecure => (None, Credentials::none()),
            DevSecurity::OwnCa => Self::make_pki(&dir, &dir.join("ca"))?,
            DevSecurity::Ca(ca_dir) => {
                let ca_dir = std::path::absolute(ca_dir)
                    .with_context(|| format!("cannot resolve {}", ca_dir.display()))?;
                Self::make_pki(&dir, &ca_dir)?
            }
        };
        let mut cluster = Self {
            dir,
            launcher,
            nodes: Vec::new(),
            spec: spec.clone(),
            next_id: 1,
            pki: pki.map(|p| *p),
            credentials,
        };
        for _ in 0..spec.nodes {
            let zone = zone_of(cluster.next_id, spec.zones);
            cluster.define_node(&zone)?;
        }
        Ok(cluster)
    }

    fn make_pki(dir: &Path, ca_dir: &Path) -> anyhow::Result<(Option<Box<DevPki>>, Credentials)> {
        let ca = ensure_ca(ca_dir)?;
        let certs_dir = dir.join("certs");
        let admin = crate::tls::issue(
            ca_dir,
            &certs_dir,
            &Subject::Client {
                name: ADMIN_PRINCIPAL.into(),
            },
            Validity::days(crate::tls::DEFAULT_VALIDITY_DAYS),
        )
        .context("cannot issue the admin client certificate")?;
        let master_keys = dir.join("master.keys");
        ensure_master_keys(&master_keys)?;
        let credentials =
            Credentials::from_files(Some(&ca), Some(&admin.cert), Some(&admin.key), None)?;
        let pki = DevPki {
            ca_dir: ca_dir.to_path_buf(),
            certs_dir,
            master_keys,
            admin,
        };
        Ok((Some(Box::new(pki)), credentials))
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What this cluster's tools present: the CA and the `admin` client
    /// certificate ([`Credentials::none`] for an insecure cluster).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Directory of the cluster's CA (`ca.pem`, `ca.key`); `None` when
    /// insecure.
    pub fn ca_dir(&self) -> Option<&Path> {
        self.pki.as_ref().map(|p| p.ca_dir.as_path())
    }

    /// The CA certificate file; `None` when insecure.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.ca_dir().map(|d| crate::tls::ca_files(d).cert)
    }

    /// The `admin` client certificate and key files; `None` when insecure.
    pub fn admin_cert_files(&self) -> Option<&CertFiles> {
        self.pki.as_ref().map(|p| &p.admin)
    }

    /// The master key file of every node; `None` when insecure.
    pub fn master_key_file(&self) -> Option<&Path> {
        self.pki.as_ref().map(|p| p.master_keys.as_path())
    }

    /// The shell lines a user runs to reach this cluster with the `tresor`
    /// and `tresor-node` command lines (endpoint, CA, and either the admin
    /// token or the admin client certificate) and with S3 tools (the AWS
    /// variables boto3, the AWS CLI and rclone's `tresor:` remote read).
    pub fn env_lines(&self, access: &DevAccess) -> String {
        let export = |k: &str, v: &str| format!("export {k}={}\n", shell_quote(v));
        let mut out = String::new();
        if let Some(first) = self.nodes.first() {
            out.push_str(&export("TRESOR_ENDPOINT", &first.endpoint()));
        }
        out.push_str(&self.s3_env_lines(access));
        let (Some(ca), Some(admin)) = (self.ca_cert(), self.admin_cert_files()) else {
            out.push_str("unset TRESOR_CA TRESOR_CERT TRESOR_KEY TRESOR_TOKEN\n");
            return out;
        };
        out.push_str(&export("TRESOR_CA", &ca.display().to_string()));
        match &access.token {
            Some(token) => {
                out.push_str(&export("TRESOR_TOKEN", token));
                out.push_str("unset TRESOR_CERT TRESOR_KEY\n");
            }
            None => {
                out.push_str(&export("TRESOR_CERT", &admin.cert.display().to_string()));
                out.push_str(&export("TRESOR_KEY", &admin.key.display().to_string()));
                out.push_str("unset TRESOR_TOKEN\n");
            }
        }
        out
    }

    /// The S3 part of [`LocalCluster::env_lines`]: nothing when the nodes
    /// serve no S3 port.
    fn s3_env_lines(&self, access: &DevAccess) -> String {
        let export = |k: &str, v: &str| format!("export {k}={}\n", shell_quote(v));
        let Some(endpoint) = self.nodes.first().and_then(|n| n.s3_endpoint()) else {
            return String::new();
        };
        let mut out = export("AWS_ENDPOINT_URL", &endpoint);
        out.push_str(&export("AWS_REGION", DEV_REGION));
        // Insecure nodes verify no signatures, but the tools still sign.
        let (id, secret) = access
            .s3_key
            .clone()
            .unwrap_or_else(|| ("anonymous".into(), "anonymous".into()));
        out.push_str(&export("AWS_ACCESS_KEY_ID", &id));
        out.push_str(&export("AWS_SECRET_ACCESS_KEY", &secret));
        // rclone: a remote named `tresor` configured from the environment.
        out.push_str(&export("RCLONE_CONFIG_TRESOR_TYPE", "s3"));
        out.push_str(&export("RCLONE_CONFIG_TRESOR_PROVIDER", "Other"));
        out.push_str(&export("RCLONE_CONFIG_TRESOR_ENV_AUTH", "true"));
        out.push_str(&export("RCLONE_CONFIG_TRESOR_ENDPOINT", &endpoint));
        match self.ca_cert() {
            Some(ca) => {
                out.push_str(&export("AWS_CA_BUNDLE", &ca.display().to_string()));
                out.push_str(&export("RCLONE_CA_CERT", &ca.display().to_string()));
            }
            None => out.push_str("unset AWS_CA_BUNDLE RCLONE_CA_CERT\n"),
        }
        out
    }

    /// Creates the credentials a dev cluster's user works with: a bearer
    /// token and an S3 access key of the bootstrap `admin` principal (with
    /// the admin client certificate); none for an insecure cluster.
    pub async fn create_admin_access(&self) -> anyhow::Result<DevAccess> {
        if self.admin_cert_files().is_none() {
            return Ok(DevAccess::default());
        }
        let first = self
            .nodes
            .first()
            .ok_or_else(|| anyhow!("no nodes"))?
            .endpoint();
        let mut admin = tresor_client::admin_with(&first, self.credentials()).await?;
        let token = admin
            .create_token(tresor_proto::v1::CreateTokenRequest {
                principal: ADMIN_PRINCIPAL.to_string(),
            })
            .await
            .map_err(|s| anyhow!("creating the admin token: {}", s.message()))?
            .into_inner();
        let s3_key = match self.spec.s3 {
            false => None,
            true => {
                let key = admin
                    .create_s3_key(tresor_proto::v1::CreateS3KeyRequest {
                        principal: ADMIN_PRINCIPAL.to_string(),
                    })
                    .await
                    .map_err(|s| anyhow!("creating the admin S3 key: {}", s.message()))?
                    .into_inner();
                Some((key.access_key_id, key.secret_access_key))
            }
        };
        Ok(DevAccess {
            token: Some(token.token),
            s3_key,
        })
    }

    /// Writes [`LocalCluster::env_lines`] to `<dir>/env` (mode 0600: it
    /// holds secrets), ready to `source`.
    pub fn write_env(&self, access: &DevAccess) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("env");
        // write_durably's temp file is created 0600 and keeps that mode.
        crate::server::write_durably(&path, self.env_lines(access).as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// Writes the config of a new node (next unused id) in `zone`; returns
    /// its index in `nodes`. Not started.
    pub fn define_node(&mut self, zone: &str) -> anyhow::Result<usize> {
        self.define_node_inner(zone, None)
    }

    /// Like [`LocalCluster::define_node`], but the node trusts and has its
    /// certificate from the CA in `ca_dir` (made if absent) instead of the
    /// cluster's: a node of another PKI, which the cluster must refuse.
    pub fn define_node_with_ca(&mut self, zone: &str, ca_dir: &Path) -> anyhow::Result<usize> {
        if self.pki.is_none() {
            bail!("an insecure cluster has no CA to differ from");
        }
        ensure_ca(ca_dir)?;
        self.define_node_inner(zone, Some(ca_dir))
    }

    fn node_security(&self, id: u64, ca_dir: Option<&Path>) -> anyhow::Result<SecurityConfig> {
        let Some(pki) = &self.pki else {
            return Ok(SecurityConfig {
                insecure: true,
                ..Default::default()
            });
        };
        let ca_dir = ca_dir.unwrap_or(&pki.ca_dir);
        let files = crate::tls::issue(
            ca_dir,
            &pki.certs_dir,
            &Subject::Node {
                id,
                // And the S3 port's names (`S3_ROOT_DOMAIN`).
                addrs: vec![
                    "127.0.0.1".into(),
                    S3_ROOT_DOMAIN.into(),
                    format!("*.{S3_ROOT_DOMAIN}"),
                ],
            },
            Validity::days(crate::tls::DEFAULT_VALIDITY_DAYS),
        )
        .with_context(|| format!("cannot issue the certificate of node {id}"))?;
        let signer = ensure_signer(ca_dir, &pki.certs_dir)?;
        Ok(SecurityConfig {
            insecure: false,
            ca: Some(crate::tls::ca_files(ca_dir).cert),
            cert: Some(files.cert),
            key: Some(files.key),
            master_key_file: Some(pki.master_keys.clone()),
            signer_cert: Some(signer.cert),
            signer_key: Some(signer.key),
        })
    }

    fn define_node_inner(&mut self, zone: &str, ca_dir: Option<&Path>) -> anyhow::Result<usize> {
        let id = self.next_id;
        self.next_id += 1;
        let port = free_port()?;
        let http_listen = if self.spec.http {
            Some(format!("127.0.0.1:{}", free_port()?).parse()?)
        } else {
            None
        };
        let s3_listen = if self.spec.s3 {
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
            source_ip: None,
            http_listen,
            s3_listen,
            s3_root_domain: self.spec.s3.then(|| S3_ROOT_DOMAIN.to_string()),
            s3: Default::default(),
            capacity: None,
            raft: self.spec.raft.clone(),
            data: self.spec.data.clone(),
            healing: self.spec.healing.clone(),
            meta: Default::default(),
            audit: self.spec.audit.clone(),
            retention: self.spec.retention.clone(),
            shards: self.spec.shards.clone(),
            security: self.node_security(id, ca_dir)?,
            admission: self.spec.admission.clone(),
        };
        config.validate()?;
        let config_path = self.dir.join(format!("node-{id}.toml"));
        std::fs::write(&config_path, toml::to_string(&config)?)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        self.nodes.push(LocalNode {
            log_path: self.dir.join(format!("node-{id}.log")),
            config,
            config_path,
            env: Vec::new(),
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
        let node = self.node(id).ok_or_else(|| anyhow!("no node {id}"))?;
        wait_until_answers_with(&node.endpoint(), &self.credentials_for(node)?, timeout)
            .await
            .with_context(|| format!("node {id} did not start; see {}", node.log_path.display()))
    }

    /// What to present to `node`: the cluster's credentials, or for a node
    /// of another CA that CA and the node's own certificate.
    fn credentials_for(&self, node: &LocalNode) -> anyhow::Result<Credentials> {
        let sec = &node.config.security;
        if sec.insecure || sec.ca == self.ca_cert() {
            return Ok(self.credentials.clone());
        }
        Ok(Credentials::from_files(
            sec.ca.as_deref(),
            sec.cert.as_deref(),
            sec.key.as_deref(),
            None,
        )?)
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
            wait_until_answers_with(&node.endpoint(), &self.credentials_for(node)?, timeout)
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
        let mut admin = tresor_client::admin_with(&first, &self.credentials).await?;
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
        wait_for_members_with(&first, &ids, &self.credentials, timeout).await?;
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
