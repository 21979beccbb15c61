//! S3 multipart uploads: parts sent in any order, of any size, in
//! parallel, each durable when acknowledged; completed into one immutable
//! object exactly as a PutObject commits one.
//!
//! Each part is an ordinary object of the reserved bucket
//! [`MULTIPART_BUCKET`] (stored, encrypted and fsynced on enough nodes by
//! the same write path): `<upload id>/p<number>-<random>`, a part sent
//! again being a new object whose latest copy counts. The upload itself is
//! the empty object `<upload id>/upload`, whose metadata names the target
//! bucket, key, content type and metadata, and whose ingesting principal
//! owns the upload. Completing streams the chosen parts, in order, through
//! the write path into the target key (one manifest, the SHA-256 of the
//! whole object, a new data key), then deletes the parts; while it runs the
//! client is kept waiting with whitespace, as S3 does. This writes a
//! completed object's bytes twice; parts that become segments of the final
//! object in place are the next step (see the closing note of this work).
//!
//! Uploads left without progress past `[healing] session_expiry_secs` are
//! aborted by a sweep that CreateMultipartUpload and ListMultipartUploads
//! start in the background (one at a time per node).

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use tonic::Status;

use super::bodies::{checked_body, content_md5, Declared};
use super::buckets::timestamp;
use super::errors::{s3_error, Missing};
use super::lock::{lock_headers, LockHeaders};
use super::S3Gateway;
use crate::api::admission::Traffic;
use crate::api::auth::{Action, Caller};
use crate::api::object_status;
use crate::meta::ObjectManifest;
use crate::objects::{EtagRule, ObjectError, ObjectRange, ObjectStream, PutSpec};
use crate::raft::CaughtUp;

/// The bucket parts and uploads in progress live in (kept by the cluster:
/// nobody reads or writes it through the APIs).
pub const MULTIPART_BUCKET: &str = "tresor.multipart";

pub use uploads::Sweeps;

/// S3's limits on part numbers.
const MAX_PART: i32 = 10_000;
mod uploads;

use uploads::*;

/// `"<hex>"` → `<hex>`.
fn bare(etag: &ETag) -> &str {
    etag.value().trim_matches('"')
}

impl S3Gateway {
    pub(super) async fn create_multipart_upload_inner(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let started = Instant::now();
        let input = &req.input;
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let caller = self
            .caller(&req, Action::Put, Some(&bucket), &key, started)
            .await?;
        let lock = lock_headers!(input)?;
        self.may_lock(&req, (&bucket, &key), &lock).await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let result = self.begin(&caller, input, &lock, &id).await;
        // On record as the gRPC CreateUpload is.
        self.audit
            .after(caller.name(), "upload create", (&bucket, &key), "", &result)
            .await;
        result.map_err(|s| s3_error(s, self.missing_key(&bucket)))?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(bucket),
            key: Some(key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn begin(
        &self,
        caller: &Caller,
        input: &CreateMultipartUploadInput,
        lock: &LockHeaders,
        id: &str,
    ) -> Result<(), Status> {
        let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
        // The key must be free now (it is checked again at completion).
        match self.plane.manifest(caught_up, &input.bucket, &input.key) {
            Ok(_) => {
                return Err(Status::already_exists(format!(
                    "{}/{} already exists (objects are immutable)",
                    input.bucket, input.key
                )))
            }
            Err(ObjectError::NotFound(m)) if m.starts_with("no bucket") => {
                return Err(Status::not_found(m))
            }
            Err(ObjectError::NotFound(_)) => {}
            Err(e) => return Err(object_status(e)),
        }
        let caught_up = self.ensure_multipart_bucket(caught_up).await?;
        self.spawn_sweep(caught_up);
        let mut metadata = BTreeMap::from([
            (TARGET_BUCKET.to_string(), input.bucket.clone()),
            (TARGET_KEY.to_string(), input.key.clone()),
            (
                CONTENT_TYPE.to_string(),
                input.content_type.clone().unwrap_or_default(),
            ),
        ]);
        for (name, value) in input.metadata.clone().unwrap_or_default() {
            metadata.insert(format!("{USER_META}{name}"), value);
        }
        lock.save(&mut metadata);
        let spec = PutSpec {
            bucket: MULTIPART_BUCKET.into(),
            key: record_key(id),
            content_type: String::new(),
            metadata,
            expected_sha256: None,
            principal: caller.name().to_string(),
            etag: None,
        };
        let empty = futures::stream::empty::<Result<Vec<u8>, ObjectError>>();
        self.plane
            .put(caught_up, spec, empty)
            .await
            .map(|_| ())
            .map_err(object_status)
    }

    /// The caller of `req`, if it may put into `bucket`, and upload `id`
    /// to `bucket`/`key`, if it exists and is the caller's.
    async fn owned_upload<T>(
        &self,
        req: &S3Request<T>,
        (bucket, key): (&str, &str),
        id: &str,
        started: Instant,
    ) -> S3Result<(Caller, CaughtUp, Upload)> {
        let caller = self
            .caller(req, Action::Put, Some(bucket), key, started)
            .await?;
        let caught_up = caller
            .caught_up_with(self.plane.cluster())
            .await
            .map_err(|s| s3_error(s, Missing::Bucket))?;
        let upload = self.upload(caught_up, id, (bucket, key))?;
        self.owns(&caller, &upload, id)?;
        Ok((caller, caught_up, upload))
    }

    pub(super) async fn upload_part_inner(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let started = Instant::now();
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let id = req.input.upload_id.clone();
        let (caller, caught_up, _) = self
            .owned_upload(&req, (&bucket, &key), &id, started)
            .await?;
        let number = req.input.part_number;
        if !(1..=MAX_PART).contains(&number) {
            return Err(s3_error!(
                InvalidArgument,
                "part numbers are 1 to {MAX_PART}, not {number}"
            ));
        }
        let expected = req
            .input
            .content_md5
            .as_deref()
            .map(content_md5)
            .transpose()
            .map_err(|s| s3_error(s, Missing::Bucket))?;
        let mut declared = Declared::of_part(&req.input, &req.headers, req.trailing_headers.take());
        let expected_sha256 = declared
            .take_sha256()
            .map_err(|s| s3_error(s, Missing::Bucket))?;
        let body = req.input.body.take();
        let spec = PutSpec {
            bucket: MULTIPART_BUCKET.into(),
            key: format!(
                "{}{number:05}-{}",
                part_prefix(&id),
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            content_type: String::new(),
            metadata: BTreeMap::new(),
            expected_sha256,
            principal: caller.name().to_string(),
            etag: Some(EtagRule::Md5 { expected }),
        };
        let stored = async {
            let _permit = self.admission.enter(Traffic::Upload)?;
            self.plane
                .put(caught_up, spec, checked_body(body, declared))
                .await
                .map_err(object_status)
        }
        .await;
        let size = stored.as_ref().map(|m| m.size).unwrap_or(0);
        self.record("upload part", started, &stored, size, 0);
        if stored.is_err() {
            self.audit
                .after(caller.name(), "put", (&bucket, &key), "", &stored)
                .await;
        }
        let part = stored.map_err(|s| s3_error(s, Missing::Bucket))?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(part.etag)),
            ..Default::default()
        }))
    }

    pub(super) async fn list_parts_inner(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let started = Instant::now();
        let input = &req.input;
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let (_, caught_up, _) = self
            .owned_upload(&req, (&bucket, &key), &input.upload_id, started)
            .await?;
        let (parts, _) = self
            .stored_parts(caught_up, &input.upload_id)
            .map_err(|e| s3_error(object_status(e), Missing::Bucket))?;
        let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
        let marker = input.part_number_marker.unwrap_or(0);
        let mut listed: Vec<&StoredPart> = parts.range(marker + 1..).map(|(_, p)| p).collect();
        let truncated = listed.len() > max;
        listed.truncate(max);
        let next = listed.last().map(|p| p.number).filter(|_| truncated);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(bucket),
            key: Some(key),
            upload_id: Some(input.upload_id.clone()),
            max_parts: Some(max as i32),
            part_number_marker: input.part_number_marker,
            is_truncated: Some(truncated),
            next_part_number_marker: next,
            parts: Some(
                listed
                    .iter()
                    .map(|p| Part {
                        e_tag: Some(ETag::Strong(p.md5.clone())),
                        last_modified: Some(timestamp(p.created_ms)),
                        part_number: Some(p.number),
                        size: Some(p.size as i64),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    pub(super) async fn abort_multipart_upload_inner(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let started = Instant::now();
        let input = &req.input;
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let (caller, caught_up, _) = self
            .owned_upload(&req, (&bucket, &key), &input.upload_id, started)
            .await?;
        let result = self
            .discard(caught_up, &input.upload_id, caller.name())
            .await
            .map_err(object_status);
        // On record as the gRPC AbortUpload is.
        self.audit
            .after(caller.name(), "upload abort", (&bucket, &key), "", &result)
            .await;
        result.map_err(|s| s3_error(s, Missing::Bucket))?;
        Ok(S3Response::with_status(
            AbortMultipartUploadOutput::default(),
            http::StatusCode::NO_CONTENT,
        ))
    }

    pub(super) async fn complete_multipart_upload_inner(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let started = Instant::now();
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let id = req.input.upload_id.clone();
        let (caller, caught_up, upload) = self
            .owned_upload(&req, (&bucket, &key), &id, started)
            .await?;
        let chosen = chosen_parts(&req.input)?;
        let (stored, _) = self
            .stored_parts(caught_up, &id)
            .map_err(|e| s3_error(object_status(e), Missing::Bucket))?;
        let mut parts = Vec::with_capacity(chosen.len());
        for (number, etag) in &chosen {
            match stored.get(number) {
                Some(p) if p.md5 == *etag => parts.push(p.clone()),
                _ => {
                    return Err(s3_error!(
                        InvalidPart,
                        "part {number} with ETag {etag} was not uploaded to {id}"
                    ))
                }
            }
        }
        let etag = multipart_etag(&parts)?;
        // The rest runs while the client is kept waiting with whitespace.
        let this = self.clone();
        let work = async move {
            let result = this
                .assemble(caught_up, &caller, &upload, &parts, &etag, &id)
                .await;
            let size = result.as_ref().map(|m| m.size).unwrap_or(0);
            this.record("put", started, &result, size, 0);
            if result.is_err() {
                this.audit
                    .after(caller.name(), "put", (&bucket, &key), "", &result)
                    .await;
            }
            let object = result.map_err(|s| s3_error(s, this.missing_key(&bucket)))?;
            this.lock_stored(&caller, (&bucket, &key), &upload.lock)
                .await?;
            if let Err(e) = this.discard(caught_up, &id, caller.name()).await {
                // The object is stored; the parts go with the expiry sweep.
                tracing::warn!(upload = id, error = %e, "parts of a completed upload not all deleted");
            }
            Ok(CompleteMultipartUploadOutput {
                bucket: Some(bucket.clone()),
                key: Some(key.clone()),
                e_tag: Some(ETag::Strong(object.etag)),
                location: Some(format!("/{bucket}/{key}")),
                ..Default::default()
            })
        };
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            future: Some(Box::pin(work)),
            ..Default::default()
        }))
    }

    /// Streams `parts` in order into `upload`'s target as one object. A
    /// retry of a completion that stored the object finds it and succeeds.
    async fn assemble(
        &self,
        caught_up: CaughtUp,
        caller: &Caller,
        upload: &Upload,
        parts: &[StoredPart],
        etag: &str,
        id: &str,
    ) -> Result<ObjectManifest, Status> {
        if let Ok(existing) = self.plane.manifest(caught_up, &upload.bucket, &upload.key) {
            if existing.etag == etag && existing.ingested_by == caller.name() {
                return Ok(existing);
            }
        }
        let _permit = self.admission.enter(Traffic::Upload)?;
        let plane = self.plane.clone();
        let keys: Vec<String> = parts.iter().map(|p| p.key.clone()).collect();
        let body = futures::stream::iter(keys)
            .then(move |key| {
                let plane = plane.clone();
                async move {
                    let whole = ObjectRange {
                        offset: 0,
                        length: None,
                    };
                    plane.get(caught_up, MULTIPART_BUCKET, &key, whole).await
                }
            })
            .flat_map(|opened| -> ObjectStream {
                match opened {
                    Ok((_, _, bytes)) => bytes,
                    Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
                }
            });
        let spec = PutSpec {
            bucket: upload.bucket.clone(),
            key: upload.key.clone(),
            content_type: upload.content_type.clone(),
            metadata: upload.metadata.clone(),
            expected_sha256: None,
            principal: caller.name().to_string(),
            etag: Some(EtagRule::Given(etag.to_string())),
        };
        tracing::info!(
            upload = id,
            parts = parts.len(),
            "completing a multipart upload"
        );
        self.plane
            .put(caught_up, spec, Box::pin(body))
            .await
            .map_err(object_status)
    }

    pub(super) async fn list_multipart_uploads_inner(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let started = Instant::now();
        let input = &req.input;
        let bucket = input.bucket.clone();
        let caller = self
            .caller(&req, Action::List, Some(&bucket), "", started)
            .await?;
        let caught_up = caller
            .caught_up_with(self.plane.cluster())
            .await
            .map_err(|s| s3_error(s, Missing::Bucket))?;
        self.spawn_sweep(caught_up);
        let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
        let prefix = input.prefix.clone().unwrap_or_default();
        let (records, truncated) = self
            .upload_records(caught_up, input.upload_id_marker.as_deref(), max, |u| {
                u.bucket == bucket && u.key.starts_with(&prefix)
            })
            .map_err(|e| s3_error(object_status(e), Missing::Bucket))?;
        let next = records
            .last()
            .map(|(id, _)| id.clone())
            .filter(|_| truncated);
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(bucket),
            prefix: Some(prefix),
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_upload_id_marker: next,
            uploads: Some(
                records
                    .into_iter()
                    .map(|(id, u)| MultipartUpload {
                        key: Some(u.key),
                        upload_id: Some(id),
                        initiated: Some(timestamp(u.initiated_ms)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }
}

/// The parts a completion names, in ascending order.
fn chosen_parts(input: &CompleteMultipartUploadInput) -> S3Result<Vec<(i32, String)>> {
    let parts = input
        .multipart_upload
        .as_ref()
        .and_then(|m| m.parts.as_ref())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| s3_error!(MalformedXML, "a completion names at least one part"))?;
    let mut chosen = Vec::with_capacity(parts.len());
    for p in parts {
        let (Some(number), Some(etag)) = (p.part_number, p.e_tag.as_ref()) else {
            return Err(s3_error!(
                MalformedXML,
                "every part needs a PartNumber and an ETag"
            ));
        };
        if chosen.last().is_some_and(|(last, _)| *last >= number) {
            return Err(s3_error!(
                InvalidPartOrder,
                "parts must be listed in ascending order, once each"
            ));
        }
        chosen.push((number, bare(etag).to_string()));
    }
    Ok(chosen)
}
