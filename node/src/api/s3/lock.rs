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

use std::time::Instant;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};
use tonic::{Code, Status};

use super::buckets::timestamp;
use super::errors::{s3_error, Missing};
use super::objects::{as_status, Unserved};
use super::S3Gateway;
use crate::api::auth::{Action, Caller};
use crate::api::lifecycle::{extend_retention, policy_detail, target_text};
use crate::api::{object_status, store_status, to_status};
use crate::meta::retention::validate_hold;
use crate::meta::{now_ms, Command, Hold, HoldTarget, ObjectManifest, RetentionPolicy};

const DAY_MS: u64 = 86_400_000;
/// The case S3 legal holds are placed under.
pub(crate) const S3_HOLD_CASE: &str = "s3-legal-hold";
/// The longest lock: 100 years, as S3's.
const MAX_LOCK_DAYS: u64 = 36_500;

/// The policy of an S3 lock that keeps objects `keep_days` whole days
/// from ingest, for objects deleted `delete_after_ms` after ingest
/// (`None`: only when someone deletes them).
fn lock_policy(keep_days: u64, delete_after_ms: Option<u64>) -> RetentionPolicy {
    let (name, delete_after_ms) = match delete_after_ms {
        None => (format!("s3-keep-{keep_days}d"), None),
        Some(after) => {
            let days = after.div_ceil(DAY_MS).max(keep_days);
            let name = format!("s3-keep-{keep_days}d-delete-{days}d");
            (name, Some(days * DAY_MS))
        }
    };
    RetentionPolicy {
        name,
        keep_min_ms: Some(keep_days * DAY_MS),
        delete_after_ms,
        created_ms: 0,
    }
}

/// Unix milliseconds of `t`.
fn ms_of(t: &Timestamp) -> i128 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp_nanos() / 1_000_000
}

/// Whole days from `from_ms` to `until_ms`, rounded up; `until_ms` must
/// lie after `now_ms`.
fn days_until(from_ms: u64, until_ms: i128, now_ms: u64) -> Result<u64, Status> {
    if until_ms <= now_ms as i128 {
        return Err(Status::invalid_argument(
            "the retain-until date must be in the future",
        ));
    }
    let days = ((until_ms - from_ms as i128).max(1) as u64).div_ceil(DAY_MS);
    checked_days(days)
}

fn checked_days(days: u64) -> Result<u64, Status> {
    match days {
        1..=MAX_LOCK_DAYS => Ok(days),
        _ => Err(Status::invalid_argument(format!(
            "a lock lasts 1 to {MAX_LOCK_DAYS} days"
        ))),
    }
}

/// Refuses any mode but COMPLIANCE.
fn compliance_only(mode: Option<&str>) -> Result<(), Status> {
    match mode {
        Some(ObjectLockRetentionMode::COMPLIANCE) => Ok(()),
        Some(other) => Err(Status::invalid_argument(format!(
            "only COMPLIANCE mode is served: nobody may shorten a retention here, so {other} \
             is not offered"
        ))),
        None => Err(Status::invalid_argument("a retention needs a Mode")),
    }
}

/// Metadata of a multipart upload's record: the lock its object gets.
const LOCK_UNTIL: &str = "tresor-lock-until-ms";
const LEGAL_HOLD: &str = "tresor-legal-hold";

/// The lock headers of a PutObject or CreateMultipartUpload input (they
/// name them alike), checked.
macro_rules! lock_headers {
    ($input:expr) => {
        $crate::api::s3::lock::LockHeaders::of(
            $input.object_lock_mode.as_ref(),
            $input.object_lock_retain_until_date.as_ref(),
            $input.object_lock_legal_hold_status.as_ref(),
        )
    };
}
pub(super) use lock_headers;

/// What a PutObject or a multipart upload asks to lock: a retain-until
/// date (Unix milliseconds), a legal hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct LockHeaders {
    until_ms: Option<i128>,
    hold: bool,
}

impl LockHeaders {
    /// Checked: COMPLIANCE only, and mode and date come together.
    pub(super) fn of(
        mode: Option<&ObjectLockMode>,
        until: Option<&Timestamp>,
        hold: Option<&ObjectLockLegalHoldStatus>,
    ) -> S3Result<Self> {
        let refused = |s: Status| s3_error(s, Missing::Bucket);
        if mode.is_some() || until.is_some() {
            compliance_only(mode.map(|m| m.as_str())).map_err(refused)?;
            if until.is_none() {
                return Err(s3s::s3_error!(
                    InvalidArgument,
                    "x-amz-object-lock-mode needs x-amz-object-lock-retain-until-date"
                ));
            }
        }
        let hold = match hold {
            None => false,
            Some(s) => legal_hold_on(Some(s.as_str())).map_err(refused)?,
        };
        Ok(Self {
            until_ms: until.map(ms_of),
            hold,
        })
    }

    /// Kept in a multipart upload's record.
    pub(super) fn save(&self, metadata: &mut std::collections::BTreeMap<String, String>) {
        if let Some(until) = self.until_ms {
            metadata.insert(LOCK_UNTIL.to_string(), until.to_string());
        }
        if self.hold {
            metadata.insert(
                LEGAL_HOLD.to_string(),
                ObjectLockLegalHoldStatus::ON.to_string(),
            );
        }
    }

    /// As kept in a multipart upload's record.
    pub(super) fn saved(metadata: &std::collections::BTreeMap<String, String>) -> Self {
        Self {
            until_ms: metadata.get(LOCK_UNTIL).and_then(|v| v.parse().ok()),
            hold: metadata.contains_key(LEGAL_HOLD),
        }
    }
}

/// ON or OFF.
fn legal_hold_on(status: Option<&str>) -> Result<bool, Status> {
    match status {
        Some(ObjectLockLegalHoldStatus::ON) => Ok(true),
        Some(ObjectLockLegalHoldStatus::OFF) => Ok(false),
        _ => Err(Status::invalid_argument(
            "a legal hold's Status is ON or OFF",
        )),
    }
}

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
        let manifest = self.stat_for_lock(&req, &bucket, &key).await?;
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

    /// The object's manifest for a lock read: authorised, audited and
    /// counted as a Stat.
    async fn stat_for_lock<T>(
        &self,
        req: &S3Request<T>,
        bucket: &str,
        key: &str,
    ) -> S3Result<ObjectManifest> {
        let started = Instant::now();
        let caller = self
            .caller(req, Action::Stat, Some(bucket), key, started)
            .await?;
        let stat = async {
            let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
            let manifest = self.plane.manifest(caught_up, bucket, key);
            Ok::<_, Unserved>(manifest.map_err(object_status)?)
        }
        .await;
        let sha = stat.as_ref().map(|m| m.sha256.clone()).unwrap_or_default();
        let response = self
            .audited("stat", &caller, (bucket, key), &sha, stat)
            .await;
        self.record("stat", started, &as_status(&response), 0, 0);
        self.answer(response, bucket)
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
        self.stat_for_lock(&req, &bucket, &key).await?;
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

    pub(super) async fn put_object_lock_configuration_inner(
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

    pub(super) async fn get_object_lock_configuration_inner(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> i128 {
        ms_of(&timestamp(ms))
    }

    #[test]
    fn locks_round_up_to_whole_days_and_keep_the_laws_deletion() {
        let keep = lock_policy(40, None);
        assert_eq!(keep.name, "s3-keep-40d");
        assert_eq!(
            (keep.keep_min_ms, keep.delete_after_ms),
            (Some(40 * DAY_MS), None)
        );
        // Deleted after 30 days by law: now after the lock's 40.
        let both = lock_policy(40, Some(30 * DAY_MS));
        assert_eq!(both.name, "s3-keep-40d-delete-40d");
        assert_eq!(both.delete_after_ms, Some(40 * DAY_MS));
        // A deletion later than the lock stays where it was (rounded up).
        let later = lock_policy(7, Some(90 * DAY_MS + 1));
        assert_eq!(later.name, "s3-keep-7d-delete-91d");
        for p in [keep, both, later] {
            p.validate().expect("a valid policy");
        }
        let ingest = 1_000 * DAY_MS;
        let now = ingest + 5;
        assert_eq!(
            days_until(ingest, at(ingest + 40 * DAY_MS), now).ok(),
            Some(40)
        );
        assert_eq!(
            days_until(ingest, at(ingest + 40 * DAY_MS + 1000), now).ok(),
            Some(41)
        );
        assert_eq!(days_until(ingest, at(now + 1000), now).ok(), Some(1));
        let past = days_until(ingest, at(now - 1), now).expect_err("in the past");
        assert_eq!(past.code(), Code::InvalidArgument);
        let far = days_until(ingest, at(ingest + (MAX_LOCK_DAYS + 1) * DAY_MS), now);
        assert_eq!(far.map_err(|s| s.code()), Err(Code::InvalidArgument));
    }

    #[test]
    fn only_compliance_mode_is_served() {
        assert!(compliance_only(Some("COMPLIANCE")).is_ok());
        for refused in [Some("GOVERNANCE"), Some("compliance"), None] {
            let status = compliance_only(refused).expect_err("refused");
            assert_eq!(status.code(), Code::InvalidArgument, "{refused:?}");
        }
        assert_eq!(legal_hold_on(Some("ON")).ok(), Some(true));
        assert_eq!(legal_hold_on(Some("OFF")).ok(), Some(false));
        assert!(legal_hold_on(Some("on")).is_err());
    }

    #[test]
    fn a_multipart_uploads_lock_is_kept_in_its_record() {
        let mode = ObjectLockMode::from_static(ObjectLockMode::COMPLIANCE);
        let on = ObjectLockLegalHoldStatus::from_static(ObjectLockLegalHoldStatus::ON);
        let until = timestamp(5 * DAY_MS + 7);
        let lock = LockHeaders::of(Some(&mode), Some(&until), Some(&on)).expect("valid");
        let mut metadata = std::collections::BTreeMap::new();
        lock.save(&mut metadata);
        assert_eq!(LockHeaders::saved(&metadata), lock);
        assert_eq!(
            LockHeaders::saved(&Default::default()),
            LockHeaders::default()
        );
        assert!(LockHeaders::of(Some(&mode), None, None).is_err());
        let governance = ObjectLockMode::from_static(ObjectLockMode::GOVERNANCE);
        assert!(LockHeaders::of(Some(&governance), Some(&until), None).is_err());
    }
}
