//! Resumable uploads: an object sent in parts, through any node, over as
//! many calls as the link needs. Each part is one segment of the object,
//! written by the same path as a Put's segments; it counts once its shard
//! files are durable and the part is recorded in the replicated state,
//! with the SHA-256 of the bytes so far — which is what lets another node
//! go on. Completing commits the object from the recorded parts exactly as
//! a Put commits it.

use super::body::{Body, PutBody};
use super::segments::{write_segments, Layout};
use super::upload::{keep_alive, KeepAlive};
use super::write::{normalize_sha256, PutSpec};
use super::{DataPlane, ObjectError};
use crate::crypto::{DataKey, CHUNK_BYTES};
use crate::erasure::Codec;
use crate::meta::{
    now_ms, Command, HashState, MetaError, ObjectEncryption, ObjectId, ObjectManifest,
    UploadRecord, UploadSession, TAG_BYTES,
};
use crate::raft::{CaughtUp, ClusterError};
use crate::shards::ShardId;

/// Upload records read per page when counting or listing sessions.
const PAGE: usize = 500;

/// A refusal by the replicated state, as the client should see it: a
/// session's state not allowing the call is FAILED_PRECONDITION here, not
/// the "retry later" it means elsewhere.
fn refused(e: ClusterError) -> ObjectError {
    match e {
        ClusterError::Meta(MetaError::FailedPrecondition(m)) => ObjectError::FailedPrecondition(m),
        other => other.into(),
    }
}

/// Parses an upload id as clients send it.
pub fn parse_upload_id(id: &str) -> Result<ObjectId, ObjectError> {
    hex::decode(id)
        .ok()
        .and_then(|b| ObjectId::from_slice(&b))
        .ok_or_else(|| ObjectError::InvalidArgument(format!("{id:?} is not an upload id")))
}

/// Shard block bytes and stripes per part for a session of `codec`: a
/// block holds whole sealed chunks, so every part but the last is whole
/// chunks and whole stripes, and the next part starts a new segment.
fn part_layout(codec: &Codec, shard_bytes: u32, part_bytes: u64, sealed: bool) -> (u32, u32, u64) {
    let chunks_per_block = (shard_bytes / CHUNK_BYTES).max(1);
    let stored_chunk = CHUNK_BYTES + if sealed { TAG_BYTES as u32 } else { 0 };
    let block_size = chunks_per_block * stored_chunk;
    let stripe_plain = codec.data_shards() as u64 * chunks_per_block as u64 * CHUNK_BYTES as u64;
    let stripes = (part_bytes / stripe_plain).clamp(1, u32::MAX as u64) as u32;
    (block_size, stripes, stripes as u64 * stripe_plain)
}

impl DataPlane {
    /// Opens a resumable upload of `spec`: checked as a Put is (names,
    /// attributes, bucket, free key), refused when `spec.principal` already
    /// has `max_open` sessions.
    pub async fn create_upload(
        &self,
        _: CaughtUp,
        spec: PutSpec,
        max_open: u32,
    ) -> Result<UploadRecord, ObjectError> {
        let (bucket, expected) = self.check_new_object(&spec)?;
        if self.sessions_of(&spec.principal, max_open as usize)? >= max_open as usize {
            return Err(ObjectError::ResourceExhausted(format!(
                "{} has {max_open} upload sessions open, the most allowed; complete or abort one",
                spec.principal
            )));
        }
        let codec = Codec::new(bucket.data as usize, bucket.parity as usize)
            .map_err(|e| ObjectError::Internal(format!("bucket {}: {e}", bucket.name)))?;
        let object = ObjectId::random();
        // Wrapped by the master key until the commit: the epoch of the
        // object's retention class is chosen when its retention starts.
        let encryption = if self.keyring.enabled() {
            let keys = self.keyring.keys()?;
            Some(ObjectEncryption {
                chunk_bytes: CHUNK_BYTES,
                key: DataKey::generate(object).wrap(keys.current()),
            })
        } else {
            None
        };
        let (block_size, segment_stripes, part_bytes) = part_layout(
            &codec,
            self.tuning.shard_bytes,
            self.tuning.part_bytes,
            encryption.is_some(),
        );
        let now = now_ms();
        let upload = UploadRecord {
            object_id: object,
            bucket: spec.bucket,
            key: spec.key,
            coordinator: self.cluster.config().node_id,
            started_ms: now,
            touched_ms: now,
            session: Some(Box::new(UploadSession {
                principal: spec.principal,
                content_type: spec.content_type,
                metadata: spec.metadata,
                expected_sha256: expected,
                part_bytes,
                data: bucket.data,
                parity: bucket.parity,
                block_size,
                segment_stripes,
                encryption,
                parts: Vec::new(),
                hash: HashState::default(),
                finished: false,
                writer: 0,
            })),
        };
        self.cluster
            .propose(Command::BeginUpload {
                upload: upload.clone(),
            })
            .await
            .map_err(refused)?;
        Ok(upload)
    }

    /// How many sessions `principal` has open, counted up to `enough`.
    fn sessions_of(&self, principal: &str, enough: usize) -> Result<usize, ObjectError> {
        let mut after = None;
        let mut open = 0;
        loop {
            let page = self.cluster.meta().uploads(after.as_ref(), PAGE)?;
            open += page
                .iter()
                .filter(|u| u.session.as_ref().is_some_and(|s| s.principal == principal))
                .count();
            match page.last() {
                Some(last) if page.len() == PAGE && open < enough => after = Some(last.object_id),
                _ => return Ok(open),
            }
        }
    }

    /// Up to `limit` open sessions after upload id `after`, and the id to
    /// go on from when there may be more.
    pub fn upload_sessions(
        &self,
        after: Option<ObjectId>,
        limit: usize,
    ) -> Result<(Vec<UploadRecord>, Option<ObjectId>), ObjectError> {
        let mut out = Vec::new();
        let mut after = after;
        loop {
            let page = self.cluster.meta().uploads(after.as_ref(), PAGE)?;
            for upload in &page {
                if out.len() == limit {
                    return Ok((out, after));
                }
                after = Some(upload.object_id);
                if upload.session.is_some() {
                    out.push(upload.clone());
                }
            }
            if page.len() < PAGE {
                return Ok((out, None));
            }
        }
    }

    /// The open session `id`, whoever it belongs to.
    pub fn upload_record(
        &self,
        _: CaughtUp,
        id: ObjectId,
    ) -> Result<(UploadRecord, UploadSession), ObjectError> {
        let upload = self.cluster.meta().upload(&id)?;
        upload
            .and_then(|mut u| u.session.take().map(|s| (u, *s)))
            .ok_or_else(|| {
                ObjectError::NotFound(format!(
                    "no open upload {id} (completed, aborted or expired)"
                ))
            })
    }

    /// The open session `id` of `principal`.
    pub fn upload_session(
        &self,
        caught_up: CaughtUp,
        id: ObjectId,
        principal: &str,
    ) -> Result<(UploadRecord, UploadSession), ObjectError> {
        let (upload, session) = self.upload_record(caught_up, id)?;
        if session.principal != principal {
            return Err(ObjectError::PermissionDenied(format!(
                "upload {id} belongs to another principal; only it may use it"
            )));
        }
        Ok((upload, session))
    }

    /// Stores `body` as the next parts of session `id`, from `offset`
    /// (which must be its durable offset), calling `durable(part, bytes)`
    /// as each part is recorded. The body ends (`None`) only when the
    /// object ends there; a body that breaks off loses the part it was in.
    pub async fn upload_parts<S: PutBody>(
        &self,
        caught_up: CaughtUp,
        id: ObjectId,
        principal: &str,
        offset: u64,
        body: S,
        durable: &mut (dyn FnMut(u32, u64) + Send),
    ) -> Result<(), ObjectError> {
        let (_, session) = self.upload_session(caught_up, id, principal)?;
        check_offset(id, &session, offset)?;
        // Whether an earlier call may have left files of the next part.
        let resumed = session.writer != 0;
        // From this commit on, no other call can record a part.
        let writer = rand::random::<u64>() | 1;
        self.cluster
            .propose(Command::ClaimUpload {
                object_id: id,
                writer,
                touched_ms: now_ms(),
            })
            .await
            .map_err(refused)?;
        let caught_up = self.cluster.linearizable_read().await?;
        let (_, session) = self.upload_session(caught_up, id, principal)?;
        check_offset(id, &session, offset)?;
        if session.writer != writer {
            return Err(ObjectError::FailedPrecondition(format!(
                "upload {id} was taken over by another UploadParts call"
            )));
        }
        let _alive = KeepAlive(tokio::spawn(keep_alive(self.cluster.clone(), id)));
        let key = match &session.encryption {
            Some(enc) => Some(self.data_key(id, &enc.key).await?),
            None => None,
        };
        let codec = Codec::new(session.data as usize, session.parity as usize)
            .map_err(|e| ObjectError::Internal(format!("upload {id}: {e}")))?;
        let first_chunk = offset / CHUNK_BYTES as u64;
        let mut body = Body::resume(body, key, first_chunk, session.hash.clone());
        let mut part = session.parts.len() as u32;
        // A call cut off before recording this part may have left its
        // files; the claim above stops it from recording, and a file left
        // under a name this part needs would refuse the new one.
        if resumed {
            self.clear_part(id, part, codec.total_shards()).await?;
        }
        loop {
            let before = body.hasher.bytes();
            body.allow(session.part_bytes);
            let layout = Layout {
                object: id,
                first_segment: part,
                codec: &codec,
                block_size: session.block_size,
                segment_stripes: session.segment_stripes,
            };
            let mut segments = Vec::new();
            write_segments(
                &self.peers,
                || self.candidates(),
                layout,
                &mut body,
                &mut segments,
            )
            .await?;
            // Nothing more: the object ended on a part boundary.
            let Some(segment) = segments.pop() else {
                return Ok(());
            };
            let bytes = body.hasher.bytes();
            let finished = bytes - before < session.part_bytes;
            self.cluster
                .propose(Command::RecordPart {
                    object_id: id,
                    writer,
                    part,
                    segment,
                    hash: body.hasher.clone(),
                    finished,
                    touched_ms: now_ms(),
                })
                .await
                .map_err(refused)?;
            durable(part, bytes);
            crate::crash::point("upload::after_part");
            part += 1;
            if finished || body.ended {
                return Ok(());
            }
        }
    }

    /// Deletes whatever files of `part` of `id` any active node holds.
    /// Fails if a node did not answer in time: its delete may still be
    /// pending, and must not meet this call's new files (a holder drops a
    /// delete that waited longer than the caller waits, so the call can be
    /// retried).
    async fn clear_part(&self, id: ObjectId, part: u32, width: usize) -> Result<(), ObjectError> {
        let nodes = self.candidates()?;
        let deletes = nodes.iter().flat_map(|node| {
            (0..width as u32).map(move |index| {
                let shard = ShardId {
                    object_id: id,
                    segment: part,
                    index,
                };
                async move { (node.id, self.peers.delete(node.id, shard).await) }
            })
        });
        for (node, result) in futures::future::join_all(deletes).await {
            match result {
                Ok(_) => {}
                Err(e @ super::peers::PeerError::TimedOut { .. }) => {
                    return Err(ObjectError::Unavailable(format!(
                        "node {node} did not confirm clearing part {part} of upload {id} ({e}); retry"
                    )))
                }
                // Unreachable: it received nothing to carry out later.
                Err(e) => {
                    tracing::debug!(node, upload = %id, part, error = %e, "stale part file not cleared")
                }
            }
        }
        Ok(())
    }

    /// Commits session `id` as its object, once `size` (what the client
    /// sent) is what is durable and the SHA-256 matches what was expected.
    pub async fn complete_upload(
        &self,
        caught_up: CaughtUp,
        id: ObjectId,
        principal: &str,
        size: u64,
        expected_sha256: Option<&str>,
    ) -> Result<ObjectManifest, ObjectError> {
        let (upload, session) = self.upload_session(caught_up, id, principal)?;
        if size != session.durable_bytes() {
            return Err(ObjectError::FailedPrecondition(format!(
                "upload {id} has {} bytes durable, not the {size} the client sent; send from {}",
                session.durable_bytes(),
                session.durable_bytes()
            )));
        }
        let sha256 = hex::encode(session.hash.finish());
        let asked = expected_sha256.map(normalize_sha256).transpose()?;
        for expected in [session.expected_sha256.as_ref(), asked.as_ref()]
            .into_iter()
            .flatten()
        {
            if *expected != sha256 {
                return Err(ObjectError::InvalidArgument(format!(
                    "SHA-256 mismatch: expected {expected}, the stored bytes hash to {sha256}; \
                     the upload stays open"
                )));
            }
        }
        let bucket =
            self.cluster.meta().bucket(&upload.bucket)?.ok_or_else(|| {
                ObjectError::NotFound(format!("no bucket named {}", upload.bucket))
            })?;
        let policy = match &bucket.retention {
            Some(name) => self.cluster.meta().retention_policy(name)?,
            None => None,
        };
        let created_ms = match bucket.retention {
            Some(_) => self.cluster.cluster_time().await?,
            None => now_ms(),
        };
        let (encryption, key) = match &session.encryption {
            Some(enc) => {
                let key = self.data_key(id, &enc.key).await?;
                let epoch = self.epoch_for(policy.as_ref()).await?;
                let sealed = ObjectEncryption {
                    chunk_bytes: enc.chunk_bytes,
                    key: key.wrap_epoch(&epoch),
                };
                (Some(sealed), Some(key))
            }
            None => (None, None),
        };
        let mut manifest = ObjectManifest {
            bucket: upload.bucket,
            key: upload.key,
            object_id: id,
            size,
            sha256,
            content_type: session.content_type,
            metadata: session.metadata,
            data: session.data,
            parity: session.parity,
            block_size: session.block_size,
            segment_stripes: session.segment_stripes,
            created_ms,
            segments: session.parts,
            encryption,
            retention: None,
            ingested_by: String::new(),
            etag: String::new(),
        };
        let stored: u64 = manifest.segments.iter().map(|s| s.bytes).sum();
        if stored != manifest.stored_size() {
            return Err(ObjectError::Internal(format!(
                "upload {id} stored {stored} bytes for {size} object bytes, expected {}",
                manifest.stored_size()
            )));
        }
        let committed = self
            .commit_rewrapping(principal, &mut manifest, key.as_ref(), policy.as_ref())
            .await?;
        match committed {
            Ok(()) => Ok(manifest),
            Err(ClusterError::Meta(refusal)) => Err(refused(ClusterError::Meta(refusal))),
            // The session stays until the commit is known either way: a
            // retry finds the object (the session is then gone) or
            // completes it.
            Err(unknown) => Err(ObjectError::Unavailable(format!(
                "the outcome of completing upload {id} is unknown ({unknown}); complete it \
                 again: NOT_FOUND then means it was stored, and Stat shows it"
            ))),
        }
    }

    /// Ends session `id` without an object, on record as `principal`'s
    /// abort; its shard files are deleted from every node. Only its own
    /// principal may, unless `any_owner` (the caller may delete in the
    /// session's bucket: an administrator clearing a session whose id its
    /// client lost).
    pub async fn abort_upload_session(
        &self,
        caught_up: CaughtUp,
        id: ObjectId,
        principal: &str,
        any_owner: bool,
    ) -> Result<(), ObjectError> {
        let (upload, _) = match any_owner {
            true => self.upload_record(caught_up, id)?,
            false => self.upload_session(caught_up, id, principal)?,
        };
        let audit = self.audit_record(principal, "upload abort", &upload.bucket, &upload.key, "");
        self.cluster
            .propose(Command::AbortUpload {
                object_id: id,
                audit: Some(audit),
                if_touched_ms: None,
            })
            .await
            .map_err(refused)?;
        // The abort committed: no manifest can name these files any more.
        // Files not deleted now are orphans for collection.
        match self.candidates() {
            Ok(nodes) => self.delete_shards(id, nodes.iter().map(|c| c.id).collect()),
            Err(e) => tracing::warn!(upload = %id, error = %e, "aborted; files left to GC"),
        }
        Ok(())
    }
}

/// Refuses data that does not start where the session's durable bytes end.
fn check_offset(id: ObjectId, session: &UploadSession, offset: u64) -> Result<(), ObjectError> {
    if session.finished {
        return Err(ObjectError::FailedPrecondition(format!(
            "upload {id} ended with its last part at {} bytes; complete it",
            session.durable_bytes()
        )));
    }
    if offset != session.durable_bytes() {
        return Err(ObjectError::FailedPrecondition(format!(
            "upload {id} has {} bytes durable; send from offset {}, not {offset}",
            session.durable_bytes(),
            session.durable_bytes()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_whole_sealed_chunks_and_whole_stripes() {
        for (data, parity) in [(4, 2), (3, 2), (10, 4), (1, 1)] {
            let codec = Codec::new(data, parity).expect("codec");
            for sealed in [true, false] {
                for shard_bytes in [4096, 1 << 20, 4 << 20] {
                    let (block, stripes, part) = part_layout(&codec, shard_bytes, 64 << 20, sealed);
                    let chunks = part / CHUNK_BYTES as u64;
                    assert_eq!(part % CHUNK_BYTES as u64, 0);
                    let stored_chunk = CHUNK_BYTES as u64 + if sealed { TAG_BYTES } else { 0 };
                    // The part's stored bytes fill its stripes exactly.
                    assert_eq!(
                        chunks * stored_chunk,
                        stripes as u64 * data as u64 * block as u64
                    );
                    assert!(part <= 64 << 20 || stripes == 1, "{part}");
                    assert!(part > 0);
                }
            }
        }
    }

    #[test]
    fn sha256_from_clients_is_normalised_or_refused() {
        let upper = "AB".repeat(32);
        assert_eq!(normalize_sha256(&upper).expect("hex"), "ab".repeat(32));
        assert!(normalize_sha256("abc").is_err());
        assert!(normalize_sha256(&"zz".repeat(32)).is_err());
    }
}
