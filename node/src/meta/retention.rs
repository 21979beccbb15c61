//! Evidence lifecycle: retention policies (how long footage must be kept
//! and when it must go), the retention fixed in each object at ingest, and
//! legal holds that keep objects past any policy.

use serde::{Deserialize, Serialize};

use super::MetaError;

/// A named rule for how long objects are kept, assigned to buckets as
/// their default. Policies are never changed or removed once created: the
/// retention of every object that used one was computed from it.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// See [`validate_policy_name`].
    pub name: String,
    /// No one may delete an object before this long after its ingest.
    pub keep_min_ms: Option<u64>,
    /// Objects are deleted this long after their ingest (unless held).
    pub delete_after_ms: Option<u64>,
    /// Unix milliseconds (chosen by the proposer).
    pub created_ms: u64,
}

impl RetentionPolicy {
    /// A policy keeps at least as long as it says it must: `delete_after`
    /// before `keep_min` would contradict itself.
    pub fn validate(&self) -> Result<(), MetaError> {
        validate_policy_name(&self.name)?;
        if let (Some(min), Some(after)) = (self.keep_min_ms, self.delete_after_ms) {
            if after < min {
                return Err(MetaError::InvalidArgument(format!(
                    "policy {}: delete-after ({}) is shorter than keep-min ({})",
                    self.name,
                    format_duration(after),
                    format_duration(min)
                )));
            }
        }
        Ok(())
    }

    /// The retention of an object ingested at `base_ms` under this policy.
    pub fn retention_from(&self, base_ms: u64) -> ObjectRetention {
        ObjectRetention {
            policy: self.name.clone(),
            keep_until_ms: self.keep_min_ms.map(|d| base_ms.saturating_add(d)),
            delete_at_ms: self.delete_after_ms.map(|d| base_ms.saturating_add(d)),
        }
    }
}

/// The retention of one object, fixed when it is committed and only ever
/// lengthened afterwards.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRetention {
    /// The policy it was computed from.
    pub policy: String,
    /// No delete before this (Unix milliseconds); `None`: no minimum.
    pub keep_until_ms: Option<u64>,
    /// Due for deletion at this time (Unix milliseconds); `None`: kept
    /// until someone deletes it.
    pub delete_at_ms: Option<u64>,
}

impl ObjectRetention {
    /// Whether `self` keeps the object at least as long as `old` in both
    /// respects: a minimum at least as late, a deletion at least as late
    /// (no deletion is the latest).
    pub fn at_least(&self, old: &ObjectRetention) -> bool {
        let keep_ok = match (old.keep_until_ms, self.keep_until_ms) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(o), Some(n)) => n >= o,
        };
        let delete_ok = match (old.delete_at_ms, self.delete_at_ms) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(o), Some(n)) => n >= o,
        };
        keep_ok && delete_ok
    }
}

/// What a hold covers in its bucket.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HoldTarget {
    /// One key.
    Key(String),
    /// Every key starting with this, including keys uploaded later.
    Prefix(String),
}

impl HoldTarget {
    /// Whether the hold covers `key`.
    pub fn covers(&self, key: &str) -> bool {
        match self {
            HoldTarget::Key(k) => k == key,
            HoldTarget::Prefix(p) => key.starts_with(p.as_str()),
        }
    }

    /// `key K` or `prefix P`, for messages.
    pub fn describe(&self) -> String {
        match self {
            HoldTarget::Key(k) => format!("key {k:?}"),
            HoldTarget::Prefix(p) => format!("prefix {p:?}"),
        }
    }
}

/// A legal hold: while it exists, no object it covers expires or can be
/// deleted, whatever its retention.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The case it is for (see [`validate_case_id`]).
    pub case_id: String,
    /// The bucket.
    pub bucket: String,
    /// What it covers there.
    pub target: HoldTarget,
    /// Why (free text, at most [`MAX_REASON_BYTES`]).
    pub reason: String,
    /// Who placed it.
    pub placed_by: String,
    /// Unix milliseconds (chosen by the proposer).
    pub placed_ms: u64,
}

/// A deletion whose receipt is still to be signed: what the receipt will
/// say (the shard files removed and the time of signing are filled in
/// then), and the nodes that held its shard files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptDue {
    /// The receipt's body as the deletion's commit knows it.
    pub body: tresor_client::receipt::ReceiptBody,
    /// Nodes the manifest placed shard files on.
    pub holders: Vec<u64>,
}

/// What stays of a deleted object under its key: the key is never used
/// again (evidence is not replaced under a name it was known by), and who
/// deleted what, when, stays on record in the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The object deleted.
    pub object_id: crate::ids::ObjectId,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// Cluster time of the delete, Unix milliseconds.
    pub deleted_ms: u64,
    /// Who deleted it (`system:retention` for an expiry).
    pub principal: String,
    /// The retention policy it expired by, for an expiry.
    pub policy: Option<String>,
    /// The sequence number of the delete's audit entry (0: none).
    #[serde(default)]
    pub audit_seq: u64,
}

impl Tombstone {
    /// The refusal of a new object under the key.
    pub fn refusal(&self, bucket: &str, key: &str) -> MetaError {
        MetaError::AlreadyExists(format!(
            "{bucket}/{key} held object {} until {} deleted it at {} (Unix ms): keys of \
             deleted objects are never used again; the deletion's receipt: \
             `tresor-node receipts get {bucket}/{key}`",
            self.object_id, self.principal, self.deleted_ms
        ))
    }
}

/// Longest hold reason.
pub const MAX_REASON_BYTES: usize = 1024;
/// Most prefix holds one bucket may have: every delete and expiry checks
/// them all.
pub const MAX_PREFIX_HOLDS_PER_BUCKET: usize = 1000;

/// Policy names: 1–64 characters of `a-z 0-9 - _ .`, starting with a
/// letter or digit.
pub fn validate_policy_name(name: &str) -> Result<(), MetaError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        });
    if ok {
        Ok(())
    } else {
        Err(MetaError::InvalidArgument(format!(
            "invalid policy name {name:?}: 1 to 64 characters of a-z, 0-9, '-', '_' and '.', \
             starting with a letter or digit"
        )))
    }
}

/// Case ids: 1–128 printable ASCII characters without spaces (case
/// numbers such as `2026/4711-K` or `BPOL:ST-123`).
pub fn validate_case_id(id: &str) -> Result<(), MetaError> {
    if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(MetaError::InvalidArgument(format!(
            "invalid case id {id:?}: 1 to 128 printable ASCII characters without spaces"
        )))
    }
}

/// Checks a hold before it is proposed.
pub fn validate_hold(hold: &Hold) -> Result<(), MetaError> {
    validate_case_id(&hold.case_id)?;
    super::validate_bucket_name(&hold.bucket)?;
    match &hold.target {
        HoldTarget::Key(k) if k.is_empty() => {
            return Err(MetaError::InvalidArgument("a key hold needs a key".into()))
        }
        HoldTarget::Key(k) | HoldTarget::Prefix(k) if k.contains('\0') || k.len() > 1024 => {
            return Err(MetaError::InvalidArgument(
                "a hold's key or prefix is at most 1024 bytes without NUL".into(),
            ))
        }
        _ => {}
    }
    if hold.reason.trim().is_empty() || hold.reason.len() > MAX_REASON_BYTES {
        return Err(MetaError::InvalidArgument(format!(
            "a hold needs a reason of 1 to {MAX_REASON_BYTES} bytes"
        )));
    }
    Ok(())
}

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// `30d`, `10y`, `12h`, `20s`…: a number and one unit of `y` (365 days),
/// `w`, `d`, `h`, `m`, `s`, `ms`. Milliseconds.
pub fn parse_duration(text: &str) -> Result<u64, MetaError> {
    let bad = || {
        MetaError::InvalidArgument(format!(
            "invalid duration {text:?}: a number and a unit (y, w, d, h, m, s, ms), e.g. 30d"
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let (_, scale) = UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(bad)?;
    n.checked_mul(*scale).ok_or_else(bad)
}

/// The shortest exact spelling of `ms` in the units [`parse_duration`]
/// reads.
pub fn format_duration(ms: u64) -> String {
    for (unit, scale) in UNITS {
        if ms >= scale && ms.is_multiple_of(scale) {
            return format!("{}{unit}", ms / scale);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        for (text, ms) in [
            ("30d", 30 * 86_400_000),
            ("10y", 10 * 365 * 86_400_000),
            ("20s", 20_000),
            ("90m", 5_400_000),
            ("1500ms", 1_500),
        ] {
            assert_eq!(parse_duration(text), Ok(ms), "{text}");
        }
        assert_eq!(format_duration(30 * 86_400_000), "30d");
        assert_eq!(format_duration(90 * 60_000), "90m");
        assert_eq!(format_duration(1_500), "1500ms");
        for bad in ["", "30", "d", "30x", "-1d", "1.5d", "99999999999999999999y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_longer_retention_is_at_least() {
        let r = |k: Option<u64>, d: Option<u64>| ObjectRetention {
            policy: "p".into(),
            keep_until_ms: k,
            delete_at_ms: d,
        };
        let old = r(Some(10), Some(20));
        assert!(r(Some(10), Some(20)).at_least(&old));
        assert!(r(Some(11), None).at_least(&old));
        assert!(!r(Some(9), Some(30)).at_least(&old), "a shorter minimum");
        assert!(!r(None, Some(30)).at_least(&old), "no minimum");
        assert!(!r(Some(10), Some(19)).at_least(&old), "an earlier deletion");
        assert!(!r(Some(10), Some(19)).at_least(&r(None, None)));
        assert!(r(None, None).at_least(&r(None, None)));
    }

    #[test]
    fn policies_must_not_contradict_themselves() {
        let p = |min, after| RetentionPolicy {
            name: "bodycam-raw".into(),
            keep_min_ms: min,
            delete_after_ms: after,
            created_ms: 0,
        };
        assert!(p(Some(10), Some(10)).validate().is_ok());
        assert!(p(None, Some(10)).validate().is_ok());
        assert!(p(Some(11), Some(10)).validate().is_err());
        let r = p(Some(5), Some(10)).retention_from(100);
        assert_eq!((r.keep_until_ms, r.delete_at_ms), (Some(105), Some(110)));
    }

    #[test]
    fn holds_cover_their_keys() {
        assert!(HoldTarget::Key("a/b".into()).covers("a/b"));
        assert!(!HoldTarget::Key("a/b".into()).covers("a/bc"));
        assert!(HoldTarget::Prefix("a/".into()).covers("a/bc"));
        assert!(!HoldTarget::Prefix("a/".into()).covers("b/a/"));
        assert!(validate_case_id("2026/4711-K").is_ok());
        assert!(validate_case_id("has space").is_err());
        assert!(validate_policy_name("bodycam-raw").is_ok());
        assert!(validate_policy_name("Bodycam").is_err());
    }
}
