//! Retention and holds, command by command: what the store allows and
//! refuses whoever proposes it.

use super::tests::{bare_manifest, begin_upload, run, store};
use super::*;
use crate::meta::{
    Bucket, Command, Hold, HoldTarget, MetaError, ObjectId, ObjectRetention, RetentionPolicy,
};

const DAY: u64 = 86_400_000;

fn policy(name: &str, keep_min: Option<u64>, delete_after: Option<u64>) -> RetentionPolicy {
    RetentionPolicy {
        name: name.into(),
        keep_min_ms: keep_min,
        delete_after_ms: delete_after,
        created_ms: 0,
    }
}

/// A store with policies `bodycam-raw` (delete after 30 days),
/// `case-material` (keep 10 years) and `short-keep` (keep 1 day), and a
/// bucket `footage` whose default is `bodycam-raw`.
fn lifecycle_store() -> (tempfile::TempDir, MetaStore) {
    let (d, s) = store();
    for p in [
        policy("bodycam-raw", None, Some(30 * DAY)),
        policy("case-material", Some(3650 * DAY), None),
        policy("short-keep", Some(DAY), Some(2 * DAY)),
    ] {
        run(&s, Command::CreateRetention { policy: p }).expect("policy");
    }
    let bucket = Bucket {
        name: "footage".into(),
        data: 4,
        parity: 2,
        created_ms: 0,
        retention: Some("bodycam-raw".into()),
    };
    run(&s, Command::CreateBucket { bucket }).expect("bucket");
    (d, s)
}

/// Commits object `key` ingested at `created_ms`.
fn put(s: &MetaStore, key: &str, n: u8, created_ms: u64) {
    let mut manifest = bare_manifest("footage", key, ObjectId([n; 16]));
    manifest.created_ms = created_ms;
    // What a proposer writes here does not count.
    manifest.retention = Some(ObjectRetention {
        policy: "forged".into(),
        keep_until_ms: None,
        delete_at_ms: Some(0),
    });
    begin_upload(s, &manifest);
    let create = Command::CreateObject {
        manifest: Box::new(manifest),
        audit: None,
    };
    run(s, create).expect("create");
}

pub(super) fn delete(s: &MetaStore, key: &str, now_ms: u64) -> Result<(), MetaError> {
    run(
        s,
        Command::DeleteObject {
            bucket: "footage".into(),
            key: key.into(),
            object_id: None,
            now_ms,
            expiry: false,
            audit: None,
        },
    )
}

fn expire(s: &MetaStore, key: &str, n: u8, now_ms: u64) -> Result<(), MetaError> {
    run(
        s,
        Command::DeleteObject {
            bucket: "footage".into(),
            key: key.into(),
            object_id: Some(ObjectId([n; 16])),
            now_ms,
            expiry: true,
            audit: None,
        },
    )
}

fn due_keys(s: &MetaStore, now_ms: u64) -> Vec<String> {
    let due = s.due_objects(now_ms, None, 100).expect("due");
    due.into_iter().map(|d| d.key).collect()
}

fn hold(case: &str, target: HoldTarget) -> Hold {
    Hold {
        case_id: case.into(),
        bucket: "footage".into(),
        target,
        reason: "evidence in a prosecution".into(),
        placed_by: "custodian".into(),
        placed_ms: 0,
    }
}

fn extend(s: &MetaStore, key: &str, n: u8, policy: &str) -> Result<(), MetaError> {
    run(
        s,
        Command::ExtendRetention {
            bucket: "footage".into(),
            key: key.into(),
            object_id: ObjectId([n; 16]),
            policy: policy.into(),
        },
    )
}

#[test]
fn policies_are_created_once_and_never_changed() {
    let (_d, s) = lifecycle_store();
    // The same policy again (a retried proposal) is fine; another is not.
    let same = policy("bodycam-raw", None, Some(30 * DAY));
    assert_eq!(run(&s, Command::CreateRetention { policy: same }), Ok(()));
    let other = policy("bodycam-raw", None, Some(DAY));
    assert!(matches!(
        run(&s, Command::CreateRetention { policy: other }),
        Err(MetaError::AlreadyExists(_))
    ));
    let contradictory = policy("odd", Some(2 * DAY), Some(DAY));
    assert!(matches!(
        run(
            &s,
            Command::CreateRetention {
                policy: contradictory
            }
        ),
        Err(MetaError::InvalidArgument(_))
    ));
    let names: Vec<String> = s
        .retention_policies()
        .expect("policies")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["bodycam-raw", "case-material", "short-keep"]);
    // A bucket can only name a policy that exists.
    let set = |policy: &str| Command::SetBucketRetention {
        bucket: "footage".into(),
        policy: Some(policy.into()),
    };
    assert!(matches!(run(&s, set("ghost")), Err(MetaError::NotFound(_))));
    assert_eq!(run(&s, set("short-keep")), Ok(()));
}

#[test]
fn retention_is_fixed_at_commit_from_the_bucket_policy() {
    let (_d, s) = lifecycle_store();
    put(&s, "clip-1", 1, 1_000);
    let r = s
        .object("footage", "clip-1")
        .expect("read")
        .and_then(|m| m.retention)
        .expect("retention");
    assert_eq!(r.policy, "bodycam-raw");
    assert_eq!(r.delete_at_ms, Some(1_000 + 30 * DAY));
    assert_eq!(r.keep_until_ms, None);
    // A later change of the bucket's default leaves the object alone.
    let set = Command::SetBucketRetention {
        bucket: "footage".into(),
        policy: Some("case-material".into()),
    };
    run(&s, set).expect("set");
    let again = s
        .object("footage", "clip-1")
        .expect("read")
        .and_then(|m| m.retention);
    assert_eq!(again, Some(r));
    put(&s, "clip-2", 2, 5_000);
    let r2 = s
        .object("footage", "clip-2")
        .expect("read")
        .and_then(|m| m.retention);
    assert_eq!(r2.and_then(|r| r.keep_until_ms), Some(5_000 + 3650 * DAY));
}

#[test]
fn keep_min_refuses_deletes_until_it_passes() {
    let (_d, s) = lifecycle_store();
    let set = Command::SetBucketRetention {
        bucket: "footage".into(),
        policy: Some("short-keep".into()),
    };
    run(&s, set).expect("set");
    put(&s, "clip", 1, 1_000);
    match delete(&s, "clip", 1_000 + DAY - 1) {
        Err(MetaError::FailedPrecondition(why)) => {
            assert!(why.contains("short-keep"), "{why}")
        }
        other => panic!("a delete before keep_until: {other:?}"),
    }
    assert!(s.object("footage", "clip").expect("read").is_some());
    assert_eq!(delete(&s, "clip", 1_000 + DAY), Ok(()));
    assert!(s.object("footage", "clip").expect("read").is_none());
}

#[test]
fn holds_refuse_deletes_and_cover_later_uploads_under_a_prefix() {
    let (_d, s) = lifecycle_store();
    put(&s, "station-7/clip-1", 1, 0);
    let key_hold = hold("2026/4711", HoldTarget::Key("station-7/clip-1".into()));
    run(
        &s,
        Command::PlaceHold {
            hold: key_hold.clone(),
        },
    )
    .expect("hold");
    // The same hold again is a retry; another reason is a conflict.
    run(
        &s,
        Command::PlaceHold {
            hold: key_hold.clone(),
        },
    )
    .expect("retry");
    let mut other = key_hold.clone();
    other.reason = "another".into();
    assert!(matches!(
        run(&s, Command::PlaceHold { hold: other }),
        Err(MetaError::AlreadyExists(_))
    ));
    // A prefix hold placed before the object exists covers it.
    let prefix_hold = hold("2026/4712", HoldTarget::Prefix("station-9/".into()));
    run(&s, Command::PlaceHold { hold: prefix_hold }).expect("prefix hold");
    put(&s, "station-9/clip-2", 2, 0);
    put(&s, "station-10/clip-3", 3, 0);
    let far_future = u64::MAX / 2;
    for key in ["station-7/clip-1", "station-9/clip-2"] {
        match delete(&s, key, far_future) {
            Err(MetaError::FailedPrecondition(why)) => assert!(why.contains("hold"), "{why}"),
            other => panic!("delete of held {key}: {other:?}"),
        }
    }
    let held: Vec<String> = s
        .holds_on("footage", "station-9/clip-2")
        .expect("holds")
        .into_iter()
        .map(|h| h.case_id)
        .collect();
    assert_eq!(held, ["2026/4712"]);
    assert_eq!(
        delete(&s, "station-10/clip-3", far_future),
        Ok(()),
        "not held"
    );
    // Released: the delete goes through.
    let release = |case: &str, target: HoldTarget| Command::ReleaseHold {
        case_id: case.into(),
        bucket: "footage".into(),
        target,
    };
    run(
        &s,
        release("2026/4711", HoldTarget::Key("station-7/clip-1".into())),
    )
    .expect("release");
    assert!(matches!(
        run(
            &s,
            release("2026/4711", HoldTarget::Key("station-7/clip-1".into()))
        ),
        Err(MetaError::NotFound(_))
    ));
    assert_eq!(delete(&s, "station-7/clip-1", far_future), Ok(()));
    run(
        &s,
        release("2026/4712", HoldTarget::Prefix("station-9/".into())),
    )
    .expect("release");
    assert_eq!(delete(&s, "station-9/clip-2", far_future), Ok(()));
    let filter = HoldFilter::default();
    assert!(s.holds(&filter, None, 10).expect("holds").is_empty());
}

#[test]
fn retention_is_only_ever_extended() {
    let (_d, s) = lifecycle_store();
    put(&s, "clip", 1, 1_000);
    // Deleted after 30 days → kept ten years: longer in both respects.
    assert_eq!(extend(&s, "clip", 1, "case-material"), Ok(()));
    let r = s
        .object("footage", "clip")
        .expect("read")
        .and_then(|m| m.retention);
    assert_eq!(r.as_ref().map(|r| r.policy.as_str()), Some("case-material"));
    assert_eq!(r.and_then(|r| r.keep_until_ms), Some(1_000 + 3650 * DAY));
    // Back to 30 days, or to one day's minimum: shorter, refused.
    for shorter in ["bodycam-raw", "short-keep"] {
        assert!(
            matches!(
                extend(&s, "clip", 1, shorter),
                Err(MetaError::FailedPrecondition(_))
            ),
            "{shorter}"
        );
    }
    assert!(
        matches!(
            extend(&s, "clip", 9, "case-material"),
            Err(MetaError::FailedPrecondition(_))
        ),
        "another object under the same key"
    );
}

#[test]
fn the_expiry_index_follows_commits_extensions_and_deletes() {
    let (_d, s) = lifecycle_store();
    put(&s, "late", 1, 5 * DAY);
    put(&s, "early", 2, DAY);
    put(&s, "extended", 3, 2 * DAY);
    // Earliest first, only what is due, read in pages from a cursor.
    assert!(due_keys(&s, 30 * DAY).is_empty());
    assert_eq!(due_keys(&s, 32 * DAY), ["early", "extended"]);
    assert_eq!(due_keys(&s, 40 * DAY), ["early", "extended", "late"]);
    let first = s.due_objects(40 * DAY, None, 1).expect("page");
    let rest = s
        .due_objects(40 * DAY, Some(first[0].cursor()), 10)
        .expect("page");
    let keys: Vec<_> = rest.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["extended", "late"]);

    // An extension to a policy without deletion leaves the index.
    extend(&s, "extended", 3, "case-material").expect("extend");
    assert_eq!(due_keys(&s, 40 * DAY), ["early", "late"]);
    // Expiry before delete_at, or of another object under the key, changes
    // nothing.
    assert!(matches!(
        expire(&s, "late", 1, 34 * DAY),
        Err(MetaError::FailedPrecondition(_))
    ));
    assert!(matches!(
        expire(&s, "late", 9, 40 * DAY),
        Err(MetaError::NotFound(_))
    ));
    // An extended object is never expired, whatever time is claimed.
    assert!(matches!(
        expire(&s, "extended", 3, 40 * DAY),
        Err(MetaError::FailedPrecondition(_))
    ));
    // Held: refused even when due.
    let h = hold("2026/1", HoldTarget::Key("early".into()));
    run(&s, Command::PlaceHold { hold: h }).expect("hold");
    assert!(matches!(
        expire(&s, "early", 2, 40 * DAY),
        Err(MetaError::FailedPrecondition(_))
    ));
    expire(&s, "late", 1, 40 * DAY).expect("due");
    delete(&s, "early", 40 * DAY).expect_err("held");
    assert_eq!(due_keys(&s, 40 * DAY), ["early"]);
    assert!(s.object("footage", "late").expect("read").is_none());

    // The expired key keeps a tombstone and is never used again.
    let tomb = s.tombstone("footage", "late").expect("read").expect("tomb");
    assert_eq!(tomb.object_id, ObjectId([1; 16]));
    assert_eq!(tomb.deleted_ms, 40 * DAY);
    assert_eq!(tomb.policy.as_deref(), Some("bodycam-raw"));
    let again = bare_manifest("footage", "late", ObjectId([7; 16]));
    begin_upload(&s, &again);
    let create = Command::CreateObject {
        manifest: Box::new(again),
        audit: None,
    };
    assert!(matches!(
        run(&s, create),
        Err(MetaError::AlreadyExists(m)) if m.contains("never used again")
    ));
}

#[test]
fn a_batch_expiry_deletes_what_is_due_and_skips_the_rest() {
    let (_d, s) = lifecycle_store();
    for (i, key) in ["a", "b", "held", "extended", "late"].iter().enumerate() {
        let created = if *key == "late" { 20 * DAY } else { DAY };
        put(&s, key, i as u8 + 1, created);
    }
    let h = hold("2026/2", HoldTarget::Key("held".into()));
    run(&s, Command::PlaceHold { hold: h }).expect("hold");
    extend(&s, "extended", 4, "case-material").expect("extend");
    let item = |key: &str, n: u8| crate::meta::ExpiryItem {
        bucket: "footage".into(),
        key: key.into(),
        object_id: ObjectId([n; 16]),
        audit: crate::meta::audit::AuditRecord {
            time_ms: 0,
            node: 1,
            principal: "system:retention".into(),
            action: "expire".into(),
            bucket: "footage".into(),
            key: key.into(),
            object_sha256: String::new(),
            outcome: "ok".into(),
        },
    };
    let objects = vec![
        item("a", 1),
        item("b", 9), // another object than the one under b
        item("held", 3),
        item("extended", 4),
        item("late", 5), // not due before day 50
        item("b", 2),
    ];
    run(
        &s,
        Command::ExpireObjects {
            now_ms: 40 * DAY,
            objects,
        },
    )
    .expect("expire");
    let left: Vec<_> = ["a", "b", "held", "extended", "late"]
        .into_iter()
        .filter(|k| s.object("footage", k).expect("read").is_some())
        .collect();
    assert_eq!(left, ["held", "extended", "late"]);
    // One audit record per deleted object, in order.
    let entries = s.audit_entries(0, 100).expect("audit");
    let keys: Vec<_> = entries
        .iter()
        .filter(|e| e.record.action == "expire")
        .map(|e| e.record.key.as_str())
        .collect();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(due_keys(&s, 60 * DAY), ["held", "late"]);
}
