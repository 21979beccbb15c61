//! The node's TOML configuration: one file per node, every field documented.
//!
//! Unknown fields are refused (a typo must not silently fall back to a
//! default), and every check names the field it is about.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

/// Background healing: when nodes count as down, how often shards are
/// checked and repaired, and how fast.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealingTuning {
    /// A node not heard from for this many seconds is `down`: placement
    /// stops choosing it.
    pub down_after_secs: u64,
    /// A node down for this many seconds has its shards rebuilt elsewhere.
    pub rebuild_after_secs: u64,
    /// Seconds between full scrub passes over this node's shard files
    /// (default 7 days; `tresor-node scrub --now` starts one at once).
    pub scrub_interval_secs: u64,
    /// Scrub reads at most this many bytes per second.
    pub scrub_bytes_per_sec: u64,
    /// Seconds between repair passes (run by the leader).
    pub repair_interval_secs: u64,
    /// Repair rebuilds at most this many bytes per second.
    pub repair_bytes_per_sec: u64,
    /// A shard file that no manifest and no upload in progress references
    /// is deleted once it is this many seconds old.
    pub orphan_grace_secs: u64,
    /// Seconds between orphan collection passes.
    pub gc_interval_secs: u64,
    /// An upload that has shown no progress for this many seconds (its
    /// coordinator died, or its client went silent) is aborted by the
    /// leader, and its shard files become orphans. At least 60; uploads in
    /// progress show progress every 20 s.
    pub upload_expiry_secs: u64,
    /// A resumable upload session with no progress for this many seconds
    /// is aborted by the leader and its shard files become orphans. At
    /// least 60; 24 hours by default.
    pub session_expiry_secs: u64,
}

impl Default for HealingTuning {
    fn default() -> Self {
        Self {
            down_after_secs: 30,
            rebuild_after_secs: 600,
            scrub_interval_secs: 7 * 24 * 3600,
            scrub_bytes_per_sec: 100_000_000,
            repair_interval_secs: 30,
            repair_bytes_per_sec: 200_000_000,
            orphan_grace_secs: 3600,
            gc_interval_secs: 600,
            upload_expiry_secs: 3600,
            session_expiry_secs: 24 * 3600,
        }
    }
}

/// Stripe and segment sizes for uploads this node coordinates (each object
/// records its own, so changing them affects only new uploads).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataTuning {
    /// Bytes of one shard of a full stripe (a stripe holds `data` of them).
    /// 4 KiB to 4 MiB.
    pub shard_bytes: u32,
    /// Object bytes per segment, about: a segment is one shard file per node
    /// of its placement, so fewer, larger segments mean fewer files and
    /// fsyncs. At least one stripe.
    pub segment_bytes: u64,
    /// Object bytes per part of a resumable upload, about (rounded down to
    /// whole stripes): what a cut connection may have to send again. 1 MiB
    /// to 1 GiB; 64 MiB by default.
    pub part_bytes: u64,
}

impl Default for DataTuning {
    fn default() -> Self {
        Self {
            shard_bytes: 1024 * 1024,
            segment_bytes: 1024 * 1024 * 1024,
            part_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Admission control: how many uploads and downloads a node carries at
/// once. A call over a limit is refused at once with `RESOURCE_EXHAUSTED`
/// and a retry hint (`grpc-retry-pushback-ms`), never queued: a node's
/// memory for object traffic is these limits times what one call holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionTuning {
    /// Put calls in flight on this node (1 to 10,000; 32 by default).
    pub max_uploads: u32,
    /// Get calls in flight on this node (1 to 10,000; 64 by default).
    pub max_downloads: u32,
    /// How long a refused client is told to wait before trying again, ms
    /// (1 to 600,000; 1,000 by default).
    pub retry_after_ms: u64,
    /// Resumable upload sessions one principal may have open (1 to 10,000;
    /// 100 by default).
    pub max_sessions_per_principal: u32,
    /// Refused calls (no or bad credentials, no role) one caller — a
    /// principal, or an address before authentication — may have per
    /// second; past it its calls are refused at once (1 to 100,000; 100
    /// by default). Refusals are on record merged, one audit entry per
    /// caller, action and outcome per second, with their count.
    pub max_refusals_per_sec: u32,
}

impl Default for AdmissionTuning {
    fn default() -> Self {
        Self {
            max_uploads: 32,
            max_downloads: 64,
            retry_after_ms: 1000,
            max_sessions_per_principal: 100,
            max_refusals_per_sec: 100,
        }
    }
}

/// The metadata store (sled): its page cache is the part of a node's
/// memory that the amount of metadata would otherwise decide.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetaTuning {
    /// Bytes of sled's page cache: the metadata kept in memory, counted as
    /// stored (zstd-compressed, about a quarter of its size in memory). At
    /// least 1 MiB; 8 MiB by default.
    pub cache_bytes: u64,
}

impl Default for MetaTuning {
    fn default() -> Self {
        Self {
            cache_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Shard files of at most this many bytes are packed unless configured
/// otherwise (with 4+2, objects up to about 255 KiB).
pub const DEFAULT_PACKED_SHARD_BYTES: u64 = 64 * 1024;

/// The local shard store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShardTuning {
    /// Shard files of at most this many bytes are appended to shared pack
    /// files instead of each taking a file of its own: 64 KiB by default
    /// (with 4+2, objects up to about 255 KiB); 0 stores every shard as
    /// its own file; at most 1 MiB.
    pub packed_shard_bytes: u64,
}

impl Default for ShardTuning {
    fn default() -> Self {
        Self {
            packed_shard_bytes: DEFAULT_PACKED_SHARD_BYTES,
        }
    }
}

/// Sealing of the audit log: the leader moves the oldest entries of the
/// log's tail into a segment object of the `tresor.audit` bucket once the
/// tail holds `seal_entries` of them, or once its oldest entry is
/// `seal_after_secs` old, whichever comes first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditTuning {
    /// Entries per sealed segment: 10,000 by default (about 3 MB), 10 to
    /// 100,000.
    pub seal_entries: u64,
    /// Seconds an entry may stay unsealed: an hour by default, at least 1.
    pub seal_after_secs: u64,
    /// Seconds between automatic signed checkpoints of the sealed history
    /// (made only when segments were sealed since the last): an hour by
    /// default, at least 1.
    pub checkpoint_secs: u64,
}

impl Default for AuditTuning {
    fn default() -> Self {
        Self {
            seal_entries: 10_000,
            seal_after_secs: 3600,
            checkpoint_secs: 3600,
        }
    }
}

/// Retention expiry, run by the leader: objects whose `delete_at` and
/// `keep_until` have passed in cluster time and that no hold covers are
/// deleted, at most `expiry_objects_per_sec`, in passes every
/// `expiry_interval_secs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionTuning {
    /// Seconds between expiry passes: 60 by default, at least 1.
    pub expiry_interval_secs: u64,
    /// Objects deleted per second at most: 100 by default, at least 1.
    pub expiry_objects_per_sec: u64,
    /// Seconds after the first deletion from a key epoch before the
    /// leader destroys the epoch key (moving the epoch's other objects to
    /// a new one first): 300 by default. Waiting lets expiry empty a whole
    /// epoch instead of moving objects that are about to go too. The key
    /// is gone from every node within this delay plus about ten seconds
    /// plus the time to move the survivors (README, "Crypto-shredding").
    pub shred_delay_secs: u64,
}

impl Default for RetentionTuning {
    fn default() -> Self {
        Self {
            expiry_interval_secs: 60,
            expiry_objects_per_sec: 100,
            shred_delay_secs: 300,
        }
    }
}

/// Raft settings. The defaults suit data centres a few milliseconds apart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTuning {
    /// Milliseconds between leader heartbeats.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomised election timeout, milliseconds. Must be
    /// greater than `heartbeat_ms`.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout, milliseconds. Must be
    /// greater than `election_timeout_min_ms`.
    pub election_timeout_max_ms: u64,
    /// A snapshot of the state machine is built after this many log entries
    /// since the last one, and the log before it is purged.
    pub snapshot_after_entries: u64,
    /// Log entries kept behind the last snapshot so that slightly lagging
    /// nodes catch up from the log rather than from a snapshot.
    pub keep_entries_after_snapshot: u64,
    /// Seconds `nodes add` waits for the new node to catch up before it
    /// answers (below the CLI's 60 s deadline). A node still catching up
    /// then gets its vote from the leader once it has.
    pub add_wait_secs: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_after_entries: 10_000,
            keep_entries_after_snapshot: 1_000,
            add_wait_secs: 45,
        }
    }
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
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
node_id = 1
zone = "dc1"
listen = "127.0.0.1:7001"
data_dir = "/var/lib/tresor/1"
[security]
ca = "/etc/tresor/ca.pem"
cert = "/etc/tresor/node.pem"
key = "/etc/tresor/node.key"
master_key_file = "/etc/tresor/master.keys"
signer_cert = "/etc/tresor/signer.pem"
signer_key = "/etc/tresor/signer.key"
"#;

    fn field_of(err: ConfigError) -> String {
        err.to_string()
    }

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = NodeConfig::parse(MINIMAL).expect("valid");
        assert_eq!(c.node_id, 1);
        assert_eq!(c.advertised_addr(), "127.0.0.1:7001");
        assert_eq!(c.http_listen, None);
        assert_eq!(c.raft, RaftTuning::default());
    }

    #[test]
    fn every_documented_key_is_accepted() {
        let text = format!(
            "advertise = \"n1.dc1:7001\"\nhttp_listen = \"127.0.0.1:9001\"\ncapacity = 1000\n{MINIMAL}[raft]\nheartbeat_ms = 50\n"
        );
        let c = NodeConfig::parse(&text).expect("valid");
        assert_eq!(c.advertised_addr(), "n1.dc1:7001");
        assert_eq!(c.raft.heartbeat_ms, 50);
    }

    #[test]
    fn insecure_needs_no_security_files() {
        let text = "node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\n[security]\ninsecure = true\n";
        let c = NodeConfig::parse(text).expect("valid");
        assert!(c.security.insecure);
        assert_eq!(c.security.master_key_file, None);
    }

    /// Each broken config must be refused with a message naming the field.
    #[test]
    fn bad_configs_name_their_field() {
        let cases: &[(&str, &str)] = &[
            ("zone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"", "node_id"),
            ("node_id = 1\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"", "zone"),
            ("node_id = 1\nzone = \"dc1\"\ndata_dir = \"/d\"", "listen"),
            ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"", "data_dir"),
            ("node_id = 0\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"", "node_id"),
            ("node_id = -3\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"", "node_id"),
            ("node_id = 1\nzone = \"\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"", "zone"),
            ("node_id = 1\nzone = \"d c\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"", "zone"),
            ("node_id = 1\nzone = \"dc1\"\nlisten = \"nowhere\"\ndata_dir = \"/d\"", "listen"),
            ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"/d\"", "listen"),
            ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"\"", "data_dir"),
            ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\nadvertise = \"x\"", "advertise"),
            ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\nhttp_listen = \"127.0.0.1:7001\"", "http_listen"),
            ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\ncapacity = 0", "capacity"),
            ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\nzones = \"x\"", "zones"),
            ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\n[raft]\nheartbeat_ms = 5000", "raft.election_timeout_min_ms"),
            ("node_id = = 1", "node_id"),
            ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"", "security.ca"),
            ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\n[security]\nca = \"c\"\ncert = \"c\"\nkey = \"k\"", "security.master_key_file"),
            ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\n[security]\nca = \"c\"\ncert = \"c\"\nkey = \"k\"\nmaster_key_file = \"m\"", "security.signer_cert"),
        ];
        for (text, field) in cases {
            let err = NodeConfig::parse(text).expect_err(text);
            let msg = field_of(err);
            assert!(
                msg.contains(field),
                "{text:?}: message {msg:?} does not name {field}"
            );
        }
    }
}
