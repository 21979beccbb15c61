//! Admission control for object traffic: at most `[admission]
//! max_uploads` Puts and `max_downloads` Gets in flight on a node. A call
//! over a limit is refused at once — `RESOURCE_EXHAUSTED`, with the wait
//! the client should leave in `grpc-retry-pushback-ms` (the gRPC retry
//! policy's pushback key) — so a flood meets refusals, not a queue that
//! grows with it. Each admitted call holds a permit until its last byte.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use crate::config::AdmissionTuning;

/// The metadata key of the retry hint, in milliseconds.
pub const RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";

/// What a call does to the node.
#[derive(Clone, Copy, Debug)]
pub enum Traffic {
    /// A Put.
    Upload,
    /// A Get.
    Download,
}

/// The node's permits for uploads and downloads.
#[derive(Clone)]
pub struct Admission {
    uploads: Arc<Semaphore>,
    downloads: Arc<Semaphore>,
    limits: AdmissionTuning,
}

impl Admission {
    /// Permits as `limits` says.
    pub fn new(limits: &AdmissionTuning) -> Self {
        Self {
            uploads: Arc::new(Semaphore::new(limits.max_uploads as usize)),
            downloads: Arc::new(Semaphore::new(limits.max_downloads as usize)),
            limits: limits.clone(),
        }
    }

    /// A permit for one call of `traffic`, or the refusal to send when the
    /// node carries its limit already.
    pub fn enter(&self, traffic: Traffic) -> Result<OwnedSemaphorePermit, Status> {
        let (permits, limit, what) = match traffic {
            Traffic::Upload => (&self.uploads, self.limits.max_uploads, "uploads"),
            Traffic::Download => (&self.downloads, self.limits.max_downloads, "downloads"),
        };
        permits.clone().try_acquire_owned().map_err(|_| {
            let wait = self.limits.retry_after_ms;
            self.with_hint(Status::resource_exhausted(format!(
                "this node is carrying {limit} {what}, its limit; retry in {wait} ms (or through \
                 another node)"
            )))
        })
    }

    /// `status` with the retry hint in its metadata.
    pub fn with_hint(&self, mut status: Status) -> Status {
        if let Ok(value) = self.limits.retry_after_ms.to_string().parse() {
            status.metadata_mut().insert(RETRY_PUSHBACK, value);
        }
        status
    }

    /// Upload sessions one principal may have open.
    pub fn max_sessions(&self) -> u32 {
        self.limits.max_sessions_per_principal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_over_the_limit_are_refused_with_a_hint_until_a_permit_returns() {
        let admission = Admission::new(&AdmissionTuning {
            max_uploads: 2,
            max_downloads: 1,
            retry_after_ms: 250,
            max_sessions_per_principal: 1,
            max_refusals_per_sec: 1,
        });
        let first = admission.enter(Traffic::Upload).expect("first upload");
        let _second = admission.enter(Traffic::Upload).expect("second upload");
        let refused = admission.enter(Traffic::Upload).expect_err("third upload");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refused
                .metadata()
                .get(RETRY_PUSHBACK)
                .map(|v| v.to_str().ok()),
            Some(Some("250"))
        );
        // Downloads have their own permits.
        let _download = admission.enter(Traffic::Download).expect("a download");
        assert!(admission.enter(Traffic::Download).is_err());
        drop(first);
        let _again = admission
            .enter(Traffic::Upload)
            .expect("a permit came back");
    }
}
