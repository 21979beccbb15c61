//! Resumable uploads: a session survives a cut client, a killed
//! coordinator and a killed leader, resumes through any node, belongs to
//! its principal only, and gives its shard files back when aborted or
//! expired.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncRead;
use tonic::Code;
use tresor_client::{Client, ObjectError, ResumeOptions, UploadSession};
use tresor_node::config::DataTuning;
use tresor_proto::v1 as pb;
use tresor_tests::{cluster, pattern, sha256_hex, spec, wait_for, Harness};

const WAIT: Duration = Duration::from_secs(120);
const MIB: u64 = 1 << 20;

/// Yields `data`, then fails as a client whose process or link died would.
struct CutAfter {
    data: Vec<u8>,
    pos: usize,
    cut: usize,
}

impl AsyncRead for CutAfter {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.pos >= self.cut {
            let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut");
            return std::task::Poll::Ready(Err(cut));
        }
        let end = self.cut.min(self.pos + buf.remaining());
        buf.put_slice(&self.data[self.pos..end]);
        self.pos = end;
        std::task::Poll::Ready(Ok(()))
    }
}

fn cut_after(data: &[u8], from: u64, cut: u64) -> CutAfter {
    CutAfter {
        data: data[from as usize..].to_vec(),
        pos: 0,
        cut: (cut - from) as usize,
    }
}

/// A formed six-node cluster with bucket `footage` (4+2) and parts of
/// `part_bytes` (1 MiB shards: a stripe holds 4 MiB).
async fn session_cluster(part_bytes: u64) -> anyhow::Result<Harness> {
    let mut s = spec(6, 3);
    s.data = DataTuning {
        part_bytes,
        ..Default::default()
    };
    s.healing.gc_interval_secs = 1;
    s.healing.orphan_grace_secs = 1;
    s.healing.session_expiry_secs = 60;
    cluster!(data, spec = s)
}

async fn client_of(h: &Harness, ids: &[u64]) -> anyhow::Result<Client> {
    let endpoints: Vec<String> = ids.iter().map(|id| h.endpoint(*id)).collect();
    Ok(Client::connect_with(&endpoints, h.credentials()).await?)
}

fn code(e: &ObjectError) -> Option<Code> {
    match e {
        ObjectError::Rpc(s) => Some(s.code()),
        _ => None,
    }
}

/// The shard files of upload `id` on every node.
fn files_of(h: &Harness, id: &str) -> usize {
    h.ids()
        .iter()
        .flat_map(|n| h.shard_files(*n))
        .filter(|p| p.to_string_lossy().contains(id))
        .count()
}

#[tokio::test]
async fn an_upload_cut_three_times_resumes_and_resends_at_most_a_part_per_cut() -> anyhow::Result<()>
{
    let mut h = session_cluster(16 * MIB).await?;
    let leader = h.leader().await?;
    let followers: Vec<u64> = h.ids().into_iter().filter(|id| *id != leader).collect();
    // The uploader talks to three followers; the watcher to the other two.
    let client = client_of(&h, &followers[..3]).await?;
    let watcher = client_of(&h, &followers[3..]).await?;
    let size = 200 * MIB;
    let data = pattern(size as usize, 57);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bodycam-200.mp4");
    std::fs::write(&path, &data)?;

    let session = client
        .create_upload("footage", "bodycam-200", &Default::default())
        .await?;
    let part = session.part_bytes;
    assert_eq!(part, 16 * MIB);

    // Cut 1: the client's connection breaks off mid-part.
    let sent_first = Arc::new(AtomicU64::new(0));
    let counter = sent_first.clone();
    let progress: tresor_client::Progress = Arc::new(move |at| counter.store(at, Ordering::SeqCst));
    let cut = client
        .upload_parts(&session, cut_after(&data, 0, 40 * MIB), Some(progress))
        .await
        .expect_err("a cut upload cannot succeed");
    assert!(
        code(&cut).is_some() || matches!(cut, ObjectError::Io(_)),
        "{cut}"
    );
    let after_cut = watcher.get_upload(&session.upload_id).await?;
    let first_sent = sent_first.load(Ordering::SeqCst);
    assert!(
        first_sent - after_cut.durable_bytes <= part,
        "cut 1 lost {} bytes, more than a part",
        first_sent - after_cut.durable_bytes
    );
    assert_eq!(after_cut.durable_bytes % part, 0);

    // Cuts 2 and 3: the coordinating node, then the leader, are killed
    // while the resumed upload runs.
    let upload = {
        let client = client.clone();
        let path = path.clone();
        let resume = ResumeOptions {
            upload_id: Some(session.upload_id.clone()),
            on_resume: Some(Arc::new(|from, why| {
                eprintln!("resuming from {from}: {why}")
            })),
            ..Default::default()
        };
        tokio::spawn(async move {
            client
                .put_file_resumable("footage", "bodycam-200", &path, Default::default(), resume)
                .await
        })
    };
    let durable_past = |at: u64| {
        let watcher = watcher.clone();
        let id = session.upload_id.clone();
        async move {
            wait_for(&format!("{at} bytes durable"), WAIT, || async {
                let s = watcher.get_upload(&id).await?;
                Ok((s.durable_bytes >= at).then_some(s))
            })
            .await
        }
    };
    durable_past(after_cut.durable_bytes + 2 * part).await?;
    let coordinator = endpoint_id(&h, &client.current_endpoint());
    h.kill(coordinator);
    // Back before the next kill: 4+2 needs five nodes to place a part.
    durable_past(after_cut.durable_bytes + 4 * part).await?;
    h.restart(coordinator).await?;
    durable_past(after_cut.durable_bytes + 6 * part).await?;
    h.kill(leader);
    let stored = tokio::time::timeout(WAIT * 2, upload).await???;

    assert_eq!(stored.stored.size, size);
    assert_eq!(stored.stored.sha256, sha256_hex(&data));
    // The killed coordinator cut the stream; the lost leader may not have:
    // the coordinator's proposals go to the new leader.
    assert!(stored.resumes >= 1, "resumed {} times", stored.resumes);
    assert_ne!(h.leader().await?, leader, "a new leader took over");
    let total = first_sent + stored.bytes_sent;
    assert!(
        total <= size + (1 + stored.resumes as u64) * part,
        "sent {total} bytes for {size} with {} cuts of at most {part}",
        1 + stored.resumes
    );
    let (info, back) = h
        .get(followers[4], "footage", "bodycam-200", None, None)
        .await?;
    assert_eq!(info.sha256, sha256_hex(&data));
    assert!(back == data, "the resumed upload reads back whole");
    let gone = watcher
        .get_upload(&session.upload_id)
        .await
        .expect_err("closed");
    assert_eq!(code(&gone), Some(Code::NotFound));
    println!(
        "200 MiB in parts of {part}: {total} bytes sent over {} cuts",
        1 + stored.resumes
    );
    Ok(())
}

/// The node id of an endpoint of `h`.
fn endpoint_id(h: &Harness, endpoint: &str) -> u64 {
    h.ids()
        .into_iter()
        .find(|id| endpoint.contains(&h.endpoint(*id)) || h.endpoint(*id).contains(endpoint))
        .expect("an endpoint of the cluster")
}

#[tokio::test]
async fn a_session_resumes_through_another_node_and_only_for_its_principal() -> anyhow::Result<()> {
    let h = session_cluster(MIB).await?;
    // Parts of one stripe: 4 MiB.
    let first = client_of(&h, &[1]).await?;
    let second = client_of(&h, &[2]).await?;
    let data = pattern((10 * MIB) as usize, 7);
    let opts = tresor_client::PutOptions {
        content_type: Some("video/mp4".into()),
        ..Default::default()
    };
    let session = first.create_upload("footage", "cam-7", &opts).await?;
    let part = session.part_bytes;
    assert_eq!(part, 4 * MIB);
    let cut = first
        .upload_parts(&session, cut_after(&data, 0, 6 * MIB), None)
        .await;
    assert!(cut.is_err(), "a cut upload cannot succeed");
    let now = second.get_upload(&session.upload_id).await?;
    assert_eq!((now.durable_bytes, now.parts), (part, 1));

    // Another principal may not see, send to, complete or abort it.
    h.admin(1)
        .await?
        .create_principal(pb::CreatePrincipalRequest {
            name: "cam-8".into(),
        })
        .await?;
    h.admin(1)
        .await?
        .grant(pb::GrantRequest {
            principal: "cam-8".into(),
            role: "ingest".into(),
            bucket: None,
        })
        .await?;
    let stranger = Client::connect_with(&[h.endpoint(3)], &h.client_credentials("cam-8")?).await?;
    let denied = |r: Result<(), ObjectError>| {
        assert_eq!(
            r.err().as_ref().and_then(code),
            Some(Code::PermissionDenied)
        )
    };
    denied(stranger.get_upload(&session.upload_id).await.map(|_| ()));
    denied(
        stranger
            .upload_parts(&now, cut_after(&data, part, 10 * MIB), None)
            .await
            .map(|_| ()),
    );
    denied(
        stranger
            .complete_upload(&session.upload_id, part, "")
            .await
            .map(|_| ()),
    );
    denied(stranger.abort_upload(&session.upload_id).await);
    assert_eq!(second.get_upload(&session.upload_id).await?, now);
    // An administrator may abort another's session (one whose client lost
    // its id): it may delete in the bucket.
    let theirs = stranger
        .create_upload("footage", "cam-8-lost", &Default::default())
        .await?;
    first.abort_upload(&theirs.upload_id).await?;
    let gone = stranger
        .get_upload(&theirs.upload_id)
        .await
        .expect_err("aborted");
    assert_eq!(code(&gone), Some(Code::NotFound));

    // Data from the wrong offset is refused and changes nothing.
    let wrong = UploadSession {
        durable_bytes: 0,
        ..now.clone()
    };
    let refused = second
        .upload_parts(&wrong, &data[..], None)
        .await
        .expect_err("offset 0 is not the durable offset");
    assert_eq!(code(&refused), Some(Code::FailedPrecondition), "{refused}");
    // Completing early names the durable size.
    let early = second
        .complete_upload(&session.upload_id, 10 * MIB, "")
        .await
        .expect_err("not all bytes are durable");
    assert_eq!(code(&early), Some(Code::FailedPrecondition), "{early}");

    // The rest through node 2, and the object is what a Put would store.
    let durable = second
        .upload_parts(&now, &data[part as usize..], None)
        .await?;
    assert_eq!(durable, 10 * MIB);
    let finished = second.get_upload(&session.upload_id).await?;
    assert!(finished.finished, "a short last part ends the object");
    let more = second
        .upload_parts(&finished, &b"more"[..], None)
        .await
        .expect_err("nothing can follow the last part");
    assert_eq!(code(&more), Some(Code::FailedPrecondition), "{more}");
    let bad_sum = second
        .complete_upload(&session.upload_id, 10 * MIB, &"00".repeat(32))
        .await
        .expect_err("a wrong SHA-256 is refused");
    assert_eq!(code(&bad_sum), Some(Code::InvalidArgument), "{bad_sum}");
    let stored = second
        .complete_upload(&session.upload_id, 10 * MIB, &sha256_hex(&data))
        .await?;
    assert_eq!(stored.sha256, sha256_hex(&data));
    let (info, back) = h.get(4, "footage", "cam-7", None, None).await?;
    assert!(back == data);
    assert_eq!(info.content_type, "video/mp4");
    assert_eq!(info.missing_shards, 0);
    // The key is taken now, for sessions as for Puts.
    let again = first
        .create_upload("footage", "cam-7", &Default::default())
        .await
        .expect_err("objects are immutable");
    assert_eq!(code(&again), Some(Code::AlreadyExists));

    // On record: the session's creation, the put it became, the refusals
    // (merged with the caller's others of the same second, so within a
    // second or two).
    let on_record = |log: &[pb::AuditEntry], principal: &str, action: &str, outcome: &str| {
        log.iter().any(|e| {
            e.principal == principal
                && e.action == action
                && e.key == "cam-7"
                && e.outcome.starts_with(outcome)
        })
    };
    wait_for("the session's calls on record", WAIT, || async {
        let log = h.audit_log(5, 10_000).await?;
        let all = on_record(&log, "admin", "upload create", "ok")
            && on_record(&log, "admin", "put", "ok")
            && on_record(&log, "cam-8", "upload get", "permission_denied")
            && on_record(&log, "cam-8", "upload parts", "permission_denied")
            && on_record(&log, "cam-8", "upload abort", "permission_denied")
            && on_record(&log, "cam-8", "put", "permission_denied");
        Ok(all.then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn aborted_and_expired_sessions_give_their_shard_files_back() -> anyhow::Result<()> {
    let h = session_cluster(MIB).await?;
    let client = client_of(&h, &[1, 2]).await?;
    let data = pattern((9 * MIB) as usize, 3);
    let mut ids = Vec::new();
    for key in ["aborted", "abandoned"] {
        let session = client
            .create_upload("footage", key, &Default::default())
            .await?;
        let cut = client
            .upload_parts(&session, cut_after(&data, 0, 9 * MIB - 1), None)
            .await;
        assert!(cut.is_err());
        let now = client.get_upload(&session.upload_id).await?;
        assert_eq!(now.parts, 2);
        // Two parts of six shard files each, kept while the session lives.
        assert!(files_of(&h, &session.upload_id) >= 2 * 5);
        ids.push(session.upload_id);
    }
    // Kept across GC passes while open.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(files_of(&h, &ids[0]) >= 10 && files_of(&h, &ids[1]) >= 10);

    client.abort_upload(&ids[0]).await?;
    wait_for("the aborted session's files deleted", WAIT, || async {
        Ok((files_of(&h, &ids[0]) == 0).then_some(()))
    })
    .await?;
    let gone = client.get_upload(&ids[0]).await.expect_err("aborted");
    assert_eq!(code(&gone), Some(Code::NotFound));

    // The other expires after a minute without progress; GC takes its
    // files.
    wait_for(
        "the abandoned session expired and collected",
        WAIT,
        || async {
            let open = client.get_upload(&ids[1]).await.is_ok();
            Ok((!open && files_of(&h, &ids[1]) == 0).then_some(()))
        },
    )
    .await?;
    let log = h.audit_log(3, 10_000).await?;
    assert!(log
        .iter()
        .any(|e| e.action == "upload expire" && e.key == "abandoned" && e.principal == "admin"));
    assert!(log
        .iter()
        .any(|e| e.action == "upload abort" && e.key == "aborted" && e.outcome == "ok"));
    Ok(())
}

const CLI: &str = env!("CARGO_BIN_EXE_tresor-test-cli");
const NODE_CLI: &str = env!("CARGO_BIN_EXE_tresor-test-node");

#[tokio::test]
async fn the_cli_resumes_an_interrupted_put_of_the_same_file() -> anyhow::Result<()> {
    let h = session_cluster(MIB).await?;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let state_s = state.to_string_lossy().into_owned();
    let size = 256 * MIB;
    let data = pattern(size as usize, 11);
    let file = dir.path().join("shift.mp4");
    std::fs::write(&file, &data)?;
    let file_s = file.to_string_lossy().into_owned();
    let endpoints = format!("{},{}", h.endpoint(1), h.endpoint(2));
    let env = [("TRESOR_STATE_DIR", state_s.as_str())];
    let put = |extra: &[&str]| {
        let mut args = vec!["--endpoint", endpoints.as_str(), "--output", "json", "put"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["footage/shift.mp4", file_s.as_str()]);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let uploads = || -> anyhow::Result<Vec<serde_json::Value>> {
        let endpoint = h.endpoint(3);
        let args = [
            "--endpoint",
            endpoint.as_str(),
            "--output",
            "json",
            "uploads",
            "ls",
        ];
        let (ok, out, err) = Harness::cli(NODE_CLI, &args, Duration::from_secs(60))?;
        anyhow::ensure!(ok, "uploads ls: {err}");
        Ok(serde_json::from_str::<Vec<serde_json::Value>>(&out)?)
    };

    // The first run is killed once two parts are durable.
    let args = put(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut first = Harness::cli_spawn(CLI, &args, &env)?;
    let open = wait_for("two parts durable", WAIT, || async {
        let open = uploads()?;
        let started = open.iter().find(|u| u["key"] == "shift.mp4").cloned();
        Ok(started.filter(|u| u["durable_bytes"].as_u64() >= Some(8 * MIB)))
    })
    .await?;
    first.kill()?;
    let _ = first.wait();
    assert_eq!(open["principal"], "admin");
    assert_eq!(open["bucket"], "footage");
    assert!(open["age_secs"].as_u64().is_some());
    let stat = Harness::cli(
        CLI,
        &[
            "--endpoint",
            &endpoints,
            "--output",
            "json",
            "stat",
            "footage/shift.mp4",
        ],
        Duration::from_secs(60),
    )?;
    assert!(!stat.0, "nothing is visible before the upload completes");

    // A different file of the same size is not taken for it.
    let other = dir.path().join("other.mp4");
    std::fs::write(&other, pattern(size as usize, 12))?;
    let other_s = other.to_string_lossy().into_owned();
    let wrong = [
        "--endpoint",
        endpoints.as_str(),
        "put",
        "--resume",
        "footage/shift.mp4",
        other_s.as_str(),
    ];
    let (ok, _, err) = Harness::cli_env(CLI, &wrong, &env, WAIT)?;
    assert!(!ok && err.contains("does not start as"), "{err}");

    // The same file resumes where the session stands and completes.
    let durable_before = uploads()?
        .iter()
        .find(|u| u["key"] == "shift.mp4")
        .and_then(|u| u["durable_bytes"].as_u64())
        .unwrap_or(0);
    let args = put(&["--resume"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = Harness::cli_env(CLI, &args, &env, WAIT)?;
    assert!(ok, "{err}");
    let stored: serde_json::Value = serde_json::from_slice(&out)?;
    assert_eq!(stored["sha256"], sha256_hex(&data));
    assert_eq!(stored["size"], size);
    let sent = stored["bytes_sent"].as_u64().unwrap_or(u64::MAX);
    assert!(
        sent <= size - durable_before,
        "resumed from {durable_before}, yet sent {sent} bytes"
    );
    assert!(uploads()?.iter().all(|u| u["key"] != "shift.mp4"));

    // `uploads abort` ends a session whose client is gone.
    let client = client_of(&h, &[1]).await?;
    let left = client
        .create_upload("footage", "left-behind", &Default::default())
        .await?;
    let endpoint = h.endpoint(3);
    let args = [
        "--endpoint",
        endpoint.as_str(),
        "uploads",
        "abort",
        left.upload_id.as_str(),
    ];
    let (ok, _, err) = Harness::cli(NODE_CLI, &args, Duration::from_secs(60))?;
    assert!(ok, "uploads abort: {err}");
    assert!(uploads()?.iter().all(|u| u["key"] != "left-behind"));
    assert!(
        std::fs::read_dir(&state)?.next().is_none(),
        "the note of a finished upload is removed"
    );
    Ok(())
}

#[tokio::test]
async fn session_calls_refuse_what_the_proto_says_they_refuse() -> anyhow::Result<()> {
    use tresor_proto::v1::uploads_client::UploadsClient;
    let mut s = spec(6, 3);
    s.data = DataTuning {
        part_bytes: MIB,
        ..Default::default()
    };
    s.admission.max_sessions_per_principal = 2;
    s.admission.retry_after_ms = 750;
    let h = cluster!(data, spec = s)?;
    let channel = tresor_client::connect_with(&h.endpoint(2), h.credentials()).await?;
    let mut raw = UploadsClient::new(tresor_client::channel::transport(channel, h.credentials()));
    let create = |bucket: &str, key: &str, content_type: &str| pb::CreateUploadRequest {
        header: Some(pb::PutHeader {
            bucket: bucket.into(),
            key: key.into(),
            content_type: content_type.into(),
            ..Default::default()
        }),
    };
    let code_of =
        |r: Result<tonic::Response<pb::UploadInfo>, tonic::Status>| r.err().map(|s| s.code());

    // Creating: unknown bucket, bad key, attributes over their limits.
    let r = raw.create_upload(create("nowhere", "k", "")).await;
    assert_eq!(code_of(r), Some(Code::NotFound));
    let r = raw.create_upload(create("footage", "", "")).await;
    assert_eq!(code_of(r), Some(Code::InvalidArgument));
    let r = raw
        .create_upload(create("footage", "k", &"x".repeat(257)))
        .await;
    assert_eq!(code_of(r), Some(Code::InvalidArgument));
    let r = raw.create_upload(create("tresor.audit", "k", "")).await;
    assert_eq!(code_of(r), Some(Code::PermissionDenied));

    // Naming a session: malformed, unknown.
    let get = |id: &str| pb::UploadRef {
        upload_id: id.into(),
    };
    assert_eq!(
        code_of(raw.get_upload(get("zz")).await),
        Some(Code::InvalidArgument)
    );
    let unknown = "00".repeat(16);
    assert_eq!(
        code_of(raw.get_upload(get(&unknown)).await),
        Some(Code::NotFound)
    );

    // UploadParts must start with its header.
    let data_first = pb::UploadPartsRequest {
        msg: Some(pb::upload_parts_request::Msg::Data(vec![1, 2, 3])),
    };
    let r = raw.upload_parts(tokio_stream::iter([data_first])).await;
    assert_eq!(r.err().map(|s| s.code()), Some(Code::InvalidArgument));

    // A principal's open sessions are limited; past it, a retry hint.
    let first = raw
        .create_upload(create("footage", "a", ""))
        .await?
        .into_inner();
    raw.create_upload(create("footage", "b", "")).await?;
    let over = raw
        .create_upload(create("footage", "c", ""))
        .await
        .expect_err("a third session is one too many");
    assert_eq!(over.code(), Code::ResourceExhausted, "{over}");
    assert_eq!(
        over.metadata()
            .get("grpc-retry-pushback-ms")
            .and_then(|v| v.to_str().ok()),
        Some("750")
    );
    raw.abort_upload(get(&first.upload_id)).await?;
    let again = raw.abort_upload(get(&first.upload_id)).await;
    assert_eq!(again.err().map(|s| s.code()), Some(Code::NotFound));
    raw.create_upload(create("footage", "c", "")).await?;
    Ok(())
}
