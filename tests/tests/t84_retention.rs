//! Evidence lifecycle on a real cluster: retention policies fixed into
//! objects at ingest, deletes refused to every principal before
//! `keep_until` and while a legal hold covers an object (a prefix hold also
//! covering later uploads), retention only ever extended, the custodian
//! role, and every refusal on record in the audit log.

use std::time::Duration;

use tonic::Code;
use tresor_proto::v1 as pb;
use tresor_tests::{cluster, pattern, wait_for, Harness};

const BIN: &str = env!("CARGO_BIN_EXE_tresor-test-node");
const CLI: &str = env!("CARGO_BIN_EXE_tresor-test-cli");

async fn delete_as(
    h: &Harness,
    via: u64,
    creds: &tresor_client::Credentials,
    key: &str,
) -> Result<(), tonic::Status> {
    h.objects_with(via, creds)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?
        .delete(pb::DeleteRequest {
            bucket: "footage".into(),
            key: key.into(),
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn retention_and_holds_keep_footage_from_every_principal() -> anyhow::Result<()> {
    let mut h = cluster!(3)?;
    h.form().await?;
    let endpoint = h.endpoint(2);
    let node_cli = |args: &[&str]| -> anyhow::Result<(bool, String, String)> {
        let mut all = vec!["--endpoint", &endpoint];
        all.extend_from_slice(args);
        Harness::cli(BIN, &all, Duration::from_secs(30))
    };
    let ok = |args: &[&str]| -> anyhow::Result<String> {
        let (ok, out, err) = node_cli(args)?;
        anyhow::ensure!(ok, "{args:?} failed: {err}");
        Ok(out)
    };

    // Policies and a bucket whose objects get one.
    ok(&[
        "retention",
        "create",
        "short-min",
        "--keep-min",
        "3s",
        "--delete-after",
        "1h",
    ])?;
    ok(&["retention", "create", "case-material", "--keep-min", "10y"])?;
    let (fine, _, err) = node_cli(&[
        "retention",
        "create",
        "odd",
        "--keep-min",
        "2d",
        "--delete-after",
        "1d",
    ])?;
    assert!(!fine && err.contains("shorter than keep-min"), "{err}");
    let listed = ok(&["--output", "json", "retention", "ls"])?;
    let listed: serde_json::Value = serde_json::from_str(&listed)?;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    ok(&[
        "bucket",
        "create",
        "footage",
        "--data",
        "2",
        "--parity",
        "1",
        "--retention",
        "short-min",
    ])?;

    h.put(1, "footage", "clip-a", &pattern(3000, 1)).await?;
    h.put(1, "footage", "clip-b", &pattern(3000, 2)).await?;
    let a = h.stat(3, "footage", "clip-a").await?;
    let r = a.retention.clone().expect("retention shown by stat");
    assert_eq!(r.policy, "short-min");
    assert_eq!(r.keep_until_ms, Some(a.created_ms + 3_000));
    assert_eq!(r.delete_at_ms, Some(a.created_ms + 3_600_000));
    // The user CLI shows it too.
    let (fine, out, err) = Harness::cli(
        CLI,
        &[
            "--endpoint",
            &endpoint,
            "--output",
            "json",
            "stat",
            "footage/clip-a",
        ],
        Duration::from_secs(30),
    )?;
    assert!(fine, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(shown["retention"]["policy"], "short-min", "{shown}");
    // And its listing.
    let (fine, out, err) = Harness::cli(
        CLI,
        &["--endpoint", &endpoint, "--output", "json", "ls", "footage"],
        Duration::from_secs(30),
    )?;
    assert!(fine, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(listed[0]["key"], "clip-a", "{listed}");
    assert_eq!(
        listed[0]["retention"]["delete_at_ms"],
        serde_json::json!(a.created_ms + 3_600_000),
        "{listed}"
    );

    // Write-once: not even the bootstrap admin deletes before keep_until.
    let admin = h.credentials().clone();
    let early = delete_as(&h, 2, &admin, "clip-a")
        .await
        .expect_err("early delete");
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");
    assert!(early.message().contains("short-min"), "{}", early.message());
    assert!(h.stat(1, "footage", "clip-a").await.is_ok(), "still there");

    // A custodian holds clip-b for a case and every key under later/,
    // including keys not uploaded yet.
    for args in [
        &["principal", "create", "custodian"][..],
        &["grant", "custodian", "custodian", "--bucket", "footage"],
    ] {
        ok(args)?;
    }
    let custodian = h.client_credentials("custodian")?;
    let mut as_custodian = tresor_client::admin_with(&h.endpoint(3), &custodian).await?;
    as_custodian
        .place_hold(pb::PlaceHoldRequest {
            case_id: "2026/4711-K".into(),
            bucket: "footage".into(),
            target: Some(pb::place_hold_request::Target::Key("clip-b".into())),
            reason: "assault at the station, prosecution pending".into(),
        })
        .await?;
    ok(&[
        "hold",
        "place",
        "2026/4712",
        "--bucket",
        "footage",
        "--prefix",
        "later/",
        "--reason",
        "review of the recording",
    ])?;
    h.put(1, "footage", "later/clip-c", &pattern(3000, 3))
        .await?;
    let c = h.stat(2, "footage", "later/clip-c").await?;
    let cases: Vec<&str> = c.holds.iter().map(|h| h.case_id.as_str()).collect();
    assert_eq!(cases, ["2026/4712"]);
    let b = h.stat(2, "footage", "clip-b").await?;
    assert_eq!(b.holds.len(), 1);
    assert_eq!(b.holds[0].placed_by, "custodian");

    // Past keep_until: the unheld clip goes, the held ones stay, whoever asks.
    wait_for(
        "clip-a's keep_until to pass",
        Duration::from_secs(30),
        || async { Ok(delete_as(&h, 1, &admin, "clip-a").await.ok()) },
    )
    .await?;
    for key in ["clip-b", "later/clip-c"] {
        let refused = delete_as(&h, 1, &admin, key).await.expect_err("held");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{key}");
        assert!(
            refused.message().contains("legal hold"),
            "{}",
            refused.message()
        );
    }

    // Retention only lengthens.
    ok(&[
        "retention",
        "extend",
        "footage/clip-b",
        "--policy",
        "case-material",
    ])?;
    let (fine, _, err) = node_cli(&[
        "retention",
        "extend",
        "footage/clip-b",
        "--policy",
        "short-min",
    ])?;
    assert!(!fine && err.contains("only ever extended"), "{err}");
    let b = h.stat(2, "footage", "clip-b").await?;
    assert_eq!(b.retention.map(|r| r.policy), Some("case-material".into()));

    // Holds are listed, then released; the released prefix no longer keeps
    // its clip, the extended policy still keeps clip-b.
    let holds = ok(&["--output", "json", "hold", "ls", "--bucket", "footage"])?;
    let holds: serde_json::Value = serde_json::from_str(&holds)?;
    assert_eq!(holds.as_array().map(Vec::len), Some(2), "{holds}");
    as_custodian
        .release_hold(pb::ReleaseHoldRequest {
            case_id: "2026/4711-K".into(),
            bucket: "footage".into(),
            target: Some(pb::release_hold_request::Target::Key("clip-b".into())),
        })
        .await?;
    ok(&[
        "hold",
        "release",
        "2026/4712",
        "--bucket",
        "footage",
        "--prefix",
        "later/",
    ])?;
    let holds = ok(&["--output", "json", "hold", "ls"])?;
    assert_eq!(holds.trim(), "[]");
    // Released, clip-c goes once its own keep_until (3 s after its later
    // upload) has passed — a hold is never again the reason.
    wait_for(
        "clip-c's keep_until to pass",
        Duration::from_secs(30),
        || async {
            match delete_as(&h, 3, &admin, "later/clip-c").await {
                Ok(_) => Ok(Some(())),
                Err(e) if e.message().contains("legal hold") => {
                    anyhow::bail!("still held after release: {}", e.message())
                }
                Err(e) if e.message().contains("kept until") => Ok(None),
                Err(e) => Err(e.into()),
            }
        },
    )
    .await?;
    let kept = delete_as(&h, 3, &admin, "clip-b").await.expect_err("kept");
    assert!(
        kept.message().contains("case-material"),
        "{}",
        kept.message()
    );

    // Every refusal and every hold is on record.
    let entries = h.audit_log(1, 10_000).await?;
    let has = |principal: &str, action: &str, key: &str, outcome: &str| {
        entries.iter().any(|e| {
            e.principal == principal
                && e.action == action
                && e.key.contains(key)
                && e.outcome == outcome
        })
    };
    assert!(has("admin", "delete", "clip-a", "failed_precondition"));
    assert!(has("admin", "delete", "clip-a", "ok"));
    assert!(has("admin", "delete", "clip-b", "failed_precondition"));
    assert!(has("custodian", "hold place", "2026/4711-K", "ok"));
    assert!(has("custodian", "hold release", "2026/4711-K", "ok"));
    assert!(has(
        "admin",
        "retention extend",
        "clip-b",
        "failed_precondition"
    ));
    Ok(())
}
