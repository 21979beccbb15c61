//! The audit log's sealed segments: entries leave the replicated state for
//! objects of the `tresor.audit` bucket, and the log reads and verifies the
//! same across them; damage to a segment's shard files is healed like any
//! object's, while a segment replaced by a different (validly encoded)
//! chain is named by `audit verify` at the entry that changed, and one
//! replaced by bytes that are no segment at all makes the log and custody
//! exports that need it answer DATA_LOSS. Signed
//! checkpoints of the sealed history anchor custody bundles: a bundle
//! verifies against a published checkpoint, and says which one it needs.

use std::time::Duration;

use tresor_client::receipt::SignedReceipt;
use tresor_node::config::{AuditTuning, RaftTuning};
use tresor_node::meta::audit::{encode_segment, AuditEntry, AuditRecord, AUDIT_BUCKET};
use tresor_proto::v1 as pb;
use tresor_tests::{
    cluster, counter, fast_raft, flip_byte, process_pki, spec, wait_for, Harness, HEAL_TIMEOUT,
};

const NODE: &str = env!("CARGO_BIN_EXE_tresor-test-node");
const CLI: &str = env!("CARGO_BIN_EXE_tresor-test-cli");

/// Entries per sealed segment in these tests.
const SEAL: u64 = 100;

async fn log(
    h: &Harness,
    via: u64,
    request: pb::AuditLogRequest,
) -> anyhow::Result<Vec<pb::AuditEntry>> {
    Ok(h.admin(via)
        .await?
        .audit_log(request)
        .await?
        .into_inner()
        .entries)
}

fn entry(e: &pb::AuditEntry) -> AuditEntry {
    AuditEntry {
        seq: e.seq,
        record: AuditRecord {
            time_ms: e.time_ms,
            node: e.node,
            principal: e.principal.clone(),
            action: e.action.clone(),
            bucket: e.bucket.clone(),
            key: e.key.clone(),
            object_sha256: e.object_sha256.clone(),
            outcome: e.outcome.clone(),
        },
        prev_hash: e.prev_hash.clone(),
        hash: e.hash.clone(),
    }
}

/// A formed 6-node cluster sealing every `SEAL` entries, bucket `footage`
/// (4+2) empty, and at least `entries` audit entries (stats of absent
/// keys `cam/<i % 50>`) sealed into segments, as the leader reports.
async fn sealed_cluster(entries: u64, raft: RaftTuning) -> anyhow::Result<(Harness, u64)> {
    let mut s = spec(6, 3);
    s.raft = raft;
    s.audit = AuditTuning {
        seal_entries: SEAL,
        ..AuditTuning::default()
    };
    let mut h = cluster!(spec = s)?;
    h.form().await?;
    let leader = h.leader().await?;
    h.create_bucket(leader, "footage", 4, 2).await?;
    let mut client = h.objects(leader).await?;
    for i in 0..entries {
        let absent = client
            .stat(pb::StatRequest {
                bucket: "footage".into(),
                key: format!("cam/{}", i % 50),
            })
            .await
            .expect_err("absent");
        assert_eq!(absent.code(), tonic::Code::NotFound);
    }
    let want = entries / SEAL;
    wait_for("segments sealed", HEAL_TIMEOUT, || async {
        h.run_worker(leader, "audit-seal").await?;
        let w = h.worker(leader, "audit-seal").await?;
        Ok((counter(&w, "segments_sealed") >= want).then_some(()))
    })
    .await?;
    Ok((h, leader))
}

#[tokio::test]
async fn sealed_log_reads_verifies_and_heals() -> anyhow::Result<()> {
    let (h, leader) = sealed_cluster(350, fast_raft()).await?;
    let head = log(
        &h,
        leader,
        pb::AuditLogRequest {
            limit: 10_000,
            ..Default::default()
        },
    )
    .await?;
    // The whole log reads back in order, sealed part and tail alike.
    for (i, e) in head.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
    }
    assert!(head.len() >= 350);
    for id in h.ids() {
        wait_for("node has the whole log", HEAL_TIMEOUT, || async {
            let v = h.audit_verify(id).await?;
            assert!(v.intact, "node {id}: {}", v.reason);
            Ok((v.entries >= head.len() as u64).then_some(v))
        })
        .await
        .map(|v| assert!(v.sealed_segments >= 3, "node {id}: {v:?}"))?;
    }
    // Filters work across segments: cam/7 was stat'ed at i = 7, 57, ...
    let cam7 = log(
        &h,
        2,
        pb::AuditLogRequest {
            key: "cam/7".into(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(cam7.len(), 7, "{cam7:?}");
    assert!(cam7.iter().all(|e| e.key == "cam/7" && e.action == "stat"));
    assert!(cam7.windows(2).all(|w| w[0].seq < w[1].seq));
    let paged = log(
        &h,
        3,
        pb::AuditLogRequest {
            after_seq: 150,
            limit: 20,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(
        paged.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (151..171).collect::<Vec<_>>()
    );
    let nobody = log(
        &h,
        3,
        pb::AuditLogRequest {
            principal: "nobody".into(),
            ..Default::default()
        },
    )
    .await?;
    assert!(nobody.is_empty());

    // The bucket is the cluster's: readable with the audit role, written by
    // nobody, its name not available to clients.
    let mut objects = h.objects(1).await?;
    let listed = objects
        .list(pb::ListRequest {
            bucket: AUDIT_BUCKET.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .objects;
    assert!(listed.len() >= 3, "{listed:?}");
    let refused = objects
        .delete(pb::DeleteRequest {
            bucket: AUDIT_BUCKET.into(),
            key: listed[0].key.clone(),
        })
        .await
        .expect_err("nobody deletes a sealed segment");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let refused = h
        .put(1, AUDIT_BUCKET, "segment/forged", b"x")
        .await
        .expect_err("nobody writes into the audit bucket");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let refused = h
        .admin(1)
        .await?
        .create_bucket(pb::CreateBucketRequest {
            name: "tresor.other".into(),
            data: 2,
            parity: 1,
            retention: String::new(),
        })
        .await
        .expect_err("reserved name");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // One flipped byte in one shard file of a segment (the only objects
    // stored): scrub finds it, the log still verifies everywhere (the read
    // rebuilds around it: damage, not tampering), and repair restores it.
    let victim_file = h
        .shard_files(4)
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("node 4 holds no segment shard"))?;
    flip_byte(&victim_file, 64 + 5)?;
    let (_, errors) = h.scrub_everywhere(&h.ids()).await?;
    assert_eq!(errors, 1, "scrub must find the flipped byte");
    for id in h.ids() {
        let v = h.audit_verify(id).await?;
        assert!(v.intact, "node {id} calls damage tampering: {}", v.reason);
    }
    h.run_worker(leader, "repair").await?;
    h.wait_fully_redundant(leader).await?;
    let (_, errors) = h.scrub_everywhere(&h.ids()).await?;
    assert_eq!(errors, 0, "repair must have restored the file");
    Ok(())
}

#[tokio::test]
async fn replaced_segment_is_named_at_the_changed_entry() -> anyhow::Result<()> {
    let (mut h, leader) = sealed_cluster(350, fast_raft()).await?;
    // The second segment's entries, with one record changed and its hash
    // left as it was: a validly encoded segment telling another story.
    let second = log(
        &h,
        leader,
        pb::AuditLogRequest {
            after_seq: SEAL,
            limit: SEAL as u32,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(second.first().map(|e| e.seq), Some(SEAL + 1));
    let mut forged: Vec<AuditEntry> = second.iter().map(entry).collect();
    let changed = SEAL + 6;
    forged[5].record.outcome = "ok".into();
    forged[5].record.principal = "someone-else".into();
    h.put(leader, "footage", "forged", &encode_segment(&forged))
        .await?;
    // And the third segment replaced by bytes that decode as no segment.
    h.put(leader, "footage", "garbage", b"not an audit segment")
        .await?;
    // An object the sealed stats name (`cam/7`), for a custody export.
    h.put(leader, "footage", "cam/7", b"frames").await?;
    let segment_keys = h
        .objects(leader)
        .await?
        .list(pb::ListRequest {
            bucket: AUDIT_BUCKET.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect::<Vec<_>>();
    let segment_starting = |first: u64| {
        let prefix = format!("segment/{first:020}-");
        let key = segment_keys.iter().find(|k| k.starts_with(&prefix));
        key.cloned()
            .ok_or_else(|| anyhow::anyhow!("no segment from entry {first}"))
    };
    let (segment_key, third_key) = (segment_starting(SEAL + 1)?, segment_starting(2 * SEAL + 1)?);

    let victim = h
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let head = h.audit_verify(leader).await?.entries;
    wait_for("victim has the whole log", HEAL_TIMEOUT, || async {
        Ok((h.audit_verify(victim).await?.entries >= head).then_some(()))
    })
    .await?;
    h.stop(victim).await;
    {
        // On the victim, the segment's key now names the forged object.
        let db = tresor_node::meta::database::open(&h.data_dir(victim).join("meta"), 1 << 20)?;
        let tree = tresor_node::raft::state_machine::state_tree(&db)?;
        let object_key = |bucket: &str, key: &str| {
            [b"object/", bucket.as_bytes(), b"\0", key.as_bytes()].concat()
        };
        let forged_manifest = tree
            .get(object_key("footage", "forged"))?
            .ok_or_else(|| anyhow::anyhow!("forged object not stored"))?;
        let sealed = object_key(AUDIT_BUCKET, &segment_key);
        assert!(tree.contains_key(&sealed)?);
        tree.insert(sealed, forged_manifest)?;
        let garbage_manifest = tree
            .get(object_key("footage", "garbage"))?
            .ok_or_else(|| anyhow::anyhow!("garbage object not stored"))?;
        let third = object_key(AUDIT_BUCKET, &third_key);
        assert!(tree.contains_key(&third)?);
        tree.insert(third, garbage_manifest)?;
        db.flush()?;
    }
    h.restart(victim).await?;
    let v = h.audit_verify(victim).await?;
    assert!(!v.intact);
    assert_eq!(v.broken_seq, Some(changed), "{}", v.reason);
    assert!(
        h.audit_verify(leader).await?.intact,
        "the other copies are untouched"
    );
    // The log read through the third segment, on the victim: DATA_LOSS.
    let request = pb::AuditLogRequest {
        after_seq: 2 * SEAL,
        limit: 10,
        ..Default::default()
    };
    let unreadable = log(&h, victim, request)
        .await
        .expect_err("undecodable segment");
    let status = unreadable
        .downcast_ref::<tonic::Status>()
        .ok_or_else(|| anyhow::anyhow!("not a status: {unreadable:#}"))?;
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
    assert!(status.message().contains("unreadable"), "{status:?}");
    // So does a custody export of an object the segment names.
    let export = pb::ExportCustodyRequest {
        bucket: "footage".into(),
        key: "cam/7".into(),
        checkpoint_segments: 0,
    };
    let refused = h.admin(victim).await?.export_custody(export).await;
    let status = refused.expect_err("custody through an undecodable segment");
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
    Ok(())
}

#[tokio::test]
async fn new_node_catches_up_from_a_snapshot_with_sealed_audit() -> anyhow::Result<()> {
    // Snapshots often and no log kept behind them: a node added later can
    // only catch up from a snapshot.
    let raft = RaftTuning {
        snapshot_after_entries: 500,
        keep_entries_after_snapshot: 0,
        ..fast_raft()
    };
    let (mut h, leader) = sealed_cluster(150, raft).await?;
    const OBJECTS: usize = 2_000;
    const WRITERS: usize = 8;
    let writers = (0..WRITERS).map(|w| {
        let h = &h;
        async move {
            for i in (w..OBJECTS).step_by(WRITERS) {
                let body = format!("clip {i}").repeat(64);
                h.put(
                    1 + (i as u64 % 6),
                    "footage",
                    &format!("cam/{i:05}"),
                    body.as_bytes(),
                )
                .await?;
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(writers).await?;
    let applied = h.local_status(leader).await?.applied_index;
    wait_for("leader compacts its log", HEAL_TIMEOUT, || async {
        let s = h.local_status(leader).await?;
        Ok(s.purged_index.filter(|p| *p + 500 > applied))
    })
    .await?;

    let new = h.spawn_new_node("dc1").await?;
    h.add_node(leader, new).await?;
    let head = h.audit_verify(leader).await?.entries;
    let v = wait_for("new node has the log", HEAL_TIMEOUT, || async {
        let v = h.audit_verify(new).await?;
        Ok((v.entries >= head).then_some(v))
    })
    .await?;
    assert!(v.intact, "{}", v.reason);
    assert!(v.sealed_segments >= 1, "{v:?}");
    let s = h.local_status(new).await?;
    assert!(
        s.snapshot_index.is_some(),
        "the new node must have installed a snapshot"
    );

    // A linearizable list through the new node sees every object.
    let mut objects = h.objects(new).await?;
    let (mut seen, mut token) = (0, String::new());
    loop {
        let page = objects
            .list(pb::ListRequest {
                bucket: "footage".into(),
                page_size: 700,
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        seen += page.objects.len();
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, OBJECTS);
    Ok(())
}

/// `tresor ARGS` (the user CLI) with the test CA: (success, stdout,
/// stderr).
fn user_cli(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let ca = process_pki()?.ca_cert.to_string_lossy().into_owned();
    Harness::cli_env(CLI, args, &[("TRESOR_CA", &ca)], Duration::from_secs(30))
        .map(|(ok, out, err)| (ok, String::from_utf8_lossy(&out).into_owned(), err))
}

/// `tresor-node audit checkpoint ARGS` through `endpoint`: its stdout.
fn checkpoint_cli(endpoint: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["--endpoint", endpoint, "audit", "checkpoint"];
    all.extend_from_slice(args);
    let (fine, out, err) = Harness::cli(NODE, &all, Duration::from_secs(60))?;
    anyhow::ensure!(fine, "audit checkpoint {args:?}: {err}");
    Ok(out)
}

#[tokio::test]
async fn checkpoints_anchor_custody_bundles_to_a_published_history() -> anyhow::Result<()> {
    let (h, leader) = sealed_cluster(250, fast_raft()).await?;
    let dir = tempfile::tempdir()?;
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    // The clip cam/7 was stat'ed (absent) in every sealed segment; now it
    // is stored and read, in the unsealed tail.
    let clip = b"footage of cam 7".repeat(100);
    h.put(leader, "footage", "cam/7", &clip).await?;
    std::fs::write(path("clip"), &clip)?;
    h.get(2, "footage", "cam/7", None, None).await?;
    let endpoint = h.endpoint(3);

    // The sealer signed a checkpoint by itself after its first seals.
    let sealer = h.worker(leader, "audit-seal").await?;
    assert!(counter(&sealer, "checkpoints_signed") >= 1, "{sealer:?}");
    // Asked for, a checkpoint covers the log to the request: the put and
    // the read of the clip are sealed into it.
    let head = h.audit_verify(leader).await?.entries;
    let out = checkpoint_cli(&endpoint, &["-o", &path("cp1.json")])?;
    let cp1: SignedReceipt = SignedReceipt::from_json(&std::fs::read_to_string(path("cp1.json"))?)?;
    let body1: tresor_client::anchor::CheckpointBody = serde_json::from_str(&cp1.body)?;
    assert!(
        body1.last_seq >= head,
        "{out}: covers {} < {head}",
        body1.last_seq
    );
    assert!(body1.segments >= 3, "{out}: the tail was sealed for it");
    assert!(!cp1.signature.is_empty());
    // The same checkpoint is there to fetch by its size, from any node.
    let size = body1.segments.to_string();
    checkpoint_cli(
        &h.endpoint(5),
        &["--segments", &size, "-o", &path("again.json")],
    )?;
    assert_eq!(
        std::fs::read_to_string(path("again.json"))?,
        std::fs::read_to_string(path("cp1.json"))?
    );

    // A bundle made now is anchored to it: every entry of the clip (the
    // five stats in sealed segments, the put, the read) is proven in the
    // published history; only the export itself comes after.
    let export = |args: &[&str]| -> anyhow::Result<()> {
        let mut all = vec!["--endpoint", &endpoint, "custody", "footage/cam/7"];
        all.extend_from_slice(args);
        let (fine, _, err) = user_cli(&all)?;
        anyhow::ensure!(fine, "custody export: {err}");
        Ok(())
    };
    export(&["-o", &path("b1.json")])?;
    let verify = |bundle: &str, checkpoint: &str| {
        user_cli(&[
            "--output",
            "json",
            "custody",
            "verify",
            &path(bundle),
            "--file",
            &path("clip"),
            "--checkpoint",
            &path(checkpoint),
        ])
    };
    let (fine, out, err) = verify("b1.json", "cp1.json")?;
    assert!(fine, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out)?;
    let anchored = report["anchor"]["entries_anchored"].as_u64().unwrap_or(0);
    assert!(anchored >= 7, "{out}");
    assert_eq!(report["anchor"]["entries_after"].as_u64(), Some(1), "{out}");
    assert_eq!(
        report["anchor"]["checkpoint_segments"].as_u64(),
        Some(body1.segments)
    );

    // A later checkpoint: a new default bundle is anchored to it, and
    // checking that against the first one says how to get a matching one.
    h.get(4, "footage", "cam/7", None, None).await?;
    checkpoint_cli(&endpoint, &["-o", &path("cp2.json")])?;
    export(&["-o", &path("b2.json")])?;
    let (fine, _, err) = verify("b2.json", "cp1.json")?;
    assert!(!fine);
    assert!(
        err.contains(&format!("--checkpoint {}", body1.segments)),
        "{err}"
    );
    let (fine, _, err) = verify("b2.json", "cp2.json")?;
    assert!(fine, "{err}");
    export(&["-o", &path("b3.json"), "--checkpoint", &size])?;
    let (fine, out, err) = verify("b3.json", "cp1.json")?;
    assert!(fine, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(
        report["anchor"]["entries_anchored"].as_u64(),
        Some(anchored),
        "{out}"
    );
    // After cp1: the first export, the read, the second export (the
    // third export is recorded before its bundle is made, so it is in it).
    assert_eq!(report["anchor"]["entries_after"].as_u64(), Some(4), "{out}");

    // The whole history, checkpoints included, verifies on every node.
    for id in h.ids() {
        let v = h.audit_verify(id).await?;
        assert!(v.intact, "node {id}: {}", v.reason);
    }
    Ok(())
}
