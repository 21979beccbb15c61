//! How an S3 read (GET, HEAD, the Object Lock reads) is put on record
//! and answered: a refusal or failure of the object layer, or a condition
//! that did not hold (304 or 412).

use std::time::Instant;

use s3s::{S3Error, S3Request, S3Result};
use tonic::Status;

use super::errors::s3_error;
use super::S3Gateway;
use crate::api::auth::{Action, Caller};
use crate::api::object_status;
use crate::meta::ObjectManifest;

/// Why a read served nothing.
pub(super) enum Unserved {
    /// A refusal or failure of the object layer.
    Failed(Status),
    /// A conditional request whose condition did not hold (304 or 412).
    Condition(S3Error),
}

/// What the metrics count of a read's outcome.
pub(super) fn as_status<T>(read: &Result<T, Unserved>) -> Result<(), Status> {
    match read {
        Ok(_) => Ok(()),
        Err(Unserved::Failed(s)) => Err(s.clone()),
        Err(Unserved::Condition(_)) => Err(Status::failed_precondition("condition")),
    }
}

impl From<Status> for Unserved {
    fn from(status: Status) -> Self {
        Unserved::Failed(status)
    }
}

impl S3Gateway {
    /// Puts a read on record before it is answered (a failed condition is
    /// on record as `failed_precondition`); no record, no answer.
    pub(super) async fn audited<T>(
        &self,
        action: &str,
        caller: &Caller,
        (bucket, key): (&str, &str),
        sha: &str,
        read: Result<T, Unserved>,
    ) -> Result<T, Unserved> {
        let (result, condition) = match read {
            Ok(v) => (Ok(v), None),
            Err(Unserved::Failed(status)) => (Err(status), None),
            Err(Unserved::Condition(e)) => (
                Err(Status::failed_precondition(
                    e.message().unwrap_or("condition").to_string(),
                )),
                Some(e),
            ),
        };
        let result = self
            .audit
            .before(caller.name(), action, (bucket, key), sha, result)
            .await;
        match (result, condition) {
            (Ok(v), _) => Ok(v),
            // Recorded: the condition's own answer.
            (Err(s), Some(e)) if s.code() == tonic::Code::FailedPrecondition => {
                Err(Unserved::Condition(e))
            }
            (Err(s), _) => Err(Unserved::Failed(s)),
        }
    }

    pub(super) fn answer<T>(&self, response: Result<T, Unserved>, bucket: &str) -> S3Result<T> {
        match response {
            Ok(v) => Ok(v),
            Err(Unserved::Condition(e)) => Err(e),
            Err(Unserved::Failed(s)) => Err(s3_error(s, self.missing_key(bucket))),
        }
    }

    /// A Stat of `bucket/key` for `req` (HeadObject, the Object Lock
    /// reads): authorised, `then` applied to the manifest (its conditions,
    /// its answer), on record and counted as a `stat`.
    pub(super) async fn stat<I, T>(
        &self,
        req: &S3Request<I>,
        (bucket, key): (&str, &str),
        then: impl FnOnce(&ObjectManifest) -> Result<T, Unserved>,
    ) -> S3Result<(ObjectManifest, T)> {
        let started = Instant::now();
        let caller = self
            .caller(req, Action::Stat, Some(bucket), key, started)
            .await?;
        let stat = async {
            let caught_up = caller.caught_up_with(self.plane.cluster()).await?;
            let manifest = self.plane.manifest(caught_up, bucket, key);
            let manifest = manifest.map_err(object_status)?;
            let answer = then(&manifest)?;
            Ok::<_, Unserved>((manifest, answer))
        }
        .await;
        let sha = stat
            .as_ref()
            .map(|(m, _)| m.sha256.clone())
            .unwrap_or_default();
        let response = self
            .audited("stat", &caller, (bucket, key), &sha, stat)
            .await;
        self.record("stat", started, &as_status(&response), 0, 0);
        self.answer(response, bucket)
    }
}
