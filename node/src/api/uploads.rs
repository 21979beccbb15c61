//! The public `tresor.v1.Uploads` service: resumable upload sessions over
//! the data plane's sessions (`objects::sessions`). Every call needs the
//! Put role on the session's bucket; the data plane checks that the caller
//! is the session's principal.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tresor_proto::v1 as pb;
use tresor_proto::v1::uploads_server::Uploads;

use super::admission::{Admission, Traffic};
use super::audit::AuditSink;
use super::auth::kept_by_cluster;
use super::auth::{peer_name, Action, Authorizer, Caller};
use super::objects::{broken_upload, put_spec, PUT_STALL_TIMEOUT};
use super::views::upload_info;
use super::{object_status, outcome_of};
use crate::meta::audit::is_reserved_bucket;
use crate::meta::{UploadRecord, UploadSession};
use crate::metrics::Metrics;
use crate::objects::{parse_upload_id, DataPlane, ObjectError};

type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::UploadProgress, Status>> + Send>>;

/// Upload sessions of one node; any node serves any session.
pub struct UploadsService {
    plane: Arc<DataPlane>,
    metrics: Metrics,
    audit: AuditSink,
    auth: Authorizer,
    admission: Admission,
}

impl UploadsService {
    /// Serves sessions of `plane`, sharing `admission`'s upload permits
    /// with the Put calls of the node.
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

    /// Who calls, or the refusal (audited as `action` on no object).
    async fn caller<T>(&self, request: &Request<T>, action: &str) -> Result<Caller, Status> {
        match self.auth.authenticate(request, Action::Put).await {
            Ok(caller) => Ok(caller),
            Err(status) => {
                let failed: Result<(), Status> = Err(status.clone());
                self.audit_after(&peer_name(request), action, "", "", &failed)
                    .await;
                Err(status)
            }
        }
    }

    /// The open session `upload_id` of `caller`, who must hold the Put role
    /// on its bucket; `named` is set to its bucket and key once known (for
    /// the record of a refusal).
    async fn session_of(
        &self,
        caller: &Caller,
        upload_id: &str,
        named: &mut (String, String),
    ) -> Result<(UploadRecord, UploadSession), Status> {
        let id = parse_upload_id(upload_id).map_err(object_status)?;
        let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
        let (upload, _) = self
            .plane
            .upload_record(caught_up, id)
            .map_err(object_status)?;
        *named = (upload.bucket.clone(), upload.key.clone());
        let (upload, session) = self
            .plane
            .upload_session(caught_up, id, caller.name())
            .map_err(object_status)?;
        self.auth
            .authorize(caller, Action::Put, Some(&upload.bucket))?;
        Ok((upload, session))
    }

    async fn audit_after<T>(
        &self,
        principal: &str,
        action: &str,
        bucket: &str,
        key: &str,
        result: &Result<T, Status>,
    ) {
        audit_after(&self.audit, principal, action, bucket, key, result).await
    }

    fn record<T>(&self, op: &str, started: Instant, result: &Result<T, Status>, bytes_in: u64) {
        let outcome = outcome_of(result);
        let secs = started.elapsed().as_secs_f64();
        self.metrics.request(op, &outcome, bytes_in, 0, secs);
    }
}

/// Records a call that changed nothing or whose change has no record of
/// its own.
async fn audit_after<T>(
    audit: &AuditSink,
    principal: &str,
    action: &str,
    bucket: &str,
    key: &str,
    result: &Result<T, Status>,
) {
    audit
        .after(principal, action, (bucket, key), "", result)
        .await
}

/// The bytes of an `UploadParts` stream after its header: `None` only
/// after `finish`; a stream that ends without it, stalls or breaks yields
/// an error, so the part it was in is dropped rather than taken as the
/// object's end.
fn parts_body(
    inbound: Streaming<pb::UploadPartsRequest>,
) -> impl Stream<Item = Result<Vec<u8>, ObjectError>> + Send + Unpin + 'static {
    use pb::upload_parts_request::Msg;
    Box::pin(futures::stream::unfold(Some(inbound), |state| async move {
        let mut inbound = state?;
        loop {
            let message = match tokio::time::timeout(PUT_STALL_TIMEOUT, inbound.message()).await {
                Ok(Ok(Some(m))) => m,
                Ok(Ok(None)) => {
                    let cut = ObjectError::Cancelled(
                        "the stream ended without `finish`: the part being sent is dropped; \
                         resume from durable_bytes"
                            .into(),
                    );
                    return Some((Err(cut), None));
                }
                Ok(Err(status)) => return Some((Err(broken_upload(status)), None)),
                Err(_) => {
                    let stalled = ObjectError::Cancelled(format!(
                        "upload stalled: no data for {PUT_STALL_TIMEOUT:?}; the part being sent \
                         is dropped"
                    ));
                    return Some((Err(stalled), None));
                }
            };
            match message.msg {
                Some(Msg::Data(data)) => return Some((Ok(data), Some(inbound))),
                Some(Msg::Finish(true)) => return None,
                Some(Msg::Finish(false)) | None => continue,
                Some(Msg::Header(_)) => {
                    let twice = ObjectError::InvalidArgument(
                        "an UploadParts call carries one header, as its first message".into(),
                    );
                    return Some((Err(twice), None));
                }
            }
        }
    }))
}

#[tonic::async_trait]
impl Uploads for UploadsService {
    async fn create_upload(
        &self,
        request: Request<pb::CreateUploadRequest>,
    ) -> Result<Response<pb::UploadInfo>, Status> {
        let started = Instant::now();
        let header = request.get_ref().header.clone().unwrap_or_default();
        let (bucket, key) = (header.bucket.clone(), header.key.clone());
        let caller = self
            .auth
            .check(&request, Action::Put, Some(&bucket), &key)
            .await?;
        let result = async {
            if is_reserved_bucket(&bucket) {
                return Err(kept_by_cluster(&bucket));
            }
            let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
            let spec = put_spec(header, caller.name());
            let max = self.admission.max_sessions();
            match self.plane.create_upload(caught_up, spec, max).await {
                Ok(upload) => match &upload.session {
                    Some(session) => Ok(Response::new(upload_info(&upload, session))),
                    None => Err(Status::internal("a session was created without its state")),
                },
                Err(e @ ObjectError::ResourceExhausted(_)) => {
                    Err(self.admission.with_hint(object_status(e)))
                }
                Err(e) => Err(object_status(e)),
            }
        }
        .await;
        self.audit_after(caller.name(), "upload create", &bucket, &key, &result)
            .await;
        self.record("upload create", started, &result, 0);
        result
    }

    type UploadPartsStream = ProgressStream;

    async fn upload_parts(
        &self,
        request: Request<Streaming<pb::UploadPartsRequest>>,
    ) -> Result<Response<ProgressStream>, Status> {
        let started = Instant::now();
        let caller = self.caller(&request, "upload parts").await?;
        let principal = caller.name().to_string();
        let mut named = (String::new(), String::new());
        let opened = async {
            let permit = self.admission.enter(Traffic::Upload)?;
            let mut inbound = request.into_inner();
            let first = tokio::time::timeout(PUT_STALL_TIMEOUT, inbound.message())
                .await
                .map_err(|_| {
                    Status::cancelled(format!("no header within {PUT_STALL_TIMEOUT:?}"))
                })??;
            let Some(pb::upload_parts_request::Msg::Header(header)) = first.and_then(|m| m.msg)
            else {
                return Err(Status::invalid_argument(
                    "the first message of UploadParts must be its header (upload_id, offset)",
                ));
            };
            let (upload, _) = self
                .session_of(&caller, &header.upload_id, &mut named)
                .await?;
            let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
            Ok((permit, inbound, header, upload, caught_up))
        }
        .await;
        let (permit, inbound, header, upload, caught_up) = match opened {
            Ok(opened) => opened,
            Err(status) => {
                let failed: Result<(), Status> = Err(status.clone());
                self.audit_after(&principal, "upload parts", &named.0, &named.1, &failed)
                    .await;
                self.record("upload parts", started, &failed, 0);
                return Err(status);
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let plane = self.plane.clone();
        let audit = self.audit.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let offset = header.offset;
            let mut sent = 0u64;
            let mut durable = |part: u32, bytes: u64| {
                sent = bytes - offset;
                let progress = pb::UploadProgress {
                    part,
                    durable_bytes: bytes,
                };
                // A client gone is no reason to stop: its parts still count.
                let _ = tx.send(Ok(progress));
            };
            let body = parts_body(inbound);
            let result = plane
                .upload_parts(
                    caught_up,
                    upload.object_id,
                    &principal,
                    offset,
                    body,
                    &mut durable,
                )
                .await
                .map_err(object_status);
            // The node's upload permit is free again before the answer goes
            // out: a client retrying at once is not refused for its own call.
            drop(permit);
            if let Err(status) = &result {
                tracing::info!(upload = %upload.object_id, error = %status.message(), "upload parts ended");
                let _ = tx.send(Err(status.clone()));
                audit_after(
                    &audit,
                    &principal,
                    "upload parts",
                    &upload.bucket,
                    &upload.key,
                    &result,
                )
                .await;
            }
            let outcome = outcome_of(&result);
            let secs = started.elapsed().as_secs_f64();
            metrics.request("upload parts", &outcome, sent, 0, secs);
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    async fn get_upload(
        &self,
        request: Request<pb::UploadRef>,
    ) -> Result<Response<pb::UploadInfo>, Status> {
        let started = Instant::now();
        let caller = self.caller(&request, "upload get").await?;
        let mut named = (String::new(), String::new());
        let result = self
            .session_of(&caller, &request.get_ref().upload_id, &mut named)
            .await
            .map(|(upload, session)| Response::new(upload_info(&upload, &session)));
        if result.is_err() {
            self.audit_after(caller.name(), "upload get", &named.0, &named.1, &result)
                .await;
        }
        self.record("upload get", started, &result, 0);
        result
    }

    async fn complete_upload(
        &self,
        request: Request<pb::CompleteUploadRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let started = Instant::now();
        let caller = self.caller(&request, "put").await?;
        let req = request.into_inner();
        let mut named = (String::new(), String::new());
        let result = async {
            let (upload, _) = self.session_of(&caller, &req.upload_id, &mut named).await?;
            let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
            let expected = Some(req.expected_sha256.as_str()).filter(|s| !s.is_empty());
            let manifest = self
                .plane
                .complete_upload(
                    caught_up,
                    upload.object_id,
                    caller.name(),
                    req.size,
                    expected,
                )
                .await
                .map_err(object_status)?;
            Ok(Response::new(pb::PutResponse {
                bucket: manifest.bucket,
                key: manifest.key,
                size: manifest.size,
                sha256: manifest.sha256,
            }))
        }
        .await;
        // A stored object committed with its audit record ("put").
        if result.is_err() {
            self.audit_after(caller.name(), "put", &named.0, &named.1, &result)
                .await;
        }
        let size = result.as_ref().map(|r| r.get_ref().size).unwrap_or(0);
        self.record("upload complete", started, &result, size);
        result
    }

    async fn abort_upload(
        &self,
        request: Request<pb::UploadRef>,
    ) -> Result<Response<pb::AbortUploadResponse>, Status> {
        let started = Instant::now();
        let caller = self.caller(&request, "upload abort").await?;
        let mut named = (String::new(), String::new());
        let result = async {
            let id = parse_upload_id(&request.get_ref().upload_id).map_err(object_status)?;
            let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
            let (upload, session) = self
                .plane
                .upload_record(caught_up, id)
                .map_err(object_status)?;
            named = (upload.bucket.clone(), upload.key.clone());
            // Its own principal may abort it; so may whoever may delete in
            // its bucket (an administrator, for a session whose id is lost).
            let owner = session.principal == caller.name();
            let action = if owner { Action::Put } else { Action::Delete };
            if !owner
                && self
                    .auth
                    .authorize(&caller, Action::Delete, Some(&upload.bucket))
                    .is_err()
            {
                return Err(Status::permission_denied(format!(
                    "upload {id} belongs to another principal; only it, or a principal who \
                     may delete in bucket {}, may abort it",
                    upload.bucket
                )));
            }
            self.auth.authorize(&caller, action, Some(&upload.bucket))?;
            self.plane
                .abort_upload_session(caught_up, id, caller.name(), !owner)
                .await
                .map_err(object_status)?;
            Ok(Response::new(pb::AbortUploadResponse {}))
        }
        .await;
        // An abort that happened committed with its audit record.
        if result.is_err() {
            self.audit_after(caller.name(), "upload abort", &named.0, &named.1, &result)
                .await;
        }
        self.record("upload abort", started, &result, 0);
        result
    }
}
