//! Refused calls (no credentials, bad credentials, no role), merged: each
//! is still on record, but a flood of them must not grow the Raft log
//! with it. Refusals of one caller (the principal, or `anonymous@IP`
//! before authentication) for one action and outcome are counted for an
//! interval and recorded as one audit entry whose outcome says how many
//! (`unauthenticated x137`). A caller refused more than its limit within
//! the interval is refused at once — `RESOURCE_EXHAUSTED` with a retry
//! hint — before any credential is checked, and those refusals are
//! counted the same way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::meta::audit::AuditRecord;
use crate::meta::now_ms;

/// How long refusals are gathered into one entry per caller.
pub const REFUSAL_INTERVAL: Duration = Duration::from_secs(1);
/// Most distinct callers counted per interval; the rest are counted
/// together under [`MANY_CALLERS`].
const MAX_GROUPS: usize = 4096;
/// The principal on record for refusals of callers past [`MAX_GROUPS`].
pub const MANY_CALLERS: &str = "(many callers)";

/// Refusals of one caller, action and outcome within an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    first_ms: u64,
    bucket: Option<String>,
    key: Option<String>,
    count: u64,
}

/// The refusals of the current interval, and each caller's count in it.
#[derive(Debug, Default)]
pub struct Refusals {
    inner: Mutex<Interval>,
}

#[derive(Debug, Default)]
struct Interval {
    groups: HashMap<(String, String, String), Group>,
    /// Refusals per caller (bounded like the groups).
    callers: HashMap<String, u64>,
}

/// One name for what differs within a group.
fn same_or_various(kept: &mut Option<String>, seen: &str) {
    if kept.as_deref().is_some_and(|k| k != seen) {
        *kept = Some("*".to_string());
    }
}

impl Refusals {
    /// Counts a refusal of `caller`'s `action` with `outcome` (a gRPC code
    /// in lowercase words).
    pub fn count(&self, caller: &str, action: &str, bucket: &str, key: &str, outcome: &str) {
        let mut inner = self.lock();
        let id = (caller.to_string(), action.to_string(), outcome.to_string());
        let caller = if inner.groups.len() >= MAX_GROUPS && !inner.groups.contains_key(&id) {
            MANY_CALLERS
        } else {
            caller
        };
        // Only refusals for who the caller is or what it may do count
        // towards its limit: a caller told to wait (a node's limits, or
        // this one) is not locked out for retrying.
        let counts = matches!(outcome, "unauthenticated" | "permission_denied");
        if counts && (inner.callers.len() < MAX_GROUPS || inner.callers.contains_key(caller)) {
            *inner.callers.entry(caller.to_string()).or_default() += 1;
        }
        let group = inner
            .groups
            .entry((caller.to_string(), id.1, id.2))
            .or_insert_with(|| Group {
                first_ms: now_ms(),
                bucket: Some(bucket.to_string()),
                key: Some(key.to_string()),
                count: 0,
            });
        group.count += 1;
        same_or_various(&mut group.bucket, bucket);
        same_or_various(&mut group.key, key);
    }

    /// Refusals of `caller` for its credentials or its roles in this
    /// interval, all actions.
    pub fn of(&self, caller: &str) -> u64 {
        self.lock().callers.get(caller).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Interval> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Ends the interval: one record per group, made on `node`.
    pub fn drain(&self, node: u64) -> Vec<AuditRecord> {
        let groups = std::mem::take(&mut *self.lock()).groups;
        let mut records: Vec<AuditRecord> = groups
            .into_iter()
            .map(|((principal, action, outcome), g)| AuditRecord {
                time_ms: g.first_ms,
                node,
                principal,
                action,
                bucket: g.bucket.unwrap_or_default(),
                key: g.key.unwrap_or_default(),
                object_sha256: String::new(),
                outcome: match g.count {
                    1 => outcome,
                    n => format!("{outcome} x{n}"),
                },
            })
            .collect();
        records.sort_by(|a, b| (a.time_ms, &a.principal).cmp(&(b.time_ms, &b.principal)));
        records
    }
}

/// How many refusals an audit outcome stands for: `1` for an outcome of
/// one call, `N` for a merged `<code> xN`.
pub fn refusals_in(outcome: &str) -> u64 {
    outcome
        .rsplit_once(" x")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_merge_per_caller_action_and_outcome_and_add_up() {
        let r = Refusals::default();
        for i in 0..10 {
            r.count(
                "anonymous@10.0.0.1",
                "get",
                "cams",
                &format!("k{i}"),
                "unauthenticated",
            );
        }
        r.count(
            "anonymous@10.0.0.1",
            "get",
            "cams",
            "k",
            "resource_exhausted",
        );
        r.count("cam-7", "delete", "cams", "k", "permission_denied");
        // Told to wait is not counted towards the caller's limit.
        assert_eq!(r.of("anonymous@10.0.0.1"), 10);
        let records = r.drain(3);
        assert_eq!(records.len(), 3);
        let total: u64 = records.iter().map(|r| refusals_in(&r.outcome)).sum();
        assert_eq!(total, 12);
        let flood = records
            .iter()
            .find(|r| r.outcome.starts_with("unauthenticated"))
            .expect("merged");
        assert_eq!(flood.outcome, "unauthenticated x10");
        assert_eq!((flood.bucket.as_str(), flood.key.as_str()), ("cams", "*"));
        assert!(records.iter().all(|r| r.node == 3));
        // The next interval starts empty.
        assert_eq!(r.of("anonymous@10.0.0.1"), 0);
        assert!(r.drain(3).is_empty());
    }

    #[test]
    fn callers_past_the_bound_are_counted_together() {
        let r = Refusals::default();
        for i in 0..MAX_GROUPS + 50 {
            r.count(&format!("anonymous@{i}"), "get", "", "", "unauthenticated");
        }
        let records = r.drain(1);
        assert_eq!(records.len(), MAX_GROUPS + 1);
        let many = records
            .iter()
            .find(|r| r.principal == MANY_CALLERS)
            .expect("grouped");
        assert_eq!(refusals_in(&many.outcome), 50);
    }
}
