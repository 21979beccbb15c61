//! The write path: stream in, cut into stripes, encode, stream each shard to
//! its node, and commit the manifest only after every segment's shard files
//! are durable.
//!
//! Memory per upload is one stripe being filled plus, per target node, a
//! few blocks in flight — never a function of the object's size.

use std::collections::BTreeMap;

use super::body::{Body, PutBody};
use super::segments::{write_segments, Layout};
use super::upload::{delete_shards_of, keep_alive, KeepAlive, Settled};
use super::{DataPlane, ObjectError};
use crate::crypto::{DataKey, CHUNK_BYTES};
use crate::erasure::Codec;
use crate::meta::ObjectEncryption;
use crate::meta::{
    now_ms, validate_attributes, validate_bucket_name, validate_key, Command, ObjectId,
    ObjectManifest, UploadRecord,
};
use crate::raft::CaughtUp;
use crate::raft::ClusterError;

/// What the client asked to store.
#[derive(Debug, Clone)]
pub struct PutSpec {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Content type.
    pub content_type: String,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Lowercase hex SHA-256 the bytes must have, if given.
    pub expected_sha256: Option<String>,
    /// Who is storing it: the object commits with its audit record.
    pub principal: String,
    /// The entity tag S3 clients are to be given (`None`: none, as for
    /// gRPC uploads).
    pub etag: Option<EtagRule>,
}

/// Where an S3 object's ETag comes from.
#[derive(Debug, Clone)]
pub enum EtagRule {
    /// The MD5 of the bytes, taken as they stream in; the upload is
    /// refused unless it is `expected`, when given (`Content-MD5`).
    Md5 {
        /// The MD5 the bytes must have.
        expected: Option<[u8; 16]>,
    },
    /// Given by the caller (a multipart upload's MD5 of its parts' MD5s).
    Given(String),
}

impl DataPlane {
    /// Stores an object: returns its manifest once it is committed. The
    /// key's absence is checked against state this node caught up to
    /// during the request; the commit itself refuses a key taken meanwhile.
    pub async fn put<S: PutBody>(
        &self,
        _: CaughtUp,
        spec: PutSpec,
        body: S,
    ) -> Result<ObjectManifest, ObjectError> {
        let (bucket, expected) = self.check_new_object(&spec)?;
        let codec = Codec::new(bucket.data as usize, bucket.parity as usize)
            .map_err(|e| ObjectError::Internal(format!("bucket {}: {e}", bucket.name)))?;
        let block_size = self.tuning.shard_bytes;
        let stripe_bytes = codec.data_shards() * block_size as usize;
        let segment_stripes = (self.tuning.segment_bytes / stripe_bytes as u64).max(1) as u32;
        let object = ObjectId::random();
        let policy = match &bucket.retention {
            Some(name) => self.cluster.meta().retention_policy(name)?,
            None => None,
        };
        // The data key is wrapped by the epoch key of the object's class;
        // a copy stays here in case that epoch is destroyed before the
        // commit (it had no objects left) and the key must be re-wrapped.
        let (key, encryption, spare) = if self.keyring.enabled() {
            let epoch = self.epoch_for(policy.as_ref()).await?;
            let key = DataKey::generate(object);
            let encryption = ObjectEncryption {
                chunk_bytes: CHUNK_BYTES,
                key: key.wrap_epoch(&epoch),
            };
            let spare = key.duplicate();
            (Some(key), Some(encryption), Some(spare))
        } else {
            (None, None, None)
        };

        // Record the upload before its first shard file exists, so orphan
        // collection never takes the files of an upload in progress.
        let started = now_ms();
        self.cluster
            .propose(Command::BeginUpload {
                upload: UploadRecord {
                    object_id: object,
                    bucket: spec.bucket.clone(),
                    key: spec.key.clone(),
                    coordinator: self.cluster.config().node_id,
                    started_ms: started,
                    touched_ms: started,
                    session: None,
                },
            })
            .await?;
        crate::crash::point("put::after_begin_upload");
        // While this upload runs, it shows it is alive; dropped with it.
        let _alive = KeepAlive(tokio::spawn(keep_alive(self.cluster.clone(), object)));
        let mut body = Body::new(body, key);
        if matches!(spec.etag, Some(EtagRule::Md5 { .. })) {
            body = body.with_md5();
        }
        let mut segments = Vec::new();
        let layout = Layout {
            object,
            first_segment: 0,
            codec: &codec,
            block_size,
            segment_stripes,
        };
        let written = write_segments(
            &self.peers,
            || self.candidates(),
            layout,
            &mut body,
            &mut segments,
        )
        .await;
        if let Err(e) = written {
            self.abandon_upload(object, &segments);
            return Err(e);
        }
        let sha256 = hex::encode(body.hasher.finish());
        if let Some(expected) = expected {
            if expected != sha256 {
                self.abandon_upload(object, &segments);
                return Err(ObjectError::InvalidArgument(format!(
                    "SHA-256 mismatch: expected {expected}, received bytes hash to {sha256}; nothing was stored"
                )));
            }
        }
        let md5 = match body.md5.take().map(|m| m.finish()) {
            Some(None) => {
                self.abandon_upload(object, &segments);
                return Err(ObjectError::Internal(
                    "the MD5 of the bytes was lost".into(),
                ));
            }
            taken => taken.flatten(),
        };
        let etag = match md5 {
            None => match &spec.etag {
                Some(EtagRule::Given(etag)) => etag.clone(),
                _ => String::new(),
            },
            Some(md5) => {
                let wanted = match &spec.etag {
                    Some(EtagRule::Md5 { expected }) => *expected,
                    _ => None,
                };
                if wanted.is_some_and(|w| w != md5) {
                    self.abandon_upload(object, &segments);
                    return Err(ObjectError::InvalidArgument(format!(
                        "MD5 mismatch: the Content-MD5 given is not the MD5 of the bytes \
                         received ({}); nothing was stored",
                        hex::encode(md5)
                    )));
                }
                hex::encode(md5)
            }
        };
        let spec_principal = spec.principal;
        // Retention counts from the ingest time: in cluster time, so that a
        // coordinator whose clock runs behind cannot bring the deletion of
        // what it stores forward.
        let created_ms = match bucket.retention {
            Some(_) => match self.cluster.cluster_time().await {
                Ok(t) => t,
                Err(e) => {
                    self.abandon_upload(object, &segments);
                    return Err(e.into());
                }
            },
            None => now_ms(),
        };
        let manifest = ObjectManifest {
            bucket: spec.bucket,
            key: spec.key,
            object_id: object,
            size: body.size,
            sha256,
            content_type: spec.content_type,
            metadata: spec.metadata,
            data: bucket.data,
            parity: bucket.parity,
            block_size,
            segment_stripes,
            created_ms,
            segments,
            encryption,
            // Set at commit from the bucket's policy.
            retention: None,
            // Set at commit from the audit record's principal.
            ingested_by: String::new(),
            etag,
        };
        let stored: u64 = manifest.segments.iter().map(|s| s.bytes).sum();
        if stored != manifest.stored_size() {
            self.abandon_upload(object, &manifest.segments);
            return Err(ObjectError::Internal(format!(
                "stored {stored} bytes for {} object bytes, expected {}",
                manifest.size,
                manifest.stored_size()
            )));
        }
        crate::crash::point("put::before_commit");
        let mut manifest = manifest;
        let committed = match self
            .commit_rewrapping(
                &spec_principal,
                &mut manifest,
                spare.as_ref(),
                policy.as_ref(),
            )
            .await
        {
            Ok(committed) => committed,
            Err(e) => {
                self.abandon_upload(object, &manifest.segments);
                return Err(e);
            }
        };
        // Fault point: the commit happened but its answer is lost, as when
        // the leader dies between committing and replying.
        let committed = match committed {
            Ok(()) if crate::crash::armed("put::commit_answer_lost") => Err(
                ClusterError::Unavailable("the commit's answer was lost (fault point)".into()),
            ),
            other => other,
        };
        match committed {
            Ok(()) => crate::crash::point("put::after_commit"),
            // The state machine refused it: nothing was committed.
            Err(ClusterError::Meta(refusal)) => {
                self.abandon_upload(object, &manifest.segments);
                return Err(refusal.into());
            }
            // The leader was lost mid-proposal: the manifest may or may not
            // be committed. Find out before deleting anything.
            Err(unknown) => match self.settle_upload(object).await {
                Settled::Committed => {}
                Settled::Aborted => {
                    delete_shards_of(self, object, &manifest.segments);
                    return Err(ObjectError::Unavailable(format!(
                        "{}/{} was not stored ({unknown}); nothing was kept, retry",
                        manifest.bucket, manifest.key
                    )));
                }
                Settled::Unknown(why) => {
                    // Shards stay: if the manifest did commit, they are the
                    // object; if not, the upload expires and GC takes them.
                    return Err(ObjectError::Unavailable(format!(
                        "the outcome of storing {}/{} is unknown ({why}); `stat` it once the \
                         cluster has a leader: either it is there whole or it is absent",
                        manifest.bucket, manifest.key
                    )));
                }
            },
        }
        tracing::info!(
            bucket = manifest.bucket,
            key = manifest.key,
            object = %object,
            size = manifest.size,
            missing_shards = manifest.missing_shards(),
            "object stored"
        );
        Ok(manifest)
    }

    /// What a new object must pass before a byte of it is stored: its
    /// names and attributes, a well-formed expected SHA-256 (returned
    /// normalised), a bucket that exists (returned) and a key that never
    /// held an object. Checked against state this node caught up to; the
    /// commit refuses a key taken meanwhile.
    pub(super) fn check_new_object(
        &self,
        spec: &PutSpec,
    ) -> Result<(crate::meta::Bucket, Option<String>), ObjectError> {
        validate_bucket_name(&spec.bucket)?;
        validate_key(&spec.key)?;
        validate_attributes(&spec.content_type, &spec.metadata)?;
        let expected = spec
            .expected_sha256
            .as_deref()
            .map(normalize_sha256)
            .transpose()?;
        let meta = self.cluster.meta();
        let bucket = meta
            .bucket(&spec.bucket)?
            .ok_or_else(|| ObjectError::NotFound(format!("no bucket named {}", spec.bucket)))?;
        if meta.object(&spec.bucket, &spec.key)?.is_some() {
            return Err(ObjectError::AlreadyExists(format!(
                "{}/{} already exists (objects are immutable)",
                spec.bucket, spec.key
            )));
        }
        if let Some(tomb) = meta.tombstone(&spec.bucket, &spec.key)? {
            return Err(ObjectError::AlreadyExists(
                tomb.refusal(&spec.bucket, &spec.key).to_string(),
            ));
        }
        Ok((bucket, expected))
    }

    /// Proposes the commit of `manifest`, with the put's audit record; if
    /// the epoch wrapping its data key was destroyed meanwhile (it had no
    /// objects left), wraps `spare` (the same data key) by the epoch of
    /// `policy`'s class now and proposes again. `Err` when no epoch key
    /// could be had for that; `Ok` holds the commit's own outcome.
    pub(super) async fn commit_rewrapping(
        &self,
        principal: &str,
        manifest: &mut ObjectManifest,
        spare: Option<&DataKey>,
        policy: Option<&crate::meta::RetentionPolicy>,
    ) -> Result<Result<(), ClusterError>, ObjectError> {
        let committed = self.commit(principal, manifest).await;
        let (Err(ClusterError::Meta(_)), Some(spare)) = (&committed, spare) else {
            return Ok(committed);
        };
        // Unreadable state counts as not destroyed: the refusal then
        // stands.
        if !self.epoch_destroyed(manifest).unwrap_or(false) {
            return Ok(committed);
        }
        let epoch = self.epoch_for(policy).await?;
        if let Some(enc) = manifest.encryption.as_mut() {
            enc.key = spare.wrap_epoch(&epoch);
        }
        Ok(self.commit(principal, manifest).await)
    }

    /// Proposes the commit of `manifest`, with the put's audit record.
    async fn commit(&self, principal: &str, manifest: &ObjectManifest) -> Result<(), ClusterError> {
        self.cluster
            .propose(Command::CreateObject {
                audit: Some(self.audit_record(
                    principal,
                    "put",
                    &manifest.bucket,
                    &manifest.key,
                    &manifest.sha256,
                )),
                manifest: Box::new(manifest.clone()),
            })
            .await
    }

    /// Whether the epoch that wraps `manifest`'s data key is gone.
    fn epoch_destroyed(&self, manifest: &ObjectManifest) -> Result<bool, ObjectError> {
        let Some(id) = manifest
            .encryption
            .as_ref()
            .and_then(|e| crate::meta::epoch_of(&e.key.key_id))
        else {
            return Ok(false);
        };
        Ok(self.cluster.meta().epoch(id)?.is_none())
    }
}

/// A SHA-256 given by a client, as 64 lowercase hex digits.
pub(super) fn normalize_sha256(hex_sum: &str) -> Result<String, ObjectError> {
    hex::decode(hex_sum)
        .ok()
        .filter(|b| b.len() == 32)
        .map(hex::encode)
        .ok_or_else(|| {
            ObjectError::InvalidArgument(format!(
                "expected_sha256 {hex_sum:?} is not 64 hex digits"
            ))
        })
}
