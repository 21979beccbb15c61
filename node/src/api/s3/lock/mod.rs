//! S3 Object Lock, in compliance mode only, mapped onto tresor's evidence
//! lifecycle (there is no governance mode: nobody may shorten a
//! retention, as nobody may in tresor):
//! - An object's retain-until date is a retention policy that keeps it a
//!   whole number of days from its ingest, the date rounded up to the next
//!   whole day: `s3-keep-<N>d`, which the object is moved to as
//!   ExtendRetention moves it. An object the law has deleted goes on being
//!   deleted: the policy then deletes it too, at the later of its old
//!   deletion and the end of the lock (`s3-keep-<N>d-delete-<M>d`).
//!   Policies never change; these are made on first use.
//! - A legal hold is a hold of case `s3-legal-hold` on the object's key.
//!   OFF releases that hold only: holds that custodians placed for cases
//!   stay, and GetObjectLegalHold says ON while any hold covers the key.
//! - A bucket's default retention is the bucket's policy, by the same
//!   mapping (a year is 365 days); new objects get it at commit.
//!
//! Each call is authorised and audited as its gRPC twin: ExtendRetention
//! (`retention extend`), PlaceHold and ReleaseHold (`hold place`, `hold
//! release`), SetBucketRetention (`bucket set-retention`), and
//! CreateRetention (`retention create`) for a policy made on first use;
//! the reads as Stat (`stat`). PutObject with lock headers is a put, then
//! these, and so is a multipart upload's completion (its record keeps the
//! headers of CreateMultipartUpload): the caller needs the roles of both.

mod bucket;
mod mapping;

use std::time::Instant;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};
use tonic::{Code, Status};

use super::buckets::timestamp;
use super::errors::{s3_error, Missing};
use super::S3Gateway;
use crate::api::auth::{Action, Caller};
use crate::api::lifecycle::{extend_retention, policy_detail, target_text};
use crate::api::{store_status, to_status};
use crate::meta::retention::validate_hold;
use crate::meta::{now_ms, Command, Hold, HoldTarget, ObjectManifest, RetentionPolicy};
use mapping::{compliance_only, days_until, legal_hold_on, lock_policy, ms_of};
pub(super) use mapping::{lock_headers, LockHeaders, S3_HOLD_CASE};

impl S3Gateway {
    /// Checks that the caller of a PutObject with lock headers may also
    /// apply them (before anything is stored).
    pub(super) async fn may_lock<T>(
        &self,
        req: &S3Request<T>,
        (bucket, key): (&str, &str),
        lock: &LockHeaders,
    ) -> S3Result<()> {
        let started = Instant::now();
        if lock.until_ms.is_some() {
            self.caller(req, Action::ExtendRetention, Some(bucket), key, started)
                .await?;
        }
        if lock.hold {
            self.caller(req, Action::PlaceHold, Some(bucket), key, started)
                .await?;
        }
        Ok(())
    }

    /// Applies a PutObject's lock headers to the object just stored.
    pub(super) async fn lock_stored(
        &self,
        caller: &Caller,
        (bucket, key): (&str, &str),
        lock: &LockHeaders,
    ) -> S3Result<()> {
        // This node may apply the commit after the leader answered it.
        let caught_up = self.plane.cluster().linearizable_read().await;
        let mut result = caught_up.map(drop).map_err(to_status);
        if let (Some(until), true) = (lock.until_ms, result.is_ok()) {
            result = self.lock_until(caller, bucket, key, until).await;
        }
        if lock.hold && result.is_ok() {
            result = self.legal_hold(caller, bucket, key, true).await;
        }
        result.map_err(|s| {
            let message = format!(
                "{bucket}/{key} is stored, but its lock was not applied ({}): apply it with \
                 PutObjectRetention and PutObjectLegalHold",
                s.message()
            );
            s3_error(Status::new(s.code(), message), self.missing_key(bucket))
        })
    }

    pub(super) async fn put_object_retention_inner(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        let started = Instant::now();
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let caller = self
            .caller(&req, Action::ExtendRetention, Some(&bucket), &key, started)
            .await?;
        let retention = req.input.retention.as_ref();
        let mode = retention.and_then(|r| r.mode.as_ref()).map(|m| m.as_str());
        let until = retention.and_then(|r| r.retain_until_date.as_ref());
        let result = match (compliance_only(mode), until) {
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(Status::invalid_argument(
                "a retention needs a RetainUntilDate",
            )),
            (Ok(()), Some(until)) => self.lock_until(&caller, &bucket, &key, ms_of(until)).await,
        };
        self.record("retention extend", started, &result, 0, 0);
        result.map_err(|s| s3_error(s, self.missing_key(&bucket)))?;
        Ok(S3Response::new(PutObjectRetentionOutput::default()))
    }

    /// Moves `bucket/key` to the policy that keeps it until `until`;
    /// audited as ExtendRetention is.
    async fn lock_until(
        &self,
        caller: &Caller,
        bucket: &str,
        key: &str,
        until_ms: i128,
    ) -> Result<(), Status> {
        let mut policy = String::new();
        let result = async {
            let cluster = self.plane.cluster();
            caller.caught_up_with(cluster).await?;
            let manifest = cluster.meta().object(bucket, key).map_err(store_status)?;
            let manifest =
                manifest.ok_or_else(|| Status::not_found(format!("no object {bucket}/{key}")))?;
            let keep_days = days_until(manifest.created_ms, until_ms, now_ms())?;
            let deletes = manifest.retention.as_ref().and_then(|r| r.delete_at_ms);
            let delete_after = deletes.map(|at| at.saturating_sub(manifest.created_ms));
            let wanted = lock_policy(keep_days, delete_after);
            policy = wanted.name.clone();
            // Refused before a policy is made for it.
            let after = wanted.retention_from(manifest.created_ms);
            if let Some(now) = &manifest.retention {
                if !after.at_least(now) {
                    return Err(Status::failed_precondition(format!(
                        "{bucket}/{key} would be kept or deleted earlier than its retention \
                         ({}) says: a retention is never shortened",
                        now.policy
                    )));
                }
            }
            self.ensure_policy(caller, wanted).await?;
            extend_retention(cluster, bucket, key, &policy)
                .await
                .map(drop)
        }
        .await;
        let detail = format!("{key} {policy}");
        self.audit
            .after(
                caller.name(),
                "retention extend",
                (bucket, &detail),
                "",
                &result,
            )
            .await;
        result
    }

    /// Makes `policy` unless a policy of its name exists (names say what
    /// they keep); audited as CreateRetention is.
    async fn ensure_policy(&self, caller: &Caller, policy: RetentionPolicy) -> Result<(), Status> {
        let cluster = self.plane.cluster();
        let known = cluster.meta().retention_policy(&policy.name);
        if known.map_err(store_status)?.is_some() {
            return Ok(());
        }
        let policy = RetentionPolicy {
            created_ms: now_ms(),
            ..policy
        };
        let made = cluster
            .propose(Command::CreateRetention {
                policy: policy.clone(),
            })
            .await
            .map_err(to_status);
        match made {
            // Made by a call at the same time: the same policy.
            Err(s) if s.code() == Code::AlreadyExists => Ok(()),
            result => {
                let (name, detail) = (&policy.name, &policy_detail(&policy));
                self.audit
                    .after(
                        caller.name(),
                        "retention create",
                        (name, detail),
                        "",
                        &result,
                    )
                    .await;
                result
            }
        }
    }

    pub(super) async fn get_object_retention_inner(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let manifest = self.stat(&req, (&bucket, &key), |_| Ok(())).await?.0;
        let until = manifest.retention.as_ref().and_then(|r| r.keep_until_ms);
        let Some(until) = until else {
            return Err(s3s::s3_error!(
                NoSuchObjectLockConfiguration,
                "{bucket}/{key} has no minimum retention"
            ));
        };
        Ok(S3Response::new(GetObjectRetentionOutput {
            retention: Some(ObjectLockRetention {
                mode: Some(ObjectLockRetentionMode::from_static(
                    ObjectLockRetentionMode::COMPLIANCE,
                )),
                retain_until_date: Some(timestamp(until)),
            }),
        }))
    }

    pub(super) async fn put_object_legal_hold_inner(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        let started = Instant::now();
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let status = req
            .input
            .legal_hold
            .as_ref()
            .and_then(|h| h.status.as_ref());
        let on =
            legal_hold_on(status.map(|s| s.as_str())).map_err(|s| s3_error(s, Missing::Bucket))?;
        let action = if on {
            Action::PlaceHold
        } else {
            Action::ReleaseHold
        };
        let caller = self
            .caller(&req, action, Some(&bucket), &key, started)
            .await?;
        let result = self.legal_hold(&caller, &bucket, &key, on).await;
        self.record(action.name(), started, &result, 0, 0);
        result.map_err(|s| s3_error(s, self.missing_key(&bucket)))?;
        Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
    }

    /// Places (`on`) or releases the S3 legal hold on `bucket/key`, an
    /// object that exists; audited as PlaceHold and ReleaseHold are. Placing
    /// it twice, or releasing it when not placed, succeeds as in S3.
    async fn legal_hold(
        &self,
        caller: &Caller,
        bucket: &str,
        key: &str,
        on: bool,
    ) -> Result<(), Status> {
        let cluster = self.plane.cluster();
        let target = HoldTarget::Key(key.to_string());
        // Outer: whether the hold could be asked for; inner: its answer.
        let asked = async {
            caller.caught_up_with(cluster).await?;
            if cluster
                .meta()
                .object(bucket, key)
                .map_err(store_status)?
                .is_none()
            {
                return Err(Status::not_found(format!("no object {bucket}/{key}")));
            }
            let command = if on {
                let hold = Hold {
                    case_id: S3_HOLD_CASE.to_string(),
                    bucket: bucket.to_string(),
                    target: target.clone(),
                    reason: "S3 PutObjectLegalHold".to_string(),
                    placed_by: caller.name().to_string(),
                    placed_ms: now_ms(),
                };
                validate_hold(&hold).map_err(crate::api::meta_status)?;
                Command::PlaceHold { hold }
            } else {
                Command::ReleaseHold {
                    case_id: S3_HOLD_CASE.to_string(),
                    bucket: bucket.to_string(),
                    target: target.clone(),
                }
            };
            Ok(cluster.propose(command).await.map_err(to_status))
        }
        .await;
        let result = asked.clone().and_then(|answer| answer);
        let action = if on { "hold place" } else { "hold release" };
        let detail = format!("{S3_HOLD_CASE} {}", target_text(&target));
        self.audit
            .after(caller.name(), action, (bucket, &detail), "", &result)
            .await;
        match asked {
            // Placed already, or not placed: S3 answers success.
            Ok(Err(s)) if on && s.code() == Code::AlreadyExists => Ok(()),
            Ok(Err(s)) if !on && s.code() == Code::NotFound => Ok(()),
            _ => result,
        }
    }

    pub(super) async fn get_object_legal_hold_inner(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        self.stat(&req, (&bucket, &key), |_| Ok(())).await?;
        let status = self
            .legal_hold_status(&bucket, &key)
            .map_err(|s| s3_error(s, Missing::Bucket))?;
        Ok(S3Response::new(GetObjectLegalHoldOutput {
            legal_hold: Some(ObjectLockLegalHold {
                status: Some(status),
            }),
        }))
    }

    /// ON while any hold covers `bucket/key`.
    fn legal_hold_status(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectLockLegalHoldStatus, Status> {
        let holds = self.plane.cluster().meta().holds_on(bucket, key);
        let held = !holds.map_err(store_status)?.is_empty();
        Ok(ObjectLockLegalHoldStatus::from_static(if held {
            ObjectLockLegalHoldStatus::ON
        } else {
            ObjectLockLegalHoldStatus::OFF
        }))
    }

    /// The Object Lock fields of a HEAD or GET of `m`: its minimum
    /// retention (COMPLIANCE) and whether a hold covers it.
    pub(super) fn lock_fields(
        &self,
        m: &ObjectManifest,
    ) -> Result<
        (
            Option<ObjectLockMode>,
            Option<Timestamp>,
            ObjectLockLegalHoldStatus,
        ),
        Status,
    > {
        let until = m.retention.as_ref().and_then(|r| r.keep_until_ms);
        let mode = until.map(|_| ObjectLockMode::from_static(ObjectLockMode::COMPLIANCE));
        let hold = self.legal_hold_status(&m.bucket, &m.key)?;
        Ok((mode, until.map(timestamp), hold))
    }
}
