//! A node's metrics, exported in the Prometheus text format on `GET /metrics`.
//!
//! This module owns the metric definitions and their names; callers report
//! plain numbers (a finished request, the Raft state, shard-store totals,
//! degraded segments, repair and scrub progress) and never touch a Prometheus
//! type. Everything lives in one private [`Registry`] per node (not the
//! process-global one, so several nodes in one test process stay apart), and
//! every series carries the constant label `node="<id>"`.
//!
//! Throughput is not exported as a rate: the `*_total` series are counters,
//! and Prometheus derives MB/s from them, e.g.
//! `rate(tresor_bytes_in_total[1m]) / 1e6`, or
//! `rate(tresor_repair_bytes_total[5m])` for the repair speed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::Collector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Smallest request-duration bucket, in seconds (1 ms).
const DURATION_FIRST_BUCKET: f64 = 0.001;
/// Largest finite request-duration bucket, in seconds.
const DURATION_LAST_BUCKET: f64 = 60.0;
/// Number of finite request-duration buckets.
const DURATION_BUCKETS: usize = 16;

/// All of a node's metrics, in one prometheus Registry. Cheap to clone (Arc inside).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Instruments>,
}

/// The registry and a handle on every metric registered in it.
struct Instruments {
    registry: Registry,

    requests: IntCounterVec,
    bytes_in: IntCounterVec,
    bytes_out: IntCounterVec,
    request_duration: HistogramVec,

    raft_term: IntGauge,
    raft_leader_id: IntGauge,
    raft_commit_index: IntGauge,
    raft_applied_index: IntGauge,
    raft_is_leader: IntGauge,

    shard_files: IntGauge,
    shard_store_writable: IntGauge,
    shard_store_free_bytes: IntGauge,
    shard_bytes: IntGauge,

    degraded: IntGaugeVec,
    degraded_total: IntGauge,
    /// Every `missing` label value ever set, so that a later report without
    /// it can put its gauge back to zero. The lock also keeps two reports
    /// from interleaving.
    degraded_seen: Mutex<BTreeSet<usize>>,

    repair_segments_done: IntGauge,
    repair_segments_total: IntGauge,
    repair_bytes: IntCounter,

    scrub_files_checked: IntGauge,
    scrub_files_total: IntGauge,
    scrub_bytes: IntCounter,
    scrub_errors: IntCounter,

    objects_expired: IntCounter,
    expiry_held_due: IntGauge,
    receipts_issued: IntCounter,
    receipts_due: IntGauge,
    epoch_keys_destroyed: IntCounter,
    epoch_keys_held: IntGauge,
    epoch_keys_missing: IntGauge,
}

impl Metrics {
    /// Creates the metrics of node `node_id`, all carrying the constant
    /// label `node="<node_id>"`.
    pub fn new(node_id: u64) -> Metrics {
        let labels = HashMap::from([("node".to_string(), node_id.to_string())]);
        // Fails only for an empty prefix, and there is no prefix.
        let registry = Registry::new_custom(None, Some(labels))
            .expect("a registry without prefix is always valid");
        let r = &registry;

        let requests = counter_vec(
            r,
            "tresor_requests_total",
            "Finished client requests, by operation and outcome (\"ok\" or the gRPC code).",
            &["op", "outcome"],
        );
        let bytes_in = counter_vec(
            r,
            "tresor_bytes_in_total",
            "Bytes received in client requests (object data for put), by operation.",
            &["op"],
        );
        let bytes_out = counter_vec(
            r,
            "tresor_bytes_out_total",
            "Bytes sent in client responses (object data for get), by operation.",
            &["op"],
        );
        let request_duration = register(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    "tresor_request_duration_seconds",
                    "Duration of finished client requests, by operation.",
                )
                .buckets(duration_buckets()),
                &["op"],
            )
            .expect("static histogram definition is valid"),
        );

        let raft_term = gauge(r, "tresor_raft_term", "Current Raft term.");
        let raft_leader_id = gauge(
            r,
            "tresor_raft_leader_id",
            "Node id of the current Raft leader, -1 when there is none.",
        );
        let raft_commit_index = gauge(
            r,
            "tresor_raft_commit_index",
            "Index of the last committed Raft log entry.",
        );
        let raft_applied_index = gauge(
            r,
            "tresor_raft_applied_index",
            "Index of the last Raft log entry applied to the state machine.",
        );
        let raft_is_leader = gauge(
            r,
            "tresor_raft_is_leader",
            "1 when this node is the Raft leader, else 0.",
        );

        let shard_files = gauge(
            r,
            "tresor_shard_files",
            "Shard files in this node's shard store.",
        );
        let shard_store_writable = gauge(
            r,
            "tresor_shard_store_writable",
            "1 when this node takes new shard files, 0 when its shard storage is full or gone.",
        );
        let shard_store_free_bytes = gauge(
            r,
            "tresor_shard_store_free_bytes",
            "Bytes free on the file system of this node's shard store.",
        );
        let shard_bytes = gauge(
            r,
            "tresor_shard_bytes",
            "Bytes of shard files in this node's shard store.",
        );

        let degraded = register(
            r,
            IntGaugeVec::new(
                Opts::new(
                    "tresor_degraded_segments",
                    "Degraded segments cluster-wide, by number of missing shard files.",
                ),
                &["missing"],
            )
            .expect("static gauge definition is valid"),
        );
        let degraded_total = gauge(
            r,
            "tresor_degraded_segments_total",
            "Degraded segments cluster-wide, whatever the number of missing shard files.",
        );

        let repair_segments_done = gauge(
            r,
            "tresor_repair_segments_done",
            "Segments repaired so far in the current repair pass.",
        );
        let repair_segments_total = gauge(
            r,
            "tresor_repair_segments_total",
            "Segments to repair in the current repair pass.",
        );
        let repair_bytes = counter(
            r,
            "tresor_repair_bytes_total",
            "Bytes of shard files rebuilt by repair.",
        );

        let scrub_files_checked = gauge(
            r,
            "tresor_scrub_files_checked",
            "Shard files checked so far in the current scrub pass.",
        );
        let scrub_files_total = gauge(
            r,
            "tresor_scrub_files_total",
            "Shard files to check in the current scrub pass.",
        );
        let scrub_bytes = counter(
            r,
            "tresor_scrub_bytes_total",
            "Bytes of shard files read and verified by scrub.",
        );
        let scrub_errors = counter(
            r,
            "tresor_scrub_errors_total",
            "Corrupt or unreadable shard files found by scrub.",
        );
        let objects_expired = counter(
            r,
            "tresor_objects_expired_total",
            "Objects deleted by their retention policy (by this node, as leader).",
        );
        let expiry_held_due = gauge(
            r,
            "tresor_expiry_held_due",
            "Objects due for deletion but kept by a legal hold, in the last expiry pass.",
        );
        let receipts_issued = counter(
            r,
            "tresor_receipts_issued_total",
            "Deletion receipts signed and recorded (by this node, as leader).",
        );
        let receipts_due = gauge(
            r,
            "tresor_receipts_due",
            "Deletions whose receipt is not yet issued (at most 10,000 counted; leader only).",
        );
        let epoch_keys_destroyed = counter(
            r,
            "tresor_epoch_keys_destroyed_total",
            "Epoch key files this node overwrote and removed (crypto-shredding).",
        );
        let epoch_keys_held = gauge(
            r,
            "tresor_epoch_keys_held",
            "Epoch key files this node holds.",
        );
        let epoch_keys_missing = gauge(
            r,
            "tresor_epoch_keys_missing",
            "Live key epochs whose key this node lacks and no peer gave it (should be 0).",
        );

        Metrics {
            inner: Arc::new(Instruments {
                registry,
                requests,
                bytes_in,
                bytes_out,
                request_duration,
                raft_term,
                raft_leader_id,
                raft_commit_index,
                raft_applied_index,
                raft_is_leader,
                shard_files,
                shard_store_writable,
                shard_store_free_bytes,
                shard_bytes,
                degraded,
                degraded_total,
                degraded_seen: Mutex::new(BTreeSet::new()),
                repair_segments_done,
                repair_segments_total,
                repair_bytes,
                scrub_files_checked,
                scrub_files_total,
                scrub_bytes,
                scrub_errors,
                objects_expired,
                expiry_held_due,
                receipts_issued,
                receipts_due,
                epoch_keys_destroyed,
                epoch_keys_held,
                epoch_keys_missing,
            }),
        }
    }

    /// One finished client request: op is "put" | "get" | "stat" | "list" |
    /// "delete" | admin op names; outcome "ok" or a gRPC code name lowercased.
    ///
    /// `bytes_in` and `bytes_out` are the bytes received and sent for it;
    /// `seconds` is its duration (negative or NaN counts as zero).
    pub fn request(&self, op: &str, outcome: &str, bytes_in: u64, bytes_out: u64, seconds: f64) {
        let m = &self.inner;
        m.requests.with_label_values(&[op, outcome]).inc();
        m.bytes_in.with_label_values(&[op]).inc_by(bytes_in);
        m.bytes_out.with_label_values(&[op]).inc_by(bytes_out);
        // `f64::max` returns the other operand for NaN.
        m.request_duration
            .with_label_values(&[op])
            .observe(seconds.max(0.0));
    }

    /// Sets the Raft gauges: the current term, the leader (`-1` when
    /// `None`), the commit and applied indexes, and whether this node leads.
    pub fn set_raft(
        &self,
        term: u64,
        leader: Option<u64>,
        commit_index: u64,
        applied_index: u64,
        is_leader: bool,
    ) {
        let m = &self.inner;
        m.raft_term.set(saturating_i64(term));
        m.raft_leader_id.set(leader.map_or(-1, saturating_i64));
        m.raft_commit_index.set(saturating_i64(commit_index));
        m.raft_applied_index.set(saturating_i64(applied_index));
        m.raft_is_leader.set(i64::from(is_leader));
    }

    /// Sets the number of shard files in this node's shard store and their
    /// total size in bytes.
    pub fn set_shards(&self, files: u64, bytes: u64) {
        self.inner.shard_files.set(saturating_i64(files));
        self.inner.shard_bytes.set(saturating_i64(bytes));
    }

    /// Sets whether this node's shard store takes new files, and the bytes
    /// free on its file system.
    pub fn set_shard_store(&self, writable: bool, free_bytes: u64) {
        self.inner.shard_store_writable.set(i64::from(writable));
        self.inner
            .shard_store_free_bytes
            .set(saturating_i64(free_bytes));
    }

    /// Degraded segments cluster-wide by number of missing shard files: pass
    /// the full map each time; labels missing="1","2",...; missing counts not
    /// in the map are reset to 0 (so the gauge goes back to zero).
    ///
    /// Also sets `tresor_degraded_segments_total` to the sum over the map.
    pub fn set_degraded(&self, by_missing: &BTreeMap<usize, u64>) {
        let m = &self.inner;
        let mut seen = m
            .degraded_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for missing in seen.iter().filter(|k| !by_missing.contains_key(k)) {
            m.degraded
                .with_label_values(&[missing.to_string().as_str()])
                .set(0);
        }
        let mut total: u64 = 0;
        for (&missing, &segments) in by_missing {
            m.degraded
                .with_label_values(&[missing.to_string().as_str()])
                .set(saturating_i64(segments));
            seen.insert(missing);
            total = total.saturating_add(segments);
        }
        m.degraded_total.set(saturating_i64(total));
    }

    /// Reports repair progress: segments done and to do in the current pass,
    /// and the bytes rebuilt since the node started.
    ///
    /// `tresor_repair_bytes_total` is a true counter that follows
    /// `bytes_rebuilt_total` (it grows by the difference since the last
    /// report); if the reported total ever goes down, the counter restarts
    /// from it, which Prometheus' `rate()` treats as a counter reset.
    pub fn repair_progress(
        &self,
        segments_done: u64,
        segments_total: u64,
        bytes_rebuilt_total: u64,
    ) {
        let m = &self.inner;
        m.repair_segments_done.set(saturating_i64(segments_done));
        m.repair_segments_total.set(saturating_i64(segments_total));
        follow_total(&m.repair_bytes, bytes_rebuilt_total);
    }

    /// Reports scrub progress: shard files checked and to check in the
    /// current pass, and the bytes verified and errors found since the node
    /// started. The two totals are counters that follow the reported values,
    /// as in [`Metrics::repair_progress`].
    pub fn scrub_progress(
        &self,
        files_checked: u64,
        files_total: u64,
        bytes_checked_total: u64,
        errors_found_total: u64,
    ) {
        let m = &self.inner;
        m.scrub_files_checked.set(saturating_i64(files_checked));
        m.scrub_files_total.set(saturating_i64(files_total));
        follow_total(&m.scrub_bytes, bytes_checked_total);
        follow_total(&m.scrub_errors, errors_found_total);
    }

    /// Retention expiry: objects expired since the node started, and due
    /// objects kept by a hold in the last pass.
    pub fn expiry_progress(&self, expired_total: u64, held_due: u64) {
        let m = &self.inner;
        follow_total(&m.objects_expired, expired_total);
        m.expiry_held_due.set(saturating_i64(held_due));
    }

    /// Deletion receipts: issued since the node started, and still due.
    pub fn receipts_progress(&self, issued_total: u64, due: u64) {
        let m = &self.inner;
        follow_total(&m.receipts_issued, issued_total);
        m.receipts_due.set(saturating_i64(due));
    }

    /// This node's epoch key files: destroyed since the node started, held
    /// and missing now.
    pub fn epoch_keys_progress(&self, destroyed_total: u64, held: u64, missing: u64) {
        let m = &self.inner;
        follow_total(&m.epoch_keys_destroyed, destroyed_total);
        m.epoch_keys_held.set(saturating_i64(held));
        m.epoch_keys_missing.set(saturating_i64(missing));
    }

    /// Text exposition (Content-Type text/plain; version=0.0.4, see
    /// [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail, and the registry drops metric
        // families without samples, so an error here is a bug in a metric
        // definition: log it and serve what was encoded rather than nothing.
        if let Err(err) = TextEncoder::new().encode_utf8(&self.inner.registry.gather(), &mut text) {
            tracing::error!(error = %err, "encoding metrics failed");
        }
        text
    }
}

/// Finite bucket bounds for `tresor_request_duration_seconds`: exponential
/// from 1 ms to 60 s.
fn duration_buckets() -> Vec<f64> {
    let steps = (DURATION_BUCKETS - 1) as f64;
    let factor = (DURATION_LAST_BUCKET / DURATION_FIRST_BUCKET).powf(1.0 / steps);
    let mut buckets: Vec<f64> = (0..DURATION_BUCKETS)
        .map(|i| DURATION_FIRST_BUCKET * factor.powi(i as i32))
        .collect();
    // Land the last bound on 60 exactly rather than on a rounding error.
    buckets[DURATION_BUCKETS - 1] = DURATION_LAST_BUCKET;
    buckets
}

/// Makes `counter` equal to `total`, a cumulative count reported by a
/// worker. A decrease is passed on as a counter reset.
fn follow_total(counter: &IntCounter, total: u64) {
    let current = counter.get();
    if total >= current {
        counter.inc_by(total - current);
    } else {
        counter.reset();
        counter.inc_by(total);
    }
}

/// `value` as a gauge value; counts beyond `i64::MAX` cannot happen in
/// practice and are clamped.
fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Registers `collector` in `registry` and hands it back.
///
/// Every metric here has a static name, help and label set, all valid and
/// distinct, so registration cannot fail; a failure is a programming error
/// caught by the first test that builds a [`Metrics`].
fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("static metric definitions are valid and distinct");
    collector
}

/// Defines and registers an integer gauge without labels.
fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        registry,
        IntGauge::new(name, help).expect("static gauge definition is valid"),
    )
}

/// Defines and registers an integer counter without labels.
fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        registry,
        IntCounter::new(name, help).expect("static counter definition is valid"),
    )
}

/// Defines and registers an integer counter with the given labels.
fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels)
            .expect("static counter definition is valid"),
    )
}

#[cfg(test)]
mod tests;
