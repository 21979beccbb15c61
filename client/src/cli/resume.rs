//! What `tresor put` remembers of a resumable upload so that `tresor put
//! --resume` can continue it: one small JSON file per bucket/key under the
//! user's state directory, naming the session and the file it was for (its
//! size and the SHA-256 of its first part).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::objects::UploadSession;

/// An upload that may be resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Pending {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    /// The file's size when the upload started.
    pub size: u64,
    /// Lowercase hex SHA-256 of the file's first part.
    pub first_part_sha256: String,
}

/// Where pending uploads are noted: `$TRESOR_STATE_DIR`, else
/// `$XDG_STATE_HOME/tresor/uploads`, else `~/.local/state/tresor/uploads`.
fn state_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TRESOR_STATE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let base = match std::env::var_os("XDG_STATE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".local/state"),
            None => bail!("set TRESOR_STATE_DIR (no HOME to keep resumable uploads under)"),
        },
    };
    Ok(base.join("tresor/uploads"))
}

/// The note of `bucket/key`.
fn note_path(bucket: &str, key: &str) -> anyhow::Result<PathBuf> {
    let name = hex::encode(Sha256::digest(format!("{bucket}/{key}").as_bytes()));
    Ok(state_dir()?.join(format!("{name}.json")))
}

/// SHA-256 of the first `part_bytes` bytes of `file` (all of it if shorter).
pub(super) async fn first_part_sha256(file: &Path, part_bytes: u64) -> anyhow::Result<String> {
    let f = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let mut reader = f.take(part_bytes);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Notes `session`, started for `file`.
pub(super) async fn remember(session: &UploadSession, file: &Path) -> anyhow::Result<()> {
    let size = tokio::fs::metadata(file).await?.len();
    let pending = Pending {
        upload_id: session.upload_id.clone(),
        bucket: session.bucket.clone(),
        key: session.key.clone(),
        size,
        first_part_sha256: first_part_sha256(file, session.part_bytes).await?,
    };
    let path = note_path(&session.bucket, &session.key)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&pending)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The noted upload of `bucket/key`, if it was for `file` as it is now
/// (same size, same first part).
pub(super) async fn recall(
    bucket: &str,
    key: &str,
    file: &Path,
    part_bytes: impl AsyncFnOnce(&str) -> anyhow::Result<u64>,
) -> anyhow::Result<Pending> {
    let path = note_path(bucket, key)?;
    let text = std::fs::read(&path)
        .with_context(|| format!("no interrupted upload of {bucket}/{key} to resume"))?;
    let pending: Pending = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a note of an upload", path.display()))?;
    let size = tokio::fs::metadata(file).await?.len();
    if size != pending.size {
        bail!(
            "{} is {size} bytes; the interrupted upload of {bucket}/{key} was of {} bytes",
            file.display(),
            pending.size
        );
    }
    let part = part_bytes(&pending.upload_id).await?;
    if first_part_sha256(file, part).await? != pending.first_part_sha256 {
        bail!(
            "{} does not start as the file whose upload to {bucket}/{key} was interrupted",
            file.display()
        );
    }
    Ok(pending)
}

/// Forgets the note of `bucket/key` (the upload finished).
pub(super) fn forget(bucket: &str, key: &str) {
    if let Ok(path) = note_path(bucket, key) {
        let _ = std::fs::remove_file(path);
    }
}
