//! The S3 port spoken by the official AWS SDK for Rust (`aws-sdk-s3`), as
//! a vendor's Rust software speaks it: every operation tresor serves, a
//! multipart upload with a part cut off mid-way and sent again, range
//! reads, conditional GETs, presigned GET and PUT URLs and their expiry,
//! the refusals tools act on (`SignatureDoesNotMatch`,
//! `InvalidAccessKeyId`, `AccessDenied` for an ingest-only key reading),
//! the same bytes and SHA-256 through gRPC, and the calls on record in the
//! audit log as their gRPC twins.

mod sdk;

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier, ObjectLockLegalHold,
    ObjectLockLegalHoldStatus, ObjectLockRetention, ObjectLockRetentionMode,
};
use aws_sdk_s3::Client;
use base64::Engine as _;
use sdk::{body, client, code, fetch, md5_b64, quoted_md5, refusals, status, CutBody};
use tresor_tests::s3::s3_key;
use tresor_tests::{cluster, pattern, sha256_hex, spec, wait_for, Harness};

const MIB: usize = 1 << 20;

#[tokio::test]
async fn the_aws_sdk_for_rust_speaks_to_the_s3_port() -> anyhow::Result<()> {
    let mut s = spec(6, 3);
    s.s3 = true;
    let mut h = cluster!(data, spec = s)?;
    let leader = h.leader().await?;
    let admin_key = s3_key(&h, "admin").await?;
    let admin = (admin_key.0.as_str(), admin_key.1.as_str());
    let s3 = client(&h, 2, admin)?;

    buckets(&s3).await?;
    let one = objects(&h, &s3).await?;
    listings(&s3).await?;
    multipart(&h, &s3).await?;
    lock(&s3).await?;
    presigned(&h, &s3, &one).await?;
    refusals(&h, admin).await?;

    // What S3 stored is the same object for the native API.
    let (info, bytes) = h.get(5, "sdk", "clip/one.bin", None, None).await?;
    assert!(bytes == one, "other bytes through gRPC");
    assert_eq!(info.sha256, sha256_hex(&one));
    let got = body(
        s3.get_object()
            .bucket("sdk")
            .key("clip/one.bin")
            .send()
            .await?,
    )
    .await?;
    assert_eq!(sha256_hex(&got), info.sha256);

    // On record as the gRPC calls they map to.
    wait_for(
        "the SDK's calls on record",
        Duration::from_secs(30),
        || async {
            let entries = h.audit_log(leader, 100_000).await?;
            let on_record = |who: &str, action: &str, bucket: &str, key: &str, outcome: &str| {
                entries.iter().any(|e| {
                    e.principal == who
                        && e.action == action
                        && e.bucket == bucket
                        && e.key == key
                        && e.outcome.starts_with(outcome)
                })
            };
            let all = [
                on_record("admin", "bucket create", "sdk", "", "ok"),
                on_record("admin", "put", "sdk", "clip/one.bin", "ok"),
                on_record("admin", "get", "sdk", "clip/one.bin", "ok"),
                on_record("admin", "stat", "sdk", "clip/one.bin", "ok"),
                on_record("admin", "list", "sdk", "list/", "ok"),
                on_record("admin", "delete", "sdk", "clip/copy.bin", "ok"),
                on_record("admin", "put", "sdk", "mp/cut.bin", "ok"),
                on_record("admin", "put", "sdk", "pre/signed.bin", "ok"),
                on_record("camera-9", "put", "footage", "cam/9.bin", "ok"),
                on_record(
                    "camera-9",
                    "get",
                    "footage",
                    "cam/9.bin",
                    "permission_denied",
                ),
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

/// ListBuckets, CreateBucket, HeadBucket, GetBucketLocation, DeleteBucket.
async fn buckets(s3: &Client) -> anyhow::Result<()> {
    s3.create_bucket().bucket("sdk").send().await?;
    let again = s3.create_bucket().bucket("sdk").send().await;
    assert_eq!(code(again), "BucketAlreadyOwnedByYou");
    s3.head_bucket().bucket("sdk").send().await?;
    let missing = s3.head_bucket().bucket("nowhere").send().await;
    assert_eq!(status(missing), Some(404));
    let names: Vec<String> = s3
        .list_buckets()
        .send()
        .await?
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect();
    assert!(
        names.contains(&"sdk".into()) && names.contains(&"footage".into()),
        "{names:?}"
    );
    let location = s3.get_bucket_location().bucket("sdk").send().await?;
    // us-east-1, which S3 writes as no constraint.
    let constraint = location.location_constraint().map(|c| c.as_str());
    assert_eq!(constraint.unwrap_or_default(), "");
    s3.create_bucket().bucket("empty").send().await?;
    s3.delete_bucket().bucket("empty").send().await?;
    let gone = s3.head_bucket().bucket("empty").send().await;
    assert_eq!(status(gone), Some(404));
    Ok(())
}

/// PutObject (checksums, metadata), GetObject (ranges, conditions),
/// HeadObject, CopyObject, DeleteObject, DeleteObjects. The bytes of
/// `clip/one.bin`.
async fn objects(h: &Harness, s3: &Client) -> anyhow::Result<Vec<u8>> {
    let one = pattern(3 * MIB + 101, 71);
    let put = s3
        .put_object()
        .bucket("sdk")
        .key("clip/one.bin")
        .content_md5(md5_b64(&one))
        .content_type("video/mp4")
        .metadata("unit", "17")
        .body(ByteStream::from(one.clone()))
        .send()
        .await?;
    assert_eq!(put.e_tag(), Some(quoted_md5(&one).as_str()));
    let two = pattern(MIB + 3, 72);
    let sha = base64::engine::general_purpose::STANDARD
        .encode(<sha2::Sha256 as sha2::Digest>::digest(&two));
    s3.put_object()
        .bucket("sdk")
        .key("clip/two.bin")
        .checksum_sha256(sha)
        .body(ByteStream::from(two.clone()))
        .send()
        .await?;
    let wrong = s3
        .put_object()
        .bucket("sdk")
        .key("clip/bad.bin")
        .content_md5(md5_b64(b"other bytes"))
        .body(ByteStream::from(two.clone()))
        .send()
        .await;
    assert_eq!(code(wrong), "BadDigest");
    let stored = s3
        .head_object()
        .bucket("sdk")
        .key("clip/bad.bin")
        .send()
        .await;
    assert_eq!(status(stored), Some(404), "nothing stored");
    let taken = s3
        .put_object()
        .bucket("sdk")
        .key("clip/one.bin")
        .body(ByteStream::from(b"again".to_vec()))
        .send()
        .await;
    assert_eq!(code(taken), "PreconditionFailed");

    let head = s3
        .head_object()
        .bucket("sdk")
        .key("clip/one.bin")
        .send()
        .await?;
    assert_eq!(head.content_length(), Some(one.len() as i64));
    assert_eq!(head.content_type(), Some("video/mp4"));
    let unit = head
        .metadata()
        .and_then(|m| m.get("unit"))
        .map(String::as_str);
    assert_eq!(unit, Some("17"));
    let etag = head.e_tag().unwrap_or_default().to_string();

    let range = s3
        .get_object()
        .bucket("sdk")
        .key("clip/one.bin")
        .range("bytes=1000-1999")
        .send()
        .await?;
    let total = one.len();
    assert_eq!(
        range.content_range(),
        Some(format!("bytes 1000-1999/{total}").as_str())
    );
    assert!(body(range).await? == one[1000..2000]);
    let past = s3
        .get_object()
        .bucket("sdk")
        .key("clip/one.bin")
        .range(format!("bytes={}-", one.len() + 10))
        .send()
        .await;
    assert_eq!(code(past), "InvalidRange");
    let get = || s3.get_object().bucket("sdk").key("clip/one.bin");
    assert!(body(get().if_match(&etag).send().await?).await? == one);
    assert_eq!(status(get().if_match("\"0000\"").send().await), Some(412));
    assert_eq!(status(get().if_none_match(&etag).send().await), Some(304));
    let later = DateTime::from_secs(4_000_000_000);
    assert_eq!(
        status(get().if_modified_since(later).send().await),
        Some(304)
    );

    s3.copy_object()
        .bucket("sdk")
        .key("clip/copy.bin")
        .copy_source("sdk/clip/one.bin")
        .send()
        .await?;
    let copy = body(
        s3.get_object()
            .bucket("sdk")
            .key("clip/copy.bin")
            .send()
            .await?,
    )
    .await?;
    assert!(copy == one, "the copy has other bytes");
    s3.delete_object()
        .bucket("sdk")
        .key("clip/copy.bin")
        .send()
        .await?;
    s3.delete_object()
        .bucket("sdk")
        .key("clip/never.bin")
        .send()
        .await?;
    for key in ["clip/x1.bin", "clip/x2.bin"] {
        s3.put_object()
            .bucket("sdk")
            .key(key)
            .body(ByteStream::from(b"x".to_vec()))
            .send()
            .await?;
    }
    let both = Delete::builder()
        .objects(ObjectIdentifier::builder().key("clip/x1.bin").build()?)
        .objects(ObjectIdentifier::builder().key("clip/x2.bin").build()?)
        .build()?;
    let deleted = s3
        .delete_objects()
        .bucket("sdk")
        .delete(both)
        .send()
        .await?;
    assert_eq!(deleted.deleted().len(), 2, "{deleted:?}");
    let stat = h.stat(3, "sdk", "clip/x1.bin").await;
    assert_eq!(
        stat.map(drop).map_err(|s| s.code()),
        Err(tonic::Code::NotFound)
    );
    let not_empty = s3.delete_bucket().bucket("sdk").send().await;
    assert_eq!(code(not_empty), "BucketNotEmpty");
    Ok(one)
}

/// ListObjectsV2 (prefix, delimiter, max-keys, continuation, start-after)
/// and ListObjects (v1, marker).
async fn listings(s3: &Client) -> anyhow::Result<()> {
    let keys = ["list/a/1", "list/a/2", "list/b/1", "list/c"];
    for key in keys {
        s3.put_object()
            .bucket("sdk")
            .key(key)
            .body(ByteStream::from(b"l".to_vec()))
            .send()
            .await?;
    }
    let grouped = s3
        .list_objects_v2()
        .bucket("sdk")
        .prefix("list/")
        .delimiter("/")
        .send()
        .await?;
    let prefixes: Vec<&str> = grouped
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    let contents: Vec<&str> = grouped.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        (prefixes, contents),
        (vec!["list/a/", "list/b/"], vec!["list/c"])
    );
    let mut paged = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let page = s3
            .list_objects_v2()
            .bucket("sdk")
            .prefix("list/")
            .max_keys(1)
            .set_continuation_token(token.clone())
            .send()
            .await?;
        paged.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(paged, keys);
    let after = s3
        .list_objects_v2()
        .bucket("sdk")
        .prefix("list/")
        .start_after("list/a/2")
        .send()
        .await?;
    let after: Vec<&str> = after.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(after, ["list/b/1", "list/c"]);
    let v1 = s3
        .list_objects()
        .bucket("sdk")
        .prefix("list/")
        .marker("list/b/1")
        .send()
        .await?;
    let v1: Vec<&str> = v1.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(v1, ["list/c"]);
    Ok(())
}

/// A multipart upload whose part 2 is cut off mid-way and sent again; one
/// aborted; ListParts and ListMultipartUploads.
async fn multipart(h: &Harness, s3: &Client) -> anyhow::Result<()> {
    let data = pattern(11 * MIB + 5, 73);
    let chunks = [
        &data[..5 * MIB],
        &data[5 * MIB..10 * MIB],
        &data[10 * MIB..],
    ];
    let upload = s3
        .create_multipart_upload()
        .bucket("sdk")
        .key("mp/cut.bin")
        .send()
        .await?;
    let id = upload.upload_id().unwrap_or_default().to_string();
    let part = |number: i32, bytes: ByteStream| {
        s3.upload_part()
            .bucket("sdk")
            .key("mp/cut.bin")
            .upload_id(&id)
            .part_number(number)
            .body(bytes)
    };
    let first = part(1, ByteStream::from(chunks[0].to_vec())).send().await?;
    // Part 2: 1 MiB of its 5 sent, then the link is cut.
    let cut = part(2, ByteStream::from_body_1_x(CutBody { left: MIB }))
        .content_length((5 * MIB) as i64)
        .send()
        .await;
    assert!(cut.is_err(), "a cut part was acknowledged");
    let listed = s3
        .list_parts()
        .bucket("sdk")
        .key("mp/cut.bin")
        .upload_id(&id)
        .send()
        .await?;
    let numbers: Vec<i32> = listed
        .parts()
        .iter()
        .filter_map(|p| p.part_number())
        .collect();
    assert_eq!(numbers, [1], "the cut part is not one");
    // Sent again, whole, and the last part.
    let second = part(2, ByteStream::from(chunks[1].to_vec())).send().await?;
    let third = part(3, ByteStream::from(chunks[2].to_vec())).send().await?;
    let uploads = s3.list_multipart_uploads().bucket("sdk").send().await?;
    let ids: Vec<&str> = uploads
        .uploads()
        .iter()
        .filter_map(|u| u.upload_id())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let completed = CompletedMultipartUpload::builder()
        .set_parts(Some(
            [(1, &first.e_tag), (2, &second.e_tag), (3, &third.e_tag)]
                .into_iter()
                .map(|(n, e)| {
                    CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(e.clone())
                        .build()
                })
                .collect(),
        ))
        .build();
    let done = s3
        .complete_multipart_upload()
        .bucket("sdk")
        .key("mp/cut.bin")
        .upload_id(&id)
        .multipart_upload(completed)
        .send()
        .await?;
    assert!(
        done.e_tag().is_some_and(|e| e.ends_with("-3\"")),
        "{done:?}"
    );
    let (info, _) = h.get(1, "sdk", "mp/cut.bin", Some(0), Some(1)).await?;
    assert_eq!(
        info.sha256,
        sha256_hex(&data),
        "the object is the parts in order"
    );

    let gone = s3
        .create_multipart_upload()
        .bucket("sdk")
        .key("mp/aborted.bin")
        .send()
        .await?;
    let gone = gone.upload_id().unwrap_or_default().to_string();
    s3.upload_part()
        .bucket("sdk")
        .key("mp/aborted.bin")
        .upload_id(&gone)
        .part_number(1)
        .body(ByteStream::from(chunks[2].to_vec()))
        .send()
        .await?;
    s3.abort_multipart_upload()
        .bucket("sdk")
        .key("mp/aborted.bin")
        .upload_id(&gone)
        .send()
        .await?;
    let parts = s3
        .list_parts()
        .bucket("sdk")
        .key("mp/aborted.bin")
        .upload_id(&gone)
        .send()
        .await;
    assert_eq!(code(parts), "NoSuchUpload");
    Ok(())
}

/// Object Lock: retention and a legal hold on `clip/two.bin`.
async fn lock(s3: &Client) -> anyhow::Result<()> {
    let until = DateTime::from_secs(
        (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            + 3 * 86_400) as i64,
    );
    let retention = ObjectLockRetention::builder()
        .mode(ObjectLockRetentionMode::Compliance)
        .retain_until_date(until)
        .build();
    s3.put_object_retention()
        .bucket("sdk")
        .key("clip/two.bin")
        .retention(retention)
        .send()
        .await?;
    let got = s3
        .get_object_retention()
        .bucket("sdk")
        .key("clip/two.bin")
        .send()
        .await?;
    let kept = got
        .retention()
        .and_then(|r| r.retain_until_date())
        .map(|d| d.secs());
    assert!(kept.is_some_and(|k| k >= until.secs()), "{got:?}");
    let hold = ObjectLockLegalHold::builder()
        .status(ObjectLockLegalHoldStatus::On)
        .build();
    s3.put_object_legal_hold()
        .bucket("sdk")
        .key("clip/two.bin")
        .legal_hold(hold)
        .send()
        .await?;
    let held = s3
        .get_object_legal_hold()
        .bucket("sdk")
        .key("clip/two.bin")
        .send()
        .await?;
    let status = held.legal_hold().and_then(|h| h.status()).cloned();
    assert_eq!(status, Some(ObjectLockLegalHoldStatus::On));
    let refused = s3
        .delete_object()
        .bucket("sdk")
        .key("clip/two.bin")
        .send()
        .await;
    assert_eq!(code(refused), "AccessDenied");
    let config = s3
        .get_object_lock_configuration()
        .bucket("sdk")
        .send()
        .await?;
    let enabled = config
        .object_lock_configuration()
        .and_then(|c| c.object_lock_enabled());
    assert_eq!(enabled.map(|e| e.as_str()), Some("Enabled"));
    Ok(())
}

/// Presigned GET and PUT URLs, and one that expired.
async fn presigned(h: &Harness, s3: &Client, one: &[u8]) -> anyhow::Result<()> {
    let minute = PresigningConfig::expires_in(Duration::from_secs(60))?;
    let get = s3
        .get_object()
        .bucket("sdk")
        .key("clip/one.bin")
        .presigned(minute.clone())
        .await?;
    let (code, got) = fetch(h, "GET", get.uri(), b"").await?;
    assert_eq!(code, 200);
    assert!(got == one, "a presigned GET brought other bytes");
    let put = s3
        .put_object()
        .bucket("sdk")
        .key("pre/signed.bin")
        .presigned(minute)
        .await?;
    let (code, answer) = fetch(h, "PUT", put.uri(), b"presigned bytes").await?;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&answer));
    let stored = body(
        s3.get_object()
            .bucket("sdk")
            .key("pre/signed.bin")
            .send()
            .await?,
    )
    .await?;
    assert_eq!(stored, b"presigned bytes");
    let second = PresigningConfig::expires_in(Duration::from_secs(1))?;
    let short = s3
        .get_object()
        .bucket("sdk")
        .key("clip/one.bin")
        .presigned(second)
        .await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, answer) = fetch(h, "GET", short.uri(), b"").await?;
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert_eq!((code, answer.contains("expired")), (403, true), "{answer}");
    Ok(())
}
