//! Disk-full control: a small tmpfs per node, and a filler file that takes
//! its space away and gives it back.
//!
//! Mounting needs root (or `CAP_SYS_ADMIN`); where that is missing,
//! [`Tmpfs::mount`] says so and returns `None`, and tests that need it skip
//! with that message.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// A tmpfs mounted at a directory, unmounted (lazily) on drop.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` at `path` (created if absent); `None`,
    /// with the reason printed, when this process may not mount.
    pub fn mount(path: &Path, bytes: u64) -> anyhow::Result<Option<Self>> {
        std::fs::create_dir_all(path)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes}"))
            .arg("tmpfs")
            .arg(path)
            .output();
        match out {
            Ok(o) if o.status.success() => Ok(Some(Self {
                path: path.to_path_buf(),
            })),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs at {} (needs root): {}",
                    path.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                Ok(None)
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                Ok(None)
            }
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Bytes free for an unprivileged writer on the file system of `dir`.
pub fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .context("cannot run df")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("df said {text:?}"))
}

/// Writes `<dir>/filler` until at most `leave` bytes are free (or the
/// file system refuses more); returns the filler's path, to remove to give
/// the space back.
pub fn fill(dir: &Path, leave: u64) -> anyhow::Result<PathBuf> {
    let path = dir.join("filler");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let chunk = vec![0x5au8; 1024 * 1024];
    // A few rounds: what the file system reports free moves as it works.
    for _ in 0..10 {
        let free = free_bytes(dir)?;
        if free <= leave {
            break;
        }
        let mut left = free - leave;
        while left > 0 {
            let take = left.min(chunk.len() as u64) as usize;
            match file.write_all(&chunk[..take]) {
                Ok(()) => left -= take as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return Ok(path),
                Err(e) => bail!("filling {}: {e}", dir.display()),
            }
        }
        file.sync_data()?;
    }
    Ok(path)
}
