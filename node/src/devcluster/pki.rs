//! The CA, certificates and master keys of a secure local cluster.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

use crate::tls::CertFiles;

/// Principal of the bootstrap administrator's client certificate.
pub const ADMIN_PRINCIPAL: &str = "admin";

/// The certificates and keys of a secure local cluster.
#[derive(Debug, Clone)]
pub(super) struct DevPki {
    pub(super) ca_dir: PathBuf,
    pub(super) certs_dir: PathBuf,
    pub(super) master_keys: PathBuf,
    pub(super) admin: CertFiles,
}

/// Makes a CA in `dir` unless one is there. Safe if another thread or
/// process makes it at the same moment.
pub fn ensure_ca(dir: &Path) -> anyhow::Result<PathBuf> {
    let files = crate::tls::ca_files(dir);
    if files.cert.exists() && files.key.exists() {
        return Ok(files.cert);
    }
    match crate::tls::init_ca(dir) {
        Ok(files) => Ok(files.cert),
        // Lost a race with another creator: theirs is as good.
        Err(_) if files.cert.exists() && files.key.exists() => Ok(files.cert),
        Err(e) => Err(e).context("cannot create the cluster CA"),
    }
}

/// The receipt signer in `certs_dir`, issued by the CA in `ca_dir` unless
/// one is there.
pub(super) fn ensure_signer(ca_dir: &Path, certs_dir: &Path) -> anyhow::Result<CertFiles> {
    let files = CertFiles {
        cert: certs_dir.join(crate::tls::SIGNER_CERT_FILE),
        key: certs_dir.join(crate::tls::SIGNER_KEY_FILE),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    let validity = crate::tls::Validity::days(crate::tls::DEFAULT_VALIDITY_DAYS);
    crate::tls::issue_signer(ca_dir, certs_dir, validity).context("cannot issue the receipt signer")
}

/// Writes a master key file with one fresh key `k1` (mode 0600) unless the
/// file exists: a cluster started again on the same dir needs its old key.
pub(super) fn ensure_master_keys(path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let line = crate::crypto::MasterKeys::new_line("k1").map_err(|e| anyhow!(e))?;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match file {
        Ok(mut f) => {
            f.write_all(line.as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            // The new file's name is durable only once its directory is.
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .with_context(|| format!("cannot sync {}", dir.display()))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// Quotes `s` for a POSIX shell.
pub(super) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:+=@,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}
