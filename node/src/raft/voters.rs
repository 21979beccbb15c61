//! Which nodes vote: a pure function of the members and their zones.
//!
//! The cluster keeps `min(5, members)` voters, spread over zones as evenly as
//! the nodes allow, and changes as few voters as possible: a current voter
//! keeps its seat while its zone's quota allows.

use std::collections::{BTreeMap, BTreeSet};

use crate::placement::deal_seats;

/// Most voters a cluster has; more only slows every commit.
pub const MAX_VOTERS: usize = 5;

/// A node eligible to vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Node id.
    pub id: u64,
    /// Its zone.
    pub zone: &'a str,
}

/// How many voters each zone gets: `min(MAX_VOTERS, n)` seats dealt one at a
/// time to the zone with the fewest seats that still has seatless nodes
/// (ties to the zone name first), so the spread is as even as possible.
fn zone_quotas(candidates: &[Candidate<'_>]) -> BTreeMap<String, usize> {
    let mut zones: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for c in candidates {
        zones.entry(c.zone).or_default().0 += 1;
    }
    deal_seats(&zones, candidates.len().min(MAX_VOTERS))
        .into_iter()
        .map(|(zone, seats)| (zone.to_string(), seats))
        .collect()
}

/// The voter set for `candidates`, keeping as many of `current` as the zone
/// quotas allow and filling the rest by lowest id.
pub fn choose_voters(candidates: &[Candidate<'_>], current: &BTreeSet<u64>) -> BTreeSet<u64> {
    let quotas = zone_quotas(candidates);
    let mut chosen = BTreeSet::new();
    for (zone, quota) in &quotas {
        let mut in_zone: Vec<&Candidate<'_>> =
            candidates.iter().filter(|c| c.zone == zone).collect();
        // Current voters first, then by id: deterministic and minimal churn.
        in_zone.sort_by_key(|c| (!current.contains(&c.id), c.id));
        chosen.extend(in_zone.iter().take(*quota).map(|c| c.id));
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    /// `(nodes as id:zone, current voters, expected voters)`.
    const CASES: &[(&str, &[u64], &[u64])] = &[
        ("", &[], &[]),
        ("1:a", &[], &[1]),
        ("1:a 2:b", &[1], &[1, 2]),
        ("1:a 2:b 3:c", &[1, 2], &[1, 2, 3]),
        ("1:a 2:b 3:c 4:a", &[1, 2, 3], &[1, 2, 3, 4]),
        ("1:a 2:b 3:c 4:a 5:b", &[1, 2, 3, 4], &[1, 2, 3, 4, 5]),
        // Sixth node: five voters, spread 2/2/1; the newcomer stays a learner.
        (
            "1:a 2:b 3:c 4:a 5:b 6:c",
            &[1, 2, 3, 4, 5],
            &[1, 2, 3, 4, 5],
        ),
        // A voter leaves: a learner of its zone takes the seat.
        ("1:a 3:c 4:a 5:b 6:c", &[1, 3, 4, 5], &[1, 3, 4, 5, 6]),
        // Voters bunched in one zone are respread when other zones have nodes.
        ("1:a 2:a 3:a 4:b 5:c", &[1, 2, 3], &[1, 2, 4, 5, 3]),
        (
            "1:a 2:a 3:a 4:a 5:a 6:b 7:c",
            &[1, 2, 3, 4, 5],
            &[1, 2, 3, 6, 7],
        ),
        // One zone only: lowest ids, current voters kept.
        (
            "1:a 2:a 3:a 4:a 5:a 6:a 7:a",
            &[1, 2, 3, 4, 7],
            &[1, 2, 3, 4, 7],
        ),
        // Two zones, seven nodes: 3 + 2.
        ("1:a 2:b 3:a 4:b 5:a 6:b 7:a", &[], &[1, 2, 3, 4, 5]),
    ];

    #[test]
    fn table() {
        for (nodes, current, expected) in CASES {
            let parsed: Vec<(u64, String)> = nodes
                .split_whitespace()
                .map(|n| {
                    let (id, zone) = n.split_once(':').expect("id:zone");
                    (id.parse().expect("id"), zone.to_string())
                })
                .collect();
            let candidates: Vec<Candidate<'_>> = parsed
                .iter()
                .map(|(id, zone)| Candidate { id: *id, zone })
                .collect();
            let got = choose_voters(&candidates, &set(current));
            assert_eq!(got, set(expected), "nodes {nodes:?}, current {current:?}");
            assert_eq!(got.len(), candidates.len().min(MAX_VOTERS));
        }
    }
}
