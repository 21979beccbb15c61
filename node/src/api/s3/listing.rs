//! ListObjects (v1) and ListObjectsV2 over the object layer's key-ordered
//! pages: prefix, delimiter (keys sharing a prefix up to the delimiter are
//! rolled into one common prefix, and the walk jumps past them rather than
//! reading them all), markers and continuation tokens, max-keys. Audited
//! as the gRPC `list` is: one entry per call, with the prefix as its key.

use std::time::Instant;

use base64::Engine as _;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use super::buckets::timestamp;
use super::errors::{s3_error, Missing};
use super::objects::etag_of;
use super::S3Gateway;
use crate::api::auth::Action;
use crate::meta::ObjectManifest;
use crate::objects::ObjectError;
use crate::raft::CaughtUp;

/// Most keys and common prefixes in one answer (S3's own limit).
const MAX_KEYS: usize = 1000;

/// What one call lists.
struct Walk<'a> {
    bucket: &'a str,
    prefix: &'a str,
    delimiter: Option<&'a str>,
    /// List keys after this one.
    after: Option<String>,
    max_keys: usize,
}

/// One answer's worth.
#[derive(Default)]
struct Listed {
    objects: Vec<ObjectManifest>,
    prefixes: Vec<String>,
    /// Where the next answer starts, when this one is cut short.
    next: Option<String>,
}

/// The key after which every key starting with `prefix` is passed over
/// (U+10FFFF sorts after every character a key uses in practice; a key
/// that does hold it is rolled into the same prefix again, not listed
/// twice).
pub(super) fn past(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// Where a listing resumes after `marker`: past a whole common prefix
/// when the marker is one.
fn resume_after(marker: &str, delimiter: Option<&str>) -> String {
    match delimiter {
        Some(d) if !d.is_empty() && marker.ends_with(d) => past(marker),
        _ => marker.to_string(),
    }
}

impl S3Gateway {
    /// Walks the bucket's keys from `walk.after`, rolling keys into common
    /// prefixes, until `max_keys` entries are found or the keys run out.
    fn walk(&self, caught_up: CaughtUp, walk: Walk<'_>) -> Result<Listed, ObjectError> {
        let mut listed = Listed::default();
        let mut after = walk.after;
        if walk.max_keys == 0 {
            return Ok(listed);
        }
        loop {
            let want = walk.max_keys - listed.objects.len() - listed.prefixes.len();
            let (page, more) =
                self.plane
                    .list(caught_up, walk.bucket, walk.prefix, after.as_deref(), want)?;
            let mut jumped = false;
            let mut last = None;
            for manifest in page {
                if listed.objects.len() + listed.prefixes.len() == walk.max_keys {
                    listed.next = last;
                    return Ok(listed);
                }
                let rest = &manifest.key[walk.prefix.len()..];
                let rolled = walk
                    .delimiter
                    .filter(|d| !d.is_empty())
                    .and_then(|d| rest.find(d).map(|i| walk.prefix.len() + i + d.len()));
                match rolled {
                    Some(end) => {
                        let common = manifest.key[..end].to_string();
                        if listed.prefixes.last() != Some(&common) {
                            listed.prefixes.push(common.clone());
                        }
                        after = Some(past(&common));
                        last = Some(common);
                        jumped = true;
                        break;
                    }
                    None => {
                        after = Some(manifest.key.clone());
                        last = Some(manifest.key.clone());
                        listed.objects.push(manifest);
                    }
                }
            }
            let full = listed.objects.len() + listed.prefixes.len() == walk.max_keys;
            if !jumped && more.is_none() {
                return Ok(listed);
            }
            if full {
                // More may follow: a peek says whether the answer is cut.
                let (rest, _) =
                    self.plane
                        .list(caught_up, walk.bucket, walk.prefix, after.as_deref(), 1)?;
                if !rest.is_empty() {
                    listed.next = last;
                }
                return Ok(listed);
            }
        }
    }

    /// A listing call: admitted, walked, audited like the gRPC `list`.
    async fn listing<T>(&self, req: &S3Request<T>, walk: Walk<'_>) -> S3Result<Listed> {
        let (bucket, prefix) = (walk.bucket, walk.prefix);
        let started = Instant::now();
        let caller = self
            .caller(req, Action::List, Some(bucket), prefix, started)
            .await?;
        let result = match caller.caught_up_with(self.plane.cluster()).await {
            Ok(caught_up) => self
                .walk(caught_up, walk)
                .map_err(crate::api::object_status),
            Err(status) => Err(status),
        };
        let result = self
            .audit
            .before(caller.name(), "list", (bucket, prefix), "", result)
            .await;
        self.record("list", started, &result, 0, 0);
        result.map_err(|s| s3_error(s, Missing::Bucket))
    }

    pub(super) async fn list_objects_v2_inner(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = &req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let max_keys = max_keys(input.max_keys)?;
        let after = match &input.continuation_token {
            Some(token) => Some(decode_token(token)?),
            None => input
                .start_after
                .as_deref()
                .map(|s| resume_after(s, delimiter.as_deref())),
        };
        let bucket = input.bucket.clone();
        let listed = self
            .listing(
                &req,
                Walk {
                    bucket: &bucket,
                    prefix: &prefix,
                    delimiter: delimiter.as_deref(),
                    after,
                    max_keys,
                },
            )
            .await?;
        let key_count = (listed.objects.len() + listed.prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(bucket),
            prefix: Some(prefix),
            delimiter,
            max_keys: Some(max_keys as i32),
            key_count: Some(key_count),
            continuation_token: req.input.continuation_token.clone(),
            start_after: req.input.start_after.clone(),
            is_truncated: Some(listed.next.is_some()),
            next_continuation_token: listed.next.as_deref().map(encode_token),
            contents: Some(listed.objects.iter().map(object_entry).collect()),
            common_prefixes: Some(common_prefixes(listed.prefixes)),
            ..Default::default()
        }))
    }

    pub(super) async fn list_objects_inner(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = &req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let max_keys = max_keys(input.max_keys)?;
        let after = input
            .marker
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(|m| resume_after(m, delimiter.as_deref()));
        let bucket = input.bucket.clone();
        let listed = self
            .listing(
                &req,
                Walk {
                    bucket: &bucket,
                    prefix: &prefix,
                    delimiter: delimiter.as_deref(),
                    after,
                    max_keys,
                },
            )
            .await?;
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(bucket),
            prefix: Some(prefix),
            marker: req.input.marker.clone(),
            max_keys: Some(max_keys as i32),
            is_truncated: Some(listed.next.is_some()),
            // Always given (S3 gives it only with a delimiter): a client
            // that would use the last key listed gets the same.
            next_marker: listed.next.clone(),
            delimiter,
            contents: Some(listed.objects.iter().map(object_entry).collect()),
            common_prefixes: Some(common_prefixes(listed.prefixes)),
            ..Default::default()
        }))
    }
}

fn max_keys(asked: Option<i32>) -> S3Result<usize> {
    match asked {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3s::s3_error!(
            InvalidArgument,
            "max-keys must not be negative"
        )),
        Some(n) => Ok((n as usize).min(MAX_KEYS)),
    }
}

fn object_entry(m: &ObjectManifest) -> Object {
    Object {
        key: Some(m.key.clone()),
        size: Some(m.size as i64),
        e_tag: Some(etag_of(m)),
        last_modified: Some(timestamp(m.created_ms)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

fn common_prefixes(prefixes: Vec<String>) -> Vec<CommonPrefix> {
    prefixes
        .into_iter()
        .map(|p| CommonPrefix { prefix: Some(p) })
        .collect()
}

fn encode_token(after: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after.as_bytes())
}

fn decode_token(token: &str) -> S3Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3s::s3_error!(
                InvalidArgument,
                "the continuation token is not one this cluster gave"
            )
        })
}
