//! Retention expiry on a real cluster whose leader's clock runs an hour
//! ahead: due objects are deleted by `system:retention` once, not before
//! their time (in cluster time, which a majority of clocks must reach),
//! never while held, and not after their retention was extended.

use std::time::{Duration, Instant};

use tonic::Code;
use tresor_proto::v1 as pb;
use tresor_tests::{pattern, spec, wait_for, Harness};

const BIN: &str = env!("CARGO_BIN_EXE_tresor-test-node");

/// How far node 1's clock runs ahead.
const AHEAD_MS: i64 = 3_600_000;
/// The policy's delete-after: long enough that the check before it is not
/// a race, short enough for a test.
const DELETE_AFTER_SECS: u64 = 20;

async fn gone(h: &Harness, key: &str) -> anyhow::Result<bool> {
    match h.stat(2, "footage", key).await {
        Ok(_) => Ok(false),
        Err(s) if s.code() == Code::NotFound => Ok(true),
        Err(s) => Err(s.into()),
    }
}

#[tokio::test]
async fn expiry_takes_due_footage_once_never_early_and_never_held() -> anyhow::Result<()> {
    let mut cluster = spec(3, 3);
    cluster.retention.expiry_interval_secs = 1;
    let mut h = Harness::new(BIN, cluster).await?;
    // Node 1 forms the cluster and so leads it, its clock an hour ahead: a
    // leader trusting its own clock would expire everything at once.
    h.restart_with_clock_offset(1, AHEAD_MS).await?;
    h.form().await?;
    let endpoint = h.endpoint(2);
    let ok = |args: &[&str]| -> anyhow::Result<String> {
        let mut all = vec!["--endpoint", &endpoint];
        all.extend_from_slice(args);
        let (fine, out, err) = Harness::cli(BIN, &all, Duration::from_secs(30))?;
        anyhow::ensure!(fine, "{args:?} failed: {err}");
        Ok(out)
    };
    let after = format!("{DELETE_AFTER_SECS}s");
    ok(&[
        "retention",
        "create",
        "quick",
        "--keep-min",
        "3s",
        "--delete-after",
        &after,
    ])?;
    ok(&[
        "retention",
        "create",
        "longer",
        "--keep-min",
        "3s",
        "--delete-after",
        "1h",
    ])?;
    ok(&[
        "bucket",
        "create",
        "footage",
        "--data",
        "2",
        "--parity",
        "1",
        "--retention",
        "quick",
    ])?;
    ok(&[
        "hold",
        "place",
        "2026/99",
        "--bucket",
        "footage",
        "--prefix",
        "held/",
        "--reason",
        "pending review",
    ])?;

    let keys = [
        "clip-1",
        "clip-2",
        "clip-3",
        "clip-4",
        "held/clip-5",
        "kept",
    ];
    for (i, key) in keys.iter().enumerate() {
        h.put(2, "footage", key, &pattern(2000, i as u64)).await?;
    }
    let uploaded = Instant::now();
    ok(&["retention", "extend", "footage/kept", "--policy", "longer"])?;

    // Node 1's clock is past keep_until, the cluster's is not: a delete
    // it coordinates is refused.
    let refused = h
        .objects(1)
        .await?
        .delete(pb::DeleteRequest {
            bucket: "footage".into(),
            key: "clip-1".into(),
        })
        .await
        .expect_err("refused before keep_until");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    // Several expiry passes later, well before delete_at: all still there.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        uploaded.elapsed() < Duration::from_secs(DELETE_AFTER_SECS - 5),
        "the machine was too slow to check before delete_at"
    );
    for key in keys {
        assert!(!gone(&h, key).await?, "{key} expired early");
    }
    assert_eq!(
        h.leader().await?,
        1,
        "the leader with the clock ahead must have led meanwhile"
    );

    // Once due in cluster time, the unheld clips go; the held one and the
    // extended one stay.
    wait_for("due clips to expire", Duration::from_secs(90), || async {
        for key in &keys[..4] {
            if !gone(&h, key).await? {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;
    assert!(!gone(&h, "held/clip-5").await?, "a held clip expired");
    assert!(!gone(&h, "kept").await?, "an extended clip expired");
    let workers = ok(&["--output", "json", "workers"])?;
    let workers: serde_json::Value = serde_json::from_str(&workers)?;
    let expiry = workers
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["name"] == "retention-expiry" && w["node"] == 1)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        expiry["counters"]["objects_expired"], 4,
        "workers: {workers}"
    );

    // Released, the held clip goes too.
    ok(&[
        "hold", "release", "2026/99", "--bucket", "footage", "--prefix", "held/",
    ])?;
    wait_for(
        "the released clip to expire",
        Duration::from_secs(60),
        || async { Ok(gone(&h, "held/clip-5").await?.then_some(())) },
    )
    .await?;

    // Each expiry is on record once, by system:retention with the policy.
    let entries = h.audit_log(2, 10_000).await?;
    for key in &keys[..5] {
        let expired: Vec<_> = entries
            .iter()
            .filter(|e| e.action == "expire" && e.key == *key)
            .collect();
        assert_eq!(expired.len(), 1, "{key}: {expired:?}");
        assert_eq!(expired[0].principal, "system:retention");
        assert!(expired[0].outcome.contains("quick"), "{expired:?}");
    }
    assert!(!gone(&h, "kept").await?, "an extended clip expired");

    // An expired key is never used again, and the refusal is on record.
    let refused = h
        .put(3, "footage", "clip-2", &pattern(100, 9))
        .await
        .expect_err("a deleted key reused");
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    let entries = h
        .admin(2)
        .await?
        .audit_log(pb::AuditLogRequest {
            limit: 10_000,
            key: "clip-2".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .entries;
    assert!(
        entries
            .iter()
            .any(|e| e.action == "put" && e.outcome == "already_exists"),
        "{entries:?}"
    );
    Ok(())
}
