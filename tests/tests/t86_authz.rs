//! Authorisation: every role (and no role, no credentials, a revoked token)
//! against every public and admin operation, each cell asserted; scoping to
//! one bucket; revocations taking effect on the very next call, on another
//! node; refusals on record in the audit log; the access CLI.

use std::time::Duration;

use tonic::Code;
use tresor_client::Credentials;
use tresor_proto::v1 as pb;
use tresor_tests::{cluster, header, pattern, Harness};

use tresor_node::api::auth::Action;

const BIN: &str = env!("CARGO_BIN_EXE_tresor-test-node");

/// Every public and admin operation: the server's own list, so a new
/// action cannot be left out of the matrix (`call` must then handle it).
type Op = Action;

/// What a subject may do, spelled out per role (the test's own table, not
/// the server's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Every operation (role admin).
    All,
    /// Put only (role ingest).
    Ingest,
    /// Get, stat, list, list buckets (role read, on all buckets or on the
    /// bucket the matrix uses).
    Read,
    /// Audit log, verify and checkpoints, list holds, policies and
    /// receipts, custody bundles (role audit).
    Audit,
    /// Holds, retention extension, list holds, policies and receipts,
    /// custody bundles, audit checkpoints (role custodian on all buckets).
    Custodian,
    /// What a custodian may do on one bucket: all but the cluster-wide
    /// audit checkpoints (role custodian granted on the matrix's bucket).
    CustodianOnBucket,
    /// Nothing: PermissionDenied.
    Nothing,
    /// Nothing: Unauthenticated.
    Unauthenticated,
}

fn allowed(expect: Expect, op: Op) -> bool {
    match expect {
        Expect::All => true,
        Expect::Ingest => op == Op::Put,
        Expect::Read => matches!(
            op,
            Op::Get | Op::Stat | Op::List | Op::ListBuckets | Op::ListRetention
        ),
        Expect::Audit => matches!(
            op,
            Op::AuditLog
                | Op::AuditVerify
                | Op::AuditCheckpoint
                | Op::ListHolds
                | Op::ListRetention
                | Op::ListReceipts
                | Op::GetReceipt
                | Op::ExportCustody
        ),
        Expect::Custodian => matches!(
            op,
            Op::PlaceHold
                | Op::ReleaseHold
                | Op::ListHolds
                | Op::ExtendRetention
                | Op::ListRetention
                | Op::ListReceipts
                | Op::GetReceipt
                | Op::ExportCustody
                | Op::AuditCheckpoint
        ),
        Expect::CustodianOnBucket => op != Op::AuditCheckpoint && allowed(Expect::Custodian, op),
        Expect::Nothing | Expect::Unauthenticated => false,
    }
}

/// Calls `op` through node `via` as `creds`. Operations are chosen to be
/// harmless when allowed (names that do not exist, a cluster already
/// initialised), so the outcome of one cell does not change another;
/// `n` makes names unique per cell.
async fn call(
    h: &Harness,
    via: u64,
    creds: &Credentials,
    op: Op,
    n: usize,
) -> Result<(), tonic::Status> {
    let unavailable = |e: anyhow::Error| tonic::Status::unavailable(format!("{e:#}"));
    let endpoint = h.endpoint(via);
    let admin = || async {
        tresor_client::admin_with(&endpoint, creds)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))
    };
    let objects = || async { h.objects_with(via, creds).await.map_err(unavailable) };
    match op {
        Op::Put => {
            let messages = vec![
                pb::PutRequest {
                    msg: Some(pb::put_request::Msg::Header(header(
                        "cams",
                        &format!("put-{n}"),
                    ))),
                },
                pb::PutRequest {
                    msg: Some(pb::put_request::Msg::Data(pattern(1000, n as u64))),
                },
            ];
            objects()
                .await?
                .put(futures::stream::iter(messages))
                .await?;
        }
        Op::Get => {
            let mut stream = objects()
                .await?
                .get(pb::GetRequest {
                    bucket: "cams".into(),
                    key: "seed".into(),
                    offset: None,
                    length: None,
                })
                .await?
                .into_inner();
            while stream.message().await?.is_some() {}
        }
        Op::Stat => {
            objects()
                .await?
                .stat(pb::StatRequest {
                    bucket: "cams".into(),
                    key: "seed".into(),
                })
                .await?;
        }
        Op::List => {
            objects()
                .await?
                .list(pb::ListRequest {
                    bucket: "cams".into(),
                    ..Default::default()
                })
                .await?;
        }
        Op::Delete => {
            objects()
                .await?
                .delete(pb::DeleteRequest {
                    bucket: "cams".into(),
                    key: "no-such-key".into(),
                })
                .await?;
        }
        Op::Init => {
            admin().await?.init(pb::InitRequest {}).await?;
        }
        Op::NodeInfo => {
            admin().await?.node_info(pb::NodeInfoRequest {}).await?;
        }
        Op::AddNode => {
            admin()
                .await?
                .add_node(pb::AddNodeRequest {
                    id: 99,
                    addr: "not an address".into(),
                    zone: "z".into(),
                    capacity: 0,
                })
                .await?;
        }
        Op::RemoveNode => {
            admin()
                .await?
                .remove_node(pb::RemoveNodeRequest {
                    id: 99,
                    force: false,
                })
                .await?;
        }
        Op::DrainNode => {
            admin()
                .await?
                .drain_node(pb::DrainNodeRequest { id: 99 })
                .await?;
        }
        Op::Status => {
            admin()
                .await?
                .status(pb::StatusRequest { local: false })
                .await?;
        }
        Op::CreateBucket => {
            admin()
                .await?
                .create_bucket(pb::CreateBucketRequest {
                    name: format!("made-{n}"),
                    data: 2,
                    parity: 1,
                    retention: String::new(),
                })
                .await?;
        }
        Op::ListBuckets => {
            admin()
                .await?
                .list_buckets(pb::ListBucketsRequest {})
                .await?;
        }
        Op::Workers => {
            admin().await?.workers(pb::WorkersRequest {}).await?;
        }
        Op::ListUploads => {
            admin()
                .await?
                .list_uploads(pb::ListUploadsRequest::default())
                .await?;
        }
        Op::RunWorker => {
            admin()
                .await?
                .run_worker(pb::RunWorkerRequest {
                    name: "no-such-worker".into(),
                })
                .await?;
        }
        Op::AuditLog => {
            admin()
                .await?
                .audit_log(pb::AuditLogRequest {
                    limit: 1,
                    ..Default::default()
                })
                .await?;
        }
        Op::AuditVerify => {
            admin()
                .await?
                .audit_verify(pb::AuditVerifyRequest {})
                .await?;
        }
        Op::CreatePrincipal => {
            admin()
                .await?
                .create_principal(pb::CreatePrincipalRequest {
                    name: format!("made-{n}"),
                })
                .await?;
        }
        Op::DeletePrincipal => {
            admin()
                .await?
                .delete_principal(pb::DeletePrincipalRequest {
                    name: "ghost".into(),
                })
                .await?;
        }
        Op::ListPrincipals => {
            admin()
                .await?
                .list_principals(pb::ListPrincipalsRequest {})
                .await?;
        }
        Op::Grant => {
            admin()
                .await?
                .grant(pb::GrantRequest {
                    principal: "ghost".into(),
                    role: "read".into(),
                    bucket: None,
                })
                .await?;
        }
        Op::Revoke => {
            admin()
                .await?
                .revoke(pb::RevokeRequest {
                    principal: "ghost".into(),
                    role: "read".into(),
                    bucket: None,
                })
                .await?;
        }
        Op::CreateToken => {
            admin()
                .await?
                .create_token(pb::CreateTokenRequest {
                    principal: "ghost".into(),
                })
                .await?;
        }
        Op::RevokeToken => {
            admin()
                .await?
                .revoke_token(pb::RevokeTokenRequest {
                    id: "0000000000000000".into(),
                })
                .await?;
        }
        Op::CreateS3Key => {
            // No such principal: NOT_FOUND when allowed.
            let got = admin()
                .await?
                .create_s3_key(pb::CreateS3KeyRequest {
                    principal: "ghost".into(),
                })
                .await;
            match got {
                Err(s) if s.code() == Code::NotFound => {}
                other => {
                    other?;
                }
            }
        }
        Op::ListS3Keys => {
            admin()
                .await?
                .list_s3_keys(pb::ListS3KeysRequest {})
                .await?;
        }
        Op::RevokeS3Key => {
            let got = admin()
                .await?
                .revoke_s3_key(pb::RevokeS3KeyRequest {
                    access_key_id: "TRS00000000000000000".into(),
                })
                .await;
            match got {
                Err(s) if s.code() == Code::NotFound => {}
                other => {
                    other?;
                }
            }
        }
        Op::DeleteBucket => {
            let got = admin()
                .await?
                .delete_bucket(pb::DeleteBucketRequest {
                    name: format!("never-made-{n}"),
                })
                .await;
            match got {
                Err(s) if s.code() == Code::NotFound => {}
                other => {
                    other?;
                }
            }
        }
        Op::KeysRotate => {
            admin().await?.rotate_keys(pb::RotateKeysRequest {}).await?;
        }
        Op::CreateRetention => {
            admin()
                .await?
                .create_retention(pb::CreateRetentionRequest {
                    name: format!("made-{n}"),
                    keep_min_ms: None,
                    delete_after_ms: Some(3_600_000),
                })
                .await?;
        }
        Op::ListRetention => {
            admin()
                .await?
                .list_retention(pb::ListRetentionRequest {})
                .await?;
        }
        Op::SetBucketRetention => {
            // Clearing a policy the bucket does not have changes nothing.
            admin()
                .await?
                .set_bucket_retention(pb::SetBucketRetentionRequest {
                    bucket: "cams".into(),
                    policy: String::new(),
                })
                .await?;
        }
        Op::ExtendRetention => {
            admin()
                .await?
                .extend_retention(pb::ExtendRetentionRequest {
                    bucket: "cams".into(),
                    key: "no-such-key".into(),
                    policy: "ghost".into(),
                })
                .await?;
        }
        Op::PlaceHold => {
            // A hold on a key that does not exist keeps nothing.
            admin()
                .await?
                .place_hold(pb::PlaceHoldRequest {
                    case_id: format!("case-{n}"),
                    bucket: "cams".into(),
                    target: Some(pb::place_hold_request::Target::Key(format!("unheld-{n}"))),
                    reason: "authorisation matrix".into(),
                })
                .await?;
        }
        Op::ReleaseHold => {
            admin()
                .await?
                .release_hold(pb::ReleaseHoldRequest {
                    case_id: "ghost".into(),
                    bucket: "cams".into(),
                    target: Some(pb::release_hold_request::Target::Key("no-such-key".into())),
                })
                .await?;
        }
        Op::ListHolds => {
            admin()
                .await?
                .list_holds(pb::ListHoldsRequest {
                    bucket: "cams".into(),
                    ..Default::default()
                })
                .await?;
        }
        Op::ListReceipts => {
            admin()
                .await?
                .list_receipts(pb::ListReceiptsRequest {
                    bucket: "cams".into(),
                    ..Default::default()
                })
                .await?;
        }
        Op::ExportCustody => {
            admin()
                .await?
                .export_custody(pb::ExportCustodyRequest {
                    bucket: "cams".into(),
                    key: "seed".into(),
                    checkpoint_segments: 0,
                })
                .await?;
        }
        Op::AuditCheckpoint => {
            // No checkpoint of that size: NOT_FOUND when allowed.
            let got = admin()
                .await?
                .audit_checkpoint(pb::AuditCheckpointRequest { segments: 999_999 })
                .await;
            match got {
                Err(s) if s.code() == Code::NotFound => {}
                other => {
                    other?;
                }
            }
        }
        Op::GetReceipt => {
            // Nothing was deleted there: NOT_FOUND when allowed.
            let got = admin()
                .await?
                .get_receipt(pb::GetReceiptRequest {
                    bucket: "cams".into(),
                    key: "seed".into(),
                })
                .await;
            match got {
                Err(s) if s.code() == Code::NotFound => {}
                other => {
                    other?;
                }
            }
        }
    }
    Ok(())
}

fn refused(code: Code) -> bool {
    matches!(code, Code::PermissionDenied | Code::Unauthenticated)
}

async fn create_principal(h: &Harness, name: &str) -> anyhow::Result<()> {
    h.admin(1)
        .await?
        .create_principal(pb::CreatePrincipalRequest { name: name.into() })
        .await?;
    Ok(())
}

async fn grant(
    h: &Harness,
    via: u64,
    name: &str,
    role: &str,
    bucket: Option<&str>,
) -> anyhow::Result<()> {
    h.admin(via)
        .await?
        .grant(pb::GrantRequest {
            principal: name.into(),
            role: role.into(),
            bucket: bucket.map(Into::into),
        })
        .await?;
    Ok(())
}

async fn revoke(
    h: &Harness,
    via: u64,
    name: &str,
    role: &str,
    bucket: Option<&str>,
) -> anyhow::Result<()> {
    h.admin(via)
        .await?
        .revoke(pb::RevokeRequest {
            principal: name.into(),
            role: role.into(),
            bucket: bucket.map(Into::into),
        })
        .await?;
    Ok(())
}

async fn create_token(h: &Harness, name: &str) -> anyhow::Result<pb::CreateTokenResponse> {
    Ok(h.admin(1)
        .await?
        .create_token(pb::CreateTokenRequest {
            principal: name.into(),
        })
        .await?
        .into_inner())
}

async fn revoke_token(h: &Harness, via: u64, id: &str) -> anyhow::Result<()> {
    h.admin(via)
        .await?
        .revoke_token(pb::RevokeTokenRequest { id: id.into() })
        .await?;
    Ok(())
}

/// Credentials that trust the cluster CA and present only `token`.
fn token_creds(h: &Harness, token: &str) -> anyhow::Result<Credentials> {
    Ok(h.client_credentials("unused")?
        .without_identity()
        .with_token(token)?)
}

async fn bucket_names(h: &Harness, via: u64, creds: &Credentials) -> anyhow::Result<Vec<String>> {
    let r = tresor_client::admin_with(&h.endpoint(via), creds)
        .await?
        .list_buckets(pb::ListBucketsRequest {})
        .await?;
    Ok(r.into_inner().buckets.into_iter().map(|b| b.name).collect())
}

#[tokio::test]
async fn every_role_against_every_operation() -> anyhow::Result<()> {
    let mut h = cluster!(3)?;
    h.form().await?;
    let leader = h.leader().await?;
    let follower = h
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    h.create_bucket(1, "cams", 2, 1).await?;
    h.create_bucket(1, "other", 2, 1).await?;
    h.put(1, "cams", "seed", &pattern(5000, 1)).await?;
    h.put(1, "other", "seed", &pattern(5000, 2)).await?;

    for (name, role, bucket) in [
        ("operator", Some("admin"), None),
        ("ingester", Some("ingest"), None),
        ("reader", Some("read"), None),
        ("auditor", Some("audit"), None),
        ("custodian", Some("custodian"), None),
        ("case-officer", Some("custodian"), Some("cams")),
        ("scoped", Some("read"), Some("cams")),
        ("nobody", None, None),
    ] {
        create_principal(&h, name).await?;
        if let Some(role) = role {
            grant(&h, 1, name, role, bucket).await?;
        }
    }
    let reader_token = create_token(&h, "reader").await?;
    let revoked = create_token(&h, "operator").await?;
    revoke_token(&h, 1, &revoked.id).await?;

    let subjects: Vec<(&str, Credentials, Expect)> = vec![
        ("admin (bootstrap)", h.credentials().clone(), Expect::All),
        ("operator", h.client_credentials("operator")?, Expect::All),
        (
            "ingester",
            h.client_credentials("ingester")?,
            Expect::Ingest,
        ),
        ("reader", h.client_credentials("reader")?, Expect::Read),
        (
            "reader by token",
            token_creds(&h, &reader_token.token)?,
            Expect::Read,
        ),
        ("auditor", h.client_credentials("auditor")?, Expect::Audit),
        (
            "custodian",
            h.client_credentials("custodian")?,
            Expect::Custodian,
        ),
        (
            "custodian on cams",
            h.client_credentials("case-officer")?,
            Expect::CustodianOnBucket,
        ),
        (
            "read on cams",
            h.client_credentials("scoped")?,
            Expect::Read,
        ),
        ("no grant", h.client_credentials("nobody")?, Expect::Nothing),
        (
            "unknown principal",
            h.client_credentials("stranger")?,
            Expect::Nothing,
        ),
        (
            "no credentials",
            h.client_credentials("unused")?.without_identity(),
            Expect::Unauthenticated,
        ),
        (
            "revoked token",
            token_creds(&h, &revoked.token)?,
            Expect::Unauthenticated,
        ),
    ];

    let mut failures = Vec::new();
    let mut n = 0;
    for (who, creds, expect) in &subjects {
        for op in Action::ALL {
            n += 1;
            // Alternate between the leader and a follower, so forwarded
            // calls are checked on both nodes.
            let via = if n % 2 == 0 { leader } else { follower };
            let result = call(&h, via, creds, op, n).await;
            let want = allowed(*expect, op);
            let ok = match &result {
                Ok(()) => want,
                Err(s) if want => !refused(s.code()),
                Err(s) => match expect {
                    Expect::Unauthenticated => s.code() == Code::Unauthenticated,
                    _ => s.code() == Code::PermissionDenied,
                },
            };
            if !ok {
                failures.push(format!(
                    "{who} × {op:?} via node {via}: expected {}, got {:?}",
                    if want { "allowed" } else { "refused" },
                    result.map_err(|s| format!("{:?}: {}", s.code(), s.message()))
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // A grant on one bucket covers that bucket only.
    let scoped = h.client_credentials("scoped")?;
    let other = h
        .objects_with(follower, &scoped)
        .await?
        .stat(pb::StatRequest {
            bucket: "other".into(),
            key: "seed".into(),
        })
        .await
        .expect_err("other bucket");
    assert_eq!(other.code(), Code::PermissionDenied);
    assert!(other.message().contains("scoped"), "{}", other.message());
    assert!(other.message().contains("other"), "{}", other.message());
    assert_eq!(bucket_names(&h, follower, &scoped).await?, vec!["cams"]);
    let all = bucket_names(&h, follower, &h.client_credentials("reader")?).await?;
    assert!(all.contains(&"cams".to_string()) && all.contains(&"other".to_string()));

    // Refusals are on record, with who was refused: merged per caller,
    // action and outcome each second (`permission_denied x3`), so within
    // a second or two.
    let same = |e: &pb::AuditEntry, principal: &str, action: &str, outcome: &str| {
        e.principal == principal
            && e.action == action
            && (e.outcome == outcome || e.outcome.starts_with(&format!("{outcome} x")))
    };
    let entries = tresor_tests::wait_for(
        "the refusals on record",
        Duration::from_secs(30),
        || async {
            let entries = h.audit_log(leader, 100_000).await?;
            let all = [
                ("ingester", "get", "permission_denied"),
                ("nobody", "bucket create", "permission_denied"),
                ("scoped", "stat", "permission_denied"),
                ("anonymous@127.0.0.1", "put", "unauthenticated"),
                ("anonymous@127.0.0.1", "grant", "unauthenticated"),
                ("reader", "hold place", "permission_denied"),
                ("ingester", "retention extend", "permission_denied"),
            ]
            .iter()
            .all(|(p, a, o)| entries.iter().any(|e| same(e, p, a, o)));
            Ok(all.then_some(entries))
        },
    )
    .await?;
    let has = |principal: &str, action: &str, outcome: &str| {
        entries.iter().any(|e| same(e, principal, action, outcome))
    };
    assert!(has("ingester", "get", "permission_denied"));
    assert!(has("nobody", "bucket create", "permission_denied"));
    assert!(has("scoped", "stat", "permission_denied"));
    assert!(has("anonymous@127.0.0.1", "put", "unauthenticated"));
    assert!(has("anonymous@127.0.0.1", "grant", "unauthenticated"));
    assert!(
        has("reader", "get", "ok"),
        "calls by token carry the token's principal"
    );
    assert!(has("operator", "principal create", "ok"));
    assert!(has("reader", "hold place", "permission_denied"));
    assert!(has("ingester", "retention extend", "permission_denied"));
    assert!(has("case-officer", "hold place", "ok"));
    Ok(())
}

#[tokio::test]
async fn revocation_applies_to_the_next_call_on_any_node() -> anyhow::Result<()> {
    let mut h = cluster!(3)?;
    h.form().await?;
    let leader = h.leader().await?;
    let followers: Vec<u64> = h.ids().into_iter().filter(|id| *id != leader).collect();
    let (a, b) = (followers[0], followers[1]);
    h.create_bucket(1, "cams", 2, 1).await?;
    h.put(1, "cams", "seed", &pattern(5000, 1)).await?;
    create_principal(&h, "temp").await?;
    let creds = h.client_credentials("temp")?;
    let get = |via: u64, creds: Credentials| {
        let h = &h;
        async move { call(h, via, &creds, Op::Get, 0).await }
    };

    // Role revoked through one follower: refused on the other at once.
    grant(&h, a, "temp", "read", None).await?;
    get(b, creds.clone()).await?;
    revoke(&h, a, "temp", "read", None).await?;
    let refused = get(b, creds.clone()).await.expect_err("revoked");
    assert_eq!(
        refused.code(),
        Code::PermissionDenied,
        "{}",
        refused.message()
    );

    // Token revoked through the leader: refused on a follower at once.
    grant(&h, leader, "temp", "read", Some("cams")).await?;
    let token = create_token(&h, "temp").await?;
    let by_token = token_creds(&h, &token.token)?;
    get(a, by_token.clone()).await?;
    revoke_token(&h, leader, &token.id).await?;
    let refused = get(a, by_token.clone()).await.expect_err("revoked token");
    assert_eq!(
        refused.code(),
        Code::Unauthenticated,
        "{}",
        refused.message()
    );
    // The certificate still works: only the token was revoked.
    get(a, creds.clone()).await?;

    // A deleted principal keeps nothing.
    let token = create_token(&h, "temp").await?;
    h.admin(b)
        .await?
        .delete_principal(pb::DeletePrincipalRequest {
            name: "temp".into(),
        })
        .await?;
    let refused = get(leader, creds).await.expect_err("deleted");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = get(a, token_creds(&h, &token.token)?)
        .await
        .expect_err("deleted principal's token");
    assert_eq!(refused.code(), Code::Unauthenticated);

    // The last administrator cannot be taken away.
    let last = h
        .admin(a)
        .await?
        .revoke(pb::RevokeRequest {
            principal: "admin".into(),
            role: "admin".into(),
            bucket: None,
        })
        .await
        .expect_err("last admin");
    assert_eq!(last.code(), Code::FailedPrecondition, "{}", last.message());

    // Unknown principals and buckets are refused with a clear error.
    let unknown = h
        .admin(a)
        .await?
        .grant(pb::GrantRequest {
            principal: "nobody-here".into(),
            role: "read".into(),
            bucket: None,
        })
        .await
        .expect_err("unknown principal");
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("no principal named nobody-here"));
    create_principal(&h, "later").await?;
    let unknown = h
        .admin(a)
        .await?
        .grant(pb::GrantRequest {
            principal: "later".into(),
            role: "read".into(),
            bucket: Some("nope".into()),
        })
        .await
        .expect_err("unknown bucket");
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("no bucket named nope"));
    Ok(())
}

#[tokio::test]
async fn access_commands() -> anyhow::Result<()> {
    let mut h = cluster!(3)?;
    h.form().await?;
    h.create_bucket(1, "cams", 2, 1).await?;
    h.put(1, "cams", "seed", &pattern(5000, 1)).await?;
    let endpoint = h.endpoint(2);
    let cli = |args: &[&str]| -> anyhow::Result<String> {
        let mut all = vec!["--endpoint", &endpoint];
        all.extend_from_slice(args);
        let (ok, out, err) = Harness::cli(BIN, &all, Duration::from_secs(30))?;
        anyhow::ensure!(ok, "{args:?} failed: {err}");
        Ok(out)
    };

    let out = cli(&["principal", "create", "cam-7"])?;
    assert!(out.contains("created principal cam-7"), "{out}");
    cli(&["grant", "cam-7", "ingest"])?;
    cli(&["grant", "cam-7", "read", "--bucket", "cams"])?;
    let out = cli(&["--output", "json", "token", "create", "cam-7"])?;
    let created: serde_json::Value = serde_json::from_str(&out)?;
    let token = created["token"].as_str().expect("token").to_string();
    let id = created["id"].as_str().expect("id").to_string();
    assert!(token.starts_with(&format!("tresor_{id}_")), "{token}");
    let table = cli(&["token", "create", "cam-7"])?;
    assert!(table.contains("will not be shown again"), "{table}");

    let out = cli(&["--output", "json", "principal", "ls"])?;
    let listed: serde_json::Value = serde_json::from_str(&out)?;
    let cam = listed
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "cam-7"))
        .expect("cam-7 listed")
        .clone();
    let grants = cam["grants"].as_array().expect("grants");
    assert!(grants.contains(&serde_json::json!({"role": "ingest", "bucket": null})));
    assert!(grants.contains(&serde_json::json!({"role": "read", "bucket": "cams"})));
    let tokens = cam["tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().any(|t| t["id"] == id.as_str()));
    assert!(
        !out.contains(&token[token.len() - 64..]),
        "no secrets in listings"
    );

    // The token works for what cam-7 may do, and not beyond.
    let creds = token_creds(&h, &token)?;
    call(&h, 3, &creds, Op::Put, 1).await?;
    call(&h, 3, &creds, Op::Get, 0).await?;
    let denied = call(&h, 3, &creds, Op::Delete, 0)
        .await
        .expect_err("delete");
    assert_eq!(denied.code(), Code::PermissionDenied);

    cli(&["revoke", "cam-7", "read", "--bucket", "cams"])?;
    let denied = call(&h, 3, &creds, Op::Get, 0)
        .await
        .expect_err("read revoked");
    assert_eq!(denied.code(), Code::PermissionDenied);
    cli(&["token", "revoke", &id])?;
    let denied = call(&h, 1, &creds, Op::Put, 2)
        .await
        .expect_err("token revoked");
    assert_eq!(denied.code(), Code::Unauthenticated);

    // Operator commands work with a token too, and fail cleanly without rights.
    let admin_token = create_token(&h, "admin").await?;
    let (ok, out, err) = Harness::cli_env(
        BIN,
        &[
            "--endpoint",
            &endpoint,
            "--output",
            "json",
            "principal",
            "ls",
        ],
        &[
            ("TRESOR_CERT", ""),
            ("TRESOR_KEY", ""),
            ("TRESOR_TOKEN", &admin_token.token),
        ],
        Duration::from_secs(30),
    )?;
    assert!(ok, "{err}");
    assert!(String::from_utf8_lossy(&out).contains("cam-7"));
    let cam_token = create_token(&h, "cam-7").await?;
    let (ok, _, err) = Harness::cli_env(
        BIN,
        &["--endpoint", &endpoint, "principal", "create", "sneaky"],
        &[
            ("TRESOR_CERT", ""),
            ("TRESOR_KEY", ""),
            ("TRESOR_TOKEN", &cam_token.token),
        ],
        Duration::from_secs(30),
    )?;
    assert!(!ok);
    assert!(err.contains("permission denied"), "{err}");
    Ok(())
}

/// `insecure = true`: nobody is authenticated, everything is allowed, and
/// the log records addresses (a forwarded change too), not names.
#[tokio::test]
async fn insecure_cluster_authenticates_nobody() -> anyhow::Result<()> {
    let mut h = cluster!(spec = tresor_tests::insecure_spec(3, 3))?;
    h.form().await?;
    let leader = h.leader().await?;
    let follower = h
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    h.create_bucket(follower, "cams", 2, 1).await?;
    h.put(follower, "cams", "seed", &pattern(5000, 1)).await?;
    let creds = h.credentials().clone();
    for (n, op) in Action::ALL.into_iter().enumerate() {
        if let Err(s) = call(&h, follower, &creds, op, n).await {
            assert!(!refused(s.code()), "{op:?}: {s:?}");
        }
    }
    let entries = h.audit_log(leader, 100_000).await?;
    assert!(entries
        .iter()
        .any(|e| e.action == "bucket create" && e.bucket == "cams"));
    for e in &entries {
        assert_eq!(e.principal, "anonymous@127.0.0.1", "{e:?}");
    }
    Ok(())
}
