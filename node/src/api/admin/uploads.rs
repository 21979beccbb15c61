//! Listing the resumable upload sessions still open.

use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;

use super::AdminService;
use crate::api::auth::Action;
use crate::api::views::upload_info;
use crate::objects::parse_upload_id;

/// Sessions per page when the caller does not say, and at most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

impl AdminService {
    pub(super) async fn list_uploads(
        &self,
        request: Request<pb::ListUploadsRequest>,
    ) -> Result<Response<pb::ListUploadsResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::ListUploads, None, "")
            .await?;
        self.catch_up(&caller).await?;
        let req = request.into_inner();
        let result = (|| {
            let after = match req.page_token.as_str() {
                "" => None,
                token => Some(parse_upload_id(token)?),
            };
            let limit = match req.page_size as usize {
                0 => DEFAULT_PAGE,
                n => n.min(MAX_PAGE),
            };
            self.plane.upload_sessions(after, limit)
        })()
        .map_err(crate::api::object_status);
        self.audit_change(caller.name(), "uploads ls", "", "", &result)
            .await;
        let (uploads, next) = result?;
        Ok(Response::new(pb::ListUploadsResponse {
            uploads: uploads
                .iter()
                .filter_map(|u| u.session.as_ref().map(|s| upload_info(u, s)))
                .collect(),
            next_page_token: next.map(|id| id.to_hex()).unwrap_or_default(),
        }))
    }
}
