//! The write path: stream in, cut into stripes, encode, stream each shard to
//! its node, and commit the manifest only after every segment's shard files
//! are durable.
//!
//! Memory per upload is one stripe being filled plus, per target node, a
//! few blocks in flight — never a function of the object's size.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::peers::Peers;
use super::targets::{commit_all, open_segment};
use super::upload::{delete_shards_of, keep_alive, KeepAlive, Settled};
use super::{DataPlane, ObjectError};
use crate::crypto::{DataKey, CHUNK_BYTES};
use crate::erasure::Codec;
use crate::meta::ObjectEncryption;
use crate::meta::{
    now_ms, validate_attributes, validate_bucket_name, validate_key, Command, HashState, ObjectId,
    ObjectManifest, SegmentManifest, ShardLocation, UploadRecord,
};
use crate::placement::Candidate;
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
}

/// The object's bytes, as the client sends them.
pub trait PutBody: Stream<Item = Result<Vec<u8>, ObjectError>> + Unpin + Send {}
impl<T: Stream<Item = Result<Vec<u8>, ObjectError>> + Unpin + Send> PutBody for T {}

/// Pulls the body into stripe-sized buffers of stored bytes, hashing the
/// object's bytes as it goes and, with a data key, sealing them chunk by
/// chunk first.
pub(super) struct Body<S> {
    stream: S,
    pending: Vec<u8>,
    pos: usize,
    /// SHA-256 of the object's bytes so far (a resumed upload's included).
    pub(super) hasher: HashState,
    /// Object bytes taken from this stream.
    pub(super) size: u64,
    /// Object bytes that may still be taken before the body pauses (a
    /// part's end); the stream goes on after [`Body::allow`].
    allowed: u64,
    /// The data key and the next chunk's index, when encrypting.
    seal: Option<(DataKey, u64)>,
    /// A sealed chunk being handed out, and how far.
    sealed: Vec<u8>,
    sealed_pos: usize,
    /// The client's stream has ended.
    pub(super) ended: bool,
}

impl<S: PutBody> Body<S> {
    pub(super) fn new(stream: S, key: Option<DataKey>) -> Self {
        Self::resume(stream, key, 0, HashState::default())
    }

    /// A body that goes on after `hasher.bytes()` object bytes stored
    /// before, whose next sealed chunk is `chunk`.
    pub(super) fn resume(stream: S, key: Option<DataKey>, chunk: u64, hasher: HashState) -> Self {
        Self {
            stream,
            pending: Vec::new(),
            pos: 0,
            hasher,
            size: 0,
            allowed: u64::MAX,
            seal: key.map(|k| (k, chunk)),
            sealed: Vec::new(),
            sealed_pos: 0,
            ended: false,
        }
    }

    /// Lets `bytes` more object bytes be taken, then pauses again.
    pub(super) fn allow(&mut self, bytes: u64) {
        self.allowed = bytes;
    }

    /// Fills `buf` with up to `want` object bytes; fewer only at the end
    /// (of the stream, or of what is allowed).
    async fn fill_plain(&mut self, buf: &mut Vec<u8>, want: usize) -> Result<(), ObjectError> {
        buf.clear();
        let want = want.min(usize::try_from(self.allowed).unwrap_or(usize::MAX));
        while buf.len() < want && !self.ended {
            if self.pos == self.pending.len() {
                match self.stream.next().await {
                    Some(Ok(chunk)) => {
                        self.pending = chunk;
                        self.pos = 0;
                        continue;
                    }
                    Some(Err(e)) => return Err(e),
                    None => {
                        self.ended = true;
                        break;
                    }
                }
            }
            let take = (want - buf.len()).min(self.pending.len() - self.pos);
            buf.extend_from_slice(&self.pending[self.pos..self.pos + take]);
            self.pos += take;
        }
        self.hasher.update(&buf[..]);
        self.size += buf.len() as u64;
        self.allowed -= buf.len() as u64;
        Ok(())
    }

    /// Fills `buf` with up to `want` stored bytes; fewer only at the end.
    async fn fill(&mut self, buf: &mut Vec<u8>, want: usize) -> Result<(), ObjectError> {
        if self.seal.is_none() {
            return self.fill_plain(buf, want).await;
        }
        buf.clear();
        while buf.len() < want {
            if self.sealed_pos == self.sealed.len() {
                let mut chunk = std::mem::take(&mut self.sealed);
                self.fill_plain(&mut chunk, CHUNK_BYTES as usize).await?;
                self.sealed_pos = 0;
                if chunk.is_empty() {
                    self.sealed = chunk;
                    break;
                }
                if let Some((key, index)) = &mut self.seal {
                    key.seal(*index, &mut chunk);
                    *index += 1;
                }
                self.sealed = chunk;
            }
            let take = (want - buf.len()).min(self.sealed.len() - self.sealed_pos);
            buf.extend_from_slice(&self.sealed[self.sealed_pos..self.sealed_pos + take]);
            self.sealed_pos += take;
        }
        Ok(())
    }
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
            .map(super::sessions::normalize_sha256)
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

/// How an object's bytes are cut: its id, erasure code, block size and
/// stripes per segment.
#[derive(Clone, Copy)]
pub(super) struct Layout<'a> {
    pub(super) object: ObjectId,
    /// The index of the first segment written.
    pub(super) first_segment: u32,
    pub(super) codec: &'a Codec,
    pub(super) block_size: u32,
    pub(super) segment_stripes: u32,
}

/// Streams `body` into segments of shard files on nodes chosen among
/// `candidates()` (asked again for each segment), pushing each segment's
/// manifest onto `segments` — its placement as soon as it is chosen, so a
/// failure part-way still knows which nodes to clean up. Fails when a
/// segment cannot get `data + 1` durable shard files.
pub(super) async fn write_segments<S: PutBody>(
    peers: &Peers,
    candidates: impl Fn() -> Result<Vec<Candidate>, ObjectError>,
    layout: Layout<'_>,
    body: &mut Body<S>,
    segments: &mut Vec<SegmentManifest>,
) -> Result<(), ObjectError> {
    let stripe_bytes = layout.codec.data_shards() * layout.block_size as usize;
    let mut stripe = Vec::with_capacity(stripe_bytes);
    body.fill(&mut stripe, stripe_bytes).await?;
    let mut segment = layout.first_segment;
    while !stripe.is_empty() {
        let sent = send_segment(peers, candidates()?, layout, segment, body, &mut stripe).await;
        let sent = match sent {
            Ok(sent) => sent,
            Err((e, placed)) => {
                if !placed.shards.is_empty() {
                    segments.push(placed);
                }
                return Err(e);
            }
        };
        segments.push(sent.placed.clone());
        let written = commit_segment(sent, layout).await;
        if let Some(last) = segments.last_mut() {
            match written {
                Ok(done) => *last = done,
                Err((e, placed)) => {
                    *last = placed;
                    return Err(e);
                }
            }
        }
        crate::crash::point("put::after_segment");
        segment += 1;
    }
    Ok(())
}

/// A segment whose blocks are all sent, its shard files not yet
/// committed.
pub(super) struct SentSegment {
    segment: u32,
    targets: Vec<Option<super::peers::Target>>,
    /// Object (stored) bytes in it.
    bytes: u64,
    /// Where its shard files are being written, for clean-up.
    pub(super) placed: SegmentManifest,
}

/// Places segment `segment` and streams its stripes to its nodes, from
/// `stripe` (filled already) on: at most `segment_stripes` of them, or to
/// the body's end. Leaves the next stripe in `stripe`. A failure comes
/// with the placement so far, for clean-up.
pub(super) async fn send_segment<S: PutBody>(
    peers: &Peers,
    candidates: Vec<Candidate>,
    layout: Layout<'_>,
    segment: u32,
    body: &mut Body<S>,
    stripe: &mut Vec<u8>,
) -> Result<SentSegment, (ObjectError, SegmentManifest)> {
    let Layout {
        object,
        codec,
        block_size,
        segment_stripes,
        ..
    } = layout;
    let stripe_bytes = codec.data_shards() * block_size as usize;
    let mut targets = open_segment(peers, candidates, object, segment, codec, block_size)
        .await
        .map_err(|e| {
            (
                e,
                SegmentManifest {
                    bytes: 0,
                    shards: Vec::new(),
                },
            )
        })?;
    // Record the nodes now so a failure below still cleans them up.
    let placed = SegmentManifest {
        bytes: 0,
        shards: targets
            .iter()
            .map(|t| ShardLocation {
                node: t.as_ref().map(|t| t.node),
                digest: None,
                damaged: false,
            })
            .collect(),
    };
    let mut bytes = 0u64;
    let mut stripes = 0u32;
    loop {
        let shards = match codec.encode(stripe) {
            Ok(shards) => shards,
            Err(e) => return Err((ObjectError::Internal(format!("encoding: {e}")), placed)),
        };
        let sends = targets
            .iter_mut()
            .zip(shards)
            .filter_map(|(t, shard)| t.as_mut().map(|t| t.send(Bytes::from(shard))));
        futures::future::join_all(sends).await;
        bytes += stripe.len() as u64;
        stripes += 1;

        let full = stripe.len() == stripe_bytes;
        if let Err(e) = body.fill(stripe, stripe_bytes).await {
            return Err((e, placed));
        }
        if !full || stripe.is_empty() || stripes == segment_stripes {
            break;
        }
    }
    Ok(SentSegment {
        segment,
        targets,
        bytes,
        placed,
    })
}

/// Commits the shard files of a sent segment: its manifest once at least
/// `data + 1` are durable, else the error with the placement (the nodes
/// of failed writes included) for clean-up.
pub(super) async fn commit_segment(
    sent: SentSegment,
    layout: Layout<'_>,
) -> Result<SegmentManifest, (ObjectError, SegmentManifest)> {
    let SentSegment {
        segment,
        mut targets,
        bytes,
        mut placed,
    } = sent;
    let (object, codec) = (layout.object, layout.codec);
    let needed = (codec.data_shards() + 1).min(codec.total_shards());
    let results = commit_all(&mut targets, needed).await;
    let mut shards = Vec::with_capacity(results.len());
    for (index, result) in results.into_iter().enumerate() {
        shards.push(match result {
            Some(Ok((node, digest))) => ShardLocation::at(node, digest),
            Some(Err(e)) => {
                tracing::warn!(%object, segment, index, error = %e, "shard write failed");
                ShardLocation::missing()
            }
            None => ShardLocation::missing(),
        });
    }
    let durable = shards.iter().filter(|s| s.node.is_some()).count();
    if durable < needed {
        // Keep the recorded nodes of failed writes for clean-up.
        for (slot, written) in placed.shards.iter_mut().zip(&shards) {
            if written.node.is_some() {
                *slot = written.clone();
            }
        }
        return Err((
            ObjectError::Unavailable(format!(
                "only {durable} of {} shard files of segment {segment} could be made durable; {needed} are needed",
                codec.total_shards()
            )),
            placed,
        ));
    }
    Ok(SegmentManifest { bytes, shards })
}
