//! The store's decisions, command by command.

use super::*;
use crate::meta::Writes;
use crate::meta::{
    Bucket, Command, Grant, MetaError, NodeRecord, NodeState, ObjectManifest, Principal, Role,
    Token, UploadRecord, BOOTSTRAP_ADMIN,
};

pub(super) fn store() -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::open(dir.path()).expect("sled");
    let tree = db.open_tree("sm").expect("tree");
    (dir, MetaStore::new(tree))
}

pub(super) fn run(store: &MetaStore, command: Command) -> Result<(), MetaError> {
    let mut batch = Writes::default();
    let result = store.apply(&command, &mut batch).expect("store");
    store.tree().apply_batch(batch.into()).expect("batch");
    result
}

/// A 4+2 manifest without segments (nothing stored behind it).
pub(super) fn bare_manifest(bucket: &str, key: &str, id: crate::meta::ObjectId) -> ObjectManifest {
    ObjectManifest {
        bucket: bucket.into(),
        key: key.into(),
        object_id: id,
        size: 0,
        sha256: "ab".into(),
        content_type: String::new(),
        metadata: Default::default(),
        data: 4,
        parity: 2,
        block_size: 4096,
        segment_stripes: 1,
        created_ms: 0,
        segments: Vec::new(),
        encryption: None,
        retention: None,
        ingested_by: String::new(),
        etag: String::new(),
    }
}

/// Records the upload `manifest` will commit.
pub(super) fn begin_upload(s: &MetaStore, manifest: &ObjectManifest) {
    let upload = UploadRecord {
        object_id: manifest.object_id,
        bucket: manifest.bucket.clone(),
        key: manifest.key.clone(),
        coordinator: 1,
        started_ms: 0,
        touched_ms: 0,
        session: None,
    };
    run(s, Command::BeginUpload { upload }).expect("upload");
}

fn node(id: u64, addr: &str) -> NodeRecord {
    NodeRecord {
        id,
        addr: addr.into(),
        zone: "dc1".into(),
        capacity: 1,
        state: NodeState::Active,
        added_ms: 0,
        state_since_ms: 0,
        incarnation: String::new(),
    }
}

fn audit(action: &str, key: &str) -> crate::meta::audit::AuditRecord {
    crate::meta::audit::AuditRecord {
        time_ms: 1,
        node: 1,
        principal: "cam-7".into(),
        action: action.into(),
        bucket: "footage".into(),
        key: key.into(),
        object_sha256: "ab".into(),
        outcome: "ok".into(),
    }
}

#[test]
fn an_object_and_its_audit_record_commit_together() {
    let (_d, s) = store();
    let bucket = Bucket {
        name: "footage".into(),
        data: 4,
        parity: 2,
        created_ms: 0,
        retention: None,
    };
    run(&s, Command::CreateBucket { bucket }).expect("bucket");
    let id = crate::meta::ObjectId([7; 16]);
    let manifest = bare_manifest("footage", "k", id);
    begin_upload(&s, &manifest);
    let create = Command::CreateObject {
        manifest: Box::new(manifest.clone()),
        audit: Some(audit("put", "k")),
    };
    run(&s, create.clone()).expect("create");
    assert_eq!(
        s.audit_head().expect("head").0,
        1,
        "one record with the object"
    );
    // A retried proposal changes nothing, its record included.
    run(&s, create).expect("retry");
    assert_eq!(s.audit_head().expect("head").0, 1, "a retry recorded twice");
    // A refused commit records nothing (the caller records the refusal).
    let other = Command::CreateObject {
        manifest: Box::new(ObjectManifest {
            object_id: crate::meta::ObjectId([8; 16]),
            ..manifest
        }),
        audit: Some(audit("put", "k")),
    };
    assert!(run(&s, other).is_err());
    assert_eq!(
        s.audit_head().expect("head").0,
        1,
        "a refused put was recorded as done"
    );
    let delete = Command::DeleteObject {
        now_ms: 0,
        object_id: None,
        expiry: false,
        bucket: "footage".into(),
        key: "k".into(),
        audit: Some(audit("delete", "k")),
    };
    run(&s, delete).expect("delete");
    let entries = s.audit_entries(0, 10).expect("entries");
    let actions: Vec<_> = entries.iter().map(|e| e.record.action.as_str()).collect();
    assert_eq!(actions, ["put", "delete"]);
    assert!(s.object("footage", "k").expect("read").is_none());
}

#[test]
fn ids_are_never_reused_and_refusals_change_nothing() {
    let (_d, s) = store();
    let init = Command::InitCluster {
        cluster_id: "c".into(),
        node: node(1, "a:1"),
    };
    assert_eq!(run(&s, init.clone()), Ok(()));
    assert!(matches!(
        run(&s, init),
        Err(MetaError::FailedPrecondition(_))
    ));
    assert_eq!(
        run(
            &s,
            Command::AddNode {
                node: node(2, "b:1")
            }
        ),
        Ok(())
    );
    assert!(matches!(
        run(
            &s,
            Command::AddNode {
                node: node(2, "c:1")
            }
        ),
        Err(MetaError::AlreadyExists(_))
    ));
    assert!(matches!(
        run(
            &s,
            Command::AddNode {
                node: node(3, "b:1")
            }
        ),
        Err(MetaError::AlreadyExists(_))
    ));
    assert_eq!(run(&s, Command::RemoveNode { id: 2 }), Ok(()));
    assert!(matches!(
        run(
            &s,
            Command::AddNode {
                node: node(2, "d:1")
            }
        ),
        Err(MetaError::AlreadyExists(_))
    ));
    assert!(matches!(
        run(&s, Command::RemoveNode { id: 9 }),
        Err(MetaError::NotFound(_))
    ));
    let nodes = s.nodes().expect("nodes");
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[1].addr, "b:1");
    assert_eq!(nodes[1].state, NodeState::Removed);
    // The removed node's address may be given to a new node.
    assert_eq!(
        run(
            &s,
            Command::AddNode {
                node: node(3, "b:1")
            }
        ),
        Ok(())
    );
}

#[test]
fn duplicate_bucket_is_refused() {
    let (_d, s) = store();
    let bucket = Bucket {
        name: "cams".into(),
        data: 4,
        parity: 2,
        created_ms: 5,
        retention: None,
    };
    assert_eq!(
        run(
            &s,
            Command::CreateBucket {
                bucket: bucket.clone()
            }
        ),
        Ok(())
    );
    let again = Bucket {
        data: 2,
        ..bucket.clone()
    };
    assert!(matches!(
        run(&s, Command::CreateBucket { bucket: again }),
        Err(MetaError::AlreadyExists(_))
    ));
    assert_eq!(s.buckets().expect("buckets"), vec![bucket]);
}

fn grant(principal: &str, role: Role, bucket: Option<&str>) -> Grant {
    Grant {
        principal: principal.into(),
        role,
        bucket: bucket.map(Into::into),
    }
}

fn token(id: &str, principal: &str) -> Token {
    Token {
        id: id.into(),
        principal: principal.into(),
        secret_sha256: "ab".repeat(32),
        created_ms: 9,
    }
}

fn create_principal(s: &MetaStore, name: &str) -> Result<(), MetaError> {
    run(
        s,
        Command::CreatePrincipal {
            principal: Principal {
                name: name.into(),
                created_ms: 7,
            },
        },
    )
}

fn initialised() -> (tempfile::TempDir, MetaStore) {
    let (d, s) = store();
    let init = Command::InitCluster {
        cluster_id: "c".into(),
        node: node(1, "a:1"),
    };
    assert_eq!(run(&s, init), Ok(()));
    let bucket = Bucket {
        name: "cams".into(),
        data: 2,
        parity: 1,
        created_ms: 1,
        retention: None,
    };
    assert_eq!(run(&s, Command::CreateBucket { bucket }), Ok(()));
    (d, s)
}

#[test]
fn init_creates_the_admin_principal() {
    let (_d, s) = initialised();
    let admin = s.principal(BOOTSTRAP_ADMIN).expect("read").expect("admin");
    assert_eq!(admin.name, "admin");
    assert_eq!(
        s.grants_of("admin").expect("grants"),
        vec![grant("admin", Role::Admin, None)]
    );
}

#[test]
fn principals_grants_and_tokens_round_trip() {
    let (_d, s) = initialised();
    assert_eq!(create_principal(&s, "alice"), Ok(()));
    assert!(matches!(
        create_principal(&s, "alice"),
        Err(MetaError::AlreadyExists(_))
    ));
    assert!(matches!(
        create_principal(&s, "Bad Name"),
        Err(MetaError::InvalidArgument(_))
    ));
    // A prefix of another name shares no grants with it.
    assert_eq!(create_principal(&s, "alic"), Ok(()));
    let names: Vec<String> = s
        .principals()
        .expect("principals")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["admin", "alic", "alice"]);

    let scoped = grant("alice", Role::Read, Some("cams"));
    let wide = grant("alice", Role::Ingest, None);
    for g in [&scoped, &wide, &scoped] {
        assert_eq!(run(&s, Command::Grant { grant: g.clone() }), Ok(()));
    }
    let mut got = s.grants_of("alice").expect("grants");
    got.sort();
    let mut want = vec![scoped.clone(), wide.clone()];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(s.grants_of("alic").expect("grants"), vec![]);
    // Unknown principals and buckets are refused, naming what is missing.
    match run(
        &s,
        Command::Grant {
            grant: grant("bob", Role::Read, None),
        },
    ) {
        Err(MetaError::NotFound(m)) => assert!(m.contains("no principal named bob"), "{m}"),
        other => panic!("{other:?}"),
    }
    match run(
        &s,
        Command::Grant {
            grant: grant("alice", Role::Read, Some("nope")),
        },
    ) {
        Err(MetaError::NotFound(m)) => assert!(m.contains("no bucket named nope"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        run(
            &s,
            Command::Revoke {
                grant: scoped.clone()
            }
        ),
        Ok(())
    );
    assert!(matches!(
        run(&s, Command::Revoke { grant: scoped }),
        Err(MetaError::NotFound(_))
    ));
    assert_eq!(s.grants_of("alice").expect("grants"), vec![wide]);

    let t = token("00112233445566ff", "alice");
    assert_eq!(run(&s, Command::CreateToken { token: t.clone() }), Ok(()));
    assert_eq!(s.token(&t.id).expect("read"), Some(t.clone()));
    assert!(matches!(
        run(&s, Command::CreateToken { token: t.clone() }),
        Err(MetaError::AlreadyExists(_))
    ));
    assert!(matches!(
        run(
            &s,
            Command::CreateToken {
                token: token("0011223344556677", "bob")
            }
        ),
        Err(MetaError::NotFound(_))
    ));
    assert!(matches!(
        run(
            &s,
            Command::CreateToken {
                token: token("not-hex", "alice")
            }
        ),
        Err(MetaError::InvalidArgument(_))
    ));
    assert_eq!(run(&s, Command::RevokeToken { id: t.id.clone() }), Ok(()));
    assert_eq!(s.token(&t.id).expect("read"), None);
    assert!(matches!(
        run(&s, Command::RevokeToken { id: t.id }),
        Err(MetaError::NotFound(_))
    ));
}

#[test]
fn the_last_cluster_admin_stays() {
    let (_d, s) = initialised();
    let admin = grant("admin", Role::Admin, None);
    assert!(matches!(
        run(
            &s,
            Command::Revoke {
                grant: admin.clone()
            }
        ),
        Err(MetaError::FailedPrecondition(_))
    ));
    assert!(matches!(
        run(
            &s,
            Command::DeletePrincipal {
                name: "admin".into()
            }
        ),
        Err(MetaError::FailedPrecondition(_))
    ));
    // A bucket-scoped admin does not count.
    assert_eq!(create_principal(&s, "ops"), Ok(()));
    let scoped = grant("ops", Role::Admin, Some("cams"));
    assert_eq!(run(&s, Command::Grant { grant: scoped }), Ok(()));
    assert!(run(
        &s,
        Command::Revoke {
            grant: admin.clone()
        }
    )
    .is_err());
    let wide = grant("ops", Role::Admin, None);
    assert_eq!(run(&s, Command::Grant { grant: wide }), Ok(()));
    assert_eq!(run(&s, Command::Revoke { grant: admin }), Ok(()));
}

#[test]
fn deleting_a_principal_takes_its_grants_and_tokens() {
    let (_d, s) = initialised();
    for name in ["alice", "bob"] {
        assert_eq!(create_principal(&s, name), Ok(()));
        let g = grant(name, Role::Read, None);
        assert_eq!(run(&s, Command::Grant { grant: g }), Ok(()));
    }
    let ta = token("000000000000000a", "alice");
    let tb = token("000000000000000b", "bob");
    for t in [&ta, &tb] {
        assert_eq!(run(&s, Command::CreateToken { token: t.clone() }), Ok(()));
    }
    assert_eq!(
        run(
            &s,
            Command::DeletePrincipal {
                name: "alice".into()
            }
        ),
        Ok(())
    );
    assert_eq!(s.principal("alice").expect("read"), None);
    assert_eq!(s.grants_of("alice").expect("grants"), vec![]);
    assert_eq!(s.tokens().expect("tokens"), vec![tb]);
    assert_eq!(s.grants_of("bob").expect("grants").len(), 1);
    assert!(matches!(
        run(
            &s,
            Command::DeletePrincipal {
                name: "alice".into()
            }
        ),
        Err(MetaError::NotFound(_))
    ));
}

#[test]
fn an_expiry_abort_is_refused_after_progress_and_a_second_abort_finds_nothing() {
    let (_dir, s) = store();
    let manifest = bare_manifest("footage", "slow", crate::meta::ObjectId::random());
    let id = manifest.object_id;
    begin_upload(&s, &manifest);
    let abort = |if_touched_ms| Command::AbortUpload {
        object_id: id,
        audit: None,
        if_touched_ms,
    };
    // The expiry judged it silent at 0; it showed progress at 5 meanwhile.
    run(
        &s,
        Command::TouchUpload {
            object_id: id,
            touched_ms: 5,
        },
    )
    .expect("touch");
    assert!(matches!(
        run(&s, abort(Some(0))),
        Err(MetaError::FailedPrecondition(_))
    ));
    assert!(
        s.upload(&id).expect("read").is_some(),
        "the upload lives on"
    );
    run(&s, abort(Some(5))).expect("judged by its latest progress");
    // Aborted already: nothing to abort, and the answer says so.
    assert!(matches!(run(&s, abort(None)), Err(MetaError::NotFound(_))));
}
