//! Background jobs: liveness, scrub, repair, orphan collection, upload and
//! retention expiry, deletion receipts, crypto-shredding, audit sealing. Each implements [`Worker`]; [`Workers`]
//! runs them on a schedule or on demand, keeps their status for
//! `tresor-node workers`, and stops them with the node. Heavy workers pace
//! themselves with a [`RateLimiter`].

/// Declares a worker's counters: a struct of named `u64` fields, listed by
/// name for the wire.
macro_rules! counters {
    ($(#[$doc:meta])* $name:ident => $variant:ident { $($(#[$fdoc:meta])* $field:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: u64,)*
        }

        impl $name {
            /// Every counter with its name.
            pub fn pairs(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($field), self.$field)),*]
            }
        }

        impl $crate::workers::CounterSet for $name {
            fn wrap(self) -> $crate::workers::Counters {
                $crate::workers::Counters::$variant(self)
            }
        }
    };
}

mod audit_seal;
mod expiry;
mod gc;
mod liveness;
mod receipts;
mod repair;
mod scrub;
mod shred;
mod uploads;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{watch, Notify};

pub use audit_seal::{AuditSealer, SealCounters};
pub use expiry::{ExpiryCounters, RetentionExpiry};
pub use gc::{GcCounters, OrphanCollector};
pub use liveness::{Liveness, LivenessCounters};
pub use receipts::{ReceiptCounters, ReceiptIssuer};
pub use repair::{RepairCounters, Repairer};
pub use scrub::{ScrubCounters, Scrubber};
pub use shred::{EpochKeyCounters, EpochKeySync, ShredCounters, Shredder};
pub use uploads::{UploadCounters, UploadExpiry};

use crate::meta::{MetaError, StoreError};
use crate::objects::ObjectError;
use crate::raft::ClusterError;

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The control plane could not serve (no quorum, a lost leader).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// This node's metadata store failed to read.
    #[error("metadata storage: {0}")]
    Store(#[from] StoreError),
    /// The data plane failed.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// The local shard store failed.
    #[error("shard storage: {0}")]
    Shards(#[from] std::io::Error),
    /// A blocking task of the pass failed.
    #[error("a task of the pass failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Some items of the pass failed and are retried on the next.
    #[error("{failed} {what} could not be done yet")]
    Incomplete {
        /// How many failed.
        failed: u64,
        /// What they are.
        what: &'static str,
    },
}

impl From<MetaError> for WorkerError {
    fn from(e: MetaError) -> Self {
        ClusterError::Meta(e).into()
    }
}

/// What a worker is doing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WorkerState {
    /// No pass yet since the node started.
    #[default]
    Idle,
    /// In a pass.
    Busy,
    /// In a pass, waiting for its byte rate to allow more.
    Throttled,
    /// The last pass ended well; the next comes on schedule.
    Done,
    /// The last pass failed; the next comes after a back-off that doubles
    /// with each failure in a row, up to the worker's interval.
    Error {
        /// Why.
        error: String,
        /// Unix milliseconds of the next pass.
        retry_at_ms: u64,
    },
}

impl WorkerState {
    /// The name shown to operators and sent on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            WorkerState::Idle => "idle",
            WorkerState::Busy => "busy",
            WorkerState::Throttled => "throttled",
            WorkerState::Done => "done",
            WorkerState::Error { .. } => "error",
        }
    }
}

/// The counters of one worker, by kind of worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Counters {
    /// Liveness.
    Liveness(LivenessCounters),
    /// Scrub.
    Scrub(ScrubCounters),
    /// Repair.
    Repair(RepairCounters),
    /// Orphan collection.
    Gc(GcCounters),
    /// Upload expiry.
    Uploads(UploadCounters),
    /// Audit sealing.
    Seal(SealCounters),
    /// Retention expiry.
    Expiry(ExpiryCounters),
    /// Deletion receipts.
    Receipts(ReceiptCounters),
    /// Crypto-shredding of key epochs.
    Shred(ShredCounters),
    /// This node's epoch key files.
    EpochKeys(EpochKeyCounters),
}

impl Counters {
    /// Every counter with its name, for the wire and the command line.
    pub fn pairs(&self) -> Vec<(&'static str, u64)> {
        match self {
            Counters::Liveness(c) => c.pairs(),
            Counters::Scrub(c) => c.pairs(),
            Counters::Repair(c) => c.pairs(),
            Counters::Gc(c) => c.pairs(),
            Counters::Uploads(c) => c.pairs(),
            Counters::Seal(c) => c.pairs(),
            Counters::Expiry(c) => c.pairs(),
            Counters::Receipts(c) => c.pairs(),
            Counters::Shred(c) => c.pairs(),
            Counters::EpochKeys(c) => c.pairs(),
        }
    }
}

/// A worker's own counters.
pub trait CounterSet: Default + Clone + Send + 'static {
    /// As one of [`Counters`].
    fn wrap(self) -> Counters;
}

/// What one worker is doing, as shown to operators.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerStatus {
    /// Worker name.
    pub name: &'static str,
    /// Its state.
    pub state: WorkerState,
    /// Progress of the current or last pass, for people.
    pub progress: String,
    /// Its counters (cumulative unless the name says otherwise).
    pub counters: Counters,
    /// Unix milliseconds when the last pass ended.
    pub last_pass_ms: Option<u64>,
    /// How long the last pass took, in milliseconds.
    pub last_pass_took_ms: u64,
}

/// The status of one worker while it runs.
struct Status<C> {
    state: WorkerState,
    progress: String,
    counters: C,
    last_pass_ms: Option<u64>,
    last_pass_took_ms: u64,
}

/// Shared, updatable status of one worker with counters `C`.
pub struct StatusHandle<C> {
    inner: Arc<Mutex<Status<C>>>,
}

impl<C> Clone for StatusHandle<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C: CounterSet> StatusHandle<C> {
    fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Status {
                state: WorkerState::Idle,
                progress: String::new(),
                counters: C::default(),
                last_pass_ms: None,
                last_pass_took_ms: 0,
            })),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Status<C>)) {
        if let Ok(mut s) = self.inner.lock() {
            f(&mut s);
        }
    }

    /// Sets the progress text.
    pub fn progress(&self, text: impl Into<String>) {
        let text = text.into();
        self.update(|s| s.progress = text);
    }

    /// Changes the counters.
    pub fn count(&self, f: impl FnOnce(&mut C)) {
        self.update(|s| f(&mut s.counters));
    }

    /// A copy of the counters.
    pub fn counters(&self) -> C {
        self.inner
            .lock()
            .map(|s| s.counters.clone())
            .unwrap_or_default()
    }

    /// A limiter to `bytes_per_sec` that shows the worker as throttled
    /// while the rate makes it wait.
    pub fn limiter(&self, bytes_per_sec: u64) -> RateLimiter {
        let status = self.clone();
        RateLimiter::new(bytes_per_sec).observed(Arc::new(move |waiting| {
            status.update(|s| {
                s.state = if waiting {
                    WorkerState::Throttled
                } else {
                    WorkerState::Busy
                }
            })
        }))
    }

    fn snapshot(&self, name: &'static str) -> WorkerStatus {
        let Ok(s) = self.inner.lock() else {
            return WorkerStatus {
                name,
                state: WorkerState::Error {
                    error: "status unavailable".into(),
                    retry_at_ms: 0,
                },
                progress: String::new(),
                counters: C::default().wrap(),
                last_pass_ms: None,
                last_pass_took_ms: 0,
            };
        };
        WorkerStatus {
            name,
            state: s.state.clone(),
            progress: s.progress.clone(),
            counters: s.counters.clone().wrap(),
            last_pass_ms: s.last_pass_ms,
            last_pass_took_ms: s.last_pass_took_ms,
        }
    }
}

/// A background job.
pub trait Worker: Send + 'static {
    /// Its counters.
    type Counters: CounterSet;
    /// Name shown to operators (`scrub`, `repair`, ...).
    fn name(&self) -> &'static str;
    /// Time between scheduled passes.
    fn interval(&self) -> Duration;
    /// One pass over the job. Errors are shown in the status; the next pass
    /// comes after a back-off.
    fn pass<'a>(
        &'a mut self,
        status: &'a StatusHandle<Self::Counters>,
    ) -> BoxFuture<'a, Result<(), WorkerError>>;
}

/// The first back-off after a failed pass; doubled for each failure in a
/// row, up to the worker's interval.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The wait before the next pass after `failures` failed passes in a row.
fn backoff(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    FIRST_BACKOFF
        .saturating_mul(1 << (failures - 1).min(16))
        .min(interval)
}

struct Entry {
    snapshot: Box<dyn Fn() -> WorkerStatus + Send + Sync>,
    wake: Arc<Notify>,
}

/// The node's running workers.
#[derive(Default)]
pub struct Workers {
    entries: Mutex<BTreeMap<&'static str, Entry>>,
}

impl Workers {
    /// Runs `worker` until `stop` turns true: a pass every `interval()`
    /// (sooner after a failure), or at once when triggered.
    pub fn spawn<W: Worker>(&self, mut worker: W, mut stop: watch::Receiver<bool>) {
        let status = StatusHandle::<W::Counters>::new();
        let name = worker.name();
        let wake = Arc::new(Notify::new());
        if let Ok(mut entries) = self.entries.lock() {
            let view = status.clone();
            entries.insert(
                name,
                Entry {
                    snapshot: Box::new(move || view.snapshot(name)),
                    wake: wake.clone(),
                },
            );
        }
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(backoff(worker.interval(), failures)) => {}
                    _ = wake.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                status.update(|s| s.state = WorkerState::Busy);
                let started = Instant::now();
                let result = tokio::select! {
                    r = worker.pass(&status) => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                failures = match result {
                    Ok(()) => 0,
                    Err(_) => failures.saturating_add(1),
                };
                let next = backoff(worker.interval(), failures);
                status.update(|s| {
                    let now = crate::meta::now_ms();
                    s.last_pass_ms = Some(now);
                    s.last_pass_took_ms = started.elapsed().as_millis() as u64;
                    s.state = match result {
                        Ok(()) => WorkerState::Done,
                        Err(e) => WorkerState::Error {
                            error: e.to_string(),
                            retry_at_ms: now + next.as_millis() as u64,
                        },
                    };
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
            .map(|e| e.values().map(|e| (e.snapshot)()).collect())
            .unwrap_or_default()
    }
}

pub use crate::rate::RateLimiter;

#[cfg(test)]
mod tests {
    use super::*;

    /// Scrubs nothing: waits on its byte rate, then fails or not.
    struct Pacer {
        fail: bool,
    }

    impl Worker for Pacer {
        type Counters = ScrubCounters;

        fn name(&self) -> &'static str {
            "pacer"
        }

        fn interval(&self) -> Duration {
            Duration::from_secs(3600)
        }

        fn pass<'a>(
            &'a mut self,
            status: &'a StatusHandle<ScrubCounters>,
        ) -> BoxFuture<'a, Result<(), WorkerError>> {
            Box::pin(async move {
                let mut limiter = status.limiter(1000);
                limiter.consume(5000).await;
                status.count(|c| c.passes += 1);
                match self.fail {
                    true => Err(WorkerError::Incomplete {
                        failed: 1,
                        what: "things",
                    }),
                    false => Ok(()),
                }
            })
        }
    }

    async fn state_after(workers: &Workers, wait: Duration) -> WorkerStatus {
        tokio::time::sleep(wait).await;
        workers.list().remove(0)
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_shows_idle_throttled_done_and_error_with_its_retry() {
        for fail in [false, true] {
            let workers = Workers::default();
            let (_stop, stopped) = watch::channel(false);
            workers.spawn(Pacer { fail }, stopped);
            assert_eq!(workers.list()[0].state, WorkerState::Idle);
            assert!(workers.trigger("pacer"));
            let w = state_after(&workers, Duration::from_millis(100)).await;
            assert_eq!(w.state, WorkerState::Throttled, "waiting on its byte rate");
            let w = state_after(&workers, Duration::from_millis(5400)).await;
            assert_eq!(
                w.counters,
                Counters::Scrub(ScrubCounters {
                    passes: 1,
                    ..Default::default()
                })
            );
            assert_eq!(w.counters.pairs()[0], ("passes", 1));
            match (fail, w.state) {
                (false, WorkerState::Done) => {}
                (true, WorkerState::Error { error, retry_at_ms }) => {
                    assert_eq!(error, "1 things could not be done yet");
                    let ended = w.last_pass_ms.expect("a pass ended");
                    assert_eq!(retry_at_ms, ended + 1000, "first back-off: one second");
                }
                (fail, state) => panic!("fail = {fail}: {state:?}"),
            }
        }
    }

    #[test]
    fn back_off_doubles_from_a_second_up_to_the_interval() {
        let interval = Duration::from_secs(30);
        let waits: Vec<u64> = (0..8).map(|f| backoff(interval, f).as_secs()).collect();
        assert_eq!(waits, vec![30, 1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(interval, u32::MAX), interval);
    }
}
