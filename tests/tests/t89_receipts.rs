//! Deletion receipts on a real cluster: a user's delete and an expiry each
//! leave a receipt signed by the cluster's signer, which `tresor receipt
//! verify` accepts with the CA alone, and refuses — naming what failed —
//! once a byte is changed or against another cluster's CA. The receipt
//! names the deletion's audit entry and the shard files removed; a put to
//! the key is refused, pointing at the receipt.

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

#[tokio::test]
async fn deletions_leave_signed_receipts_that_verify_offline() -> anyhow::Result<()> {
    let mut cluster = spec(3, 3);
    cluster.retention.expiry_interval_secs = 1;
    let mut h = Harness::new(BIN, cluster).await?;
    h.form().await?;
    let endpoint = h.endpoint(2);
    let ok = |args: &[&str]| -> anyhow::Result<String> {
        let mut all = vec!["--endpoint", &endpoint];
        all.extend_from_slice(args);
        let (fine, out, err) = Harness::cli(BIN, &all, Duration::from_secs(30))?;
        anyhow::ensure!(fine, "{args:?} failed: {err}");
        Ok(out)
    };
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

    // A user's delete.
    h.objects(3)
        .await?
        .delete(pb::DeleteRequest {
            bucket: "cases".into(),
            key: "clip-a".into(),
        })
        .await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("clip-a.receipt.json");
    let signed = receipt(&endpoint, "cases/clip-a", &file).await?;
    let ca = process_pki()?.ca_cert.clone();
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
