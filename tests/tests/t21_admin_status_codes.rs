//! Status codes `proto/tresor/v1/admin.proto` documents for the Admin
//! service, each triggered on a running cluster: membership (bad, taken
//! and foreign nodes, unknown ids, a node holding shards), buckets
//! (names, schemes, policies, non-empty deletes), access (principals,
//! grants, tokens and S3 keys, the last admin), the evidence lifecycle
//! (policies, extensions, holds, receipts, custody), paging tokens, the
//! codes common to every call (no credentials, no role, an oversize
//! message, no leader), on an insecure one-node cluster what needs a
//! master key, a signer or a second voter, and a checkpoint the stalled
//! sealer does not make in time.
//!
//! Triggered elsewhere, with the faults they need: AddNode UNAVAILABLE for
//! a node still catching up (`t20_membership`), AuditLog and ExportCustody
//! DATA_LOSS for an undecodable sealed segment (`t81_audit_sealing`),
//! AddNode ALREADY_EXISTS for an address of another node (two live
//! processes cannot share one here: the state machine's unit test
//! `ids_are_never_reused_and_refusals_change_nothing`), ExtendRetention
//! FAILED_PRECONDITION when the key holds another object (the unit test
//! `retention_is_only_ever_extended`: tombstones keep keys taken, so no
//! cluster gets there). Init's UNAVAILABLE (a new one-voter cluster that
//! elects no leader) has no test: nothing short of a broken Raft store
//! stops a lone voter electing itself.

use std::time::Duration;

use tonic::Code;
use tresor_client::AdminClient;
use tresor_proto::v1 as pb;
use tresor_proto::v1::uploads_client::UploadsClient;
use tresor_tests::{cluster, header, insecure_spec, Harness};

/// The bound of every wait (every call also carries the admin deadline).
const WAIT: Duration = Duration::from_secs(120);

/// Asserts that `result` is a refusal with `code` whose message contains
/// `words`.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, words: &str) {
    match result {
        Ok(answer) => panic!("expected {code:?} ({words}), got {answer:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{words}: {status:?}");
            assert!(status.message().contains(words), "{words:?}: {status:?}");
        }
    }
}

/// `call`, bounded.
async fn within<T>(call: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::time::timeout(WAIT, call).await?)
}

fn add(id: u64, addr: &str, zone: &str) -> pb::AddNodeRequest {
    let (addr, zone) = (addr.into(), zone.into());
    pb::AddNodeRequest {
        id,
        addr,
        zone,
        capacity: 0,
    }
}

fn bucket(name: &str, data: u32, parity: u32, retention: &str) -> pb::CreateBucketRequest {
    let (name, retention) = (name.into(), retention.into());
    pb::CreateBucketRequest {
        name,
        data,
        parity,
        retention,
    }
}

fn grant(principal: &str, role: &str, bucket: Option<&str>) -> pb::GrantRequest {
    let (principal, role) = (principal.into(), role.into());
    let bucket = bucket.map(str::to_string);
    pb::GrantRequest {
        principal,
        role,
        bucket,
    }
}

fn revoke(principal: &str, role: &str, bucket: Option<&str>) -> pb::RevokeRequest {
    let (principal, role) = (principal.into(), role.into());
    let bucket = bucket.map(str::to_string);
    pb::RevokeRequest {
        principal,
        role,
        bucket,
    }
}

fn policy(
    name: &str,
    keep_min_ms: Option<u64>,
    delete_after_ms: Option<u64>,
) -> pb::CreateRetentionRequest {
    pb::CreateRetentionRequest {
        name: name.into(),
        keep_min_ms,
        delete_after_ms,
    }
}

fn extend(bucket: &str, key: &str, policy: &str) -> pb::ExtendRetentionRequest {
    let (bucket, key, policy) = (bucket.into(), key.into(), policy.into());
    pb::ExtendRetentionRequest {
        bucket,
        key,
        policy,
    }
}

fn hold(
    case: &str,
    bucket: &str,
    target: Option<pb::place_hold_request::Target>,
) -> pb::PlaceHoldRequest {
    let (case_id, bucket) = (case.into(), bucket.into());
    pb::PlaceHoldRequest {
        case_id,
        bucket,
        target,
        reason: "case file 17".into(),
    }
}

fn key_target(key: &str) -> Option<pb::place_hold_request::Target> {
    Some(pb::place_hold_request::Target::Key(key.into()))
}

fn prefix_target(prefix: &str) -> Option<pb::place_hold_request::Target> {
    Some(pb::place_hold_request::Target::Prefix(prefix.into()))
}

fn receipts(bucket: &str, prefix: &str, page_token: &str) -> pb::ListReceiptsRequest {
    pb::ListReceiptsRequest {
        bucket: bucket.into(),
        prefix: prefix.into(),
        page_size: 0,
        page_token: page_token.into(),
    }
}

fn custody(bucket: &str, key: &str, checkpoint_segments: u64) -> pb::ExportCustodyRequest {
    let (bucket, key) = (bucket.into(), key.into());
    pb::ExportCustodyRequest {
        bucket,
        key,
        checkpoint_segments,
    }
}

/// Admin calls that change nothing: every one answers its documented code.
#[tokio::test]
async fn admin_calls_answer_the_codes_the_proto_documents() -> anyhow::Result<()> {
    let mut h = cluster!(3)?;
    h.form().await?;
    let leader = h.leader().await?;
    let follower = h
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("3 nodes");
    // Changes go through a follower too: its answers are the leader's.
    let mut a = h.admin(follower).await?;
    h.create_bucket(leader, "footage", 2, 1).await?;
    h.put(leader, "footage", "clip-1", b"frames").await?;

    membership(&mut h, &mut a).await?;
    buckets(&h, &mut a).await?;
    access(&mut a).await?;
    lifecycle(&h, &mut a).await?;
    common(&mut h, &mut a).await?;
    Ok(())
}

/// AddNode, RemoveNode, DrainNode, RunWorker and Init.
async fn membership(h: &mut Harness, a: &mut AdminClient) -> anyhow::Result<()> {
    let zone = h.zone(1);
    let r = a.add_node(add(0, "127.0.0.1:7000", &zone)).await;
    assert_refused(r, Code::InvalidArgument, "at least 1");
    let r = a.add_node(add(2, &h.addr(2), &h.zone(2))).await;
    assert_refused(r, Code::AlreadyExists, "node id 2 is already in use");
    let r = a.add_node(add(9, "127.0.0.1:1", &zone)).await;
    assert_refused(r, Code::Unavailable, "cannot reach");
    // A node that made a cluster of its own cannot be added to this one;
    // and Init on it again: FAILED_PRECONDITION.
    let foreign = h.spawn_new_node(&zone).await?;
    let mut other = h.admin(foreign).await?;
    other.init(pb::InitRequest {}).await?;
    let r = h.add_node(h.leader_among(&[1, 2, 3]).await?, foreign).await;
    assert_refused(r, Code::FailedPrecondition, "another cluster");
    let r = other.init(pb::InitRequest {}).await;
    assert_refused(r, Code::FailedPrecondition, "already");
    h.stop(foreign).await;

    let r = a
        .remove_node(pb::RemoveNodeRequest {
            id: 99,
            force: false,
        })
        .await;
    assert_refused(r, Code::NotFound, "99");
    // Every node of a 2+1 bucket on three nodes holds a shard of clip-1.
    let r = a
        .remove_node(pb::RemoveNodeRequest {
            id: 3,
            force: false,
        })
        .await;
    assert_refused(r, Code::FailedPrecondition, "shard");
    let r = a.drain_node(pb::DrainNodeRequest { id: 99 }).await;
    assert_refused(r, Code::NotFound, "99");
    let name = "no-such-worker".to_string();
    let r = a.run_worker(pb::RunWorkerRequest { name }).await;
    assert_refused(r, Code::NotFound, "no-such-worker");
    Ok(())
}

/// CreateBucket and DeleteBucket.
async fn buckets(h: &Harness, a: &mut AdminClient) -> anyhow::Result<()> {
    let r = a.create_bucket(bucket("Bad_Name", 2, 1, "")).await;
    assert_refused(r, Code::InvalidArgument, "bucket name");
    let r = a.create_bucket(bucket("no-data", 0, 1, "")).await;
    assert_refused(r, Code::InvalidArgument, "data");
    let r = a.create_bucket(bucket("footage", 2, 1, "")).await;
    assert_refused(r, Code::AlreadyExists, "footage");
    let r = a
        .create_bucket(bucket("kept", 2, 1, "no-such-policy"))
        .await;
    assert_refused(r, Code::NotFound, "no-such-policy");

    let name = "nowhere".to_string();
    let r = a.delete_bucket(pb::DeleteBucketRequest { name }).await;
    assert_refused(r, Code::NotFound, "nowhere");
    let name = "footage".to_string();
    let r = a.delete_bucket(pb::DeleteBucketRequest { name }).await;
    assert_refused(r, Code::FailedPrecondition, "object");
    // A bucket holding only an upload in progress, or only a hold.
    a.create_bucket(bucket("uploading", 2, 1, "")).await?;
    let channel = tresor_client::connect_with(&h.endpoint(1), h.credentials()).await?;
    let transport = tresor_client::channel::transport_with_deadline(channel, h.credentials(), WAIT);
    let header = Some(header("uploading", "long-clip"));
    UploadsClient::new(transport)
        .create_upload(pb::CreateUploadRequest { header })
        .await?;
    let name = "uploading".to_string();
    let r = a.delete_bucket(pb::DeleteBucketRequest { name }).await;
    assert_refused(r, Code::FailedPrecondition, "upload");
    a.create_bucket(bucket("held", 2, 1, "")).await?;
    a.place_hold(hold("case-held", "held", key_target("k")))
        .await?;
    let name = "held".to_string();
    let r = a.delete_bucket(pb::DeleteBucketRequest { name }).await;
    assert_refused(r, Code::FailedPrecondition, "hold");
    Ok(())
}

/// Principals, grants, tokens and S3 keys.
async fn access(a: &mut AdminClient) -> anyhow::Result<()> {
    let principal = |name: &str| pb::CreatePrincipalRequest { name: name.into() };
    let r = a.create_principal(principal("no spaces")).await;
    assert_refused(r, Code::InvalidArgument, "principal");
    let r = a.create_principal(principal("admin")).await;
    assert_refused(r, Code::AlreadyExists, "admin");
    let gone = |name: &str| pb::DeletePrincipalRequest { name: name.into() };
    let r = a.delete_principal(gone("nobody")).await;
    assert_refused(r, Code::NotFound, "nobody");
    let r = a.delete_principal(gone("admin")).await;
    assert_refused(r, Code::FailedPrecondition, "admin");

    a.create_principal(principal("viewer")).await?;
    let r = a.grant(grant("no spaces", "read", None)).await;
    assert_refused(r, Code::InvalidArgument, "principal");
    let r = a.grant(grant("viewer", "superuser", None)).await;
    assert_refused(r, Code::InvalidArgument, "superuser");
    let r = a.grant(grant("viewer", "read", Some("Bad_Name"))).await;
    assert_refused(r, Code::InvalidArgument, "bucket name");
    let r = a.grant(grant("nobody", "read", None)).await;
    assert_refused(r, Code::NotFound, "nobody");
    let r = a.grant(grant("viewer", "read", Some("nowhere"))).await;
    assert_refused(r, Code::NotFound, "nowhere");
    let r = a.revoke(revoke("nobody", "read", None)).await;
    assert_refused(r, Code::NotFound, "nobody");
    let r = a.revoke(revoke("viewer", "read", Some("footage"))).await;
    assert_refused(r, Code::NotFound, "viewer");
    let r = a.revoke(revoke("admin", "admin", None)).await;
    assert_refused(r, Code::FailedPrecondition, "admin");

    let principal = "nobody".to_string();
    let r = a.create_token(pb::CreateTokenRequest { principal }).await;
    assert_refused(r, Code::NotFound, "nobody");
    let id = "tok-unknown".to_string();
    let r = a.revoke_token(pb::RevokeTokenRequest { id }).await;
    assert_refused(r, Code::NotFound, "tok-unknown");
    let principal = "nobody".to_string();
    let r = a.create_s3_key(pb::CreateS3KeyRequest { principal }).await;
    assert_refused(r, Code::NotFound, "nobody");
    let access_key_id = "TRSUNKNOWN0000000000".to_string();
    let r = a
        .revoke_s3_key(pb::RevokeS3KeyRequest { access_key_id })
        .await;
    assert_refused(r, Code::NotFound, "TRSUNKNOWN0000000000");
    Ok(())
}

/// Retention policies, extensions, holds, receipts, custody, pages.
async fn lifecycle(h: &Harness, a: &mut AdminClient) -> anyhow::Result<()> {
    const HOUR: u64 = 3_600_000;
    let r = a
        .create_retention(policy("Bad Name", Some(HOUR), None))
        .await;
    assert_refused(r, Code::InvalidArgument, "name");
    let r = a
        .create_retention(policy("inverted", Some(2 * HOUR), Some(HOUR)))
        .await;
    assert_refused(r, Code::InvalidArgument, "delete");
    a.create_retention(policy("long", Some(48 * HOUR), None))
        .await?;
    a.create_retention(policy("short", Some(HOUR), None))
        .await?;
    let r = a
        .create_retention(policy("long", Some(48 * HOUR), None))
        .await;
    assert_refused(r, Code::AlreadyExists, "long");

    let set = |bucket: &str, policy: &str| pb::SetBucketRetentionRequest {
        bucket: bucket.into(),
        policy: policy.into(),
    };
    let r = a.set_bucket_retention(set("nowhere", "long")).await;
    assert_refused(r, Code::NotFound, "nowhere");
    let r = a
        .set_bucket_retention(set("footage", "no-such-policy"))
        .await;
    assert_refused(r, Code::NotFound, "no-such-policy");
    a.create_bucket(bucket("kept", 2, 1, "long")).await?;
    h.put(1, "kept", "clip-2", b"frames").await?;
    let r = a.extend_retention(extend("kept", "absent", "long")).await;
    assert_refused(r, Code::NotFound, "absent");
    let r = a
        .extend_retention(extend("kept", "clip-2", "no-such-policy"))
        .await;
    assert_refused(r, Code::NotFound, "no-such-policy");
    let r = a.extend_retention(extend("kept", "clip-2", "short")).await;
    assert_refused(r, Code::FailedPrecondition, "");

    let r = a
        .place_hold(hold("bad case", "footage", key_target("clip-1")))
        .await;
    assert_refused(r, Code::InvalidArgument, "case id");
    let r = a.place_hold(hold("case-1", "footage", None)).await;
    assert_refused(r, Code::InvalidArgument, "");
    let unexplained = pb::PlaceHoldRequest {
        reason: " ".into(),
        ..hold("case-1", "footage", key_target("clip-1"))
    };
    let r = a.place_hold(unexplained).await;
    assert_refused(r, Code::InvalidArgument, "reason");
    let r = a
        .place_hold(hold("case-1", "nowhere", key_target("clip-1")))
        .await;
    assert_refused(r, Code::NotFound, "nowhere");
    a.place_hold(hold("case-1", "footage", key_target("clip-1")))
        .await?;
    let r = a
        .place_hold(hold("case-1", "footage", key_target("clip-1")))
        .await;
    assert_refused(r, Code::AlreadyExists, "case-1");
    let release = |case: &str, target| pb::ReleaseHoldRequest {
        case_id: case.into(),
        bucket: "footage".into(),
        target,
    };
    use pb::release_hold_request::Target as Released;
    let r = a
        .release_hold(release("case-2", Some(Released::Key("clip-1".into()))))
        .await;
    assert_refused(r, Code::NotFound, "case-2");
    let r = a.release_hold(release("case-1", None)).await;
    assert_refused(r, Code::InvalidArgument, "");
    prefix_hold_limit(h).await?;

    let page_token = "not-a-token!".to_string();
    let holds = pb::ListHoldsRequest {
        page_token: page_token.clone(),
        ..Default::default()
    };
    let r = a.list_holds(holds).await;
    assert_refused(r, Code::InvalidArgument, "token");
    let r = a.list_receipts(receipts("", "clip", "")).await;
    assert_refused(r, Code::InvalidArgument, "prefix");
    let r = a.list_receipts(receipts("Bad_Name", "", "")).await;
    assert_refused(r, Code::InvalidArgument, "bucket name");
    let r = a.list_receipts(receipts("footage", "", &page_token)).await;
    assert_refused(r, Code::InvalidArgument, "token");
    let uploads = pb::ListUploadsRequest {
        page_size: 0,
        page_token,
    };
    let r = a.list_uploads(uploads).await;
    assert_refused(r, Code::InvalidArgument, "token");

    let (bucket, key) = ("footage".to_string(), "clip-1".to_string());
    let r = a.get_receipt(pb::GetReceiptRequest { bucket, key }).await;
    assert_refused(r, Code::NotFound, "clip-1");
    let r = a
        .export_custody(custody("footage", "never-stored", 0))
        .await;
    assert_refused(r, Code::NotFound, "never-stored");
    let r = a
        .export_custody(custody("footage", "clip-1", 999_999))
        .await;
    assert_refused(r, Code::NotFound, "999999");
    let segments = 999_999;
    let r = a
        .audit_checkpoint(pb::AuditCheckpointRequest { segments })
        .await;
    assert_refused(r, Code::NotFound, "999999");
    Ok(())
}

/// A bucket takes at most 1000 prefix holds: the 1001st is refused.
async fn prefix_hold_limit(h: &Harness) -> anyhow::Result<()> {
    const LIMIT: usize = 1000;
    let mut a = h.admin(h.ids()[0]).await?;
    a.create_bucket(bucket("prefixes", 2, 1, "")).await?;
    let mut placed = 0;
    // Sixteen calls at a time, each to its own connection's stream.
    for batch in (0..LIMIT).collect::<Vec<_>>().chunks(16) {
        let calls = batch.iter().map(|i| {
            let mut a = a.clone();
            let request = hold(&format!("case-{i}"), "prefixes", prefix_target("unit-"));
            async move { a.place_hold(request).await }
        });
        for answer in within(futures::future::join_all(calls)).await? {
            answer?;
            placed += 1;
        }
    }
    assert_eq!(placed, LIMIT);
    let r = a
        .place_hold(hold("case-over", "prefixes", prefix_target("unit-")))
        .await;
    assert_refused(r, Code::FailedPrecondition, "1000 prefix holds");
    // A key hold is not a prefix hold: still allowed.
    a.place_hold(hold("case-over", "prefixes", key_target("unit-1")))
        .await?;
    Ok(())
}

/// The codes every call shares: no usable credentials, no role, an
/// oversize message, and no leader to serve a change.
async fn common(h: &mut Harness, a: &mut AdminClient) -> anyhow::Result<()> {
    let name = "viewer".to_string();
    let principal = name.clone();
    let token = a
        .create_token(pb::CreateTokenRequest { principal })
        .await?
        .into_inner();
    let leader = h.leader().await?;
    let as_token = |token: &str| -> anyhow::Result<_> {
        Ok(h.client_credentials("unused")?
            .without_identity()
            .with_token(token)?)
    };
    let mut viewer =
        tresor_client::admin_with(&h.endpoint(leader), &as_token(&token.token)?).await?;
    let r = viewer.list_principals(pb::ListPrincipalsRequest {}).await;
    assert_refused(r, Code::PermissionDenied, "");
    let forged = format!("{}x", token.token);
    let mut stranger = tresor_client::admin_with(&h.endpoint(leader), &as_token(&forged)?).await?;
    let r = stranger.list_principals(pb::ListPrincipalsRequest {}).await;
    assert_refused(r, Code::Unauthenticated, "");
    let huge = "a".repeat(16 << 20);
    // (this client sends what the server must refuse)
    let mut unlimited = a.clone().max_encoding_message_size(usize::MAX);
    let r = unlimited
        .create_principal(pb::CreatePrincipalRequest { name: huge })
        .await;
    assert_refused(r, Code::ResourceExhausted, "");

    // Two of three nodes stopped: the third has no leader to pass a change
    // to, and says so (after trying for a bounded time).
    let survivor = [1, 2, 3].into_iter().find(|id| *id != leader);
    let survivor = survivor.expect("3 nodes");
    for id in [1, 2, 3] {
        if id != survivor {
            h.stop(id).await;
        }
    }
    let mut lone = h.admin(survivor).await?;
    let r = within(lone.create_principal(pb::CreatePrincipalRequest { name })).await?;
    assert_refused(r, Code::Unavailable, "");
    Ok(())
}

/// What an insecure cluster of one node cannot do: make S3 keys or rotate
/// keys (no master key file), sign a checkpoint (no signer, one node),
/// or lose its only voter.
#[tokio::test]
async fn a_lone_insecure_node_refuses_what_it_cannot_do() -> anyhow::Result<()> {
    let mut h = cluster!(spec = insecure_spec(1, 1))?;
    h.form().await?;
    let mut a = h.admin(1).await?;
    let principal = "admin".to_string();
    let r = a.create_s3_key(pb::CreateS3KeyRequest { principal }).await;
    assert_refused(r, Code::FailedPrecondition, "master key");
    let r = a.rotate_keys(pb::RotateKeysRequest {}).await;
    assert_refused(r, Code::Internal, "encryption at rest unavailable");
    let r = a
        .audit_checkpoint(pb::AuditCheckpointRequest { segments: 0 })
        .await;
    assert_refused(r, Code::FailedPrecondition, "");
    let r = a
        .remove_node(pb::RemoveNodeRequest { id: 1, force: true })
        .await;
    assert_refused(r, Code::FailedPrecondition, "only voter");
    Ok(())
}

/// A request for a new checkpoint waits at most 45 s for the leader's
/// sealer, then answers DEADLINE_EXCEEDED: here every node's sealer is
/// stalled by a fault point.
#[tokio::test]
async fn a_checkpoint_the_sealer_does_not_make_in_time_is_deadline_exceeded() -> anyhow::Result<()>
{
    let mut h = cluster!(2)?;
    h.form().await?;
    for id in [1, 2] {
        h.restart_armed(id, Some("audit::seal_stalled")).await?;
    }
    let leader = h.leader().await?;
    let mut a = h.admin(leader).await?;
    let r = within(a.audit_checkpoint(pb::AuditCheckpointRequest { segments: 0 })).await?;
    assert_refused(r, Code::DeadlineExceeded, "audit-seal");
    Ok(())
}
