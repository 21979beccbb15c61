//! The public `tresor.v1.Objects` service.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tresor_proto::v1 as pb;
use tresor_proto::v1::objects_server::Objects;

use super::admission::{Admission, Traffic};
use super::audit::AuditSink;
use super::auth::{kept_by_cluster, peer_name, Action, Authorizer, Caller};
use super::views::{hold_pb, object_info};
use super::{object_status, outcome_of, store_status};
use crate::meta::audit::is_reserved_bucket;
use crate::metrics::Metrics;
use crate::objects::{DataPlane, ObjectError, ObjectRange, PutSpec};
use std::time::{Duration, Instant};

/// How long a Put may go without a message from its client before it is
/// cut off and nothing is stored.
pub(super) const PUT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an upload's stream of bytes broke off, as the data plane reports it.
pub(super) fn broken_upload(status: Status) -> ObjectError {
    if crate::api::status::is_over_size_limit(&status) {
        return ObjectError::ResourceExhausted(format!("{}; nothing was stored", status.message()));
    }
    if status.code() == tonic::Code::DeadlineExceeded {
        return ObjectError::Cancelled(format!(
            "upload stalled: {}; nothing was stored",
            status.message()
        ));
    }
    ObjectError::Cancelled(format!("upload stream broke off: {}", status.message()))
}

/// What a Put's (or a session's) header asks to store, on `principal`'s
/// behalf.
pub(super) fn put_spec(header: pb::PutHeader, principal: &str) -> PutSpec {
    PutSpec {
        bucket: header.bucket,
        key: header.key,
        content_type: header.content_type,
        metadata: header.metadata.into_iter().collect(),
        expected_sha256: Some(header.expected_sha256).filter(|s| !s.is_empty()),
        principal: principal.to_string(),
        etag: None,
    }
}

/// Object API of one node; any node coordinates any request.
pub struct ObjectsService {
    plane: Arc<DataPlane>,
    metrics: Metrics,
    audit: AuditSink,
    auth: Authorizer,
    admission: Admission,
}

impl ObjectsService {
    /// Serves `plane`, counting requests in `metrics`, recording them in
    /// `audit`, and taking on what `admission` (the node's, shared with
    /// every service that moves objects) lets in.
    pub fn new(
        plane: Arc<DataPlane>,
        metrics: Metrics,
        audit: AuditSink,
        admission: Admission,
    ) -> Self {
        let auth = Authorizer::new(plane.cluster().clone(), audit.clone());
        Self {
            plane,
            metrics,
            audit,
            auth,
            admission,
        }
    }

    /// Authenticates and authorises a call naming `bucket` and `key`; a
    /// refusal is audited (by the authorizer) and counted in the metrics.
    /// Proof that this node caught up during the request: the one the
    /// authorizer took, or a fresh one where it answered locally.
    /// The shape of every call naming one bucket: admit the caller, carry
    /// the call out (`inner`, which also says what it served), put it on
    /// record as `when` says, and count it.
    async fn serve<Req, T>(
        &self,
        request: Request<Req>,
        action: Action,
        (bucket, key): (String, String),
        when: Audit,
        inner: impl AsyncFnOnce(Request<Req>, &Caller) -> Result<(T, Served), Status>,
    ) -> Result<T, Status> {
        let started = Instant::now();
        let caller = self.admit(&request, action, &bucket, &key, started).await?;
        let principal = caller.name();
        let result = inner(request, &caller).await;
        let served = result.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
        let result = result.map(|(r, _)| r);
        let result = match when {
            Audit::BeforeAnswer => {
                self.audit
                    .before(
                        principal,
                        action.name(),
                        (&bucket, &key),
                        &served.sha256,
                        result,
                    )
                    .await
            }
            Audit::FailuresOnly => {
                if let Err(status) = &result {
                    // Only the failure is held across the record's await.
                    let failed: Result<(), Status> = Err(status.clone());
                    self.audit_after(principal, action.name(), &bucket, &key, "", &failed)
                        .await;
                }
                result
            }
        };
        self.record(action.name(), started, &result, 0, served.bytes_out);
        result
    }

    async fn admit<T>(
        &self,
        request: &Request<T>,
        action: Action,
        bucket: &str,
        key: &str,
        started: Instant,
    ) -> Result<Caller, Status> {
        let checked = self.auth.check(request, action, Some(bucket), key).await;
        if checked.is_err() {
            self.record(action.name(), started, &checked, 0, 0);
        }
        checked
    }

    /// Audits a change after it happened (it cannot be undone by a failed
    /// record, which is logged loudly instead).
    async fn audit_after<T>(
        &self,
        principal: &str,
        action: &str,
        bucket: &str,
        key: &str,
        sha: &str,
        result: &Result<T, Status>,
    ) {
        self.audit
            .after(principal, action, (bucket, key), sha, result)
            .await
    }

    fn record<T>(
        &self,
        op: &str,
        started: Instant,
        result: &Result<T, Status>,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let outcome = outcome_of(result);
        self.metrics.request(
            op,
            &outcome,
            bytes_in,
            bytes_out,
            started.elapsed().as_secs_f64(),
        );
    }
}

/// When a call is put on record in the audit log.
#[derive(Clone, Copy)]
enum Audit {
    /// Before its answer is sent (reads): no record, no answer.
    BeforeAnswer,
    /// Only when it fails: a change that happened committed its record
    /// with it.
    FailuresOnly,
}

/// What a call served, for its audit entry and its metrics.
#[derive(Clone, Default)]
struct Served {
    /// The object's SHA-256, when one object was served.
    sha256: String,
    /// Object bytes it is to send.
    bytes_out: u64,
}

impl Served {
    fn object(sha256: &str) -> Self {
        Self {
            sha256: sha256.to_string(),
            bytes_out: 0,
        }
    }
}

type GetStream = Pin<Box<dyn Stream<Item = Result<pb::GetResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Objects for ObjectsService {
    async fn put(
        &self,
        request: Request<Streaming<pb::PutRequest>>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let started = Instant::now();
        let mut named = (String::new(), String::new());
        // Who it is, before a byte of the body is read; whether they may
        // put into the bucket once the header names it.
        let (principal, result) = match self.auth.authenticate(&request, Action::Put).await {
            Ok(caller) => {
                let result = match self.admission.enter(Traffic::Upload) {
                    Ok(_permit) => self.put_inner(request, &caller, &mut named).await,
                    Err(busy) => Err(busy),
                };
                (caller.name().to_string(), result)
            }
            Err(status) => (peer_name(&request), Err(status)),
        };
        let size = result.as_ref().map(|r| r.get_ref().size).unwrap_or(0);
        let sha = result
            .as_ref()
            .map(|r| r.get_ref().sha256.clone())
            .unwrap_or_default();
        self.record("put", started, &result, size, 0);
        // A stored object committed with its audit record; a refusal or a
        // failure is recorded here.
        if result.is_err() {
            self.audit_after(&principal, "put", &named.0, &named.1, &sha, &result)
                .await;
        }
        result
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<Self::GetStream>, Status> {
        let named = (
            request.get_ref().bucket.clone(),
            request.get_ref().key.clone(),
        );
        // The read is on record before a byte of it leaves the node.
        let inner = async |r, c: &Caller| self.get_inner(r, c).await;
        self.serve(request, Action::Get, named, Audit::BeforeAnswer, inner)
            .await
    }

    async fn stat(
        &self,
        request: Request<pb::StatRequest>,
    ) -> Result<Response<pb::ObjectInfo>, Status> {
        let named = (
            request.get_ref().bucket.clone(),
            request.get_ref().key.clone(),
        );
        let inner = async |r, c: &Caller| self.stat_inner(r, c).await;
        self.serve(request, Action::Stat, named, Audit::BeforeAnswer, inner)
            .await
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let named = (
            request.get_ref().bucket.clone(),
            request.get_ref().prefix.clone(),
        );
        let inner = async |r, c: &Caller| self.list_inner(r, c).await;
        self.serve(request, Action::List, named, Audit::BeforeAnswer, inner)
            .await
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let named = (
            request.get_ref().bucket.clone(),
            request.get_ref().key.clone(),
        );
        // A delete that happened committed with its audit record.
        let inner = async |r, c: &Caller| self.delete_inner(r, c).await;
        self.serve(request, Action::Delete, named, Audit::FailuresOnly, inner)
            .await
    }

    type GetStream = GetStream;
}

impl ObjectsService {
    async fn put_inner(
        &self,
        request: Request<Streaming<pb::PutRequest>>,
        caller: &Caller,
        named: &mut (String, String),
    ) -> Result<Response<pb::PutResponse>, Status> {
        let mut inbound = request.into_inner();
        // The upload's permit is held from here: a client that never sends
        // its header does not keep it.
        let first = tokio::time::timeout(PUT_STALL_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::cancelled(format!("no header within {PUT_STALL_TIMEOUT:?}")))??;
        let header = match first.and_then(|m| m.msg) {
            Some(pb::put_request::Msg::Header(h)) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a Put must be its header (bucket, key, ...)",
                ))
            }
        };
        *named = (header.bucket.clone(), header.key.clone());
        self.auth
            .authorize(caller, Action::Put, Some(&header.bucket))?;
        if is_reserved_bucket(&header.bucket) {
            return Err(kept_by_cluster(&header.bucket));
        }
        let spec = put_spec(header, caller.name());
        // A client that stops sending mid-upload is cut off rather than
        // holding the upload's buffers and shard streams for ever.
        let inbound = futures::stream::unfold(inbound, |mut inbound| async move {
            match tokio::time::timeout(PUT_STALL_TIMEOUT, inbound.next()).await {
                Ok(Some(m)) => Some((m, inbound)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(Status::deadline_exceeded(format!(
                        "no data for {PUT_STALL_TIMEOUT:?}"
                    ))),
                    inbound,
                )),
            }
        });
        let body = inbound.filter_map(|m| async move {
            match m {
                Ok(pb::PutRequest {
                    msg: Some(pb::put_request::Msg::Data(data)),
                }) => Some(Ok(data)),
                Ok(pb::PutRequest {
                    msg: Some(pb::put_request::Msg::Header(_)),
                }) => Some(Err(ObjectError::InvalidArgument(
                    "a Put carries one header, as its first message".into(),
                ))),
                Ok(pb::PutRequest { msg: None }) => None,
                Err(status) => Some(Err(broken_upload(status))),
            }
        });
        let (bucket, key) = (spec.bucket.clone(), spec.key.clone());
        let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
        let manifest = self
            .plane
            .put(caught_up, spec, Box::pin(body))
            .await
            .map_err(|e| {
                tracing::warn!(bucket, key, error = %e, "put failed");
                object_status(e)
            })?;
        Ok(Response::new(pb::PutResponse {
            bucket: manifest.bucket,
            key: manifest.key,
            size: manifest.size,
            sha256: manifest.sha256,
        }))
    }

    async fn get_inner(
        &self,
        request: Request<pb::GetRequest>,
        caller: &Caller,
    ) -> Result<(Response<GetStream>, Served), Status> {
        // Held by the stream until its last message.
        let permit = self.admission.enter(Traffic::Download)?;
        let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
        let req = request.into_inner();
        let range = ObjectRange {
            offset: req.offset.unwrap_or(0),
            length: req.length,
        };
        let (manifest, (start, end), bytes) = self
            .plane
            .get(caught_up, &req.bucket, &req.key, range)
            .await
            .map_err(object_status)?;
        let sha = manifest.sha256.clone();
        let info = pb::GetResponse {
            msg: Some(pb::get_response::Msg::Info(object_info(&manifest))),
            range: Some(pb::ByteRange {
                offset: start,
                length: end - start,
            }),
        };
        let data = bytes.map(|chunk| {
            chunk
                .map(|data| pb::GetResponse {
                    msg: Some(pb::get_response::Msg::Data(data)),
                    range: None,
                })
                .map_err(object_status)
        });
        let stream = futures::stream::once(async { Ok(info) })
            .chain(data)
            .map(move |message| {
                let _held = &permit;
                message
            });
        let served = Served {
            sha256: sha,
            bytes_out: end - start,
        };
        Ok((Response::new(Box::pin(stream)), served))
    }

    async fn stat_inner(
        &self,
        request: Request<pb::StatRequest>,
        caller: &Caller,
    ) -> Result<(Response<pb::ObjectInfo>, Served), Status> {
        let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
        let req = request.into_inner();
        let manifest = self
            .plane
            .manifest(caught_up, &req.bucket, &req.key)
            .map_err(object_status)?;
        let mut info = object_info(&manifest);
        info.holds = self
            .plane
            .cluster()
            .meta()
            .holds_on(&req.bucket, &req.key)
            .map_err(store_status)?
            .iter()
            .map(hold_pb)
            .collect();
        Ok((Response::new(info), Served::object(&manifest.sha256)))
    }

    async fn list_inner(
        &self,
        request: Request<pb::ListRequest>,
        caller: &Caller,
    ) -> Result<(Response<pb::ListResponse>, Served), Status> {
        let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
        let req = request.into_inner();
        let after = Some(req.page_token.as_str()).filter(|t| !t.is_empty());
        let (objects, next) = self
            .plane
            .list(
                caught_up,
                &req.bucket,
                &req.prefix,
                after,
                req.page_size as usize,
            )
            .map_err(object_status)?;
        let page = pb::ListResponse {
            objects: objects.iter().map(object_info).collect(),
            next_page_token: next.unwrap_or_default(),
        };
        Ok((Response::new(page), Served::default()))
    }

    async fn delete_inner(
        &self,
        request: Request<pb::DeleteRequest>,
        caller: &Caller,
    ) -> Result<(Response<pb::DeleteResponse>, Served), Status> {
        let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
        let req = request.into_inner();
        self.plane
            .delete(caught_up, &req.bucket, &req.key, caller.name())
            .await
            .map_err(object_status)?;
        Ok((Response::new(pb::DeleteResponse {}), Served::default()))
    }
}
