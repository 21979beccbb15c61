//! The S3-compatible API: what camera vendors' software, backup tools and
//! scripts speak. s3s parses the HTTP requests, verifies SigV4 (with the
//! secret of the access key, see [`SecretLookup`]) and writes the XML;
//! this module maps each operation onto the same object layer, the same
//! authorisation and the same audit entries as its gRPC twin (`put`,
//! `get`, `stat`, `list`, `delete`, `bucket create`), in-process.
//!
//! One port per node (`s3_listen`), TLS with the node's certificate unless
//! `security.insecure`, path-style addressing, and virtual-hosted-style
//! under `s3_root_domain` (`addressing.rs`).
//! An insecure node takes unsigned requests as `anonymous@<peer IP>`, as
//! its gRPC port does.

mod addressing;
mod bodies;
mod buckets;
mod errors;
mod listing;
mod lock;
mod multipart;
mod objects;
mod reads;

pub use multipart::MULTIPART_BUCKET;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::admission::Admission;
use super::audit::AuditSink;
use super::auth::{Action, Authorizer, Caller};
use super::outcome_of;
use crate::metrics::Metrics;
use crate::objects::DataPlane;
use errors::{s3_error, Missing};

/// How long a new connection may take to finish its TLS handshake, and a
/// request to send its headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The peer address of an S3 connection, put in each of its requests.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

/// Set once a request reached the authorizer, which puts its refusals on
/// record; a request s3s turned away before (a bad signature, an unknown
/// key, no signature) is put on record by [`serve`] instead.
#[derive(Debug, Clone, Default)]
struct Admitted(Arc<AtomicBool>);

impl Admitted {
    fn of<T>(req: &S3Request<T>) {
        if let Some(a) = req.extensions.get::<Admitted>() {
            a.0.store(true, Ordering::Relaxed);
        }
    }
}

/// The bucket and key a path-style request names (for the record of a
/// refusal only).
fn named(uri: &http::Uri) -> (String, String) {
    let path = uri.path().trim_start_matches('/');
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    let decode = |s: &str| {
        percent_decode(s)
            .chars()
            .filter(|c| !c.is_control())
            .take(1024)
            .collect::<String>()
    };
    (decode(bucket), decode(key))
}

/// `%XX` escapes decoded (invalid ones kept as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The answer to a caller refused too often this second: S3's SlowDown,
/// before its signature costs a check.
fn slow_down(caller: &str) -> http::Response<s3s::Body> {
    let wait = crate::api::refusals::REFUSAL_INTERVAL.as_secs().max(1);
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
         <Message>{caller} was refused too often in the last second; retry in {wait} s</Message>\
         </Error>"
    );
    let mut response = http::Response::new(s3s::Body::from(xml));
    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(wait));
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    response
}

/// The S3 API of one node (cloned into the work of a long completion).
#[derive(Clone)]
pub struct S3Gateway {
    plane: Arc<DataPlane>,
    metrics: Metrics,
    audit: AuditSink,
    auth: Authorizer,
    admission: Admission,
    sweep: Arc<multipart::Sweeps>,
}

impl S3Gateway {
    /// Serves `plane` like the gRPC object services: counting in
    /// `metrics`, recording in `audit`, admitting what `admission` lets in
    /// (the node's, shared with them).
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
            sweep: Arc::default(),
        }
    }

    /// `anonymous@<IP>`: how the sender of `req` is recorded when it is
    /// not authenticated.
    fn peer_name<T>(req: &S3Request<T>) -> String {
        req.extensions
            .get::<Peer>()
            .map(|p| format!("anonymous@{}", p.0.ip()))
            .unwrap_or_else(|| "anonymous".to_string())
    }

    /// Who sends `req`, if they may do `action` (on `bucket`); a refusal is
    /// audited (by the authorizer) and counted.
    async fn caller<T>(
        &self,
        req: &S3Request<T>,
        action: Action,
        bucket: Option<&str>,
        key: &str,
        started: Instant,
    ) -> S3Result<Caller> {
        Admitted::of(req);
        addressing::check_region(req, &self.plane.cluster().config().s3.region)?;
        let access_key = req.credentials.as_ref().map(|c| c.access_key.as_str());
        let checked = self
            .auth
            .check_s3(access_key, &Self::peer_name(req), action, bucket, key)
            .await;
        match checked {
            Ok(caller) => Ok(caller),
            Err(status) => {
                self.record(action.name(), started, &Err::<(), _>(status.clone()), 0, 0);
                Err(s3_error(status, Missing::Bucket))
            }
        }
    }

    /// Whether `bucket` exists in this node's state (which the caller's
    /// catch-up made current): tells `NoSuchKey` from `NoSuchBucket`.
    fn missing_key(&self, bucket: &str) -> Missing {
        Missing::Key {
            bucket_exists: matches!(self.plane.cluster().meta().bucket(bucket), Ok(Some(_))),
        }
    }

    fn record<T>(
        &self,
        op: &str,
        started: Instant,
        result: &Result<T, tonic::Status>,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        self.metrics.request(
            op,
            &outcome_of(result),
            bytes_in,
            bytes_out,
            started.elapsed().as_secs_f64(),
        );
    }
}

/// Looks up the secret of an access key for s3s's signature check.
struct SecretLookup {
    plane: Arc<DataPlane>,
}

#[async_trait::async_trait]
impl S3Auth for SecretLookup {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.plane.s3_credential(access_key) {
            Ok(Some(credential)) => Ok(SecretKey::from(credential.secret)),
            Ok(None) => Err(s3_error!(
                InvalidAccessKeyId,
                "the access key {access_key:?} is unknown or revoked"
            )),
            Err(e) => {
                tracing::error!(access_key, error = %e, "cannot open an S3 secret");
                Err(s3_error!(
                    InternalError,
                    "the secret of this access key cannot be opened on this node"
                ))
            }
        }
    }
}

/// Serves `gateway` on `listener` until `stop` turns true: over TLS with
/// `tls`, plaintext without (insecure mode, which also verifies no
/// signatures). At most `max_connections` connections at once.
pub async fn serve(
    gateway: S3Gateway,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_connections: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let insecure = tls.is_none();
    let plane = gateway.plane.clone();
    let audit = gateway.audit.clone();
    let root_domain = gateway.plane.cluster().config().s3_root_domain.clone();
    let mut builder = S3ServiceBuilder::new(gateway);
    if !insecure {
        builder.set_auth(SecretLookup { plane });
    }
    if let Some(root) = root_domain {
        builder.set_host(addressing::RootDomain::new(&root));
    }
    let service = builder.build();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        // A connection over the limit waits in the kernel's accept queue.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = stopped(&mut stop) => break,
        };
        let Ok(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "S3 port: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let acceptor = acceptor.clone();
        let audit = audit.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let with_peer = hyper::service::service_fn(move |mut req| {
                let anonymous = format!("anonymous@{}", peer.ip());
                let admitted = Admitted::default();
                req.extensions_mut().insert(Peer(peer));
                req.extensions_mut().insert(admitted.clone());
                let (service, audit) = (service.clone(), audit.clone());
                async move {
                    if audit.refusing(&anonymous) {
                        return Ok(slow_down(&anonymous));
                    }
                    let (bucket, key) = named(req.uri());
                    let response = hyper::service::Service::call(&service, req).await?;
                    // Turned away by s3s's signature check: on record, merged
                    // with the caller's other refusals of this second, as an
                    // unauthenticated gRPC call is.
                    let refused = response.status() == http::StatusCode::FORBIDDEN;
                    if refused && !admitted.0.load(Ordering::Relaxed) {
                        audit.refused(&anonymous, "s3 request", &bucket, &key, "unauthenticated");
                    }
                    Ok::<_, s3s::HttpError>(response)
                }
            });
            let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            http.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT);
            let served = match acceptor {
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "S3 port: TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = http.serve_connection(TokioIo::new(tls), with_peer);
                    tokio::select! {
                        r = conn => r,
                        _ = stopped(&mut stop) => Ok(()),
                    }
                }
                None => {
                    let conn = http.serve_connection(TokioIo::new(stream), with_peer);
                    tokio::select! {
                        r = conn => r,
                        _ = stopped(&mut stop) => Ok(()),
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "S3 connection ended");
            }
        });
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Every S3 operation tresor serves, each handled in the file of its area;
/// the rest answer `NotImplemented` (s3s's default).
#[async_trait::async_trait]
impl S3 for S3Gateway {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.list_buckets_inner(req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.create_bucket_inner(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.delete_bucket_inner(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.head_bucket_inner(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.get_bucket_location_inner(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.put_object_inner(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.get_object_inner(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.head_object_inner(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.delete_object_inner(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.delete_objects_inner(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.copy_object_inner(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.create_multipart_upload_inner(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.upload_part_inner(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.complete_multipart_upload_inner(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.abort_multipart_upload_inner(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.list_parts_inner(req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.list_multipart_uploads_inner(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.list_objects_inner(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.list_objects_v2_inner(req).await
    }

    async fn put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        self.put_object_retention_inner(req).await
    }

    async fn get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        self.get_object_retention_inner(req).await
    }

    async fn put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        self.put_object_legal_hold_inner(req).await
    }

    async fn get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        self.get_object_legal_hold_inner(req).await
    }

    async fn put_object_lock_configuration(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        self.put_object_lock_configuration_inner(req).await
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        self.get_object_lock_configuration_inner(req).await
    }
}
