//! Background jobs: liveness, scrub, repair and orphan collection. Each
//! implements [`Worker`]; [`Workers`] runs them on a schedule or on demand,
//! keeps their status for `tresor-node workers`, and stops them with the
//! node. Heavy workers pace themselves with a [`RateLimiter`].

mod gc;
mod liveness;
mod repair;
mod scrub;
mod uploads;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::{watch, Notify};

pub use gc::OrphanCollector;
pub use liveness::Liveness;
pub use repair::{segment_health, Repairer, SegmentHealth};
pub use scrub::Scrubber;
pub use uploads::UploadExpiry;

/// The cluster's data health from this node's copy of the metadata, in
/// one pass over the manifests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterHealth {
    /// Segments short of `data + parity` healthy shard files, by how many
    /// they are short.
    pub degraded: BTreeMap<usize, u64>,
    /// Shard files the manifests place on each node.
    pub shards_per_node: std::collections::HashMap<u64, u64>,
}

/// Computes [`ClusterHealth`].
pub fn cluster_health(
    cluster: &crate::raft::Cluster,
) -> Result<ClusterHealth, crate::meta::StoreError> {
    let meta = cluster.meta();
    let nodes: std::collections::HashMap<u64, crate::meta::NodeRecord> =
        meta.nodes()?.into_iter().map(|n| (n.id, n)).collect();
    let rebuild_after = cluster.config().healing.rebuild_after_secs * 1000;
    let now = crate::meta::now_ms();
    let mut health = ClusterHealth::default();
    for m in meta.all_objects()? {
        let width = (m.data + m.parity) as usize;
        for seg in &m.segments {
            let h = segment_health(seg, &nodes, now, rebuild_after);
            if h.healthy < width {
                *health.degraded.entry(width - h.healthy).or_default() += 1;
            }
            for node in seg.shards.iter().filter_map(|l| l.node) {
                *health.shards_per_node.entry(node).or_default() += 1;
            }
        }
    }
    Ok(health)
}

/// What one worker is doing, as shown to operators.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WorkerStatus {
    /// Worker name.
    pub name: String,
    /// `idle`, `running` or `error`.
    pub state: String,
    /// Progress of the current or last pass, for people.
    pub progress: String,
    /// Counters (cumulative unless the name says otherwise).
    pub counters: BTreeMap<String, u64>,
    /// Unix milliseconds when the last pass ended.
    pub last_pass_ms: Option<u64>,
    /// The last pass's error, if it failed.
    pub last_error: Option<String>,
}

/// Shared, updatable status of one worker.
#[derive(Clone, Default)]
pub struct StatusHandle(Arc<Mutex<WorkerStatus>>);

impl StatusHandle {
    fn update(&self, f: impl FnOnce(&mut WorkerStatus)) {
        if let Ok(mut s) = self.0.lock() {
            f(&mut s);
        }
    }

    /// Sets the progress text.
    pub fn progress(&self, text: impl Into<String>) {
        let text = text.into();
        self.update(|s| s.progress = text);
    }

    /// Adds to a counter.
    pub fn add(&self, counter: &str, n: u64) {
        self.update(|s| *s.counters.entry(counter.to_string()).or_default() += n);
    }

    /// Sets a counter.
    pub fn set(&self, counter: &str, n: u64) {
        self.update(|s| {
            s.counters.insert(counter.to_string(), n);
        });
    }

    /// A counter's value.
    pub fn get(&self, counter: &str) -> u64 {
        self.0
            .lock()
            .ok()
            .and_then(|s| s.counters.get(counter).copied())
            .unwrap_or(0)
    }

    /// A copy of the status.
    pub fn snapshot(&self) -> WorkerStatus {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A background job.
pub trait Worker: Send + 'static {
    /// Name shown to operators (`scrub`, `repair`, ...).
    fn name(&self) -> &'static str;
    /// Time between scheduled passes.
    fn interval(&self) -> Duration;
    /// One pass over the job. Errors are shown in the status; the next pass
    /// comes on schedule.
    fn pass<'a>(&'a mut self, status: &'a StatusHandle) -> BoxFuture<'a, Result<(), String>>;
}

struct Entry {
    status: StatusHandle,
    wake: Arc<Notify>,
}

/// The node's running workers.
#[derive(Default)]
pub struct Workers {
    entries: Mutex<BTreeMap<&'static str, Entry>>,
}

impl Workers {
    /// Runs `worker` until `stop` turns true: a pass every `interval()`, or
    /// at once when triggered.
    pub fn spawn(&self, mut worker: impl Worker, mut stop: watch::Receiver<bool>) {
        let status = StatusHandle::default();
        let name = worker.name();
        status.update(|s| {
            s.name = name.to_string();
            s.state = "idle".into();
        });
        let wake = Arc::new(Notify::new());
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                name,
                Entry {
                    status: status.clone(),
                    wake: wake.clone(),
                },
            );
        }
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(worker.interval()) => {}
                    _ = wake.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                status.update(|s| s.state = "running".into());
                let started = Instant::now();
                let result = tokio::select! {
                    r = worker.pass(&status) => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                status.update(|s| {
                    s.last_pass_ms = Some(crate::meta::now_ms());
                    s.counters.insert(
                        "last_pass_ms_taken".into(),
                        started.elapsed().as_millis() as u64,
                    );
                    match result {
                        Ok(()) => {
                            s.state = "idle".into();
                            s.last_error = None;
                        }
                        Err(e) => {
                            s.state = "error".into();
                            s.last_error = Some(e);
                        }
                    }
                });
            }
        });
    }

    /// Starts a pass of worker `name` now; false if there is no such worker.
    pub fn trigger(&self, name: &str) -> bool {
        let Ok(entries) = self.entries.lock() else {
            return false;
        };
        match entries.get(name) {
            Some(e) => {
                e.wake.notify_one();
                true
            }
            None => false,
        }
    }

    /// Status of every worker, by name.
    pub fn list(&self) -> Vec<WorkerStatus> {
        self.entries
            .lock()
            .map(|e| e.values().map(|e| e.status.snapshot()).collect())
            .unwrap_or_default()
    }
}

pub use crate::rate::RateLimiter;
