//! The exposition: names, labels, and values as Prometheus reads them.

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
fn expiry_and_receipt_figures_follow_the_workers() {
    let metrics = Metrics::new(3);
    metrics.expiry_progress(40, 2);
    metrics.receipts_progress(38, 2);
    metrics.expiry_progress(45, 1);
    let text = Exposition::parse(&metrics.render());
    assert_eq!(text.types["tresor_objects_expired_total"], "counter");
    assert_eq!(text.types["tresor_receipts_issued_total"], "counter");
    assert_eq!(text.types["tresor_receipts_due"], "gauge");
    assert_eq!(
        text.get("tresor_objects_expired_total", &[NODE]),
        Some(45.0)
    );
    assert_eq!(text.get("tresor_expiry_held_due", &[NODE]), Some(1.0));
    assert_eq!(
        text.get("tresor_receipts_issued_total", &[NODE]),
        Some(38.0)
    );
    assert_eq!(text.get("tresor_receipts_due", &[NODE]), Some(2.0));
}

#[test]
fn epoch_key_figures_follow_the_sync() {
    let metrics = Metrics::new(3);
    metrics.epoch_keys_progress(2, 7, 0);
    metrics.epoch_keys_progress(5, 4, 1);
    let text = Exposition::parse(&metrics.render());
    assert_eq!(text.types["tresor_epoch_keys_destroyed_total"], "counter");
    assert_eq!(
        text.get("tresor_epoch_keys_destroyed_total", &[NODE]),
        Some(5.0)
    );
    assert_eq!(text.get("tresor_epoch_keys_held", &[NODE]), Some(4.0));
    assert_eq!(text.get("tresor_epoch_keys_missing", &[NODE]), Some(1.0));
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
