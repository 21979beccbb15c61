//! The health index `apply` keeps, against a full recount of the
//! manifests, through any sequence of puts, deletes, shard moves, damage
//! and node state changes.

use proptest::prelude::*;

use super::MetaStore;
use crate::meta::Writes;
use crate::meta::{
    Bucket, Command, Digest, NodeRecord, NodeState, ObjectId, ObjectManifest, SegmentManifest,
    ShardLocation, UploadRecord,
};

const NODES: u8 = 6;
const WIDTH: usize = 3;

fn store() -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::open(dir.path()).expect("sled");
    let tree = db.open_tree("sm").expect("tree");
    (dir, MetaStore::new(tree))
}

/// Applies `command` as the state machine does; refusals are fine here.
fn run(store: &MetaStore, command: Command) {
    let mut batch = Writes::default();
    let _ = store.apply(&command, &mut batch).expect("store");
    store.tree().apply_batch(batch.into()).expect("batch");
}

fn location(node: Option<u8>, damaged: bool) -> ShardLocation {
    match node {
        Some(n) => ShardLocation {
            node: Some(u64::from(n)),
            digest: Some(Digest([n; 32])),
            damaged,
        },
        None => ShardLocation::missing(),
    }
}

/// One change to the cluster.
#[derive(Debug, Clone)]
enum Step {
    /// Stores object `key` with two segments placed as given.
    Put {
        key: u8,
        shards: Vec<(Option<u8>, bool)>,
    },
    Delete {
        key: u8,
    },
    /// Moves (or marks damaged, or loses) one shard of segment 0.
    Move {
        key: u8,
        index: usize,
        to: Option<u8>,
        damaged: bool,
    },
    SetState {
        node: u8,
        state: NodeState,
    },
    Remove {
        node: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let node = 1..=NODES;
    let shard = (
        proptest::option::weighted(0.85, 1..=NODES),
        prop::bool::weighted(0.15),
    );
    prop_oneof![
        4 => (0u8..8, prop::collection::vec(shard, 2 * WIDTH))
            .prop_map(|(key, shards)| Step::Put { key, shards }),
        1 => (0u8..8).prop_map(|key| Step::Delete { key }),
        3 => (0u8..8, 0..WIDTH, proptest::option::of(1..=NODES), any::<bool>())
            .prop_map(|(key, index, to, damaged)| Step::Move { key, index, to, damaged }),
        2 => (node.clone(), prop_oneof![
                Just(NodeState::Active),
                Just(NodeState::Draining),
                Just(NodeState::Down)
            ])
            .prop_map(|(node, state)| Step::SetState { node, state }),
        1 => node.prop_map(|node| Step::Remove { node }),
    ]
}

fn apply(store: &MetaStore, step: &Step, n: usize) {
    match step {
        Step::Put { key, shards } => {
            let object_id = ObjectId([*key; 16].map(|b| b ^ (n as u8)));
            run(
                store,
                Command::BeginUpload {
                    upload: UploadRecord {
                        object_id,
                        bucket: "b".into(),
                        key: key.to_string(),
                        coordinator: 1,
                        started_ms: 0,
                        touched_ms: 0,
                        session: None,
                    },
                },
            );
            let segments = shards
                .chunks(WIDTH)
                .map(|c| SegmentManifest {
                    bytes: 1,
                    shards: c.iter().map(|(n, d)| location(*n, *d)).collect(),
                })
                .collect();
            let manifest = ObjectManifest {
                bucket: "b".into(),
                key: key.to_string(),
                object_id,
                size: 2,
                sha256: String::new(),
                content_type: String::new(),
                metadata: Default::default(),
                data: 2,
                parity: 1,
                block_size: 4096,
                segment_stripes: 1,
                created_ms: 0,
                segments,
                encryption: None,
                retention: None,
                ingested_by: String::new(),
                etag: String::new(),
            };
            run(
                store,
                Command::CreateObject {
                    manifest: Box::new(manifest),
                    audit: None,
                },
            );
        }
        Step::Delete { key } => run(
            store,
            Command::DeleteObject {
                now_ms: 0,
                object_id: None,
                expiry: false,
                bucket: "b".into(),
                key: key.to_string(),
                audit: None,
            },
        ),
        Step::Move {
            key,
            index,
            to,
            damaged,
        } => {
            let Some(m) = store.object("b", &key.to_string()).expect("read") else {
                return;
            };
            let current = m.segments[0].shards[*index].clone();
            run(
                store,
                Command::UpdateShards {
                    bucket: "b".into(),
                    key: key.to_string(),
                    object_id: m.object_id,
                    segment: 0,
                    changes: vec![(*index as u32, current, location(*to, *damaged))],
                },
            );
        }
        Step::SetState { node, state } => run(
            store,
            Command::SetNodeState {
                id: u64::from(*node),
                state: *state,
                since_ms: n as u64,
            },
        ),
        Step::Remove { node } => run(
            store,
            Command::RemoveNode {
                id: u64::from(*node),
            },
        ),
    }
}

fn cluster() -> (tempfile::TempDir, MetaStore) {
    let (dir, s) = store();
    let node = |id: u64| NodeRecord {
        id,
        addr: format!("n{id}:1"),
        zone: "z".into(),
        capacity: 1,
        state: NodeState::Active,
        added_ms: 0,
        state_since_ms: 0,
        incarnation: String::new(),
    };
    run(
        &s,
        Command::InitCluster {
            cluster_id: "c".into(),
            node: node(1),
        },
    );
    for id in 2..=u64::from(NODES) {
        run(&s, Command::AddNode { node: node(id) });
    }
    let bucket = Bucket {
        name: "b".into(),
        data: 2,
        parity: 1,
        created_ms: 0,
        retention: None,
    };
    run(&s, Command::CreateBucket { bucket });
    (dir, s)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// After every step, the counters equal a recount of every manifest,
    /// and each node's index lists exactly the shards counted on it.
    #[test]
    fn the_health_index_equals_a_recount(steps in prop::collection::vec(step(), 1..40)) {
        let (_dir, s) = cluster();
        for (n, step) in steps.iter().enumerate() {
            apply(&s, step, n);
            let kept = s.health().expect("counters");
            let counted = s.recount().expect("recount");
            prop_assert_eq!(&kept, &counted, "after step {} ({:?})", n, step);
            for node in 1..=u64::from(NODES) {
                let listed = s.placed_on(node, None, 10_000).expect("walk").0.len() as u64;
                prop_assert_eq!(listed, counted.shards_per_node.get(&node).copied().unwrap_or(0));
            }
            let short = s.short_segments(None, 10_000).expect("short").len() as u64;
            prop_assert_eq!(short, counted.degraded_segments());
        }
    }
}

#[test]
fn paging_walks_every_object_and_shard_once() {
    let (_dir, s) = cluster();
    for key in 0..25u8 {
        let shards = vec![(Some(1), false), (Some(2), false), (Some(3), false)];
        let step = Step::Put {
            key,
            shards: [shards.clone(), shards].concat(),
        };
        apply(&s, &step, 0);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = s.objects_page(cursor.as_ref(), 7).expect("page");
        assert!(page.len() <= 7);
        seen.extend(page.into_iter().map(|m| m.key));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut want: Vec<String> = (0..25u8).map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(seen, want);
    let mut placed = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let (page, next) = s.placed_on(2, after.as_ref(), 4).expect("placed");
        pages += 1;
        placed.extend(page);
        match next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 7, "25 manifests, 4 a page");
    assert_eq!(placed.len(), 50, "two segments of 25 objects on node 2");
    let mut unique: Vec<_> = placed.iter().map(|p| p.shard).collect();
    unique.sort_by_key(|id| id.to_string());
    unique.dedup();
    assert_eq!(unique.len(), 50, "each shard once");
    for p in &placed {
        assert!(s.is_placed(2, &p.shard).expect("lookup"));
        assert!(!s.is_placed(3, &p.shard).expect("lookup"));
    }
    assert!(placed
        .iter()
        .all(|p| p.digest == Some(Digest([2; 32])) && !p.damaged));
}

#[test]
fn health_reads_counters_not_manifests() {
    let (_dir, s) = cluster();
    for key in 0..10u8 {
        let shards = vec![(Some(1), false), (None, false), (Some(3), true)];
        apply(
            &s,
            &Step::Put {
                key,
                shards: [shards.clone(), shards].concat(),
            },
            0,
        );
    }
    let before = s.health().expect("counters");
    assert_eq!(before.segments, 20);
    assert_eq!(before.degraded.get(&2), Some(&20), "{before:?}");
    // Make every manifest unreadable: a recount fails, the counters do not
    // notice, because they never read a manifest.
    let objects: Vec<_> = s
        .tree()
        .scan_prefix(b"object/")
        .map(|kv| kv.expect("scan").0)
        .collect();
    for key in objects {
        s.tree()
            .insert(key, &b"not a manifest"[..])
            .expect("insert");
    }
    assert!(s.recount().is_err());
    assert_eq!(s.health().expect("counters"), before);
}
