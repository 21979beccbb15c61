//! Snapshots as files. Building dumps the tree into a file as it was at
//! the applied id where the build began, while applies go on (the shadow
//! keeps what they change; the dump runs off the async workers).
//! Receiving writes openraft's chunks into a file; installing loads it into
//! a fresh tree, then records that tree as the state and swaps it in — a
//! crash before that record leaves the old state whole, and the half-loaded
//! tree is dropped at the next start. Memory is a write buffer and one
//! batch, however large the state.

use std::path::Path;
use std::sync::Arc;

use openraft::{LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta};

use super::shadow::Shadow;
use super::{
    from_stored, sm_read, snap_err, to_stored, Membership, StateMachine, StoredSnapshot,
    ACTIVE_TREE, APPLIED, MEMBERSHIP, SNAPSHOT_META,
};
use crate::raft::snapshot::{dump, load};
use crate::raft::{NodeId, StorageError, TypeConfig};

/// A snapshot begun between two applies, to be dumped and made current.
pub struct SnapshotBuilder {
    sm: StateMachine,
    prepared: Result<Prepared, StorageError>,
}

struct Prepared {
    seq: u64,
    tree: sled::Tree,
    applied: Option<LogId<NodeId>>,
    membership: Membership,
    /// Until the snapshot is built: `None` once it is.
    dumping: Option<Dumping>,
}

/// The shadow recording and the build lock, for one build: both end when
/// it is dropped, the recording first.
struct Dumping {
    shadow: Arc<Shadow>,
    _building: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for Dumping {
    fn drop(&mut self) {
        self.shadow.end();
    }
}

fn snapshot_file(seq: u64) -> String {
    format!("snapshot-{seq}.snap")
}

fn io_err(e: std::io::Error) -> StorageError {
    snap_err(e)
}

/// Runs blocking file and tree work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| snap_err(std::io::Error::other(e)))?
        .map_err(io_err)
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let prepared = match &mut self.prepared {
            Ok(p) => p,
            Err(e) => return Err(e.clone()),
        };
        let dumping = prepared
            .dumping
            .take()
            .ok_or_else(|| snap_err(std::io::Error::other("the snapshot was built already")))?;
        let snapshot_id = match prepared.applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, prepared.seq),
            None => format!("none-{}", prepared.seq),
        };
        let meta = SnapshotMeta {
            last_log_id: prepared.applied,
            last_membership: prepared.membership.clone(),
            snapshot_id,
        };
        let name = snapshot_file(prepared.seq);
        let target = self.sm.dir.join(&name);
        let (tree, shadow) = (prepared.tree.clone(), dumping.shadow.clone());
        let dir = self.sm.dir.clone();
        let (from, to) = (
            dir.join(format!("snapshot-{}.tmp", prepared.seq)),
            target.clone(),
        );
        blocking(move || {
            let bytes = dump(shadow.as_at_begin(&tree), &from)?;
            shadow.end();
            tracing::debug!(bytes, "state dumped for a snapshot");
            std::fs::rename(&from, &to)?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await?;
        self.sm.make_current(&meta, &name).await?;
        drop(dumping);
        let file = tokio::fs::File::open(&target).await.map_err(io_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

impl StateMachine {
    /// Begins a snapshot of the state as it is now, between two applies:
    /// the dump itself runs in [`SnapshotBuilder::build_snapshot`] while
    /// applies go on.
    pub(super) async fn prepare_snapshot(&mut self) -> SnapshotBuilder {
        let building = self.building.clone().lock_owned().await;
        let prepared = async {
            let (applied, membership) =
                openraft::storage::RaftStateMachine::applied_state(self).await?;
            let seq = self.next_seq()?;
            self.shadow.begin().map_err(snap_err)?;
            Ok(Prepared {
                seq,
                tree: self.tree(),
                applied,
                membership,
                dumping: Some(Dumping {
                    shadow: self.shadow.clone(),
                    _building: building,
                }),
            })
        }
        .await;
        SnapshotBuilder {
            sm: self.clone(),
            prepared,
        }
    }

    /// Records `meta` (its file `name`) as the current snapshot and removes
    /// the files of older ones.
    async fn make_current(
        &self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        name: &str,
    ) -> Result<(), StorageError> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            file: name.to_string(),
        };
        self.snapshots
            .insert(SNAPSHOT_META, to_stored(&stored)?)
            .map_err(snap_err)?;
        self.db.flush_async().await.map_err(snap_err)?;
        let dir = self.dir.clone();
        let keep = name.to_string();
        blocking(move || remove_snapshots_but(&dir, &keep)).await
    }

    /// A new file for a snapshot being received.
    pub(super) async fn receive_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let seq = self.next_seq()?;
        let path = self.dir.join(format!("snapshot-{seq}.tmp"));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io_err)?;
        *self.receiving.lock().map_err(|_| poisoned())? = Some(path);
        Ok(Box::new(file))
    }

    /// Installs the snapshot received into its file: loads it into a new
    /// tree, records that tree as the state, swaps it in, drops the old.
    pub(super) async fn install(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        snapshot.sync_all().await.map_err(io_err)?;
        drop(snapshot);
        // A build still dumping the tree being replaced finishes first.
        let _building = self.building.lock().await;
        let received = self
            .receiving
            .lock()
            .map_err(|_| poisoned())?
            .take()
            .ok_or_else(|| snap_err(std::io::Error::other("no snapshot is being received")))?;
        let seq = self.next_seq()?;
        let name = snapshot_file(seq);
        let file = self.dir.join(&name);
        let tree_name = format!("sm-{seq}");
        let tree = self.db.open_tree(tree_name.as_bytes()).map_err(snap_err)?;
        let (applied, membership) = (
            to_stored(&meta.last_log_id)?,
            to_stored(&meta.last_membership)?,
        );
        {
            let (tree, file) = (tree.clone(), file.clone());
            blocking(move || {
                // A test can make loading slow here (`sleep(ms)`).
                crate::crash::point("snapshot::before_load");
                std::fs::rename(&received, &file)?;
                tree.clear().map_err(std::io::Error::other)?;
                let loaded = load(&file, &tree, &[APPLIED, MEMBERSHIP])?;
                tree.insert(APPLIED, applied)
                    .map_err(std::io::Error::other)?;
                tree.insert(MEMBERSHIP, membership)
                    .map_err(std::io::Error::other)?;
                tree.flush().map_err(std::io::Error::other)?;
                tracing::info!(pairs = loaded, "snapshot loaded into a new tree");
                Ok(())
            })
            .await?;
        }
        // From this record on, the new tree is the state.
        self.snapshots
            .insert(ACTIVE_TREE, tree_name.as_bytes())
            .map_err(snap_err)?;
        self.make_current(meta, &name).await?;
        let old = self.meta.swap(tree);
        if let Err(e) = self.db.drop_tree(old.name()) {
            tracing::warn!(error = %e, "the replaced state tree is left for the next start to drop");
        }
        Ok(())
    }

    /// The current snapshot, opened for reading.
    pub(super) async fn current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(v) = self.snapshots.get(SNAPSHOT_META).map_err(sm_read)? else {
            return Ok(None);
        };
        let stored: StoredSnapshot = from_stored(&v)?;
        match tokio::fs::File::open(self.dir.join(&stored.file)).await {
            Ok(file) => Ok(Some(Snapshot {
                meta: stored.meta,
                snapshot: Box::new(file),
            })),
            // Gone (removed by hand): a new one will be built.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }
}

fn poisoned() -> StorageError {
    snap_err(std::io::Error::other("snapshot state poisoned"))
}

/// Removes every snapshot file in `dir` but `keep`.
fn remove_snapshots_but(dir: &Path, keep: &str) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".snap") && name != keep {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
