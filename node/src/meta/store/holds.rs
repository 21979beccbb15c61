//! Reads of retention policies and legal holds.

use super::keys::*;
use super::{MetaStore, StoreError};
use crate::meta::retention::MAX_PREFIX_HOLDS_PER_BUCKET;
use crate::meta::{Hold, HoldTarget, RetentionPolicy};

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
        let start = match after {
            Some((c, b, t)) => {
                let mut k = hold_key(c, b, t);
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for kv in self.tree().range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(&prefix) || out.len() >= limit {
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
