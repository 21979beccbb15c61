//! The tuning sections of a node's config file: healing, data layout,
//! admission, metadata cache, shards, audit, retention and Raft timing.
//! Every field has a documented default.

use serde::{Deserialize, Serialize};

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

/// The S3 port's own settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Tuning {
    /// Data shards per stripe of a bucket made by S3 CreateBucket (S3 has
    /// no word for an erasure scheme; `tresor-node bucket create` makes
    /// buckets with any other). 4 by default.
    pub bucket_data: u32,
    /// Parity shards per stripe of such a bucket. 2 by default.
    pub bucket_parity: u32,
    /// S3 connections served at once; further ones wait in the kernel's
    /// accept queue (1 to 100,000; 1,024 by default).
    pub max_connections: u32,
    /// The region the cluster answers as: requests must be signed for it,
    /// and GetBucketLocation names it. `us-east-1` by default (what tools
    /// assume when told nothing).
    pub region: String,
}

impl Default for S3Tuning {
    fn default() -> Self {
        Self {
            bucket_data: 4,
            bucket_parity: 2,
            max_connections: 1024,
            region: "us-east-1".into(),
        }
    }
}
