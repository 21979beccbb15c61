//! Refused requests: each gets a clear error and changes nothing.

use std::time::Duration;

use tresor_proto::v1 as pb;
use tresor_tests::{cluster, Harness};

const BIN: &str = env!("CARGO_BIN_EXE_tresor-test-node");

/// What must not change: cluster id, members with their roles, buckets.
async fn snapshot(
    h: &Harness,
    id: u64,
) -> anyhow::Result<(String, Vec<(u64, String, String)>, Vec<pb::Bucket>)> {
    let s = h
        .admin(id)
        .await?
        .status(pb::StatusRequest { local: false })
        .await?
        .into_inner();
    let nodes = s
        .nodes
        .iter()
        .map(|n| (n.id, n.addr.clone(), n.role.clone()))
        .collect();
    let buckets = h
        .admin(id)
        .await?
        .list_buckets(pb::ListBucketsRequest {})
        .await?
        .into_inner()
        .buckets;
    Ok((s.cluster_id, nodes, buckets))
}

#[tokio::test]
async fn refused_admin_requests_change_nothing() -> anyhow::Result<()> {
    let h = cluster!(4, zones = 2)?;
    // Node 4 runs but is left out, to try bad `nodes add` calls with it.
    let four = h.ids()[3];
    {
        let mut admin = h.admin(1).await?;
        admin.init(pb::InitRequest {}).await?;
        for id in [2, 3] {
            h.add_node(1, id).await?;
        }
    }
    let leader = h.leader_among(&[1, 2, 3]).await?;
    h.create_bucket(leader, "footage", 4, 2).await?;
    let before = snapshot(&h, leader).await?;

    // init twice, on the first node and on another member.
    for id in [1, 2] {
        let err = h
            .admin(id)
            .await?
            .init(pb::InitRequest {})
            .await
            .expect_err("init twice");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
        assert!(err.message().contains("already part of cluster"), "{err}");
    }

    // nodes add with an id in use (the address is node 4's, reachable).
    let mut admin = h.admin(2).await?;
    let err = admin
        .add_node(pb::AddNodeRequest {
            id: 3,
            addr: h.addr(four),
            zone: h.zone(four),
            capacity: 0,
        })
        .await
        .expect_err("id in use");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err}");

    // nodes add whose id does not match the node at that address.
    let err = admin
        .add_node(pb::AddNodeRequest {
            id: 99,
            addr: h.addr(four),
            zone: h.zone(four),
            capacity: 0,
        })
        .await
        .expect_err("wrong id for address");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("has id 4"), "{err}");

    // nodes add with the wrong zone, a bad address, an unreachable address.
    let wrong_zone = pb::AddNodeRequest {
        id: four,
        addr: h.addr(four),
        zone: "elsewhere".into(),
        capacity: 0,
    };
    let err = admin.add_node(wrong_zone).await.expect_err("wrong zone");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    for addr in ["no-port", "../../etc:1", "127.0.0.1:0"] {
        let err = admin
            .add_node(pb::AddNodeRequest {
                id: four,
                addr: addr.into(),
                zone: h.zone(four),
                capacity: 0,
            })
            .await
            .expect_err("bad address");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{addr}: {err}");
    }
    let closed = tresor_node::devcluster::free_port()?;
    let err = admin
        .add_node(pb::AddNodeRequest {
            id: four,
            addr: format!("127.0.0.1:{closed}"),
            zone: h.zone(four),
            capacity: 0,
        })
        .await
        .expect_err("unreachable");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");

    // Removing an unknown node.
    let err = admin
        .remove_node(pb::RemoveNodeRequest {
            id: 12345,
            force: false,
        })
        .await
        .expect_err("unknown node");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");

    // Invalid bucket names and schemes; a bucket that exists.
    let bad_buckets = [
        ("ab", 4, 2),
        ("UPPER", 4, 2),
        ("../../etc", 4, 2),
        ("has space", 4, 2),
        ("ok-name", 0, 2),
        ("ok-name", 17, 2),
        ("ok-name", 4, 0),
        ("ok-name", 4, 9),
    ];
    for (name, data, parity) in bad_buckets {
        let err = h
            .create_bucket(3, name, data, parity)
            .await
            .expect_err(name);
        assert_eq!(
            err.code(),
            tonic::Code::InvalidArgument,
            "{name} {data}+{parity}: {err}"
        );
    }
    let err = h
        .create_bucket(3, "footage", 2, 1)
        .await
        .expect_err("exists");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err}");

    assert_eq!(
        snapshot(&h, leader).await?,
        before,
        "a refused request changed the cluster"
    );
    // Node 4 was never touched: still not part of any cluster.
    let info = h
        .admin(four)
        .await?
        .node_info(pb::NodeInfoRequest {})
        .await?
        .into_inner();
    assert!(!info.initialized);
    Ok(())
}

#[test]
fn malformed_config_is_refused_naming_the_field() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cases = [
        ("node_id = \"one\"\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/tmp/x\"\n", "node_id"),
        ("node_id = 1\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/tmp/x\"\n", "zone"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"localhost\"\ndata_dir = \"/tmp/x\"\n", "listen"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/tmp/x\"\nhttp_listen = 5\n", "http_listen"),
        ("node_id = 1\nzone = \"dc1\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/tmp/x\"\ndata_fsync = false\n", "data_fsync"),
        ("this is not toml", "expected"),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&path, text)?;
        let path = path.to_string_lossy().into_owned();
        let (ok, _out, err) =
            Harness::cli(BIN, &["serve", "--config", &path], Duration::from_secs(20))?;
        assert!(!ok, "config {i} was accepted");
        assert!(
            err.contains(field),
            "config {i}: error does not name {field}: {err}"
        );
        assert!(!std::path::Path::new("/tmp/x").join("node.json").exists());
    }
    let (ok, _, err) = Harness::cli(
        BIN,
        &["serve", "--config", "/nonexistent/node.toml"],
        Duration::from_secs(20),
    )?;
    assert!(!ok);
    assert!(err.contains("/nonexistent/node.toml"), "{err}");
    Ok(())
}

#[tokio::test]
async fn cli_json_output_has_the_documented_shape() -> anyhow::Result<()> {
    let mut h = cluster!(3)?;
    h.form().await?;
    let endpoint = h.endpoint(2);
    let run = |args: &[&str]| {
        let mut all = vec!["--endpoint", endpoint.as_str(), "--output", "json"];
        all.extend_from_slice(args);
        Harness::cli(BIN, &all, Duration::from_secs(30))
    };
    let (ok, out, err) = run(&["bucket", "create", "cams", "--data", "4", "--parity", "2"])?;
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(created["name"], "cams");

    let (ok, out, err) = run(&["bucket", "ls"])?;
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(
        listed,
        serde_json::json!([{"name": "cams", "data": 4, "parity": 2, "retention": null}])
    );

    let (ok, out, err) = run(&["status"])?;
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out)?;
    assert!(status["cluster_id"].is_string());
    assert!(status["leader_id"].is_u64());
    assert!(status["term"].is_u64());
    assert!(status["commit_index"].is_u64());
    let nodes = status["nodes"].as_array().expect("nodes array");
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        for key in ["id", "addr", "zone", "role", "state"] {
            assert!(!n[key].is_null(), "node lacks {key}: {n}");
        }
        assert!(n["role"] == "voter" || n["role"] == "learner");
        assert!(n["last_contact_ms"].is_u64() || n["last_contact_ms"].is_null());
    }

    // Failures exit non-zero with a message.
    let (ok, _, err) = run(&["bucket", "create", "cams", "--data", "4", "--parity", "2"])?;
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    let (ok, _, err) = run(&["nodes", "remove", "--id", "77"])?;
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
    Ok(())
}

/// Sends raw bytes as the request message of `path`.
async fn raw_unary(h: &Harness, id: u64, path: &'static str, bytes: Vec<u8>) -> tonic::Status {
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    #[derive(Default)]
    struct Raw;
    impl Encoder for Raw {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            use bytes::BufMut;
            dst.put_slice(&item);
            Ok(())
        }
    }
    impl Decoder for Raw {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
            use bytes::Buf;
            Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
        }
    }
    impl Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = Raw;
        type Decoder = Raw;
        fn encoder(&mut self) -> Raw {
            Raw
        }
        fn decoder(&mut self) -> Raw {
            Raw
        }
    }

    let call = async {
        let channel = tresor_client::connect_with(&h.endpoint(id), h.credentials()).await?;
        let mut grpc =
            tonic::client::Grpc::new(tresor_client::channel::transport(channel, h.credentials()));
        grpc.ready().await?;
        let answer = grpc
            .unary(
                tonic::Request::new(bytes),
                tonic::codegen::http::uri::PathAndQuery::from_static(path),
                Raw,
            )
            .await;
        anyhow::Ok(answer)
    };
    match tokio::time::timeout(Duration::from_secs(30), call).await {
        Ok(Ok(Err(status))) => status,
        Ok(Ok(Ok(reply))) => tonic::Status::ok(format!("answered {:?}", reply.into_inner())),
        Ok(Err(e)) => tonic::Status::unknown(format!("{e:#}")),
        Err(_) => tonic::Status::deadline_exceeded("no answer in 30 s"),
    }
}

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument() -> anyhow::Result<()> {
    let mut h = cluster!(3, zones = 3)?;
    h.form().await?;
    let leader = h.leader().await?;
    h.create_bucket(leader, "footage", 2, 1).await?;
    let before = snapshot(&h, leader).await?;
    let cases: [(&str, &'static str, Vec<u8>); 3] = [
        // Field 1 (bucket), length 2, bytes that are not UTF-8.
        (
            "invalid UTF-8",
            "/tresor.v1.Objects/Stat",
            vec![0x0a, 0x02, 0xff, 0xfe],
        ),
        // A length far past the end of the message.
        (
            "truncated field",
            "/tresor.v1.Objects/Stat",
            vec![0x0a, 0x7f, b'a'],
        ),
        // Wire type 7 does not exist.
        (
            "garbage",
            "/tresor.v1.Admin/CreateBucket",
            vec![0x0f, 0xff, 0xff, 0x01],
        ),
    ];
    for (what, path, bytes) in cases {
        let status = raw_unary(&h, leader, path, bytes).await;
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{what}: {status:?}"
        );
        assert!(status.message().contains("malformed"), "{what}: {status:?}");
    }
    assert_eq!(
        snapshot(&h, leader).await?,
        before,
        "a malformed call changed the cluster"
    );
    Ok(())
}

/// The retry hint of a refusal, in milliseconds.
fn pushback(status: &tonic::Status) -> Option<String> {
    status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A node carries at most `[admission]` uploads and downloads at once; one
/// more is refused at once with RESOURCE_EXHAUSTED and a retry hint, and is
/// admitted once a permit comes back. Other nodes keep their own permits.
#[tokio::test]
async fn calls_over_a_nodes_limits_are_refused_with_a_retry_hint() -> anyhow::Result<()> {
    let mut s = tresor_tests::spec(6, 3);
    s.admission = tresor_node::config::AdmissionTuning {
        max_uploads: 1,
        max_downloads: 1,
        retry_after_ms: 250,
        ..Default::default()
    };
    let h = cluster!(data, spec = s)?;
    let via = 2;
    // Larger than what the node and the client buffer between them, so a
    // download that is not read stays open.
    let big: Vec<u8> = (0..40u32 << 20).map(|i| (i % 251) as u8).collect();
    h.put(via, "footage", "big", &big).await?;

    // Downloads: the first message of one proves it holds the permit.
    let mut reader = h.objects(via).await?;
    let mut held = reader
        .get(pb::GetRequest {
            bucket: "footage".into(),
            key: "big".into(),
            offset: None,
            length: None,
        })
        .await?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(30), held.message()).await??;
    assert!(
        matches!(
            first.and_then(|m| m.msg),
            Some(pb::get_response::Msg::Info(_))
        ),
        "the held download started"
    );
    let err = h
        .get(via, "footage", "big", Some(0), Some(10))
        .await
        .expect_err("a second download on the node");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert_eq!(pushback(&err).as_deref(), Some("250"), "{err:?}");
    h.get(3, "footage", "big", Some(0), Some(10)).await?;
    drop(held);
    drop(reader);
    tresor_tests::wait_for(
        "the download's permit back",
        tresor_tests::SETTLE_TIMEOUT,
        || async {
            Ok(h.get(via, "footage", "big", Some(0), Some(10))
                .await
                .ok()
                .map(|_| ()))
        },
    )
    .await?;

    // Uploads: one held open, its body not sent yet. Until the node has
    // admitted it, a probe may pass (or take the permit first and get the
    // held one refused): either way one of two uploads in flight at once
    // is refused.
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::PutRequest>(4);
    tx.send(pb::PutRequest {
        msg: Some(pb::put_request::Msg::Header(tresor_tests::header(
            "footage", "held",
        ))),
    })
    .await?;
    let mut writer = h.objects(via).await?;
    let held_put = tokio::spawn(async move {
        let body =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        writer.put(body).await
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut refused = None;
    for probe in 0.. {
        assert!(
            std::time::Instant::now() < deadline,
            "no upload was refused"
        );
        if held_put.is_finished() {
            break;
        }
        match h.put(via, "footage", &format!("probe-{probe}"), b"x").await {
            Err(status) => {
                refused = Some(status);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    tx.send(pb::PutRequest {
        msg: Some(pb::put_request::Msg::Data(b"held bytes".to_vec())),
    })
    .await
    .ok();
    drop(tx);
    let held_result = tokio::time::timeout(Duration::from_secs(60), held_put).await??;
    let refused = match (refused, held_result) {
        (Some(status), Ok(_)) => status,
        (None, Err(status)) => status,
        (refused, held) => panic!("probe refused {refused:?}, held upload answered {held:?}"),
    };
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    assert_eq!(pushback(&refused).as_deref(), Some("250"), "{refused:?}");
    h.put(via, "footage", "after", b"the permit came back")
        .await?;
    Ok(())
}

/// How many refused calls an audit outcome stands for (`code xN`: N).
fn refusals_in(outcome: &str) -> u64 {
    outcome
        .rsplit_once(" x")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

#[tokio::test]
async fn a_flood_of_refused_calls_is_on_record_in_a_bounded_number_of_entries() -> anyhow::Result<()>
{
    let mut h = cluster!(3)?;
    h.form().await?;
    let via = 2;
    let nobody = h.client_credentials("nobody")?.without_identity();
    let client = h.objects_with(via, &nobody).await?;
    const CALLS: u64 = 10_000;
    const TASKS: u64 = 20;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut codes = std::collections::BTreeMap::<String, u64>::new();
            for i in 0..CALLS / TASKS {
                let request = pb::StatRequest {
                    bucket: "footage".into(),
                    key: format!("k-{t}-{i}"),
                };
                let call = client.stat(request);
                let code = match tokio::time::timeout(Duration::from_secs(30), call).await {
                    Ok(Ok(_)) => "ok".to_string(),
                    Ok(Err(status)) => format!("{:?}", status.code()),
                    Err(_) => "timeout".to_string(),
                };
                *codes.entry(code).or_default() += 1;
            }
            codes
        }));
    }
    let mut codes = std::collections::BTreeMap::<String, u64>::new();
    for task in tasks {
        for (code, n) in task.await? {
            *codes.entry(code).or_default() += n;
        }
    }
    let flood_secs = started.elapsed().as_secs() + 1;
    // Past the caller's limit of refusals per second, calls are refused at
    // once with a retry hint.
    assert_eq!(
        codes.keys().cloned().collect::<Vec<_>>(),
        vec![
            "ResourceExhausted".to_string(),
            "Unauthenticated".to_string()
        ],
        "{codes:?}"
    );
    let on_record = tresor_tests::wait_for(
        "every refusal on record",
        Duration::from_secs(60),
        || async {
            let log = h.audit_log(via, 100_000).await?;
            let entries: Vec<_> = log
                .into_iter()
                .filter(|e| e.action == "stat" && e.principal.starts_with("anonymous@"))
                .collect();
            let total: u64 = entries.iter().map(|e| refusals_in(&e.outcome)).sum();
            Ok((total >= CALLS).then_some((entries, total)))
        },
    )
    .await?;
    let (entries, total) = on_record;
    assert_eq!(total, CALLS, "each refused call counted once");
    // One entry per outcome per second (and per node, the caller's calls
    // all reached one).
    let bound = 2 * (flood_secs + 2) as usize;
    assert!(
        entries.len() <= bound,
        "{} entries for {CALLS} refusals over {flood_secs} s",
        entries.len()
    );
    println!(
        "{CALLS} refused calls in {flood_secs} s: {} audit entries ({codes:?})",
        entries.len()
    );
    Ok(())
}
