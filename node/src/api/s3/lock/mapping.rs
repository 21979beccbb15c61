//! The mapping of S3 Object Lock onto retention policies and holds (see
//! the parent module): policy names and periods, dates, modes, and the
//! lock headers of a PutObject or a multipart upload.

use s3s::dto::*;
use s3s::S3Result;
use tonic::Status;

use super::super::errors::{s3_error, Missing};
use crate::meta::RetentionPolicy;

pub(super) const DAY_MS: u64 = 86_400_000;
/// The case S3 legal holds are placed under.
pub(crate) const S3_HOLD_CASE: &str = "s3-legal-hold";
/// The longest lock: 100 years, as S3's.
const MAX_LOCK_DAYS: u64 = 36_500;

/// The policy of an S3 lock that keeps objects `keep_days` whole days
/// from ingest, for objects deleted `delete_after_ms` after ingest
/// (`None`: only when someone deletes them).
pub(super) fn lock_policy(keep_days: u64, delete_after_ms: Option<u64>) -> RetentionPolicy {
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
pub(super) fn ms_of(t: &Timestamp) -> i128 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp_nanos() / 1_000_000
}

/// Whole days from `from_ms` to `until_ms`, rounded up; `until_ms` must
/// lie after `now_ms`.
pub(super) fn days_until(from_ms: u64, until_ms: i128, now_ms: u64) -> Result<u64, Status> {
    if until_ms <= now_ms as i128 {
        return Err(Status::invalid_argument(
            "the retain-until date must be in the future",
        ));
    }
    let days = ((until_ms - from_ms as i128).max(1) as u64).div_ceil(DAY_MS);
    checked_days(days)
}

pub(super) fn checked_days(days: u64) -> Result<u64, Status> {
    match days {
        1..=MAX_LOCK_DAYS => Ok(days),
        _ => Err(Status::invalid_argument(format!(
            "a lock lasts 1 to {MAX_LOCK_DAYS} days"
        ))),
    }
}

/// Refuses any mode but COMPLIANCE.
pub(super) fn compliance_only(mode: Option<&str>) -> Result<(), Status> {
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
pub(in crate::api::s3) use lock_headers;

/// What a PutObject or a multipart upload asks to lock: a retain-until
/// date (Unix milliseconds), a legal hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub(in crate::api::s3) struct LockHeaders {
    pub(super) until_ms: Option<i128>,
    pub(super) hold: bool,
}

impl LockHeaders {
    /// Checked: COMPLIANCE only, and mode and date come together.
    pub(in crate::api::s3) fn of(
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
    pub(in crate::api::s3) fn save(
        &self,
        metadata: &mut std::collections::BTreeMap<String, String>,
    ) {
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
    pub(in crate::api::s3) fn saved(metadata: &std::collections::BTreeMap<String, String>) -> Self {
        Self {
            until_ms: metadata.get(LOCK_UNTIL).and_then(|v| v.parse().ok()),
            hold: metadata.contains_key(LEGAL_HOLD),
        }
    }
}

/// ON or OFF.
pub(super) fn legal_hold_on(status: Option<&str>) -> Result<bool, Status> {
    match status {
        Some(ObjectLockLegalHoldStatus::ON) => Ok(true),
        Some(ObjectLockLegalHoldStatus::OFF) => Ok(false),
        _ => Err(Status::invalid_argument(
            "a legal hold's Status is ON or OFF",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::s3::buckets::timestamp;
    use tonic::Code;

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
