//! Key epochs as the replicated state knows them: which exist, which
//! objects each wraps, which are retiring or destroyed. The keys are never
//! here (see `crypto::epochs`): only their ids.
//!
//! An object's data key is wrapped by the epoch key of its class, chosen
//! at ingest: objects due for deletion in the same ten minutes share an
//! epoch (`expire-<window>`), objects kept without an end share one per
//! day of ingest (`keep-<day>`). Expiry thus empties whole epochs; a
//! deletion that leaves others behind makes the shredder move them to a
//! new epoch, so the old key can go.

use serde::{Deserialize, Serialize};

/// Prefix of the key ids of epoch keys (master key ids cannot contain `:`).
pub const EPOCH_KEY_ID_PREFIX: &str = "e:";
/// Objects due in the same window share an epoch.
pub const EXPIRE_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Objects kept without an end share an epoch per day of ingest.
pub const KEEP_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// The key id recorded in data keys wrapped by epoch `id`.
pub fn epoch_key_id(id: u64) -> String {
    format!("{EPOCH_KEY_ID_PREFIX}{id:016x}")
}

/// The epoch of a data key wrapped by an epoch key (`None`: by a master key).
pub fn epoch_of(key_id: &str) -> Option<u64> {
    let hex = key_id.strip_prefix(EPOCH_KEY_ID_PREFIX)?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// The class of an object due for deletion at `delete_at_ms` (or never),
/// ingested at `created_ms`.
pub fn epoch_class(delete_at_ms: Option<u64>, created_ms: u64) -> String {
    match delete_at_ms {
        Some(at) => format!("expire-{}", at / EXPIRE_WINDOW_MS),
        None => format!("keep-{}", created_ms / KEEP_WINDOW_MS),
    }
}

/// One key epoch.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEpoch {
    /// Random id, chosen by its creator.
    pub id: u64,
    /// The class new objects of which it wraps (see [`epoch_class`]).
    pub class: String,
    /// Unix milliseconds (chosen by the proposer).
    pub created_ms: u64,
    /// Objects whose data keys it wraps now.
    pub live: u64,
    /// When the first of its objects was deleted (cluster time): from then
    /// on the key must go within the shredding window.
    pub first_deletion_ms: Option<u64>,
    /// Takes no new objects; its objects are being moved to another epoch.
    pub retiring: bool,
    /// When it was destroyed (set in the record kept afterwards).
    pub destroyed_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_name_their_epoch_and_master_key_ids_none() {
        let id = epoch_key_id(0x0123_4567_89ab_cdef);
        assert_eq!(id, "e:0123456789abcdef");
        assert_eq!(epoch_of(&id), Some(0x0123_4567_89ab_cdef));
        assert_eq!(epoch_of("k1"), None);
        assert_eq!(epoch_of("e:12"), None);
        assert_eq!(epoch_of("e:zz23456789abcdef"), None);
    }

    #[test]
    fn objects_due_together_share_a_class() {
        let t = 1_000 * EXPIRE_WINDOW_MS;
        assert_eq!(epoch_class(Some(t + 5), 0), epoch_class(Some(t + 9_999), 7));
        assert_ne!(
            epoch_class(Some(t), 0),
            epoch_class(Some(t + EXPIRE_WINDOW_MS), 0)
        );
        assert_eq!(epoch_class(None, 5), epoch_class(None, KEEP_WINDOW_MS - 1));
        assert_ne!(epoch_class(None, 5), epoch_class(Some(5), 5));
    }
}
