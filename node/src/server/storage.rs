//! A metadata store that fails under Raft (a full or failing disk): how the
//! node notices, and how it comes back once the disk takes writes again.

use std::future::Future;
use std::path::Path;

/// Resolves with the reason once Raft has stopped on an error of its own —
/// in practice a write to the metadata store that failed.
pub(super) async fn raft_failure(raft: crate::raft::Raft) -> String {
    let mut metrics = raft.metrics();
    loop {
        if let Err(fatal) = &metrics.borrow_and_update().running_state {
            return fatal.to_string();
        }
        if metrics.changed().await.is_err() {
            return "Raft stopped".into();
        }
    }
}

/// How often a node whose metadata storage failed tries the disk again.
const STORAGE_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// After [`ServeError::StorageFailed`]: waits until `data_dir`'s metadata
/// directory takes a 1 MiB file with fsync again (or `shutdown` resolves),
/// then starts this process afresh in place (same pid, arguments and
/// standard streams), so the node rejoins with clean state — Raft catches
/// it up from its log. Returns only if that fails.
pub async fn restart_when_writable(
    data_dir: &Path,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let probe = data_dir.join("meta").join(".write-probe");
    let writable = async {
        let mut waited = 0u64;
        loop {
            let path = probe.clone();
            let ok = tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let wrote = std::fs::File::create(&path).and_then(|mut f| {
                    f.write_all(&vec![0u8; 1 << 20])?;
                    f.sync_all()
                });
                let _ = std::fs::remove_file(&path);
                wrote.is_ok()
            })
            .await
            .unwrap_or(false);
            if ok {
                return;
            }
            if waited.is_multiple_of(30) {
                tracing::error!(
                    dir = %data_dir.display(),
                    "metadata storage still not writable; this node serves nothing until it is"
                );
            }
            waited += STORAGE_PROBE_INTERVAL.as_secs();
            tokio::time::sleep(STORAGE_PROBE_INTERVAL).await;
        }
    };
    tokio::select! {
        _ = writable => {}
        _ = shutdown => return Ok(()),
    }
    tracing::warn!("metadata storage writable again: restarting the node");
    let exe = std::env::current_exe()?;
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(anyhow::anyhow!("cannot restart the node: {err}"))
}
