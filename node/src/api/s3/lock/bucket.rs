//! A bucket's default retention over S3 (Put/GetObjectLockConfiguration):
//! the bucket's policy, by the mapping of `mapping.rs`.

use std::time::Instant;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};
use tonic::Status;

use super::super::errors::{s3_error, Missing};
use super::super::S3Gateway;
use super::mapping::{checked_days, compliance_only, lock_policy, DAY_MS};
use crate::api::auth::{Action, Caller};
use crate::api::{store_status, to_status};
use crate::meta::Command;

impl S3Gateway {
    pub(in crate::api::s3) async fn put_object_lock_configuration_inner(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        let started = Instant::now();
        let bucket = req.input.bucket.clone();
        let caller = self
            .caller(&req, Action::SetBucketRetention, Some(&bucket), "", started)
            .await?;
        let config = req.input.object_lock_configuration.as_ref();
        let enabled = config.and_then(|c| c.object_lock_enabled.as_ref());
        if enabled.map(|e| e.as_str()) != Some(ObjectLockEnabled::ENABLED) {
            return Err(s3s::s3_error!(
                InvalidArgument,
                "ObjectLockEnabled must be Enabled (every bucket here takes locks)"
            ));
        }
        let rule = config.and_then(|c| c.rule.as_ref());
        let Some(default) = rule.and_then(|r| r.default_retention.as_ref()) else {
            // Locks are always on: nothing to change. A bucket's default
            // retention is removed with `tresor-node`, not over S3.
            return self
                .bucket_exists(&req, &bucket)
                .await
                .map(|()| S3Response::new(PutObjectLockConfigurationOutput::default()));
        };
        let result = self.default_lock(&caller, &bucket, default).await;
        self.record("bucket set-retention", started, &result, 0, 0);
        result.map_err(|s| s3_error(s, Missing::Bucket))?;
        Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
    }

    /// Gives `bucket` the policy of `default` (new objects get it);
    /// audited as SetBucketRetention is.
    async fn default_lock(
        &self,
        caller: &Caller,
        bucket: &str,
        default: &DefaultRetention,
    ) -> Result<(), Status> {
        let mut policy = String::new();
        let result = async {
            compliance_only(default.mode.as_ref().map(|m| m.as_str()))?;
            let days = match (default.days, default.years) {
                (Some(d), None) => u64::try_from(d).unwrap_or(0),
                (None, Some(y)) => u64::try_from(y).unwrap_or(0).saturating_mul(365),
                _ => {
                    return Err(Status::invalid_argument(
                        "a default retention gives Days or Years",
                    ))
                }
            };
            let keep_days = checked_days(days)?;
            let cluster = self.plane.cluster();
            caller.caught_up_with(cluster).await?;
            let meta = cluster.meta();
            let found = meta.bucket(bucket).map_err(store_status)?;
            let found =
                found.ok_or_else(|| Status::not_found(format!("no bucket named {bucket}")))?;
            let current = match &found.retention {
                Some(name) => meta.retention_policy(name).map_err(store_status)?,
                None => None,
            };
            let wanted = lock_policy(keep_days, current.and_then(|p| p.delete_after_ms));
            policy = wanted.name.clone();
            self.ensure_policy(caller, wanted).await?;
            let command = Command::SetBucketRetention {
                bucket: bucket.to_string(),
                policy: Some(policy.clone()),
            };
            cluster.propose(command).await.map_err(to_status)
        }
        .await;
        self.audit
            .after(
                caller.name(),
                "bucket set-retention",
                (bucket, &policy),
                "",
                &result,
            )
            .await;
        result
    }

    pub(in crate::api::s3) async fn get_object_lock_configuration_inner(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        let bucket = req.input.bucket.clone();
        self.bucket_exists(&req, &bucket).await?;
        let meta = self.plane.cluster().meta();
        let found = meta
            .bucket(&bucket)
            .map_err(|e| s3_error(store_status(e), Missing::Bucket))?;
        let policy = match found.and_then(|b| b.retention) {
            Some(name) => meta
                .retention_policy(&name)
                .map_err(|e| s3_error(store_status(e), Missing::Bucket))?,
            None => None,
        };
        let keep = policy.and_then(|p| p.keep_min_ms);
        let rule = keep.map(|ms| ObjectLockRule {
            default_retention: Some(DefaultRetention {
                days: Some(i32::try_from(ms.div_ceil(DAY_MS)).unwrap_or(i32::MAX)),
                mode: Some(ObjectLockRetentionMode::from_static(
                    ObjectLockRetentionMode::COMPLIANCE,
                )),
                years: None,
            }),
        });
        Ok(S3Response::new(GetObjectLockConfigurationOutput {
            object_lock_configuration: Some(ObjectLockConfiguration {
                object_lock_enabled: Some(ObjectLockEnabled::from_static(
                    ObjectLockEnabled::ENABLED,
                )),
                rule,
            }),
        }))
    }
}
