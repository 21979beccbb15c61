//! Placement: which nodes hold a segment's shards. A pure function over the
//! cluster model, so it is tested directly with tables.
//!
//! Shards go to distinct nodes, spread over zones as evenly as the nodes
//! allow (six nodes in three zones with 4+2: two per zone, so losing a zone
//! loses at most two shards). Within a zone, nodes are chosen by weighted
//! rendezvous hashing on the segment's seed: deterministic for the same
//! inputs, proportional to free capacity, and moving little when nodes come
//! and go.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// A node that may receive shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Node id.
    pub id: u64,
    /// Its zone.
    pub zone: String,
    /// Relative weight, normally free bytes; 0 is treated as 1.
    pub weight: u64,
}

/// Too few eligible nodes for a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("placement needs at least {needed} eligible nodes, only {available} available")]
pub struct PlacementError {
    /// The minimum the write rule needs.
    pub needed: usize,
    /// How many there were.
    pub available: usize,
}

/// Chooses up to `width` distinct nodes for one segment; fewer only when
/// there are fewer candidates, and an error below `min`. The result is in
/// shard order: zones take turns, so consecutive shards land in different
/// zones.
pub fn place(
    candidates: &[Candidate],
    width: usize,
    min: usize,
    seed: &[u8],
) -> Result<Vec<u64>, PlacementError> {
    let mut unique: BTreeMap<u64, &Candidate> = BTreeMap::new();
    for c in candidates {
        unique.entry(c.id).or_insert(c);
    }
    let n = width.min(unique.len());
    if n < min || n == 0 {
        return Err(PlacementError {
            needed: min.max(1),
            available: unique.len(),
        });
    }
    // Nodes of each zone, best rendezvous score first.
    let mut zones: BTreeMap<&str, Vec<(f64, u64)>> = BTreeMap::new();
    for c in unique.values() {
        zones
            .entry(&c.zone)
            .or_default()
            .push((score(seed, c.id, c.weight), c.id));
    }
    for nodes in zones.values_mut() {
        nodes.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    }
    let room: BTreeMap<&str, (usize, u64)> = zones
        .iter()
        .map(|(zone, nodes)| {
            let weight = unique
                .values()
                .filter(|c| c.zone == *zone)
                .map(|c| c.weight.max(1))
                .fold(0u64, u64::saturating_add);
            (*zone, (nodes.len(), weight))
        })
        .collect();
    let seats = deal_seats(&room, n);
    // Zones take turns in shard order.
    let mut chosen = Vec::with_capacity(n);
    let mut round = 0;
    while chosen.len() < n {
        for (zone, nodes) in &zones {
            if round < seats[zone] {
                chosen.push(nodes[round].1);
            }
        }
        round += 1;
    }
    Ok(chosen)
}

/// Deals `seats` seats over zones given as `zone → (nodes, weight)`: one at
/// a time to the zone with the fewest seats that still has a node without
/// one; ties go to the heavier zone, then to the first by name. The spread
/// is as even as the nodes allow. Placement deals shards of a segment with
/// this, and the voters of the cluster (all of weight 0) too.
pub fn deal_seats<'a>(
    zones: &BTreeMap<&'a str, (usize, u64)>,
    seats: usize,
) -> BTreeMap<&'a str, usize> {
    let mut dealt: BTreeMap<&str, usize> = zones.keys().map(|z| (*z, 0)).collect();
    for _ in 0..seats {
        let next = zones
            .iter()
            .filter(|(z, (nodes, _))| dealt[**z] < *nodes)
            .min_by(|(a, (_, wa)), (b, (_, wb))| {
                dealt[**a].cmp(&dealt[**b]).then(wb.cmp(wa)).then(a.cmp(b))
            })
            .map(|(z, _)| *z);
        match next {
            Some(z) => *dealt.entry(z).or_default() += 1,
            None => break,
        }
    }
    dealt
}

/// Nodes for `count` shards of a segment whose other shards stay on `keep`
/// (`(node, zone)`): each goes to the zone holding the fewest of the
/// segment's shards that still has an unused node, the best-scoring node
/// there. Fewer than `count` when nodes run out.
pub fn replacements(
    candidates: &[Candidate],
    keep: &[(u64, String)],
    count: usize,
    seed: &[u8],
) -> Vec<u64> {
    let mut zone_load: BTreeMap<String, usize> = BTreeMap::new();
    for (_, zone) in keep {
        *zone_load.entry(zone.clone()).or_default() += 1;
    }
    let mut chosen: Vec<u64> = Vec::new();
    for _ in 0..count {
        let best = candidates
            .iter()
            .filter(|c| !keep.iter().any(|(n, _)| *n == c.id) && !chosen.contains(&c.id))
            .min_by(|a, b| {
                let la = zone_load.get(&a.zone).copied().unwrap_or(0);
                let lb = zone_load.get(&b.zone).copied().unwrap_or(0);
                la.cmp(&lb)
                    .then(score(seed, b.id, b.weight).total_cmp(&score(seed, a.id, a.weight)))
                    .then(a.id.cmp(&b.id))
            });
        let Some(c) = best else { break };
        *zone_load.entry(c.zone.clone()).or_default() += 1;
        chosen.push(c.id);
    }
    chosen
}

/// Weighted rendezvous score: `-weight / ln(u)` with `u` uniform in (0, 1)
/// from the hash of seed and node. Higher wins.
fn score(seed: &[u8], node: u64, weight: u64) -> f64 {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(node.to_be_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let u = ((u64::from_be_bytes(first) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(weight.max(1) as f64) / u.ln()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn nodes(spec: &str) -> Vec<Candidate> {
        spec.split_whitespace()
            .map(|n| {
                let mut parts = n.split(':');
                let id = parts.next().and_then(|p| p.parse().ok()).expect("id");
                let zone = parts.next().expect("zone").to_string();
                let weight = parts.next().and_then(|p| p.parse().ok()).unwrap_or(100);
                Candidate { id, zone, weight }
            })
            .collect()
    }

    fn per_zone(cands: &[Candidate], chosen: &[u64]) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for id in chosen {
            let zone = &cands
                .iter()
                .find(|c| c.id == *id)
                .expect("chosen is a candidate")
                .zone;
            *m.entry(zone.clone()).or_default() += 1;
        }
        m
    }

    /// `(nodes as id:zone[:weight], width, min, expected shards per zone or
    /// "error")`.
    const CASES: &[(&str, usize, usize, &str)] = &[
        ("1:a 2:b 3:c 4:a 5:b 6:c", 6, 5, "a=2 b=2 c=2"),
        ("1:a 2:b 3:c 4:a 5:b 6:c 7:a 8:b 9:c", 6, 5, "a=2 b=2 c=2"),
        ("1:a 2:b 3:c 4:a 5:b", 6, 5, "a=2 b=2 c=1"),
        ("1:a 2:b 3:c 4:a", 6, 5, "error"),
        ("1:a 2:a 3:a 4:a 5:a 6:a", 6, 5, "a=6"),
        ("1:a 2:a 3:a 4:a 5:b 6:c", 6, 5, "a=4 b=1 c=1"),
        ("1:a 2:a 3:b 4:b 5:c 6:c 7:d 8:d", 6, 5, "a=2 b=2 c=1 d=1"),
        ("1:a 2:b", 2, 2, "a=1 b=1"),
        ("1:a 2:b 3:c 4:d 5:e", 3, 2, "a=1 b=1 c=1"),
        ("", 6, 5, "error"),
        ("1:a:1 2:a:1000 3:b 4:c", 3, 3, "a=1 b=1 c=1"),
    ];

    #[test]
    fn table() {
        for (spec, width, min, expected) in CASES {
            let cands = nodes(spec);
            let got = place(&cands, *width, *min, b"seed");
            if *expected == "error" {
                assert!(got.is_err(), "{spec}: expected an error, got {got:?}");
                continue;
            }
            let chosen = got.unwrap_or_else(|e| panic!("{spec}: {e}"));
            let distinct: BTreeSet<u64> = chosen.iter().copied().collect();
            assert_eq!(distinct.len(), chosen.len(), "{spec}: a node chosen twice");
            let zones: Vec<String> = per_zone(&cands, &chosen)
                .into_iter()
                .map(|(z, n)| format!("{z}={n}"))
                .collect();
            assert_eq!(zones.join(" "), *expected, "{spec}");
        }
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let cands = nodes("1:a 2:b 3:c 4:a 5:b 6:c 7:a 8:b 9:c");
        let a = place(&cands, 6, 5, b"object-1/0").expect("place");
        assert_eq!(a, place(&cands, 6, 5, b"object-1/0").expect("place"));
        let mut reversed = cands.clone();
        reversed.reverse();
        assert_eq!(a, place(&reversed, 6, 5, b"object-1/0").expect("place"));
        let differs = (0..20).any(|i| {
            place(&cands, 6, 5, format!("object-{i}/0").as_bytes()).ok() != Some(a.clone())
        });
        assert!(differs, "different seeds should spread load");
    }

    #[test]
    fn consecutive_shards_alternate_zones() {
        let cands = nodes("1:a 2:b 3:c 4:a 5:b 6:c");
        let chosen = place(&cands, 6, 5, b"s").expect("place");
        let zone = |id: u64| cands.iter().find(|c| c.id == id).map(|c| c.zone.clone());
        for pair in chosen.windows(2) {
            assert_ne!(zone(pair[0]), zone(pair[1]), "{chosen:?}");
        }
    }

    /// `(candidates, kept shards as node:zone, count, expected zones of the
    /// replacements in order)`.
    const REPLACEMENT_CASES: &[(&str, &str, usize, &str)] = &[
        // A lost dc1 shard of a 2/2/2 segment goes back to dc1.
        ("1:a 2:b 3:c 4:a 5:b 6:c 7:a", "2:b 3:c 4:a 5:b 6:c", 1, "a"),
        // Both dc1 shards lost, spares in every zone: both go back to dc1,
        // restoring two per zone.
        (
            "1:a 2:b 3:c 4:a 5:b 6:c 7:a 8:b",
            "2:b 3:c 5:b 6:c",
            2,
            "a a",
        ),
        // dc1 has one spare only: the second goes to a zone that has one.
        ("1:a 2:b 3:c 5:b 6:c 8:b", "2:b 3:c 5:b 6:c", 2, "a b"),
        // No spare anywhere: nothing.
        ("1:a 2:b 3:c", "1:a 2:b 3:c", 1, ""),
        // Only a crowded zone has spares: still used.
        ("1:a 2:b 3:c 4:c", "1:a 2:b 3:c", 1, "c"),
    ];

    #[test]
    fn replacement_table() {
        for (cands, keep, count, expected) in REPLACEMENT_CASES {
            let cands = nodes(cands);
            let keep: Vec<(u64, String)> =
                nodes(keep).into_iter().map(|c| (c.id, c.zone)).collect();
            let got = replacements(&cands, &keep, *count, b"seed");
            for id in &got {
                assert!(!keep.iter().any(|(k, _)| k == id), "reused a kept node");
            }
            let zones: Vec<String> = got
                .iter()
                .map(|id| {
                    cands
                        .iter()
                        .find(|c| c.id == *id)
                        .map(|c| c.zone.clone())
                        .unwrap_or_default()
                })
                .collect();
            assert_eq!(zones.join(" "), *expected, "keep {keep:?}");
        }
    }

    #[test]
    fn weight_steers_choice_within_a_zone() {
        // Zone a has a tiny and a large node; over many segments the large
        // one must be chosen far more often.
        let cands = nodes("1:a:1 2:a:1000 3:b 4:c");
        let mut large = 0;
        for i in 0..200 {
            let chosen = place(&cands, 3, 3, format!("seg-{i}").as_bytes()).expect("place");
            if chosen.contains(&2) {
                large += 1;
            }
        }
        assert!(large > 180, "large node chosen {large} of 200 times");
    }
}
