//! A linearizability checker for the object namespace, in the manner of
//! Wing & Gong's search with Lowe's memoisation (what porcupine does).
//!
//! The model: a key holds no object or one immutable object; a put creates
//! it if absent and is refused if present; a read sees what is there. Keys
//! are independent objects, so a history is linearizable exactly when the
//! history of each key is (locality), and each key is checked on its own.
//!
//! Operations whose outcome the client does not know (an error, a timeout)
//! have no completion time: they may take effect at any point after they
//! were invoked, or never. Reads that failed are left out — they returned
//! nothing to check.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

/// What one operation did, as the client saw it. Values are whatever
/// identifies an object's content (e.g. the first 8 bytes of its SHA-256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A put of value `v` the store acknowledged.
    PutOk(u64),
    /// A put of value `v` refused because the key exists.
    PutExists(u64),
    /// A put of value `v` whose outcome is unknown.
    PutUnknown(u64),
    /// A read that found value `v`.
    ReadFound(u64),
    /// A read that found no object.
    ReadAbsent,
}

#[derive(Debug, Clone)]
struct Event {
    op: Op,
    invoked: Instant,
    /// `None`: outcome unknown, may take effect any time after `invoked`.
    completed: Option<Instant>,
}

/// Operations recorded by many tasks at once.
#[derive(Default)]
pub struct History {
    keys: Mutex<BTreeMap<String, Vec<Event>>>,
}

/// What [`History::check`] looked at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checked {
    /// Keys checked.
    pub keys: usize,
    /// Operations checked, unknown outcomes included.
    pub operations: usize,
    /// Most operations on one key.
    pub most_on_one_key: usize,
}

/// Most operations one key may have: the search marks them in a `u128`.
pub const MAX_OPS_PER_KEY: usize = 128;

impl History {
    /// Records an operation on `key` invoked at `invoked`; `completed` is
    /// `None` when its outcome is unknown (never for a read: leave failed
    /// reads out).
    pub fn record(&self, key: &str, op: Op, invoked: Instant, completed: Option<Instant>) {
        let completed = match op {
            Op::PutUnknown(_) => None,
            _ => completed,
        };
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.entry(key.to_string()).or_default().push(Event {
            op,
            invoked,
            completed,
        });
    }

    /// Checks every key's history; the error names the first key whose
    /// history has no linearization, with its operations.
    pub fn check(&self) -> Result<Checked, String> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let mut checked = Checked::default();
        for (key, events) in keys.iter() {
            if events.len() > MAX_OPS_PER_KEY {
                return Err(format!(
                    "key {key}: {} operations, more than the checker takes ({MAX_OPS_PER_KEY})",
                    events.len()
                ));
            }
            if !linearizable(events) {
                return Err(format!(
                    "key {key} is not linearizable:\n{}",
                    describe(events)
                ));
            }
            checked.keys += 1;
            checked.operations += events.len();
            checked.most_on_one_key = checked.most_on_one_key.max(events.len());
        }
        Ok(checked)
    }
}

fn describe(events: &[Event]) -> String {
    let Some(start) = events.iter().map(|e| e.invoked).min() else {
        return String::new();
    };
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.invoked);
    sorted
        .iter()
        .map(|e| {
            let at = |t: Instant| t.duration_since(start).as_millis();
            match e.completed {
                Some(done) => format!("  {:>7} .. {:>7} ms  {:?}\n", at(e.invoked), at(done), e.op),
                None => format!("  {:>7} .. ?          {:?}\n", at(e.invoked), e.op),
            }
        })
        .collect()
}

/// The state after applying `op` to `state`, or `None` if the model cannot
/// give the outcome `op` saw.
fn step(state: Option<u64>, op: Op) -> Option<Option<u64>> {
    match (op, state) {
        (Op::PutOk(v), None) => Some(Some(v)),
        (Op::PutOk(_), Some(_)) => None,
        (Op::PutExists(_), Some(v)) => Some(Some(v)),
        (Op::PutExists(_), None) => None,
        // Taking effect on an existing object is being refused: no change.
        (Op::PutUnknown(v), None) => Some(Some(v)),
        (Op::PutUnknown(_), Some(v)) => Some(Some(v)),
        (Op::ReadFound(v), Some(w)) if v == w => Some(state),
        (Op::ReadFound(_), _) => None,
        (Op::ReadAbsent, None) => Some(None),
        (Op::ReadAbsent, Some(_)) => None,
    }
}

fn linearizable(events: &[Event]) -> bool {
    let required: u128 = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.completed.is_some())
        .fold(0, |mask, (i, _)| mask | (1u128 << i));
    let mut seen = HashSet::new();
    search(events, required, 0, None, &mut seen)
}

/// Depth-first over the operations that may come next: any not yet placed
/// whose invocation is no later than the earliest completion among the
/// ones not yet placed (nothing that finished before it started is left).
fn search(
    events: &[Event],
    required: u128,
    done: u128,
    state: Option<u64>,
    seen: &mut HashSet<(u128, Option<u64>)>,
) -> bool {
    if done & required == required {
        return true;
    }
    if !seen.insert((done, state)) {
        return false;
    }
    let pending = |i: usize| done & (1u128 << i) == 0;
    let earliest_completion = events
        .iter()
        .enumerate()
        .filter(|(i, _)| pending(*i))
        .filter_map(|(_, e)| e.completed)
        .min();
    for (i, event) in events.iter().enumerate() {
        if !pending(i) || earliest_completion.is_some_and(|c| event.invoked > c) {
            continue;
        }
        if let Some(next) = step(state, event.op) {
            if search(events, required, done | (1u128 << i), next, seen) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Records `ops` as (op, start ms, end ms or None) from one origin.
    fn history(ops: &[(Op, u64, Option<u64>)]) -> History {
        let origin = Instant::now();
        let at = |ms: u64| origin + Duration::from_millis(ms);
        let h = History::default();
        for (op, start, end) in ops {
            h.record("k", *op, at(*start), end.map(at));
        }
        h
    }

    #[test]
    fn sequential_put_then_reads_is_linearizable() {
        let h = history(&[
            (Op::ReadAbsent, 0, Some(1)),
            (Op::PutOk(7), 2, Some(3)),
            (Op::PutExists(8), 4, Some(5)),
            (Op::ReadFound(7), 6, Some(7)),
        ]);
        let checked = h.check().expect("linearizable");
        assert_eq!((checked.keys, checked.operations), (1, 4));
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_put_is_caught() {
        let h = history(&[(Op::PutOk(7), 0, Some(10)), (Op::ReadAbsent, 20, Some(30))]);
        assert!(h.check().is_err());
    }

    #[test]
    fn concurrent_read_may_see_either_side_of_a_put() {
        let h = history(&[
            (Op::PutOk(7), 0, Some(10)),
            (Op::ReadAbsent, 5, Some(6)),
            (Op::ReadFound(7), 4, Some(8)),
        ]);
        assert!(h.check().is_ok());
    }

    #[test]
    fn reads_cannot_go_back_in_time() {
        let h = history(&[
            (Op::PutOk(7), 0, Some(100)),
            (Op::ReadFound(7), 10, Some(20)),
            (Op::ReadAbsent, 30, Some(40)),
        ]);
        assert!(
            h.check().is_err(),
            "absent after found, both inside the put"
        );
    }

    #[test]
    fn two_acknowledged_puts_of_one_key_are_caught() {
        let h = history(&[(Op::PutOk(1), 0, Some(10)), (Op::PutOk(2), 5, Some(15))]);
        assert!(h.check().is_err());
    }

    #[test]
    fn an_unknown_put_may_take_effect_late_or_never() {
        let late = history(&[
            (Op::PutUnknown(3), 0, None),
            (Op::ReadAbsent, 10, Some(20)),
            (Op::ReadFound(3), 30, Some(40)),
        ]);
        assert!(late.check().is_ok());
        let never = history(&[(Op::PutUnknown(3), 0, None), (Op::ReadAbsent, 10, Some(20))]);
        assert!(never.check().is_ok());
        let unknown_value = history(&[
            (Op::PutUnknown(3), 0, None),
            (Op::ReadFound(4), 10, Some(20)),
        ]);
        assert!(
            unknown_value.check().is_err(),
            "a value nobody put was read"
        );
    }

    #[test]
    fn refused_put_needs_an_object_there() {
        let h = history(&[
            (Op::PutExists(1), 0, Some(10)),
            (Op::ReadAbsent, 20, Some(30)),
        ]);
        assert!(h.check().is_err(), "refused as existing, then absent");
    }
}
