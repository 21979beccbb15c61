//! Key epochs: the keys that wrap data keys, kept outside the replicated
//! state so that destroying one is a local, provable act.
//!
//! A data key is wrapped by an epoch key, never by a master key directly.
//! Wrapped data keys are in manifests, so in the Raft log, the state
//! machine, snapshots and sled's freed pages, where nothing can erase them;
//! the epoch key is not. Each node keeps every live epoch key in its own
//! small file under `<data_dir>/epoch-keys/`, wrapped by the master key
//! (a stolen disk alone opens nothing), written atomically (temporary
//! file, fsync, rename, directory fsync). Epoch keys travel between nodes
//! only over the internal mTLS service, still wrapped by the master key.
//!
//! Destroying an epoch key overwrites its file in place with zeros, fsyncs
//! it, removes it and fsyncs the directory: from then on no bytes on the
//! node open the data keys it wrapped, even with the master key. (On a
//! copy-on-write filesystem or below a flash translation layer an
//! overwrite may land elsewhere than the old bytes; the README says what
//! to run the data directory on.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rand::RngCore;
use ring::aead::{Aad, Nonce, NONCE_LEN};

use super::{aead_key, CryptoError, Keyring, MasterKey, MasterKeys};
use crate::meta::epoch_key_id;

/// Name of the directory of epoch key files inside a node's data dir.
pub const DIR_NAME: &str = "epoch-keys";
const MAGIC: &str = "tresor-epoch-key 1";

/// An epoch key, unwrapped: lives in memory only.
pub struct EpochKey {
    /// The epoch it belongs to.
    pub id: u64,
    pub(super) key: [u8; 32],
}

impl std::fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochKey").field("id", &self.id).finish()
    }
}

impl EpochKey {
    /// A fresh random key for a new epoch with a fresh random id.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self {
            id: rand::rngs::OsRng.next_u64(),
            key,
        }
    }

    /// The id recorded in the data keys it wraps (`e:<16 hex digits>`).
    pub fn key_id(&self) -> String {
        epoch_key_id(self.id)
    }

    /// The raw key: for tests that look for it on disk (test builds only).
    #[cfg(any(test, feature = "crash-points"))]
    pub fn expose(&self) -> [u8; 32] {
        self.key
    }
}

/// An epoch key wrapped by a master key: as kept on disk and sent between
/// nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedEpochKey {
    /// The epoch.
    pub id: u64,
    /// The master key that wrapped it.
    pub master_key_id: String,
    /// AES-GCM nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The sealed key and its tag (48 bytes).
    pub sealed: Vec<u8>,
}

fn epoch_aad(id: u64, master_key_id: &str) -> Vec<u8> {
    let mut aad = b"tresor epoch key\0".to_vec();
    aad.extend_from_slice(&id.to_be_bytes());
    aad.extend_from_slice(master_key_id.as_bytes());
    aad
}

impl WrappedEpochKey {
    /// Wraps `key` with `master`.
    pub fn wrap(key: &EpochKey, master: &MasterKey) -> Self {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut sealed = key.key.to_vec();
        aead_key(&master.key)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(epoch_aad(key.id, &master.id)),
                &mut sealed,
            )
            .expect("sealing 32 bytes cannot exceed GCM limits");
        Self {
            id: key.id,
            master_key_id: master.id.clone(),
            nonce,
            sealed,
        }
    }

    /// Opens it with the master keys.
    pub fn open(&self, keys: &MasterKeys) -> Result<EpochKey, CryptoError> {
        let master = keys.get(&self.master_key_id)?;
        let mut sealed = self.sealed.clone();
        let tampered = || CryptoError::Tampered(format!("epoch key {:016x}", self.id));
        let bytes = aead_key(&master.key)
            .open_in_place(
                Nonce::assume_unique_for_key(self.nonce),
                Aad::from(epoch_aad(self.id, &self.master_key_id)),
                &mut sealed,
            )
            .map_err(|_| tampered())?;
        let key = <[u8; 32]>::try_from(&bytes[..]).map_err(|_| tampered())?;
        Ok(EpochKey { id: self.id, key })
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        format!(
            "{MAGIC} {:016x} {} {} {}\n",
            self.id,
            self.master_key_id,
            hex::encode(self.nonce),
            hex::encode(&self.sealed)
        )
    }

    /// Parses a file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .trim_end()
            .strip_prefix(MAGIC)
            .ok_or("not an epoch key file")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let [id, master, nonce, sealed] = fields[..] else {
            return Err("expected id, master key id, nonce and key".into());
        };
        let id = u64::from_str_radix(id, 16).map_err(|_| "bad epoch id")?;
        let nonce = hex::decode(nonce)
            .ok()
            .and_then(|n| <[u8; NONCE_LEN]>::try_from(n).ok())
            .ok_or("bad nonce")?;
        let sealed = hex::decode(sealed)
            .ok()
            .filter(|s| s.len() == 48)
            .ok_or("bad key")?;
        Ok(Self {
            id,
            master_key_id: master.to_string(),
            nonce,
            sealed,
        })
    }
}

/// This node's epoch key files. Read on every use, like the master key
/// file: nothing is cached, so a destroyed key is gone from memory too and
/// a retired master key stops opening files at once.
pub struct EpochKeys {
    dir: PathBuf,
    keyring: Keyring,
}

impl std::fmt::Debug for EpochKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochKeys").field("dir", &self.dir).finish()
    }
}

fn store_error(path: &Path, e: impl std::fmt::Display) -> CryptoError {
    CryptoError::EpochKeyFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn sync_dir(dir: &Path) -> Result<(), CryptoError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| store_error(dir, e))
}

impl EpochKeys {
    /// The epoch keys in `dir` (created, mode 0700, if missing), opened
    /// with the master keys of `keyring`.
    pub fn open(dir: PathBuf, keyring: Keyring) -> Result<Self, CryptoError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| store_error(&dir, e))?;
        Ok(Self { dir, keyring })
    }

    /// The directory of the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether data keys are encrypted at all (a master key file is set).
    pub fn enabled(&self) -> bool {
        self.keyring.enabled()
    }

    /// The master keys, read now.
    pub fn master_keys(&self) -> Result<MasterKeys, CryptoError> {
        self.keyring.keys()
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016x}.key"))
    }

    /// A new epoch key, wrapped by the current master key and stored here.
    pub fn create(&self) -> Result<(EpochKey, WrappedEpochKey), CryptoError> {
        let keys = self.keyring.keys()?;
        let key = EpochKey::generate();
        let wrapped = WrappedEpochKey::wrap(&key, keys.current());
        self.write(&wrapped)?;
        Ok((key, wrapped))
    }

    /// Stores `wrapped` (sent by another node) after checking that this
    /// node's master keys open it. Returns whether the file changed.
    pub fn store(&self, wrapped: &WrappedEpochKey) -> Result<bool, CryptoError> {
        let keys = self.keyring.keys()?;
        let key = wrapped.open(&keys)?;
        if let Some(held) = self.wrapped(wrapped.id)? {
            if let Ok(k) = held.open(&keys) {
                if k.key != key.key {
                    return Err(CryptoError::Tampered(format!(
                        "epoch key {:016x} differs from the one this node holds",
                        key.id
                    )));
                }
                // The same key under the same master key: nothing to do.
                if held.master_key_id == wrapped.master_key_id {
                    return Ok(false);
                }
            }
        }
        self.write(wrapped)?;
        Ok(true)
    }

    fn write(&self, wrapped: &WrappedEpochKey) -> Result<(), CryptoError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path(wrapped.id);
        let tmp = self.dir.join(format!(".{:016x}.tmp", wrapped.id));
        let fail = |e: std::io::Error| store_error(&path, e);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(fail)?;
        file.write_all(wrapped.to_text().as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)?;
        sync_dir(&self.dir)
    }

    /// The stored, wrapped key of epoch `id`, if this node has it.
    pub fn wrapped(&self, id: u64) -> Result<Option<WrappedEpochKey>, CryptoError> {
        let path = self.path(id);
        match std::fs::read_to_string(&path) {
            Ok(text) => WrappedEpochKey::parse(&text)
                .map(Some)
                .map_err(|e| store_error(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(store_error(&path, e)),
        }
    }

    /// The key of epoch `id`, if this node has it.
    pub fn key(&self, id: u64) -> Result<Option<EpochKey>, CryptoError> {
        let Some(wrapped) = self.wrapped(id)? else {
            return Ok(None);
        };
        wrapped.open(&self.keyring.keys()?).map(Some)
    }

    /// Destroys the key of epoch `id` on this node: the file is overwritten
    /// with zeros and fsynced before it is removed. Returns whether there
    /// was one.
    pub fn destroy(&self, id: u64) -> Result<bool, CryptoError> {
        let path = self.path(id);
        let tmp = self.dir.join(format!(".{id:016x}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut file = match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(store_error(&path, e)),
        };
        let fail = |e: std::io::Error| store_error(&path, e);
        let len = file.metadata().map_err(fail)?.len();
        file.write_all(&vec![0u8; len as usize]).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        drop(file);
        std::fs::remove_file(&path).map_err(fail)?;
        sync_dir(&self.dir)?;
        Ok(true)
    }

    /// The epochs this node has keys of, with when each file was written.
    pub fn list(&self) -> Result<Vec<(u64, SystemTime)>, CryptoError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| store_error(&self.dir, e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".key"))
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            else {
                continue;
            };
            let written = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((id, written));
        }
        out.sort_unstable();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::DataKey;
    use crate::meta::ObjectId;

    fn keyring(dir: &Path, text: &str) -> Keyring {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("master.keys");
        std::fs::write(&path, text).expect("write keys");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Keyring::new(Some(path))
    }

    const K1: &str = "k1 0101010101010101010101010101010101010101010101010101010101010101\n";
    const K2: &str = "k2 0202020202020202020202020202020202020202020202020202020202020202\n";

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_destroyed_epoch_key_leaves_nothing_that_opens_its_data_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let epochs =
            EpochKeys::open(dir.path().join(DIR_NAME), keyring(dir.path(), K1)).expect("open");
        let (key, wrapped) = epochs.create().expect("create");
        let object = ObjectId([7; 16]);
        let data = DataKey::generate(object);
        let sealed = data.wrap_epoch(&key);
        assert!(sealed.key_id.starts_with("e:"));
        let stored = std::fs::read(epochs.path(key.id)).expect("file");
        assert!(
            !contains(&stored, &key.key),
            "an epoch key is stored wrapped"
        );
        assert!(contains(&stored, hex::encode(&wrapped.sealed).as_bytes()));
        let back = epochs.key(key.id).expect("key").expect("present");
        assert!(DataKey::unwrap_epoch(object, &sealed, &back).is_ok());

        // Destroyed: no file, and the data key opens no more.
        let file = epochs.path(key.id);
        assert!(epochs.destroy(key.id).expect("destroy"));
        assert!(!file.exists());
        assert!(epochs.key(key.id).expect("key").is_none());
        assert!(epochs.list().expect("list").is_empty());
        assert!(!epochs.destroy(key.id).expect("again"), "idempotent");
    }

    #[test]
    fn keys_move_between_nodes_only_if_their_master_keys_open_them() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let c = tempfile::tempdir().expect("tempdir");
        let here = EpochKeys::open(a.path().join(DIR_NAME), keyring(a.path(), K1)).expect("a");
        let there = EpochKeys::open(b.path().join(DIR_NAME), keyring(b.path(), K1)).expect("b");
        let stranger = EpochKeys::open(c.path().join(DIR_NAME), keyring(c.path(), K2)).expect("c");
        let (key, wrapped) = here.create().expect("create");
        assert!(there.store(&wrapped).expect("store"));
        assert!(!there.store(&wrapped).expect("again"), "unchanged");
        let keys = MasterKeys::parse(K1).expect("k1");
        let rewrapped = WrappedEpochKey::wrap(&key, keys.current());
        assert!(
            !there.store(&rewrapped).expect("same key and master"),
            "unchanged"
        );
        assert_eq!(
            there.key(key.id).expect("key").map(|k| k.key),
            Some(key.key)
        );
        assert!(stranger.store(&wrapped).is_err(), "another cluster's key");
        let mut forged = wrapped.clone();
        forged.sealed[0] ^= 1;
        assert!(matches!(
            EpochKeys::open(c.path().join("x"), keyring(c.path(), K1))
                .expect("x")
                .store(&forged),
            Err(CryptoError::Tampered(_))
        ));
    }

    #[test]
    fn a_key_stored_again_under_a_new_master_key_replaces_the_old_wrapping() {
        let dir = tempfile::tempdir().expect("tempdir");
        let epochs =
            EpochKeys::open(dir.path().join(DIR_NAME), keyring(dir.path(), K1)).expect("open");
        let (key, _) = epochs.create().expect("create");
        keyring(dir.path(), &format!("{K1}{K2}"));
        let k2 = MasterKeys::parse(&format!("{K1}{K2}")).expect("keys");
        let rewrapped = WrappedEpochKey::wrap(&key, k2.current());
        assert!(epochs.store(&rewrapped).expect("rewrap"), "now under k2");
        assert!(!epochs.store(&rewrapped).expect("again"), "unchanged");
        keyring(dir.path(), K2);
        let fresh =
            EpochKeys::open(dir.path().join(DIR_NAME), keyring(dir.path(), K2)).expect("reopen");
        assert_eq!(
            fresh.key(key.id).expect("key").map(|k| k.key),
            Some(key.key)
        );
        assert_eq!(
            WrappedEpochKey::parse("tresor-epoch-key 1 zz k1 00 00").map(|_| ()),
            Err("bad epoch id".to_string())
        );
    }
}
