//! A partition that cuts the leader off while clients write and read on
//! both sides. Every node talks to the others through the harness's
//! proxies, and the leader's links are black-holed in both directions: its
//! connections stay open and nothing arrives, the hardest kind of cut.
//!
//! Writers race for the same keys from both sides; readers stat keys
//! through every node. Every call's invocation, completion and outcome go
//! into a history that must be linearizable (one immutable object per key,
//! see `tresor_tests::history`), and after healing every acknowledged
//! write must read back whole with its SHA-256.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tresor_node::config::DataTuning;
use tresor_tests::calls::{put_once, stat_once};
use tresor_tests::history::{History, Op};
use tresor_tests::net::Fault;
use tresor_tests::{cluster, pattern, sha256_hex, spec, wait_for, Harness};

const SHARD: usize = 4096;
const KEYS: usize = 30;
const PARTITION: Duration = Duration::from_secs(15);
const AFTER_HEALING: Duration = Duration::from_secs(5);
const PUT_WITHIN: Duration = Duration::from_secs(25);
const STAT_WITHIN: Duration = Duration::from_secs(10);

/// What writer `w` puts under key `i`: its own bytes, so a read tells
/// which writer's put won.
fn content(w: usize, i: usize) -> Vec<u8> {
    pattern(2 * SHARD + 37 * w + i, (w * 1_000 + i) as u64 + 1)
}

/// The history's name for content: the first 8 bytes of its SHA-256.
fn value_of(sha256_hex: &str) -> u64 {
    let prefix = sha256_hex.get(..16).unwrap_or_default();
    u64::from_str_radix(prefix, 16).unwrap_or(u64::MAX)
}

fn key(i: usize) -> String {
    format!("p/{i}")
}

#[derive(Default)]
struct Tally {
    acked_by_leader_side: AtomicU64,
    acked_by_majority_side: AtomicU64,
    failed_puts: AtomicU64,
    reads: AtomicU64,
    failed_reads: AtomicU64,
}

#[tokio::test]
async fn isolated_leader_acknowledges_nothing_and_history_is_linearizable() -> anyhow::Result<()> {
    let mut s = spec(6, 3);
    s.data = DataTuning {
        shard_bytes: SHARD as u32,
        segment_bytes: 64 * 4 * SHARD as u64,
        ..Default::default()
    };
    s.healing.down_after_secs = 3;
    let mut h: Harness = cluster!(network, spec = s)?;
    h.form().await?;
    let old_leader = h.leader().await?;
    h.create_bucket(old_leader, "footage", 4, 2).await?;
    let majority: Vec<u64> = h.ids().into_iter().filter(|id| *id != old_leader).collect();

    let history = Arc::new(History::default());
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let credentials = h.credentials().clone();
    let leader_endpoint = h.endpoint(old_leader);
    let majority_endpoints: Vec<String> = majority.iter().map(|id| h.endpoint(*id)).collect();
    let all_endpoints: Vec<String> = h.ids().iter().map(|id| h.endpoint(*id)).collect();

    h.net()?.isolate(old_leader, Fault::BlackHole);
    let cut_at = Instant::now();

    let mut tasks = Vec::new();
    // Four writers, two on each side, each trying every key in its own
    // order, so most keys see a put from both sides.
    for w in 0..4usize {
        let on_leader_side = w < 2;
        let endpoints = if on_leader_side {
            vec![leader_endpoint.clone()]
        } else {
            majority_endpoints.clone()
        };
        let (history, tally, stop, credentials) = (
            history.clone(),
            tally.clone(),
            stop.clone(),
            credentials.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for n in 0..KEYS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = (n * 7 + w * 11) % KEYS;
                let data = content(w, i);
                let value = value_of(&sha256_hex(&data));
                let endpoint = &endpoints[n % endpoints.len()];
                let invoked = Instant::now();
                let outcome = put_once(endpoint, &credentials, &key(i), &data, PUT_WITHIN).await;
                let completed = Instant::now();
                let op = match &outcome {
                    Ok(()) => {
                        let side = if on_leader_side {
                            &tally.acked_by_leader_side
                        } else {
                            &tally.acked_by_majority_side
                        };
                        side.fetch_add(1, Ordering::Relaxed);
                        Op::PutOk(value)
                    }
                    Err(why) if why.starts_with("AlreadyExists") => Op::PutExists(value),
                    Err(_) => {
                        tally.failed_puts.fetch_add(1, Ordering::Relaxed);
                        Op::PutUnknown(value)
                    }
                };
                history.record(&key(i), op, invoked, Some(completed));
            }
        }));
    }
    // Two readers over every node, the isolated one included.
    for r in 0..2usize {
        let (history, tally, stop, credentials, endpoints) = (
            history.clone(),
            tally.clone(),
            stop.clone(),
            credentials.clone(),
            all_endpoints.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) && n < 400 {
                let i = (n * 13 + r * 5) % KEYS;
                let endpoint = &endpoints[(n + r) % endpoints.len()];
                let invoked = Instant::now();
                let seen = stat_once(endpoint, &credentials, &key(i), STAT_WITHIN).await;
                let completed = Instant::now();
                tally.reads.fetch_add(1, Ordering::Relaxed);
                match seen {
                    Ok(Some(sha)) => history.record(
                        &key(i),
                        Op::ReadFound(value_of(&sha)),
                        invoked,
                        Some(completed),
                    ),
                    Ok(None) => history.record(&key(i), Op::ReadAbsent, invoked, Some(completed)),
                    Err(_) => {
                        tally.failed_reads.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    let new_leader = h.leader_among(&majority).await?;
    let elected_after = cut_at.elapsed();
    tokio::time::sleep(PARTITION.saturating_sub(cut_at.elapsed())).await;
    let acked_by_isolated = tally.acked_by_leader_side.load(Ordering::Relaxed);
    h.net()?.heal();
    let healed_at = Instant::now();
    tokio::time::sleep(AFTER_HEALING).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(PUT_WITHIN + Duration::from_secs(30), t).await??;
    }
    h.leader().await?;
    let rejoined_after = healed_at.elapsed();

    // After healing, every key is read whole through the majority side and
    // the read goes into the history too.
    let mut unreadable = Vec::new();
    let mut stored = 0usize;
    for i in 0..KEYS {
        let via = majority[i % majority.len()];
        let invoked = Instant::now();
        let read = wait_for("a settled read", Duration::from_secs(30), || async {
            match h.get(via, "footage", &key(i), None, None).await {
                Ok(found) => Ok(Some(Some(found))),
                Err(s) if s.code() == tonic::Code::NotFound => Ok(Some(None)),
                Err(s) => Err(anyhow::anyhow!("{:?} {}", s.code(), s.message())),
            }
        })
        .await;
        let completed = Instant::now();
        match read {
            Ok(Some((info, bytes))) => {
                if sha256_hex(&bytes) != info.sha256 {
                    unreadable.push(format!("{}: bytes differ from stat", key(i)));
                }
                stored += 1;
                history.record(
                    &key(i),
                    Op::ReadFound(value_of(&info.sha256)),
                    invoked,
                    Some(completed),
                );
            }
            Ok(None) => history.record(&key(i), Op::ReadAbsent, invoked, Some(completed)),
            Err(e) => unreadable.push(format!("{}: {e:#}", key(i))),
        }
    }
    let checked = history.check();
    eprintln!(
        "partition: leader {old_leader} cut off for {PARTITION:?}; new leader {new_leader} after {elected_after:?}; \
         cluster whole again {rejoined_after:?} after healing; puts acknowledged by the isolated side {acked_by_isolated} \
         (during the cut), by the majority {}; failed or unknown puts {}; reads {} ({} failed); keys stored {stored}/{KEYS}; \
         history {checked:?}",
        tally.acked_by_majority_side.load(Ordering::Relaxed),
        tally.failed_puts.load(Ordering::Relaxed),
        tally.reads.load(Ordering::Relaxed),
        tally.failed_reads.load(Ordering::Relaxed),
    );
    assert!(
        unreadable.is_empty(),
        "visible but unreadable: {unreadable:?}"
    );
    let checked = checked.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(
        acked_by_isolated, 0,
        "the isolated leader acknowledged writes it could not replicate"
    );
    assert!(
        tally.acked_by_majority_side.load(Ordering::Relaxed) > 0,
        "the majority side never wrote: the test proved nothing"
    );
    assert!(
        checked.operations > KEYS * 2,
        "too small a history: {checked:?}"
    );
    Ok(())
}
