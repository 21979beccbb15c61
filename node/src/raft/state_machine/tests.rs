//! Snapshots end to end: built into a file, sent in chunks, installed by
//! loading a fresh tree — with the builder's memory bounded far below the
//! state it carries.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use openraft::storage::RaftStateMachine;
use openraft::{Entry, EntryPayload, LogId, RaftSnapshotBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// Counts the bytes the process has allocated and not freed, and the
/// highest that count reached since [`peak_while`] last reset it. Only the
/// test that measures runs in its process (see [`measured_alone`]), so the
/// figure is its own.
struct CountingAlloc;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn count(delta: isize) {
    let now = LIVE.fetch_add(delta, Ordering::Relaxed) + delta;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The most the process held at once while `f` ran, above what it held
/// before.
fn peak_while<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, (PEAK.load(Ordering::Relaxed) - base).max(0) as usize)
}

fn open_at(dir: &std::path::Path, name: &str) -> StateMachine {
    let db = crate::meta::database::open(&dir.join(name), 4 << 20).expect("sled");
    StateMachine::open(&db, &dir.join(format!("{name}-snapshots"))).expect("open")
}

/// Builds a snapshot of `source` and installs it on a new state machine
/// "b" under `dir`, through chunks as between nodes.
async fn transfer(
    source: &mut StateMachine,
    dir: &std::path::Path,
) -> (StateMachine, SnapshotMeta<NodeId, openraft::BasicNode>) {
    let snapshot = source
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    let mut target = open_at(dir, "b");
    let received = receive(&mut target, snapshot.snapshot).await;
    target
        .install_snapshot(&snapshot.meta, received)
        .await
        .expect("install");
    (target, snapshot.meta)
}

/// Copies a built snapshot into a receiving one in chunks, as openraft
/// does between nodes.
async fn receive(
    target: &mut StateMachine,
    mut source: Box<tokio::fs::File>,
) -> Box<tokio::fs::File> {
    let mut file = target.begin_receiving_snapshot().await.expect("receive");
    let mut chunk = vec![0u8; crate::raft::SNAPSHOT_CHUNK_BYTES as usize];
    loop {
        let n = source.read(&mut chunk).await.expect("read");
        if n == 0 {
            break;
        }
        file.write_all(&chunk[..n]).await.expect("write");
    }
    file.flush().await.expect("flush");
    file
}

/// The record of the node that initialises the cluster.
fn first_node() -> crate::meta::NodeRecord {
    crate::meta::NodeRecord {
        id: 1,
        addr: "a:1".into(),
        zone: "z".into(),
        capacity: 1,
        state: crate::meta::NodeState::Active,
        added_ms: 5,
        state_since_ms: 5,
        incarnation: String::new(),
    }
}

/// Access control lives in the same tree as everything else, so a
/// snapshot carries principals, grants and tokens to a node that
/// installs it.
#[tokio::test]
async fn snapshots_carry_principals_grants_and_tokens() {
    use crate::meta::{Command, Grant, Principal, Role, Token};
    let entry = |index: u64, command: Command| Entry::<TypeConfig> {
        log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(command),
    };
    let node = first_node();
    let grant = Grant {
        principal: "alice".into(),
        role: Role::Read,
        bucket: None,
    };
    let token = Token {
        id: "0123456789abcdef".into(),
        principal: "alice".into(),
        secret_sha256: "cd".repeat(32),
        created_ms: 6,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut source = open_at(dir.path(), "a");
    let results = source
        .apply(vec![
            entry(
                1,
                Command::InitCluster {
                    cluster_id: "c".into(),
                    node,
                },
            ),
            entry(
                2,
                Command::CreatePrincipal {
                    principal: Principal {
                        name: "alice".into(),
                        created_ms: 6,
                    },
                },
            ),
            entry(
                3,
                Command::Grant {
                    grant: grant.clone(),
                },
            ),
            entry(
                4,
                Command::CreateToken {
                    token: token.clone(),
                },
            ),
        ])
        .await
        .expect("apply");
    assert!(results.iter().all(|r| r.0.is_ok()), "{results:?}");
    let (target, _) = transfer(&mut source, dir.path()).await;
    let meta = target.meta();
    let names: Vec<String> = meta
        .principals()
        .expect("principals")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["admin", "alice"]);
    assert_eq!(meta.grants_of("alice").expect("grants"), vec![grant]);
    assert_eq!(meta.grants_of("admin").expect("grants").len(), 1);
    assert_eq!(meta.token(&token.id).expect("token"), Some(token));
}

/// A snapshot is of the applied index where its build began: entries
/// applied between the start and the dump (a principal created, another
/// deleted) are not in it, and the source keeps them.
#[tokio::test]
async fn a_snapshot_is_of_the_index_where_it_began_while_applies_go_on() {
    use crate::meta::{Command, Principal};
    let entry = |index: u64, command: Command| Entry::<TypeConfig> {
        log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(command),
    };
    let principal = |name: &str| Command::CreatePrincipal {
        principal: Principal {
            name: name.into(),
            created_ms: 6,
        },
    };
    let node = first_node();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut source = open_at(dir.path(), "a");
    let init = Command::InitCluster {
        cluster_id: "c".into(),
        node,
    };
    let applied = source
        .apply(vec![entry(1, init), entry(2, principal("alice"))])
        .await
        .expect("apply");
    assert!(applied.iter().all(|r| r.0.is_ok()), "{applied:?}");
    let mut builder = source.get_snapshot_builder().await;
    let later = vec![
        entry(3, principal("bob")),
        entry(
            4,
            Command::DeletePrincipal {
                name: "alice".into(),
            },
        ),
    ];
    let applied = source.apply(later).await.expect("apply");
    assert!(applied.iter().all(|r| r.0.is_ok()), "{applied:?}");
    let snapshot = builder.build_snapshot().await.expect("snapshot");
    assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(2));
    let names = |sm: &StateMachine| -> Vec<String> {
        let principals = sm.meta().principals().expect("principals");
        principals.into_iter().map(|p| p.name).collect()
    };
    assert_eq!(names(&source), vec!["admin", "bob"]);
    let mut target = open_at(dir.path(), "b");
    let received = receive(&mut target, snapshot.snapshot).await;
    target
        .install_snapshot(&snapshot.meta, received)
        .await
        .expect("install");
    assert_eq!(names(&target), vec!["admin", "alice"]);
    let (applied, _) = target.applied_state().await.expect("applied");
    assert_eq!(applied.map(|l| l.index), Some(2));
}

/// Set in the process that measures (see below).
const MEASURE_ALONE: &str = "TRESOR_MEASURE_SNAPSHOT_ALONE";

/// A state of 100,000 objects and 100,000 audit entries goes through
/// build, chunks and install whole, and building its snapshot holds a few
/// MiB, not the state. Allocation is counted for the whole process, so the
/// test runs itself again in a process of its own, where nothing else
/// allocates meanwhile, and checks that process's verdict.
#[test]
fn a_large_state_round_trips_through_a_file_in_bounded_memory() {
    if std::env::var_os(MEASURE_ALONE).is_some() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(large_state_round_trip());
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "raft::state_machine::tests::a_large_state_round_trips_through_a_file_in_bounded_memory",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(MEASURE_ALONE, "1")
        .output()
        .expect("run the measurement alone");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "the measuring process failed:\n{text}"
    );
    assert!(
        text.contains("1 passed"),
        "the measurement did not run:\n{text}"
    );
}

async fn large_state_round_trip() {
    use crate::meta::audit::{chain, AuditRecord};
    use crate::meta::{ObjectId, ObjectManifest, SegmentManifest, ShardLocation};
    const OBJECTS: u32 = 100_000;
    const AUDIT: u64 = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut source = open_at(dir.path(), "a");
    let tree = source.tree();
    let mut batch = sled::Batch::default();
    let mut prev = String::new();
    for i in 0..OBJECTS {
        let m = ObjectManifest {
            bucket: "footage".into(),
            key: format!("cam-{:03}/clip-{i:07}.mp4", i % 500),
            object_id: ObjectId([(i % 251) as u8; 16]),
            size: 4096,
            sha256: format!("{i:064x}"),
            content_type: "video/mp4".into(),
            metadata: Default::default(),
            data: 4,
            parity: 2,
            block_size: 1 << 20,
            segment_stripes: 1,
            created_ms: u64::from(i),
            segments: vec![SegmentManifest {
                bytes: 4096,
                shards: (0..6u64)
                    .map(|n| ShardLocation::at(n + 1, crate::meta::Digest([n as u8; 32])))
                    .collect(),
            }],
            encryption: None,
            retention: None,
            ingested_by: String::new(),
            etag: String::new(),
        };
        let mut k = b"object/footage\0".to_vec();
        k.extend_from_slice(m.key.as_bytes());
        batch.insert(k, crate::meta::codec::encode(&m));
        if i % 10_000 == 9_999 {
            tree.apply_batch(std::mem::take(&mut batch)).expect("batch");
        }
    }
    for seq in 1..=AUDIT {
        let record = AuditRecord {
            time_ms: seq,
            node: 1,
            principal: "cam-7".into(),
            action: "get".into(),
            bucket: "footage".into(),
            key: format!("cam-007/clip-{seq:07}.mp4"),
            object_sha256: String::new(),
            outcome: "ok".into(),
        };
        let entry = chain(seq, record, &prev);
        prev = entry.hash.clone();
        let mut k = b"audit/".to_vec();
        k.extend_from_slice(&seq.to_be_bytes());
        batch.insert(k, crate::meta::codec::encode(&entry));
        if seq % 10_000 == 0 {
            tree.apply_batch(std::mem::take(&mut batch)).expect("batch");
        }
    }
    tree.apply_batch(batch).expect("batch");
    tree.insert(b"audit_head", crate::meta::codec::encode(&(AUDIT, &prev)))
        .expect("head");
    let state_bytes: usize = tree
        .iter()
        .map(|kv| kv.map(|(k, v)| k.len() + v.len()).expect("kv"))
        .sum();

    // The dump and the load, measured on this thread.
    let path = dir.path().join("dump");
    source.shadow.begin().expect("begin");
    let (written, dump_peak) =
        peak_while(|| crate::raft::snapshot::dump(source.shadow.as_at_begin(&tree), &path));
    source.shadow.end();
    let written = written.expect("dump") as usize;
    assert!(written >= state_bytes, "{written} < {state_bytes}");
    // Memory of a load is the read buffer, one batch and sled's page
    // cache, which is bounded by configuration (as `[meta] cache_bytes`).
    let fresh = sled::Config::new()
        .path(dir.path().join("c"))
        .cache_capacity(4 << 20)
        .open()
        .expect("sled")
        .open_tree("t")
        .expect("tree");
    let (loaded, load_peak) = peak_while(|| crate::raft::snapshot::load(&path, &fresh, &[]));
    assert_eq!(loaded.expect("load") as usize, tree.len());
    println!(
        "state {} MiB; dump peak {} KiB, load peak {} KiB",
        state_bytes >> 20,
        dump_peak >> 10,
        load_peak >> 10
    );
    let bound = 16 << 20;
    assert!(
        state_bytes > 3 * bound,
        "the state is not large enough to tell"
    );
    assert!(
        dump_peak < bound,
        "building the snapshot held {dump_peak} bytes"
    );
    // The load holds one small batch, sled's cache and the garbage of the
    // batch being applied: sled frees the pages a batch replaces only
    // once the batch is done, so large batches held several times the
    // state (4 MiB batches: about 180 MiB here). How soon sled lets that
    // garbage go depends on its threads getting a CPU: 13 MiB idle, up to
    // 50 MiB with six CPU hogs on two cores (periodic flushes or sleeps in
    // the load did not change that). The bound catches batches that are
    // too large, not the scheduler.
    let load_bound = 64 << 20;
    assert!(
        load_peak < load_bound,
        "installing the snapshot held {load_peak} bytes"
    );

    // The whole path: build, chunks, install; the target's state equals
    // the source's.
    let (mut target, installed) = transfer(&mut source, dir.path()).await;
    // The data alike, pair for pair (the Raft bookkeeping keys are the
    // snapshot's meta on the target).
    let data = |t: sled::Tree| {
        t.iter()
            .map(|kv| kv.expect("kv"))
            .filter(|(k, _)| !k.starts_with(b"raft/"))
    };
    let (mut a, mut b) = (data(source.tree()), data(target.tree()));
    let mut pairs = 0;
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => assert_eq!(x, y, "pair {pairs}"),
        }
        pairs += 1;
    }
    assert_eq!(pairs, OBJECTS as usize + AUDIT as usize + 1);
    assert_eq!(
        target.meta().audit_head().expect("head"),
        (AUDIT, prev),
        "the audit chain arrived whole"
    );
    let current = target.get_current_snapshot().await.expect("current");
    assert_eq!(current.map(|s| s.meta), Some(installed));
}
