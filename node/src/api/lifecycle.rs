//! Evidence lifecycle changes that both APIs make: the Admin service's
//! ExtendRetention, PlaceHold and ReleaseHold, and S3's Object Lock calls
//! mapped onto them (`s3::lock`).

use tonic::Status;

use super::{store_status, to_status};
use crate::meta::retention::format_duration;
use crate::meta::{Command, HoldTarget, ObjectRetention, RetentionPolicy};
use crate::raft::Cluster;

/// Moves the object at `bucket/key` to `policy` (which must keep it at
/// least as long); its retention after.
pub(crate) async fn extend_retention(
    cluster: &Cluster,
    bucket: &str,
    key: &str,
    policy: &str,
) -> Result<Option<ObjectRetention>, Status> {
    let meta = cluster.meta();
    let manifest = meta
        .object(bucket, key)
        .map_err(store_status)?
        .ok_or_else(|| Status::not_found(format!("no object {bucket}/{key}")))?;
    cluster
        .propose(Command::ExtendRetention {
            bucket: bucket.to_string(),
            key: key.to_string(),
            object_id: manifest.object_id,
            policy: policy.to_string(),
        })
        .await
        .map_err(to_status)?;
    let now = meta.object(bucket, key).map_err(store_status)?;
    Ok(now.and_then(|m| m.retention))
}

/// `k:<key>` or `p:<prefix>`: a hold's target in audit entries and page
/// tokens.
pub(crate) fn target_text(t: &HoldTarget) -> String {
    match t {
        HoldTarget::Key(k) => format!("k:{k}"),
        HoldTarget::Prefix(p) => format!("p:{p}"),
    }
}

/// `keep-min <d> delete-after <d>`: a new policy in its audit entry.
pub(crate) fn policy_detail(policy: &RetentionPolicy) -> String {
    let shown = |d: Option<u64>| d.map(format_duration).unwrap_or("-".into());
    format!(
        "keep-min {} delete-after {}",
        shown(policy.keep_min_ms),
        shown(policy.delete_after_ms)
    )
}
