//! Crypto-shredding, in two workers (see `objects/shred.rs`): on the
//! leader, `shred` destroys the key epochs that deletions left behind; on
//! every node, `epoch-keys` makes the node's epoch key files follow the
//! replicated state (destroyed keys overwritten and removed, missing keys
//! fetched from peers).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{StatusHandle, Worker, WorkerError};
use crate::objects::DataPlane;

counters! {
    /// What the shredder has done.
    ShredCounters => Shred {
        /// Key epochs destroyed since the node started.
        epochs_destroyed,
        /// Data keys moved to a new epoch first.
        keys_rewrapped,
        /// Epochs waiting when the last pass ended.
        epochs_waiting,
        /// Passes that failed and are retried.
        failed,
    }
}

counters! {
    /// What syncing this node's epoch key files has done.
    EpochKeyCounters => EpochKeys {
        /// Key files destroyed since the node started.
        keys_destroyed,
        /// Keys fetched from peers since the node started.
        keys_fetched,
        /// Live epochs whose key this node lacked after the last pass.
        keys_missing,
        /// Key files held after the last pass.
        keys_held,
    }
}

/// Data keys moved per pass, at most.
const REWRAPS_PER_PASS: u64 = 20_000;

/// The leader's shredder.
pub struct Shredder {
    plane: Arc<DataPlane>,
    delay: Duration,
    interval: Duration,
}

impl Shredder {
    /// Every `interval`, destroys the epochs whose first deletion is at
    /// least `delay` old.
    pub fn new(plane: Arc<DataPlane>, delay: Duration, interval: Duration) -> Self {
        Self {
            plane,
            delay,
            interval,
        }
    }

    async fn run(&mut self, status: &StatusHandle<ShredCounters>) -> Result<(), WorkerError> {
        if !self.plane.cluster().is_leader() {
            status.progress("not the leader: the leader destroys key epochs");
            return Ok(());
        }
        match self.plane.shred(self.delay, REWRAPS_PER_PASS).await {
            Ok(done) => {
                status.count(|c| {
                    c.epochs_destroyed += done.destroyed;
                    c.keys_rewrapped += done.rewrapped;
                    c.epochs_waiting = done.waiting;
                });
                status.progress(format!(
                    "{} epoch(s) destroyed, {} key(s) moved, {} waiting",
                    done.destroyed, done.rewrapped, done.waiting
                ));
                Ok(())
            }
            Err(e) => {
                status.count(|c| c.failed += 1);
                Err(e.into())
            }
        }
    }
}

impl Worker for Shredder {
    type Counters = ShredCounters;

    fn name(&self) -> &'static str {
        "shred"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn pass<'a>(
        &'a mut self,
        status: &'a StatusHandle<ShredCounters>,
    ) -> BoxFuture<'a, Result<(), WorkerError>> {
        Box::pin(self.run(status))
    }
}

/// Files of epochs the state does not know are removed after this long
/// (an epoch whose creation never committed).
const UNKNOWN_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Every node's epoch key sync.
pub struct EpochKeySync {
    plane: Arc<DataPlane>,
    interval: Duration,
}

impl EpochKeySync {
    /// Syncs this node's epoch key files every `interval`.
    pub fn new(plane: Arc<DataPlane>, interval: Duration) -> Self {
        Self { plane, interval }
    }

    async fn run(&mut self, status: &StatusHandle<EpochKeyCounters>) -> Result<(), WorkerError> {
        let done = self.plane.sync_epoch_keys(UNKNOWN_GRACE).await?;
        status.count(|c| {
            c.keys_destroyed += done.destroyed;
            c.keys_fetched += done.fetched;
            c.keys_missing = done.missing;
            c.keys_held = done.held;
        });
        status.progress(format!(
            "{} key(s) held, {} destroyed, {} fetched, {} missing",
            done.held, done.destroyed, done.fetched, done.missing
        ));
        Ok(())
    }
}

impl Worker for EpochKeySync {
    type Counters = EpochKeyCounters;

    fn name(&self) -> &'static str {
        "epoch-keys"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn pass<'a>(
        &'a mut self,
        status: &'a StatusHandle<EpochKeyCounters>,
    ) -> BoxFuture<'a, Result<(), WorkerError>> {
        Box::pin(self.run(status))
    }
}
