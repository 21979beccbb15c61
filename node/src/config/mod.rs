//! The node's TOML configuration: one file per node, every field documented.
//!
//! Unknown fields are refused (a typo must not silently fall back to a
//! default), and every check names the field it is about.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod tuning;

pub use tuning::*;

/// Configuration of one node, read from `--config FILE`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique id of this node in its cluster. Never reused: a node that is
    /// removed keeps its id in the cluster's records, and a replacement gets
    /// a new one.
    pub node_id: u64,
    /// Failure domain (a data centre). Shards and Raft voters are spread
    /// across zones.
    pub zone: String,
    /// Address of the one gRPC port (public, admin and internal services).
    pub listen: SocketAddr,
    /// Directory for this node's metadata (Raft log and state) and shards.
    pub data_dir: PathBuf,
    /// Address other nodes and clients use to reach this node, `host:port`.
    /// Defaults to `listen`.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Local address of the connections this node opens to other nodes, on
    /// a host with several addresses (the one peers' firewalls expect).
    /// Chosen by the OS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<std::net::IpAddr>,
    /// Address of the HTTP port serving `/health` (and `/metrics`). Off when
    /// absent.
    #[serde(default)]
    pub http_listen: Option<SocketAddr>,
    /// Address of the S3-compatible HTTP port (TLS with the node's
    /// certificate; plaintext only when `security.insecure`). Off when
    /// absent.
    #[serde(default)]
    pub s3_listen: Option<SocketAddr>,
    /// The domain under which the S3 port also takes virtual-hosted-style
    /// requests (`bucket.<domain>`); path-style only when absent.
    #[serde(default)]
    pub s3_root_domain: Option<String>,
    /// What the S3 port does on its own account.
    #[serde(default)]
    pub s3: S3Tuning,
    /// Bytes this node offers for shards. Defaults to the size of the file
    /// system holding `data_dir`.
    #[serde(default)]
    pub capacity: Option<u64>,
    /// Raft timing and log compaction.
    #[serde(default)]
    pub raft: RaftTuning,
    /// How objects this node coordinates are cut into stripes and segments.
    #[serde(default)]
    pub data: DataTuning,
    /// Liveness, scrub, repair and garbage collection.
    #[serde(default)]
    pub healing: HealingTuning,
    /// How this node stores the shards it holds.
    #[serde(default)]
    pub shards: ShardTuning,
    /// The metadata store.
    #[serde(default)]
    pub meta: MetaTuning,
    /// When the audit log's oldest entries leave the replicated state.
    #[serde(default)]
    pub audit: AuditTuning,
    /// How the leader deletes objects their retention made due.
    #[serde(default)]
    pub retention: RetentionTuning,
    /// TLS, authentication and encryption at rest.
    #[serde(default)]
    pub security: SecurityConfig,
    /// How much work the node takes on at once.
    #[serde(default)]
    pub admission: AdmissionTuning,
}

/// Transport security and encryption at rest. Secure unless `insecure` is
/// set explicitly: then the gRPC port is plaintext and unauthenticated, and
/// the node says so loudly in its log at start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Plaintext gRPC with no authentication. Only for benchmarks and
    /// throwaway clusters.
    pub insecure: bool,
    /// PEM file of the cluster CA: node and client certificates must be
    /// issued by it.
    pub ca: Option<PathBuf>,
    /// PEM file of this node's certificate (issued by `ca`).
    pub cert: Option<PathBuf>,
    /// PEM file of this node's private key.
    pub key: Option<PathBuf>,
    /// File of master keys (`KEY-ID HEX-KEY` per line, the last one
    /// current) that wrap each object's data key. Objects are stored
    /// encrypted when it is set; it must be set unless `insecure`.
    pub master_key_file: Option<PathBuf>,
    /// PEM file of the cluster's receipt signing certificate (issued by
    /// `ca` with `tresor-node ca issue --signer`); required unless
    /// `insecure`, the same file on every node.
    pub signer_cert: Option<PathBuf>,
    /// PEM file of its private key (mode 0600), held like the master key.
    pub signer_key: Option<PathBuf>,
}

/// A configuration that cannot be used; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed, a field is missing, unknown or of the wrong type.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the field and line.
        message: String,
    },
    /// A field has a value that is not allowed.
    #[error("invalid config: field `{field}`: {reason}")]
    Invalid {
        /// The field, as named in the file.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Zone names: 1–64 characters of `a-z A-Z 0-9 - _ .`.
pub fn validate_zone(zone: &str) -> Result<(), String> {
    if zone.is_empty() || zone.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if !zone
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{zone:?} may only contain a-z, A-Z, 0-9, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// `host:port` with a non-zero port.
pub fn validate_host_port(addr: &str) -> Result<(), String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} is not host:port"));
    };
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(format!("{addr:?} has no valid host"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{addr:?} has no valid port")),
        Ok(_) => Ok(()),
    }
}

impl NodeConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field's value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node_id", "must be at least 1"));
        }
        validate_zone(&self.zone).map_err(|r| invalid("zone", r))?;
        if self.listen.port() == 0 {
            return Err(invalid("listen", "needs a fixed port, not 0"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        if let Some(advertise) = &self.advertise {
            validate_host_port(advertise).map_err(|r| invalid("advertise", r))?;
        }
        if let Some(http) = self.http_listen {
            if http.port() == 0 {
                return Err(invalid("http_listen", "needs a fixed port, not 0"));
            }
            if http == self.listen {
                return Err(invalid("http_listen", "must differ from `listen`"));
            }
        }
        if let Some(s3) = self.s3_listen {
            if s3.port() == 0 {
                return Err(invalid("s3_listen", "needs a fixed port, not 0"));
            }
            if s3 == self.listen || Some(s3) == self.http_listen {
                return Err(invalid(
                    "s3_listen",
                    "must differ from `listen` and `http_listen`",
                ));
            }
        }
        // The bounds of a bucket's scheme (`meta::validate_scheme`).
        if !(1..=16).contains(&self.s3.bucket_data) {
            return Err(invalid("s3.bucket_data", "must be 1 to 16"));
        }
        if !(1..=8).contains(&self.s3.bucket_parity) {
            return Err(invalid("s3.bucket_parity", "must be 1 to 8"));
        }
        let region = &self.s3.region;
        let region_ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(invalid(
                "s3.region",
                "must be a-z, 0-9 and '-' (e.g. us-east-1)",
            ));
        }
        if let Some(root) = &self.s3_root_domain {
            let labels = root.trim_end_matches('.').split('.');
            let valid = |l: &str| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            if root.is_empty() || !labels.clone().all(valid) {
                return Err(invalid(
                    "s3_root_domain",
                    "must be a DNS name (e.g. s3.example.org)",
                ));
            }
        }
        if !(1..=100_000).contains(&self.s3.max_connections) {
            return Err(invalid("s3.max_connections", "must be 1 to 100000"));
        }
        if self.capacity == Some(0) {
            return Err(invalid("capacity", "must be more than 0 bytes"));
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 {
            return Err(invalid("raft.heartbeat_ms", "must be at least 1"));
        }
        if r.election_timeout_min_ms <= r.heartbeat_ms {
            return Err(invalid(
                "raft.election_timeout_min_ms",
                "must be greater than raft.heartbeat_ms",
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return Err(invalid(
                "raft.election_timeout_max_ms",
                "must be greater than raft.election_timeout_min_ms",
            ));
        }
        if r.snapshot_after_entries == 0 {
            return Err(invalid("raft.snapshot_after_entries", "must be at least 1"));
        }
        for (field, limit) in [
            ("admission.max_uploads", self.admission.max_uploads),
            ("admission.max_downloads", self.admission.max_downloads),
            (
                "admission.max_sessions_per_principal",
                self.admission.max_sessions_per_principal,
            ),
        ] {
            if !(1..=10_000).contains(&limit) {
                return Err(invalid(field, "must be 1 to 10000"));
            }
        }
        if !(1..=100_000).contains(&self.admission.max_refusals_per_sec) {
            return Err(invalid(
                "admission.max_refusals_per_sec",
                "must be 1 to 100000",
            ));
        }
        if !(1..=600_000).contains(&self.admission.retry_after_ms) {
            return Err(invalid("admission.retry_after_ms", "must be 1 to 600000"));
        }
        if self.meta.cache_bytes < 1024 * 1024 {
            return Err(invalid("meta.cache_bytes", "must be at least 1048576"));
        }
        if self.shards.packed_shard_bytes > 1024 * 1024 {
            return Err(invalid(
                "shards.packed_shard_bytes",
                "must be at most 1048576",
            ));
        }
        if !(10..=100_000).contains(&self.audit.seal_entries) {
            return Err(invalid("audit.seal_entries", "must be 10 to 100000"));
        }
        if self.retention.expiry_interval_secs == 0 {
            return Err(invalid(
                "retention.expiry_interval_secs",
                "must be at least 1",
            ));
        }
        if self.retention.expiry_objects_per_sec == 0 {
            return Err(invalid(
                "retention.expiry_objects_per_sec",
                "must be at least 1",
            ));
        }
        if self.audit.seal_after_secs == 0 {
            return Err(invalid("audit.seal_after_secs", "must be at least 1"));
        }
        if self.raft.add_wait_secs == 0 {
            return Err(invalid("raft.add_wait_secs", "must be at least 1"));
        }
        if self.audit.checkpoint_secs == 0 {
            return Err(invalid("audit.checkpoint_secs", "must be at least 1"));
        }
        let d = &self.data;
        if !(4096..=4 * 1024 * 1024).contains(&d.shard_bytes) {
            return Err(invalid("data.shard_bytes", "must be 4096 to 4194304"));
        }
        let h = &self.healing;
        for (field, value) in [
            ("healing.down_after_secs", h.down_after_secs),
            ("healing.scrub_interval_secs", h.scrub_interval_secs),
            ("healing.scrub_bytes_per_sec", h.scrub_bytes_per_sec),
            ("healing.repair_interval_secs", h.repair_interval_secs),
            ("healing.repair_bytes_per_sec", h.repair_bytes_per_sec),
            ("healing.gc_interval_secs", h.gc_interval_secs),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if h.upload_expiry_secs < 60 || h.session_expiry_secs < 60 {
            return Err(invalid(
                "healing.upload_expiry_secs and session_expiry_secs",
                "must be at least 60",
            ));
        }
        let sec = &self.security;
        if !sec.insecure {
            for (field, value) in [
                ("security.ca", &sec.ca),
                ("security.cert", &sec.cert),
                ("security.key", &sec.key),
                ("security.master_key_file", &sec.master_key_file),
                ("security.signer_cert", &sec.signer_cert),
                ("security.signer_key", &sec.signer_key),
            ] {
                if value.as_ref().is_none_or(|p| p.as_os_str().is_empty()) {
                    return Err(invalid(
                        field,
                        "is required unless security.insecure = true",
                    ));
                }
            }
        }
        if !(1 << 20..=1 << 30).contains(&d.part_bytes) {
            return Err(invalid("data.part_bytes", "must be 1048576 to 1073741824"));
        }
        if d.segment_bytes < d.shard_bytes as u64 {
            return Err(invalid(
                "data.segment_bytes",
                "must be at least data.shard_bytes",
            ));
        }
        Ok(())
    }

    /// The address other nodes use to reach this one.
    pub fn advertised_addr(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }
}

#[cfg(test)]
mod tests;
