//! Objects in and out: round trips, ranges, and the write rule's edges.

use proptest::strategy::{Strategy, ValueTree};
use tresor_node::config::DataTuning;
use tresor_tests::{cluster, header, pattern, sha256_hex, spec, Harness};

/// 4 KiB shards: a 4+2 stripe is 16 KiB, a segment 4 stripes (64 KiB), so
/// small objects cover every boundary and several segments.
const SHARD: usize = 4096;
const STRIPE: usize = 4 * SHARD;

fn small_data() -> DataTuning {
    DataTuning {
        shard_bytes: SHARD as u32,
        segment_bytes: 4 * STRIPE as u64,
        ..Default::default()
    }
}

async fn data_cluster(nodes: usize, zones: usize) -> anyhow::Result<Harness> {
    let mut s = spec(nodes, zones);
    s.data = small_data();
    cluster!(data, spec = s)
}

#[tokio::test]
async fn round_trips_at_every_boundary() -> anyhow::Result<()> {
    let h = data_cluster(6, 3).await?;
    let sizes = [
        0,
        1,
        SHARD - 1,
        SHARD,
        STRIPE - 1,
        STRIPE,
        STRIPE + 1,
        3 * STRIPE + 17,
        4 * STRIPE,
        9 * STRIPE + 5, // three segments
    ];
    for (i, size) in sizes.iter().enumerate() {
        let data = pattern(*size, i as u64);
        let key = format!("size-{size}");
        let via = 1 + (i as u64 % 6);
        let put = h.put(via, "footage", &key, &data).await?;
        assert_eq!(put.size, *size as u64);
        assert_eq!(put.sha256, sha256_hex(&data));
        let read_via = 1 + ((i as u64 + 3) % 6);
        let (info, got) = h.get(read_via, "footage", &key, None, None).await?;
        assert_eq!(got.len(), data.len(), "size {size}");
        assert!(got == data, "size {size}: bytes differ");
        assert_eq!(info.sha256, sha256_hex(&data));
        assert_eq!(info.missing_shards, 0);
        assert_eq!((info.data, info.parity), (4, 2));
    }
    Ok(())
}

#[tokio::test]
async fn large_object_with_default_shard_size() -> anyhow::Result<()> {
    let mut h = cluster!(6, zones = 3)?;
    h.form().await?;
    let leader = h.leader().await?;
    h.create_bucket(leader, "footage", 4, 2).await?;
    let data = pattern(100 * 1024 * 1024, 42);
    let put = h.put(2, "footage", "cam-7/2026-11-26.mp4", &data).await?;
    assert_eq!(put.sha256, sha256_hex(&data));
    let (info, got) = h
        .get(5, "footage", "cam-7/2026-11-26.mp4", None, None)
        .await?;
    assert_eq!(info.size, data.len() as u64);
    assert!(got == data, "100 MiB object differs");
    // Six shard files (one per node): 100 MiB is one segment.
    for id in h.ids() {
        assert_eq!(h.shard_files(id).len(), 1, "node {id}");
    }
    Ok(())
}

#[tokio::test]
async fn random_ranges_match_the_original() -> anyhow::Result<()> {
    let h = data_cluster(6, 3).await?;
    let data = pattern(7 * STRIPE + 123, 9);
    h.put(1, "footage", "ranged", &data).await?;
    // Ranges drawn by proptest (deterministic seed, so failures reproduce).
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let len = data.len() as u64;
    let strategy = (0..len, 0..=len + 10);
    let mut cases = Vec::new();
    for _ in 0..40 {
        let tree = strategy
            .new_tree(&mut runner)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        cases.push(tree.current());
    }
    for (i, (offset, length)) in cases.into_iter().enumerate() {
        let via = 1 + (i as u64 % 6);
        let (_, got) = h
            .get(via, "footage", "ranged", Some(offset), Some(length))
            .await?;
        let end = (offset + length).min(len) as usize;
        assert!(got == data[offset as usize..end], "range {offset}+{length}");
    }
    // Open-ended range and one past the end.
    let (_, tail) = h.get(3, "footage", "ranged", Some(len - 5), None).await?;
    assert_eq!(tail, &data[data.len() - 5..]);
    for past in [len, len + 1, u64::MAX] {
        let err = h
            .get(3, "footage", "ranged", Some(past), Some(1))
            .await
            .expect_err("past the end");
        assert_eq!(err.code(), tonic::Code::OutOfRange, "offset {past}: {err}");
    }
    Ok(())
}

#[tokio::test]
async fn bad_puts_are_refused_and_store_nothing() -> anyhow::Result<()> {
    let h = data_cluster(6, 3).await?;
    let data = pattern(STRIPE * 2 + 3, 1);

    let err = h
        .put(1, "nope-bucket", "k", &data)
        .await
        .expect_err("unknown bucket");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    let err = h.put(1, "footage", "", &data).await.expect_err("empty key");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let err = h
        .put(1, "footage", &"k".repeat(1025), &data)
        .await
        .expect_err("long key");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let err = h
        .put(1, "footage", "a\0b", &data)
        .await
        .expect_err("NUL key");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let err = h
        .put(1, "../../etc", "passwd", &data)
        .await
        .expect_err("hostile bucket");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

    // A stream without its header.
    let mut client = h.objects(2).await?;
    let headless = vec![tresor_proto::v1::PutRequest {
        msg: Some(tresor_proto::v1::put_request::Msg::Data(data.clone())),
    }];
    let err = client
        .put(futures::stream::iter(headless))
        .await
        .expect_err("no header");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

    // A wrong expected SHA-256, and one that is not hex.
    let mut wrong = header("footage", "checked");
    wrong.expected_sha256 = sha256_hex(b"something else");
    let err = h.put_with(3, wrong, &data).await.expect_err("sha mismatch");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("mismatch"), "{err}");
    let mut garbage = header("footage", "checked");
    garbage.expected_sha256 = "xyz".into();
    let err = h.put_with(3, garbage, &data).await.expect_err("bad hex");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

    // Content type and metadata past their limits; a message past the
    // size limit, streamed and unary.
    let mut long_type = header("footage", "checked");
    long_type.content_type = "v".repeat(257);
    let mut many = header("footage", "checked");
    many.metadata = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
    let mut large = header("footage", "checked");
    large.metadata = [("note".to_string(), "n".repeat(8 * 1024 - 3))].into();
    for (what, bad) in [("type", long_type), ("entries", many), ("bytes", large)] {
        let err = h.put_with(3, bad, &data).await.expect_err(what);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{what}: {err}");
    }
    // (this client sends what the server must refuse)
    let mut client = h.objects(2).await?.max_encoding_message_size(usize::MAX);
    let oversized = vec![
        tresor_proto::v1::PutRequest {
            msg: Some(tresor_proto::v1::put_request::Msg::Header(header(
                "footage", "checked",
            ))),
        },
        tresor_proto::v1::PutRequest {
            msg: Some(tresor_proto::v1::put_request::Msg::Data(vec![
                0;
                16 * 1024
                    * 1024
            ])),
        },
    ];
    let err = client
        .put(futures::stream::iter(oversized))
        .await
        .expect_err("oversized message");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    let err = client
        .stat(tresor_proto::v1::StatRequest {
            bucket: "footage".into(),
            key: "k".repeat(16 * 1024 * 1024),
        })
        .await
        .expect_err("oversized unary message");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    let err = h
        .stat(4, "footage", "checked")
        .await
        .expect_err("nothing stored");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");

    // At the limits exactly, the attributes are stored as sent.
    let mut full = header("footage", "full");
    full.content_type = "v".repeat(256);
    full.metadata = (0..64)
        .map(|i| (format!("k{i:02}"), "v".repeat(128 - 3)))
        .collect();
    h.put_with(4, full.clone(), b"bytes").await?;
    let info = h.stat(5, "footage", "full").await?;
    assert_eq!(info.content_type, full.content_type);
    assert_eq!(info.metadata, full.metadata);

    // The right one works; a second put to the same key does not.
    let mut right = header("footage", "checked");
    right.expected_sha256 = sha256_hex(&data);
    h.put_with(3, right, &data).await?;
    let err = h
        .put(5, "footage", "checked", b"other bytes")
        .await
        .expect_err("immutable");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err}");
    let (_, got) = h.get(6, "footage", "checked", None, None).await?;
    assert!(got == data, "the first version must be intact");

    // Refused uploads leave no shard files behind (cleanup is asynchronous).
    let expected_files = 12; // two objects of one segment, one file per node
    tresor_tests::wait_for("orphans cleaned", tresor_tests::SETTLE_TIMEOUT, || async {
        let files: usize = h.ids().iter().map(|id| h.shard_files(*id).len()).sum();
        Ok((files == expected_files).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn of_two_racing_deletes_one_deletes_and_the_other_says_not_found() -> anyhow::Result<()> {
    let h = data_cluster(6, 3).await?;
    const KEYS: usize = 12;
    for i in 0..KEYS {
        h.put(1 + (i as u64 % 6), "footage", &format!("race-{i}"), b"x")
            .await?;
    }
    // Two deletes of each key at once, through two different nodes.
    let mut outcomes = Vec::new();
    for i in 0..KEYS {
        let key = format!("race-{i}");
        let (a, b) = (1 + (i as u64 % 6), 1 + ((i as u64 + 3) % 6));
        let delete = |via: u64| {
            let key = key.clone();
            let h = &h;
            async move {
                let mut client = h.objects(via).await?;
                let call = client.delete(tresor_proto::v1::DeleteRequest {
                    bucket: "footage".into(),
                    key,
                });
                let answer = tokio::time::timeout(std::time::Duration::from_secs(60), call).await?;
                anyhow::Ok(answer.map(|_| ()).map_err(|s| s.code()))
            }
        };
        let (first, second) = tokio::join!(delete(a), delete(b));
        outcomes.push((key, first?, second?));
    }
    let log = h.audit_log(2, 100_000).await?;
    for (key, first, second) in &outcomes {
        // Exactly one says it deleted; the other is told the key is gone.
        let oks = [first, second].iter().filter(|r| r.is_ok()).count();
        assert_eq!(oks, 1, "{key}: {first:?} {second:?}");
        for r in [first, second] {
            if let Err(code) = r {
                assert_eq!(*code, tonic::Code::NotFound, "{key}");
            }
        }
        // And the audit log agrees: one delete on record as done.
        let done = log
            .iter()
            .filter(|e| e.action == "delete" && &e.key == key && e.outcome == "ok")
            .count();
        assert_eq!(done, 1, "{key}");
    }
    Ok(())
}
