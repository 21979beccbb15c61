//! Re-wrapping epoch keys (and older data keys) under the current master key.

use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;

use super::AdminService;
use crate::api::auth::Action;

impl AdminService {
    pub(super) async fn rotate_keys(
        &self,
        request: Request<pb::RotateKeysRequest>,
    ) -> Result<Response<pb::RotateKeysResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::KeysRotate, None, "")
            .await?;
        // Not forwarded: the contacted node's key file names the new key,
        // and its proposals reach the leader by themselves.
        let result = self
            .plane
            .rotate_keys()
            .await
            .map_err(crate::api::object_status);
        let detail = match &result {
            Ok(r) => format!("to {} ({} re-wrapped)", r.current_key_id, r.rewrapped),
            Err(_) => String::new(),
        };
        self.audit_change(caller.name(), "keys rotate", "", &detail, &result)
            .await;
        let r = result?;
        Ok(Response::new(pb::RotateKeysResponse {
            current_key_id: r.current_key_id,
            rewrapped: r.rewrapped,
            remaining: r.remaining,
            unencrypted: r.unencrypted,
        }))
    }
}
