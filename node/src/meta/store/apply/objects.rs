//! Objects and the uploads that make them.

use super::super::keys::*;
use super::super::{encode, MetaStore, StoreError};
use super::health::Tally;
use super::misrouted;
use crate::meta::Writes;
use crate::meta::{Command, MetaError};
use crate::meta::{ObjectManifest, ReceiptDue, Tombstone};
use tresor_client::receipt::ReceiptBody;

impl MetaStore {
    pub(super) fn apply_objects(
        &self,
        command: &Command,
        batch: &mut Writes,
    ) -> Result<Result<(), MetaError>, StoreError> {
        match command {
            Command::BeginUpload { upload } => {
                if self.tree().contains_key(upload_key(&upload.object_id))?
                    || self.tree().contains_key(object_id_key(&upload.object_id))?
                {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "object id {} is already in use",
                        upload.object_id
                    ))));
                }
                batch.insert(upload_key(&upload.object_id), encode(upload));
            }
            Command::TouchUpload {
                object_id,
                touched_ms,
            } => {
                let Some(mut upload) = self.upload(object_id)? else {
                    return Ok(Err(MetaError::FailedPrecondition(format!(
                        "upload {object_id} was aborted or expired"
                    ))));
                };
                upload.touched_ms = upload.touched_ms.max(*touched_ms);
                batch.insert(upload_key(object_id), encode(&upload));
            }
            Command::AbortUpload {
                object_id,
                audit,
                if_touched_ms,
            } => {
                if let Some(upload) = self.upload(object_id)? {
                    if if_touched_ms.is_some_and(|t| t != upload.touched_ms) {
                        return Ok(Err(MetaError::FailedPrecondition(format!(
                            "upload {object_id} made progress since; not aborted"
                        ))));
                    }
                    batch.remove(upload_key(object_id));
                    self.append_audit(audit.iter(), batch)?;
                } else if self.tree().contains_key(object_id_key(object_id))? {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "upload {object_id} was committed"
                    ))));
                } else {
                    return Ok(Err(MetaError::NotFound(format!(
                        "upload {object_id} is not open (aborted or expired already)"
                    ))));
                }
            }
            Command::CreateObject { manifest, audit } => {
                // The same object again: a proposal retried after its first
                // attempt committed. Say it succeeded, change nothing.
                if let Some(name) = self.tree().get(object_id_key(&manifest.object_id))? {
                    if *name == *object_name(&manifest.bucket, &manifest.key) {
                        return Ok(Ok(()));
                    }
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "object id {} is already in use",
                        manifest.object_id
                    ))));
                }
                let Some(bucket) = self.bucket(&manifest.bucket)? else {
                    return Ok(Err(MetaError::NotFound(format!(
                        "no bucket named {}",
                        manifest.bucket
                    ))));
                };
                let key = object_key(&manifest.bucket, &manifest.key);
                if self.tree().contains_key(&key)? {
                    return Ok(Err(MetaError::AlreadyExists(format!(
                        "{}/{} already exists (objects are immutable)",
                        manifest.bucket, manifest.key
                    ))));
                }
                if let Some(tomb) = self.tombstone(&manifest.bucket, &manifest.key)? {
                    return Ok(Err(tomb.refusal(&manifest.bucket, &manifest.key)));
                }
                // Only a live upload may commit: once aborted (by its
                // coordinator or by expiry) its shards may be deleted.
                let Some(upload) = self.upload(&manifest.object_id)? else {
                    return Ok(Err(MetaError::FailedPrecondition(format!(
                        "upload {} of {}/{} was aborted or expired; nothing was stored",
                        manifest.object_id, manifest.bucket, manifest.key
                    ))));
                };
                if let Some(refusal) = Self::session_refusal(&upload, manifest, audit.as_ref()) {
                    return Ok(Err(refusal));
                }
                if let Some(enc) = &manifest.encryption {
                    if let Some(refusal) = self.epoch_refusal(&enc.key.key_id, batch)? {
                        return Ok(Err(refusal));
                    }
                    let name = object_name(&manifest.bucket, &manifest.key);
                    self.epoch_gain(&enc.key.key_id, &manifest.object_id, &name, batch)?;
                }
                let name = object_name(&manifest.bucket, &manifest.key);
                batch.remove(upload_key(&manifest.object_id));
                batch.insert(object_id_key(&manifest.object_id), name.clone());
                // The retention is the bucket's policy at commit, from the
                // ingest time: whatever the proposer wrote is replaced.
                let mut stored = (**manifest).clone();
                stored.ingested_by = audit
                    .as_ref()
                    .map(|a| a.principal.clone())
                    .unwrap_or_default();
                stored.retention = match &bucket.retention {
                    Some(name) => self
                        .retention_policy(name)?
                        .map(|p| p.retention_from(manifest.created_ms)),
                    None => None,
                };
                if let Some(at) = stored.retention.as_ref().and_then(|r| r.delete_at_ms) {
                    batch.insert(expiry_key(at, &stored.object_id), name);
                }
                batch.insert(key, encode(&stored));
                let nodes = self.nodes_by_id()?;
                let mut tally = Tally::default();
                for (i, seg) in manifest.segments.iter().enumerate() {
                    let object = manifest.object_id;
                    self.index_segment(object, i as u32, &seg.shards, &nodes, &mut tally)?;
                }
                self.write_tally(tally, batch)?;
                self.append_audit(audit.iter(), batch)?;
            }
            Command::UpdateShards {
                bucket,
                key,
                object_id,
                segment,
                changes,
            } => {
                let k = object_key(bucket, key);
                let mut manifest = match self.same_object(bucket, key, object_id)? {
                    Ok(m) => m,
                    Err(e) => return Ok(Err(e)),
                };
                let Some(seg) = manifest.segments.get_mut(*segment as usize) else {
                    return Ok(Err(MetaError::InvalidArgument(format!(
                        "no segment {segment}"
                    ))));
                };
                for (index, expected, _) in changes {
                    match seg.shards.get(*index as usize) {
                        Some(current) if current == expected => {}
                        _ => {
                            return Ok(Err(MetaError::FailedPrecondition(format!(
                            "shard {index} of segment {segment} of {bucket}/{key} changed meanwhile"
                        ))))
                        }
                    }
                }
                let old = seg.shards.clone();
                for (index, _, new) in changes {
                    seg.shards[*index as usize] = new.clone();
                }
                let new = seg.shards.clone();
                let nodes = self.nodes_by_id()?;
                let mut tally = Tally::default();
                self.reindex_segment(*object_id, *segment, &old, &new, &nodes, &mut tally)?;
                self.write_tally(tally, batch)?;
                batch.insert(k, encode(&manifest));
            }
            Command::RewrapKeys { rewraps } => {
                for r in rewraps {
                    let k = object_key(&r.bucket, &r.key);
                    let Some(mut manifest) = self.get::<ObjectManifest>(&k)? else {
                        continue;
                    };
                    let Some(enc) = manifest.encryption.as_mut() else {
                        continue;
                    };
                    if manifest.object_id != r.object_id
                        || enc.key.key_id != r.from_key_id
                        || self.epoch_refusal(&r.wrapped.key_id, batch)?.is_some()
                    {
                        continue;
                    }
                    let name = object_name(&r.bucket, &r.key);
                    self.epoch_lose(&r.from_key_id, &r.object_id, None, batch)?;
                    self.epoch_gain(&r.wrapped.key_id, &r.object_id, &name, batch)?;
                    enc.key = r.wrapped.clone();
                    batch.insert(k, encode(&manifest));
                }
            }
            Command::DeleteObject {
                bucket,
                key,
                object_id,
                now_ms,
                expiry,
                audit,
            } => {
                let k = object_key(bucket, key);
                // The manifest holds the only copy of the wrapped data key:
                // removing it is what makes the shards unreadable.
                let Some(manifest) = self.get::<ObjectManifest>(&k)? else {
                    return Ok(Err(MetaError::NotFound(format!(
                        "no object {bucket}/{key}"
                    ))));
                };
                // A retried delete must not take a new object that took the
                // key meanwhile: it is gone, as far as it is concerned.
                if object_id.is_some_and(|id| id != manifest.object_id) {
                    return Ok(Err(MetaError::NotFound(format!(
                        "object {} of {bucket}/{key} is gone",
                        object_id.map(|id| id.to_string()).unwrap_or_default()
                    ))));
                }
                if let Some(refusal) = self.delete_refusal(&manifest, *now_ms)? {
                    return Ok(Err(refusal));
                }
                let due_at = manifest.retention.as_ref().and_then(|r| r.delete_at_ms);
                if *expiry && due_at.is_none_or(|at| at > *now_ms) {
                    return Ok(Err(MetaError::FailedPrecondition(format!(
                        "{bucket}/{key} is not due for deletion at {now_ms} (its retention \
                         changed meanwhile)"
                    ))));
                }
                let principal = audit.as_ref().map(|a| a.principal.clone());
                let audit_seq = match audit {
                    Some(_) => self.audit_head()?.0 + 1,
                    None => 0,
                };
                let gone = Removal {
                    now_ms: *now_ms,
                    principal,
                    expiry: *expiry,
                    audit_seq,
                };
                let mut tally = Tally::default();
                self.remove_object(&manifest, gone, &mut tally, batch)?;
                self.write_tally(tally, batch)?;
                self.append_audit(audit.iter(), batch)?;
            }
            Command::ExpireObjects { now_ms, objects } => {
                let mut tally = Tally::default();
                let mut records = Vec::new();
                let head = self.audit_head()?.0;
                for item in objects {
                    let Some(manifest) = self.object(&item.bucket, &item.key)? else {
                        continue;
                    };
                    let due = manifest.retention.as_ref().and_then(|r| r.delete_at_ms);
                    if manifest.object_id != item.object_id
                        || due.is_none_or(|at| at > *now_ms)
                        || self.delete_refusal(&manifest, *now_ms)?.is_some()
                    {
                        continue;
                    }
                    let gone = Removal {
                        now_ms: *now_ms,
                        principal: Some(item.audit.principal.clone()),
                        expiry: true,
                        audit_seq: head + 1 + records.len() as u64,
                    };
                    self.remove_object(&manifest, gone, &mut tally, batch)?;
                    records.push(&item.audit);
                }
                self.write_tally(tally, batch)?;
                self.append_audit(records.into_iter(), batch)?;
            }
            _ => return Ok(Err(misrouted("objects"))),
        }
        Ok(Ok(()))
    }
}

/// How an object goes: when, by whom, whether by expiry, and the seq of
/// the deletion's audit entry.
struct Removal {
    now_ms: u64,
    principal: Option<String>,
    expiry: bool,
    audit_seq: u64,
}

impl MetaStore {
    /// The manifest of `bucket/key` if it is still object `object_id`; a
    /// command about an object that is gone or replaced is refused.
    pub(super) fn same_object(
        &self,
        bucket: &str,
        key: &str,
        object_id: &crate::meta::ObjectId,
    ) -> Result<Result<ObjectManifest, MetaError>, StoreError> {
        let Some(manifest) = self.object(bucket, key)? else {
            return Ok(Err(MetaError::NotFound(format!(
                "no object {bucket}/{key}"
            ))));
        };
        if manifest.object_id != *object_id {
            return Ok(Err(MetaError::FailedPrecondition(format!(
                "{bucket}/{key} is another object now"
            ))));
        }
        Ok(Ok(manifest))
    }

    /// Removes `manifest`'s object into `batch`: its expiry index entry,
    /// its id, its manifest (the only copy of its wrapped data key) and its
    /// shards' index entries (counted in `tally`); leaves its tombstone and
    /// a receipt due.
    fn remove_object(
        &self,
        manifest: &ObjectManifest,
        gone: Removal,
        tally: &mut Tally,
        batch: &mut Writes,
    ) -> Result<(), StoreError> {
        let Removal {
            now_ms,
            principal,
            expiry,
            audit_seq,
        } = gone;
        let (bucket, key) = (&manifest.bucket, &manifest.key);
        let policy = manifest.retention.as_ref().map(|r| r.policy.clone());
        let deleted_by = principal.clone().unwrap_or_default();
        let mut holders: Vec<u64> = manifest
            .segments
            .iter()
            .flat_map(|s| s.shards.iter().filter_map(|l| l.node))
            .collect();
        holders.sort_unstable();
        holders.dedup();
        let due = ReceiptDue {
            body: ReceiptBody {
                version: 1,
                cluster_id: self.cluster_id()?.unwrap_or_default(),
                bucket: bucket.clone(),
                key: key.clone(),
                object_id: manifest.object_id.to_string(),
                size: manifest.size,
                sha256: manifest.sha256.clone(),
                ingested_ms: manifest.created_ms,
                ingested_by: manifest.ingested_by.clone(),
                deleted_ms: now_ms,
                reason: match (&policy, expiry) {
                    (Some(p), true) => format!("retention policy {p}"),
                    _ => format!("deleted by {deleted_by}"),
                },
                deleted_by,
                audit_seq,
                shard_files_removed: 0,
                holders_unreached: Vec::new(),
                data_key_removed: manifest.encryption.is_some(),
                key_epoch: manifest
                    .encryption
                    .as_ref()
                    .map(|e| e.key.key_id.clone())
                    .filter(|id| crate::meta::epoch_of(id).is_some()),
                key_destroyed_ms: None,
                issued_ms: 0,
            },
            holders,
        };
        batch.insert(receipt_due_key(&manifest.object_id), encode(&due));
        if let Some(enc) = &manifest.encryption {
            self.epoch_lose(&enc.key.key_id, &manifest.object_id, Some(now_ms), batch)?;
        }
        if let Some(at) = manifest.retention.as_ref().and_then(|r| r.delete_at_ms) {
            batch.remove(expiry_key(at, &manifest.object_id));
        }
        let tomb = Tombstone {
            object_id: manifest.object_id,
            sha256: manifest.sha256.clone(),
            deleted_ms: now_ms,
            principal: principal.unwrap_or_default(),
            policy: match expiry {
                true => manifest.retention.as_ref().map(|r| r.policy.clone()),
                false => None,
            },
            audit_seq,
        };
        batch.insert(tombstone_key(bucket, key), encode(&tomb));
        batch.remove(object_id_key(&manifest.object_id));
        batch.remove(object_key(bucket, key));
        for (i, seg) in manifest.segments.iter().enumerate() {
            let object = manifest.object_id;
            self.unindex_segment(object, i as u32, &seg.shards, tally)?;
        }
        Ok(())
    }
}
