//! Encryption at rest: every object is sealed with its own random data key
//! before erasure coding, and the data key is stored only wrapped by the
//! key of its key epoch ([`epochs`]), itself wrapped by the cluster's
//! master key.
//!
//! - Object bytes are cut into chunks of [`CHUNK_BYTES`]; chunk `i` is
//!   sealed with AES-256-GCM under the object's data key, nonce `i`, and
//!   the object id and `i` as associated data. A chunk moved to another
//!   object or another position, or changed in any bit, fails to open.
//!   Nonces never repeat because a data key seals exactly one object.
//! - The data key is wrapped (AES-256-GCM, random nonce) by an epoch key
//!   (objects stored before key epochs: by a master key), with the object
//!   id and the wrapping key's id as associated data, and the wrapped key
//!   lives in the object's manifest in the replicated state.
//! - Master keys come from a file named in the node's config, never from
//!   the replicated state and never logged. Each line is `KEY-ID HEX-KEY`
//!   (64 hex digits); `#` starts a comment; the last key is the current
//!   one, used for new epoch keys and by `keys rotate`. The file is read on
//!   every use, so adding a key or retiring an old one needs no restart.

use std::path::{Path, PathBuf};

use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

use crate::meta::ObjectId;
use crate::meta::{ObjectEncryption, WrappedKey};

pub mod epochs;
pub use epochs::{EpochKey, EpochKeys, WrappedEpochKey};
mod secrets;
pub use secrets::{new_s3_credentials, open_s3_secret, seal_s3_secret};

/// Object bytes sealed together: the unit a range read decrypts.
pub const CHUNK_BYTES: u32 = 64 * 1024;

/// Errors of key handling and decryption.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key file is missing, unreadable or malformed.
    #[error("master key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never key material).
        reason: String,
    },
    /// The key that wrapped an object's data key is not in the key file.
    #[error("master key {0:?} is not in the key file")]
    UnknownKey(String),
    /// A wrapped key or a chunk failed authentication: altered, moved or
    /// wrapped under another key.
    #[error("{0} failed authentication")]
    Tampered(String),
    /// An epoch key file could not be read or written.
    #[error("epoch key file {path}: {reason}")]
    EpochKeyFile {
        /// The file or its directory.
        path: PathBuf,
        /// What went wrong (never key material).
        reason: String,
    },
    /// The node has no master key file but the object is encrypted.
    #[error("this node has no master key file configured")]
    NoKeyFile,
}

/// A master key: 32 bytes and the id it is known by.
pub struct MasterKey {
    /// Id recorded with every data key it wraps.
    pub id: String,
    key: [u8; 32],
}

/// The master keys of a key file, the last one current.
pub struct MasterKeys {
    keys: Vec<MasterKey>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("MasterKeys").field("ids", &ids).finish()
    }
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl MasterKeys {
    /// Reads a key file.
    /// Refused if group or others may read it, as ssh does with keys.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        use std::os::unix::fs::PermissionsExt;
        let fail = |reason: String| CryptoError::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let mode = std::fs::metadata(path)
            .map_err(|e| fail(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "mode {:o} lets others read it; chmod 600 it",
                mode & 0o777
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        Self::parse(&text).map_err(|reason| CryptoError::KeyFile {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses the text of a key file; errors name the line, never the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys: Vec<MasterKey> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(id), Some(hex_key), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(format!("line {}: expected `KEY-ID HEX-KEY`", n + 1));
            };
            if !valid_key_id(id) {
                return Err(format!(
                    "line {}: key id must be 1-32 letters, digits, '.', '_' or '-'",
                    n + 1
                ));
            }
            let key = hex::decode(hex_key)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| format!("line {}: key must be 64 hex digits (32 bytes)", n + 1))?;
            if keys.iter().any(|k| k.id == id) {
                return Err(format!("line {}: key id {id:?} appears twice", n + 1));
            }
            keys.push(MasterKey {
                id: id.to_string(),
                key,
            });
        }
        if keys.is_empty() {
            return Err("holds no key".into());
        }
        Ok(Self { keys })
    }

    /// A new key file line with a fresh random key.
    pub fn new_line(id: &str) -> Result<String, String> {
        if !valid_key_id(id) {
            return Err(format!("invalid key id {id:?}"));
        }
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Ok(format!("{id} {}\n", hex::encode(key)))
    }

    /// The key new data keys are wrapped with.
    pub fn current(&self) -> &MasterKey {
        // `parse` refuses an empty file.
        &self.keys[self.keys.len() - 1]
    }

    /// The ids of the keys, oldest first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// The key with `id`.
    pub fn get(&self, id: &str) -> Result<&MasterKey, CryptoError> {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_string()))
    }
}

fn wrap_aad(object: ObjectId, key_id: &str) -> Vec<u8> {
    let mut aad = b"tresor data key\0".to_vec();
    aad.extend_from_slice(&object.0);
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

fn aead_key(bytes: &[u8; 32]) -> LessSafeKey {
    // AES-256 takes exactly 32 bytes, which the type guarantees.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("AES-256 key is 32 bytes"))
}

/// The data key of one object, able to seal and open its chunks.
pub struct DataKey {
    bytes: [u8; 32],
    key: LessSafeKey,
    object: ObjectId,
}

impl DataKey {
    /// A fresh random data key for `object`.
    pub fn generate(object: ObjectId) -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(object, bytes)
    }

    fn from_bytes(object: ObjectId, bytes: [u8; 32]) -> Self {
        Self {
            key: aead_key(&bytes),
            bytes,
            object,
        }
    }

    /// Wraps this key with `master` (objects stored before key epochs;
    /// new objects are wrapped by an epoch key, see [`epochs`]).
    pub fn wrap(&self, master: &MasterKey) -> WrappedKey {
        self.wrap_under(&master.id, &master.key)
    }

    /// Wraps this key with the epoch key `epoch` for the manifest.
    pub fn wrap_epoch(&self, epoch: &EpochKey) -> WrappedKey {
        self.wrap_under(&epoch.key_id(), &epoch.key)
    }

    fn wrap_under(&self, key_id: &str, kek: &[u8; 32]) -> WrappedKey {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut sealed = self.bytes.to_vec();
        aead_key(kek)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(self.object, key_id)),
                &mut sealed,
            )
            .expect("sealing 32 bytes cannot exceed GCM limits");
        WrappedKey {
            key_id: key_id.to_string(),
            nonce: hex::encode(nonce),
            sealed: hex::encode(sealed),
        }
    }

    /// Unwraps the data key of `object` with the master keys (a key wrapped
    /// before key epochs).
    pub fn unwrap(
        object: ObjectId,
        wrapped: &WrappedKey,
        keys: &MasterKeys,
    ) -> Result<Self, CryptoError> {
        let master = keys.get(&wrapped.key_id)?;
        Self::unwrap_under(object, wrapped, &master.key)
    }

    /// Unwraps the data key of `object` with the epoch key that wrapped it.
    pub fn unwrap_epoch(
        object: ObjectId,
        wrapped: &WrappedKey,
        epoch: &EpochKey,
    ) -> Result<Self, CryptoError> {
        if wrapped.key_id != epoch.key_id() {
            return Err(CryptoError::UnknownKey(wrapped.key_id.clone()));
        }
        Self::unwrap_under(object, wrapped, &epoch.key)
    }

    fn unwrap_under(
        object: ObjectId,
        wrapped: &WrappedKey,
        kek: &[u8; 32],
    ) -> Result<Self, CryptoError> {
        let tampered = || CryptoError::Tampered(format!("data key of object {object}"));
        let nonce = hex::decode(&wrapped.nonce)
            .ok()
            .and_then(|n| <[u8; NONCE_LEN]>::try_from(n).ok())
            .ok_or_else(tampered)?;
        let mut sealed = hex::decode(&wrapped.sealed).map_err(|_| tampered())?;
        let bytes = aead_key(kek)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(object, &wrapped.key_id)),
                &mut sealed,
            )
            .map_err(|_| tampered())?;
        let bytes = <[u8; 32]>::try_from(&bytes[..]).map_err(|_| tampered())?;
        Ok(Self::from_bytes(object, bytes))
    }

    /// The raw key: for tests that look for it on disk (test builds only).
    #[cfg(any(test, feature = "crash-points"))]
    pub fn expose(&self) -> [u8; 32] {
        self.bytes
    }

    /// The same key again (the write path keeps one to re-wrap it).
    pub fn duplicate(&self) -> Self {
        Self::from_bytes(self.object, self.bytes)
    }

    fn nonce_aad(&self, index: u64) -> (Nonce, Aad<[u8; 24]>) {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[4..].copy_from_slice(&index.to_be_bytes());
        let mut aad = [0u8; 24];
        aad[..16].copy_from_slice(&self.object.0);
        aad[16..].copy_from_slice(&index.to_be_bytes());
        (Nonce::assume_unique_for_key(nonce), Aad::from(aad))
    }

    /// Seals chunk `index` in place: `buf` gains the tag.
    pub fn seal(&self, index: u64, buf: &mut Vec<u8>) {
        let (nonce, aad) = self.nonce_aad(index);
        self.key
            .seal_in_place_append_tag(nonce, aad, buf)
            .expect("a chunk is far below GCM's length limit");
    }

    /// Opens chunk `index` in place: `buf` loses the tag and holds the
    /// object bytes, or the chunk is refused.
    pub fn open(&self, index: u64, buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        let (nonce, aad) = self.nonce_aad(index);
        let plain = self
            .key
            .open_in_place(nonce, aad, buf)
            .map_err(|_| CryptoError::Tampered(format!("chunk {index} of object {}", self.object)))?
            .len();
        buf.truncate(plain);
        Ok(())
    }
}

/// Where a node's master keys come from.
#[derive(Debug, Clone)]
pub struct Keyring {
    path: Option<PathBuf>,
}

impl Keyring {
    /// Keys from `path` (read on every use); `None` stores new objects in
    /// the clear (insecure clusters only) and cannot read encrypted ones.
    pub fn new(path: Option<PathBuf>) -> Self {
        Self { path }
    }

    /// Whether new objects are encrypted.
    pub fn enabled(&self) -> bool {
        self.path.is_some()
    }

    /// The keys, read now.
    pub fn keys(&self) -> Result<MasterKeys, CryptoError> {
        match &self.path {
            Some(path) => MasterKeys::load(path),
            None => Err(CryptoError::NoKeyFile),
        }
    }
}

/// The chunks holding object bytes `[start, end)`: first chunk index and
/// the stored byte range `[from, to)` they occupy.
pub fn chunks_for(enc: &ObjectEncryption, size: u64, start: u64, end: u64) -> (u64, u64, u64) {
    let chunk = enc.chunk_bytes.max(1) as u64;
    let end = end.min(size);
    if start >= end {
        return (0, 0, 0);
    }
    let first = start / chunk;
    let last = end.div_ceil(chunk);
    let sealed = enc.sealed_chunk_len();
    let from = first * sealed;
    let to = (last * sealed).min(enc.stored_len(size));
    (first, from, to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::TAG_BYTES;

    const FILE: &str = "# cluster keys\nk1 0101010101010101010101010101010101010101010101010101010101010101\n\nk2 0202020202020202020202020202020202020202020202020202020202020202 # new\n";

    fn enc(chunk: u32) -> ObjectEncryption {
        ObjectEncryption {
            chunk_bytes: chunk,
            key: WrappedKey {
                key_id: "k1".into(),
                nonce: String::new(),
                sealed: String::new(),
            },
        }
    }

    #[test]
    fn key_file_last_key_is_current() {
        let keys = MasterKeys::parse(FILE).expect("parses");
        assert_eq!(keys.current().id, "k2");
        assert!(keys.get("k1").is_ok());
        assert!(matches!(keys.get("k3"), Err(CryptoError::UnknownKey(_))));
        let line = MasterKeys::new_line("k3").expect("line");
        let more = MasterKeys::parse(&format!("{FILE}{line}")).expect("parses");
        assert_eq!(more.current().id, "k3");
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.keys");
        std::fs::write(&path, FILE).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = MasterKeys::load(&path).expect_err("world-readable");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(MasterKeys::load(&path).expect("0600").current().id, "k2");
    }

    #[test]
    fn bad_key_files_are_refused_without_echoing_keys() {
        for (text, says) in [
            ("", "no key"),
            ("k1 0101", "64 hex digits"),
            ("k1", "KEY-ID HEX-KEY"),
            ("../x 0101010101010101010101010101010101010101010101010101010101010101", "key id"),
            ("k1 0101010101010101010101010101010101010101010101010101010101010101\nk1 0202020202020202020202020202020202020202020202020202020202020202", "twice"),
        ] {
            let err = MasterKeys::parse(text).expect_err(text);
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(!err.contains("0101"), "error echoes key material: {err}");
        }
    }

    #[test]
    fn wrapped_key_opens_only_for_its_object_and_key() {
        let keys = MasterKeys::parse(FILE).expect("parses");
        let object = ObjectId([9; 16]);
        let data = DataKey::generate(object);
        let wrapped = data.wrap(keys.current());
        assert_eq!(wrapped.key_id, "k2");
        let back = DataKey::unwrap(object, &wrapped, &keys).expect("unwraps");
        assert_eq!(back.bytes, data.bytes);
        assert!(matches!(
            DataKey::unwrap(ObjectId([8; 16]), &wrapped, &keys),
            Err(CryptoError::Tampered(_))
        ));
        let mut relabelled = wrapped.clone();
        relabelled.key_id = "k1".into();
        assert!(matches!(
            DataKey::unwrap(object, &relabelled, &keys),
            Err(CryptoError::Tampered(_))
        ));
        let only_k1 = MasterKeys::parse(&FILE[..FILE.find("\n\n").unwrap_or(0)]).expect("k1");
        assert!(matches!(
            DataKey::unwrap(object, &wrapped, &only_k1),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn chunks_open_only_in_place() {
        let object = ObjectId([1; 16]);
        let key = DataKey::generate(object);
        let plain = b"body camera footage".to_vec();
        let mut sealed = plain.clone();
        key.seal(3, &mut sealed);
        assert_eq!(sealed.len() as u64, plain.len() as u64 + TAG_BYTES);
        assert!(!sealed.windows(6).any(|w| w == b"camera"));
        let mut moved = sealed.clone();
        assert!(key.open(4, &mut moved).is_err(), "moved chunk opened");
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(key.open(3, &mut flipped).is_err(), "altered chunk opened");
        let other = DataKey::unwrap(
            ObjectId([2; 16]),
            &key.wrap(MasterKeys::parse(FILE).expect("keys").current()),
            &MasterKeys::parse(FILE).expect("keys"),
        );
        assert!(other.is_err(), "key bound to another object");
        key.open(3, &mut sealed).expect("opens");
        assert_eq!(sealed, plain);
    }

    #[test]
    fn chunk_ranges() {
        let e = enc(10);
        assert_eq!(e.stored_len(0), 0);
        assert_eq!(e.stored_len(25), 25 + 3 * 16);
        // Bytes 12..15 lie in chunk 1 only.
        assert_eq!(chunks_for(&e, 25, 12, 15), (1, 26, 52));
        // The last, short chunk ends at the stored length.
        assert_eq!(chunks_for(&e, 25, 19, 25), (1, 26, 73));
        assert_eq!(chunks_for(&e, 25, 0, u64::MAX), (0, 0, 73));
        assert_eq!(chunks_for(&e, 25, 25, 30), (0, 0, 0));
    }
}
