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
mod tests {
    use super::*;

    /// One sample line of the text exposition.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// A parsed exposition: `# TYPE` declarations and samples.
    struct Exposition {
        types: BTreeMap<String, String>,
        samples: Vec<Sample>,
    }

    impl Exposition {
        /// Parses `text`, panicking on any line that is not a comment or
        /// `name{labels} value` with an f64 value.
        fn parse(text: &str) -> Exposition {
            let mut types = BTreeMap::new();
            let mut samples = Vec::new();
            for line in text.lines().filter(|l| !l.is_empty()) {
                if let Some(decl) = line.strip_prefix("# TYPE ") {
                    let (name, kind) = decl.split_once(' ').expect("TYPE line has a kind");
                    assert!(
                        matches!(kind, "counter" | "gauge" | "histogram"),
                        "unexpected type in {line:?}"
                    );
                    types.insert(name.to_string(), kind.to_string());
                } else if !line.starts_with('#') {
                    samples.push(parse_sample(line));
                }
            }
            Exposition { types, samples }
        }

        /// The value of the sample `name` with exactly the labels `labels`.
        fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let want: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let mut found = self
                .samples
                .iter()
                .filter(|s| s.name == name && s.labels == want);
            let value = found.next().map(|s| s.value);
            assert!(found.next().is_none(), "duplicate sample {name} {want:?}");
            value
        }
    }

    /// Parses `name{k="v",...} value` or `name value`.
    fn parse_sample(line: &str) -> Sample {
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                (name, parse_labels(body))
            }
        };
        Sample {
            name: name.to_string(),
            labels,
            value,
        }
    }

    /// Parses `k="v",k2="v2"`, honouring `\"` and `\\` inside values.
    fn parse_labels(mut body: &str) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        while !body.is_empty() {
            let (key, rest) = body.split_once("=\"").expect("label is k=\"v\"");
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().expect("label value is closed") {
                    (_, '\\') => value.push(chars.next().expect("escape has a char").1),
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.to_string(), value);
            body = &rest[end + 1..];
            body = body.strip_prefix(',').unwrap_or(body);
        }
        labels
    }

    const NODE: (&str, &str) = ("node", "3");

    #[test]
    fn requests_are_counted_by_op_and_outcome() {
        let metrics = Metrics::new(3);
        metrics.request("put", "ok", 1000, 10, 0.004);
        metrics.request("put", "ok", 500, 10, 0.2);
        metrics.request("put", "unavailable", 200, 0, 75.0);
        metrics.request("get", "ok", 20, 4096, 0.01);
        let text = Exposition::parse(&metrics.render());

        let requests = |op, outcome| {
            text.get(
                "tresor_requests_total",
                &[("op", op), ("outcome", outcome), NODE],
            )
        };
        assert_eq!(requests("put", "ok"), Some(2.0));
        assert_eq!(requests("put", "unavailable"), Some(1.0));
        assert_eq!(requests("get", "ok"), Some(1.0));
        assert_eq!(requests("get", "unavailable"), None);

        let put = [("op", "put"), NODE];
        let get = [("op", "get"), NODE];
        assert_eq!(text.get("tresor_bytes_in_total", &put), Some(1700.0));
        assert_eq!(text.get("tresor_bytes_out_total", &put), Some(20.0));
        assert_eq!(text.get("tresor_bytes_in_total", &get), Some(20.0));
        assert_eq!(text.get("tresor_bytes_out_total", &get), Some(4096.0));
    }

    #[test]
    fn duration_histogram_counts_every_request() {
        let metrics = Metrics::new(3);
        metrics.request("put", "ok", 0, 0, 0.004);
        metrics.request("put", "ok", 0, 0, 0.2);
        metrics.request("put", "internal", 0, 0, 75.0);
        metrics.request("delete", "ok", 0, 0, f64::NAN);
        let text = Exposition::parse(&metrics.render());

        let put = [("op", "put"), NODE];
        assert_eq!(
            text.get("tresor_request_duration_seconds_count", &put),
            Some(3.0)
        );
        let sum = text
            .get("tresor_request_duration_seconds_sum", &put)
            .unwrap();
        assert!((sum - 75.204).abs() < 1e-9, "sum {sum}");
        let bucket = |le| {
            text.get(
                "tresor_request_duration_seconds_bucket",
                &[("op", "put"), ("le", le), NODE],
            )
        };
        assert_eq!(bucket("0.001"), Some(0.0));
        assert_eq!(bucket("60"), Some(2.0));
        assert_eq!(bucket("+Inf"), Some(3.0));

        let delete = [("op", "delete"), NODE];
        assert_eq!(
            text.get("tresor_request_duration_seconds_count", &delete),
            Some(1.0)
        );
        assert_eq!(
            text.get("tresor_request_duration_seconds_sum", &delete),
            Some(0.0)
        );
    }

    #[test]
    fn duration_buckets_run_from_one_millisecond_to_one_minute() {
        let buckets = duration_buckets();
        assert_eq!(buckets.len(), 16);
        assert_eq!(buckets[0], 0.001);
        assert_eq!(buckets[15], 60.0);
        assert!(buckets.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn raft_gauges_follow_the_last_report() {
        let metrics = Metrics::new(3);
        metrics.set_raft(4, None, 10, 9, false);
        let text = Exposition::parse(&metrics.render());
        assert_eq!(text.get("tresor_raft_term", &[NODE]), Some(4.0));
        assert_eq!(text.get("tresor_raft_leader_id", &[NODE]), Some(-1.0));
        assert_eq!(text.get("tresor_raft_commit_index", &[NODE]), Some(10.0));
        assert_eq!(text.get("tresor_raft_applied_index", &[NODE]), Some(9.0));
        assert_eq!(text.get("tresor_raft_is_leader", &[NODE]), Some(0.0));

        metrics.set_raft(5, Some(3), 12, 12, true);
        let text = Exposition::parse(&metrics.render());
        assert_eq!(text.get("tresor_raft_term", &[NODE]), Some(5.0));
        assert_eq!(text.get("tresor_raft_leader_id", &[NODE]), Some(3.0));
        assert_eq!(text.get("tresor_raft_applied_index", &[NODE]), Some(12.0));
        assert_eq!(text.get("tresor_raft_is_leader", &[NODE]), Some(1.0));
    }

    #[test]
    fn shard_gauges_clamp_huge_values() {
        let metrics = Metrics::new(3);
        metrics.set_shards(42, u64::MAX);
        let text = Exposition::parse(&metrics.render());
        assert_eq!(text.get("tresor_shard_files", &[NODE]), Some(42.0));
        assert_eq!(
            text.get("tresor_shard_bytes", &[NODE]),
            Some(i64::MAX as f64)
        );
    }

    #[test]
    fn degraded_gauge_returns_to_zero_when_left_out_of_the_map() {
        let metrics = Metrics::new(3);
        let degraded = |text: &Exposition, missing| {
            text.get("tresor_degraded_segments", &[("missing", missing), NODE])
        };

        metrics.set_degraded(&BTreeMap::from([(1, 3), (2, 5)]));
        let text = Exposition::parse(&metrics.render());
        assert_eq!(degraded(&text, "1"), Some(3.0));
        assert_eq!(degraded(&text, "2"), Some(5.0));
        assert_eq!(
            text.get("tresor_degraded_segments_total", &[NODE]),
            Some(8.0)
        );

        metrics.set_degraded(&BTreeMap::from([(1, 4)]));
        let text = Exposition::parse(&metrics.render());
        assert_eq!(degraded(&text, "1"), Some(4.0));
        assert_eq!(degraded(&text, "2"), Some(0.0));
        assert_eq!(
            text.get("tresor_degraded_segments_total", &[NODE]),
            Some(4.0)
        );

        metrics.set_degraded(&BTreeMap::new());
        let text = Exposition::parse(&metrics.render());
        assert_eq!(degraded(&text, "1"), Some(0.0));
        assert_eq!(degraded(&text, "2"), Some(0.0));
        assert_eq!(
            text.get("tresor_degraded_segments_total", &[NODE]),
            Some(0.0)
        );
    }

    #[test]
    fn repair_and_scrub_totals_are_counters_that_follow_reports() {
        let metrics = Metrics::new(3);
        metrics.repair_progress(2, 10, 1000);
        metrics.repair_progress(5, 10, 2500);
        metrics.scrub_progress(7, 100, 7 << 20, 1);
        let text = Exposition::parse(&metrics.render());
        assert_eq!(text.types["tresor_repair_bytes_total"], "counter");
        assert_eq!(text.types["tresor_scrub_bytes_total"], "counter");
        assert_eq!(text.types["tresor_scrub_errors_total"], "counter");
        assert_eq!(text.get("tresor_repair_segments_done", &[NODE]), Some(5.0));
        assert_eq!(
            text.get("tresor_repair_segments_total", &[NODE]),
            Some(10.0)
        );
        assert_eq!(text.get("tresor_repair_bytes_total", &[NODE]), Some(2500.0));
        assert_eq!(text.get("tresor_scrub_files_checked", &[NODE]), Some(7.0));
        assert_eq!(text.get("tresor_scrub_files_total", &[NODE]), Some(100.0));
        assert_eq!(
            text.get("tresor_scrub_bytes_total", &[NODE]),
            Some((7 << 20) as f64)
        );
        assert_eq!(text.get("tresor_scrub_errors_total", &[NODE]), Some(1.0));

        // A worker that restarts its count shows as a counter reset.
        metrics.repair_progress(0, 4, 300);
        let text = Exposition::parse(&metrics.render());
        assert_eq!(text.get("tresor_repair_bytes_total", &[NODE]), Some(300.0));
    }

    #[test]
    fn exposition_is_well_formed_and_labelled_with_the_node() {
        let metrics = Metrics::new(3);
        metrics.request("list", "permission_denied", 0, 0, 0.002);
        metrics.set_raft(1, Some(1), 1, 1, true);
        metrics.set_shards(1, 1);
        metrics.set_degraded(&BTreeMap::from([(1, 1)]));
        metrics.repair_progress(1, 1, 1);
        metrics.scrub_progress(1, 1, 1, 0);
        let text = Exposition::parse(&metrics.render());

        for name in [
            "tresor_requests_total",
            "tresor_bytes_in_total",
            "tresor_bytes_out_total",
            "tresor_raft_term",
            "tresor_raft_leader_id",
            "tresor_raft_commit_index",
            "tresor_raft_applied_index",
            "tresor_raft_is_leader",
            "tresor_shard_files",
            "tresor_shard_bytes",
            "tresor_shard_store_writable",
            "tresor_shard_store_free_bytes",
            "tresor_degraded_segments",
            "tresor_degraded_segments_total",
            "tresor_repair_segments_done",
            "tresor_repair_segments_total",
            "tresor_repair_bytes_total",
            "tresor_scrub_files_checked",
            "tresor_scrub_files_total",
            "tresor_scrub_bytes_total",
            "tresor_scrub_errors_total",
        ] {
            assert!(text.types.contains_key(name), "no # TYPE for {name}");
        }
        assert_eq!(text.types["tresor_request_duration_seconds"], "histogram");
        assert_eq!(text.types["tresor_requests_total"], "counter");
        assert_eq!(text.types["tresor_raft_term"], "gauge");

        for sample in &text.samples {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| sample.name.strip_suffix(suffix))
                .filter(|base| text.types.get(*base).map(String::as_str) == Some("histogram"))
                .unwrap_or(&sample.name);
            assert!(text.types.contains_key(family), "undeclared {sample:?}");
            assert_eq!(
                sample.labels.get("node").map(String::as_str),
                Some("3"),
                "{sample:?}"
            );
        }
    }

    #[test]
    fn clones_share_one_registry_and_nodes_stay_apart() {
        let metrics = Metrics::new(3);
        let clone = metrics.clone();
        let other = Metrics::new(4);
        clone.request("stat", "ok", 0, 0, 0.001);
        other.request("stat", "ok", 0, 0, 0.001);
        let text = Exposition::parse(&metrics.render());
        assert_eq!(
            text.get(
                "tresor_requests_total",
                &[("op", "stat"), ("outcome", "ok"), NODE]
            ),
            Some(1.0)
        );
        let other_text = Exposition::parse(&other.render());
        assert_eq!(
            other_text.get(
                "tresor_requests_total",
                &[("op", "stat"), ("outcome", "ok"), ("node", "4")]
            ),
            Some(1.0)
        );
    }
}
