//! Reads of retention policies and legal holds.

use super::keys::*;
use super::{MetaStore, StoreError};
use crate::meta::retention::MAX_PREFIX_HOLDS_PER_BUCKET;
use crate::meta::{Hold, HoldTarget, ObjectId, RetentionPolicy, Tombstone};

/// An object its retention makes due, from the expiry index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueObject {
    /// When it became due, Unix milliseconds.
    pub delete_at_ms: u64,
    /// The object.
    pub object_id: ObjectId,
    /// Its bucket.
    pub bucket: String,
    /// Its key.
    pub key: String,
}

impl DueObject {
    /// Where the next page of due objects starts.
    pub fn cursor(&self) -> (u64, ObjectId) {
        (self.delete_at_ms, self.object_id)
    }
}

/// Which holds a listing shows.
#[derive(Debug, Clone, Default)]
pub struct HoldFilter {
    /// Only this case's.
    pub case_id: Option<String>,
    /// Only those in this bucket.
    pub bucket: Option<String>,
}

impl MetaStore {
    /// One retention policy.
    pub fn retention_policy(&self, name: &str) -> Result<Option<RetentionPolicy>, StoreError> {
        self.get(&retention_key(name))
    }

    /// Every retention policy, in name order (policies are few: an
    /// operator creates them by hand).
    pub fn retention_policies(&self) -> Result<Vec<RetentionPolicy>, StoreError> {
        self.scan(RETENTION_PREFIX)
    }

    /// Up to `limit` objects due for deletion at `now_ms` (their
    /// `delete_at` has passed), earliest first, after `after` (a cursor from
    /// [`DueObject::cursor`]). Reads the time-ordered index: never more
    /// entries than it returns.
    pub fn due_objects(
        &self,
        now_ms: u64,
        after: Option<(u64, ObjectId)>,
        limit: usize,
    ) -> Result<Vec<DueObject>, StoreError> {
        let start = match after {
            Some((at, id)) => {
                let mut k = expiry_key(at, &id);
                k.push(0);
                k
            }
            None => EXPIRY_PREFIX.to_vec(),
        };
        let end = expiry_key(now_ms.saturating_add(1), &ObjectId([0; 16]));
        let mut out = Vec::new();
        for kv in self.tree().range(start..end).take(limit) {
            let (k, v) = kv?;
            let Some((delete_at_ms, object_id)) = expiry_entry(&k) else {
                return Err(StoreError::BadIndex(format!("expiry key {k:?}")));
            };
            let mut parts = v.splitn(2, |b| *b == 0);
            let (Some(bucket), Some(key)) = (parts.next(), parts.next()) else {
                return Err(StoreError::BadIndex(format!("expiry value {v:?}")));
            };
            out.push(DueObject {
                delete_at_ms,
                object_id,
                bucket: String::from_utf8_lossy(bucket).into_owned(),
                key: String::from_utf8_lossy(key).into_owned(),
            });
        }
        Ok(out)
    }

    /// The tombstone of the object deleted under `bucket/key`, if one was.
    pub fn tombstone(&self, bucket: &str, key: &str) -> Result<Option<Tombstone>, StoreError> {
        self.get(&tombstone_key(bucket, key))
    }

    /// One hold.
    pub fn hold(
        &self,
        case_id: &str,
        bucket: &str,
        target: &HoldTarget,
    ) -> Result<Option<Hold>, StoreError> {
        self.get(&hold_key(case_id, bucket, target))
    }

    /// The holds covering `bucket/key`: its key holds and the bucket's
    /// prefix holds that match (at most
    /// [`MAX_PREFIX_HOLDS_PER_BUCKET`] of those are read).
    pub fn holds_on(&self, bucket: &str, key: &str) -> Result<Vec<Hold>, StoreError> {
        let mut found = Vec::new();
        let by_key = key_holds_prefix(bucket, key);
        for kv in self.tree().scan_prefix(&by_key) {
            let (k, _) = kv?;
            let case = String::from_utf8_lossy(&k[by_key.len()..]).into_owned();
            let target = HoldTarget::Key(key.into());
            found.extend(self.hold(&case, bucket, &target)?);
        }
        let by_prefix = prefix_holds_prefix(bucket);
        for kv in self
            .tree()
            .scan_prefix(&by_prefix)
            .take(MAX_PREFIX_HOLDS_PER_BUCKET)
        {
            let (k, _) = kv?;
            let rest = &k[by_prefix.len()..];
            let Some(split) = rest.iter().rposition(|b| *b == 0) else {
                continue;
            };
            let prefix = String::from_utf8_lossy(&rest[..split]).into_owned();
            if !key.starts_with(prefix.as_str()) {
                continue;
            }
            let case = String::from_utf8_lossy(&rest[split + 1..]).into_owned();
            found.extend(self.hold(&case, bucket, &HoldTarget::Prefix(prefix))?);
        }
        Ok(found)
    }

    /// How many prefix holds `bucket` has, counting at most `limit`.
    pub(super) fn prefix_holds(&self, bucket: &str, limit: usize) -> Result<usize, StoreError> {
        let mut n = 0;
        for kv in self
            .tree()
            .scan_prefix(prefix_holds_prefix(bucket))
            .take(limit)
        {
            kv?;
            n += 1;
        }
        Ok(n)
    }

    /// Up to `limit` holds matching `filter`, ordered by case, bucket and
    /// target, starting after the hold `after` (as `(case, bucket, target)`).
    pub fn holds(
        &self,
        filter: &HoldFilter,
        after: Option<(&str, &str, &HoldTarget)>,
        limit: usize,
    ) -> Result<Vec<Hold>, StoreError> {
        let prefix = match &filter.case_id {
            Some(case) => case_holds_prefix(case),
            None => HOLD_PREFIX.to_vec(),
        };
        let after = after.map(|(c, b, t)| hold_key(c, b, t));
        let mut out = Vec::new();
        for kv in self.range_after(&prefix, after) {
            let (k, v) = kv?;
            if out.len() >= limit {
                break;
            }
            let hold: Hold = super::decode(&k, &v)?;
            if filter.bucket.as_ref().is_none_or(|b| *b == hold.bucket) {
                out.push(hold);
            }
        }
        Ok(out)
    }
}
