//! When this node builds a snapshot of its state.
//!
//! A build dumps every pair of the state, so a fixed count of log entries
//! between builds makes the cost per entry grow with the state: at a
//! million objects a dump every 10,000 entries (seconds of CPU on every
//! node, each time) took a third of the put rate. The log must hold
//! `[raft] snapshot_after_entries` entries since the last snapshot, or one
//! entry per `snapshot_pairs_per_entry` pairs of the state (20 by default)
//! if that is more — a build then costs at most that many pair reads per
//! entry, however large the state, and the log kept between builds stays a
//! fixed fraction of it.

use std::sync::Arc;
use std::time::Duration;

use super::Cluster;

/// Pairs of the state per segment: a small object's manifest and its id.
const PAIRS_PER_SEGMENT: u64 = 2;
/// How often the log's length is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Entries since the last snapshot that call for the next one: at least
/// `configured`, and one per `pairs_per_entry` pairs of a state of
/// `segments` segments (0: no such spacing).
pub fn entries_between(configured: u64, pairs_per_entry: u64, segments: u64) -> u64 {
    match pairs_per_entry {
        0 => configured,
        ratio => configured.max(segments.saturating_mul(PAIRS_PER_SEGMENT) / ratio),
    }
}

/// Checks every second, until `stop`, whether the log calls for a
/// snapshot, and asks openraft for one (it builds one at a time).
pub fn spawn(cluster: Arc<Cluster>, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let configured = cluster.config().raft.snapshot_after_entries;
        let ratio = cluster.config().raft.snapshot_pairs_per_entry;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
            let (applied, last) = {
                let m = cluster.raft().metrics().borrow().clone();
                (
                    m.last_applied.map(|l| l.index).unwrap_or(0),
                    m.snapshot.map(|l| l.index).unwrap_or(0),
                )
            };
            let segments = match cluster.meta().health() {
                Ok(survey) => survey.segments,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the state's size for the snapshot policy");
                    continue;
                }
            };
            if applied.saturating_sub(last) >= entries_between(configured, ratio, segments) {
                if let Err(error) = cluster.raft().trigger().snapshot().await {
                    tracing::warn!(%error, "cannot ask for a snapshot");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_are_spaced_by_the_configured_count_or_the_state_whichever_is_more() {
        assert_eq!(entries_between(10_000, 20, 0), 10_000);
        assert_eq!(entries_between(10_000, 20, 50_000), 10_000);
        // A million small objects: two million pairs, one build per
        // 100,000 entries (20 pair reads per entry).
        assert_eq!(entries_between(10_000, 20, 1_000_000), 100_000);
        assert_eq!(entries_between(10, 20, u64::MAX), u64::MAX / 20);
        // Spacing by the state switched off.
        assert_eq!(entries_between(1_000, 0, 1_000_000), 1_000);
    }
}
