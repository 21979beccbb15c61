//! Buckets over S3: list, create (with the scheme of `[s3]` in the node's
//! config), and look up.

use std::time::{Duration, Instant, UNIX_EPOCH};

use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result};

use super::errors::{s3_error, Missing};
use super::S3Gateway;
use crate::api::auth::{visible_buckets, Action};
use crate::api::{store_status, to_status};
use crate::meta::audit::is_reserved_bucket;

/// Unix milliseconds as an S3 timestamp.
pub(super) fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

impl S3Gateway {
    pub(super) async fn list_buckets_inner(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let started = Instant::now();
        let caller = self
            .caller(&req, Action::ListBuckets, None, "", started)
            .await?;
        let grants = self
            .auth
            .grants(&caller)
            .map_err(|s| s3_error(s, Missing::Bucket))?;
        let visible = grants.and_then(|g| visible_buckets(&g));
        let buckets = self
            .plane
            .cluster()
            .meta()
            .buckets()
            .map_err(|e| s3_error(store_status(e), Missing::Bucket))?;
        let buckets = buckets
            .iter()
            .filter(|b| visible.as_ref().is_none_or(|v| v.contains(&b.name)))
            .map(|b| Bucket {
                name: Some(b.name.clone()),
                creation_date: Some(timestamp(b.created_ms)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                display_name: Some(caller.name().to_string()),
                id: Some(caller.name().to_string()),
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn create_bucket_inner(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let started = Instant::now();
        let name = req.input.bucket.clone();
        let caller = self
            .caller(&req, Action::CreateBucket, None, "", started)
            .await?;
        // Every bucket takes Object Lock (`lock/`): a request for it is
        // granted as it stands.
        let result = if is_reserved_bucket(&name) {
            Err(tonic::Status::invalid_argument(format!(
                "bucket names starting with \"tresor.\" are kept for the cluster: {name:?}"
            )))
        } else {
            let s3 = &self.plane.cluster().config().s3;
            self.plane
                .cluster()
                .create_bucket(&name, s3.bucket_data, s3.bucket_parity, None)
                .await
                .map_err(to_status)
        };
        // On record as `tresor-node bucket create` is.
        self.audit
            .after(caller.name(), "bucket create", (&name, ""), "", &result)
            .await;
        self.record("bucket create", started, &result, 0, 0);
        result.map_err(|s| s3_error(s, Missing::Bucket))?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{name}")),
        }))
    }

    pub(super) async fn delete_bucket_inner(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let started = Instant::now();
        let name = req.input.bucket.clone();
        let caller = self
            .caller(&req, Action::DeleteBucket, Some(&name), "", started)
            .await?;
        let result = self
            .plane
            .cluster()
            .delete_bucket(&name)
            .await
            .map_err(to_status);
        // On record as `tresor-node bucket delete` is.
        self.audit
            .after(caller.name(), "bucket delete", (&name, ""), "", &result)
            .await;
        self.record("bucket delete", started, &result, 0, 0);
        match result {
            Ok(()) => Ok(S3Response::with_status(
                DeleteBucketOutput::default(),
                http::StatusCode::NO_CONTENT,
            )),
            Err(s) if s.code() == tonic::Code::FailedPrecondition => Err(S3Error::with_message(
                s3s::S3ErrorCode::BucketNotEmpty,
                s.message().to_string(),
            )),
            Err(s) => Err(s3_error(s, Missing::Bucket)),
        }
    }

    pub(super) async fn head_bucket_inner(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let bucket = req.input.bucket.clone();
        self.bucket_exists(&req, &bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    pub(super) async fn get_bucket_location_inner(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let bucket = req.input.bucket.clone();
        self.bucket_exists(&req, &bucket).await?;
        // One cluster, one region (`[s3] region`); us-east-1 is written as
        // no location constraint, as S3 writes it.
        let region = &self.plane.cluster().config().s3.region;
        let location = Some(region.as_str())
            .filter(|r| *r != "us-east-1")
            .map(|r| BucketLocationConstraint::from(r.to_string()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: location,
        }))
    }

    /// Succeeds if `bucket` exists and the caller may list or put into it
    /// (a camera with only the ingest role checks its bucket too).
    pub(super) async fn bucket_exists<T>(&self, req: &S3Request<T>, bucket: &str) -> S3Result<()> {
        let started = Instant::now();
        super::Admitted::of(req);
        let access_key = req.credentials.as_ref().map(|c| c.access_key.as_str());
        let checked = self
            .auth
            .check_s3_any(
                access_key,
                &Self::peer_name(req),
                (Action::List, &[Action::Put]),
                Some(bucket),
            )
            .await;
        if let Err(status) = checked {
            self.record("bucket head", started, &Err::<(), _>(status.clone()), 0, 0);
            return Err(s3_error(status, Missing::Bucket));
        }
        match self.plane.cluster().meta().bucket(bucket) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(s3s::s3_error!(NoSuchBucket, "no bucket named {bucket}")),
            Err(e) => Err(s3_error(store_status(e), Missing::Bucket)),
        }
    }
}
