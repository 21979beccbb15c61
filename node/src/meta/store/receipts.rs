//! Reads of deletion receipts: those still to be signed, and those
//! recorded.

use super::keys::*;
use super::{MetaStore, StoreError};
use crate::meta::{ObjectId, ReceiptDue};

/// A recorded receipt and the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceipt {
    /// The deleted object's bucket.
    pub bucket: String,
    /// Its key.
    pub key: String,
    /// The JSON text of its `SignedReceipt`.
    pub signed: String,
}

impl MetaStore {
    /// Up to `limit` deletions whose receipts are due, in object id order
    /// after `after`.
    pub fn receipts_due(
        &self,
        after: Option<&ObjectId>,
        limit: usize,
    ) -> Result<Vec<(ObjectId, ReceiptDue)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.range_after(RECEIPT_DUE_PREFIX, after.map(receipt_due_key)) {
            let (k, v) = kv?;
            if out.len() >= limit {
                break;
            }
            let Ok(id) = <[u8; 16]>::try_from(&k[RECEIPT_DUE_PREFIX.len()..]) else {
                continue;
            };
            out.push((ObjectId(id), super::decode(&k, &v)?));
        }
        Ok(out)
    }

    /// How many receipts are due, counting at most `limit`.
    pub fn receipts_due_count(&self, limit: usize) -> Result<usize, StoreError> {
        let mut n = 0;
        for kv in self.tree().scan_prefix(RECEIPT_DUE_PREFIX).take(limit) {
            kv?;
            n += 1;
        }
        Ok(n)
    }

    /// The receipt of the object deleted at `bucket/key`.
    pub fn receipt(&self, bucket: &str, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tree()
            .get(receipt_key(bucket, key))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Up to `limit` receipts, by bucket and key: of `bucket` under
    /// `prefix` if a bucket is given (else of every bucket), after
    /// `after` (a bucket and key).
    pub fn receipts(
        &self,
        bucket: Option<&str>,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<StoredReceipt>, StoreError> {
        let scope = match bucket {
            Some(b) => receipt_key(b, prefix),
            None => RECEIPT_PREFIX.to_vec(),
        };
        let start = match after {
            Some((b, k)) => {
                let mut k = receipt_key(b, k);
                k.push(0);
                k.max(scope.clone())
            }
            None => scope.clone(),
        };
        let mut out = Vec::new();
        for kv in self.tree().range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(&scope) || out.len() >= limit {
                break;
            }
            let name = &k[RECEIPT_PREFIX.len()..];
            let Some(split) = name.iter().position(|b| *b == 0) else {
                continue;
            };
            out.push(StoredReceipt {
                bucket: String::from_utf8_lossy(&name[..split]).into_owned(),
                key: String::from_utf8_lossy(&name[split + 1..]).into_owned(),
                signed: String::from_utf8_lossy(&v).into_owned(),
            });
        }
        Ok(out)
    }
}
