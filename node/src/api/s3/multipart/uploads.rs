//! What an S3 multipart upload is made of in the store: its record (the
//! empty object `<id>/upload`, whose metadata names its target and whose
//! ingesting principal owns it) and its parts (`<id>/p<number>-<random>`,
//! the latest copy of a number counting), and the walks over them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use md5::Digest as _;
use s3s::{s3_error, S3Error, S3Result};
use tonic::Status;

use super::super::errors::{s3_error, Missing};
use super::super::listing::past;
use super::super::lock::LockHeaders;
use super::super::S3Gateway;
use super::MULTIPART_BUCKET;
use crate::api::auth::Caller;
use crate::api::object_status;
use crate::meta::{now_ms, ObjectManifest};
use crate::objects::ObjectError;
use crate::raft::CaughtUp;

/// Parts listed per page of the object layer.
pub(super) const PAGE: usize = 1000;
/// Uploads a sweep looks at, so a sweep stays short.
pub(super) const SWEEP: usize = 16;

/// Metadata names of an upload's record (the user's metadata goes in with
/// [`USER_META`] before its names).
pub(super) const TARGET_BUCKET: &str = "tresor-bucket";
pub(super) const TARGET_KEY: &str = "tresor-key";
pub(super) const CONTENT_TYPE: &str = "tresor-content-type";
pub(super) const USER_META: &str = "m-";

/// One stored part, its latest copy.
#[derive(Debug, Clone)]
pub(super) struct StoredPart {
    pub(super) number: i32,
    pub(super) key: String,
    pub(super) size: u64,
    pub(super) md5: String,
    pub(super) created_ms: u64,
}

/// An upload in progress, from its record.
pub(super) struct Upload {
    pub(super) bucket: String,
    pub(super) key: String,
    pub(super) content_type: String,
    pub(super) metadata: BTreeMap<String, String>,
    pub(super) owner: String,
    pub(super) initiated_ms: u64,
    /// The lock the object gets once complete.
    pub(super) lock: LockHeaders,
}

pub(super) fn valid_upload_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

pub(super) fn record_key(id: &str) -> String {
    format!("{id}/upload")
}

pub(super) fn part_prefix(id: &str) -> String {
    format!("{id}/p")
}

pub(super) fn no_such_upload(id: &str) -> S3Error {
    s3_error!(
        NoSuchUpload,
        "no multipart upload {id} (completed, aborted or expired?)"
    )
}

impl S3Gateway {
    /// The upload `id`, if it exists and is for `bucket`/`key`.
    pub(super) fn upload(
        &self,
        caught_up: CaughtUp,
        id: &str,
        target: (&str, &str),
    ) -> S3Result<Upload> {
        if !valid_upload_id(id) {
            return Err(no_such_upload(id));
        }
        let record = match self
            .plane
            .manifest(caught_up, MULTIPART_BUCKET, &record_key(id))
        {
            Ok(m) => m,
            Err(ObjectError::NotFound(_)) => return Err(no_such_upload(id)),
            Err(e) => return Err(s3_error(object_status(e), Missing::Bucket)),
        };
        let upload = upload_of(&record);
        if (upload.bucket.as_str(), upload.key.as_str()) != target {
            return Err(no_such_upload(id));
        }
        Ok(upload)
    }

    /// The latest copy of every part of upload `id`, by number.
    pub(super) fn stored_parts(
        &self,
        caught_up: CaughtUp,
        id: &str,
    ) -> Result<(BTreeMap<i32, StoredPart>, Vec<String>), ObjectError> {
        let prefix = part_prefix(id);
        let mut latest: BTreeMap<i32, StoredPart> = BTreeMap::new();
        let mut every = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, next) =
                self.plane
                    .list(caught_up, MULTIPART_BUCKET, &prefix, after.as_deref(), PAGE)?;
            for m in &page {
                every.push(m.key.clone());
                let number = m.key[prefix.len()..]
                    .split('-')
                    .next()
                    .and_then(|n| n.parse::<i32>().ok());
                let Some(number) = number else { continue };
                let part = StoredPart {
                    number,
                    key: m.key.clone(),
                    size: m.size,
                    md5: m.etag.clone(),
                    created_ms: m.created_ms,
                };
                let newer = latest
                    .get(&number)
                    .is_none_or(|p| (p.created_ms, &p.key) < (part.created_ms, &part.key));
                if newer {
                    latest.insert(number, part);
                }
            }
            match next {
                Some(n) => after = Some(n),
                None => return Ok((latest, every)),
            }
        }
    }

    /// Whether `caller` may carry on upload `upload`: its owner only.
    pub(super) fn owns(&self, caller: &Caller, upload: &Upload, id: &str) -> S3Result<()> {
        if caller.name() == upload.owner || upload.owner.is_empty() {
            return Ok(());
        }
        Err(s3_error!(
            AccessDenied,
            "multipart upload {id} belongs to {}, not {}",
            upload.owner,
            caller.name()
        ))
    }

    /// Makes the bucket of parts on first use. The answer is proof that
    /// this node's state holds it: a bucket just made is committed on the
    /// leader, and this node catches up before it writes into it.
    pub(super) async fn ensure_multipart_bucket(
        &self,
        caught_up: CaughtUp,
    ) -> Result<CaughtUp, Status> {
        let cluster = self.plane.cluster();
        if matches!(cluster.meta().bucket(MULTIPART_BUCKET), Ok(Some(_))) {
            return Ok(caught_up);
        }
        let s3 = &cluster.config().s3;
        match cluster
            .create_bucket(MULTIPART_BUCKET, s3.bucket_data, s3.bucket_parity, None)
            .await
        {
            Ok(_) => {}
            Err(crate::raft::ClusterError::Meta(crate::meta::MetaError::AlreadyExists(_))) => {}
            Err(e) => return Err(crate::api::to_status(e)),
        }
        cluster
            .linearizable_read()
            .await
            .map_err(crate::api::to_status)
    }

    /// Deletes every part of upload `id`, then its record.
    pub(super) async fn discard(
        &self,
        caught_up: CaughtUp,
        id: &str,
        principal: &str,
    ) -> Result<(), ObjectError> {
        let (_, every) = self.stored_parts(caught_up, id)?;
        for key in every.iter().chain(std::iter::once(&record_key(id))) {
            match self
                .plane
                .delete(caught_up, MULTIPART_BUCKET, key, principal)
                .await
            {
                Ok(()) | Err(ObjectError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Up to `max` uploads in progress that `keep` accepts, in upload id
    /// order after `after`; and whether more follow. Walks the records a
    /// page at a time (one common prefix per upload).
    pub(super) fn upload_records(
        &self,
        caught_up: CaughtUp,
        after: Option<&str>,
        max: usize,
        keep: impl Fn(&Upload) -> bool,
    ) -> Result<(Vec<(String, Upload)>, bool), ObjectError> {
        let mut found = Vec::new();
        let mut after = after.map(str::to_string);
        if matches!(
            self.plane.cluster().meta().bucket(MULTIPART_BUCKET),
            Ok(None)
        ) {
            return Ok((found, false));
        }
        loop {
            let Some((id, record)) = self.next_upload(caught_up, after.as_deref())? else {
                return Ok((found, false));
            };
            after = Some(id.clone());
            // Parts left without their upload: a sweep takes them.
            let Some(record) = record else { continue };
            let upload = upload_of(&record);
            if !keep(&upload) {
                continue;
            }
            if found.len() == max {
                return Ok((found, true));
            }
            found.push((id, upload));
        }
    }

    /// The upload id after `after` (from the first, without) that has a
    /// record or parts, and its record if it has one: one key read past
    /// all of the previous upload's keys, one record read.
    fn next_upload(
        &self,
        caught_up: CaughtUp,
        after: Option<&str>,
    ) -> Result<Option<(String, Option<ObjectManifest>)>, ObjectError> {
        let from = after.map(|id| past(&format!("{id}/")));
        let (first, _) = self
            .plane
            .list(caught_up, MULTIPART_BUCKET, "", from.as_deref(), 1)?;
        let Some(first) = first.first() else {
            return Ok(None);
        };
        let id = first.key.split('/').next().unwrap_or_default().to_string();
        let record = match self
            .plane
            .manifest(caught_up, MULTIPART_BUCKET, &record_key(&id))
        {
            Ok(m) => Some(m),
            Err(ObjectError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(Some((id, record)))
    }

    /// Starts a sweep (unless one runs on this node): uploads left
    /// without a new part past the session expiry (`[healing]
    /// session_expiry_secs`) are aborted, and parts whose upload record is
    /// gone (one that landed while its upload completed) are deleted once
    /// as old. A sweep looks at [`SWEEP`] uploads, from where the last one
    /// stopped, so every upload is reached in turn.
    pub(super) fn spawn_sweep(&self, caught_up: CaughtUp) {
        if self.sweep.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.sweep(caught_up).await;
            this.sweep.running.store(false, Ordering::Release);
        });
    }

    async fn sweep(&self, caught_up: CaughtUp) {
        let expiry_ms = self.plane.cluster().config().healing.session_expiry_secs * 1000;
        let now = now_ms();
        let mut from = self
            .sweep
            .from
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        for _ in 0..SWEEP {
            let (id, record) = match self.next_upload(caught_up, from.as_deref()) {
                Ok(Some(next)) => next,
                // Past the last upload: the next sweep starts over.
                Ok(None) => {
                    from = None;
                    break;
                }
                Err(_) => break,
            };
            from = Some(id.clone());
            let Ok((parts, _)) = self.stored_parts(caught_up, &id) else {
                break;
            };
            let latest = parts
                .values()
                .map(|p| p.created_ms)
                .chain(record.iter().map(|r| r.created_ms))
                .max()
                .unwrap_or(0);
            if now.saturating_sub(latest) <= expiry_ms {
                continue;
            }
            let outcome = self.discard(caught_up, &id, "node:expiry").await;
            let outcome = outcome.map_err(object_status);
            match record.map(|r| upload_of(&r)) {
                Some(upload) => {
                    let object = (upload.bucket.as_str(), upload.key.as_str());
                    self.audit
                        .after(&upload.owner, "upload expire", object, "", &outcome)
                        .await;
                }
                None => tracing::info!(upload = id, "parts left without their upload deleted"),
            }
        }
        *self
            .sweep
            .from
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = from;
    }
}

/// Where the sweeps of a node's S3 port are.
#[derive(Debug, Default)]
pub struct Sweeps {
    running: AtomicBool,
    /// The upload id after which the next sweep starts.
    from: std::sync::Mutex<Option<String>>,
}

/// The upload described by its record `m`.
pub(super) fn upload_of(m: &ObjectManifest) -> Upload {
    let get = |name: &str| m.metadata.get(name).cloned().unwrap_or_default();
    Upload {
        bucket: get(TARGET_BUCKET),
        key: get(TARGET_KEY),
        content_type: get(CONTENT_TYPE),
        metadata: m
            .metadata
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(USER_META)
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect(),
        owner: m.ingested_by.clone(),
        initiated_ms: m.created_ms,
        lock: LockHeaders::saved(&m.metadata),
    }
}

/// S3's ETag of a multipart object: the MD5 of its parts' MD5s, a dash,
/// the number of parts.
pub(super) fn multipart_etag(parts: &[StoredPart]) -> S3Result<String> {
    let mut md5 = md5::Md5::new();
    for p in parts {
        let digest = hex::decode(&p.md5)
            .map_err(|_| s3_error!(InternalError, "part {} has no MD5 on record", p.number))?;
        md5.update(&digest);
    }
    Ok(format!(
        "{}-{}",
        hex::encode(<[u8; 16]>::from(md5.finalize())),
        parts.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_etag_of_a_multipart_object_is_the_md5_of_its_parts_md5s() {
        let part = |number: i32, bytes: &[u8]| StoredPart {
            number,
            key: String::new(),
            size: bytes.len() as u64,
            md5: hex::encode(md5::Md5::digest(bytes)),
            created_ms: 0,
        };
        let parts = [part(1, b"first part"), part(2, b"second")];
        let mut both = md5::Md5::digest(b"first part").to_vec();
        both.extend_from_slice(&md5::Md5::digest(b"second"));
        let want = format!("{}-2", hex::encode(md5::Md5::digest(&both)));
        assert_eq!(multipart_etag(&parts).expect("etag"), want);
    }

    #[test]
    fn upload_ids_are_32_lower_hex_digits() {
        assert!(valid_upload_id(&uuid::Uuid::new_v4().simple().to_string()));
        assert!(!valid_upload_id("../../etc"));
        assert!(!valid_upload_id(&"A".repeat(32)));
        assert!(!valid_upload_id(&"a".repeat(31)));
    }
}
