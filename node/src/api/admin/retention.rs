//! Retention policies, bucket defaults, extensions and legal holds.

use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;

use super::convert::*;
use super::{AdminService, Audited};
use crate::api::auth::Action;
use crate::api::lifecycle::{extend_retention, policy_detail, target_text};
use crate::api::views::{hold_pb, retention_pb};
use crate::api::{meta_status, store_status, to_status};
use crate::meta::retention::validate_hold;
use crate::meta::{now_ms, Command, Hold, HoldFilter, HoldTarget, MetaError, RetentionPolicy};

/// Most holds in one answer.
const MAX_HOLDS_PAGE: usize = 1000;

fn target(t: Option<(bool, &str)>) -> Result<HoldTarget, Status> {
    match t {
        Some((true, k)) => Ok(HoldTarget::Key(k.into())),
        Some((false, p)) => Ok(HoldTarget::Prefix(p.into())),
        None => Err(Status::invalid_argument(
            "a hold names a key or a prefix of its bucket",
        )),
    }
}

fn place_target(t: Option<&pb::place_hold_request::Target>) -> Result<HoldTarget, Status> {
    target(t.map(|t| match t {
        pb::place_hold_request::Target::Key(k) => (true, k.as_str()),
        pb::place_hold_request::Target::Prefix(p) => (false, p.as_str()),
    }))
}

fn release_target(t: Option<&pb::release_hold_request::Target>) -> Result<HoldTarget, Status> {
    target(t.map(|t| match t {
        pb::release_hold_request::Target::Key(k) => (true, k.as_str()),
        pb::release_hold_request::Target::Prefix(p) => (false, p.as_str()),
    }))
}

impl AdminService {
    pub(super) async fn create_retention(
        &self,
        request: Request<pb::CreateRetentionRequest>,
    ) -> Result<Response<pb::CreateRetentionResponse>, Status> {
        let policy_of = |req: &pb::CreateRetentionRequest| RetentionPolicy {
            name: req.name.clone(),
            keep_min_ms: req.keep_min_ms,
            delete_after_ms: req.delete_after_ms,
            created_ms: 0,
        };
        let check =
            |req: &pb::CreateRetentionRequest| policy_of(req).validate().map_err(meta_status);
        let run = async |req: pb::CreateRetentionRequest| {
            let policy = RetentionPolicy {
                created_ms: now_ms(),
                ..policy_of(&req)
            };
            let detail = policy_detail(&policy);
            let result = self
                .cluster
                .propose(Command::CreateRetention {
                    policy: policy.clone(),
                })
                .await
                .map_err(to_status)
                .map(|()| pb::CreateRetentionResponse {
                    policy: Some(policy_pb(&policy)),
                });
            (Audited::new("retention create", req.name, detail), result)
        };
        self.change(
            request,
            Action::CreateRetention,
            check,
            async |mut leader, r| leader.create_retention(r).await,
            run,
        )
        .await
    }

    pub(super) async fn list_retention(
        &self,
        request: Request<pb::ListRetentionRequest>,
    ) -> Result<Response<pb::ListRetentionResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::ListRetention, None, "")
            .await?;
        self.catch_up(&caller).await?;
        let policies = self
            .cluster
            .meta()
            .retention_policies()
            .map_err(store_status)?;
        Ok(Response::new(pb::ListRetentionResponse {
            policies: policies.iter().map(policy_pb).collect(),
        }))
    }

    pub(super) async fn set_bucket_retention(
        &self,
        request: Request<pb::SetBucketRetentionRequest>,
    ) -> Result<Response<pb::SetBucketRetentionResponse>, Status> {
        let run = async |req: pb::SetBucketRetentionRequest| {
            let policy = Some(req.policy.clone()).filter(|p| !p.is_empty());
            let result = self
                .cluster
                .propose(Command::SetBucketRetention {
                    bucket: req.bucket.clone(),
                    policy,
                })
                .await
                .map_err(to_status)
                .and_then(|()| {
                    let bucket = self.cluster.meta().bucket(&req.bucket);
                    bucket
                        .map_err(store_status)?
                        .ok_or_else(|| Status::not_found(format!("no bucket named {}", req.bucket)))
                })
                .map(|b| pb::SetBucketRetentionResponse {
                    bucket: Some(bucket_pb(&b)),
                });
            (
                Audited::new("bucket set-retention", req.bucket, req.policy),
                result,
            )
        };
        self.change(
            request,
            Action::SetBucketRetention,
            |_| Ok(()),
            async |mut leader, r| leader.set_bucket_retention(r).await,
            run,
        )
        .await
    }

    pub(super) async fn extend_retention(
        &self,
        request: Request<pb::ExtendRetentionRequest>,
    ) -> Result<Response<pb::ExtendRetentionResponse>, Status> {
        let run = async |req: pb::ExtendRetentionRequest, _caller: String| {
            let result = self.extend(&req).await;
            (
                Audited::new(
                    "retention extend",
                    req.bucket,
                    format!("{} {}", req.key, req.policy),
                ),
                result,
            )
        };
        self.change_in(
            request,
            Action::ExtendRetention,
            |r| Some(r.bucket.clone()),
            |_| Ok(()),
            async |mut leader, r| leader.extend_retention(r).await,
            run,
        )
        .await
    }

    async fn extend(
        &self,
        req: &pb::ExtendRetentionRequest,
    ) -> Result<pb::ExtendRetentionResponse, Status> {
        let now = extend_retention(&self.cluster, &req.bucket, &req.key, &req.policy).await?;
        Ok(pb::ExtendRetentionResponse {
            retention: now.as_ref().map(retention_pb),
        })
    }

    pub(super) async fn place_hold(
        &self,
        request: Request<pb::PlaceHoldRequest>,
    ) -> Result<Response<pb::PlaceHoldResponse>, Status> {
        let hold_of = |req: &pb::PlaceHoldRequest, by: &str| -> Result<Hold, Status> {
            let hold = Hold {
                case_id: req.case_id.clone(),
                bucket: req.bucket.clone(),
                target: place_target(req.target.as_ref())?,
                reason: req.reason.clone(),
                placed_by: by.to_string(),
                placed_ms: now_ms(),
            };
            validate_hold(&hold).map_err(meta_status)?;
            Ok(hold)
        };
        let check = |req: &pb::PlaceHoldRequest| hold_of(req, "").map(|_| ());
        let run = async |req: pb::PlaceHoldRequest, caller: String| {
            let audited = |detail: String| {
                Audited::new(
                    "hold place",
                    req.bucket.clone(),
                    format!("{} {detail}", req.case_id),
                )
            };
            let hold = match hold_of(&req, &caller) {
                Ok(h) => h,
                Err(e) => return (audited(String::new()), Err(e)),
            };
            let result = self
                .cluster
                .propose(Command::PlaceHold { hold: hold.clone() })
                .await
                .map_err(to_status)
                .map(|()| pb::PlaceHoldResponse {
                    hold: Some(hold_pb(&hold)),
                });
            (audited(target_text(&hold.target)), result)
        };
        self.change_in(
            request,
            Action::PlaceHold,
            |r| Some(r.bucket.clone()),
            check,
            async |mut leader, r| leader.place_hold(r).await,
            run,
        )
        .await
    }

    pub(super) async fn release_hold(
        &self,
        request: Request<pb::ReleaseHoldRequest>,
    ) -> Result<Response<pb::ReleaseHoldResponse>, Status> {
        let check = |req: &pb::ReleaseHoldRequest| release_target(req.target.as_ref()).map(|_| ());
        let run = async |req: pb::ReleaseHoldRequest, _caller: String| {
            let target = match release_target(req.target.as_ref()) {
                Ok(t) => t,
                Err(e) => {
                    return (
                        Audited::new("hold release", req.bucket, req.case_id),
                        Err(e),
                    )
                }
            };
            let result = self
                .cluster
                .propose(Command::ReleaseHold {
                    case_id: req.case_id.clone(),
                    bucket: req.bucket.clone(),
                    target: target.clone(),
                })
                .await
                .map_err(to_status)
                .map(|()| pb::ReleaseHoldResponse {});
            let detail = format!("{} {}", req.case_id, target_text(&target));
            (Audited::new("hold release", req.bucket, detail), result)
        };
        self.change_in(
            request,
            Action::ReleaseHold,
            |r| Some(r.bucket.clone()),
            check,
            async |mut leader, r| leader.release_hold(r).await,
            run,
        )
        .await
    }

    pub(super) async fn list_holds(
        &self,
        request: Request<pb::ListHoldsRequest>,
    ) -> Result<Response<pb::ListHoldsResponse>, Status> {
        let bucket = Some(request.get_ref().bucket.clone()).filter(|b| !b.is_empty());
        let caller = self
            .auth
            .check(&request, Action::ListHolds, bucket.as_deref(), "")
            .await?;
        self.catch_up(&caller).await?;
        let req = request.into_inner();
        let filter = HoldFilter {
            case_id: Some(req.case_id.clone()).filter(|c| !c.is_empty()),
            bucket,
        };
        let limit = match req.page_size {
            0 => MAX_HOLDS_PAGE,
            n => (n as usize).min(MAX_HOLDS_PAGE),
        };
        // The token is the last hold shown: case, bucket, kind and target,
        // NUL-separated.
        let after: Option<(String, String, HoldTarget)> = if req.page_token.is_empty() {
            None
        } else {
            let mut parts = req.page_token.splitn(3, '\0');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(c), Some(b), Some(t)) if t.starts_with("k:") || t.starts_with("p:") => {
                    let target = if let Some(k) = t.strip_prefix("k:") {
                        HoldTarget::Key(k.into())
                    } else {
                        HoldTarget::Prefix(t[2..].into())
                    };
                    Some((c.into(), b.into(), target))
                }
                _ => {
                    return Err(meta_status(MetaError::InvalidArgument(
                        "malformed page token".into(),
                    )))
                }
            }
        };
        let holds = self
            .cluster
            .meta()
            .holds(
                &filter,
                after.as_ref().map(|(c, b, t)| (c.as_str(), b.as_str(), t)),
                limit,
            )
            .map_err(store_status)?;
        let next_page_token = match holds.last() {
            Some(h) if holds.len() == limit => {
                format!("{}\0{}\0{}", h.case_id, h.bucket, target_text(&h.target))
            }
            _ => String::new(),
        };
        Ok(Response::new(pb::ListHoldsResponse {
            holds: holds.iter().map(hold_pb).collect(),
            next_page_token,
        }))
    }
}
