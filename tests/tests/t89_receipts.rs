//! Deletion receipts and custody bundles on a real cluster: a user's delete
//! and an expiry each leave a receipt signed by the cluster's signer, which
//! `tresor receipt verify` accepts with the CA alone, and refuses — naming
//! what failed — once a byte is changed or against another cluster's CA.
//! The receipt names the deletion's audit entry and the shard files
//! removed; a put to the key is refused, pointing at the receipt. A custody
//! bundle of the object, before and after its deletion, verifies offline
//! against the footage and fails once altered.

use std::time::Duration;

use tonic::Code;
use tresor_client::receipt::SignedReceipt;
use tresor_proto::v1 as pb;
use tresor_tests::{pattern, process_pki, spec, wait_for, Harness};

const BIN: &str = env!("CARGO_BIN_EXE_tresor-test-node");
const CLI: &str = env!("CARGO_BIN_EXE_tresor-test-cli");
/// Above the packing threshold: one shard file per node.
const SIZE: usize = 200 * 1024;

/// The receipt of `bucket/key`, once issued, written to `file`.
async fn receipt(
    endpoint: &str,
    object: &str,
    file: &std::path::Path,
) -> anyhow::Result<SignedReceipt> {
    let path = file.to_string_lossy().into_owned();
    wait_for(
        &format!("the receipt of {object}"),
        Duration::from_secs(60),
        || async {
            let args = [
                "--endpoint",
                endpoint,
                "receipts",
                "get",
                object,
                "-o",
                &path,
            ];
            let (fine, _, err) = Harness::cli(BIN, &args, Duration::from_secs(30))?;
            if !fine {
                anyhow::ensure!(err.contains("still being issued"), "{err}");
                return Ok(None);
            }
            Ok(Some(SignedReceipt::from_json(&std::fs::read_to_string(
                file,
            )?)?))
        },
    )
    .await
}

/// `tresor receipt verify FILE` with `ca`: (success, stdout, stderr).
fn verify(file: &std::path::Path, ca: &std::path::Path) -> anyhow::Result<(bool, String, String)> {
    let (file, ca) = (file.to_string_lossy(), ca.to_string_lossy());
    Harness::cli_env(
        CLI,
        &["receipt", "verify", &file],
        &[("TRESOR_CA", &ca)],
        Duration::from_secs(30),
    )
    .map(|(ok, out, err)| (ok, String::from_utf8_lossy(&out).into_owned(), err))
}

/// `tresor-node ARGS` through `endpoint`; its stdout, or an error with
/// its stderr.
fn node_cli(endpoint: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["--endpoint", endpoint];
    all.extend_from_slice(args);
    let (fine, out, err) = Harness::cli(BIN, &all, Duration::from_secs(30))?;
    anyhow::ensure!(fine, "{args:?} failed: {err}");
    Ok(out)
}

/// `tresor custody OBJECT -o BUNDLE` through `endpoint`.
fn export_custody(endpoint: &str, object: &str, bundle: &std::path::Path) -> anyhow::Result<()> {
    let bundle = bundle.to_string_lossy();
    let args = ["--endpoint", endpoint, "custody", object, "-o", &bundle];
    let (fine, _, err) = Harness::cli_env(CLI, &args, &[], Duration::from_secs(30))?;
    anyhow::ensure!(fine, "custody {object}: {err}");
    Ok(())
}

/// `tresor custody verify BUNDLE [--file FOOTAGE]` with `ca`.
fn custody_verify(
    bundle: &std::path::Path,
    footage: Option<&std::path::Path>,
    ca: &std::path::Path,
) -> anyhow::Result<(bool, String, String)> {
    let (bundle, ca) = (bundle.to_string_lossy(), ca.to_string_lossy());
    let footage = footage.map(|f| f.to_string_lossy().into_owned());
    let mut args = vec!["custody", "verify", &bundle];
    if let Some(f) = &footage {
        args.extend(["--file", f]);
    }
    Harness::cli_env(CLI, &args, &[("TRESOR_CA", &ca)], Duration::from_secs(30))
        .map(|(ok, out, err)| (ok, String::from_utf8_lossy(&out).into_owned(), err))
}

#[tokio::test]
async fn deletions_leave_signed_receipts_that_verify_offline() -> anyhow::Result<()> {
    let mut cluster = spec(3, 3);
    cluster.retention.expiry_interval_secs = 1;
    let mut h = Harness::new(BIN, cluster).await?;
    h.form().await?;
    let endpoint = h.endpoint(2);
    let ok = |args: &[&str]| node_cli(&endpoint, args);
    ok(&["retention", "create", "quick", "--delete-after", "6s"])?;
    for (bucket, policy) in [("cases", None), ("footage", Some("quick"))] {
        let mut args = vec!["bucket", "create", bucket, "--data", "2", "--parity", "1"];
        if let Some(p) = policy {
            args.extend(["--retention", p]);
        }
        ok(&args)?;
    }
    let clip = pattern(SIZE, 1);
    let put = h.put(2, "cases", "clip-a", &clip).await?;
    h.put(2, "footage", "clip-b", &pattern(SIZE, 2)).await?;

    // Its chain of custody while it exists: the ingest, a read, checked
    // offline against the footage itself.
    h.get(1, "cases", "clip-a", None, None).await?;
    let dir = tempfile::tempdir()?;
    let ca = process_pki()?.ca_cert.clone();
    let footage = dir.path().join("clip-a.mp4");
    std::fs::write(&footage, &clip)?;
    let bundle = dir.path().join("clip-a.custody.json");
    export_custody(&endpoint, "cases/clip-a", &bundle)?;
    let (fine, out, err) = custody_verify(&bundle, Some(&footage), &ca)?;
    assert!(fine, "{out}{err}");
    assert!(
        out.contains("ingested at") && out.contains(" get ") && out.contains("custody export"),
        "{out}"
    );
    // One entry's principal changed in the file: the signature fails.
    let text = std::fs::read_to_string(&bundle)?;
    let forged = dir.path().join("forged.json");
    std::fs::write(
        &forged,
        text.replacen(
            "\\\"principal\\\":\\\"admin\\\"",
            "\\\"principal\\\":\\\"nobody\\\"",
            1,
        ),
    )?;
    let (fine, _, err) = custody_verify(&forged, None, &ca)?;
    assert!(!fine && err.contains("signature"), "{err}");
    // Other footage.
    std::fs::write(&footage, pattern(SIZE, 9))?;
    let (fine, _, err) = custody_verify(&bundle, Some(&footage), &ca)?;
    assert!(!fine && err.contains("footage"), "{err}");

    // A user's delete.
    h.objects(3)
        .await?
        .delete(pb::DeleteRequest {
            bucket: "cases".into(),
            key: "clip-a".into(),
        })
        .await?;
    let file = dir.path().join("clip-a.receipt.json");
    let signed = receipt(&endpoint, "cases/clip-a", &file).await?;
    let body = signed.verify(&std::fs::read_to_string(&ca)?)?;
    assert_eq!(
        (body.bucket.as_str(), body.key.as_str()),
        ("cases", "clip-a")
    );
    assert_eq!(body.sha256, put.sha256);
    assert_eq!(body.size, SIZE as u64);
    assert_eq!(body.ingested_by, "admin");
    assert_eq!(body.deleted_by, "admin");
    assert_eq!(body.reason, "deleted by admin");
    assert!(body.data_key_removed, "the object was encrypted");
    assert_eq!(body.shard_files_removed, 3, "one shard file on each node");
    assert!(body.holders_unreached.is_empty());
    let deletion = h
        .audit_log(2, 1000)
        .await?
        .into_iter()
        .find(|e| e.action == "delete" && e.key == "clip-a")
        .ok_or_else(|| anyhow::anyhow!("the delete is not in the audit log"))?;
    assert_eq!(
        body.audit_seq, deletion.seq,
        "the receipt names the audit entry"
    );

    // Offline, with the CA alone.
    let (fine, out, err) = verify(&file, &ca)?;
    assert!(fine && out.contains("verified: cases/clip-a"), "{out}{err}");
    // One byte of the body changed.
    let text = std::fs::read_to_string(&file)?;
    let altered = dir.path().join("altered.json");
    let size_field = format!("\\\"size\\\":{SIZE}");
    assert!(text.contains(&size_field), "{text}");
    std::fs::write(
        &altered,
        text.replace(&size_field, &format!("\\\"size\\\":{}", SIZE + 1)),
    )?;
    let (fine, _, err) = verify(&altered, &ca)?;
    assert!(!fine && err.contains("signature"), "{err}");
    // Another cluster's CA.
    let other = dir.path().join("other-ca");
    tresor_node::tls::init_ca(&other)?;
    let (fine, _, err) = verify(&file, &other.join("ca.pem"))?;
    assert!(!fine && err.contains("not issued by this CA"), "{err}");

    // Its custody bundle now carries the receipt, and the delete.
    export_custody(&endpoint, "cases/clip-a", &bundle)?;
    let (fine, out, err) = custody_verify(&bundle, None, &ca)?;
    assert!(
        fine && out.contains("deleted: its signed deletion receipt"),
        "{out}{err}"
    );
    assert!(out.contains(" delete "), "{out}");

    // The key is never used again, and the refusal points at the receipt.
    let again = h
        .put(1, "cases", "clip-a", &clip)
        .await
        .expect_err("a deleted key is not reused");
    assert_eq!(again.code(), Code::AlreadyExists);
    assert!(
        again.message().contains("receipts get cases/clip-a"),
        "{again:?}"
    );

    // An expiry: signed the same way, by system:retention.
    let expired = receipt(&endpoint, "footage/clip-b", &dir.path().join("b.json")).await?;
    let body = expired.verify(&std::fs::read_to_string(&ca)?)?;
    assert_eq!(body.deleted_by, "system:retention");
    assert_eq!(body.reason, "retention policy quick");
    assert_eq!(body.shard_files_removed, 3);

    // Both listed.
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["--output", "json", "receipts", "ls"])?)?;
    let names: Vec<String> = listed
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| format!("{}/{}", r["bucket"], r["key"]).replace('"', ""))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, ["cases/clip-a", "footage/clip-b"]);
    Ok(())
}

/// Receipts of bucket `bucket`, listed through node `via`, each verified.
async fn verified_receipts(
    h: &Harness,
    via: u64,
    bucket: &str,
) -> anyhow::Result<Vec<tresor_client::receipt::ReceiptBody>> {
    let ca = std::fs::read_to_string(&process_pki()?.ca_cert)?;
    let listed = h
        .admin(via)
        .await?
        .list_receipts(pb::ListReceiptsRequest {
            bucket: bucket.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    listed
        .receipts
        .iter()
        .map(|r| Ok(SignedReceipt::from_json(&r.receipt_json)?.verify(&ca)?))
        .collect()
}

/// Expiry and receipts go on under a new leader with the old one down:
/// every due object expires exactly once (one audit entry each), none is
/// missed, and the receipts of those expired after the loss name the
/// dead node as a holder not reached.
#[tokio::test]
async fn expiry_goes_on_through_a_leader_change_and_a_node_down() -> anyhow::Result<()> {
    const EACH: usize = 8;
    let mut cluster = spec(3, 3);
    cluster.retention.expiry_interval_secs = 1;
    let mut h = Harness::new(BIN, cluster).await?;
    h.form().await?;
    let leader = h.leader().await?;
    let alive = *h
        .ids()
        .iter()
        .find(|id| **id != leader)
        .ok_or_else(|| anyhow::anyhow!("one node"))?;
    let endpoint = h.endpoint(alive);
    let ok = |args: &[&str]| node_cli(&endpoint, args);
    ok(&["retention", "create", "soon", "--delete-after", "3s"])?;
    ok(&["retention", "create", "later", "--delete-after", "20s"])?;
    for (bucket, policy) in [("early", "soon"), ("late", "later")] {
        ok(&[
            "bucket",
            "create",
            bucket,
            "--data",
            "2",
            "--parity",
            "1",
            "--retention",
            policy,
        ])?;
    }
    for i in 0..EACH {
        for bucket in ["early", "late"] {
            h.put(
                alive,
                bucket,
                &format!("clip-{i}"),
                &pattern(SIZE, i as u64),
            )
            .await?;
        }
    }
    // The leader expires the early ones, then dies.
    wait_for(
        "the early clips expired",
        Duration::from_secs(60),
        || async {
            let listed = h
                .objects(alive)
                .await?
                .list(pb::ListRequest {
                    bucket: "early".into(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(listed.objects.is_empty().then_some(()))
        },
    )
    .await?;
    h.kill(leader);
    // The late ones expire under the next leader, with the old one down.
    let receipts = wait_for("every clip's receipt", Duration::from_secs(90), || async {
        let (early, late) = (
            verified_receipts(&h, alive, "early").await?,
            verified_receipts(&h, alive, "late").await?,
        );
        Ok((early.len() == EACH && late.len() == EACH).then_some((early, late)))
    })
    .await?;
    let (early, late) = receipts;
    for r in early.iter().chain(&late) {
        assert_eq!(
            r.shard_files_removed + r.holders_unreached.len() as u64,
            3,
            "each of the three nodes held one shard file: {r:?}"
        );
    }
    for r in &late {
        assert_eq!(r.holders_unreached, [leader], "{r:?}");
        assert_eq!(r.reason, "retention policy later");
    }
    // Exactly once each, on record.
    let mut expired: Vec<String> = h
        .audit_log(alive, 1000)
        .await?
        .into_iter()
        .filter(|e| e.action == "expire")
        .map(|e| format!("{}/{}", e.bucket, e.key))
        .collect();
    expired.sort();
    let mut wanted: Vec<String> = (0..EACH)
        .flat_map(|i| [format!("early/clip-{i}"), format!("late/clip-{i}")])
        .collect();
    wanted.sort();
    assert_eq!(expired, wanted, "each clip expired once");
    Ok(())
}
