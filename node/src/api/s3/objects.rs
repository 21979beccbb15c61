//! Objects over S3: PutObject, GetObject, HeadObject, DeleteObject,
//! DeleteObjects and CopyObject, each the data plane's call with the
//! authorisation and audit entry of its gRPC twin.
//!
//! Objects are immutable: a PutObject or CopyObject to a key in use (or
//! ever used: tombstones keep deleted evidence ids) answers
//! `PreconditionFailed` (412). A DeleteObject of a missing key answers 204
//! as S3 does (its audit entry says `not_found`).

use std::time::Instant;

use http::StatusCode;
use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result};
use tonic::Status;

use super::bodies::{checked_body, content_md5, Declared, Download};
use super::buckets::timestamp;
use super::errors::s3_error;
use super::lock::lock_headers;
use super::reads::{as_status, Unserved};
use super::S3Gateway;
use crate::api::admission::Traffic;
use crate::api::auth::{Action, Caller};
use crate::api::object_status;
use crate::meta::ObjectManifest;
use crate::objects::{EtagRule, ObjectRange, PutSpec};

/// The ETag S3 clients are given for `m`: the MD5 taken at an S3 upload,
/// else the SHA-256 (64 digits, which no tool takes for an MD5).
pub(super) fn etag_of(m: &ObjectManifest) -> ETag {
    match m.etag.is_empty() {
        true => ETag::Strong(m.sha256.clone()),
        false => ETag::Strong(m.etag.clone()),
    }
}

/// The conditions of a GetObject or HeadObject input (they name them
/// alike).
macro_rules! conditions_of {
    ($input:expr) => {
        Conditions {
            if_match: $input.if_match.as_ref(),
            if_none_match: $input.if_none_match.as_ref(),
            if_modified_since: $input.if_modified_since.as_ref(),
            if_unmodified_since: $input.if_unmodified_since.as_ref(),
        }
    };
}

/// The conditions of a GET or HEAD, checked against the object as RFC
/// 9110 orders them.
struct Conditions<'a> {
    if_match: Option<&'a ETagCondition>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
}

fn unix_secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

impl Conditions<'_> {
    fn check(&self, m: &ObjectManifest) -> Result<(), Unserved> {
        let etag = etag_of(m);
        let matches = |c: &ETagCondition| match c {
            ETagCondition::Any => true,
            ETagCondition::ETag(e) => e.value() == etag.value(),
        };
        let modified = (m.created_ms / 1000) as i64;
        let failed = |code: s3s::S3ErrorCode, why: &str| {
            Err(Unserved::Condition(S3Error::with_message(
                code,
                why.to_string(),
            )))
        };
        if let Some(c) = self.if_match {
            if !matches(c) {
                return failed(
                    s3s::S3ErrorCode::PreconditionFailed,
                    "If-Match does not hold",
                );
            }
        } else if let Some(t) = self.if_unmodified_since {
            if modified > unix_secs(t) {
                return failed(
                    s3s::S3ErrorCode::PreconditionFailed,
                    "If-Unmodified-Since does not hold",
                );
            }
        }
        if let Some(c) = self.if_none_match {
            if matches(c) {
                return failed(s3s::S3ErrorCode::NotModified, "not modified");
            }
        } else if let Some(t) = self.if_modified_since {
            if modified <= unix_secs(t) {
                return failed(s3s::S3ErrorCode::NotModified, "not modified");
            }
        }
        Ok(())
    }
}

impl S3Gateway {
    pub(super) async fn put_object_inner(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let started = Instant::now();
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let caller = self
            .caller(&req, Action::Put, Some(&bucket), &key, started)
            .await?;
        let lock = lock_headers!(req.input)?;
        self.may_lock(&req, (&bucket, &key), &lock).await?;
        let declared = Declared::of(&req.input, &req.headers, req.trailing_headers.take());
        let body = req.input.body.take();
        let result = self.store(&req.input, &caller, body, declared).await;
        let size = result.as_ref().map(|m| m.size).unwrap_or(0);
        self.record("put", started, &result, size, 0);
        // A stored object committed with its audit record.
        if result.is_err() {
            self.audit
                .after(caller.name(), "put", (&bucket, &key), "", &result)
                .await;
        }
        let manifest = result.map_err(|s| s3_error(s, self.missing_key(&bucket)))?;
        self.lock_stored(&caller, (&bucket, &key), &lock).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag_of(&manifest)),
            size: Some(manifest.size as i64),
            ..Default::default()
        }))
    }

    /// Stores a PutObject's body as the caller.
    async fn store(
        &self,
        input: &PutObjectInput,
        caller: &Caller,
        body: Option<StreamingBlob>,
        mut declared: Declared,
    ) -> Result<ObjectManifest, Status> {
        let _permit = self.admission.enter(Traffic::Upload)?;
        let expected = input.content_md5.as_deref().map(content_md5).transpose()?;
        let expected_sha256 = declared.take_sha256()?;
        let spec = PutSpec {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            content_type: input.content_type.clone().unwrap_or_default(),
            metadata: input
                .metadata
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            expected_sha256,
            principal: caller.name().to_string(),
            etag: Some(EtagRule::Md5 { expected }),
        };
        let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
        self.plane
            .put(caught_up, spec, checked_body(body, declared))
            .await
            .map_err(|e| {
                tracing::warn!(bucket = input.bucket, key = input.key, error = %e, "S3 put failed");
                object_status(e)
            })
    }

    pub(super) async fn get_object_inner(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let started = Instant::now();
        let input = &req.input;
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let caller = self
            .caller(&req, Action::Get, Some(&bucket), &key, started)
            .await?;
        let conditions = conditions_of!(input);
        let read = self
            .read(&caller, &bucket, &key, input.range, conditions)
            .await;
        let (sha, sent) = match &read {
            Ok((m, out)) => (m.sha256.clone(), out.content_length.unwrap_or(0) as u64),
            Err(_) => (String::new(), 0),
        };
        let response = self
            .audited("get", &caller, (&bucket, &key), &sha, read)
            .await;
        self.record("get", started, &as_status(&response), 0, sent);
        let (manifest, output) = self.answer(response, &bucket)?;
        let partial = output.content_range.is_some() && manifest.size > 0;
        let mut response = S3Response::new(output);
        if partial {
            response.status = Some(StatusCode::PARTIAL_CONTENT);
        }
        Ok(response)
    }

    /// The manifest and bytes of a GET, once its conditions hold.
    async fn read(
        &self,
        caller: &Caller,
        bucket: &str,
        key: &str,
        range: Option<Range>,
        conditions: Conditions<'_>,
    ) -> Result<(ObjectManifest, GetObjectOutput), Unserved> {
        let permit = self.admission.enter(Traffic::Download)?;
        let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
        let manifest = self
            .plane
            .manifest(caught_up, bucket, key)
            .map_err(object_status)?;
        conditions.check(&manifest)?;
        let wanted = match range {
            None => None,
            Some(r) => Some(r.check(manifest.size).map_err(|_| {
                Status::out_of_range(format!(
                    "range {} is outside {bucket}/{key}'s {} bytes",
                    r.to_header_string(),
                    manifest.size
                ))
            })?),
        };
        let range = match &wanted {
            None => ObjectRange {
                offset: 0,
                length: None,
            },
            Some(r) => ObjectRange {
                offset: r.start,
                length: Some(r.end - r.start),
            },
        };
        let (manifest, (start, end), bytes) = self
            .plane
            .get(caught_up, bucket, key, range)
            .await
            .map_err(object_status)?;
        let length = end - start;
        let (object_lock_mode, object_lock_retain_until_date, hold) =
            self.lock_fields(&manifest)?;
        let output = GetObjectOutput {
            object_lock_mode,
            object_lock_retain_until_date,
            object_lock_legal_hold_status: Some(hold),
            body: Some(Download::blob(bytes, length, permit)),
            content_length: Some(length as i64),
            content_range: wanted
                .map(|_| format!("bytes {start}-{}/{}", end.saturating_sub(1), manifest.size)),
            accept_ranges: Some("bytes".into()),
            content_type: Some(manifest.content_type.clone()).filter(|c| !c.is_empty()),
            e_tag: Some(etag_of(&manifest)),
            last_modified: Some(timestamp(manifest.created_ms)),
            metadata: Some(manifest.metadata.clone().into_iter().collect()),
            ..Default::default()
        };
        Ok((manifest, output))
    }

    pub(super) async fn head_object_inner(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = &req.input;
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let conditions = conditions_of!(input);
        let (_, output) = self
            .stat(&req, (&bucket, &key), |manifest| {
                conditions.check(manifest)?;
                let (object_lock_mode, object_lock_retain_until_date, hold) =
                    self.lock_fields(manifest)?;
                Ok(HeadObjectOutput {
                    object_lock_mode,
                    object_lock_retain_until_date,
                    object_lock_legal_hold_status: Some(hold),
                    content_length: Some(manifest.size as i64),
                    accept_ranges: Some("bytes".into()),
                    content_type: Some(manifest.content_type.clone()).filter(|c| !c.is_empty()),
                    e_tag: Some(etag_of(manifest)),
                    last_modified: Some(timestamp(manifest.created_ms)),
                    metadata: Some(manifest.metadata.clone().into_iter().collect()),
                    ..Default::default()
                })
            })
            .await?;
        Ok(S3Response::new(output))
    }

    pub(super) async fn delete_object_inner(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let started = Instant::now();
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let caller = self
            .caller(&req, Action::Delete, Some(&bucket), &key, started)
            .await?;
        match self.delete_one(&caller, &bucket, &key, started).await {
            Ok(()) => Ok(S3Response::with_status(
                DeleteObjectOutput::default(),
                StatusCode::NO_CONTENT,
            )),
            Err(e) => Err(e),
        }
    }

    /// Deletes `bucket/key` as `caller`: the deletion commits with its
    /// audit record; a failure is recorded after. A key already gone is
    /// success, as S3 clients expect.
    async fn delete_one(
        &self,
        caller: &Caller,
        bucket: &str,
        key: &str,
        started: Instant,
    ) -> S3Result<()> {
        let result = match caller.caught_up_with(self.plane.cluster()).await {
            Ok(caught_up) => self
                .plane
                .delete(caught_up, bucket, key, caller.name())
                .await
                .map_err(object_status),
            Err(status) => Err(status),
        };
        self.record("delete", started, &result, 0, 0);
        if result.is_err() {
            self.audit
                .after(caller.name(), "delete", (bucket, key), "", &result)
                .await;
        }
        match result {
            Ok(()) => Ok(()),
            Err(s) => match s3_error(s, self.missing_key(bucket)) {
                e if *e.code() == s3s::S3ErrorCode::NoSuchKey => Ok(()),
                e => Err(e),
            },
        }
    }

    pub(super) async fn delete_objects_inner(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let started = Instant::now();
        let bucket = req.input.bucket.clone();
        let objects = &req.input.delete.objects;
        if objects.len() > 1000 {
            return Err(s3s::s3_error!(
                MalformedXML,
                "DeleteObjects takes at most 1000 keys, not {}",
                objects.len()
            ));
        }
        let caller = self
            .caller(&req, Action::Delete, Some(&bucket), "", started)
            .await?;
        let quiet = req.input.delete.quiet == Some(true);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for object in objects {
            let key = object.key.clone();
            match self
                .delete_one(&caller, &bucket, &key, Instant::now())
                .await
            {
                Ok(()) if quiet => {}
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(key),
                    ..Default::default()
                }),
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(key),
                    message: e.message().map(str::to_string),
                    version_id: None,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    pub(super) async fn copy_object_inner(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let started = Instant::now();
        let input = &req.input;
        let (src_bucket, src_key) = match &input.copy_source {
            CopySource::Bucket {
                bucket,
                key,
                version_id: None,
            } => (bucket.to_string(), key.to_string()),
            _ => {
                return Err(s3s::s3_error!(
                    NotImplemented,
                    "copy sources are bucket/key (no versions, no access points)"
                ))
            }
        };
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        // Reading the source is a `get` of it, on record before a byte is
        // read; storing the copy is a `put`, committed with its record.
        let reader = self
            .caller(&req, Action::Get, Some(&src_bucket), &src_key, started)
            .await?;
        let writer = self
            .caller(&req, Action::Put, Some(&bucket), &key, started)
            .await?;
        let conditions = Conditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
        };
        let read = self
            .read(&reader, &src_bucket, &src_key, None, conditions)
            .await;
        let sha = read
            .as_ref()
            .map(|(m, _)| m.sha256.clone())
            .unwrap_or_default();
        let read = self
            .audited("get", &reader, (&src_bucket, &src_key), &sha, read)
            .await;
        let (source, output) = match read {
            Ok(v) => v,
            Err(Unserved::Condition(e)) => {
                // S3 answers a failed copy condition with 412 either way.
                let mut e = e;
                e.set_code(s3s::S3ErrorCode::PreconditionFailed);
                e.set_status_code(StatusCode::PRECONDITION_FAILED);
                return Err(e);
            }
            Err(Unserved::Failed(s)) => return Err(s3_error(s, self.missing_key(&src_bucket))),
        };
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let (content_type, metadata) = match replace {
            true => (
                input.content_type.clone().unwrap_or_default(),
                input
                    .metadata
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            ),
            false => (source.content_type.clone(), source.metadata.clone()),
        };
        let spec = PutSpec {
            bucket: bucket.clone(),
            key: key.clone(),
            content_type,
            metadata,
            // The copy must be the bytes the source's record names.
            expected_sha256: Some(source.sha256.clone()),
            principal: writer.name().to_string(),
            etag: Some(EtagRule::Md5 { expected: None }),
        };
        let Some(source_bytes) = output.body else {
            return Err(s3s::s3_error!(InternalError, "the copy source has no body"));
        };
        let stored = async {
            let _permit = self.admission.enter(Traffic::Upload)?;
            let caught_up = writer.caught_up_with(self.plane.cluster()).await?;
            let body = futures::StreamExt::map(source_bytes, |chunk| match chunk {
                Ok(bytes) => Ok(Vec::from(bytes)),
                Err(e) => Err(crate::objects::ObjectError::Unavailable(format!(
                    "reading the copy source failed: {e}"
                ))),
            });
            self.plane
                .put(caught_up, spec, Box::pin(body))
                .await
                .map_err(object_status)
        }
        .await;
        self.record("put", started, &stored, source.size, 0);
        if stored.is_err() {
            self.audit
                .after(writer.name(), "put", (&bucket, &key), "", &stored)
                .await;
        }
        let copy = stored.map_err(|s| s3_error(s, self.missing_key(&bucket)))?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag_of(&copy)),
                last_modified: Some(timestamp(copy.created_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}
