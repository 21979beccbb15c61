//! The control plane at scale: with 100,000 objects in the state
//! (metadata-only fill), a snapshot built and sent to a joining node, a
//! quiet minute and a minute of 4 KiB puts pass without a single election.
//! (At about 43,000 objects the leader used to churn: every node decoded
//! every manifest every two seconds on an async worker, and snapshots were
//! built in memory between applies.)

use std::time::{Duration, Instant};

use tresor_node::config::{HealingTuning, RaftTuning};
use tresor_node::devcluster::fill::{fill_metadata, synthetic_key};
use tresor_proto::v1 as pb;
use tresor_tests::{cluster, spec, wait_for, Harness, HEAL_TIMEOUT};

const OBJECTS: u64 = 100_000;

/// Leader and term as the cluster reports them.
async fn leadership(h: &Harness, via: u64) -> anyhow::Result<(Option<u64>, u64)> {
    let s = h.status(via).await?;
    Ok((s.leader_id, s.term))
}

/// Puts 4 KiB objects with `writers` clients for `for_how_long`, or
/// `count` of them; how many were stored, and how many were answered
/// `UNAVAILABLE` (not committed in time), each printed.
async fn put_load(
    h: &Harness,
    prefix: &str,
    writers: u64,
    count: u64,
    for_how_long: Duration,
) -> anyhow::Result<(u64, u64)> {
    let started = Instant::now();
    let body = vec![0x42u8; 4096];
    let tasks = (0..writers).map(|w| {
        let body = &body;
        async move {
            let (mut stored, mut unavailable) = (0, 0);
            for i in (w..count).step_by(writers as usize) {
                if started.elapsed() >= for_how_long {
                    break;
                }
                match h
                    .put(1 + (i % 6), "footage", &format!("{prefix}/{i:06}"), body)
                    .await
                {
                    Ok(_) => stored += 1,
                    Err(s) if s.code() == tonic::Code::Unavailable => {
                        eprintln!("put {prefix}/{i:06}: {}", s.message());
                        unavailable += 1;
                    }
                    Err(s) => return Err(s.into()),
                }
            }
            anyhow::Ok((stored, unavailable))
        }
    });
    Ok(futures::future::try_join_all(tasks)
        .await?
        .into_iter()
        .fold((0, 0), |(s, u), (ws, wu)| (s + ws, u + wu)))
}

/// Watches leader and term every second for `span`: any change is an
/// election.
async fn no_election_for(
    h: &Harness,
    via: u64,
    span: Duration,
    before: (Option<u64>, u64),
) -> anyhow::Result<()> {
    let until = Instant::now() + span;
    while Instant::now() < until {
        let now = leadership(h, via).await?;
        assert_eq!(now, before, "an election happened");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

#[tokio::test]
async fn leadership_is_stable_under_metadata_load() -> anyhow::Result<()> {
    let mut s = spec(6, 3);
    // Production timing, snapshots every 1,000 entries with no log kept
    // behind them (so the joining node needs one), and no scrub (the
    // synthetic objects have no files).
    s.raft = RaftTuning {
        snapshot_after_entries: 1_000,
        keep_entries_after_snapshot: 0,
        ..RaftTuning::default()
    };
    s.healing = HealingTuning {
        scrub_interval_secs: 30 * 24 * 3600,
        ..HealingTuning::default()
    };
    let mut h = cluster!(spec = s)?;
    h.form().await?;
    let leader = h.leader().await?;
    h.create_bucket(leader, "footage", 4, 2).await?;
    // The fill copies one node's state to the others: they must all have
    // applied the same entries, and nothing be in flight.
    wait_for(
        "every node applied the same entries",
        HEAL_TIMEOUT,
        || async {
            let mut applied = Vec::new();
            for id in h.ids() {
                applied.push(h.local_status(id).await?.applied_index);
            }
            let commit = h.status(leader).await?.commit_index;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let still = h.status(leader).await?.commit_index;
            Ok((applied.iter().all(|a| *a == commit) && still == commit).then_some(()))
        },
    )
    .await?;
    h.stop_all().await;
    let filled = Instant::now();
    let dirs: Vec<_> = h.ids().into_iter().map(|id| h.data_dir(id)).collect();
    fill_metadata(&dirs, "footage", OBJECTS)?;
    eprintln!(
        "metadata-only fill of {OBJECTS} objects on 6 nodes: {:?}",
        filled.elapsed()
    );
    h.start_all().await?;
    let leader = h.leader().await?;

    // Enough entries that every node snapshots its state (the synthetic
    // objects with it) and drops the log before it.
    let before_puts = h.local_status(leader).await?.applied_index;
    let (_, refused) = put_load(&h, "warm", 8, 600, Duration::from_secs(300)).await?;
    assert_eq!(refused, 0, "puts not committed in time while warming up");
    wait_for(
        "the leader compacts its log past the fill",
        HEAL_TIMEOUT,
        || async {
            let s = h.local_status(leader).await?;
            Ok(s.purged_index.filter(|p| *p > before_puts))
        },
    )
    .await?;

    // A quiet minute, while a joining node gets the snapshot.
    let calm = leadership(&h, leader).await?;
    assert_eq!(calm.0, Some(leader));
    let new = h.spawn_new_node("dc1").await?;
    h.add_node(leader, new).await?;
    let target = h.local_status(leader).await?.applied_index;
    let joined = Instant::now();
    no_election_for(&h, leader, Duration::from_secs(60), calm).await?;
    let s = h.local_status(new).await?;
    assert!(
        s.applied_index >= target,
        "the new node caught up within the minute"
    );
    eprintln!(
        "new node caught up; snapshot at {:?} (quiet minute from {:?} ago)",
        s.snapshot_index,
        joined.elapsed()
    );
    let probe = h.stat(new, "footage", &synthetic_key(OBJECTS - 1)).await?;
    assert_eq!(probe.size, 4096, "the snapshot carried the filled state");

    // A minute of 4 KiB puts. Every node snapshots this state several
    // times meanwhile, while applies go on: no commit may wait for a dump
    // (they did, past the 10 s proposal deadline on a busy machine).
    let (stored, unavailable) = put_load(&h, "load", 4, u64::MAX, Duration::from_secs(60)).await?;
    assert_eq!(unavailable, 0, "puts not committed in time");
    assert_eq!(
        leadership(&h, leader).await?,
        calm,
        "an election happened under load"
    );
    eprintln!("{stored} puts in the loaded minute, {unavailable} not committed in time");
    assert!(stored > 0);
    let listed = h
        .objects(new)
        .await?
        .list(pb::ListRequest {
            bucket: "footage".into(),
            prefix: "synthetic/".into(),
            page_size: 10_000,
            page_token: synthetic_key(OBJECTS - 5),
        })
        .await?
        .into_inner();
    assert_eq!(listed.objects.len(), 4);
    Ok(())
}
