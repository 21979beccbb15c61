//! Key epochs, command by command: objects counted in and out, deletions
//! marking an epoch for the shredder, and an epoch destroyed only once no
//! object's data key is wrapped by it.

use super::retention_tests::delete;
use super::tests::{bare_manifest, begin_upload, run, store};
use super::*;
use crate::meta::{
    epoch_key_id, Bucket, Command, KeyEpoch, KeyRewrap, MetaError, ObjectEncryption, ObjectId,
    WrappedKey,
};

fn epoch(id: u64, class: &str) -> Command {
    Command::CreateEpoch {
        epoch: KeyEpoch {
            id,
            class: class.into(),
            created_ms: 5,
            // Whatever the proposer says, an epoch starts empty.
            live: 99,
            first_deletion_ms: Some(1),
            retiring: true,
            destroyed_ms: Some(1),
        },
    }
}

fn wrapped(epoch: u64) -> WrappedKey {
    WrappedKey {
        key_id: epoch_key_id(epoch),
        nonce: "00".repeat(12),
        sealed: "11".repeat(48),
    }
}

fn put(s: &MetaStore, key: &str, n: u8, epoch: u64) -> Result<(), MetaError> {
    let mut manifest = bare_manifest("footage", key, ObjectId([n; 16]));
    manifest.encryption = Some(ObjectEncryption {
        chunk_bytes: 65536,
        key: wrapped(epoch),
    });
    begin_upload(s, &manifest);
    run(
        s,
        Command::CreateObject {
            manifest: Box::new(manifest),
            audit: None,
        },
    )
}

fn epoch_store() -> (tempfile::TempDir, MetaStore) {
    let (d, s) = store();
    let bucket = Bucket {
        name: "footage".into(),
        data: 4,
        parity: 2,
        created_ms: 0,
        retention: None,
    };
    run(&s, Command::CreateBucket { bucket }).expect("bucket");
    run(&s, epoch(1, "keep-7")).expect("epoch 1");
    (d, s)
}

#[test]
fn objects_are_counted_into_their_epoch_and_a_deletion_marks_it() {
    let (_d, s) = epoch_store();
    let e = s.epoch(1).expect("read").expect("live");
    assert_eq!((e.live, e.retiring, e.first_deletion_ms), (0, false, None));
    assert_eq!(
        s.class_epoch("keep-7").expect("class").map(|e| e.id),
        Some(1)
    );
    assert!(matches!(
        run(&s, epoch(1, "x")),
        Err(MetaError::AlreadyExists(_))
    ));
    for (i, key) in ["a", "b", "c"].iter().enumerate() {
        put(&s, key, i as u8 + 1, 1).expect("put");
    }
    assert_eq!(s.epoch(1).expect("read").map(|e| e.live), Some(3));
    assert_eq!(s.epoch_objects(1, None, 10).expect("objects").len(), 3);
    assert!(s.dirty_epochs(10).expect("dirty").is_empty());

    delete(&s, "b", 1_000).expect("delete");
    let e = s.epoch(1).expect("read").expect("live");
    assert_eq!((e.live, e.first_deletion_ms), (2, Some(1_000)));
    assert_eq!(s.dirty_epochs(10).expect("dirty").len(), 1);
    let keys: Vec<String> = s
        .epoch_objects(1, None, 10)
        .expect("objects")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec!["a", "c"]);
    delete(&s, "a", 2_000).expect("delete");
    assert_eq!(
        s.epoch(1).expect("read").and_then(|e| e.first_deletion_ms),
        Some(1_000),
        "the first deletion starts the clock"
    );
}

#[test]
fn an_epoch_is_destroyed_only_once_its_objects_have_moved() {
    let (_d, s) = epoch_store();
    put(&s, "a", 1, 1).expect("put a");
    put(&s, "b", 2, 1).expect("put b");
    delete(&s, "a", 1_000).expect("delete");
    let destroy = || Command::DestroyEpoch {
        id: 1,
        now_ms: 3_000,
    };
    assert!(matches!(
        run(&s, destroy()),
        Err(MetaError::FailedPrecondition(_))
    ));

    run(&s, Command::RetireEpoch { id: 1 }).expect("retire");
    assert!(
        s.class_epoch("keep-7").expect("class").is_none(),
        "retired: no new objects"
    );
    run(&s, epoch(2, "keep-7")).expect("epoch 2");
    let rewrap = |to: u64| Command::RewrapKeys {
        rewraps: vec![KeyRewrap {
            bucket: "footage".into(),
            key: "b".into(),
            object_id: ObjectId([2; 16]),
            from_key_id: epoch_key_id(1),
            wrapped: wrapped(to),
        }],
    };
    // Into an epoch that does not exist: skipped, nothing moves.
    run(&s, rewrap(77)).expect("rewrap");
    assert_eq!(s.epoch(1).expect("read").map(|e| e.live), Some(1));
    run(&s, rewrap(2)).expect("rewrap");
    assert_eq!(s.epoch(1).expect("read").map(|e| e.live), Some(0));
    assert_eq!(s.epoch(2).expect("read").map(|e| e.live), Some(1));
    let b = s.object("footage", "b").expect("read").expect("b");
    assert_eq!(b.encryption.map(|e| e.key.key_id), Some(epoch_key_id(2)));

    run(&s, destroy()).expect("destroy");
    assert!(s.epoch(1).expect("read").is_none());
    assert_eq!(
        s.destroyed_epoch(1)
            .expect("read")
            .and_then(|e| e.destroyed_ms),
        Some(3_000)
    );
    assert!(s.dirty_epochs(10).expect("dirty").is_empty());
    run(&s, destroy()).expect("a retried destroy changes nothing");
    // An upload that wrapped its key before the epoch went is refused, and
    // an id is never reused.
    let refused = put(&s, "late", 3, 1).expect_err("destroyed epoch");
    assert!(refused.to_string().contains("destroyed"), "{refused}");
    assert!(s.object("footage", "late").expect("read").is_none());
    assert!(matches!(
        run(&s, epoch(1, "keep-7")),
        Err(MetaError::AlreadyExists(_))
    ));
}
