//! Retention policies, bucket defaults, extensions and legal holds.

use super::super::keys::*;
use super::super::{encode, MetaStore, StoreError};
use super::misrouted;
use crate::meta::retention::MAX_PREFIX_HOLDS_PER_BUCKET;
use crate::meta::Writes;
use crate::meta::{Command, HoldTarget, MetaError, ObjectManifest, ReceiptDue};

impl MetaStore {
    pub(super) fn apply_retention(
        &self,
        command: &Command,
        batch: &mut Writes,
    ) -> Result<Result<(), MetaError>, StoreError> {
        match command {
            Command::RecordReceipts { receipts } => {
                for r in receipts {
                    let due_key = receipt_due_key(&r.object_id);
                    let Some(due) = self.get::<ReceiptDue>(&due_key)? else {
                        continue;
                    };
                    batch.remove(due_key);
                    batch.insert(
                        receipt_key(&due.body.bucket, &due.body.key),
                        r.signed.as_bytes(),
                    );
                }
            }
            Command::CreateRetention { policy } => {
                if let Err(e) = policy.validate() {
                    return Ok(Err(e));
                }
                if let Some(existing) = self.retention_policy(&policy.name)? {
                    // A retried proposal whose first attempt committed.
                    if existing == *policy {
                        return Ok(Ok(()));
                    }
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "retention policy {} already exists (policies never change)",
                        policy.name
                    ))));
                }
                batch.insert(retention_key(&policy.name), encode(policy));
            }
            Command::SetBucketRetention { bucket, policy } => {
                let Some(mut b) = self.bucket(bucket)? else {
                    return Ok(Err(MetaError::NotFound(format!(
                        "no bucket named {bucket}"
                    ))));
                };
                if let Some(name) = policy {
                    if self.retention_policy(name)?.is_none() {
                        return Ok(Err(MetaError::NotFound(format!(
                            "no retention policy named {name}"
                        ))));
                    }
                }
                b.retention = policy.clone();
                batch.insert(bucket_key(bucket), encode(&b));
            }
            Command::ExtendRetention {
                bucket,
                key,
                object_id,
                policy,
            } => {
                let k = object_key(bucket, key);
                let mut manifest = match self.same_object(bucket, key, object_id)? {
                    Ok(m) => m,
                    Err(e) => return Ok(Err(e)),
                };
                let Some(p) = self.retention_policy(policy)? else {
                    return Ok(Err(MetaError::NotFound(format!(
                        "no retention policy named {policy}"
                    ))));
                };
                let base = manifest.created_ms;
                let new = p.retention_from(base);
                if let Some(old) = &manifest.retention {
                    if !new.at_least(old) {
                        return Ok(Err(MetaError::FailedPrecondition(format!(
                            "policy {policy} would keep {bucket}/{key} for less time than \
                             its policy {}: retention is only ever extended",
                            old.policy
                        ))));
                    }
                }
                let old_due = manifest.retention.as_ref().and_then(|r| r.delete_at_ms);
                if let Some(at) = old_due {
                    batch.remove(expiry_key(at, object_id));
                }
                if let Some(at) = new.delete_at_ms {
                    batch.insert(expiry_key(at, object_id), object_name(bucket, key));
                }
                manifest.retention = Some(new);
                batch.insert(k, encode(&manifest));
            }
            Command::PlaceHold { hold } => {
                if let Err(e) = crate::meta::retention::validate_hold(hold) {
                    return Ok(Err(e));
                }
                if self.bucket(&hold.bucket)?.is_none() {
                    return Ok(Err(MetaError::NotFound(format!(
                        "no bucket named {}",
                        hold.bucket
                    ))));
                }
                if let Some(existing) = self.hold(&hold.case_id, &hold.bucket, &hold.target)? {
                    if existing == *hold {
                        return Ok(Ok(()));
                    }
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "case {} already holds {} in {}",
                        hold.case_id,
                        hold.target.describe(),
                        hold.bucket
                    ))));
                }
                if matches!(hold.target, HoldTarget::Prefix(_))
                    && self.prefix_holds(&hold.bucket, MAX_PREFIX_HOLDS_PER_BUCKET)?
                        >= MAX_PREFIX_HOLDS_PER_BUCKET
                {
                    return Ok(Err(MetaError::FailedPrecondition(format!(
                        "bucket {} has {MAX_PREFIX_HOLDS_PER_BUCKET} prefix holds, the most \
                         it may have: hold keys, or release a prefix hold first",
                        hold.bucket
                    ))));
                }
                batch.insert(
                    hold_key(&hold.case_id, &hold.bucket, &hold.target),
                    encode(hold),
                );
                batch.insert(
                    hold_index_key(&hold.case_id, &hold.bucket, &hold.target),
                    &[][..],
                );
            }
            Command::ReleaseHold {
                case_id,
                bucket,
                target,
            } => {
                if self.hold(case_id, bucket, target)?.is_none() {
                    return Ok(Err(MetaError::NotFound(format!(
                        "case {case_id} holds no {} in {bucket}",
                        target.describe()
                    ))));
                }
                batch.remove(hold_key(case_id, bucket, target));
                batch.remove(hold_index_key(case_id, bucket, target));
            }
            _ => return Ok(Err(misrouted("retention"))),
        }
        Ok(Ok(()))
    }

    /// Why `manifest` may not be deleted at `now_ms`, if it may not: a hold
    /// covers it, or its minimum retention has not passed.
    pub(super) fn delete_refusal(
        &self,
        manifest: &ObjectManifest,
        now_ms: u64,
    ) -> Result<Option<MetaError>, StoreError> {
        let holds = self.holds_on(&manifest.bucket, &manifest.key)?;
        if !holds.is_empty() {
            let cases: Vec<&str> = holds.iter().map(|h| h.case_id.as_str()).collect();
            return Ok(Some(MetaError::FailedPrecondition(format!(
                "{}/{} is under legal hold by case {}: it cannot be deleted until \
                 every hold on it is released",
                manifest.bucket,
                manifest.key,
                cases.join(", ")
            ))));
        }
        if let Some(r) = &manifest.retention {
            if let Some(until) = r.keep_until_ms.filter(|u| now_ms < *u) {
                return Ok(Some(MetaError::FailedPrecondition(format!(
                    "{}/{} is kept until {} (Unix ms) by retention policy {}: it cannot be \
                     deleted before then",
                    manifest.bucket, manifest.key, until, r.policy
                ))));
            }
        }
        Ok(None)
    }
}
