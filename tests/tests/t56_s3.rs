//! The S3 port, spoken by boto3 (`tests/python/s3_gateway.py`) as a
//! vendor's software would: buckets, puts with checksums, reads with ranges
//! and conditions, listings, copies, deletes; the same objects, roles and
//! audit entries as the gRPC API; keys that stop working the moment they
//! are revoked, on any node. Needs python3 with boto3 (`.ci/run` installs
//! `tests/python/requirements.txt`); without it the test says SKIPPED.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tresor_proto::v1 as pb;
use tresor_tests::s3::{python_has, s3_key, skipped};
use tresor_tests::{cluster, pattern, sha256_hex, spec, wait_for, Harness};

const MIB: usize = 1 << 20;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/s3_gateway.py")
}

fn boto3_ready() -> bool {
    python_has("boto3")
}

/// Runs one scenario of the script against node `via`'s S3 port with
/// `(access key id, secret)`; its output, or an error naming what failed.
async fn scenario(
    h: &Harness,
    via: u64,
    (id, secret): (&str, &str),
    args: &[&str],
) -> anyhow::Result<String> {
    let ca = h.ca_dir().expect("a secure cluster").join("ca.pem");
    let mut child = tokio::process::Command::new("python3")
        .arg(script())
        .arg(args[0])
        .arg(h.s3_endpoint(via))
        .arg(&ca)
        .args(&args[1..])
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env_remove("AWS_CONFIG_FILE")
        .env_remove("AWS_PROFILE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read = |pipe: Option<tokio::process::ChildStdout>| async move {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            tokio::io::AsyncReadExt::read_to_string(&mut p, &mut text).await?;
        }
        anyhow::Ok(text)
    };
    let read_err = |pipe: Option<tokio::process::ChildStderr>| async move {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            tokio::io::AsyncReadExt::read_to_string(&mut p, &mut text).await?;
        }
        anyhow::Ok(text)
    };
    let ran = tokio::time::timeout(Duration::from_secs(180), async {
        let (out, err, status) = tokio::join!(read(stdout), read_err(stderr), child.wait());
        anyhow::Ok((out?, err?, status?))
    })
    .await;
    let (out, err, status) = match ran {
        Ok(done) => done?,
        Err(_) => anyhow::bail!("scenario {} did not finish in 180 s", args[0]),
    };
    anyhow::ensure!(
        status.success() && out.contains("PASSED"),
        "scenario {} failed:\n{out}\n{err}",
        args[0]
    );
    Ok(out)
}

/// Whether the audit log holds an entry of `principal` doing `action` on
/// `bucket`/`key` whose outcome starts with `outcome`.
fn logged(
    entries: &[pb::AuditEntry],
    principal: &str,
    action: &str,
    object: (&str, &str),
    outcome: &str,
) -> bool {
    entries.iter().any(|e| {
        e.principal == principal
            && e.action == action
            && e.bucket == object.0
            && e.key == object.1
            && e.outcome.starts_with(outcome)
    })
}

fn write(dir: &Path, name: &str, data: &[u8]) -> anyhow::Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, data)?;
    Ok(path.display().to_string())
}

#[tokio::test]
async fn s3_tools_store_read_list_copy_and_delete_with_the_grpc_apis_rules() -> anyhow::Result<()> {
    if skipped(boto3_ready(), "python3 with boto3") {
        return Ok(());
    }
    let mut s = spec(6, 3);
    s.s3 = true;
    let mut h = cluster!(data, spec = s)?;
    let admin_key = s3_key(&h, "admin").await?;
    let admin_key = (admin_key.0.as_str(), admin_key.1.as_str());

    // One object stored through gRPC, one through S3 (by the script).
    let dir = tempfile::tempdir()?;
    let native = pattern(MIB + 4321, 56);
    h.put(1, "footage", "grpc/native.bin", &native).await?;
    let one = pattern(3 * MIB + 77, 57);
    let one_file = write(dir.path(), "one.bin", &one)?;
    let native_file = write(dir.path(), "native.bin", &native)?;
    scenario(
        &h,
        2,
        admin_key,
        &["main", &one_file, "grpc/native.bin", &native_file],
    )
    .await?;

    // Presigned URLs, the region, virtual-hosted-style addresses.
    scenario(&h, 4, admin_key, &["addressing"]).await?;
    for (key, want) in [
        ("pre/signed.bin", &b"presigned bytes"[..]),
        ("vh/one.bin", b"virtual"),
    ] {
        let (_, bytes) = h.get(1, "footage", key, None, None).await?;
        assert_eq!(bytes.as_slice(), want, "{key}");
    }

    // Multipart: parts in any order and in parallel, one object.
    let big = pattern(13 * MIB + 999, 58);
    let big_file = write(dir.path(), "big.bin", &big)?;
    scenario(&h, 5, admin_key, &["multipart", &big_file]).await?;
    for key in ["mp/by-hand.bin", "mp/transfer.bin"] {
        let (info, bytes) = h.get(1, "footage", key, None, None).await?;
        assert_eq!(info.sha256, sha256_hex(&big), "{key}");
        assert_eq!(bytes.len(), big.len(), "{key}");
    }
    // A lock asked for at the start of an upload is the object's.
    let locked = h.stat(1, "footage", "lock/mp.bin").await?;
    let policy = locked.retention.map(|r| r.policy).unwrap_or_default();
    assert!(policy.starts_with("s3-keep-1"), "{policy}");
    let cases: Vec<&str> = locked.holds.iter().map(|h| h.case_id.as_str()).collect();
    assert_eq!(cases, ["s3-legal-hold"]);
    // The parts are gone with their uploads, and nobody reads them.
    let leftovers = h
        .admin(1)
        .await?
        .list_buckets(pb::ListBucketsRequest {})
        .await?
        .into_inner()
        .buckets;
    assert!(leftovers.iter().any(|b| b.name == "tresor.multipart"));
    let mut objects = h.objects(2).await?;
    let parts = objects
        .list(pb::ListRequest {
            bucket: "tresor.multipart".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        parts.map(|_| ()).map_err(|s| s.code()),
        Err(tonic::Code::PermissionDenied),
        "the parts bucket is kept by the cluster"
    );
    // Every part and upload record deleted: 4 + 1 by hand (part 2 was
    // sent twice), 3 + 1 by the transfer manager, 1 + 1 aborted, 1 + 1
    // locked.
    let leader = h.leader().await?;
    let entries = h.audit_log(leader, 100_000).await?;
    let deleted = entries
        .iter()
        .filter(|e| e.bucket == "tresor.multipart" && e.action == "delete" && e.outcome == "ok")
        .count();
    assert_eq!(deleted, 13, "parts and upload records deleted");

    // What S3 stored is the same object for the gRPC API.
    let (info, bytes) = h.get(3, "footage", "cam/one.bin", None, None).await?;
    assert_eq!(sha256_hex(&bytes), sha256_hex(&one));
    assert_eq!(info.sha256, sha256_hex(&one));
    assert_eq!(info.content_type, "video/mp4");
    assert_eq!(info.metadata.get("unit").map(String::as_str), Some("17"));

    // On record exactly as the gRPC calls are.
    let leader = h.leader().await?;
    let entries = h.audit_log(leader, 100_000).await?;
    let object = ("footage", "cam/one.bin");
    for (action, outcome) in [
        ("put", "ok"),
        ("get", "ok"),
        ("stat", "ok"),
        ("put", "already_exists"),
        ("get", "failed_precondition"),
    ] {
        assert!(
            logged(&entries, "admin", action, object, outcome),
            "no {action} {outcome} of {object:?} on record"
        );
    }
    assert!(logged(
        &entries,
        "admin",
        "list",
        ("footage", "list/"),
        "ok"
    ));
    assert!(logged(
        &entries,
        "admin",
        "delete",
        ("footage", "list/a/0.bin"),
        "ok"
    ));
    assert!(logged(
        &entries,
        "admin",
        "delete",
        ("footage", "list/never"),
        "not_found"
    ));
    assert!(logged(
        &entries,
        "admin",
        "bucket create",
        ("evidence", ""),
        "ok"
    ));
    assert!(logged(
        &entries,
        "admin",
        "bucket delete",
        ("evidence", ""),
        "ok"
    ));
    assert!(logged(
        &entries,
        "admin",
        "get",
        ("footage", "grpc/native.bin"),
        "ok"
    ));
    // A checksum refused: nothing stored, the failure on record.
    assert!(logged(
        &entries,
        "admin",
        "put",
        ("footage", "cam/bad-sha.bin"),
        "invalid_argument"
    ));
    assert!(h.stat(4, "footage", "cam/bad-md5.bin").await.is_err());
    let verified = h.audit_verify(leader).await?;
    assert!(verified.intact, "{verified:?}");

    // A camera's key: it may put, and nothing else; its refusals are on
    // record under its principal.
    let mut admin = h.admin(1).await?;
    admin
        .create_principal(pb::CreatePrincipalRequest {
            name: "camera-17".into(),
        })
        .await?;
    admin
        .grant(pb::GrantRequest {
            principal: "camera-17".into(),
            role: "ingest".into(),
            bucket: Some("footage".into()),
        })
        .await?;
    let camera = s3_key(&h, "camera-17").await?;
    scenario(&h, 4, (&camera.0, &camera.1), &["ingest"]).await?;
    let (_, stored) = h
        .get(5, "footage", "cam/from-camera.bin", None, None)
        .await?;
    assert_eq!(stored, b"camera bytes");
    wait_for(
        "the camera's put and refused get on record",
        Duration::from_secs(20),
        || async {
            let entries = h.audit_log(leader, 100_000).await?;
            let object = ("footage", "cam/from-camera.bin");
            let put = logged(&entries, "camera-17", "put", object, "ok");
            let refused = logged(&entries, "camera-17", "get", object, "permission_denied");
            Ok((put && refused).then_some(()))
        },
    )
    .await?;

    // Revoked through node 1, refused at once through node 6; a wrong
    // secret never gets in.
    admin
        .revoke_s3_key(pb::RevokeS3KeyRequest {
            access_key_id: camera.0.clone(),
        })
        .await?;
    scenario(
        &h,
        6,
        (&camera.0, &camera.1),
        &["refused", "InvalidAccessKeyId"],
    )
    .await?;
    let wrong = format!("{}x", &admin_key.1[1..]);
    scenario(
        &h,
        3,
        (admin_key.0, &wrong),
        &["refused", "SignatureDoesNotMatch"],
    )
    .await?;
    // Turned away by the signature check, before any handler: on record
    // as an unauthenticated call of the peer.
    wait_for(
        "the bad signature on record",
        Duration::from_secs(20),
        || async {
            let entries = h.audit_log(leader, 100_000).await?;
            let object = ("footage", "");
            let anonymous = "anonymous@127.0.0.1";
            Ok(logged(&entries, anonymous, "s3 request", object, "unauthenticated").then_some(()))
        },
    )
    .await?;
    let keys = admin
        .list_s3_keys(pb::ListS3KeysRequest {})
        .await?
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].principal, "admin");
    Ok(())
}

#[tokio::test]
async fn multipart_uploads_left_past_the_session_expiry_are_swept() -> anyhow::Result<()> {
    if skipped(boto3_ready(), "python3 with boto3") {
        return Ok(());
    }
    let mut s = spec(6, 3);
    s.s3 = true;
    // The shortest expiry there is.
    s.healing.session_expiry_secs = 60;
    let mut h = cluster!(data, spec = s)?;
    let key = s3_key(&h, "admin").await?;
    let key = (key.0.as_str(), key.1.as_str());
    let started = scenario(&h, 2, key, &["stale", "start"]).await?;
    let id = started
        .lines()
        .find_map(|l| l.strip_prefix("UPLOAD "))
        .ok_or_else(|| anyhow::anyhow!("no upload id in {started}"))?
        .to_string();
    tokio::time::sleep(Duration::from_secs(62)).await;
    scenario(&h, 3, key, &["stale", "sweep"]).await?;
    let leader = h.leader().await?;
    wait_for("the expiry on record", Duration::from_secs(30), || async {
        let entries = h.audit_log(leader, 100_000).await?;
        let object = ("footage", "mp/left.bin");
        Ok(logged(&entries, "admin", "upload expire", object, "ok").then_some(()))
    })
    .await?;
    scenario(&h, 4, key, &["stale", &id]).await?;
    Ok(())
}

/// Object Lock over S3 is tresor's evidence lifecycle: a retain-until date
/// moves the object to a policy that keeps it (and still deletes it when
/// the law does), a legal hold is a hold of case `s3-legal-hold`, a bucket
/// default is the bucket's policy; each on record as its gRPC twin, and
/// refused to a principal without the role.
#[tokio::test]
async fn object_lock_is_the_evidence_lifecycle() -> anyhow::Result<()> {
    if skipped(boto3_ready(), "python3 with boto3") {
        return Ok(());
    }
    const DAY_MS: u64 = 86_400_000;
    let mut s = spec(3, 3);
    s.s3 = true;
    let mut h = cluster!(spec = s)?;
    h.form().await?;
    let leader = h.leader().await?;
    let mut admin = h.admin(leader).await?;
    // Body-camera footage: deleted after 30 days by law.
    admin
        .create_retention(pb::CreateRetentionRequest {
            name: "bodycam".into(),
            keep_min_ms: None,
            delete_after_ms: Some(30 * DAY_MS),
        })
        .await?;
    admin
        .create_bucket(pb::CreateBucketRequest {
            name: "footage".into(),
            data: 2,
            parity: 1,
            retention: "bodycam".into(),
        })
        .await?;
    admin
        .create_principal(pb::CreatePrincipalRequest {
            name: "reader".into(),
        })
        .await?;
    admin
        .grant(pb::GrantRequest {
            principal: "reader".into(),
            role: "read".into(),
            bucket: Some("footage".into()),
        })
        .await?;
    let admin_key = s3_key(&h, "admin").await?;
    let reader_key = s3_key(&h, "reader").await?;
    scenario(&h, 2, (&admin_key.0, &admin_key.1), &["lock"]).await?;
    scenario(&h, 3, (&reader_key.0, &reader_key.1), &["lock-reader"]).await?;

    // Seen through gRPC: the 40-day lock kept the law's deletion, after it.
    let a = h.stat(1, "footage", "lock/a.bin").await?;
    let kept = a.retention.expect("a retention");
    assert!(kept.policy.starts_with("s3-keep-4"), "{kept:?}");
    let (until, deletes) = (kept.keep_until_ms.unwrap_or(0), kept.delete_at_ms);
    assert!(until >= a.created_ms + 40 * DAY_MS - 1000, "{kept:?}");
    assert!(deletes.is_some_and(|d| d >= until), "{kept:?}");
    let c = h.stat(1, "footage", "lock/c.bin").await?;
    let cases: Vec<&str> = c.holds.iter().map(|h| h.case_id.as_str()).collect();
    assert_eq!(cases, ["s3-legal-hold"]);
    let footage = admin
        .list_buckets(pb::ListBucketsRequest {})
        .await?
        .into_inner()
        .buckets
        .into_iter()
        .find(|b| b.name == "footage")
        .expect("footage");
    assert_eq!(footage.retention, "s3-keep-7d-delete-30d");

    // On record as the gRPC calls are.
    wait_for(
        "the lock calls on record",
        Duration::from_secs(20),
        || async {
            let entries = h.audit_log(leader, 100_000).await?;
            let by = |who: &str, action: &str, key_starts: &str, outcome: &str| {
                entries.iter().any(|e| {
                    e.principal == who
                        && e.action == action
                        && e.bucket == "footage"
                        && e.key.starts_with(key_starts)
                        && e.outcome.starts_with(outcome)
                })
            };
            let all = [
                by("admin", "retention extend", "lock/a.bin s3-keep-4", "ok"),
                by(
                    "admin",
                    "retention extend",
                    "lock/a.bin s3-keep-",
                    "failed_precondition",
                ),
                by("admin", "hold place", "s3-legal-hold k:lock/b.bin", "ok"),
                by(
                    "admin",
                    "hold place",
                    "s3-legal-hold k:lock/b.bin",
                    "already_exists",
                ),
                by("admin", "hold release", "s3-legal-hold k:lock/b.bin", "ok"),
                by("admin", "hold place", "s3-legal-hold k:lock/c.bin", "ok"),
                by(
                    "admin",
                    "bucket set-retention",
                    "s3-keep-7d-delete-30d",
                    "ok",
                ),
                by("reader", "stat", "lock/a.bin", "ok"),
                entries.iter().any(|e| {
                    e.principal == "reader"
                        && e.action == "retention extend"
                        && e.outcome.starts_with("permission_denied")
                }),
                entries.iter().any(|e| {
                    e.principal == "admin"
                        && e.action == "retention create"
                        && e.bucket.starts_with("s3-keep-")
                }),
            ];
            Ok(all.iter().all(|x| *x).then_some(()).or_else(|| {
                println!("not yet on record: {all:?}");
                None
            }))
        },
    )
    .await?;
    Ok(())
}
